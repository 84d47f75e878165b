//! The RAII guards that lend a connection and give it back on drop: `PooledConnection`, which
//! borrows the pool, and `OwnedPooledConnection`, which holds the pool's shared state by `Arc`
//! and so is `'static`.
//!
//! Both wrap one private `Loan`, generic over how it reaches the shared state (`&Shared` or
//! `Arc<Shared>`), so the release path, the metadata and the drop rules exist once. The
//! borrowed guard monomorphises to a plain reference: no reference count on its path.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ConnectionFactory;
use crate::core::{DestroyReason, Entry, LeakId, Shared};

/// One loan of a connection, whichever way the guard reaches the pool (`S` derefs to it).
struct Loan<F: ConnectionFactory, S: Deref<Target = Shared<F>>> {
    shared: S,
    /// `None` only after `detach`, or transiently inside `drop`.
    entry: Option<Entry<F::Connection>>,
    broken: bool,
    leak: LeakId,
}

impl<F: ConnectionFactory, S: Deref<Target = Shared<F>>> Loan<F, S> {
    #[inline(always)]
    fn new(
        shared: S,
        mut entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self {
        entry.use_count += 1;
        entry.dirty = true;
        let leak = shared.lent(&entry, waited, location);
        Loan {
            shared,
            entry: Some(entry),
            broken: false,
            leak,
        }
    }

    #[inline]
    fn entry(&self) -> &Entry<F::Connection> {
        match &self.entry {
            Some(entry) => entry,
            None => unreachable!("a guard holds its connection until it is dropped"),
        }
    }

    #[inline]
    fn conn_mut(&mut self) -> &mut F::Connection {
        match &mut self.entry {
            Some(entry) => &mut entry.conn,
            None => unreachable!("a guard holds its connection until it is dropped"),
        }
    }

    fn created_at(&self) -> Instant {
        self.shared.instant(self.entry().created_at)
    }

    fn last_used_at(&self) -> Instant {
        self.shared.instant(self.entry().last_used_at)
    }

    fn detach(mut self) -> F::Connection {
        let entry = match self.entry.take() {
            Some(entry) => entry,
            None => unreachable!("a guard holds its connection until it is dropped"),
        };
        self.shared.connection_gone();
        if let Some(leaks) = self.shared.leak_registry() {
            leaks.unregister(self.leak);
        }
        entry.into_conn()
    }

    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("use_count", &self.entry.as_ref().map(|e| e.use_count))
            .field("healthy", &!self.broken)
            .finish_non_exhaustive()
    }
}

impl<F: ConnectionFactory, S: Deref<Target = Shared<F>>> Drop for Loan<F, S> {
    #[inline]
    fn drop(&mut self) {
        // Runs before the fields drop: an owned guard gives the connection back while its `Arc`
        // still keeps the shared state alive, and lets go of the `Arc` only afterwards.
        if let Some(entry) = self.entry.take() {
            let broken = if std::thread::panicking() {
                // The holder panicked: the session may be mid-transaction. Never reuse it.
                Some(DestroyReason::Panicked)
            } else if self.broken {
                Some(DestroyReason::Broken)
            } else {
                None
            };
            self.shared.release(entry, broken, self.leak);
        }
    }
}

/// How each kind of guard is made from the `Arc` a pool handle holds, so that one generic fast
/// path serves both (`ConnectionPool::acquire_fast`).
pub(crate) trait Lend<'a, F: ConnectionFactory>: Sized {
    fn lend(
        shared: &'a Arc<Shared<F>>,
        entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self;
}

impl<'a, F: ConnectionFactory> Lend<'a, F> for PooledConnection<'a, F> {
    #[inline(always)]
    fn lend(
        shared: &'a Arc<Shared<F>>,
        entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self {
        PooledConnection::new(shared, entry, waited, location)
    }
}

