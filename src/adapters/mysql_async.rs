//! MySQL and MariaDB through the async [`mysql_async`] client (feature
//! `mysql-async`), usable from any executor and from plain threads.
//!
//! # How it is built
//!
//! A `mysql_async::Conn` does its own I/O on a tokio socket, which must be registered with a
//! tokio runtime that keeps running: once it is, the socket's readiness comes from that
//! runtime's reactor, whichever thread polls the connection's futures. So the factory picks a
//! runtime: built inside a multi-threaded tokio runtime (a `#[tokio::main]` application), it
//! uses that one; built anywhere else, it owns a small multi-threaded tokio runtime (one worker
//! thread, named `nexus-pool-mysql`).
//! [`with_runtime`](MysqlAsyncConnectionFactory::with_runtime) hands it a runtime of your choice,
//! [`with_own_runtime`](MysqlAsyncConnectionFactory::with_own_runtime) makes it start its own
//! anyway (for a pool that outlives the runtime it was built in).
//!
//! `create` connects *on that runtime* (the socket is registered there), within
//! [`connect_timeout`](MysqlAsyncConnectionFactory::connect_timeout), and `destroy` says goodbye
//! (`COM_QUIT`) there. The pool lends a [`MysqlAsyncConnection`], which derefs to the
//! `mysql_async::Conn` (so every [`Queryable`] method works
//! on it) and keeps the runtime alive. Its queries can then be awaited under tokio, smol or
//! async-std, or driven by `futures_lite::future::block_on` on a plain thread:
//! `acquire_blocking()` works from a thread that has never seen tokio. (What needs tokio's
//! context beyond the socket, such as spawning, is reached through
//! [`runtime_handle`](MysqlAsyncConnection::runtime_handle).)
//!
//! The feature builds the client in pure Rust without TLS (`mysql_async`'s `minimal-rust`): no
//! C client library, nothing to install.
//!
//! # Validate and reset
//!
//! `validate` and [`MysqlAsyncHealthCheck::is_healthy`] send `COM_PING`.
//! [`MysqlAsyncHealthCheck::reset`] sends `COM_RESET_CONNECTION` ([`Conn::reset`](::mysql_async::Conn::reset)):
//! the server rolls back a transaction left open, drops temporary tables, releases `GET_LOCK`
//! and table locks, resets session variables to the global values and user variables to nothing,
//! and forgets prepared statements (the client's statement cache is cleared with them). The
//! `Opts`' `setup` commands run again, and then the pool runs its `on_connect` hook again. On a
//! server without `COM_RESET_CONNECTION` (MySQL before 5.7.3, MariaDB before 10.2.4) it sends
//! `COM_CHANGE_USER`, which clears the same state. A result set its holder left unread is read
//! off first, by the client.
//!
//! The reset runs when the connection is next lent (or at the pool's next health check pass,
//! `health_check_interval`), not when it is returned: until then, a transaction left open keeps
//! its row locks. It is a safety net; roll back on your own error paths all the same.
//!
//! A request its holder dropped before the reply came (a cancelled future, a timeout around a
//! slow query) leaves the connection in an unknown state, which the client records
//! ([`is_disconnected`](::mysql_async::Conn::is_disconnected)): the reset sees it and returns
//! `false`, so the connection is destroyed instead of lent. These callbacks are async, so the
//! pool's timers (`check_timeout`, `acquire_timeout`) bound them.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(all(feature = "blocking", feature = "async"))] {
//! use mysql_async::prelude::Queryable;
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::mysql_async::{MysqlAsyncConnectionFactory, connection_lost};
//!
//! let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1:3306/test")?
//!     .pool_builder() // with MysqlAsyncHealthCheck attached: every reuse is reset first
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! // A plain thread, no runtime anywhere in sight:
//! let mut conn = pool.acquire_blocking()?;
//! let two: Option<i64> = futures_lite::future::block_on(conn.query_first("SELECT 1 + 1"))?;
//! assert_eq!(two, Some(2));
//! drop(conn);
//!
//! // Async code on any executor (tokio, smol and async-std work the same):
//! futures_lite::future::block_on(async {
//!     let mut conn = pool.acquire().await?;
//!     match conn.query_first::<i64, _>("SELECT 40 + 2").await {
//!         Ok(sum) => assert_eq!(sum, Some(42)),
//!         Err(e) => {
//!             if connection_lost(&e) {
//!                 conn.mark_broken(); // never reuse a dead session
//!             }
//!             return Err(e.into());
//!         }
//!     }
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use ::mysql_async::prelude::Queryable;
use ::mysql_async::{ChangeUserOpts, Conn, Opts};
use ::tokio::runtime::{Handle, RuntimeFlavor};

