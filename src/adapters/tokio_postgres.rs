//! PostgreSQL through the async [`tokio-postgres`](::tokio_postgres) client (feature
//! `tokio-postgres`), usable from any executor and from plain threads.
//!
//! # How it is built
//!
//! A `tokio-postgres` connection is two halves: a `Client` that sends requests over a channel, and
//! a `Connection` future that owns the socket and must be polled by a tokio runtime. Built inside
//! a multi-threaded tokio runtime (in a `#[tokio::main]` application, say), the factory runs the
//! connections there, so a query costs no thread hop; built anywhere else, it owns a small
//! multi-threaded tokio runtime (one worker thread, named `nexus-pool-postgres`).
//! [`with_runtime`](TokioPostgresConnectionFactory::with_runtime) hands it a runtime of your
//! choice, [`with_own_runtime`](TokioPostgresConnectionFactory::with_own_runtime) makes it start
//! its own anyway (for a pool that outlives the runtime it was built in).
//! `create` connects *on that runtime* (on a socket it opens itself, see
//! [below](#a-clean-session-at-no-cost)) and spawns the `Connection` there; the pool lends a
//! [`TokioPostgresConnection`], which derefs to the `Client` and keeps the runtime alive.
//!
//! So the caller needs no runtime of its own: the `Client`'s futures only talk to channels, and
//! any executor, or `futures_lite::future::block_on` on a plain thread, can drive them while the
//! socket is served elsewhere. `acquire_blocking()` works from a thread that has never seen tokio,
//! and `acquire().await` works under tokio, smol or async-std alike.
//!
//! `validate` checks that the connection task is alive (the task reads the socket all the time,
//! so a backend the server terminated shows up here without a round trip) and sends an empty
//! query. [`TokioPostgresHealthCheck`] runs `SELECT 1` in `is_healthy` and resets a used session
//! (see below). These run within the pool's `check_timeout`: the pool drops the future at the
//! deadline and destroys the connection, and dropping a `tokio-postgres` future is safe.
//!
//! # A clean session at no cost
//!
//! With the defaults, **a reused connection is always clean**: no transaction block open or
//! failed, and the session state [`PostgresReset::Clean`] covers (settings, temporary tables,
//! cursors, `LISTEN`s, session-level advisory locks, cached plans, the session user) as a new
//! session has it. And a reuse whose last user left nothing behind **costs no round trip and
//! writes nothing to the server's log**.
//!
//! For that, `create` opens the socket itself (each host in turn, with the config's timeouts,
//! keepalives and `target_session_attrs`) and gives `tokio-postgres` a stream that watches the
//! protocol as it passes, byte for byte unchanged: the transaction status the server reports in
//! every `ReadyForQuery`, the tag of every completed command (`SET`, `LISTEN`, `CREATE TABLE`,
//! ...), every setting the server reports changed, and which requests are still unanswered or
//! not yet written (a cancelled query, the `ROLLBACK` a dropped `Transaction` sends). On reuse:
//!
//! * nothing left behind (the common case): lent as it is, nothing sent (one non-blocking peek
//!   at the socket checks that the server did not close it or say something unasked, as it does
//!   when it terminates a backend);
//! * a request of the last user still in flight: one empty query first, so that what follows
//!   sees its outcome;
//! * a transaction block open or failed: `ROLLBACK`, then the rest of the reset, one round trip
//!   (a `ROLLBACK` is only ever sent inside a block, so the server never logs
//!   `WARNING: there is no transaction in progress`);
//! * session state changed: the reset of the [mode](PostgresReset), one round trip.
//!
//! A handler that fails inside a transaction, with raw `BEGIN` or with `Transaction`, leaves the
//! next user a session outside any block (never `current transaction is aborted`).
//!
//! Two kinds of session are not watched and are reset on every reuse (one round trip, still no
//! warning: the reset asks in its own query whether a block is open): encrypted ones (a TLS
//! connector other than [`NoTls`], unless `sslmode=disable`: the bytes say nothing), and
//! `load_balance_hosts=random`, which stays `tokio-postgres`'s own. [`TokioPostgresConnection::is_tracked`]
//! tells them apart. A watched session has no socket address in its `CancelToken`: cancel with
//! [`TokioPostgresConnection::cancel_query`].
//!
//! # What you must not do
//!
//! The stream sees commands, not what functions do inside them. A plain `SELECT` or DML that
//! changes the session is caught when its text names `set_config`, `advisory_lock` (the
//! session-level `pg_advisory_lock` family; the `_xact_` forms end with the transaction) or
//! `temp` (`CREATE TEMP TABLE .. AS`, `SELECT .. INTO TEMP`); anything else is not. So, with the
//! defaults, do not change session state from inside a function or procedure you call with
//! `SELECT` (a PL/pgSQL `SET` or `set_config(.., false)`, a session-level advisory lock, a
//! temporary table created in a function), and do not execute a statement prepared in an earlier
//! checkout whose text does such a thing. If your application does, turn on
//! [`reset_every_reuse`](TokioPostgresHealthCheck::reset_every_reuse): one round trip per reuse.
//!
//! # Behind PgBouncer
//!
//! Behind PgBouncer in session pooling mode, keep the defaults. In transaction pooling mode give
//! the health check [`PostgresReset::TransactionPooler`]: it rolls back a block the last user
//! left open or failed and sends nothing else (a reuse left clean still costs no round trip).
//! The adapter's own requests (the ping, the reset) are simple queries, never named statements;
//! yours must be too, or unnamed: `query_typed`, `simple_query`, `batch_execute`, not `query`,
//! `execute` or `prepare` (PgBouncer 1.18 does not carry a named statement from one server
//! connection to the next). The README's "Behind PgBouncer" section has the whole list.
//!
//! # Thread safety
//!
//! `TokioPostgresConnection` is `Send + Sync`; the guard lends it to one caller at a time.
//! Two things still need the runtime and are reached through
//! [`runtime_handle`](TokioPostgresConnection::runtime_handle): a cancel request (it opens a
//! socket; [`cancel_query`](TokioPostgresConnection::cancel_query) does it for you) and anything
//! you want to spawn next to the connection. Notices are logged
//! through the `log` crate and `NOTIFY` messages are dropped: use a dedicated, unpooled
//! connection for `LISTEN`.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(all(feature = "blocking", feature = "async"))] {
//! use nexus_pool::{ConnectionPoolConfig, PoolError};
//! use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, connection_lost};
//!
//! let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1:5432/test")?;
//! let pool = factory
//!     .pool_builder() // with TokioPostgresHealthCheck attached
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! // A plain thread, no runtime anywhere in sight:
//! let mut conn = pool.acquire_blocking()?;
//! let row = futures_lite::future::block_on(conn.query_one("SELECT 1 + 1", &[]))?;
//! assert_eq!(row.get::<_, i32>(0), 2);
//! drop(conn);
//!
//! // Async code on any executor (here `futures_lite`'s `block_on`; tokio and smol work the
//! // same):
//! let sum: i32 = futures_lite::future::block_on(async {
//!     let mut conn = pool.acquire().await?;
//!     match conn.query_one("SELECT 40 + 2", &[]).await {
//!         Ok(row) => Ok::<_, Box<dyn std::error::Error>>(row.get(0)),
//!         Err(e) => {
//!             if connection_lost(&e) {
//!                 conn.mark_broken(); // never reuse a dead session
//!             }
//!             Err(e.into())
//!         }
//!     }
//! })?;
//! assert_eq!(sum, 42);
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Failover and many hosts
//!
//! A connection string may list several hosts; with `target_session_attrs=read-write` a create
//! skips a host that refuses and a read-only session, and connects to the primary. When the
//! application learns of a failover (a lost session, or a former primary now read-only), it
//! calls [`evict_all`](crate::ConnectionPool::evict_all): idle connections are replaced at once,
//! lent ones when they come back, and new ones follow the connection string.
//!
//! ```no_run
//! # #[cfg(feature = "blocking")] {
//! use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, connection_lost};
//! use tokio_postgres::error::SqlState;
//!
//! let url = "host=db1,db2 user=app dbname=orders target_session_attrs=read-write";
//! let pool = TokioPostgresConnectionFactory::new(url)?.pool_builder().max_connections(16).build()?;
//! let conn = pool.acquire_blocking()?;
//! if let Err(err) = futures_lite::future::block_on(conn.batch_execute("UPDATE t SET n = n + 1")) {
//!     let read_only = err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION);
//!     if connection_lost(&err) || read_only {
//!         pool.evict_all(); // every connection moves to whichever host is primary now
//!     }
//! }
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::runtime::{AbortOnDrop, OwnedRuntime, RuntimeRef};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::Arc;