impl<'a, F: ConnectionFactory> Lend<'a, F> for OwnedPooledConnection<F> {
    /// The one reference-count increment an owned guard costs over a borrowed one.
    #[inline(always)]
    fn lend(
        shared: &'a Arc<Shared<F>>,
        entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self {
        OwnedPooledConnection::new(Arc::clone(shared), entry, waited, location)
    }
}

/// A connection lent by a [`ConnectionPool`](crate::ConnectionPool), with what the pool knows
/// about it. Derefs to the connection; dropping it returns the connection to the pool.
///
/// Dropping never blocks and spawns nothing: a healthy connection goes back to the idle queue
/// (or straight to the oldest waiter); a broken or expired one, or one whose holder panicked, is
/// handed to the pool's maintenance loop to be destroyed.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Buffers;
///
/// // No spare idle connection (`min_connections(0)`), so the second acquire must reuse.
/// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
/// let pool = ConnectionPool::new(Buffers, config);
/// let mut conn = pool.acquire_blocking()?;
/// conn.push(1); // DerefMut to the connection
/// assert_eq!(conn.use_count(), 1);
/// assert!(conn.is_healthy());
/// drop(conn); // back to the pool
///
/// let conn = pool.acquire_blocking()?;
/// assert_eq!(conn.use_count(), 2, "the same connection was reused");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[clippy::has_significant_drop]
#[must_use = "dropping the guard returns the connection at once"]
pub struct PooledConnection<'a, F: ConnectionFactory>(Loan<F, &'a Shared<F>>);

impl<'a, F: ConnectionFactory> PooledConnection<'a, F> {
    /// Lends `entry`; `waited` is how long the caller waited, `location` where it asked.
    #[inline(always)]
    pub(crate) fn new(
        shared: &'a Shared<F>,
        entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self {
        PooledConnection(Loan::new(shared, entry, waited, location))
    }

    guard_methods!("acquire_blocking");
}

impl<F: ConnectionFactory> Deref for PooledConnection<'_, F> {
    type Target = F::Connection;

    #[inline]
    fn deref(&self) -> &F::Connection {
        &self.0.entry().conn
    }
}

impl<F: ConnectionFactory> DerefMut for PooledConnection<'_, F> {
    #[inline]
    fn deref_mut(&mut self) -> &mut F::Connection {
        self.0.conn_mut()
    }
}

impl<F: ConnectionFactory> fmt::Debug for PooledConnection<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("PooledConnection", f)
    }
}

/// A connection lent by a [`ConnectionPool`](crate::ConnectionPool) that does not borrow the
/// pool: it holds the pool's shared state by `Arc`, so it is `'static` and can move into
/// `tokio::spawn`, `spawn_blocking`, `smol::unblock`, a thread or a struct of your own.
///
/// Get one from [`acquire_owned`](crate::ConnectionPool::acquire_owned),
/// [`acquire_owned_blocking`](crate::ConnectionPool::acquire_owned_blocking) or
/// [`try_acquire_owned`](crate::ConnectionPool::try_acquire_owned). It has the same methods and
/// the same release path as [`PooledConnection`]; it costs one reference-count increment and
/// decrement more.
///
/// It does not keep the pool open: when every [`ConnectionPool`](crate::ConnectionPool) handle
/// is dropped the pool closes, and a connection still lent out this way is destroyed when its
/// guard drops (the pool finishes closing then).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, OwnedPooledConnection};
/// # use nexus_pool::doc_support::Buffers;
///
/// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
/// let pool = ConnectionPool::new(Buffers, config);
/// let mut conn: OwnedPooledConnection<Buffers> = pool.acquire_owned_blocking()?;
/// conn.push(1); // DerefMut to the connection
/// // 'static: it moves into another thread, which gives it back by dropping it.
/// std::thread::spawn(move || assert_eq!(conn.len(), 1)).join().unwrap();
///
/// assert_eq!(pool.acquire_blocking()?.use_count(), 2, "the same connection was reused");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[clippy::has_significant_drop]
#[must_use = "dropping the guard returns the connection at once"]
pub struct OwnedPooledConnection<F: ConnectionFactory>(Loan<F, Arc<Shared<F>>>);