use super::runtime::{AbortOnDrop, OwnedRuntime, RuntimeRef};
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `destroy` waits for the server to take the goodbye; the socket is closed after it
/// either way.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a factory could not be built or a connection could not be made.
///
/// As every error of this crate, its `Display` is the adapter's own context in one line, and
/// the cause (for [`Mysql`](Self::Mysql), the driver's error) is the
/// [`source()`](std::error::Error::source), not repeated in the text.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::mysql_async::{MysqlAsyncConnectionFactory, MysqlAsyncError};
///
/// let err = MysqlAsyncConnectionFactory::new("postgres://not/mysql").unwrap_err();
/// assert!(matches!(err, MysqlAsyncError::Mysql(_)));
/// assert_eq!(err.to_string(), "the MySQL driver returned an error");
/// assert!(err.source().unwrap().is::<mysql_async::Error>());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MysqlAsyncError {
    /// The URL did not parse, or connecting failed; the driver's error is the source.
    #[error("the MySQL driver returned an error")]
    Mysql(#[source] ::mysql_async::Error),
    /// Connecting took longer than the factory's `connect_timeout`.
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(Duration),
    /// The factory's own runtime could not be started.
    #[error("could not start the runtime for the connections")]
    Runtime(#[source] std::io::Error),
    /// The runtime the connections run on has shut down.
    #[error("the runtime the connections run on has shut down")]
    RuntimeGone,
}

impl From<::mysql_async::Error> for MysqlAsyncError {
    fn from(e: ::mysql_async::Error) -> Self {
        MysqlAsyncError::Mysql(e)
    }
}

/// Whether `e` means the session is gone (the server closed it, `KILL CONNECTION`, the network
/// dropped): call [`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken) then,
/// so it is destroyed at once. (If you do not, the next reset finds out and destroys it.)
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::mysql_async::connection_lost;
///
/// let io = mysql_async::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert!(connection_lost(&io));
/// let syntax = mysql_async::Error::Server(mysql_async::ServerError {
///     code: 1064,
///     message: "You have an error in your SQL syntax".into(),
///     state: "42000".into(),
/// });
/// assert!(!connection_lost(&syntax));
/// ```
pub fn connection_lost(e: &::mysql_async::Error) -> bool {
    match e {
        // ER_SERVER_SHUTDOWN (1053), ER_CONNECTION_KILLED (1927, MariaDB's answer to
        // `KILL CONNECTION`), ER_CLIENT_INTERACTION_TIMEOUT (4031, MySQL 8's `wait_timeout`).
        ::mysql_async::Error::Server(e) => matches!(e.code, 1053 | 1927 | 4031),
        _ => e.is_fatal(),
    }
}

/// Makes [`MysqlAsyncConnection`]s whose socket is served by a tokio runtime; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = MysqlAsyncConnectionFactory::new("mysql://app@db.internal:3306/orders")?;
/// assert_eq!(factory.opts().db_name(), Some("orders"));
/// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
/// ```
#[derive(Clone)]
pub struct MysqlAsyncConnectionFactory {
    opts: Opts,
    connect_timeout: Duration,
    runtime: RuntimeRef,
}

impl fmt::Debug for MysqlAsyncConnectionFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the `Opts`: they hold the password.
        f.debug_struct("MysqlAsyncConnectionFactory")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .field("db", &self.opts.db_name())
            .field("connect_timeout", &self.connect_timeout)
            .field("runtime", &self.runtime.kind())
            .finish_non_exhaustive()
    }
}

