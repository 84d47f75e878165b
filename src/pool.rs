//! `ConnectionPool`: the public handle (an `Arc` inside, cheap to clone), its admin calls
//! (close, evict, resize, sweep, metrics), `try_acquire`, and the fast path and slow-path
//! bookkeeping both facades share; `WeakConnectionPool`, the handle that does not keep it open.
//! The builder is in `builder.rs`, the facades in `future.rs` and `blocking.rs`.

use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::connection::Lend;
use crate::core::{Outcome, Popped, Shared};
use crate::{
    ConfigError, ConnectionFactory, ConnectionPoolBuilder, ConnectionPoolConfig,
    OwnedPooledConnection, PoolError, PoolMetrics, PooledConnection, maintenance,
};

/// A pool of connections made by a [`ConnectionFactory`].
///
/// Clone it freely: clones share one pool. When the last clone is dropped the pool closes, as if
/// [`close_now`](ConnectionPool::close_now) had been called; owned guards and weak handles do not
/// keep it open (connections they still hold are destroyed when they come back).
///
/// Acquire from blocking threads with [`acquire_blocking`](ConnectionPool::acquire_blocking)
/// (feature `blocking`), from async tasks on any executor with
/// [`acquire`](ConnectionPool::acquire) (feature `async`), or without waiting with
/// [`try_acquire`](ConnectionPool::try_acquire). All three share one FIFO queue of waiters.
/// Each has an owned form (`acquire_owned`, `acquire_owned_blocking`, `try_acquire_owned`)
/// whose guard does not borrow the pool, and [`downgrade`](ConnectionPool::downgrade) gives a
/// handle that does not keep the pool open.
///
/// # Examples
///
/// ```
/// # #[cfg(all(feature = "blocking", feature = "async"))] {
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
///
/// struct Numbers;
/// impl ConnectionFactory for Numbers {
///     type Connection = u64;
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<u64, std::io::Error> { Ok(42) }
/// }
///
/// let config = ConnectionPoolConfig::builder().max_connections(4).build()?;
/// let pool = ConnectionPool::new(Numbers, config);
///
/// // From a blocking thread...
/// let conn = pool.acquire_blocking()?;
/// assert_eq!(*conn, 42);
/// drop(conn);
///
/// // ...and from async code, on any executor.
/// futures_lite::future::block_on(async {
///     let conn = pool.acquire().await?;
///     assert_eq!(*conn, 42);
///     Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
/// })?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectionPool<F: ConnectionFactory> {
    /// Read on every acquire: held here as well as in `handle`, so that reaching the state is
    /// one load, not two.
    shared: Arc<Shared<F>>,
    handle: Arc<Handle<F>>,
}

/// Closes the pool when the last `ConnectionPool` clone goes (the maintenance thread holds the
/// shared state itself, so it can finish destroying connections).
struct Handle<F: ConnectionFactory> {
    shared: Arc<Shared<F>>,
}

impl<F: ConnectionFactory> Drop for Handle<F> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<F: ConnectionFactory> Clone for ConnectionPool<F> {
    fn clone(&self) -> Self {
        ConnectionPool {
            shared: self.shared.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<F: ConnectionFactory> fmt::Debug for ConnectionPool<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPool")
            .field("name", &self.config().name())
            .field("metrics", &self.current_metrics())
            .finish_non_exhaustive()
    }
}

impl<F: ConnectionFactory> ConnectionPool<F> {
    /// Creates a pool with no health check. Connections are made on demand.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    ///
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// assert!(!pool.is_closed());
    /// ```
    pub fn new(factory: F, config: ConnectionPoolConfig) -> Self {
        ConnectionPool::builder(factory).build_valid(config)
    }

    /// Starts a builder, for a health check or other options.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionHealthCheck, ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    ///
    /// struct Fine;
    /// impl ConnectionHealthCheck<()> for Fine {
    ///     async fn is_healthy(&self, _: &mut ()) -> bool { true }
    /// }
    ///
    /// let pool = ConnectionPool::builder(Units)
    ///     .config(ConnectionPoolConfig::builder().max_connections(2).build()?)
    ///     .health_check(Fine)
    ///     .build()?;
    /// assert_eq!(pool.config().max_connections(), 2);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn builder(factory: F) -> ConnectionPoolBuilder<F> {
        ConnectionPoolBuilder::new(factory)
    }

    #[inline]
    pub(crate) fn shared(&self) -> &Shared<F> {
        &self.shared
    }

    pub(crate) fn shared_arc(&self) -> &Arc<Shared<F>> {
        &self.shared
    }

    /// The configuration the pool was built with.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// assert_eq!(pool.config().max_connections(), 10);
    /// ```
    pub fn config(&self) -> &ConnectionPoolConfig {
        &self.shared().config
    }