use ::tokio::net::TcpStream;
use ::tokio::runtime::{Handle, RuntimeFlavor};
use ::tokio::task::JoinHandle;
use ::tokio_postgres::config::{Host, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use ::tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use ::tokio_postgres::types::Type;
use ::tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage, Socket, Statement};

pub use super::pg_common::{PostgresReset, connection_lost};
use super::pg_common::{in_failed_block, probe_found_block, probe_sql, reset_sql};
use super::pg_statements::DEFAULT_CAPACITY;
pub use super::pg_statements::StatementCache;
use super::pg_wire::{self, Peek, SessionState, TrackedStream};
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

/// Why a factory could not be built or a connection could not be made.
///
/// As every error of this crate, its `Display` is the adapter's own context in one line, and
/// the cause is the [`source()`](std::error::Error::source), not repeated in the text. For
/// [`Postgres`](Self::Postgres) the source is the [`tokio_postgres::Error`], which a caller
/// walking the chain can downcast and ask for its [`code()`](tokio_postgres::Error::code); the
/// server's message (`FATAL: database "x" does not exist`) or the operating system's
/// (`Connection refused`) is in turn that error's source. Print the whole chain with `{:#}` of
/// `anyhow` or `eyre`.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, TokioPostgresError};
///
/// let err = TokioPostgresConnectionFactory::new("postgres://[nonsense").unwrap_err();
/// assert!(matches!(err, TokioPostgresError::Postgres(_)));
/// assert_eq!(err.to_string(), "the PostgreSQL driver returned an error");
/// // The driver's error is the source, with its own words.
/// let driver = err.source().unwrap().downcast_ref::<tokio_postgres::Error>().unwrap();
/// assert!(driver.to_string().starts_with("invalid connection string"), "{driver}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokioPostgresError {
    /// The connection string did not parse, connecting failed, or preparing a statement did.
    #[error("the PostgreSQL driver returned an error")]
    Postgres(#[from] ::tokio_postgres::Error),
    /// No socket to the server could be opened (the adapter opens it itself to watch the
    /// session; see the [module docs](self#a-clean-session-at-no-cost)); the operating system's
    /// error is the source.
    #[error("could not connect to the server")]
    Connect(#[source] std::io::Error),
    /// Every host of the connection string resolved to no address at all, so there was nothing
    /// to connect to.
    #[error("no host of the connection string resolved to an address")]
    NoAddress,
    /// The server's `transaction_read_only` did not match the connection string's
    /// `target_session_attrs`: the last host tried was a read-only standby where `read-write`
    /// was asked for, or the other way round.
    #[error("the server's transaction_read_only does not match target_session_attrs")]
    SessionAttrsMismatch,
    /// The factory's own runtime could not be started.
    #[error("could not start the runtime for the connections")]
    Runtime(#[source] std::io::Error),
    /// The runtime the connections run on has shut down.
    #[error("the runtime the connections run on has shut down")]
    RuntimeGone,
    /// [`prepare_cached`](TokioPostgresConnection::prepare_cached) on a connection whose factory
    /// is set for a transaction pooler ([`PostgresReset::TransactionPooler`]): there a named
    /// statement does not outlive the transaction it was prepared in, so a cached one would
    /// fail later with `prepared statement "s0" does not exist`. Use `query_typed` (the unnamed
    /// statement: parse, bind and execute in one round trip) instead.
    #[error(
        "prepare_cached is refused behind a transaction pooler (PostgresReset::TransactionPooler): \
         a named statement does not outlive its transaction there; use query_typed"
    )]
    StatementCacheRefused,
}

