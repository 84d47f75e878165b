//! [Diesel](https://diesel.rs) connections: `PgConnection` (feature `diesel-postgres`),
//! `MysqlConnection` (`diesel-mysql`) and `SqliteConnection` (`diesel-sqlite`).
//!
//! The features add up: each turns on the matching Diesel backend and makes its connection a
//! [`DieselConnection`], which [`DieselConnectionFactory`] is generic over. The pool lends the
//! Diesel connection itself, so your queries, `transaction(..)` and the rest of Diesel's API are
//! unchanged: the guard derefs to `&mut PgConnection`.
//!
//! # Blocking, from threads and from async code
//!
//! Diesel's connections are blocking: every call does its I/O on the calling thread. Use them
//! from threads (`acquire_blocking()`, `with_connection_blocking`, a thread-pool server), and from
//! async code inside a blocking section: tokio's `spawn_blocking`, smol's `unblock`, with
//! `with_connection_blocking` (or an owned guard moved into the section) inside. A Diesel call
//! made on an executor's own thread blocks that thread, and every task it runs, until it returns.
//!
//! # What the pool runs
//!
//! | | PostgreSQL | MySQL / MariaDB | SQLite |
//! |---|---|---|---|
//! | `create` | `PgConnection::establish` on a helper thread | `MysqlConnection::establish` on a helper thread | `SqliteConnection::establish`, then `busy_timeout` (5 s), `journal_mode = WAL`, `synchronous = NORMAL`, `foreign_keys = ON` |
//! | `validate` | `SELECT $1` (a cached prepared statement, one round trip) | `SELECT ?` (the same) | `SELECT ?` |
//! | `reset` | see below | see below | see below |
//! | `destroy` | closes on a helper thread | closes on a helper thread | closes |
//!
//! The health check's `is_healthy`, which the pool's maintenance loop runs on idle connections,
//! is the same `SELECT ?`, with the same bounds as `validate` below.
//!
//! `create` and `destroy` of the network backends run on a helper thread the pool's
//! `create_timeout` and `destroy_timeout` can abandon, so those bounds hold against a silent
//! server. `validate` and `reset` run on the acquiring thread, inside the client's
//! call, where no pool timer reaches: bound them with the connection's own settings.
//! [`DieselConnectionFactory::new`] adds `connect_timeout=10`, `tcp_user_timeout=30000` (ms) and
//! `keepalives_idle=60` to a PostgreSQL URL that names none of them (libpq reads them: a dead
//! network fails a blocked call within 30 s). Diesel's MySQL URL takes no timeouts, so a MySQL
//! call on a network that went silent waits until the kernel gives up on the socket.
//!
//! # What `reset` does, per backend
//!
//! Every reuse is reset before it is lent ([`DieselHealthCheck`]). On every backend the reset
//! first asks Diesel's transaction manager
//! ([`TransactionManager::transaction_manager_status_mut`]) what it tracks:
//!
//! * **In error** (Diesel gave up on the connection, after a failed `ROLLBACK` for instance): the
//!   reset fails and the connection is destroyed. This is what Diesel's own `is_broken` reports
//!   to `diesel::r2d2`.
//! * **Inside transactions** a user left open (`AnsiTransactionManager::begin_transaction`, or a
//!   panic inside `conn.transaction(..)` that was caught before the guard dropped): each level is
//!   rolled back through the transaction manager, savepoints first, so Diesel's depth is 0 again.
//!   A test transaction (`begin_test_transaction`) is kept, as `diesel::r2d2` keeps it, so a test
//!   pool of one connection sees its own uncommitted writes across checkouts.
//!
//! Then the session, per backend, including a transaction opened with raw SQL (`BEGIN` through
//! `batch_execute`), which Diesel does not track:
//!
//! * **PostgreSQL**: one simple query, one round trip: a probe for a block left open (inside one,
//!   `transaction_timestamp()` is earlier than `statement_timestamp()`), then everything `DISCARD
//!   ALL` does except deallocating prepared statements (Diesel caches its own, and would fail on
//!   the next use of one) and `DISCARD PLANS` (which would make each of those plan again):
//!   `CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT
//!   pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES`, and Diesel's own session
//!   settings again (`SET TIME ZONE 'UTC'; SET CLIENT_ENCODING TO 'UTF8'`). A block left open
//!   (or failed) fails the probe, so nothing else in it runs, and a second query sends `ROLLBACK`
//!   and the same cleaning: the `ROLLBACK` is never sent outside a block, so the server logs no
//!   warning on a clean reuse; a block left open shows in its log as the probe's error
//!   (`invalid input syntax for type integer: "nexus-pool: a transaction block was left open
//!   since ..."`). Not reset: prepared statements (Diesel's cache; yours too, if you `PREPARE`d
//!   some by hand).
//! * **MySQL / MariaDB**: one multi-statement batch: `ROLLBACK` (harmless outside a
//!   transaction), `UNLOCK TABLES`, `SET autocommit = 1` and Diesel's session settings again
//!   (`time_zone = '+00:00'`, `utf8mb4` for `character_set_client`, `_connection`, `_results`).
//!   Diesel sends a batch as three round trips (multi-statements on, the batch, off). **Not
//!   reset**: other session variables, user variables (`@x`), temporary tables and named locks
//!   (`GET_LOCK`). MySQL clears those only with `COM_RESET_CONNECTION`, which Diesel does not
//!   expose; a user who changes them must undo them, or mark the connection broken
//!   ([`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken)) so it is closed.
//! * **SQLite**: `ROLLBACK` when a transaction is open, attached databases detached, temporary
//!   tables, views and triggers dropped, `busy_timeout` and `foreign_keys = ON` set again. No
//!   network: microseconds. The `journal_mode` and `synchronous` pragmas are the file's and the
//!   factory's, and are not checked again.
//!
//! [`DieselReset::Rollback`] (`factory.health_check().reset_mode(..)`) keeps only the first part
//! of each: the transactions are ended (PostgreSQL: the probe alone, and `ROLLBACK` into a block
//! it finds; MySQL: one `ROLLBACK`; SQLite: `ROLLBACK`), session state is left as the last user
//! left it. It is cheaper, and right for code that never changes session state.
//!
//! A reset that fails in any step destroys the connection. Each reset clears the session, so the
//! pool's `on_connect` hook runs again after it.
//!
//! Behind PgBouncer, use session pooling: Diesel prepares and caches named statements, which a
//! transaction pooler (before PgBouncer 1.21 with `max_prepared_statements`) loses between
//! transactions, and the clean reset's session commands would clean some other server
//! connection there.
//!
//! After an error that means the server is gone, call `mark_broken()` on the guard
//! ([`connection_lost`] recognises them): the connection is destroyed at once instead of failing
//! the next reset.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(all(feature = "diesel-postgres", feature = "blocking"))] {
//! use diesel::prelude::*;
//! use diesel::sql_types::Integer;
//! use nexus_pool::adapters::diesel::{DieselConnectionFactory, connection_lost};
//!
//! let pool = DieselConnectionFactory::<PgConnection>::new("postgres://postgres@127.0.0.1/test")
//!     .pool_builder() // the health check attached: every reuse is reset first
//!     .max_connections(8)
//!     .build()?;
//!
//! let workers: Vec<_> = (0..4)
//!     .map(|i| {
//!         let pool = pool.clone();
//!         std::thread::spawn(move || -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
//!             let mut conn = pool.acquire_blocking()?;
//!             let sum = diesel::select((i + 1).into_sql::<Integer>()).get_result::<i32>(&mut *conn);
//!             match sum {
//!                 Ok(n) => Ok(n),
//!                 Err(e) => {
//!                     if connection_lost(&e) {
//!                         conn.mark_broken(); // never reuse a dead session
//!                     }
//!                     Err(e.into())
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for (i, worker) in workers.into_iter().enumerate() {
//!     assert_eq!(worker.join().unwrap()?, i as i32 + 1);
//! }
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use ::diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use ::diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};