    /// Takes an idle connection without waiting.
    ///
    /// It never waits and never runs a user callback: it neither creates a connection nor runs
    /// checkout validation (both may wait on I/O), and with a health check configured it does not
    /// lend a used connection, since that must be reset first. Use it to shed load when the pool
    /// is busy.
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`] after [`close`](ConnectionPool::close); [`PoolError::Exhausted`] when
    /// no connection is idle and ready, or when other callers are already waiting (they come
    /// first).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)), "nothing idle yet");
    /// drop(pool.acquire_blocking()?);
    /// assert!(pool.try_acquire().is_ok(), "the returned connection is idle");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline(always)] // see `acquire_fast`
    pub fn try_acquire(&self) -> Result<PooledConnection<'_, F>, PoolError<F::Error>> {
        self.try_acquire_as(Location::caller())
    }

    /// [`try_acquire`](ConnectionPool::try_acquire) for an owned guard, which does not borrow the
    /// pool and so can move into a spawned task, a thread or a `'static` struct.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](ConnectionPool::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// assert!(matches!(pool.try_acquire_owned(), Err(PoolError::Exhausted)), "nothing idle yet");
    /// drop(pool.acquire_blocking()?);
    /// let conn = pool.try_acquire_owned()?;
    /// std::thread::spawn(move || drop(conn)).join().unwrap();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline(always)] // see `acquire_fast`
    pub fn try_acquire_owned(&self) -> Result<OwnedPooledConnection<F>, PoolError<F::Error>> {
        self.try_acquire_as(Location::caller())
    }

    /// `try_acquire` for either kind of guard.
    #[inline(always)]
    fn try_acquire_as<'a, G: Lend<'a, F>>(
        &'a self,
        location: &'static Location<'static>,
    ) -> Result<G, PoolError<F::Error>> {
        let shared = self.shared();
        // A connection whose session must be reset first (which may wait on I/O) is put back
        // for a caller that can wait; a clean one further on is lent. Health passes reset idle
        // connections in the background, so a pool at rest has clean ones.
        for _ in 0..shared.idle_count().max(1) {
            match shared.try_take_idle() {
                Some(popped) if !popped.reset => {
                    return Ok(G::lend(
                        &self.shared,
                        popped.entry,
                        Duration::ZERO,
                        location,
                    ));
                }
                Some(popped) => shared.push_idle(popped.entry, crate::core::Offer::Oldest),
                None => break,
            }
        }
        if shared.is_closed() {
            Err(PoolError::Closed)
        } else {
            Err(PoolError::Exhausted)
        }
    }

    /// The fast path shared by the facades: an idle connection ready to lend (`Ok`), or what
    /// the slow path must start from (`Err`, holding a popped connection due for validation).
    ///
    /// Inlined into the caller, as are the public functions around it (`acquire_blocking`,
    /// `try_acquire`, `Acquire::poll`): returned from a function call, the guard went through
    /// memory and the caller's copy of it stalled on a store-to-load forward, about a third of
    /// an uncontended cycle (perf). The slow paths stay out of line.
    #[inline(always)]
    pub(crate) fn acquire_fast<'a, G: Lend<'a, F>>(
        &'a self,
        location: &'static Location<'static>,
    ) -> Result<G, Option<Popped<F::Connection>>> {
        // Matched in place, not mapped from an intermediate `Result` holding the popped entry:
        // that cost the borrowed async cycle about 5 ns (benches/uncontended).
        match self.shared().try_take_idle() {
            Some(popped) if popped.is_ready() => Ok(G::lend(
                &self.shared,
                popped.entry,
                Duration::ZERO,
                location,
            )),
            candidate => Err(candidate),
        }
    }

    /// Wraps how the slow path ended (`core::timeout`): a guard, or the error.
    pub(crate) fn finish_slow<'a, G: Lend<'a, F>>(
        &'a self,
        outcome: Outcome<F>,
        started: Instant,
        location: &'static Location<'static>,
    ) -> Result<G, PoolError<F::Error>> {
        let (entry, waited) = self.shared().conclude(outcome, started)?;
        Ok(G::lend(&self.shared, entry, waited, location))
    }

