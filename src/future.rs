//! The named futures, and the methods that return them.
//!
//! The async facade (feature `async`): `acquire().await`, `acquire_owned().await`,
//! `close().await`, `with_connection`, the scope's `acquire` and `acquire_owned`, and
//! `metrics_stream`, as named futures and a stream that run on any executor. No runtime is
//! required: the pool's maintenance loop ends waits that pass `acquire_timeout`, with one
//! `async-io` timer for all waiters; where it does not run (a spawned maintenance future not
//! polled), each wait arms an `async-io` timer of its own.
//!
//! Two futures need no feature, since any executor or a thread's own `block_on` can drive them:
//! [`Maintenance`], the maintenance loop of a pool configured with
//! [`MaintenanceMode::Spawned`](crate::MaintenanceMode::Spawned), and
//! `ConnectionPoolBuilder::build_connected`, which makes `min_connections` before it returns
//! the pool.

use std::fmt;
use std::future::Future;
#[cfg(feature = "async")]
use std::ops::Deref;
#[cfg(feature = "async")]
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
#[cfg(feature = "async")]
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
use event_listener::EventListener;
#[cfg(feature = "async")]
use futures_lite::Stream;

use crate::core::Shared;
#[cfg(feature = "async")]
use crate::core::{Outcome, Popped, SlowAcquire, Timer, WaiterKind};
use crate::factory::BoxFuture;
#[cfg(feature = "async")]
#[cfg(feature = "async")]
use crate::snapshot::Ticks;
use crate::{
    ConnectionFactory, ConnectionPool, ConnectionPoolBuilder, MaintenanceMode, PoolError,
    maintenance,
};
#[cfg(feature = "async")]
use crate::{
    ConnectionScope, OwnedPooledConnection, OwnedScopedConnection, PoolMetrics, PooledConnection,
    ScopedConnection,
};

#[cfg(feature = "async")]
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
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Numbers;
    ///
    /// # futures_lite::future::block_on(async {
    /// let pool = ConnectionPool::new(Numbers(1), ConnectionPoolConfig::default());
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
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, OwnedPooledConnection};
    /// # use nexus_pool::doc_support::Numbers;
    ///
    /// # futures_lite::future::block_on(async {
    /// let pool = ConnectionPool::new(Numbers(1), ConnectionPoolConfig::default());
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
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # use nexus_pool::doc_support::Units;
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

    /// Acquires a connection, runs `f` with it, and releases it, whether `f` succeeds, returns an
    /// error or panics. A connection whose user panicked is destroyed, not reused.
    ///
    /// # Errors
    ///
    /// What `f` returns, or the acquire's [`PoolError`] converted into `f`'s error type.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # use nexus_pool::doc_support::Buffers;
    ///
    /// # futures_lite::future::block_on(async {
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build().unwrap();
    /// let pool = ConnectionPool::new(Buffers, config);
    /// let len = pool
    ///     .with_connection(async |conn| {
    ///         conn.extend_from_slice(b"hello");
    ///         Ok::<_, PoolError<std::io::Error>>(conn.len())
    ///     })
    ///     .await?;
    /// assert_eq!(len, 5);
    /// assert_eq!(pool.current_metrics().idle, 1, "released after the closure");
    /// # Ok::<(), PoolError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub fn with_connection<R, E>(
        &self,
        f: impl AsyncFnOnce(&mut PooledConnection<'_, F>) -> Result<R, E>,
    ) -> impl Future<Output = Result<R, E>>
    where
        E: From<PoolError<F::Error>>,
    {
        let acquire = self.acquire_at(Location::caller());
        async move {
            let mut conn = acquire.await?;
            f(&mut conn).await
        }
    }

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
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
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

#[cfg(feature = "async")]
impl ConnectionScope {
    /// Acquires a connection from `pool` and tracks it in this scope.
    ///
    /// # Errors
    ///
    /// As [`ConnectionPool::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # use nexus_pool::doc_support::Units;
    /// # futures_lite::future::block_on(async {
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let scope = ConnectionScope::new();
    /// let conn = scope.acquire(&pool).await?;
    /// assert_eq!(scope.len(), 1);
    /// drop(conn);
    /// assert!(scope.is_empty());
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub fn acquire<'s, 'p, F: ConnectionFactory>(
        &'s self,
        pool: &'p ConnectionPool<F>,
    ) -> impl Future<Output = Result<ScopedConnection<'s, 'p, F>, PoolError<F::Error>>> {
        let acquire = pool.acquire_at(Location::caller());
        async move {
            let conn = acquire.await?;
            Ok(self.track(pool.config().name().to_owned(), conn))
        }
    }