/// Makes [`TokioPostgresConnection`]s whose I/O runs on a runtime the factory owns; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = TokioPostgresConnectionFactory::new("postgres://app@db.internal:5432/orders")?;
/// assert_eq!(factory.config().get_dbname(), Some("orders"));
/// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
/// ```
pub struct TokioPostgresConnectionFactory<T = NoTls> {
    config: Config,
    tls: T,
    runtime: RuntimeRef,
    /// What the health check resets, and whether a transaction pooler is in front (then the
    /// connections refuse `prepare_cached`).
    reset: PostgresReset,
    /// How many statements each connection's `prepare_cached` keeps.
    statement_cache_capacity: usize,
}

impl<T> fmt::Debug for TokioPostgresConnectionFactory<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug hides the password.
        f.debug_struct("TokioPostgresConnectionFactory")
            .field("config", &self.config)
            .field("runtime", &self.runtime.kind())
            .field("reset", &self.reset)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .finish_non_exhaustive()
    }
}

impl TokioPostgresConnectionFactory<NoTls> {
    /// Parses a connection string (URL or `key=value` form), without TLS, and chooses the
    /// runtime the connections run on as [`from_config`](Self::from_config) says. Sets a 10 s
    /// `connect_timeout` if the string has none.
    ///
    /// # Errors
    ///
    /// The string does not parse, or the runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let factory = TokioPostgresConnectionFactory::new("host=127.0.0.1 user=postgres dbname=test")?;
    /// assert_eq!(factory.config().get_user(), Some("postgres"));
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, TokioPostgresError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        Self::from_config(config)
    }

    /// Uses a configuration you built, as it is, without TLS. Called inside a multi-threaded tokio
    /// runtime, the connections' I/O runs on that runtime (no thread hop per query); anywhere
    /// else (a plain thread, another executor, a current-thread runtime, which a blocking caller
    /// could stall) the factory starts a runtime of its own (one worker thread).
    ///
    /// # Errors
    ///
    /// The runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let mut config = tokio_postgres::Config::new();
    /// config.host("127.0.0.1").user("postgres").dbname("test").application_name("billing");
    /// let factory = TokioPostgresConnectionFactory::from_config(config)?;
    /// assert_eq!(factory.config().get_application_name(), Some("billing"));
    /// assert!(factory.has_own_runtime()); // not inside a tokio runtime here
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn from_config(config: Config) -> Result<Self, TokioPostgresError> {
        let runtime = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                RuntimeRef::Borrowed(handle)
            }
            _ => RuntimeRef::Owned(Arc::new(
                OwnedRuntime::start("nexus-pool-postgres").map_err(TokioPostgresError::Runtime)?,
            )),
        };
        Ok(TokioPostgresConnectionFactory {
            config,
            tls: NoTls,
            runtime,
            reset: PostgresReset::default(),
            statement_cache_capacity: DEFAULT_CAPACITY,
        })
    }
}

impl<T> TokioPostgresConnectionFactory<T> {
    /// Runs the connections on a runtime the factory starts and owns (one worker thread), also
    /// when it was built inside a tokio runtime: for a pool that must outlive the runtime it was
    /// built in.
    ///
    /// # Errors
    ///
    /// The runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let app = tokio::runtime::Runtime::new()?;
    /// let factory = app.block_on(async {
    ///     let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    ///     assert!(!factory.has_own_runtime()); // it took the runtime it was built in
    ///     factory.with_own_runtime()
    /// })?;
    /// drop(app);
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_own_runtime(mut self) -> Result<Self, TokioPostgresError> {
        if !self.has_own_runtime() {
            let runtime =
                OwnedRuntime::start("nexus-pool-postgres").map_err(TokioPostgresError::Runtime)?;
            self.runtime = RuntimeRef::Owned(Arc::new(runtime));
        }
        Ok(self)
    }

