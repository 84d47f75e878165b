//! Redis (and Valkey) through the [`redis`] crate's async connection (feature `redis-async`),
//! usable from any executor and from plain threads: one connection, one socket, per pooled slot.
//!
//! # How it is built
//!
//! redis-rs 1.x has one general async connection, [`MultiplexedConnection`]: a handle that sends
//! requests over a channel to a driver task, which owns the socket and must run on a tokio
//! runtime (with the `redis/tokio-comp` feature this adapter turns on). Built inside a
//! multi-threaded tokio runtime, the factory runs the drivers there (no thread hop per command);
//! built anywhere else, it owns a small multi-threaded tokio runtime (one worker thread, named
//! `nexus-pool-redis`). [`with_runtime`](RedisAsyncConnectionFactory::with_runtime) hands it a
//! runtime of your choice, [`with_own_runtime`](RedisAsyncConnectionFactory::with_own_runtime)
//! makes it start its own anyway (for a pool that outlives the runtime it was built in).
//!
//! `create` connects *on that runtime*, with no response timeout on the connection (see
//! [below](#timeouts)), and names it with `CLIENT SETNAME` if you gave a
//! [`client_name`](RedisAsyncConnectionFactory::client_name). The pool lends a
//! [`RedisAsyncConnection`], which implements [`redis::aio::ConnectionLike`] (so every
//! [`AsyncCommands`](redis::AsyncCommands) method, `cmd(..).query_async` and
//! `pipe().query_async` work on it) and keeps the runtime alive. Its requests only talk to
//! channels, so any executor, or `futures_lite::future::block_on` on a plain thread, can drive
//! them while the socket is served on the runtime: `acquire_blocking()` works from a thread that
//! has never seen tokio, and `acquire().await` works under tokio, smol or async-std alike.
//!
//! # One connection per slot, never shared
//!
//! A `MultiplexedConnection` is shared by design: its clones pipeline many callers' requests on
//! one socket. That is exactly what `MULTI`/`EXEC`, `WATCH`, blocking pops, `SELECT` and
//! `CLIENT` settings cannot have: another task's command would land inside your transaction, or
//! wait behind your `BLPOP`. So the factory opens a *new* socket for every slot
//! (`get_multiplexed_async_connection` on a fresh connect, never a clone of another slot's
//! handle), and [`RedisAsyncConnection`] is not `Clone` and does not deref to the handle: while a
//! guard lends it, its socket carries only its holder's commands, in the holder's order.
//! ([`multiplexed_mut`](RedisAsyncConnection::multiplexed_mut) reaches the handle for its own
//! methods, such as RESP3 `subscribe`; do not keep a clone of it past the guard.)
//!
//! # Validate and reset
//!
//! `validate` and [`RedisAsyncHealthCheck::is_healthy`] send `PING`.
//! [`RedisAsyncHealthCheck::reset`] is the blocking adapter's reset: one pipeline of `RESET`
//! (leaves `MULTI`, forgets `WATCH`es, leaves subscriber and `MONITOR` mode, turns
//! `CLIENT TRACKING` off and `CLIENT REPLY` on), then what the URL asked for (`AUTH`, `HELLO 3`,
//! `SELECT` of the configured database) and the client name again (`RESET` clears it). On a
//! server without `RESET` it falls back to `DISCARD`, `UNWATCH` and `SELECT`.
//!
//! A request its holder dropped before the reply came (a cancelled future, a timeout around a
//! `BLPOP`) leaves the socket busy for an unknown time: the reset sees that and returns `false`,
//! so the connection is destroyed at once instead of being lent behind someone else's blocking
//! command.
//!
//! # Timeouts
//!
//! The connections have no response timeout: a redis-rs response timeout needs a tokio timer in
//! the *caller's* context, which a plain thread or smol does not have, and blocking commands
//! (`BLPOP key 0`) must be able to wait. The pool's own callbacks are bounded anyway (the pool
//! drops `validate` and `reset` at its `check_timeout`, and destroys the connection); bound your
//! own commands with your executor's timeout if you need to, and let the guard go after one
//! fires (the reset then destroys the connection, see above).
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(all(feature = "blocking", feature = "async"))] {
//! use redis::AsyncCommands;
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::redis_async::{RedisAsyncConnectionFactory, connection_lost};
//!
//! let pool = RedisAsyncConnectionFactory::new("redis://127.0.0.1:6379/0")?
//!     .pool_builder() // with RedisAsyncHealthCheck attached: every reuse is reset first
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! // A plain thread, no runtime anywhere in sight:
//! let mut conn = pool.acquire_blocking()?;
//! let n: i64 = futures_lite::future::block_on(conn.incr("visits", 1))?;
//! drop(conn);
//!
//! // Async code on any executor (tokio, smol and async-std work the same):
//! futures_lite::future::block_on(async {
//!     let mut conn = pool.acquire().await?;
//!     // A transaction: this socket is ours until the guard is dropped.
//!     let result: redis::RedisResult<(i64,)> = redis::pipe()
//!         .atomic()
//!         .incr("visits", 1)
//!         .query_async(&mut *conn)
//!         .await;
//!     match result {
//!         Ok((m,)) => assert!(m > n),
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

use super::runtime::{AbortOnDrop, OwnedRuntime, RuntimeRef};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    RedisResult, Value,
};
use ::tokio::runtime::{Handle, RuntimeFlavor};