use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

/// How long an SQLite statement waits for another connection's lock, by default.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A Diesel connection the pool can hold: `PgConnection`, `MysqlConnection` or
/// `SqliteConnection`, each with its feature. Sealed: the reset is written for each backend.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "diesel-sqlite")] {
/// use nexus_pool::adapters::diesel::DieselConnection;
///
/// fn poolable<C: DieselConnection>() {}
/// poolable::<diesel::SqliteConnection>();
/// # }
/// ```
pub trait DieselConnection:
    Connection<TransactionManager = AnsiTransactionManager> + Send + 'static + sealed::Backend
{
}

mod sealed {
    use std::time::Duration;

    use ::diesel::result::{ConnectionResult, QueryResult};

    /// What differs between the backends.
    pub trait Backend: Sized {
        /// Whether `create` and `destroy` talk to a server (and so run on a helper thread).
        const NETWORK: bool;
        /// The URL the connection is established with (timeouts added where the backend takes
        /// them).
        fn prepare_url(url: &str) -> String;
        /// Opens a connection and applies the adapter's settings.
        fn open(url: &str, busy_timeout: Duration) -> ConnectionResult<Self>;
        /// One cheap round trip.
        fn ping(&mut self) -> QueryResult<()>;
        /// Ends a transaction opened with raw SQL and clears the session (the module docs say
        /// what, per backend). Diesel's tracked transactions are rolled back before this runs.
        fn reset_session(
            &mut self,
            busy_timeout: Duration,
            mode: super::DieselReset,
        ) -> QueryResult<()>;
    }
}