    /// Whether the connections run on a runtime the factory started (rather than the one it was
    /// built in or was handed).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn has_own_runtime(&self) -> bool {
        matches!(self.runtime, RuntimeRef::Owned(_))
    }

    /// Runs the connections on a runtime you already have instead of the factory's own (which
    /// is then shut down). The runtime must outlive the pool; connections fail once it is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .with_runtime(runtime.handle().clone());
    /// # drop(factory);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_runtime(mut self, handle: Handle) -> Self {
        self.runtime = RuntimeRef::Borrowed(handle);
        self
    }

    /// Connects through `tls` (for instance `postgres-native-tls` or `postgres-openssl`'s
    /// connector) instead of in the clear.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// // `NoTls` stands in for a real connector here.
    /// let factory = TokioPostgresConnectionFactory::new("postgres://app@db/orders")?
    ///     .with_tls(tokio_postgres::NoTls);
    /// # drop(factory);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn with_tls<U>(self, tls: U) -> TokioPostgresConnectionFactory<U> {
        TokioPostgresConnectionFactory {
            config: self.config,
            tls,
            runtime: self.runtime,
            reset: self.reset,
            statement_cache_capacity: self.statement_cache_capacity,
        }
    }

    /// The configuration connections are made with.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1:5433/test")?;
    /// assert_eq!(factory.config().get_ports(), [5433]);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the configuration before the pool is built (an `application_name`, for instance).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let mut factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// factory.config_mut().application_name("reports");
    /// assert_eq!(factory.config().get_application_name(), Some("reports"));
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The runtime the connections' I/O runs on.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// let answer = factory.runtime_handle().block_on(async { 42 });
    /// assert_eq!(answer, 42);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// The recommended health check for these connections: the factory's
    /// [`reset_mode`](Self::reset_mode) ([`PostgresReset::Clean`] by default) on a reuse that
    /// left something behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::{PostgresReset, TokioPostgresConnectionFactory};
    ///
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// let check = factory.health_check().reset_mode(PostgresReset::Rollback);
    /// # drop(check);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn health_check(&self) -> TokioPostgresHealthCheck {
        TokioPostgresHealthCheck::new().reset_mode(self.reset)
    }

    /// Says what sits in front of the server, and so how a reused session is reset: the mode
    /// of [`health_check`](Self::health_check) (the one every pool built from this factory
    /// gets). [`PostgresReset::TransactionPooler`] also makes the connections refuse
    /// [`prepare_cached`](TokioPostgresConnection::prepare_cached) (with
    /// [`TokioPostgresError::StatementCacheRefused`]): behind a transaction pooler a named
    /// statement does not outlive its transaction. Set the mode here rather than only on a
    /// health check of your own, which the connections do not see.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::{PostgresReset, TokioPostgresConnectionFactory};
    ///
    /// // PgBouncer with `pool_mode = transaction` in front:
    /// let factory = TokioPostgresConnectionFactory::new("postgres://app@bouncer:6432/orders")?
    ///     .reset_mode(PostgresReset::TransactionPooler);
    /// assert_eq!(factory.get_reset_mode(), PostgresReset::TransactionPooler);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn reset_mode(mut self, mode: PostgresReset) -> Self {
        self.reset = mode;
        self
    }

    /// The mode [`reset_mode`](Self::reset_mode) set ([`PostgresReset::Clean`] by default).
    ///
    /// # Examples
    ///
    /// See [`reset_mode`](Self::reset_mode).
    pub fn get_reset_mode(&self) -> PostgresReset {
        self.reset
    }

    /// How many statements each connection's
    /// [`prepare_cached`](TokioPostgresConnection::prepare_cached) keeps prepared (100 by
    /// default); past that, the least recently used one is deallocated. 0 turns caching off
    /// (`prepare_cached` then prepares every time).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let factory = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .statement_cache_capacity(500);
    /// assert_eq!(factory.get_statement_cache_capacity(), 500);
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// The bound [`statement_cache_capacity`](Self::statement_cache_capacity) set.
    ///
    /// # Examples
    ///
    /// See [`statement_cache_capacity`](Self::statement_cache_capacity).
    pub fn get_statement_cache_capacity(&self) -> usize {
        self.statement_cache_capacity
    }
}

impl<T> TokioPostgresConnectionFactory<T>
where
    Self: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    /// Starts a pool builder: the same as [`ConnectionPool::builder`] with this factory, which
    /// attaches [`health_check`](Self::health_check) (see
    /// [`ConnectionFactory::default_health_check`]), so every reused connection is clean when it
    /// is lent. Add a config and `build()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::ConnectionPoolConfig;
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .pool_builder()
    ///     .config(ConnectionPoolConfig::builder().max_connections(4).build()?)
    ///     .build()?; // connects in the background, and on demand
    /// assert_eq!(pool.config().max_connections(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_builder(self) -> ConnectionPoolBuilder<Self> {
        ConnectionPool::builder(self)
    }
}