use super::redis::{nothing_to_discard, refuses_reset, reset_pipeline};
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a factory could not be built or a connection could not be made.
///
/// As every error of this crate, its `Display` is the adapter's own context in one line, and
/// the cause (for [`Redis`](Self::Redis), the driver's error) is the
/// [`source()`](std::error::Error::source), not repeated in the text.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::redis_async::{RedisAsyncConnectionFactory, RedisAsyncError};
///
/// let err = RedisAsyncConnectionFactory::new("not a url").unwrap_err();
/// assert!(matches!(err, RedisAsyncError::Redis(_)));
/// assert_eq!(err.to_string(), "the Redis driver returned an error");
/// assert!(err.source().unwrap().is::<redis::RedisError>());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisAsyncError {
    /// The URL did not parse, or connecting failed; the driver's error is the source.
    #[error("the Redis driver returned an error")]
    Redis(#[source] RedisError),
    /// Connecting (and naming the connection, if the factory sets a client name) took longer
    /// than the factory's `connect_timeout`.
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(Duration),
    /// The factory's own runtime could not be started.
    #[error("could not start the runtime for the connections")]
    Runtime(#[source] std::io::Error),
    /// The runtime the connections run on has shut down.
    #[error("the runtime the connections run on has shut down")]
    RuntimeGone,
}

impl From<RedisError> for RedisAsyncError {
    fn from(e: RedisError) -> Self {
        RedisAsyncError::Redis(e)
    }
}

/// Whether `e` means the connection is gone (the server closed it, the network dropped, the
/// driver task ended): call [`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken)
/// then, so it is destroyed at once. (If you do not, the next reset finds out and destroys it.)
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::redis_async::connection_lost;
///
/// let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert!(connection_lost(&refused));
/// let wrong_type = redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError), "WRONGTYPE"));
/// assert!(!connection_lost(&wrong_type));
/// ```
pub fn connection_lost(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_io_error()
}

/// Makes one [`RedisAsyncConnection`] (its own socket) per pooled slot; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1:6379/3")?;
/// assert_eq!(factory.client().get_connection_info().redis_settings().db(), 3);
/// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
/// ```
#[derive(Clone)]
pub struct RedisAsyncConnectionFactory {
    client: Client,
    connect_timeout: Duration,
    client_name: Option<String>,
    runtime: RuntimeRef,
}

impl fmt::Debug for RedisAsyncConnectionFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAsyncConnectionFactory")
            .field("addr", &self.client.get_connection_info().addr())
            .field(
                "db",
                &self.client.get_connection_info().redis_settings().db(),
            )
            .field("client_name", &self.client_name)
            .field("runtime", &self.runtime.kind())
            .finish_non_exhaustive()
    }
}