/// Whether `err` means the server or the session is gone, so the connection must not be used
/// again: call `mark_broken()` on the guard. PostgreSQL reports that as
/// `DatabaseErrorKind::ClosedConnection`; MySQL's client as an error that says the server has
/// gone away or the connection was lost; on any backend, a transaction manager Diesel gave up on
/// (`BrokenTransactionManager`).
///
/// # Examples
///
/// ```
/// use diesel::result::{DatabaseErrorKind, Error};
/// use nexus_pool::adapters::diesel::connection_lost;
///
/// let gone = Error::DatabaseError(DatabaseErrorKind::ClosedConnection, Box::new("server closed".to_owned()));
/// assert!(connection_lost(&gone));
/// assert!(connection_lost(&Error::BrokenTransactionManager));
/// assert!(!connection_lost(&Error::NotFound));
/// ```
pub fn connection_lost(err: &DieselError) -> bool {
    match err {
        DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            // libmysqlclient's CR_SERVER_GONE_ERROR (2006) and CR_SERVER_LOST (2013).
            message.contains("server has gone away")
                || message.contains("Server has gone away")
                || message.contains("Lost connection to")
        }
        _ => false,
    }
}

/// Makes Diesel connections of type `C` from a database URL; see the [module docs](self).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "diesel-postgres")] {
/// use diesel::PgConnection;
/// use nexus_pool::adapters::diesel::DieselConnectionFactory;
///
/// // Nothing connects until the pool needs a connection.
/// let factory = DieselConnectionFactory::<PgConnection>::new("postgres://app@db.internal/orders");
/// assert!(factory.url().starts_with("postgres://app@db.internal/orders?"));
/// # }
/// ```
pub struct DieselConnectionFactory<C> {
    /// The URL as given, with the timeouts [`new`](Self::new) adds.
    url: String,
    /// SQLite's `busy_timeout`, set on create and on every reset; unused by the other backends.
    busy_timeout: Duration,
    _connection: PhantomData<fn() -> C>,
}

impl<C> Clone for DieselConnectionFactory<C> {
    fn clone(&self) -> Self {
        DieselConnectionFactory {
            url: self.url.clone(),
            busy_timeout: self.busy_timeout,
            _connection: PhantomData,
        }
    }
}

impl<C> fmt::Debug for DieselConnectionFactory<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DieselConnectionFactory")
            .field("connection", &std::any::type_name::<C>())
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

impl<C: DieselConnection> DieselConnectionFactory<C> {
    /// Connections to `url`, in the form `C::establish` takes: `postgres://...` (or libpq's
    /// `key=value` form), `mysql://...`, or an SQLite file path. To a PostgreSQL URL that names
    /// none of them, adds `connect_timeout=10`, `tcp_user_timeout=30000` and
    /// `keepalives_idle=60` (the [module docs](self) say why); the others are used as given.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-postgres")] {
    /// use diesel::PgConnection;
    /// use nexus_pool::adapters::diesel::DieselConnectionFactory;
    ///
    /// let factory = DieselConnectionFactory::<PgConnection>::new("postgres://postgres@127.0.0.1/test");
    /// assert_eq!(
    ///     factory.url(),
    ///     "postgres://postgres@127.0.0.1/test?connect_timeout=10&tcp_user_timeout=30000&keepalives_idle=60"
    /// );
    /// // What the URL says wins.
    /// let factory = DieselConnectionFactory::<PgConnection>::new("host=db connect_timeout=3");
    /// assert_eq!(factory.url(), "host=db connect_timeout=3 tcp_user_timeout=30000 keepalives_idle=60");
    /// # }
    /// ```
    pub fn new(url: impl AsRef<str>) -> Self {
        DieselConnectionFactory {
            url: C::prepare_url(url.as_ref()),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            _connection: PhantomData,
        }
    }

