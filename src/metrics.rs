//! `PoolMetrics`: a cheap snapshot of a pool's state; `PoolStatistics`: what it has done since it
//! was built; `MetricsStream` and `MetricsIter`: snapshots at an interval until the pool closes.
//!
//! # The stream
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
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
///
/// struct Units;
/// impl ConnectionFactory for Units {
///     type Connection = ();
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// }
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
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
///
/// struct Units;
/// impl ConnectionFactory for Units {
///     type Connection = ();
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// }
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

/// The metrics of the pool behind `shared`, as
/// [`ConnectionPool::current_metrics`](crate::ConnectionPool::current_metrics) reports them.
pub(crate) fn snapshot<F: ConnectionFactory>(shared: &Shared<F>) -> PoolMetrics {
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

/// What a stream or iterator reads from a pool, with the factory type erased so that neither
/// is generic.
#[cfg(any(feature = "async", feature = "blocking"))]
trait Source: Send + Sync {
    fn metrics(&self) -> PoolMetrics;
    fn is_closed(&self) -> bool;
    /// Notified (all listeners) when the pool closes.
    fn closing(&self) -> &Event;
}

#[cfg(any(feature = "async", feature = "blocking"))]
impl<F: ConnectionFactory> Source for Shared<F> {
    fn metrics(&self) -> PoolMetrics {
        snapshot(self)
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
struct Ticks {
    source: Arc<dyn Source>,
    interval: Duration,
    /// When the next snapshot is due.
    due: Instant,
    /// Set once the stream has ended, so it stays ended.
    done: bool,
}

#[cfg(any(feature = "async", feature = "blocking"))]
impl Ticks {
    #[track_caller]
    fn new<F: ConnectionFactory>(pool: &ConnectionPool<F>, interval: Duration) -> Self {
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
    fn take(&mut self) -> PoolMetrics {
        let now = Instant::now();
        self.due += self.interval;
        if self.due <= now {
            self.due = now + self.interval;
        }
        self.source.metrics()
    }

    /// Ends the sequence if the pool is closed.
    fn closed(&mut self) -> bool {
        self.done = self.done || self.source.is_closed();
        self.done
    }
}

#[cfg(feature = "async")]
pub use self::stream::MetricsStream;

#[cfg(feature = "async")]
mod stream {
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use crate::core::Timer;
    use event_listener::EventListener;
    use futures_lite::Stream;

    use super::{PoolMetrics, Ticks};
    use crate::{ConnectionFactory, ConnectionPool};

    impl<F: ConnectionFactory> ConnectionPool<F> {
        /// A stream of [`PoolMetrics`] snapshots: the first at once, then one every `interval`,
        /// until the pool is closed. It runs on any executor, or none (its timer comes from
        /// `async-io`).
        ///
        /// The stream ends (yields `None`) as soon as the pool closes, by
        /// [`close_now`](ConnectionPool::close_now), `close().await` or dropping the last pool
        /// handle: it does not wait for the next tick. It does not keep the pool open, and it
        /// is `'static`, so it can be moved into a spawned task. A reader that falls behind
        /// skips the ticks it missed rather than getting them in a burst.
        ///
        /// # Panics
        ///
        /// If `interval` is zero.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use futures_lite::StreamExt;
        /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
        ///
        /// struct Units;
        /// impl ConnectionFactory for Units {
        ///     type Connection = ();
        ///     type Error = std::io::Error;
        ///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
        /// }
        ///
        /// # futures_lite::future::block_on(async {
        /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
        /// let pool = ConnectionPool::new(Units, config);
        /// let mut stream = pool.metrics_stream(Duration::from_millis(10));
        ///
        /// let held = pool.acquire().await?;
        /// let m = stream.next().await.expect("the pool is open");
        /// assert_eq!((m.total, m.active), (1, 1));
        ///
        /// drop(held);
        /// pool.close_now();
        /// assert_eq!(stream.next().await, None, "ends when the pool closes");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// # }).unwrap();
        /// ```
        #[track_caller]
        #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
        pub fn metrics_stream(&self, interval: Duration) -> MetricsStream {
            let ticks = Ticks::new(self, interval);
            MetricsStream {
                timer: Timer::at(ticks.due),
                ticks,
                closing: None,
            }
        }
    }

    /// Snapshots of a pool at an interval, until it closes; from
    /// [`ConnectionPool::metrics_stream`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures_lite::StreamExt;
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, MetricsStream};
    ///
    /// struct Units;
    /// impl ConnectionFactory for Units {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// }
    ///
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let stream: MetricsStream = pool.metrics_stream(Duration::from_millis(5));
    /// // Any executor, or none: here, three snapshots on the calling thread.
    /// let three: Vec<_> = futures_lite::future::block_on(stream.take(3).collect());
    /// assert_eq!(three.len(), 3);
    /// assert!(three.iter().all(|m| m.max == 10));
    /// ```
    #[must_use = "streams do nothing unless polled"]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub struct MetricsStream {
        ticks: Ticks,
        /// Fires when the next snapshot is due.
        timer: Timer,
        /// Registered on the pool's `closing` event before each check of `is_closed`.
        closing: Option<EventListener>,
    }

    impl fmt::Debug for MetricsStream {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("MetricsStream")
                .field("interval", &self.ticks.interval)
                .field("done", &self.ticks.done)
                .finish_non_exhaustive()
        }
    }

    impl Stream for MetricsStream {
        type Item = PoolMetrics;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PoolMetrics>> {
            let this = self.get_mut();
            // Listen, then check: a close between the two still reaches the listener.
            loop {
                if this.ticks.closed() {
                    this.closing = None;
                    return Poll::Ready(None);
                }
                match &mut this.closing {
                    None => this.closing = Some(this.ticks.source.closing().listen()),
                    Some(listener) => match Pin::new(listener).poll(cx) {
                        Poll::Ready(()) => this.closing = None,
                        Poll::Pending => break,
                    },
                }
            }
            match Pin::new(&mut this.timer).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(_) => {
                    let metrics = this.ticks.take();
                    this.timer.set_at(this.ticks.due);
                    Poll::Ready(Some(metrics))
                }
            }
        }
    }
}