impl<T> ConnectionFactory for TokioPostgresConnectionFactory<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = TokioPostgresConnection;
    type Error = TokioPostgresError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> Result<TokioPostgresConnection, TokioPostgresError> {
        let handle = self.runtime.handle();
        let config = self.config.clone();
        let tls = self.tls.clone();
        // Connecting needs tokio's reactor and timers: do it on the runtime, whoever polls us.
        let connect = AbortOnDrop(Some(handle.spawn(async move {
            match trackable(&config, &tls) {
                true => connect_tracked(&config).await,
                false => {
                    let (client, connection) = config.connect(tls).await?;
                    let driver = ::tokio::spawn(async move {
                        // Ends with an error when the server or the network closes the socket,
                        // and cleanly once the client is dropped; `is_closed` then reports it.
                        let _ = connection.await;
                    });
                    Ok(Connected {
                        client,
                        driver,
                        session: None,
                        peer: None,
                    })
                }
            }
        })));
        let connected = connect.join(|| TokioPostgresError::RuntimeGone).await??;
        Ok(TokioPostgresConnection {
            client: connected.client,
            driver: connected.driver,
            session: connected.session,
            peer: connected.peer,
            runtime: self.runtime.clone(),
            reset_cleared: std::sync::atomic::AtomicBool::new(false),
            statements: StatementCache::new(self.statement_cache_capacity),
            transaction_pooler: self.reset == PostgresReset::TransactionPooler,
            discards: std::sync::atomic::AtomicU64::new(0),
        })
    }

    async fn validate(&self, conn: &mut TokioPostgresConnection) -> bool {
        !conn.is_closed() && conn.client.simple_query("").await.is_ok()
    }
}

/// A session just opened, before it is wrapped for the pool.
struct Connected {
    client: Client,
    driver: JoinHandle<()>,
    session: Option<Arc<SessionState>>,
    peer: Option<Peer>,
}

/// Where a tracked session's socket goes, for a cancel request on a socket of its own.
#[derive(Debug, Clone)]
enum Peer {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(PathBuf),
}

/// Whether the adapter can open the socket itself and watch the session's state on it: only
/// when the session will not be encrypted (through TLS the bytes say nothing: `sslmode=disable`,
/// or the [`NoTls`] connector, which never encrypts) and the hosts are tried in order (random
/// load balancing stays `tokio-postgres`'s own).
fn trackable<T: 'static>(config: &Config, tls: &T) -> bool {
    config.get_load_balance_hosts() == LoadBalanceHosts::Disable
        && (config.get_ssl_mode() == SslMode::Disable || (tls as &dyn std::any::Any).is::<NoTls>())
}

/// `Config::connect` for an unencrypted session, on a socket the adapter opens itself so that
/// it can watch the session ([`pg_wire`]): each host in turn (with `hostaddr` and per-host ports
/// as `tokio-postgres` reads them), each address a name resolves to, with the config's
/// `connect_timeout`, `tcp_user_timeout`, keepalives and `target_session_attrs`.
async fn connect_tracked(config: &Config) -> Result<Connected, TokioPostgresError> {
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let count = hosts.len().max(addrs.len());
    let consistent = count > 0
        && (hosts.is_empty() || addrs.is_empty() || hosts.len() == addrs.len())
        && (ports.len() <= 1 || ports.len() == count);
    if !consistent {
        // `tokio-postgres` says what is wrong with the config.
        return Err(config.connect(NoTls).await.err().map_or(
            TokioPostgresError::RuntimeGone,
            TokioPostgresError::Postgres,
        ));
    }
    let mut last: Option<TokioPostgresError> = None;
    for i in 0..count {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let peers: Vec<Peer> = match (addrs.get(i), hosts.get(i)) {
            (Some(ip), _) => vec![Peer::Tcp(SocketAddr::new(*ip, port))],
            (None, Some(Host::Tcp(name))) => {
                match ::tokio::net::lookup_host((name.as_str(), port)).await {
                    Ok(found) => found.map(Peer::Tcp).collect(),
                    Err(e) => {
                        last = Some(TokioPostgresError::Connect(e));
                        continue;
                    }
                }
            }
            #[cfg(unix)]
            (None, Some(Host::Unix(dir))) => vec![Peer::Unix(dir.join(format!(".s.PGSQL.{port}")))],
            (None, None) => Vec::new(),
        };
        for peer in peers {
            match connect_peer(config, &peer).await {
                Ok(connected) => return Ok(connected),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or(TokioPostgresError::NoAddress))
}

/// Opens one socket, runs the start-up on it and checks `target_session_attrs`.
async fn connect_peer(config: &Config, peer: &Peer) -> Result<Connected, TokioPostgresError> {
    let socket = open_socket(config, peer)
        .await
        .map_err(TokioPostgresError::Connect)?;
    let session = Arc::new(SessionState::new());
    let stream = TrackedStream::new(socket, Arc::clone(&session));
    let (client, connection) = config.connect_raw(stream, NoTls).await?;
    let connection = pg_wire::Watched::new(connection, Arc::clone(&session));
    let driver = ::tokio::spawn(async move {
        // Ends with an error when the server or the network closes the socket, and cleanly
        // once the client is dropped; either way `is_closed` then reports it.
        let _ = connection.await;
    });
    let wanted = config.get_target_session_attrs();
    if wanted != TargetSessionAttrs::Any {
        let read_only = client
            .simple_query("SHOW transaction_read_only")
            .await?
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
                _ => None,
            });
        let refused = match wanted {
            TargetSessionAttrs::ReadWrite => read_only == Some(true),
            TargetSessionAttrs::ReadOnly => read_only == Some(false),
            _ => false,
        };
        if refused {
            return Err(TokioPostgresError::SessionAttrsMismatch);
        }
    }
    Ok(Connected {
        client,
        driver,
        session: Some(session),
        peer: Some(peer.clone()),
    })
}

