//! Helpers for the telemetry tests: a pool over the scripted factory with a name, a handler that
//! records every event (`Recording`, into `Seen`), and the invariants every metrics snapshot
//! keeps.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_pool::{
    ConnectionPool, ConnectionPoolConfig, ConnectionPoolConfigBuilder, DestroyReason,
    PoolEventHandler, PoolMetrics,
};

use super::{Script, ScriptedFactory};

/// A configuration named `name` of at most `max` connections, no minimum, and a short create
/// backoff.
pub fn named_config(name: &str, max: usize) -> ConnectionPoolConfigBuilder {
    ConnectionPoolConfig::builder()
        .name(name)
        .max_connections(max)
        .min_connections(0)
        .create_backoff(Duration::from_millis(1), Duration::from_millis(10))
}

/// A pool of [`named_config`] over a fresh scripted factory, and its script.
pub fn counting_pool(name: &str, max: usize) -> (ConnectionPool<ScriptedFactory>, Arc<Script>) {
    let (factory, script) = ScriptedFactory::new();
    let pool = ConnectionPool::new(factory, named_config(name, max).build().unwrap());
    (pool, script)
}

/// Acquires for a step that must succeed in a pool whose `acquire_timeout` is short (so that the
/// steps meant to time out stay quick): on an overloaded machine a thread may sleep through a
/// short timeout, so a timeout is retried, for `PATIENCE` in all. Timeouts still count in the
/// statistics and the events alike, which is all the tests that use this compare.
#[cfg(feature = "blocking")]
#[track_caller]
pub fn must_acquire<F: nexus_pool::ConnectionFactory>(
    pool: &ConnectionPool<F>,
) -> nexus_pool::PooledConnection<'_, F> {
    super::wait::until_served("acquire failed", || pool.acquire_blocking())
}

/// The invariants every snapshot must keep, whatever is happening. (`active` is derived as
/// `total - idle`, so only the counters the pool keeps are checked.)
#[track_caller]
pub fn check_snapshot(m: &PoolMetrics, max_waiters: usize) {
    // A wrapped counter shows as a huge number.
    assert!(m.total <= m.max, "total above max (or wrapped): {m:?}");
    assert!(m.waiting <= max_waiters, "waiting wrapped: {m:?}");
}

// ----- a handler that records every event -------------------------------------------------------

/// What a recording handler saw; each event that carries a duration is kept with it.
#[derive(Debug, Default)]
pub struct Seen {
    pub created: Log,
    pub create_failed: AtomicU64,
    pub destroyed: Mutex<HashMap<DestroyReason, u64>>,
    pub acquired: Log,
    pub released: Log,
    pub timed_out: Log,
    pub health_checks: AtomicU64,
    pub health_failures: AtomicU64,
    pub leaks: Log,
    /// Events whose pool name was not the pool's.
    pub wrong_name: AtomicU64,
}

/// The durations one kind of event carried, in the order the events came.
#[derive(Debug, Default)]
pub struct Log(Mutex<Vec<Duration>>);

impl Log {
    pub fn push(&self, d: Duration) {
        self.0.lock().unwrap().push(d);
    }

    pub fn all(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
}

impl Seen {
    pub fn destroyed(&self, reason: DestroyReason) -> u64 {
        self.destroyed
            .lock()
            .unwrap()
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }
}

pub struct Recording {
    pub pool: String,
    pub seen: Arc<Seen>,
}

impl Recording {
    pub fn check_name(&self, pool: &str) {
        if pool != self.pool {
            self.seen.wrong_name.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn count(&self, pool: &str, counter: &AtomicU64) {
        self.check_name(pool);
        counter.fetch_add(1, Ordering::SeqCst);
    }

    pub fn log(&self, pool: &str, log: &Log, d: Duration) {
        self.check_name(pool);
        log.push(d);
    }
}

impl PoolEventHandler for Recording {
    fn on_created(&self, pool: &str, took: Duration) {
        self.log(pool, &self.seen.created, took);
    }
    fn on_create_failed(&self, pool: &str, _error: &(dyn std::error::Error + 'static)) {
        self.count(pool, &self.seen.create_failed);
    }
    fn on_destroyed(&self, pool: &str, reason: DestroyReason) {
        *self
            .seen
            .destroyed
            .lock()
            .unwrap()
            .entry(reason)
            .or_default() += 1;
        self.check_name(pool);
    }
    fn on_acquired(&self, pool: &str, waited: Duration) {
        self.log(pool, &self.seen.acquired, waited);
    }
    fn on_released(&self, pool: &str, held: Duration) {
        self.log(pool, &self.seen.released, held);
    }
    fn on_timed_out(&self, pool: &str, waited: Duration) {
        self.log(pool, &self.seen.timed_out, waited);
    }
    fn on_health_check(&self, pool: &str, healthy: bool, _took: Duration) {
        self.count(pool, &self.seen.health_checks);
        if !healthy {
            self.seen.health_failures.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_leak_suspected(&self, pool: &str, held: Duration, _at: &'static Location<'static>) {
        self.log(pool, &self.seen.leaks, held);
    }
}

/// A handler that panics at every create; the pool, and the handlers after it, must not mind.
pub struct Panicking;

impl PoolEventHandler for Panicking {
    fn on_created(&self, _pool: &str, _took: Duration) {
        panic!("a handler bug (on purpose)");
    }
}
