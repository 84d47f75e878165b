//! Scoped use: `with_connection` (acquire, run, release, whatever happens) and
//! `ConnectionScope` (several connections, possibly from several pools, tracked together).

use std::fmt;
#[cfg(feature = "async")]
use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
#[cfg(any(feature = "async", feature = "blocking"))]
use std::panic::Location;
use std::sync::Mutex;
use std::time::Instant;

#[cfg(any(feature = "async", feature = "blocking"))]
use crate::PoolError;
use crate::{ConnectionFactory, ConnectionPool, PooledConnection};

impl<F: ConnectionFactory> ConnectionPool<F> {
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
    /// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};
    ///
    /// struct Buffers;
    /// impl ConnectionFactory for Buffers {
    ///     type Connection = Vec<u8>;
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    /// }
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
    #[cfg(feature = "async")]
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};
    /// # struct Buffers;
    /// # impl ConnectionFactory for Buffers {
    /// #     type Connection = Vec<u8>; type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
    /// # }
    /// let config = ConnectionPoolConfig::builder().min_connections(0).build().unwrap();
    /// let pool = ConnectionPool::new(Buffers, config);
    /// let result = pool.with_connection_blocking(|conn| {
    ///     conn.push(1);
    ///     Err::<(), _>(PoolError::Exhausted) // an error still releases the connection
    /// });
    /// assert!(result.is_err());
    /// assert_eq!(pool.current_metrics().idle, 1);
    /// ```
    #[cfg(feature = "blocking")]
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
}

/// What a [`ConnectionScope`] holds: one entry per borrowed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldConnection {
    /// The name of the pool it came from.
    pub pool: String,
    /// When the scope borrowed it.
    pub acquired_at: Instant,
}

/// Borrows connections, possibly from several pools, and keeps track of them. Every connection
/// borrowed through a scope is released when its guard drops, and the borrow checker makes sure
/// that happens before the scope ends: a [`ScopedConnection`] cannot outlive its scope.
///
/// # Examples
///
/// ```
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope};
///
/// struct Units;
/// impl ConnectionFactory for Units {
///     type Connection = ();
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// }
///
/// let config = |name| ConnectionPoolConfig::builder().name(name).min_connections(0).build();
/// let orders = ConnectionPool::new(Units, config("orders")?);
/// let users = ConnectionPool::new(Units, config("users")?);
/// {
///     let scope = ConnectionScope::new();
///     let _a = scope.acquire_blocking(&orders)?;
///     let _b = scope.acquire_blocking(&users)?;
///     let pools: Vec<String> = scope.held().into_iter().map(|h| h.pool).collect();
///     assert_eq!(pools, ["orders", "users"]);
/// } // both released here
/// assert_eq!(orders.current_metrics().idle, 1);
/// assert_eq!(users.current_metrics().idle, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct ConnectionScope {
    held: Mutex<Vec<(u64, HeldConnection)>>,
    next_id: Mutex<u64>,
}

impl fmt::Debug for ConnectionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionScope")
            .field("held", &self.held())
            .finish()
    }
}