impl RedisAsyncConnectionFactory {
    /// Parses a Redis URL (`redis://[user:password@]host:port/db`, `redis+unix:///path`; add
    /// `?protocol=resp3` for RESP3). A `/db` path selects the database every connection is reset
    /// to. The runtime is chosen as [`from_client`](Self::from_client) says.
    ///
    /// # Errors
    ///
    /// The URL does not parse, or the runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// assert!(RedisAsyncConnectionFactory::new("redis://127.0.0.1:6379/").is_ok());
    /// assert!(RedisAsyncConnectionFactory::new("not a url").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self, RedisAsyncError> {
        Self::from_client(Client::open(url)?)
    }

    /// Uses a client you built. Called inside a multi-threaded tokio runtime, the connections'
    /// I/O runs on that runtime; anywhere else (a plain thread, another executor, a
    /// current-thread runtime, which a blocking caller could stall) the factory starts a runtime
    /// of its own (one worker thread).
    ///
    /// # Errors
    ///
    /// The runtime cannot start (the process is out of threads).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let factory = RedisAsyncConnectionFactory::from_client(client)?;
    /// assert!(factory.has_own_runtime()); // not inside a tokio runtime here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_client(client: Client) -> Result<Self, RedisAsyncError> {
        let runtime = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                RuntimeRef::Borrowed(handle)
            }
            _ => RuntimeRef::Owned(Arc::new(
                OwnedRuntime::start("nexus-pool-redis").map_err(RedisAsyncError::Runtime)?,
            )),
        };
        Ok(RedisAsyncConnectionFactory {
            client,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            client_name: None,
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
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let app = tokio::runtime::Runtime::new()?;
    /// let factory = app.block_on(async {
    ///     let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?;
    ///     assert!(!factory.has_own_runtime()); // it took the runtime it was built in
    ///     factory.with_own_runtime()
    /// })?;
    /// drop(app);
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_own_runtime(mut self) -> Result<Self, RedisAsyncError> {
        if !self.has_own_runtime() {
            let runtime =
                OwnedRuntime::start("nexus-pool-redis").map_err(RedisAsyncError::Runtime)?;
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
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?
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
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?;
    /// assert!(factory.has_own_runtime());
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn has_own_runtime(&self) -> bool {
        matches!(self.runtime, RuntimeRef::Owned(_))
    }

    /// How long `create` may take to connect and set the connection up; 5 s by default. Past
    /// it the create fails with [`RedisAsyncError::ConnectTimeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?
    ///     .connect_timeout(Duration::from_secs(1));
    /// # drop(factory);
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A name for every connection (`CLIENT SETNAME`, set when it is made and again by each
    /// reset, since `RESET` clears it): `CLIENT LIST` then shows which connections are this
    /// pool's. No spaces (the server refuses them).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?
    ///     .client_name("billing-worker");
    /// assert_eq!(factory.get_client_name(), Some("billing-worker"));
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// The name given with [`client_name`](Self::client_name), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?;
    /// assert_eq!(factory.get_client_name(), None);
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn get_client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The client connections are opened from.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1:6380/")?;
    /// assert_eq!(factory.client().get_connection_info().addr().to_string(), "127.0.0.1:6380");
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The runtime the connections' I/O runs on.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?;
    /// assert_eq!(factory.runtime_handle().block_on(async { 42 }), 42);
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }

    /// The health check that resets connections to this factory's settings (database,
    /// credentials, protocol, client name).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/2")?;
    /// let check = factory.health_check();
    /// # drop(check);
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn health_check(&self) -> RedisAsyncHealthCheck {
        RedisAsyncHealthCheck {
            settings: self.client.get_connection_info().redis_settings().clone(),
            client_name: self.client_name.clone(),
            use_reset: Arc::new(AtomicBool::new(true)),
        }
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
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let pool = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?
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

impl ConnectionFactory for RedisAsyncConnectionFactory {
    type Connection = RedisAsyncConnection;
    type Error = RedisAsyncError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> Result<RedisAsyncConnection, RedisAsyncError> {
        let client = self.client.clone();
        let name = self.client_name.clone();
        let timeout = self.connect_timeout;
        // No response timeout: it would need a tokio timer wherever a command is awaited.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        // Connecting needs tokio's reactor and timers, and the driver task is spawned where the
        // connect runs: do it on the runtime, whoever polls us. A fresh connect every time, so
        // every slot has a socket of its own.
        let connect = AbortOnDrop(Some(self.runtime.handle().spawn(async move {
            let setup = async {
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                if let Some(name) = name {
                    ::redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg(name)
                        .exec_async(&mut conn)
                        .await?;
                }
                Ok::<_, RedisError>(conn)
            };
            match ::tokio::time::timeout(timeout, setup).await {
                Ok(result) => result.map_err(RedisAsyncError::from),
                Err(_) => Err(RedisAsyncError::ConnectTimeout(timeout)),
            }
        })));
        let conn = connect.join(|| RedisAsyncError::RuntimeGone).await??;
        Ok(RedisAsyncConnection {
            conn,
            abandoned: false,
            runtime: self.runtime.clone(),
        })
    }

    async fn validate(&self, conn: &mut RedisAsyncConnection) -> bool {
        ping(conn).await
    }
}

/// One Redis connection with a socket of its own, lent by the pool; send commands through its
/// [`ConnectionLike`] implementation (all of [`redis::AsyncCommands`], `query_async`,
/// `exec_async`). See the [module docs](self).
///
/// It is not `Clone` and does not deref to the [`MultiplexedConnection`] inside, so nothing
/// outside the guard can put commands on its socket.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "blocking")] {
/// use redis::AsyncCommands;
/// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
///
/// let pool = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?.pool_builder().build()?;
/// let mut conn = pool.acquire_blocking()?;
/// futures_lite::future::block_on(async {
///     let () = conn.set("greeting", "hello").await?;
///     let value: String = conn.get("greeting").await?;
///     assert_eq!(value, "hello");
///     Ok::<(), redis::RedisError>(())
/// })?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisAsyncConnection {
    conn: MultiplexedConnection,
    /// Set when a request future was dropped before its reply came: the socket may still be
    /// busy with it (a blocking command), so the reset destroys the connection.
    abandoned: bool,
    /// Keeps an owned runtime, and so the driver task, alive while the connection is.
    runtime: RuntimeRef,
}

impl fmt::Debug for RedisAsyncConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAsyncConnection")
            .field("db", &self.conn.get_db())
            .field("abandoned", &self.abandoned)
            .finish_non_exhaustive()
    }
}

impl RedisAsyncConnection {
    /// The redis-rs handle inside, for its own methods (RESP3 `subscribe`, say). Requests sent
    /// through it are not watched for abandonment (see the [module docs](self)), and a clone of
    /// it must not outlive the guard: that would share the slot's socket with the next holder.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let pool = RedisAsyncConnectionFactory::new("redis://127.0.0.1/?protocol=resp3")?
    ///     .pool_builder()
    ///     .build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// futures_lite::future::block_on(conn.multiplexed_mut().subscribe("news"))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn multiplexed_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }

    /// The runtime this connection's I/O runs on, to spawn work next to it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let pool = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// let handle = conn.runtime_handle().clone();
    /// # drop(handle);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime_handle(&self) -> &Handle {
        self.runtime.handle()
    }
}

/// Sets `abandoned` unless disarmed: dropped inside a request future, it tells whether the future
/// was dropped before the reply came.
struct InFlight<'a>(Option<&'a mut bool>);