    /// SQLite only: how long a statement waits for another connection's lock before failing
    /// with `database is locked`; 5 s by default. Set on every new connection and again on every
    /// reset.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-sqlite")] {
    /// use std::time::Duration;
    /// use diesel::SqliteConnection;
    /// use nexus_pool::adapters::diesel::DieselConnectionFactory;
    ///
    /// let factory = DieselConnectionFactory::<SqliteConnection>::new("app.db")
    ///     .busy_timeout(Duration::from_millis(250));
    /// # drop(factory);
    /// # }
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The URL connections are established with.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-sqlite")] {
    /// use diesel::SqliteConnection;
    /// use nexus_pool::adapters::diesel::DieselConnectionFactory;
    ///
    /// assert_eq!(DieselConnectionFactory::<SqliteConnection>::new("app.db").url(), "app.db");
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The health check that resets these connections ([module docs](self#what-reset-does-per-backend)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-sqlite")] {
    /// use diesel::SqliteConnection;
    /// use nexus_pool::adapters::diesel::DieselConnectionFactory;
    ///
    /// let check = DieselConnectionFactory::<SqliteConnection>::new("app.db").health_check();
    /// # drop(check);
    /// # }
    /// ```
    pub fn health_check(&self) -> DieselHealthCheck<C> {
        DieselHealthCheck {
            busy_timeout: self.busy_timeout,
            mode: DieselReset::Clean,
            _connection: PhantomData,
        }
    }

    /// Starts a pool builder: the same as [`ConnectionPool::builder`] with this factory, which
    /// attaches [`health_check`](Self::health_check) (see
    /// [`ConnectionFactory::default_health_check`]), so every reused connection is reset before
    /// it is lent. Add settings and `build()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-sqlite")] {
    /// use diesel::SqliteConnection;
    /// use nexus_pool::adapters::diesel::DieselConnectionFactory;
    ///
    /// let pool = DieselConnectionFactory::<SqliteConnection>::new("app.db")
    ///     .pool_builder()
    ///     .min_connections(0) // opens the file on the first acquire
    ///     .max_connections(1)
    ///     .build()?;
    /// assert_eq!(pool.current_metrics().total, 0);
    /// # }
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn pool_builder(self) -> ConnectionPoolBuilder<Self> {
        ConnectionPool::builder(self)
    }
}

impl<C: DieselConnection> ConnectionFactory for DieselConnectionFactory<C> {
    type Connection = C;
    type Error = ConnectionError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, unless the builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> Result<C, ConnectionError> {
        let (url, busy_timeout) = (self.url.clone(), self.busy_timeout);
        if C::NETWORK {
            super::helper_thread::run("nexus-pool-diesel-connect", move || {
                C::open(&url, busy_timeout)
            })
            .await
        } else {
            C::open(&url, busy_timeout)
        }
    }

    async fn destroy(&self, conn: C) {
        if C::NETWORK {
            // Closing says goodbye to the server, which a silent peer may never acknowledge.
            super::helper_thread::run("nexus-pool-diesel-close", move || drop(conn)).await;
        } else {
            drop(conn);
        }
    }

    async fn validate(&self, conn: &mut C) -> bool {
        !broken(conn) && conn.ping().is_ok()
    }
}

/// Whether Diesel's transaction manager gave up on `conn` (it is `InError`).
fn broken<C: DieselConnection>(conn: &mut C) -> bool {
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .is_err()
}

/// Pings idle Diesel connections and resets used ones; made by
/// [`DieselConnectionFactory::health_check`], which every pool built from the factory attaches.
/// What a reset does, per backend, is in the [module docs](self#what-reset-does-per-backend).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "diesel-sqlite")] {
/// use diesel::SqliteConnection;
/// use nexus_pool::ConnectionPool;
/// use nexus_pool::adapters::diesel::DieselConnectionFactory;
///
/// let factory = DieselConnectionFactory::<SqliteConnection>::new("app.db");
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory).health_check(check).min_connections(0).build()?;
/// # drop(pool);
/// # }
/// # Ok::<(), nexus_pool::ConfigError>(())
/// ```
pub struct DieselHealthCheck<C> {
    busy_timeout: Duration,
    mode: DieselReset,
    _connection: PhantomData<fn() -> C>,
}

impl<C> Clone for DieselHealthCheck<C> {
    fn clone(&self) -> Self {
        DieselHealthCheck {
            busy_timeout: self.busy_timeout,
            mode: self.mode,
            _connection: PhantomData,
        }
    }
}

impl<C> DieselHealthCheck<C> {
    /// Chooses what `reset` clears: [`DieselReset::Clean`] by default.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-sqlite")] {
    /// use diesel::SqliteConnection;
    /// use nexus_pool::adapters::diesel::{DieselConnectionFactory, DieselReset};
    ///
    /// let factory = DieselConnectionFactory::<SqliteConnection>::new("app.db");
    /// let check = factory.health_check().reset_mode(DieselReset::Rollback);
    /// let pool = factory.pool_builder().health_check(check).min_connections(0).build()?;
    /// # drop(pool);
    /// # }
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn reset_mode(mut self, mode: DieselReset) -> Self {
        self.mode = mode;
        self
    }
}

/// What [`DieselHealthCheck`]'s `reset` clears on every reuse; see the
/// [module docs](self#what-reset-does-per-backend) for each backend.
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::diesel::DieselReset;
///
/// assert_eq!(DieselReset::default(), DieselReset::Clean);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DieselReset {
    /// Transactions ended (tracked and raw) and the session cleared, as the module docs list
    /// per backend. The default.
    #[default]
    Clean,
    /// Transactions ended (tracked and raw), nothing else: session settings, temporary tables
    /// and the rest stay for the next user. Cheaper (PostgreSQL: the probe alone, one `SELECT`;
    /// MySQL: one `ROLLBACK`), and right when the code never changes session state.
    Rollback,
}

