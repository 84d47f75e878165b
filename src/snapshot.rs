//! What a pool reports about itself, read from the core's own counters: `PoolMetrics`, a cheap
//! snapshot of its state; `PoolStatistics`, what it has done since it was built; and `Ticks`,
//! the part `MetricsStream` (the async facade) and `MetricsIter` (the blocking facade) share:
//! snapshots at an interval until the pool closes.
//!
//! # The stream and the iterator
//!
//! A stream holds the pool's shared state (not a `ConnectionPool` handle, so it never keeps a pool
//! open that its owner dropped) and waits on two things at once: an `async-io` timer for the next
//! snapshot and a listener on the pool's `closing` event. It registers the listener *before* it
//! checks `is_closed`, so a close that lands between the two still wakes it: the stream ends
//! within one wake-up of `close`, however long the interval. The blocking iterator does the same
//! with `wait_deadline` on the listener, so it needs no timer and no runtime.

use std::time::Duration;
#[cfg(any(feature = "async", feature = "blocking"))]
use std::{sync::Arc, time::Instant};

#[cfg(any(feature = "async", feature = "blocking"))]
use event_listener::Event;

use crate::ConnectionFactory;
#[cfg(any(feature = "async", feature = "blocking"))]
use crate::ConnectionPool;
use crate::core::Shared;

/// A snapshot of a pool, from [`ConnectionPool::current_metrics`](crate::ConnectionPool::current_metrics).
///
/// # Caveats
///
/// The fields are read one after another while the pool runs, so they are a hint that may be
/// stale by the time it is read; `idle` is clamped so that `idle + active == total` always holds
/// in the snapshot. `total` exceeds `max` only for a moment after `resize` lowered it.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
///
/// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
/// let pool = ConnectionPool::new(Units, config);
/// let held = pool.acquire_blocking()?;
/// let m = pool.current_metrics();
/// assert_eq!((m.total, m.idle, m.active, m.waiting), (1, 0, 1, 0));
/// # drop(held);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// Connections open, being created, or being destroyed.
    pub total: usize,
    /// Connections idle in the pool, ready to be lent.
    pub idle: usize,
    /// Connections lent out or in transition (`total - idle`): being created, checked, destroyed,
    /// or for an instant off the idle queue while the maintenance thread looks at them.
    pub active: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// The pool's `max_connections`.
    pub max: usize,
    /// Average time of the acquires that could not be served from the idle queue at once (they
    /// waited, created or validated a connection). Those served at once take a few dozen
    /// nanoseconds and are not counted, so this is the figure that shows an undersized pool.
    pub acquire_time: Duration,
}

/// What a pool has done since it was built, from
/// [`ConnectionPool::statistics`](crate::ConnectionPool::statistics). Fixed memory, whatever the
/// traffic.
///
/// Acquires served from the idle queue at once are counted, and their (zero) waits recorded,
/// only with `detailed_statistics` on, since counting them costs an atomic increment on the
/// fast path; otherwise `acquired` and `acquire_wait` cover the acquires that had to wait or
/// validate, and `released` and `hold_time` are `None`.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
///
/// let config = ConnectionPoolConfig::builder().min_connections(0).detailed_statistics(true).build()?;
/// let pool = ConnectionPool::new(Units, config);
/// for _ in 0..3 {
///     drop(pool.acquire_blocking()?);
/// }
/// let stats = pool.statistics();
/// assert_eq!(stats.created, 1);
/// assert_eq!(stats.acquired, 3);
/// assert_eq!(stats.released, Some(3));
/// assert_eq!(stats.acquire_wait.count, 3);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatistics {
    /// Connections created.
    pub created: u64,
    /// Creates that failed, timed out or panicked.
    pub create_failures: u64,
    /// Connections destroyed, by reason.
    pub destroyed: DestroyedCounts,
    /// Successful acquires (see the type's docs for which).
    pub acquired: u64,
    /// Connections returned, when statistics are detailed.
    pub released: Option<u64>,
    /// Acquires that gave up at `acquire_timeout`.
    pub timed_out: u64,
    /// Periodic health checks run.
    pub health_checks: u64,
    /// Periodic health checks that found a connection unhealthy (or timed out or panicked).
    pub health_check_failures: u64,
    /// Loans reported as suspected leaks.
    pub leaks_reported: u64,
    /// How long acquires waited (see the type's docs for which).
    pub acquire_wait: Distribution,
    /// How long connections were held, when statistics are detailed. Measured on the pool's
    /// coarse clock, which the fast path reads for free and which is refreshed every 10 ms:
    /// a hold is known to about 10 ms.
    pub hold_time: Option<Distribution>,
    /// How long successful creates took.
    pub create_time: Distribution,
    /// Whether the fast path is counted too (`detailed_statistics`).
    pub detailed: bool,
}