impl InFlight<'_> {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            *abandoned = true;
        }
    }
}

impl ConnectionLike for RedisAsyncConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let RedisAsyncConnection {
            conn, abandoned, ..
        } = self;
        Box::pin(async move {
            let guard = InFlight(Some(abandoned));
            let reply = conn.send_packed_command(cmd).await;
            guard.done();
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let RedisAsyncConnection {
            conn, abandoned, ..
        } = self;
        Box::pin(async move {
            let guard = InFlight(Some(abandoned));
            let reply = conn.send_packed_commands(cmd, offset, count).await;
            guard.done();
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Pings idle connections and resets used ones to the factory's settings; see the
/// [module docs](self). Made by [`RedisAsyncConnectionFactory::health_check`].
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPool;
/// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
///
/// let factory = RedisAsyncConnectionFactory::new("redis://127.0.0.1/1")?;
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory).health_check(check).build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisAsyncHealthCheck {
    settings: RedisConnectionInfo,
    client_name: Option<String>,
    /// Whether the server understands `RESET`; cleared the first time it says it does not.
    use_reset: Arc<AtomicBool>,
}

impl RedisAsyncHealthCheck {
    /// Resets with `DISCARD`, `UNWATCH` and `SELECT` instead of `RESET`: for servers older than
    /// Redis 6.2, or proxies that do not pass `RESET` on. (Without it, the check finds out by
    /// itself the first time a server refuses `RESET`.) It cannot leave subscriber mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
    ///
    /// let check = RedisAsyncConnectionFactory::new("redis://127.0.0.1/")?
    ///     .health_check()
    ///     .without_reset_command();
    /// # drop(check);
    /// # Ok::<(), nexus_pool::adapters::redis_async::RedisAsyncError>(())
    /// ```
    pub fn without_reset_command(self) -> Self {
        RedisAsyncHealthCheck {
            use_reset: Arc::new(AtomicBool::new(false)),
            ..self
        }
    }

    async fn reset_with_command(&self, conn: &mut RedisAsyncConnection) -> RedisResult<()> {
        let mut pipe = reset_pipeline(&self.settings);
        if let Some(name) = &self.client_name {
            pipe.cmd("CLIENT").arg("SETNAME").arg(name).ignore();
        }
        pipe.exec_async(conn).await
    }

    async fn reset_without_command(&self, conn: &mut RedisAsyncConnection) -> RedisResult<()> {
        // Leaves a MULTI block; "DISCARD without MULTI" just means there was none.
        if let Err(e) = ::redis::cmd("DISCARD").exec_async(conn).await {
            if !nothing_to_discard(&e) {
                return Err(e);
            }
        }
        ::redis::pipe()
            .cmd("UNWATCH")
            .ignore()
            .cmd("SELECT")
            .arg(self.settings.db())
            .ignore()
            .exec_async(conn)
            .await
    }
}

impl ConnectionHealthCheck<RedisAsyncConnection> for RedisAsyncHealthCheck {
    async fn is_healthy(&self, conn: &mut RedisAsyncConnection) -> bool {
        ping(conn).await
    }

    async fn reset(&self, conn: &mut RedisAsyncConnection) -> bool {
        if conn.abandoned {
            return false;
        }
        if self.use_reset.load(Ordering::Relaxed) {
            match self.reset_with_command(conn).await {
                Ok(()) => return true,
                Err(e) if refuses_reset(&e) => self.use_reset.store(false, Ordering::Relaxed),
                Err(_) => return false,
            }
        }
        self.reset_without_command(conn).await.is_ok()
    }
}

async fn ping(conn: &mut RedisAsyncConnection) -> bool {
    !conn.abandoned
        && ::redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .is_ok_and(|pong| pong == "PONG")
}