impl<C> fmt::Debug for DieselHealthCheck<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DieselHealthCheck")
            .field("connection", &std::any::type_name::<C>())
            .field("busy_timeout", &self.busy_timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<C: DieselConnection> ConnectionHealthCheck<C> for DieselHealthCheck<C> {
    async fn is_healthy(&self, conn: &mut C) -> bool {
        !broken(conn) && conn.ping().is_ok()
    }

    async fn reset(&self, conn: &mut C) -> bool {
        match rollback_tracked(conn) {
            Tracked::Broken => false,
            // A test transaction holds the test's writes: keep it, and the session with it.
            Tracked::TestTransaction => true,
            Tracked::Clean => conn.reset_session(self.busy_timeout, self.mode).is_ok(),
        }
    }
}

/// What Diesel's transaction manager said, once the transactions it tracked are rolled back.
enum Tracked {
    /// No transaction left.
    Clean,
    /// In error, or a rollback failed: the connection's state is unknown.
    Broken,
    /// A transaction from `begin_test_transaction`, left as it is.
    TestTransaction,
}

/// Rolls back every transaction level Diesel tracks on `conn`, savepoints first.
fn rollback_tracked<C: DieselConnection>(conn: &mut C) -> Tracked {
    let depth =
        match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
            Err(_) => return Tracked::Broken,
            Ok(None) => return Tracked::Clean,
            Ok(Some(depth)) => depth.get(),
        };
    // Diesel calls an open transaction "broken" for a pool unless it is a test transaction.
    if !AnsiTransactionManager::is_broken_transaction_manager(conn) {
        return Tracked::TestTransaction;
    }
    for _ in 0..depth {
        if AnsiTransactionManager::rollback_transaction(conn).is_err() {
            return Tracked::Broken;
        }
    }
    match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(None) => Tracked::Clean,
        _ => Tracked::Broken,
    }
}

#[cfg(feature = "diesel-postgres")]
mod pg {
    use std::time::Duration;

    use super::DieselReset;
    use ::diesel::connection::{Connection, SimpleConnection};
    use ::diesel::pg::PgConnection;
    use ::diesel::prelude::*;
    use ::diesel::result::{ConnectionResult, DatabaseErrorKind, Error, QueryResult};
    use ::diesel::sql_types::Integer;

    /// `DISCARD ALL` minus `DEALLOCATE ALL` (Diesel's statement cache must survive) and minus
    /// `DISCARD PLANS` (which would make every statement in that cache plan again on its next
    /// use; the server replans by itself when a setting or the schema it depends on changes),
    /// then the settings `PgConnection::establish` makes, which `RESET ALL` undid.
    const CLEAN_SQL: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
         UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; \
         DISCARD SEQUENCES; SET TIME ZONE 'UTC'; SET CLIENT_ENCODING TO 'UTF8'";

