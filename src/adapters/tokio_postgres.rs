//! PostgreSQL through the async [`tokio-postgres`](::tokio_postgres) client (feature
//! `tokio-postgres`), usable from any executor and from plain threads.
//!
//! # How it is built
//!
//! A `tokio-postgres` connection is two halves: a `Client` that sends requests over a channel, and
//! a `Connection` future that owns the socket and must be polled by a tokio runtime. The factory
//! owns a small multi-threaded tokio runtime (one worker thread, named `nexus-pool-postgres`), or
//! uses one you hand it with [`with_runtime`](TokioPostgresConnectionFactory::with_runtime).
//! `create` connects *on that runtime* and spawns the `Connection` there; the pool lends a
//! [`TokioPostgresConnection`], which derefs to the `Client` and keeps the runtime alive.
//!
//! So the caller needs no runtime of its own: the `Client`'s futures only talk to channels, and
//! any executor, or `futures_lite::future::block_on` on a plain thread, can drive them while the
//! socket is served elsewhere. `acquire_blocking()` works from a thread that has never seen tokio,
//! and `acquire().await` works under tokio, smol or async-std alike.
//!
//! `validate` checks that the connection task is alive (the task reads the socket all the time,
//! so a backend the server terminated shows up here without a round trip) and sends an empty
//! query. [`TokioPostgresHealthCheck`] runs `SELECT 1` in `is_healthy` and resets a used session:
//! it rolls back a transaction left open and clears the session, everything `DISCARD ALL` does
//! except deallocating the client's prepared statements ([`PostgresReset`] says why, and offers
//! plain `DISCARD ALL`).
//! These run within the pool's `check_timeout`: the pool drops the future at the deadline and
//! destroys the connection, and dropping a `tokio-postgres` future is safe.
//!
//! # Thread safety
//!
//! `TokioPostgresConnection` is `Send + Sync`; the guard lends it to one caller at a time.
//! Two things still need the runtime and are reached through
//! [`runtime_handle`](TokioPostgresConnection::runtime_handle): `CancelToken::cancel_query`
//! (it opens a socket) and anything you want to spawn next to the connection. Notices are logged
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
//! // Async code on any executor (here `futures_lite`'s `block_on`; tokio, smol and async-std
//! // work the same):
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

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use ::tokio::runtime::{Handle, Runtime};
use ::tokio::task::JoinHandle;
use ::tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use ::tokio_postgres::{Client, Config, NoTls, Socket};

use super::pg_common::OneLine;
pub use super::pg_common::{PostgresReset, connection_lost};
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

/// Why a factory could not be built or a connection could not be made.
///
/// `Display` is one line that includes the server's message (`db error: FATAL: database "x"
/// does not exist`, `error connecting to server: Connection refused (os error 111)`), which
/// [`tokio_postgres::Error`]'s own `Display` leaves to its `source()`. The driver's error is the
/// [`source()`](std::error::Error::source), so a caller walking the chain can downcast it and
/// ask for its [`code()`](tokio_postgres::Error::code).
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, TokioPostgresError};
///
/// let err = TokioPostgresConnectionFactory::new("postgres://[nonsense").unwrap_err();
/// assert!(matches!(err, TokioPostgresError::Postgres(_)));
/// // The driver's cause is in the text, and the driver's error is the source.
/// assert!(err.to_string().starts_with("invalid connection string: "), "{err}");
/// assert!(err.source().unwrap().is::<tokio_postgres::Error>());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokioPostgresError {
    /// The connection string did not parse, or connecting failed.
    #[error("{}", OneLine(.0))]
    Postgres(#[from] ::tokio_postgres::Error),
    /// The factory's own runtime could not be started.
    #[error("could not start the runtime for the connections")]
    Runtime(#[source] std::io::Error),
    /// The runtime the connections run on has shut down.
    #[error("the runtime the connections run on has shut down")]
    RuntimeGone,
}

/// The runtime the connections' I/O runs on: one the factory started (shut down when the factory
/// and the last connection are gone), or one the user handed in.
#[derive(Clone)]
enum RuntimeRef {
    Owned(Arc<OwnedRuntime>),
    Borrowed(Handle),
}

impl RuntimeRef {
    fn handle(&self) -> &Handle {
        match self {
            RuntimeRef::Owned(owned) => owned.handle(),
            RuntimeRef::Borrowed(handle) => handle,
        }
    }
}

/// A runtime that may be dropped anywhere, including inside another runtime: it shuts down in
/// the background instead of blocking (which tokio forbids in async contexts).
struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    fn start() -> std::io::Result<Self> {
        let runtime = ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nexus-pool-postgres")
            .enable_all()
            .build()?;
        Ok(OwnedRuntime(Some(runtime)))
    }

    fn handle(&self) -> &Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts a spawned task if the future waiting for it is dropped (a cancelled acquire must not
/// leave a connect running for nobody).
struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, TokioPostgresError> {
        let handle = self.0.as_mut().ok_or(TokioPostgresError::RuntimeGone)?;
        let result = handle.await.map_err(|_| TokioPostgresError::RuntimeGone);
        self.0 = None;
        result
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
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
}

impl<T> fmt::Debug for TokioPostgresConnectionFactory<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug hides the password.
        f.debug_struct("TokioPostgresConnectionFactory")
            .field("config", &self.config)
            .field(
                "runtime",
                &match self.runtime {
                    RuntimeRef::Owned(_) => "owned",
                    RuntimeRef::Borrowed(_) => "borrowed",
                },
            )
            .finish_non_exhaustive()
    }
}