/// Connections destroyed, by [`DestroyReason`](crate::DestroyReason).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// # use nexus_pool::doc_support::Units;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, DestroyedCounts};
///
/// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
/// let pool = ConnectionPool::new(Units, config);
/// drop(pool.acquire_blocking()?);
/// pool.close_blocking(); // destroys the idle connection, and waits until it is gone
/// let destroyed: DestroyedCounts = pool.statistics().destroyed;
/// assert_eq!((destroyed.closed, destroyed.total()), (1, 1));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // each field is the `DestroyReason` of the same name
pub struct DestroyedCounts {
    pub broken: u64,
    pub panicked: u64,
    pub idle_timeout: u64,
    pub expired: u64,
    pub failed_validation: u64,
    pub unhealthy: u64,
    pub evicted: u64,
    pub resized: u64,
    pub closed: u64,
}

impl DestroyedCounts {
    /// All connections destroyed, whatever the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::DestroyedCounts::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.broken
            + self.panicked
            + self.idle_timeout
            + self.expired
            + self.failed_validation
            + self.unhealthy
            + self.evicted
            + self.resized
            + self.closed
    }
}

/// A latency distribution: percentiles within 12.5% of the true value, exact maximum.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// # use nexus_pool::doc_support::Units;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, Distribution};
///
/// let config = ConnectionPoolConfig::builder().detailed_statistics(true).build()?;
/// let pool = ConnectionPool::new(Units, config);
/// for _ in 0..3 {
///     drop(pool.acquire_blocking()?);
/// }
/// let waits: Distribution = pool.statistics().acquire_wait;
/// assert_eq!(waits.count, 3);
/// assert!(waits.p50 <= waits.p99 && waits.p99 <= waits.max);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Distribution {
    /// Samples recorded.
    pub count: u64,
    /// Their mean.
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl PoolMetrics {
    /// The metrics of the pool behind `shared`, as
    /// [`ConnectionPool::current_metrics`](crate::ConnectionPool::current_metrics) reports them.
    pub(crate) fn of<F: ConnectionFactory>(shared: &Shared<F>) -> Self {
        let max = shared.max();
        let total = shared.total();
        let idle = shared.idle_count().min(total);
        PoolMetrics {
            total,
            idle,
            active: total - idle,
            waiting: shared.waiting(),
            max,
            acquire_time: shared.average_acquire_time(),
        }
    }
}

/// What a stream or iterator reads from a pool, with the factory type erased so that neither
/// is generic.
#[cfg(any(feature = "async", feature = "blocking"))]
pub(crate) trait Source: Send + Sync {
    fn metrics(&self) -> PoolMetrics;
    fn is_closed(&self) -> bool;
    /// Notified (all listeners) when the pool closes.
    fn closing(&self) -> &Event;
}

#[cfg(any(feature = "async", feature = "blocking"))]
impl<F: ConnectionFactory> Source for Shared<F> {
    fn metrics(&self) -> PoolMetrics {
        PoolMetrics::of(self)
    }

    fn is_closed(&self) -> bool {
        Shared::is_closed(self)
    }

    fn closing(&self) -> &Event {
        &self.closing
    }
}

/// The shared part of the stream and the iterator: the pool, the interval, and when the next
/// snapshot is due.
#[cfg(any(feature = "async", feature = "blocking"))]
pub(crate) struct Ticks {
    /// The pool, read through its shared state so that a stream never keeps it open.
    pub(crate) source: Arc<dyn Source>,
    /// The time between two snapshots.
    pub(crate) interval: Duration,
    /// When the next snapshot is due.
    pub(crate) due: Instant,
    /// Set once the stream has ended, so it stays ended.
    pub(crate) done: bool,
}

#[cfg(any(feature = "async", feature = "blocking"))]
impl Ticks {
    #[track_caller]
    pub(crate) fn new<F: ConnectionFactory>(pool: &ConnectionPool<F>, interval: Duration) -> Self {
        assert!(!interval.is_zero(), "metrics interval must be non-zero");
        let source: Arc<dyn Source> = pool.shared_arc().clone();
        Ticks {
            source,
            interval,
            due: Instant::now(),
            done: false,
        }
    }

    /// Takes the snapshot due now and schedules the next one, one interval after the last due
    /// time, or after now if the reader fell behind (missed ticks are skipped, not bunched).
    pub(crate) fn take(&mut self) -> PoolMetrics {
        let now = Instant::now();
        self.due += self.interval;
        if self.due <= now {
            self.due = now + self.interval;
        }
        self.source.metrics()
    }

    /// Ends the sequence if the pool is closed.
    pub(crate) fn closed(&mut self) -> bool {
        self.done = self.done || self.source.is_closed();
        self.done
    }
}
