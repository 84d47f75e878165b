//! The blocking facade: `acquire_blocking()`, `acquire_owned_blocking()`, `close_blocking()`,
//! `with_connection_blocking`, the scope's `acquire_blocking` and `acquire_owned_blocking`, and
//! `metrics_iter`. They drive the same state machine as the async facade on the calling thread,
//! and bound the wait by parking with a deadline, so no timer or runtime is involved.

use std::fmt;
use std::future::Future;
use std::iter::FusedIterator;
use std::panic::Location;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Listener;

use crate::connection::Lend;
use crate::core::{Outcome, Popped};
use crate::snapshot::Ticks;
use crate::{
    ConnectionFactory, ConnectionPool, ConnectionScope, OwnedPooledConnection,
    OwnedScopedConnection, PoolError, PoolMetrics, PooledConnection, ScopedConnection,
};

impl<F: ConnectionFactory> ConnectionPool<F> {
    /// Acquires a connection, blocking the calling thread up to `acquire_timeout`.
    ///
    /// # Blocking
    ///
    /// Blocks while it waits for a connection and while the factory creates or validates one
    /// (the factory's futures are driven on this thread). Do not call it from async code; use
    /// `acquire().await` there. Blocking and async callers share one FIFO queue.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] past `acquire_timeout` (carrying why the last create failed, if
    /// creates were failing), [`PoolError::Closed`] if the pool is or becomes closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Numbers;
    ///
    /// let pool = ConnectionPool::new(Numbers(5), ConnectionPoolConfig::default());
    /// let conn = pool.acquire_blocking()?;
    /// assert_eq!(*conn, 5);
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[track_caller]
    #[inline(always)] // see `ConnectionPool::acquire_fast`
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn acquire_blocking(&self) -> Result<PooledConnection<'_, F>, PoolError<F::Error>> {
        self.acquire_blocking_at(Location::caller())
    }

    /// [`acquire_blocking`](ConnectionPool::acquire_blocking) for an owned guard, which does not
    /// borrow the pool and so can move into another thread, a task or a `'static` struct. It
    /// waits in the same FIFO queue as every other acquire.
    ///
    /// # Blocking
    ///
    /// As [`acquire_blocking`](ConnectionPool::acquire_blocking).
    ///
    /// # Errors
    ///
    /// As [`acquire_blocking`](ConnectionPool::acquire_blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Numbers;
    /// let pool = ConnectionPool::new(Numbers(5), ConnectionPoolConfig::default());
    /// let conn = pool.acquire_owned_blocking()?;
    /// let worker = std::thread::spawn(move || *conn + 1); // the guard moves with the work
    /// assert_eq!(worker.join().unwrap(), 6);
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[track_caller]
    #[inline(always)] // see `ConnectionPool::acquire_fast`
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn acquire_owned_blocking(&self) -> Result<OwnedPooledConnection<F>, PoolError<F::Error>> {
        self.acquire_blocking_at(Location::caller())
    }

    /// `acquire_blocking` for either kind of guard, recording `location` as where the
    /// connection was asked for.
    #[inline(always)]
    pub(crate) fn acquire_blocking_at<'a, G: Lend<'a, F>>(
        &'a self,
        location: &'static Location<'static>,
    ) -> Result<G, PoolError<F::Error>> {
        match self.acquire_fast(location) {
            Ok(conn) => Ok(conn),
            Err(candidate) => self.acquire_blocking_slow(candidate, location),
        }
    }

    /// Out of line, so that the fast path above stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn acquire_blocking_slow<'a, G: Lend<'a, F>>(
        &'a self,
        candidate: Option<Popped<F::Connection>>,
        location: &'static Location<'static>,
    ) -> Result<G, PoolError<F::Error>> {
        let started = Instant::now();
        let deadline = started + self.config().acquire_timeout();
        let slow = self.shared().acquire_slow(candidate, deadline);
        // Parking with the deadline is one of the ways a wait times out (see `core::timeout`).
        let outcome = block_on(slow, Some(deadline)).unwrap_or(Outcome::TimedOut);
        self.finish_slow(outcome, started, location)
    }

    /// Closes the pool (see [`close_now`](ConnectionPool::close_now)) and blocks until every
    /// connection has been destroyed, lent ones included.
    ///
    /// # Blocking
    ///
    /// Blocks until connections still lent out come back; do not hold one on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// drop(pool.acquire_blocking().unwrap());
    /// pool.close_blocking();
    /// assert_eq!(pool.current_metrics().total, 0);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn close_blocking(&self) {
        self.close_now();
        let mut listener = None;
        let shared = self.shared();
        block_on(
            futures_lite::future::poll_fn(|cx| shared.poll_drained(&mut listener, cx)),
            None,
        );
    }

    /// The blocking form of [`with_connection`](ConnectionPool::with_connection).
    ///
    /// # Blocking
    ///
    /// Blocks like [`acquire_blocking`](ConnectionPool::acquire_blocking), then runs `f` here.
    ///
    /// # Errors
    ///
    /// What `f` returns, or the acquire's [`PoolError`] converted into `f`'s error type.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # use nexus_pool::doc_support::Buffers;
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build().unwrap();
    /// let pool = ConnectionPool::new(Buffers, config);
    /// let result = pool.with_connection_blocking(|conn| {
    ///     conn.push(1);
    ///     Err::<(), _>(PoolError::Exhausted) // an error still releases the connection
    /// });
    /// assert!(result.is_err());
    /// assert_eq!(pool.current_metrics().idle, 1);
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn with_connection_blocking<R, E>(
        &self,
        f: impl FnOnce(&mut PooledConnection<'_, F>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<PoolError<F::Error>>,
    {
        let mut conn = self.acquire_blocking_at(Location::caller())?;
        f(&mut conn)
    }

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
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
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

impl ConnectionScope {
    /// Acquires a connection from `pool`, blocking, and tracks it in this scope.
    ///
    /// # Blocking
    ///
    /// As [`ConnectionPool::acquire_blocking`].
    ///
    /// # Errors
    ///
    /// As [`ConnectionPool::acquire_blocking`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let scope = ConnectionScope::new();
    /// let _conn = scope.acquire_blocking(&pool)?;
    /// assert_eq!(scope.held()[0].pool, "nexus-pool");
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn acquire_blocking<'s, 'p, F: ConnectionFactory>(
        &'s self,
        pool: &'p ConnectionPool<F>,
    ) -> Result<ScopedConnection<'s, 'p, F>, PoolError<F::Error>> {
        let conn = pool.acquire_blocking_at(Location::caller())?;
        Ok(self.track(pool.config().name().to_owned(), conn))
    }

    /// [`acquire_blocking`](ConnectionScope::acquire_blocking) with an owned guard inside: the
    /// scoped connection borrows the scope but not the pool.
    ///
    /// # Blocking
    ///
    /// As [`ConnectionPool::acquire_owned_blocking`].
    ///
    /// # Errors
    ///
    /// As [`ConnectionPool::acquire_owned_blocking`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let scope = ConnectionScope::new();
    /// let conn = scope.acquire_owned_blocking(&pool)?;
    /// assert_eq!(conn.use_count(), 1); // derefs to the owned guard
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    #[track_caller]
    pub fn acquire_owned_blocking<'s, F: ConnectionFactory>(
        &'s self,
        pool: &ConnectionPool<F>,
    ) -> Result<OwnedScopedConnection<'s, F>, PoolError<F::Error>> {
        let conn = pool.acquire_blocking_at(Location::caller())?;
        Ok(self.track(pool.config().name().to_owned(), conn))
    }
}