/// A connected socket with the config's socket options.
async fn open_socket(config: &Config, peer: &Peer) -> std::io::Result<pg_wire::Socket> {
    let options = pg_wire::SocketOptions {
        connect_timeout: config.get_connect_timeout().copied(),
        tcp_user_timeout: config.get_tcp_user_timeout().copied(),
        keepalive: config.get_keepalives().then(|| {
            (
                config.get_keepalives_idle(),
                config.get_keepalives_interval(),
                config.get_keepalives_retries(),
            )
        }),
    };
    match peer {
        Peer::Tcp(addr) => pg_wire::open_tcp(*addr, &options).await,
        #[cfg(unix)]
        Peer::Unix(path) => {
            let connect = ::tokio::net::UnixStream::connect(path);
            let stream = match options.connect_timeout {
                None => connect.await?,
                Some(limit) => ::tokio::time::timeout(limit, connect)
                    .await
                    .unwrap_or_else(|_| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "connection timed out",
                        ))
                    })?,
            };
            Ok(pg_wire::Socket::Unix(stream))
        }
    }
}

/// A pooled `tokio-postgres` session: the [`Client`] (it derefs to it)
/// plus the task that serves its socket on the factory's runtime.
///
/// Dropping it (the pool does, in `destroy`) drops the client; the connection task then says
/// goodbye to the server and ends.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
///
/// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
///     .pool_builder()
///     .build()?;
/// let mut conn = pool.acquire_blocking()?;
/// futures_lite::future::block_on(async {
///     let tx = conn.transaction().await?; // DerefMut to the Client
///     tx.execute("CREATE TEMP TABLE t (x int)", &[]).await?;
///     tx.commit().await
/// })?;
/// assert!(!conn.is_closed());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TokioPostgresConnection {
    client: Client,
    driver: JoinHandle<()>,
    /// What the socket said about the session; `None` when the adapter could not watch it
    /// (TLS, random load balancing), and then every reuse is reset.
    session: Option<Arc<SessionState>>,
    /// Where a cancel request goes, for a session on a socket the adapter opened.
    peer: Option<Peer>,
    /// Keeps an owned runtime alive while any of its connections is.
    runtime: RuntimeRef,
    /// Whether the last reset cleared session settings (so the pool's `on_connect` hook, if
    /// any, must run again).
    reset_cleared: std::sync::atomic::AtomicBool,
    /// What `prepare_cached` prepared on this session.
    statements: StatementCache,
    /// The factory said a transaction pooler is in front: `prepare_cached` refuses.
    transaction_pooler: bool,
    /// How many `DISCARD ALL` the health check sent to this session while not watching it (a
    /// watched session counts them, and the user's, on the wire).
    discards: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for TokioPostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresConnection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl TokioPostgresConnection {
    /// Whether the health check can skip the reset of this session when its last user left
    /// nothing behind (see the [module docs](self#a-clean-session-at-no-cost)): `false` for an
    /// encrypted session, which the adapter cannot watch and resets on every reuse.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// assert!(conn.is_tracked()); // no TLS: the adapter watches the session
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_tracked(&self) -> bool {
        self.session.is_some()
    }

    /// Asks the server to cancel what this session runs now, on a socket of its own (opened on
    /// the connection's runtime). Use this rather than `cancel_token().cancel_query(..)`, which
    /// does not know the address of a socket the adapter opened itself; on an encrypted session
    /// it sends the request without TLS.
    ///
    /// # Errors
    ///
    /// The cancel request could not be delivered.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// futures_lite::future::block_on(conn.cancel_query())?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn cancel_query(&self) -> Result<(), TokioPostgresError> {
        let token = self.client.cancel_token();
        let peer = self.peer.clone();
        let task = self.runtime.handle().spawn(async move {
            match peer {
                None => token.cancel_query(NoTls).await.map_err(Into::into),
                Some(Peer::Tcp(addr)) => {
                    let stream = TcpStream::connect(addr)
                        .await
                        .map_err(TokioPostgresError::Connect)?;
                    token
                        .cancel_query_raw(stream, NoTls)
                        .await
                        .map_err(Into::into)
                }
                #[cfg(unix)]
                Some(Peer::Unix(path)) => {
                    let stream = ::tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(TokioPostgresError::Connect)?;
                    token
                        .cancel_query_raw(stream, NoTls)
                        .await
                        .map_err(Into::into)
                }
            }
        });
        AbortOnDrop(Some(task))
            .join(|| TokioPostgresError::RuntimeGone)
            .await?
    }

    /// Whether the session is over: the server or the network closed it, or the connection task
    /// stopped. Free: no round trip.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// if conn.is_closed() {
    ///     conn.mark_broken();
    /// }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.driver.is_finished()
    }

    /// The client, as `Deref` gives it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// let client: &tokio_postgres::Client = conn.client();
    /// futures_lite::future::block_on(client.simple_query("SELECT 1"))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably (for `transaction()`), as `DerefMut` gives it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// futures_lite::future::block_on(async {
    ///     let tx = conn.client_mut().transaction().await?;
    ///     tx.rollback().await
    /// })?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The runtime this connection's socket is served on: spawn there what needs tokio's
    /// reactor next to the connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// let answer = conn.runtime_handle().block_on(async { 42 });
    /// assert_eq!(answer, 42);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// Prepares `query` once per session and hands out the same statement after that, as
    /// deadpool-postgres's `prepare_cached` does: a cached statement costs no round trip to
    /// prepare, so a parameterised query run with it is one round trip (bind and execute)
    /// instead of two (prepare, then bind and execute, as `query(&str, ..)` does each time).
    ///
    /// The cache is the connection's ([`statement_cache`](Self::statement_cache)), bounded by the
    /// factory's [`statement_cache_capacity`](TokioPostgresConnectionFactory::statement_cache_capacity)
    /// (least recently used out first), kept across checkouts (the default reset,
    /// [`PostgresReset::Clean`], keeps prepared statements) and cleared when the session's
    /// statements are deallocated: by a reset in [`PostgresReset::DiscardAll`] mode, or by a
    /// `DISCARD ALL` / `DEALLOCATE ALL` you send yourself (seen on the wire of a watched
    /// session; on an [untracked](Self::is_tracked) one, clear the cache yourself after that).
    ///
    /// # Errors
    ///
    /// [`TokioPostgresError::StatementCacheRefused`] when the factory's
    /// [`reset_mode`](TokioPostgresConnectionFactory::reset_mode) is
    /// [`PostgresReset::TransactionPooler`]: behind a transaction pooler (PgBouncer before 1.21
    /// in `pool_mode = transaction`) a named statement exists only on the server connection it
    /// was prepared on, which the next transaction may not get. Refusing is what keeps the
    /// error at the call that cannot work, rather than a `prepared statement "s0" does not
    /// exist` later, on whichever server connection the bouncer picks; use `query_typed` there.
    /// Otherwise [`TokioPostgresError::Postgres`] with the driver's error from preparing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    ///
    /// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .pool_builder()
    ///     .build()?;
    /// futures_lite::future::block_on(async {
    ///     let conn = pool.acquire().await?;
    ///     let stmt = conn.prepare_cached("SELECT $1::int + 1").await?; // prepared: a round trip
    ///     let row = conn.query_one(&stmt, &[&41]).await?;
    ///     assert_eq!(row.get::<_, i32>(0), 42);
    ///     let again = conn.prepare_cached("SELECT $1::int + 1").await?; // from the cache
    ///     assert_eq!(conn.query_one(&again, &[&1]).await?.get::<_, i32>(0), 2);
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, TokioPostgresError> {
        self.prepare_typed_cached(query, &[]).await
    }

    /// [`prepare_cached`](Self::prepare_cached) with the types of some or all parameters given
    /// (`prepare_typed`); the types are part of the cache key.
    ///
    /// # Errors
    ///
    /// As [`prepare_cached`](Self::prepare_cached).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// use tokio_postgres::types::Type;
    ///
    /// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .pool_builder()
    ///     .build()?;
    /// let conn = pool.acquire_blocking()?;
    /// let stmt = futures_lite::future::block_on(conn.prepare_typed_cached("SELECT $1", &[Type::INT8]))?;
    /// assert_eq!(stmt.params(), &[Type::INT8]);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn prepare_typed_cached(
        &self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, TokioPostgresError> {
        if self.transaction_pooler {
            return Err(TokioPostgresError::StatementCacheRefused);
        }
        let deallocations = self.deallocations();
        if let Some(statement) = self.statements.get(query, types, deallocations) {
            return Ok(statement);
        }
        let statement = self.client.prepare_typed(query, types).await?;
        self.statements
            .insert(query, types, statement.clone(), deallocations);
        Ok(statement)
    }

    /// The statements [`prepare_cached`](Self::prepare_cached) keeps for this session.
    ///
    /// # Examples
    ///
    /// See [`StatementCache`].
    pub fn statement_cache(&self) -> &StatementCache {
        &self.statements
    }

    /// How many times this session's prepared statements were all deallocated, as far as the
    /// adapter knows: on the wire of a watched session, by the health check on another.
    fn deallocations(&self) -> u64 {
        let seen = self
            .session
            .as_deref()
            .map_or(0, SessionState::deallocations);
        seen + self.discards.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Deref for TokioPostgresConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for TokioPostgresConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Pings idle connections with `SELECT 1` and resets used ones that were left with something
/// behind; see [`PostgresReset`] and the [module docs](self#a-clean-session-at-no-cost).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::tokio_postgres::{PostgresReset, TokioPostgresHealthCheck};
///
/// let check = TokioPostgresHealthCheck::new().reset_mode(PostgresReset::DiscardAll);
/// # drop(check);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokioPostgresHealthCheck {
    mode: PostgresReset,
    /// Reset every reuse, even when the socket says the last user left nothing behind.
    every_reuse: bool,
}