    /// [`acquire`](ConnectionScope::acquire) with an owned guard inside: the scoped connection
    /// borrows the scope but not the pool.
    ///
    /// # Errors
    ///
    /// As [`ConnectionPool::acquire_owned`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # use nexus_pool::doc_support::Units;
    /// # futures_lite::future::block_on(async {
    /// let scope = ConnectionScope::new();
    /// let conn = {
    ///     let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    ///     scope.acquire_owned(&pool).await?
    /// }; // the pool handle is gone (the pool closed); the connection is still lent
    /// assert_eq!(scope.len(), 1);
    /// drop(conn);
    /// assert!(scope.is_empty());
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// # }).unwrap();
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    #[track_caller]
    pub fn acquire_owned<'s, F: ConnectionFactory>(
        &'s self,
        pool: &ConnectionPool<F>,
    ) -> impl Future<Output = Result<OwnedScopedConnection<'s, F>, PoolError<F::Error>>> + use<'s, F>
    {
        let acquire = pool.acquire_owned_at(Location::caller());
        let name = pool.config().name().to_owned();
        async move {
            let conn = acquire.await?;
            Ok(self.track(name, conn))
        }
    }
}

/// The future of [`ConnectionPool::acquire`].
///
/// # Examples
///
/// ```
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let acquire: nexus_pool::futures::Acquire<'_, Units> = pool.acquire();
/// assert!(futures_lite::future::block_on(acquire).is_ok());
/// ```
#[cfg(feature = "async")]
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
#[cfg(feature = "async")]
struct Slow<'a, F: ConnectionFactory, S: Deref<Target = Shared<F>>> {
    wait: SlowAcquire<'a, F, S>,
    /// Armed only while no deadline keeper runs (see `core::waitlist`): a timer per wait costs
    /// a system call and a wake-up of async-io's reactor thread.
    timer: Option<Timer>,
    started: Instant,
    deadline: Instant,
}

#[cfg(feature = "async")]
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

    /// Polls the wait to its outcome; this future's own timer is one of the ways it can time
    /// out (see `core::timeout`). Out of line, so that the fast path inlined into callers stays
    /// small.
    #[inline(never)]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<F>> {
        if let Poll::Ready(result) = self.wait.poll(cx) {
            return Poll::Ready(result);
        }
        // Checked after every poll of the wait: a keeper that stops wakes every waiter.
        if self.timer.is_none() && !self.wait.shared().deadlines_kept() {
            self.timer = Some(Timer::at(self.deadline));
        }
        if let Some(timer) = self.timer.as_mut() {
            if Pin::new(timer).poll(cx).is_ready() {
                return Poll::Ready(Outcome::TimedOut);
            }
        }
        Poll::Pending
    }
}

#[cfg(feature = "async")]
impl<F: ConnectionFactory> fmt::Debug for Acquire<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire { .. }")
    }
}

#[cfg(feature = "async")]
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
        Poll::Ready(this.pool.finish_slow(outcome, started, this.location))
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
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let acquire: nexus_pool::futures::AcquireOwned<Units> = pool.acquire_owned();
/// drop(pool); // the future does not borrow the pool, and keeps the state it needs alive
/// assert!(futures_lite::future::block_on(acquire).is_err(), "the pool closed with its last handle");
/// ```
#[cfg(feature = "async")]
#[must_use = "futures do nothing unless polled"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct AcquireOwned<F: ConnectionFactory> {
    /// Moved into the guard on success, so the owned fast path costs the one count taken in
    /// `acquire_owned`. `None` once the future has completed.
    shared: Option<Arc<Shared<F>>>,
    slow: Option<Slow<'static, F, Arc<Shared<F>>>>,
    location: &'static Location<'static>,
}

#[cfg(feature = "async")]
impl<F: ConnectionFactory> fmt::Debug for AcquireOwned<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcquireOwned { .. }")
    }
}

#[cfg(feature = "async")]
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
        Poll::Ready(match shared.conclude(outcome, started) {
            Ok((entry, waited)) => Ok(this.lend(entry, waited)),
            Err(err) => {
                this.shared = None;
                Err(err)
            }
        })
    }
}

#[cfg(feature = "async")]
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
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let close: nexus_pool::futures::Close<'_, Units> = pool.close();
/// futures_lite::future::block_on(close);
/// assert!(pool.is_closed());
/// ```
#[cfg(feature = "async")]
#[must_use = "the pool is closed already; await this to wait until every connection is destroyed"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct Close<'a, F: ConnectionFactory> {
    pool: &'a ConnectionPool<F>,
    listener: Option<EventListener>,
}

