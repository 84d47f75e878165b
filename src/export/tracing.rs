//! Export to [`tracing`]: one event per lifecycle event worth a log line, each with
//! the pool's name in the `pool.name` field.
//!
//! | Event | Level | Fields |
//! |---|---|---|
//! | an acquire that waited at least `min_wait` (1 ms) | `DEBUG` | `waited` |
//! | a connection created | `DEBUG` | `took` |
//! | a connection destroyed | `DEBUG` | `reason` |
//! | a health check passed | `TRACE` | `took` |
//! | a create failed or timed out | `WARN` | `error` |
//! | an acquire timed out | `WARN` | `waited` |
//! | a health check failed | `WARN` | `took` |
//! | a suspected leak | `WARN` | `held`, `acquired_at` |
//!
//! Acquires served at once and releases produce nothing, so the exporter adds nothing to the
//! fast path but a comparison. Acquires that waited less than
//! [`min_wait`](TracingExporter::min_wait) are not logged either: with a health check or checkout
//! validation configured, most acquires of a used connection run a quick `reset` or `validate`
//! first, and a line for each would drown the waits that show contention. Events carry the
//! target `nexus_pool::export::tracing`: filter with `nexus_pool=debug` (or `=warn` for the
//! failures only).
//!
//! # Examples
//!
//! ```
//! use nexus_pool::export::tracing::TracingExporter;
//! use nexus_pool::ConnectionPool;
//! # use nexus_pool::doc_support::Units;
//!
//! // With a subscriber installed (tracing-subscriber's fmt, for instance), creates, waits and
//! // failures appear in its output.
//! let pool = ConnectionPool::builder(Units)
//!     .event_handler(TracingExporter::new())
//!     .build()?;
//! # drop(pool);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::panic::Location;
use std::time::Duration;

use ::tracing::{debug, trace, warn};

use crate::{DestroyReason, PoolEventHandler};

/// Emits `tracing` events for a pool's waits, creates, destroys, health checks and failures; see
/// the [module docs](self) for the levels and fields.
///
/// # Examples
///
/// ```
/// use nexus_pool::export::tracing::TracingExporter;
/// use nexus_pool::ConnectionPool;
/// # use nexus_pool::doc_support::Units;
///
/// let pool = ConnectionPool::builder(Units)
///     .event_handler(TracingExporter::new())
///     .build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TracingExporter {
    /// Acquires that waited less are not logged.
    min_wait: Duration,
}

impl Default for TracingExporter {
    fn default() -> Self {
        TracingExporter {
            min_wait: Duration::from_millis(1),
        }
    }
}

impl TracingExporter {
    /// An exporter, ready to install with
    /// [`event_handler`](crate::ConnectionPoolBuilder::event_handler).
    ///
    /// # Examples
    ///
    /// ```
    /// let exporter = nexus_pool::export::tracing::TracingExporter::new();
    /// # drop(exporter);
    /// ```
    pub fn new() -> Self {
        TracingExporter::default()
    }

    /// Logs only the acquires that waited at least `min_wait` (by default 1 ms). Acquires served
    /// at once from the idle queue are never logged, whatever this says.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::export::tracing::TracingExporter;
    ///
    /// // Only waits long enough to matter to a user.
    /// let exporter = TracingExporter::new().min_wait(Duration::from_millis(50));
    /// # drop(exporter);
    /// ```
    #[must_use]
    pub fn min_wait(mut self, min_wait: Duration) -> Self {
        self.min_wait = min_wait;
        self
    }
}

impl PoolEventHandler for TracingExporter {
    fn on_created(&self, pool: &str, took: Duration) {
        debug!(pool.name = pool, ?took, "connection created");
    }

    fn on_create_failed(&self, pool: &str, error: &(dyn std::error::Error + 'static)) {
        warn!(pool.name = pool, error, "connection create failed");
    }

    fn on_destroyed(&self, pool: &str, reason: DestroyReason) {
        debug!(pool.name = pool, ?reason, "connection destroyed");
    }

    #[inline]
    fn on_acquired(&self, pool: &str, waited: Duration) {
        if !waited.is_zero() && waited >= self.min_wait {
            debug!(
                pool.name = pool,
                ?waited,
                "acquired a connection after waiting"
            );
        }
    }

    fn on_timed_out(&self, pool: &str, waited: Duration) {
        warn!(pool.name = pool, ?waited, "acquire timed out");
    }

    fn on_health_check(&self, pool: &str, healthy: bool, took: Duration) {
        if healthy {
            trace!(pool.name = pool, ?took, "health check passed");
        } else {
            warn!(pool.name = pool, ?took, "health check failed");
        }
    }

    fn on_leak_suspected(
        &self,
        pool: &str,
        held: Duration,
        acquired_at: &'static Location<'static>,
    ) {
        warn!(
            pool.name = pool,
            ?held,
            %acquired_at,
            "connection held past the leak detection threshold"
        );
    }
}