impl TokioPostgresHealthCheck {
    /// [`PostgresReset::Clean`] on reset.
    ///
    /// # Examples
    ///
    /// ```
    /// let check = nexus_pool::adapters::tokio_postgres::TokioPostgresHealthCheck::new();
    /// # drop(check);
    /// ```
    pub fn new() -> Self {
        TokioPostgresHealthCheck {
            mode: PostgresReset::Clean,
            every_reuse: false,
        }
    }

    /// Resets every reused session, also when the adapter saw its last user leave nothing
    /// behind: one round trip per reuse, for applications that change session state in ways
    /// the adapter cannot see (a function called by a `SELECT` that runs `SET`, for instance;
    /// the [module docs](self#what-you-must-not-do) list them).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresHealthCheck;
    ///
    /// let check = TokioPostgresHealthCheck::new().reset_every_reuse(true);
    /// # drop(check);
    /// ```
    pub fn reset_every_reuse(mut self, every: bool) -> Self {
        self.every_reuse = every;
        self
    }

    /// Chooses what `reset` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::tokio_postgres::{PostgresReset, TokioPostgresHealthCheck};
    ///
    /// let check = TokioPostgresHealthCheck::new().reset_mode(PostgresReset::Rollback);
    /// # drop(check);
    /// ```
    pub fn reset_mode(mut self, mode: PostgresReset) -> Self {
        self.mode = mode;
        self
    }
}