#[cfg(feature = "blocking")]
pub use self::iter::MetricsIter;

#[cfg(feature = "blocking")]
mod iter {
    use std::fmt;
    use std::iter::FusedIterator;
    use std::time::{Duration, Instant};

    use event_listener::Listener;

    use super::{PoolMetrics, Ticks};
    use crate::{ConnectionFactory, ConnectionPool};

    impl<F: ConnectionFactory> ConnectionPool<F> {
        /// The blocking form of `metrics_stream`: an iterator of [`PoolMetrics`] snapshots, the
        /// first at once, then one every `interval`, ending when the pool is closed.
        ///
        /// # Blocking
        ///
        /// `next()` parks the calling thread until the next snapshot is due, or until the pool
        /// closes (then it returns `None` at once, whatever the interval). No timer or runtime
        /// is involved. The iterator does not keep the pool open, and it is `'static`, so it
        /// can be moved to a monitoring thread.
        ///
        /// # Panics
        ///
        /// If `interval` is zero.
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
        ///
        /// struct Units;
        /// impl ConnectionFactory for Units {
        ///     type Connection = ();
        ///     type Error = std::io::Error;
        ///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
        /// }
        ///
        /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
        /// let pool = ConnectionPool::new(Units, config);
        /// let monitor = std::thread::spawn({
        ///     let snapshots = pool.metrics_iter(Duration::from_secs(3600));
        ///     move || snapshots.count()
        /// });
        /// std::thread::sleep(Duration::from_millis(20));
        /// pool.close_blocking(); // the monitor ends now, not in an hour
        /// assert_eq!(monitor.join().unwrap(), 1, "the snapshot taken at once");
        /// # Ok::<(), nexus_pool::ConfigError>(())
        /// ```
        #[track_caller]
        #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
        pub fn metrics_iter(&self, interval: Duration) -> MetricsIter {
            MetricsIter {
                ticks: Ticks::new(self, interval),
            }
        }
    }

    /// Snapshots of a pool at an interval, until it closes; from
    /// [`ConnectionPool::metrics_iter`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, MetricsIter};
    ///
    /// struct Units;
    /// impl ConnectionFactory for Units {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// }
    ///
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let snapshots: MetricsIter = pool.metrics_iter(Duration::from_millis(5));
    /// for m in snapshots.take(2) {
    ///     assert_eq!(m.idle + m.active, m.total);
    /// }
    /// ```
    #[must_use = "iterators do nothing unless advanced"]
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub struct MetricsIter {
        ticks: Ticks,
    }

    impl fmt::Debug for MetricsIter {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("MetricsIter")
                .field("interval", &self.ticks.interval)
                .field("done", &self.ticks.done)
                .finish_non_exhaustive()
        }
    }

    impl Iterator for MetricsIter {
        type Item = PoolMetrics;

        fn next(&mut self) -> Option<PoolMetrics> {
            loop {
                if self.ticks.closed() {
                    return None;
                }
                if Instant::now() >= self.ticks.due {
                    return Some(self.ticks.take());
                }
                // Listen, then check: a close between the two still reaches the listener.
                let listener = self.ticks.source.closing().listen();
                if self.ticks.closed() {
                    return None;
                }
                // Woken by `close` or at the deadline; the loop tells which.
                let _ = listener.wait_deadline(self.ticks.due);
            }
        }
    }

    impl FusedIterator for MetricsIter {}
}