    /// Returns a connection to the pool; the same as dropping the guard.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// let conn = pool.acquire_blocking()?;
    /// pool.release(conn);
    /// assert_eq!(pool.current_metrics().idle, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release(&self, conn: PooledConnection<'_, F>) {
        drop(conn);
    }

    /// Whether the pool has been closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// pool.close_blocking();
    /// assert!(pool.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Closes the pool without waiting: every waiter wakes with [`PoolError::Closed`], later
    /// acquires fail at once, idle connections are destroyed and lent ones are destroyed when
    /// they come back. Returns `false` if the pool was already closed.
    ///
    /// To wait until every connection is destroyed, use `close().await` (feature `async`) or
    /// [`close_blocking`](ConnectionPool::close_blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// assert!(pool.close_now());
    /// assert!(!pool.close_now(), "already closed");
    /// ```
    pub fn close_now(&self) -> bool {
        self.shared().close()
    }

    /// Marks every connection for replacement, e.g. after a database failover: idle ones are
    /// destroyed now, lent ones when they come back; new ones are made as demand needs.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let old = pool.acquire_blocking()?;
    /// pool.evict_all();
    /// drop(old); // destroyed, not reused
    /// assert_eq!(pool.acquire_blocking()?.use_count(), 1, "a new connection");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evict_all(&self) {
        self.shared().evict_all();
    }

    /// Changes `max_connections` while the pool runs, safely under load. Lowering it destroys
    /// idle connections now and returned ones until the pool fits; raising it lets waiters be
    /// served by new connections.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_connections` if `max` is 0, above the configured
    /// `max_connections_ceiling`, or below `min_connections`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().max_connections(4).max_connections_ceiling(16).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// pool.resize(16)?;
    /// assert_eq!(pool.current_metrics().max, 16);
    /// assert!(pool.resize(17).is_err());
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn resize(&self, max: usize) -> Result<(), ConfigError> {
        self.shared().resize(max)
    }

    /// Runs the idle sweep now instead of at the next maintenance tick: closes idle connections
    /// past `idle_timeout` (keeping `min_connections` idle) or `max_lifetime`, replaces evicted
    /// ones, and reports loans past `leak_detection_threshold`. The destroys themselves happen
    /// on the maintenance loop. Useful with a [`ManualClock`](crate::ManualClock) in tests.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// pool.sweep_idle();
    /// ```
    pub fn sweep_idle(&self) {
        self.shared().sweep();
    }

    /// What the pool has done since it was built: counters by cause and latency distributions.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// assert_eq!(pool.statistics().timed_out, 0);
    /// ```
    pub fn statistics(&self) -> crate::PoolStatistics {
        self.shared().statistics()
    }

    /// A snapshot of the pool's counters; cheap enough to call on every request.
    ///
    /// # Caveats
    ///
    /// A hint: the pool keeps running while it is read, so it may be stale at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
    /// let pool = ConnectionPool::new(Units, config);
    /// let m = pool.current_metrics();
    /// assert_eq!((m.total, m.idle, m.active, m.waiting, m.max), (0, 0, 0, 0, 10));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn current_metrics(&self) -> PoolMetrics {
        PoolMetrics::of(self.shared())
    }

    /// A weak handle: it reaches the pool without keeping it open, for event hooks and background
    /// tasks that must not outlive the application's own handles.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let weak = pool.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(pool); // the last strong handle: the pool closes
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn downgrade(&self) -> WeakConnectionPool<F> {
        WeakConnectionPool {
            handle: Arc::downgrade(&self.handle),
        }
    }

    /// Wraps shared state in a handle and starts the maintenance thread if the config says so.
    pub(crate) fn from_shared(shared: Arc<Shared<F>>) -> Self {
        maintenance::start(&shared);
        ConnectionPool {
            handle: Arc::new(Handle {
                shared: shared.clone(),
            }),
            shared,
        }
    }
}

/// A handle to a [`ConnectionPool`] that does not keep it open: made by
/// [`ConnectionPool::downgrade`], turned back into a pool handle by
/// [`upgrade`](WeakConnectionPool::upgrade) while some strong handle is alive.
///
/// Owned guards ([`OwnedPooledConnection`]) do not count as strong handles either: once the
/// last [`ConnectionPool`] is dropped, `upgrade` fails even while connections are still lent.
///
/// # Examples
///
/// ```
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, WeakConnectionPool};
/// # use nexus_pool::doc_support::Units;
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let weak: WeakConnectionPool<Units> = pool.downgrade();
/// // A background task that stops by itself once the application drops its pool.
/// let task = std::thread::spawn(move || {
///     while let Some(pool) = weak.upgrade() {
///         let _ = pool.current_metrics();
///         drop(pool); // never hold the strong handle between rounds
///         std::thread::yield_now();
///     }
/// });
/// drop(pool);
/// task.join().unwrap();
/// ```
pub struct WeakConnectionPool<F: ConnectionFactory> {
    /// Weak on the `Handle`, whose drop closes the pool, so that upgrading fails exactly when
    /// the pool was closed for want of handles. It does not keep the shared state alive.
    handle: Weak<Handle<F>>,
}

impl<F: ConnectionFactory> WeakConnectionPool<F> {
    /// A strong handle to the pool, or `None` once every [`ConnectionPool`] handle was dropped.
    ///
    /// A pool closed with [`close_now`](ConnectionPool::close_now) while handles remain still
    /// upgrades (to a closed pool): check [`is_closed`](ConnectionPool::is_closed).
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let weak = pool.downgrade();
    /// let again = weak.upgrade().expect("a strong handle is alive");
    /// drop(pool);
    /// assert!(!again.is_closed(), "the upgraded handle keeps the pool open");
    /// drop(again);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<ConnectionPool<F>> {
        let handle = self.handle.upgrade()?;
        Some(ConnectionPool {
            shared: handle.shared.clone(),
            handle,
        })
    }
}

impl<F: ConnectionFactory> Clone for WeakConnectionPool<F> {
    fn clone(&self) -> Self {
        WeakConnectionPool {
            handle: self.handle.clone(),
        }
    }
}

impl<F: ConnectionFactory> fmt::Debug for WeakConnectionPool<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakConnectionPool { .. }")
    }
}
