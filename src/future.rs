//! The async facade: `acquire().await`, `close().await` and `with_connection`, as named futures
//! that run on any executor. No runtime is required: the pool's maintenance loop ends waits that
//! pass `acquire_timeout`, with one `async-io` timer for all waiters; where it does not run (a
//! spawned maintenance future not polled), each wait arms an `async-io` timer of its own.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::EventListener;

use crate::core::{Acquired, Popped, Shared, SlowAcquire, Timer, WaiterKind};
use crate::pool::{record_slow, timeout_error};
use crate::{
    ConnectionFactory, ConnectionPool, OwnedPooledConnection, PoolError, PooledConnection,
};

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

    /// [`acquire`](ConnectionPool::acquire) for an owned guard, which does not borrow the pool:
    /// the guard, and this future, are `'static`, so both can move into `tokio::spawn`,
    /// `smol::spawn` or a struct of your own. Same timeout, same FIFO queue, same cancellation
    /// safety.
    ///
    /// The future holds the pool's shared state, not a pool handle: if every
    /// [`ConnectionPool`] handle is dropped while it waits, it ends with [`PoolError::Closed`].
    ///
    /// # Errors
    ///
    /// As [`acquire`](ConnectionPool::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, OwnedPooledConnection};
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
    /// let conn: OwnedPooledConnection<Numbers> = pool.acquire_owned().await?;
    /// // `'static`: it can outlive this borrow of `pool`, e.g. inside a spawned task.
    /// let work = std::thread::spawn(move || *conn * 10);
    /// assert_eq!(work.join().unwrap(), 10);
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub fn acquire_owned(&self) -> AcquireOwned<F> {
        self.acquire_owned_at(Location::caller())
    }

    /// `acquire_owned`, recording `location` as where the connection was asked for.
    pub(crate) fn acquire_owned_at(&self, location: &'static Location<'static>) -> AcquireOwned<F> {
        AcquireOwned {
            shared: Some(Arc::clone(self.shared_arc())),
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
    slow: Option<Slow<'a, F, &'a Shared<F>>>,
    location: &'static Location<'static>,
}

/// An acquire that could not be served from the idle queue at once: the slow path's state
/// machine, held inline (a waiting acquire allocates nothing), and its fallback timer. `S` is how
/// it reaches the pool: a borrow, or the owned future's `Arc`.
struct Slow<'a, F: ConnectionFactory, S: Deref<Target = Shared<F>>> {
    wait: SlowAcquire<'a, F, S>,
    /// Armed only while no deadline keeper runs (see `core::waitlist`): a timer per wait costs
    /// a system call and a wake-up of async-io's reactor thread.
    timer: Option<Timer>,
    started: Instant,
    deadline: Instant,
}

impl<'a, F, S> Slow<'a, F, S>
where
    F: ConnectionFactory,
    S: Deref<Target = Shared<F>> + Clone + Send + 'a,
{
    /// Out of line, so that the fast path of `poll` stays small.
    #[cold]
    #[inline(never)]
    fn start(shared: S, candidate: Option<Popped<F::Connection>>) -> Self {
        let started = Instant::now();
        let deadline = started + shared.config.acquire_timeout();
        Slow {
            wait: SlowAcquire::new(shared, candidate, deadline, WaiterKind::Task),
            timer: None,
            started,
            deadline,
        }
    }

    /// Polls the wait: `Some` with its result, `None` past the deadline. Out of line, so that
    /// the fast path inlined into callers stays small.
    #[inline(never)]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Acquired<F>>> {
        if let Poll::Ready(result) = self.wait.poll(cx) {
            return Poll::Ready(result);
        }
        // Checked after every poll of the wait: a keeper that stops wakes every waiter.
        if self.timer.is_none() && !self.wait.shared().deadlines_kept() {
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
                Err(candidate) => this.slow.insert(Slow::start(this.pool.shared(), candidate)),
            },
        };
        let Poll::Ready(outcome) = slow.poll(cx) else {
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
            None => Err(timeout_error(this.pool.shared(), started)),
        })
    }
}

/// The future of [`ConnectionPool::acquire_owned`]: `'static`, it holds the pool's shared state
/// by `Arc` and hands that same `Arc` to the guard it resolves to.
///
/// # Panics
///
/// Polling it again after it returned `Ready` panics.
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
/// let acquire: nexus_pool::futures::AcquireOwned<Units> = pool.acquire_owned();
/// drop(pool); // the future does not borrow the pool, and keeps the state it needs alive
/// assert!(futures_lite::future::block_on(acquire).is_err(), "the pool closed with its last handle");
/// ```
#[must_use = "futures do nothing unless polled"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct AcquireOwned<F: ConnectionFactory> {
    /// Moved into the guard on success, so the owned fast path costs the one count taken in
    /// `acquire_owned`. `None` once the future has completed.
    shared: Option<Arc<Shared<F>>>,
    slow: Option<Slow<'static, F, Arc<Shared<F>>>>,
    location: &'static Location<'static>,
}

impl<F: ConnectionFactory> fmt::Debug for AcquireOwned<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcquireOwned { .. }")
    }
}

impl<F: ConnectionFactory> Future for AcquireOwned<F> {
    type Output = Result<OwnedPooledConnection<F>, PoolError<F::Error>>;

    /// The same steps as `Acquire::poll`, over an owned `Arc`.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(shared) = &this.shared else {
            panic!("`AcquireOwned` polled after completion");
        };
        let slow = match &mut this.slow {
            Some(slow) => slow,
            // Matched in place, as in `ConnectionPool::acquire_fast`: an intermediate `Result`
            // costs the cycle a few ns.
            None => match shared.try_take_idle() {
                Some(popped) if popped.is_ready() => {
                    return Poll::Ready(Ok(this.lend(popped.entry, Duration::ZERO)));
                }
                candidate => this.slow.insert(Slow::start(Arc::clone(shared), candidate)),
            },
        };
        let Poll::Ready(outcome) = slow.poll(cx) else {
            return Poll::Pending;
        };
        let started = slow.started;
        // Cancellation safety: as in `Acquire::poll`, the slow future is dropped before the
        // result is wrapped, leaving the wait list as a caller's own drop would.
        this.slow = None;
        Poll::Ready(match outcome {
            Some(Ok(entry)) => {
                let waited = record_slow(shared, started);
                Ok(this.lend(entry, waited))
            }
            Some(Err(err)) => {
                this.shared = None;
                Err(err)
            }
            None => {
                let err = timeout_error(shared, started);
                this.shared = None;
                Err(err)
            }
        })
    }
}

impl<F: ConnectionFactory> AcquireOwned<F> {
    /// Wraps `entry` in a guard that takes over this future's `Arc`.
    #[inline(always)]
    fn lend(
        &mut self,
        entry: crate::core::Entry<F::Connection>,
        waited: Duration,
    ) -> OwnedPooledConnection<F> {
        match self.shared.take() {
            Some(shared) => OwnedPooledConnection::new(shared, entry, waited, self.location),
            None => unreachable!("checked at the top of `poll`"),
        }
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