    /// What the probe's error says; the server logs it when a block was left open.
    const LEFT_OPEN: &str = "nexus-pool: a transaction block was left open";

    /// The probe for a block left open, sent before the clean reset in the same simple query
    /// (one round trip), or alone for [`DieselReset::Rollback`](super::DieselReset). Sent as a simple
    /// query, every statement of it has the statement timestamp of the one message, so the
    /// implicit transaction outside a block began with it; inside a block left open,
    /// `transaction_timestamp()` is when that block began, earlier. There the probe fails (with
    /// a cast that is not folded at plan time: `concat` is only stable), the block with it, and
    /// the rest is not run; a block that had already failed fails it with `25P02`. Either way
    /// `ROLLBACK` follows, never sent outside a block, so the server logs no warning. (Diesel's
    /// own queries use the extended protocol, where the two timestamps differ even outside a
    /// block, so the probe cannot be one of them.)
    const PROBE_SQL: &str = concat!(
        "SELECT CASE WHEN transaction_timestamp() = statement_timestamp() THEN 1 ",
        "ELSE CAST(concat('nexus-pool: a transaction block was left open since ', ",
        "transaction_timestamp()) AS int) END"
    );

    /// Defaults for libpq's socket settings, each added unless the URL names it.
    const DEFAULTS: [(&str, &str); 3] = [
        ("connect_timeout", "10"),
        ("tcp_user_timeout", "30000"),
        ("keepalives_idle", "60"),
    ];

    impl super::sealed::Backend for PgConnection {
        const NETWORK: bool = true;

        fn prepare_url(url: &str) -> String {
            let uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
            let mut out = url.to_owned();
            for (key, value) in DEFAULTS {
                if url.contains(key) {
                    continue;
                }
                let sep = match (uri, out.contains('?')) {
                    (true, true) => "&",
                    (true, false) => "?",
                    (false, _) if out.is_empty() => "",
                    (false, _) => " ",
                };
                out = format!("{out}{sep}{key}={value}");
            }
            out
        }

        fn open(url: &str, _: Duration) -> ConnectionResult<Self> {
            PgConnection::establish(url)
        }

        fn ping(&mut self) -> QueryResult<()> {
            ::diesel::select(1.into_sql::<Integer>())
                .execute(self)
                .map(drop)
        }

        fn reset_session(&mut self, _: Duration, mode: DieselReset) -> QueryResult<()> {
            let (probe, after_rollback) = match mode {
                DieselReset::Clean => (format!("{PROBE_SQL}; {CLEAN_SQL}"), CLEAN_SQL),
                DieselReset::Rollback => (PROBE_SQL.to_owned(), ""),
            };
            match self.batch_execute(&probe) {
                Ok(()) => Ok(()),
                // The probe found a block (and failed it), or it was already failed.
                Err(Error::DatabaseError(DatabaseErrorKind::Unknown, info))
                    if info.message().contains(LEFT_OPEN)
                        || info.message().contains("current transaction is aborted") =>
                {
                    self.batch_execute(&format!("ROLLBACK; {after_rollback}"))
                }
                Err(e) => Err(e),
            }
        }
    }

    impl super::DieselConnection for PgConnection {}
}

#[cfg(feature = "diesel-mysql")]
mod mysql {
    use std::time::Duration;

    use super::DieselReset;
    use ::diesel::connection::{Connection, SimpleConnection};
    use ::diesel::mysql::MysqlConnection;
    use ::diesel::prelude::*;
    use ::diesel::result::{ConnectionResult, QueryResult};
    use ::diesel::sql_types::Integer;

    /// Ends any transaction (a no-op outside one), releases table locks, and puts back what a
    /// user may have changed of the settings `MysqlConnection::establish` makes.
    const RESET_SQL: &str = "ROLLBACK; UNLOCK TABLES; SET autocommit = 1, \
         time_zone = '+00:00', character_set_client = 'utf8mb4', \
         character_set_connection = 'utf8mb4', character_set_results = 'utf8mb4'";

    impl super::sealed::Backend for MysqlConnection {
        const NETWORK: bool = true;

        fn prepare_url(url: &str) -> String {
            url.to_owned()
        }

        fn open(url: &str, _: Duration) -> ConnectionResult<Self> {
            MysqlConnection::establish(url)
        }

