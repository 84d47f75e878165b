//! The blocking facade: `acquire_blocking()`, `close_blocking()` and `with_connection_blocking`.
//! They drive the same state machine as the async facade on the calling thread, and bound the
//! wait by parking with a deadline, so no timer or runtime is involved.

use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::connection::Lend;
use crate::core::Popped;
use crate::pool::timeout_error;
use crate::{
    ConnectionFactory, ConnectionPool, OwnedPooledConnection, PoolError, PooledConnection,
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
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
    ///
    /// struct Numbers;
    /// impl ConnectionFactory for Numbers {
    ///     type Connection = u32;
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<u32, std::io::Error> { Ok(5) }
    /// }
    ///
    /// let pool = ConnectionPool::new(Numbers, ConnectionPoolConfig::default());
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
    /// # struct Numbers;
    /// # impl ConnectionFactory for Numbers {
    /// #     type Connection = u32; type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<u32, std::io::Error> { Ok(5) }
    /// # }
    /// let pool = ConnectionPool::new(Numbers, ConnectionPoolConfig::default());
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
        match block_on(slow, Some(deadline)) {
            Some(Some(result)) => self.finish_slow(result, started, location),
            Some(None) | None => Err(timeout_error(self.shared(), started)),
        }
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
    /// # struct Units;
    /// # impl ConnectionFactory for Units {
    /// #     type Connection = (); type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
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
}

/// Runs `fut` to completion on this thread, or gives up (dropping it) at `deadline`.
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