impl ConnectionScope {
    /// An empty scope.
    ///
    /// # Examples
    ///
    /// ```
    /// let scope = nexus_pool::ConnectionScope::new();
    /// assert!(scope.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Acquires a connection from `pool` and tracks it in this scope.
    ///
    /// # Errors
    ///
    /// As [`ConnectionPool::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # struct Units;
    /// # impl ConnectionFactory for Units {
    /// #     type Connection = (); type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
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
    #[cfg(feature = "async")]
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # struct Units;
    /// # impl ConnectionFactory for Units {
    /// #     type Connection = (); type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let scope = ConnectionScope::new();
    /// let _conn = scope.acquire_blocking(&pool)?;
    /// assert_eq!(scope.held()[0].pool, "nexus-pool");
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[cfg(feature = "blocking")]
    #[track_caller]
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn acquire_blocking<'s, 'p, F: ConnectionFactory>(
        &'s self,
        pool: &'p ConnectionPool<F>,
    ) -> Result<ScopedConnection<'s, 'p, F>, PoolError<F::Error>> {
        let conn = pool.acquire_blocking_at(Location::caller())?;
        Ok(self.track(pool.config().name().to_owned(), conn))
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # struct Units;
    /// # impl ConnectionFactory for Units {
    /// #     type Connection = (); type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
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
    #[cfg(feature = "async")]
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
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope};
    /// # struct Units;
    /// # impl ConnectionFactory for Units {
    /// #     type Connection = (); type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
    /// let scope = ConnectionScope::new();
    /// let conn = scope.acquire_owned_blocking(&pool)?;
    /// assert_eq!(conn.use_count(), 1); // derefs to the owned guard
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    #[cfg(feature = "blocking")]
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    #[track_caller]
    pub fn acquire_owned_blocking<'s, F: ConnectionFactory>(
        &'s self,
        pool: &ConnectionPool<F>,
    ) -> Result<OwnedScopedConnection<'s, F>, PoolError<F::Error>> {
        let conn = pool.acquire_blocking_at(Location::caller())?;
        Ok(self.track(pool.config().name().to_owned(), conn))
    }

    fn track<'s, 'p, F: ConnectionFactory, G>(
        &'s self,
        pool: String,
        conn: G,
    ) -> ScopedConnection<'s, 'p, F, G> {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next
        };
        let held = HeldConnection {
            pool,
            acquired_at: Instant::now(),
        };
        lock(&self.held).push((id, held));
        ScopedConnection {
            conn,
            scope: self,
            id,
            _pool: PhantomData,
        }
    }

    /// The connections borrowed through this scope and not yet released, oldest first.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(nexus_pool::ConnectionScope::new().held().is_empty());
    /// ```
    pub fn held(&self) -> Vec<HeldConnection> {
        lock(&self.held).iter().map(|(_, h)| h.clone()).collect()
    }

    /// How many connections the scope holds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionScope::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        lock(&self.held).len()
    }

    /// Whether the scope holds no connection.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(nexus_pool::ConnectionScope::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection borrowed through a [`ConnectionScope`]; derefs to the pool's guard and releases
/// the connection (and leaves the scope) when dropped.
///
/// `G` is the guard inside: a [`PooledConnection`] borrowed from a pool that lives for `'p`, or
/// an [`OwnedPooledConnection`](crate::OwnedPooledConnection) (see [`OwnedScopedConnection`]).
///
/// # Examples
///
/// ```
/// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope, ScopedConnection};
/// # struct Units;
/// # impl ConnectionFactory for Units {
/// #     type Connection = (); type Error = std::io::Error;
/// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let scope = ConnectionScope::new();
/// let conn: ScopedConnection<'_, '_, Units> = scope.acquire_blocking(&pool)?;
/// assert_eq!(conn.use_count(), 1);
/// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
/// ```
#[clippy::has_significant_drop]
#[must_use = "dropping the guard returns the connection at once"]
pub struct ScopedConnection<'s, 'p, F: ConnectionFactory, G = PooledConnection<'p, F>> {
    conn: G,
    scope: &'s ConnectionScope,
    id: u64,
    /// Ties `'p` and `F` to the type when `G` is an owned guard, which names neither.
    _pool: PhantomData<&'p ConnectionPool<F>>,
}

/// A connection borrowed through a [`ConnectionScope`] with an owned guard inside: it borrows
/// the scope, not the pool. Made by [`ConnectionScope::acquire_owned`] and
/// [`ConnectionScope::acquire_owned_blocking`].
///
/// # Examples
///
/// ```
/// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, ConnectionScope, OwnedScopedConnection};
/// # struct Units;
/// # impl ConnectionFactory for Units {
/// #     type Connection = (); type Error = std::io::Error;
/// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let scope = ConnectionScope::new();
/// let conn: OwnedScopedConnection<'_, Units> = scope.acquire_owned_blocking(&pool)?;
/// assert!(conn.is_healthy());
/// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
/// ```
pub type OwnedScopedConnection<'s, F> =
    ScopedConnection<'s, 'static, F, crate::OwnedPooledConnection<F>>;

impl<F: ConnectionFactory, G> Deref for ScopedConnection<'_, '_, F, G> {
    type Target = G;

    fn deref(&self) -> &G {
        &self.conn
    }
}

impl<F: ConnectionFactory, G> DerefMut for ScopedConnection<'_, '_, F, G> {
    fn deref_mut(&mut self) -> &mut G {
        &mut self.conn
    }
}

impl<F: ConnectionFactory, G> Drop for ScopedConnection<'_, '_, F, G> {
    fn drop(&mut self) {
        lock(&self.scope.held).retain(|(id, _)| *id != self.id);
    }
}

impl<F: ConnectionFactory, G: fmt::Debug> fmt::Debug for ScopedConnection<'_, '_, F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedConnection")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}