impl MysqlAsyncConnectionFactory {
    /// Parses a connection URL (`mysql://[user[:password]@]host[:port][/database][?params]`,
    /// with `mysql_async`'s parameters). The runtime is chosen as
    /// [`from_opts`](Self::from_opts) says.
    ///
    /// # Errors
    ///
    /// The URL does not parse, or the runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// assert!(MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1:3306/test").is_ok());
    /// assert!(MysqlAsyncConnectionFactory::new("not a url").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self, MysqlAsyncError> {
        let opts = Opts::from_url(url).map_err(::mysql_async::Error::from)?;
        Self::from_opts(opts)
    }

    /// Uses options you built. Called inside a multi-threaded tokio runtime, the connections'
    /// sockets are served by that runtime; anywhere else (a plain thread, another executor, a
    /// current-thread runtime, which a blocking caller could stall) the factory starts a
    /// runtime of its own (one worker thread).
    ///
    /// # Errors
    ///
    /// The runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use mysql_async::OptsBuilder;
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let opts = OptsBuilder::default()
    ///     .ip_or_hostname("127.0.0.1")
    ///     .user(Some("root"))
    ///     .db_name(Some("test"))
    ///     .setup(vec!["SET time_zone = '+00:00'"]);
    /// let factory = MysqlAsyncConnectionFactory::from_opts(opts)?;
    /// assert!(factory.has_own_runtime()); // not inside a tokio runtime here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_opts(opts: impl Into<Opts>) -> Result<Self, MysqlAsyncError> {
        let runtime = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                RuntimeRef::Borrowed(handle)
            }
            _ => RuntimeRef::Owned(Arc::new(
                OwnedRuntime::start("nexus-pool-mysql").map_err(MysqlAsyncError::Runtime)?,
            )),
        };
        Ok(MysqlAsyncConnectionFactory {
            opts: opts.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            runtime,
        })
    }

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
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let app = tokio::runtime::Runtime::new()?;
    /// let factory = app.block_on(async {
    ///     let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?;
    ///     assert!(!factory.has_own_runtime()); // it took the runtime it was built in
    ///     factory.with_own_runtime()
    /// })?;
    /// drop(app);
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_own_runtime(mut self) -> Result<Self, MysqlAsyncError> {
        if !self.has_own_runtime() {
            let runtime =
                OwnedRuntime::start("nexus-pool-mysql").map_err(MysqlAsyncError::Runtime)?;
            self.runtime = RuntimeRef::Owned(Arc::new(runtime));
        }
        Ok(self)
    }

    /// Runs the connections on a runtime you already have instead of the factory's own (which
    /// is then shut down). The runtime must outlive the pool; connections fail once it is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?
    ///     .with_runtime(runtime.handle().clone());
    /// assert!(!factory.has_own_runtime());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_runtime(mut self, handle: Handle) -> Self {
        self.runtime = RuntimeRef::Borrowed(handle);
        self
    }

    /// Whether the connections run on a runtime the factory started (rather than the one it was
    /// built in or was handed).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?;
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
    /// ```
    pub fn has_own_runtime(&self) -> bool {
        matches!(self.runtime, RuntimeRef::Owned(_))
    }

    /// How long `create` may take to connect, authenticate and run the `Opts`' `init` and
    /// `setup` commands; 10 s by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?
    ///     .connect_timeout(Duration::from_secs(2));
    /// # drop(factory);
    /// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The options connections are opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1:3307/test")?;
    /// assert_eq!(factory.opts().tcp_port(), 3307);
    /// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
    /// ```
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// The runtime the connections' sockets are served by.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?;
    /// assert_eq!(factory.runtime_handle().block_on(async { 42 }), 42);
    /// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// The health check: `COM_PING` for idle connections, `COM_RESET_CONNECTION` on reuse.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?;
    /// let check = factory.health_check();
    /// # drop(check);
    /// # Ok::<(), nexus_pool::adapters::mysql_async::MysqlAsyncError>(())
    /// ```
    pub fn health_check(&self) -> MysqlAsyncHealthCheck {
        MysqlAsyncHealthCheck { _private: () }
    }

    /// Starts a pool builder: the same as [`ConnectionPool::builder`] with this factory, which
    /// attaches [`health_check`](Self::health_check) (see
    /// [`ConnectionFactory::default_health_check`]), so every reused connection is reset before
    /// it is lent. Add a config and `build()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::ConnectionPoolConfig;
    /// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    ///
    /// let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?
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

impl ConnectionFactory for MysqlAsyncConnectionFactory {
    type Connection = MysqlAsyncConnection;
    type Error = MysqlAsyncError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> Result<MysqlAsyncConnection, MysqlAsyncError> {
        let opts = self.opts.clone();
        let timeout = self.connect_timeout;
        // The socket is registered with the reactor of the runtime the connect runs on, and
        // the connect needs tokio's timers: run it there, whoever polls us.
        let connect = AbortOnDrop(Some(self.runtime.handle().spawn(async move {
            match ::tokio::time::timeout(timeout, Conn::new(opts)).await {
                Ok(result) => result.map_err(MysqlAsyncError::from),
                Err(_) => Err(MysqlAsyncError::ConnectTimeout(timeout)),
            }
        })));
        let conn = connect.join(|| MysqlAsyncError::RuntimeGone).await??;
        Ok(MysqlAsyncConnection {
            conn: Some(conn),
            runtime: self.runtime.clone(),
        })
    }