        fn ping(&mut self) -> QueryResult<()> {
            ::diesel::select(1.into_sql::<Integer>())
                .execute(self)
                .map(drop)
        }

        fn reset_session(&mut self, _: Duration, mode: DieselReset) -> QueryResult<()> {
            match mode {
                DieselReset::Clean => self.batch_execute(RESET_SQL),
                // Harmless outside a transaction; a prepared statement, not a batch (which
                // Diesel sends as three round trips).
                DieselReset::Rollback => ::diesel::sql_query("ROLLBACK").execute(self).map(drop),
            }
        }
    }

    impl super::DieselConnection for MysqlConnection {}
}

#[cfg(feature = "diesel-sqlite")]
mod sqlite {
    use std::time::Duration;

    use super::DieselReset;
    use ::diesel::connection::{Connection, SimpleConnection};
    use ::diesel::prelude::*;
    use ::diesel::result::{ConnectionError, ConnectionResult, QueryResult};
    use ::diesel::sql_types::{Integer, Text};
    use ::diesel::sqlite::SqliteConnection;

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }

    #[derive(QueryableByName)]
    struct TempObject {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        name: String,
    }

    fn pragmas(conn: &mut SqliteConnection, busy_timeout: Duration) -> QueryResult<()> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON",
            busy_timeout.as_millis()
        ))
    }

    /// Quotes an SQLite identifier.
    fn quoted(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    impl super::sealed::Backend for SqliteConnection {
        const NETWORK: bool = false;

        fn prepare_url(url: &str) -> String {
            url.to_owned()
        }

        fn open(url: &str, busy_timeout: Duration) -> ConnectionResult<Self> {
            let mut conn = SqliteConnection::establish(url)?;
            // The busy timeout first: switching to WAL takes a brief lock another connection may
            // hold. WAL is persistent in the file; NORMAL is safe with it.
            pragmas(&mut conn, busy_timeout)
                .and_then(|()| {
                    conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
                })
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }

        fn ping(&mut self) -> QueryResult<()> {
            ::diesel::select(1.into_sql::<Integer>())
                .execute(self)
                .map(drop)
        }

        fn reset_session(&mut self, busy_timeout: Duration, mode: DieselReset) -> QueryResult<()> {
            // A transaction opened with raw SQL: SQLite refuses `BEGIN` inside one, and a
            // `SAVEPOINT` then `ROLLBACK` would not tell either; `ROLLBACK` outside one fails
            // harmlessly with "no transaction is active".
            if let Err(e) = self.batch_execute("ROLLBACK") {
                if !e.to_string().contains("no transaction is active") {
                    return Err(e);
                }
            }
            if mode == DieselReset::Rollback {
                return Ok(());
            }
            let attached = ::diesel::sql_query(
                "SELECT name FROM pragma_database_list WHERE name NOT IN ('main', 'temp')",
            )
            .load::<Name>(self)?;
            for db in attached {
                self.batch_execute(&format!("DETACH DATABASE {}", quoted(&db.name)))?;
            }
            let temp = ::diesel::sql_query(
                "SELECT type AS kind, name FROM temp.sqlite_master \
                 WHERE type IN ('table', 'view', 'trigger')",
            )
            .load::<TempObject>(self)?;
            for object in temp {
                let kind = match object.kind.as_str() {
                    "table" => "TABLE",
                    "view" => "VIEW",
                    _ => "TRIGGER",
                };
                self.batch_execute(&format!(
                    "DROP {kind} IF EXISTS temp.{}",
                    quoted(&object.name)
                ))?;
            }
            pragmas(self, busy_timeout)
        }
    }

    impl super::DieselConnection for SqliteConnection {}
}

#[cfg(all(test, feature = "diesel-postgres"))]
mod tests {
    use super::sealed::Backend;

    #[test]
    fn pg_url_gets_the_socket_defaults_it_does_not_name() {
        type Pg = ::diesel::PgConnection;
        assert_eq!(
            Pg::prepare_url("postgres://u@h/d?sslmode=disable&keepalives_idle=5"),
            "postgres://u@h/d?sslmode=disable&keepalives_idle=5&connect_timeout=10&tcp_user_timeout=30000"
        );
        assert_eq!(
            Pg::prepare_url(""),
            "connect_timeout=10 tcp_user_timeout=30000 keepalives_idle=60"
        );
    }
}