/// Snapshots of a pool at an interval, until it closes; from
/// [`ConnectionPool::metrics_iter`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, MetricsIter};
/// # use nexus_pool::doc_support::Units;
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

/// Runs `fut` to completion on this thread, or gives up (dropping it) at `deadline`. It polls
/// `fut` again only when woken. (A waiting acquire may yield the core before it returns
/// `Pending`: see `core::acquire`.)
pub(crate) fn block_on<T>(fut: impl Future<Output = T>, deadline: Option<Instant>) -> Option<T> {
    let mut fut = pin!(fut);
    let (parker, unparker) = parking::pair();
    let waker = Waker::from(unparker);
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            return Some(value);
        }
        match deadline {
            None => parker.park(),
            // Loom's parker has no deadline, and its models do not let time pass.
            #[cfg(loom)]
            Some(_) => parker.park(),
            #[cfg(not(loom))]
            Some(deadline) => {
                if !parker.park_deadline(deadline) && Instant::now() >= deadline {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use super::block_on;

    /// A future that is pending `pending` times, counting its polls and calling `on_pending`
    /// with its waker each time it returns `Pending`.
    fn pending_for<'a>(
        pending: usize,
        polls: &'a AtomicUsize,
        mut on_pending: impl FnMut(&std::task::Waker) + 'a,
    ) -> impl std::future::Future<Output = usize> + 'a {
        futures_lite::future::poll_fn(move |cx| {
            let n = polls.fetch_add(1, Ordering::Relaxed);
            if n >= pending {
                return Poll::Ready(n);
            }
            on_pending(cx.waker());
            Poll::Pending
        })
    }

    #[test]
    fn a_wake_up_before_it_parks_is_polled_at_once() {
        // Woken before it even returns `Pending`: the parker keeps the wake-up, so the park
        // returns at once and the future is polled again, rather than parking until the deadline.
        let polls = AtomicUsize::new(0);
        let far = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        let out = block_on(pending_for(5, &polls, |w| w.wake_by_ref()), Some(far));
        assert_eq!(out, Some(5));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it parked until near the deadline"
        );
    }

    #[test]
    fn without_a_wake_up_it_polls_once_and_gives_up_at_the_deadline() {
        let polls = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_millis(20);
        let out = block_on(pending_for(usize::MAX, &polls, |_| {}), Some(deadline));
        assert_eq!(out, None);
        assert!(Instant::now() >= deadline);
        // The future is asked again only when woken.
        assert_eq!(polls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_parked_thread_is_woken_from_another() {
        let (tx, rx) = mpsc::channel();
        let waker_thread = std::thread::spawn(move || {
            let waker: std::task::Waker = rx.recv().unwrap();
            waker.wake();
        });
        let polls = AtomicUsize::new(0);
        let mut sent = Some(tx);
        let out = block_on(
            pending_for(1, &polls, |w| {
                if let Some(tx) = sent.take() {
                    tx.send(w.clone()).unwrap();
                }
            }),
            None,
        );
        assert_eq!(out, Some(1));
        waker_thread.join().unwrap();
    }
}