#[cfg(feature = "async")]
impl<F: ConnectionFactory> fmt::Debug for Close<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Close { .. }")
    }
}

#[cfg(feature = "async")]
impl<F: ConnectionFactory> Future for Close<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.pool.shared().poll_drained(&mut this.listener, cx)
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
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, MetricsStream};
/// # use nexus_pool::doc_support::Units;
///
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let stream: MetricsStream = pool.metrics_stream(Duration::from_millis(5));
/// // Any executor, or none: here, three snapshots on the calling thread.
/// let three: Vec<_> = futures_lite::future::block_on(stream.take(3).collect());
/// assert_eq!(three.len(), 3);
/// assert!(three.iter().all(|m| m.max == 10));
/// ```
#[cfg(feature = "async")]
#[must_use = "streams do nothing unless polled"]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub struct MetricsStream {
    ticks: Ticks,
    /// Fires when the next snapshot is due.
    timer: Timer,
    /// Registered on the pool's `closing` event before each check of `is_closed`.
    closing: Option<EventListener>,
}

#[cfg(feature = "async")]
impl fmt::Debug for MetricsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsStream")
            .field("interval", &self.ticks.interval)
            .field("done", &self.ticks.done)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "async")]
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

impl<F: ConnectionFactory> ConnectionPoolBuilder<F> {
    /// Builds the pool after making `min_connections` on the calling task, so it starts full
    /// or not at all.
    ///
    /// # Errors
    ///
    /// [`PoolError::Config`] for a setting the builder refuses; [`PoolError::Create`] with why
    /// the first create that failed did (each is bounded by `create_timeout`); the connections
    /// made so far are destroyed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// # futures_lite::future::block_on(async {
    /// let config = ConnectionPoolConfig::builder().min_connections(3).build()?;
    /// let pool = ConnectionPool::builder(Units).config(config).build_connected().await?;
    /// assert_eq!(pool.current_metrics().idle, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn build_connected(self) -> Result<ConnectionPool<F>, PoolError<F::Error>> {
        let shared = self.into_shared().map_err(PoolError::Config)?;
        for _ in 0..shared.config.min_connections() {
            let created = match shared.reserve() {
                Some(slot) => shared.create_one(slot).await,
                None => Ok(()),
            };
            if let Err(err) = created {
                // Closing destroys what was made; with no maintenance running, do it here.
                shared.close();
                while shared.destroy_one_retiring().await {}
                return Err(PoolError::Create(err));
            }
        }
        Ok(ConnectionPool::from_shared(shared))
    }
}

impl<F: ConnectionFactory> ConnectionPool<F> {
    /// The maintenance loop as a future, for a pool configured with
    /// [`MaintenanceMode::Spawned`](crate::MaintenanceMode::Spawned): spawn it on any executor. It
    /// ends once the pool is closed and every connection is destroyed. For a pool that runs its
    /// own maintenance thread (the default), or if called a second time, the future ends at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, MaintenanceMode};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().maintenance(MaintenanceMode::Spawned).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// let maintenance = std::thread::spawn({
    ///     let task = pool.maintenance();
    ///     move || futures_lite::future::block_on(task)
    /// });
    /// pool.close_now();
    /// maintenance.join().unwrap();
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn maintenance(&self) -> Maintenance {
        Maintenance::new(self.shared_arc())
    }
}

/// The maintenance loop of a pool, from [`ConnectionPool::maintenance`].
///
/// # Examples
///
/// ```
/// # use nexus_pool::doc_support::Units;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, Maintenance};
///
/// // A pool that runs its own maintenance thread (the default) has nothing to spawn: the
/// // future ends at once.
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let maintenance: Maintenance = pool.maintenance();
/// futures_lite::future::block_on(maintenance);
/// assert!(!pool.is_closed());
/// ```
#[must_use = "futures do nothing unless polled; spawn it on an executor"]
pub struct Maintenance {
    run: Option<BoxFuture<'static, ()>>,
}

impl fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Maintenance { .. }")
    }
}

impl Maintenance {
    pub(crate) fn new<F: ConnectionFactory>(shared: &Arc<Shared<F>>) -> Self {
        let spawned = shared.config.maintenance() == MaintenanceMode::Spawned;
        let run = (spawned && shared.claim_maintenance()).then(|| {
            let shared = shared.clone();
            Box::pin(async move { maintenance::run_spawned(&shared).await })
                as BoxFuture<'static, ()>
        });
        Maintenance { run }
    }
}

impl Future for Maintenance {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.run.as_mut() {
            Some(run) => run.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}