impl ConnectionHealthCheck<TokioPostgresConnection> for TokioPostgresHealthCheck {
    async fn is_healthy(&self, conn: &mut TokioPostgresConnection) -> bool {
        !conn.is_closed() && conn.client.simple_query("SELECT 1").await.is_ok()
    }

    async fn reset(&self, conn: &mut TokioPostgresConnection) -> bool {
        if conn.is_closed() {
            return false;
        }
        let client = &conn.client;
        let cleared = &conn.reset_cleared;
        let Some(session) = conn.session.as_deref().filter(|_| !self.every_reuse) else {
            // Unwatched: every mode but `Rollback` resets session settings.
            cleared.store(
                self.mode != PostgresReset::Rollback,
                std::sync::atomic::Ordering::Relaxed,
            );
            let reset = reset_unknown(client, self.mode).await;
            if self.mode == PostgresReset::DiscardAll {
                // Sent, or the session is destroyed: either way the cached statements are gone.
                conn.discards
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            return reset;
        };
        cleared.store(false, std::sync::atomic::Ordering::Relaxed);
        // Whatever the last user queued is written once the connection task is idle; unread
        // bytes are given one more pass of the task (the reactor wakes it for them).
        session.task_idle().await;
        let mut peek = session.peek();
        if peek == Some(Peek::Unread) {
            session.task_idle().await;
            peek = session.peek();
        }
        if peek == Some(Peek::End) || session.ended() {
            return false;
        }
        if peek == Some(Peek::Nothing) && session.clean() {
            // The common case: the socket saw every answer come back idle and nothing change,
            // and nothing (not even the end of the stream) waits unread on it.
            return true;
        }
        if !session.settled() || peek != Some(Peek::Nothing) {
            // A request of the last user is still unanswered (a future dropped mid-flight, or
            // the `ROLLBACK` a dropped `Transaction` sends), or the socket holds something the
            // connection task has not read yet: once an empty query is answered, everything
            // before it is, and the status read next (its `ReadyForQuery`'s) is current.
            if client.simple_query("").await.is_err() {
                return false;
            }
        }
        let (in_block, changed) = (session.in_transaction(), session.changed());
        for sql in reset_sql(self.mode, in_block, changed) {
            if client.batch_execute(sql).await.is_err() {
                return false;
            }
        }
        // Every mode but `Rollback` resets session settings whenever it sends anything.
        let sent = !reset_sql(self.mode, in_block, changed).is_empty();
        cleared.store(
            sent && self.mode != PostgresReset::Rollback,
            std::sync::atomic::Ordering::Relaxed,
        );
        // The reset's own `RESET ALL` and friends marked it changed; all are answered now.
        session.clear_changed();
        true
    }

    fn reset_cleared_session(&self, conn: &TokioPostgresConnection) -> bool {
        conn.reset_cleared
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The hook's own settings are the session's clean state: not a change to reset.
    fn prepared(&self, conn: &mut TokioPostgresConnection) {
        if let Some(session) = conn.session.as_deref() {
            session.clear_changed();
        }
    }
}

/// Resets a session whose state the adapter could not watch, without the warning a blind
/// `ROLLBACK` writes: one round trip when no transaction was left open.
async fn reset_unknown(client: &Client, mode: PostgresReset) -> bool {
    if mode == PostgresReset::DiscardAll {
        return match client.batch_execute("DISCARD ALL").await {
            Ok(()) => true,
            Err(e) if mode.needs_rollback(&e) => {
                client.batch_execute("ROLLBACK").await.is_ok()
                    && client.batch_execute("DISCARD ALL").await.is_ok()
            }
            Err(_) => false,
        };
    }
    let in_block = match client.simple_query(&probe_sql(mode)).await {
        Ok(messages) => probe_found_block(messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })),
        Err(e) if in_failed_block(&e) => true,
        Err(_) => return false,
    };
    if !in_block {
        return true;
    }
    for sql in reset_sql(mode, true, true) {
        if client.batch_execute(sql).await.is_err() {
            return false;
        }
    }
    true
}