impl TokioPostgresConnectionFactory<NoTls> {
    /// Parses a connection string (URL or `key=value` form), without TLS, and starts the
    /// factory's runtime (one worker thread). Sets a 10 s `connect_timeout` if the string has
    /// none.
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

    /// Uses a configuration you built, as it is, without TLS, and starts the factory's runtime.
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
    /// # Ok::<(), nexus_pool::adapters::tokio_postgres::TokioPostgresError>(())
    /// ```
    pub fn from_config(config: Config) -> Result<Self, TokioPostgresError> {
        let runtime = OwnedRuntime::start().map_err(TokioPostgresError::Runtime)?;
        Ok(TokioPostgresConnectionFactory {
            config,
            tls: NoTls,
            runtime: RuntimeRef::Owned(Arc::new(runtime)),
        })
    }
}

impl<T> TokioPostgresConnectionFactory<T> {
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

    /// The recommended health check for these connections ([`PostgresReset::Clean`] on reuse).
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
        TokioPostgresHealthCheck::new()
    }
}

impl<T> TokioPostgresConnectionFactory<T>
where
    Self: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    /// Starts a pool builder: the same as [`ConnectionPool::builder`] with this factory, which
    /// attaches [`health_check`](Self::health_check) (see
    /// [`ConnectionFactory::default_health_check`]), so every reused connection is reset before
    /// it is lent. Add a config and `build()`.
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
        let connect = AbortOnDrop(Some(handle.spawn(async move { config.connect(tls).await })));
        let (client, connection) = connect.join().await??;
        let driver = handle.spawn(async move {
            // Ends with an error when the server or the network closes the socket, and cleanly
            // once the client is dropped; either way `is_closed` then reports it.
            let _ = connection.await;
        });
        Ok(TokioPostgresConnection {
            client,
            driver,
            runtime: self.runtime.clone(),
        })
    }

    async fn validate(&self, conn: &mut TokioPostgresConnection) -> bool {
        !conn.is_closed() && conn.client.simple_query("").await.is_ok()
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
    /// Keeps an owned runtime alive while any of its connections is.
    runtime: RuntimeRef,
}

impl fmt::Debug for TokioPostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresConnection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl TokioPostgresConnection {
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

    /// The runtime this connection's socket is served on: spawn `CancelToken::cancel_query`
    /// there, since it opens a socket of its own.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// let token = conn.cancel_token();
    /// // Cancels whatever the session runs now, from the connection's runtime.
    /// conn.runtime_handle()
    ///     .block_on(token.cancel_query(tokio_postgres::NoTls))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
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

/// Pings idle connections with `SELECT 1` and resets used ones; see [`PostgresReset`].
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
        }
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
        match conn.client.batch_execute(self.mode.sql()).await {
            Ok(()) => true,
            Err(e) if self.mode.needs_rollback(&e) => {
                conn.client.batch_execute("ROLLBACK").await.is_ok()
                    && conn.client.batch_execute(self.mode.sql()).await.is_ok()
            }
            Err(_) => false,
        }
    }
}
