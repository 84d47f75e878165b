//! The event hook: a trait whose methods the pool calls at each lifecycle event, for telemetry.

use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::time::Duration;

use crate::DestroyReason;

/// Receives a pool's lifecycle events. Every method has a no-op default; implement those you
/// need and install it with
/// [`ConnectionPoolBuilder::event_handler`](crate::ConnectionPoolBuilder::event_handler).
///
/// The pool calls these outside any lock, on whichever thread the event happens (an acquiring
/// caller, a dropping guard, the maintenance loop), so keep them quick. A panic inside one is
/// caught and ignored: it never breaks the pool.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use nexus_pool::PoolEventHandler;
///
/// #[derive(Default)]
/// struct CountAcquires(AtomicUsize);
///
/// impl PoolEventHandler for CountAcquires {
///     fn on_acquired(&self, _pool: &str, _waited: Duration) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// # let _ = Arc::new(CountAcquires::default());
/// ```
pub trait PoolEventHandler: Send + Sync + 'static {
    /// A connection was created; `took` is how long `create` ran.
    fn on_created(&self, pool: &str, took: Duration) {
        let _ = (pool, took);
    }

    /// `create` failed, timed out or panicked; `error` says why. When `create` returned an
    /// error, `error` is that error itself, so a handler can
    /// [`downcast_ref`](https://doc.rust-lang.org/std/error/trait.Error.html#method.downcast_ref)
    /// it to the factory's error type and walk its `source()` chain; otherwise it is the
    /// [`CreateError`](crate::CreateError) saying the create timed out or panicked.
    fn on_create_failed(&self, pool: &str, error: &(dyn std::error::Error + 'static)) {
        let _ = (pool, error);
    }

    /// A connection was destroyed (or dropped after its `destroy` timed out).
    fn on_destroyed(&self, pool: &str, reason: DestroyReason) {
        let _ = (pool, reason);
    }

    /// A caller got a connection after waiting `waited` (zero when one was idle).
    fn on_acquired(&self, pool: &str, waited: Duration) {
        let _ = (pool, waited);
    }

    /// A connection came back after being held for `held` (to about 10 ms: the pool's coarse
    /// clock).
    fn on_released(&self, pool: &str, held: Duration) {
        let _ = (pool, held);
    }

    /// A caller gave up after `waited` (its `acquire_timeout`).
    fn on_timed_out(&self, pool: &str, waited: Duration) {
        let _ = (pool, waited);
    }

    /// A periodic health check finished: `healthy` is its verdict (false also when it timed out
    /// or panicked), `took` its duration.
    fn on_health_check(&self, pool: &str, healthy: bool, took: Duration) {
        let _ = (pool, healthy, took);
    }

    /// A connection has been held longer than `leak_detection_threshold`: reported once per
    /// loan, with where it was acquired. The holder keeps it.
    fn on_leak_suspected(
        &self,
        pool: &str,
        held: Duration,
        acquired_at: &'static Location<'static>,
    ) {
        let _ = (pool, held, acquired_at);
    }
}

/// The handlers installed on a pool, called in the order they were added.
pub(crate) type Handlers = Box<[Box<dyn PoolEventHandler>]>;

/// Calls `f` on each handler and swallows a panic in any of them.
#[inline]
pub(crate) fn emit(handlers: &Handlers, f: impl Fn(&dyn PoolEventHandler)) {
    for handler in handlers.iter() {
        let _ = catch_unwind(AssertUnwindSafe(|| f(handler.as_ref())));
    }
}