    /// Sends `COM_QUIT` on the runtime (waiting at most 2 s for it to go out), then closes the
    /// socket.
    async fn destroy(&self, mut conn: MysqlAsyncConnection) {
        let Some(inner) = conn.conn.take() else {
            return;
        };
        let goodbye = self.runtime.handle().spawn(async move {
            let _ = ::tokio::time::timeout(GOODBYE_TIMEOUT, inner.disconnect()).await;
        });
        let _ = AbortOnDrop(Some(goodbye)).join(|| ()).await;
    }

    async fn validate(&self, conn: &mut MysqlAsyncConnection) -> bool {
        ping(conn).await
    }
}

/// A pooled `mysql_async` session: the [`Conn`] (it derefs to it) plus a hold on the runtime
/// whose reactor serves its socket.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "blocking")] {
/// use mysql_async::prelude::Queryable;
/// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
///
/// let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?
///     .pool_builder()
///     .build()?;
/// let mut conn = pool.acquire_blocking()?;
/// futures_lite::future::block_on(async {
///     let mut tx = conn.start_transaction(Default::default()).await?; // DerefMut to the Conn
///     tx.query_drop("CREATE TEMPORARY TABLE t (x INT)").await?;
///     tx.commit().await
/// })?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MysqlAsyncConnection {
    /// Always `Some` while the pool holds or lends it; taken only by `destroy`.
    conn: Option<Conn>,
    /// Keeps an owned runtime, and so the reactor serving the socket, alive while the
    /// connection is.
    runtime: RuntimeRef,
}

impl fmt::Debug for MysqlAsyncConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlAsyncConnection")
            .field("id", &self.conn.as_ref().map(Conn::id))
            .finish_non_exhaustive()
    }
}

impl MysqlAsyncConnection {
    /// The connection, as `Deref` gives it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    /// # let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// println!("connection id {}", conn.conn().id());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conn(&self) -> &Conn {
        self
    }

    /// The connection, mutably (for a `&mut Conn` argument), as `DerefMut` gives it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    /// # let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?.pool_builder().build()?;
    /// use mysql_async::prelude::Queryable;
    ///
    /// async fn count(conn: &mut mysql_async::Conn) -> mysql_async::Result<Option<i64>> {
    ///     conn.query_first("SELECT COUNT(*) FROM information_schema.tables").await
    /// }
    /// let mut conn = pool.acquire_blocking()?;
    /// futures_lite::future::block_on(count(conn.conn_mut()))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conn_mut(&mut self) -> &mut Conn {
        self
    }

    /// The runtime this connection's socket is served by: spawn there what needs tokio's
    /// context next to the connection.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
    /// # let pool = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// assert_eq!(conn.runtime_handle().block_on(async { 42 }), 42);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }
}

impl Deref for MysqlAsyncConnection {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("only `destroy` takes the connection"),
        }
    }
}

impl DerefMut for MysqlAsyncConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("only `destroy` takes the connection"),
        }
    }
}

/// Pings idle connections with `COM_PING` and resets used ones with `COM_RESET_CONNECTION`;
/// see the [module docs](self#validate-and-reset). Made by
/// [`MysqlAsyncConnectionFactory::health_check`].
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPool;
/// use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
///
/// let factory = MysqlAsyncConnectionFactory::new("mysql://root@127.0.0.1/test")?;
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory).health_check(check).build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MysqlAsyncHealthCheck {
    _private: (),
}

impl ConnectionHealthCheck<MysqlAsyncConnection> for MysqlAsyncHealthCheck {
    async fn is_healthy(&self, conn: &mut MysqlAsyncConnection) -> bool {
        ping(conn).await
    }

    /// `COM_RESET_CONNECTION` (or `COM_CHANGE_USER` on an old server) and the `Opts`' `setup`
    /// commands; the pool then runs its `on_connect` hook again.
    async fn reset(&self, conn: &mut MysqlAsyncConnection) -> bool {
        if conn.is_disconnected() {
            return false;
        }
        match conn.reset().await {
            Ok(true) => true,
            Ok(false) => conn.change_user(ChangeUserOpts::default()).await.is_ok(),
            Err(_) => false,
        }
    }
}

async fn ping(conn: &mut MysqlAsyncConnection) -> bool {
    !conn.is_disconnected() && conn.ping().await.is_ok()
}