impl<F: ConnectionFactory> OwnedPooledConnection<F> {
    /// Lends `entry`, keeping `shared` alive until the connection is given back.
    #[inline(always)]
    pub(crate) fn new(
        shared: Arc<Shared<F>>,
        entry: Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> Self {
        OwnedPooledConnection(Loan::new(shared, entry, waited, location))
    }

    guard_methods!("acquire_owned_blocking");
}

impl<F: ConnectionFactory> Deref for OwnedPooledConnection<F> {
    type Target = F::Connection;

    #[inline]
    fn deref(&self) -> &F::Connection {
        &self.0.entry().conn
    }
}

impl<F: ConnectionFactory> DerefMut for OwnedPooledConnection<F> {
    #[inline]
    fn deref_mut(&mut self) -> &mut F::Connection {
        self.0.conn_mut()
    }
}

impl<F: ConnectionFactory> fmt::Debug for OwnedPooledConnection<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("OwnedPooledConnection", f)
    }
}

/// The methods both guards share, each with its doc and an example that takes the guard with
/// `$acquire` (`acquire_blocking` or `acquire_owned_blocking`): one text for both guards.
macro_rules! guard_methods {
    ($acquire:literal) => {
        /// When the connection was opened.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
        /// # use nexus_pool::doc_support::Units;
        /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
        #[doc = concat!("let conn = pool.", $acquire, "()?;")]
        /// assert!(conn.created_at() <= std::time::Instant::now());
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn created_at(&self) -> Instant {
            self.0.created_at()
        }

        /// When the connection was last given back to the pool (its creation time if never).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
        /// # use nexus_pool::doc_support::Units;
        /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
        #[doc = concat!("let conn = pool.", $acquire, "()?;")]
        /// assert_eq!(conn.last_used_at(), conn.created_at(), "a new connection");
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn last_used_at(&self) -> Instant {
            self.0.last_used_at()
        }

        /// How many times the connection has been lent, this time included.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
        /// # use nexus_pool::doc_support::Units;
        /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
        #[doc = concat!("assert_eq!(pool.", $acquire, "()?.use_count(), 1);")]
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn use_count(&self) -> u64 {
            self.0.entry().use_count
        }

        /// Whether the connection will go back to the pool (`false` once marked broken).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
        /// # use nexus_pool::doc_support::Units;
        /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
        #[doc = concat!("let mut conn = pool.", $acquire, "()?;")]
        /// assert!(conn.is_healthy());
        /// conn.mark_broken();
        /// assert!(!conn.is_healthy());
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn is_healthy(&self) -> bool {
            !self.0.broken
        }

        /// Marks the connection broken: on drop it is destroyed instead of reused, and its place is
        /// freed for a new one. Use it after an I/O error that leaves the session unusable.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
        /// # use nexus_pool::doc_support::Units;
        /// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
        #[doc = concat!("let mut conn = pool.", $acquire, "()?;")]
        /// conn.mark_broken();
        /// drop(conn);
        #[doc = concat!("let fresh = pool.", $acquire, "()?;")]
        /// assert_eq!(fresh.use_count(), 1, "a new connection replaced the broken one");
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn mark_broken(&mut self) {
            self.0.broken = true;
        }

        /// Takes the connection out of the pool for good. The pool forgets it (its place is freed for
        /// a new one) and will never destroy it: closing it is now the caller's job.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "blocking")] {
        /// # use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
        /// # struct Buffers;
        /// # impl ConnectionFactory for Buffers {
        /// #     type Connection = Vec<u8>; type Error = std::io::Error;
        /// #     async fn create(&self) -> Result<Vec<u8>, std::io::Error> { Ok(vec![1, 2]) }
        /// # }
        /// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
        /// let pool = ConnectionPool::new(Buffers, config);
        #[doc = concat!("let conn: Vec<u8> = pool.", $acquire, "()?.detach();")]
        /// assert_eq!(conn, vec![1, 2]);
        /// assert_eq!(pool.current_metrics().total, 0, "the pool forgot it");
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn detach(self) -> F::Connection {
            self.0.detach()
        }
    };
}
use guard_methods;
