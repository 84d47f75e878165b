//! `ConnectionScope`: several connections, possibly from several pools, tracked together, and
//! `ScopedConnection`, the guard that leaves the scope when it drops. The scope's acquires are
//! in the facades (`future.rs`, `blocking.rs`), as are `with_connection` and
//! `with_connection_blocking`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Instant;

use crate::{ConnectionFactory, ConnectionPool, PooledConnection};

/// What a [`ConnectionScope`] holds: one entry per borrowed connection.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// # use nexus_pool::doc_support::Units;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope, HeldConnection};
///
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::builder().name("orders").build()?);
/// let scope = ConnectionScope::new();
/// let _conn = scope.acquire_blocking(&pool)?;
/// let held: Vec<HeldConnection> = scope.held();
/// assert_eq!(held[0].pool, "orders");
/// assert!(held[0].acquired_at <= std::time::Instant::now());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope};
/// # use nexus_pool::doc_support::Units;
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

    /// Tracks `conn`, borrowed from the pool named `pool`, in this scope.
    pub(crate) fn track<'s, 'p, F: ConnectionFactory, G>(
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
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope, ScopedConnection};
/// # use nexus_pool::doc_support::Units;
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
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionScope, OwnedScopedConnection};
/// # use nexus_pool::doc_support::Units;
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
