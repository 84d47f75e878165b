//! The async facade: `acquire().await`, `close().await` and `with_connection`, as named futures
//! that run on any executor. No runtime is required: the pool's maintenance loop ends waits that
//! pass `acquire_timeout`, with one `async-io` timer for all waiters; where it does not run (a
//! spawned maintenance future not polled), each wait arms an `async-io` timer of its own.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use event_listener::EventListener;

use crate::core::{Acquired, Popped, Timer};
use crate::factory::BoxFuture;
use crate::{ConnectionFactory, ConnectionPool, PoolError, PooledConnection};

impl<F: ConnectionFactory> ConnectionPool<F> {
    /// Acquires a connection, waiting up to `acquire_timeout` in all (waiting for a connection,
    /// creating one, validating it).
    ///
    /// Waiters are served first-come first-served, together with blocking callers. The future is
    /// cancellation safe: dropping it at any point frees everything it held, and a connection
    /// being handed to it goes to the next waiter.
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
    ///     async fn create(&self) -> Result<u32, std::io::Error> { Ok(1) }
    /// }
    ///
    /// # futures_lite::future::block_on(async {
    /// let pool = ConnectionPool::new(Numbers, ConnectionPoolConfig::default());
    /// let conn = pool.acquire().await?;
    /// assert_eq!(*conn, 1);
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub fn acquire(&self) -> Acquire<'_, F> {
        self.acquire_at(Location::caller())
    }

    /// `acquire`, recording `location` as where the connection was asked for.
    pub(crate) fn acquire_at(&self, location: &'static Location<'static>) -> Acquire<'_, F> {
        Acquire {
            pool: self,
            slow: None,
            location,
        }
    }

    /// Closes the pool (see [`close_now`](ConnectionPool::close_now)) and returns a future that
    /// resolves once every connection has been destroyed, lent ones included.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};
    ///
    /// struct Units;
    /// impl ConnectionFactory for Units {
    ///     type Connection = ();
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// }
    ///
    /// # futures_lite::future::block_on(async {
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// drop(pool.acquire().await.unwrap());
    /// pool.close().await;
    /// assert_eq!(pool.current_metrics().total, 0);
    /// assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    /// # });
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub fn close(&self) -> Close<'_, F> {
        self.close_now();
        Close {
            pool: self,
            listener: None,
        }
    }
}

/// The future of [`ConnectionPool::acquire`].
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
/// let acquire: nexus_pool::futures::Acquire<'_, Units> = pool.acquire();
/// assert!(futures_lite::future::block_on(acquire).is_ok());
/// ```
#[must_use = "futures do nothing unless polled"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct Acquire<'a, F: ConnectionFactory> {
    pool: &'a ConnectionPool<F>,
    slow: Option<Slow<'a, F>>,
    location: &'static Location<'static>,
}

/// An acquire that could not be served from the idle queue at once.
struct Slow<'a, F: ConnectionFactory> {
    fut: BoxFuture<'a, Option<Acquired<F>>>,
    /// Armed only while no deadline keeper runs (see `core::waitlist`): a timer per wait costs
    /// a system call and a wake-up of async-io's reactor thread.
    timer: Option<Timer>,
    started: Instant,
    deadline: Instant,
}

impl<'a, F: ConnectionFactory> Slow<'a, F> {
    /// Out of line, so that the fast path of `poll` stays small.
    #[cold]
    #[inline(never)]
    fn start(pool: &'a ConnectionPool<F>, candidate: Option<Popped<F::Connection>>) -> Self {
        let started = Instant::now();
        let deadline = started + pool.config().acquire_timeout();
        Slow {
            fut: Box::pin(pool.shared().acquire_slow(candidate, deadline)),
            timer: None,
            started,
            deadline,
        }
    }
}

impl<F: ConnectionFactory> fmt::Debug for Acquire<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire { .. }")
    }
}

impl<'a, F: ConnectionFactory> Future for Acquire<'a, F> {
    type Output = Result<PooledConnection<'a, F>, PoolError<F::Error>>;

    /// Inlined into the awaiting task: see `ConnectionPool::acquire_fast`.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let slow = match &mut this.slow {
            Some(slow) => slow,
            None => match this.pool.acquire_fast(this.location) {
                Ok(conn) => return Poll::Ready(Ok(conn)),
                Err(candidate) => this.slow.insert(Slow::start(this.pool, candidate)),
            },
        };
        let Poll::Ready(outcome) = slow.poll(this.pool, cx) else {
            return Poll::Pending;
        };
        let started = slow.started;
        // Cancellation safety: when the wait timed out, dropping the slow future here is what
        // a caller's own drop does; `Waiter` and the create/validate guards leave everything in
        // order. It is dropped before the error is built, so the error's snapshot never counts
        // this caller among the waiters.
        this.slow = None;
        Poll::Ready(match outcome {
            Some(result) => this.pool.finish_slow(result, started, this.location),
            None => Err(this.pool.timeout_error(started)),
        })
    }
}

impl<'a, F: ConnectionFactory> Slow<'a, F> {
    /// Polls the wait: `Some` with its result, `None` past the deadline. Out of line, so that
    /// the fast path inlined into callers stays small.
    #[inline(never)]
    fn poll(
        &mut self,
        pool: &'a ConnectionPool<F>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Acquired<F>>> {
        if let Poll::Ready(result) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        // Checked after every poll of the wait: a keeper that stops wakes every waiter.
        if self.timer.is_none() && !pool.shared().deadlines_kept() {
            self.timer = Some(Timer::at(self.deadline));
        }
        if let Some(timer) = self.timer.as_mut() {
            if Pin::new(timer).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

/// The future of [`ConnectionPool::close`].
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
/// let close: nexus_pool::futures::Close<'_, Units> = pool.close();
/// futures_lite::future::block_on(close);
/// assert!(pool.is_closed());
/// ```
#[must_use = "the pool is closed already; await this to wait until every connection is destroyed"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct Close<'a, F: ConnectionFactory> {
    pool: &'a ConnectionPool<F>,
    listener: Option<EventListener>,
}

impl<F: ConnectionFactory> fmt::Debug for Close<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Close { .. }")
    }
}

impl<F: ConnectionFactory> Future for Close<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.pool.shared().poll_drained(&mut this.listener, cx)
    }
}
