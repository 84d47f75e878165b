//! Redis (and Valkey) through the [`redis`] crate's blocking connection (feature
//! `redis`): one `redis::Connection` per pooled slot.
//!
//! # How it is built
//!
//! [`RedisConnectionFactory`] wraps a [`redis::Client`] made from a URL
//! (`redis://[user:password@]host:port/db`, `rediss://` for TLS if the `redis` crate's TLS
//! feature is on, `redis+unix:///path`). `create` opens a connection with a connect timeout and
//! puts socket timeouts on it; `validate` and [`RedisHealthCheck::is_healthy`] send `PING`.
//!
//! [`RedisHealthCheck::reset`] undoes what a previous user could leave on the connection: it sends
//! `RESET` (Redis 6.2+: leaves `MULTI`, forgets `WATCH`es, leaves subscriber and `MONITOR` mode,
//! turns `CLIENT TRACKING` off and `CLIENT REPLY` on) and then restores what the URL asked for:
//! authentication, `HELLO 3` for RESP3, and `SELECT` of the configured database. All in one
//! pipeline, one round trip. On a server without `RESET` it falls back to `DISCARD`, `UNWATCH`
//! and `SELECT`.
//!
//! Why one connection per slot, when redis-rs also has a multiplexed async connection? A pool is
//! for commands that hold a connection: `MULTI`/`EXEC`, `WATCH`, blocking pops, `SELECT`,
//! `CLIENT` settings. Plain request/response traffic from async code is better served by one
//! multiplexed connection and needs no pool.
//!
//! # Thread safety
//!
//! A `redis::Connection` is `Send`, and the guard lends it to one caller at a time. Its calls
//! block the calling thread: use this adapter from blocking threads, or briefly from async code
//! where a blocking call on the executor is acceptable. The pool cannot interrupt a blocked
//! thread, so every call is bounded by a socket timeout: `io_timeout` for your commands (none by
//! default, so blocking commands such as `BLPOP` work), `check_timeout` (2 s) for `PING` and
//! `reset`.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "blocking")] {
//! use redis::{Commands, ConnectionLike};
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::redis::RedisConnectionFactory;
//!
//! let pool = RedisConnectionFactory::new("redis://127.0.0.1:6379/0")?
//!     .pool_builder() // with RedisHealthCheck attached: every reuse is reset first
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! let mut conn = pool.acquire_blocking()?;
//! let result: redis::RedisResult<i64> = conn.incr("visits", 1);
//! match result {
//!     Ok(n) => println!("visit #{n}"),
//!     Err(e) => {
//!         if e.is_io_error() || !conn.is_open() {
//!             conn.mark_broken(); // the socket is gone: never reuse it
//!         }
//!         return Err(e.into());
//!     }
//! }
//! drop(conn);
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::{Client, Connection, ConnectionLike, RedisConnectionInfo, RedisResult};

use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes one blocking [`redis::Connection`] per pooled slot; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::redis::RedisConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = RedisConnectionFactory::new("redis://127.0.0.1:6379/3")?;
/// assert_eq!(factory.client().get_connection_info().redis_settings().db(), 3);
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisConnectionFactory {
    client: Client,
    connect_timeout: Duration,
    io_timeout: Option<Duration>,
    check_timeout: Duration,
}

impl RedisConnectionFactory {
    /// Parses a Redis URL. A `/db` path selects the database every connection is reset to.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// assert!(RedisConnectionFactory::new("redis://127.0.0.1:6379/").is_ok());
    /// assert!(RedisConnectionFactory::new("not a url").is_err());
    /// ```
    pub fn new(url: &str) -> RedisResult<Self> {
        Ok(Self::from_client(Client::open(url)?))
    }

    /// Uses a client you built.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let factory = RedisConnectionFactory::from_client(client);
    /// # drop(factory);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn from_client(client: Client) -> Self {
        RedisConnectionFactory {
            client,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: None,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// How long `create` may take; 5 s by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let factory = RedisConnectionFactory::new("redis://127.0.0.1/")?
    ///     .connect_timeout(Duration::from_secs(1));
    /// # drop(factory);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The read and write timeout of every connection, for your commands; `None` (the default)
    /// waits as long as the server takes, which blocking commands (`BLPOP`) need.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let factory = RedisConnectionFactory::new("redis://127.0.0.1/")?
    ///     .io_timeout(Some(Duration::from_secs(3)));
    /// # drop(factory);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn io_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The timeout of `PING` in `validate` and of the health check's `PING` and `reset`; 2 s
    /// by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let factory = RedisConnectionFactory::new("redis://127.0.0.1/")?
    ///     .check_timeout(Duration::from_millis(500));
    /// # drop(factory);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// The client connections are opened from.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let factory = RedisConnectionFactory::new("redis://127.0.0.1:6380/")?;
    /// assert_eq!(factory.client().get_connection_info().addr().to_string(), "127.0.0.1:6380");
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The health check that resets connections to this factory's settings (database,
    /// credentials, protocol).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let factory = RedisConnectionFactory::new("redis://127.0.0.1/2")?;
    /// let check = factory.health_check();
    /// # drop(check);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn health_check(&self) -> RedisHealthCheck {
        RedisHealthCheck {
            settings: self.client.get_connection_info().redis_settings().clone(),
            check_timeout: self.check_timeout,
            io_timeout: self.io_timeout,
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
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let pool = RedisConnectionFactory::new("redis://127.0.0.1/")?
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

impl ConnectionFactory for RedisConnectionFactory {
    type Connection = Connection;
    type Error = ::redis::RedisError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> RedisResult<Connection> {
        let conn = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(self.io_timeout)?;
        conn.set_write_timeout(self.io_timeout)?;
        Ok(conn)
    }

    async fn validate(&self, conn: &mut Connection) -> bool {
        conn.is_open() && bounded(conn, self.check_timeout, self.io_timeout, ping)
    }
}

/// Pings idle connections and resets used ones to the factory's settings; see the
/// [module docs](self). Made by [`RedisConnectionFactory::health_check`].
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPool;
/// use nexus_pool::adapters::redis::RedisConnectionFactory;
///
/// let factory = RedisConnectionFactory::new("redis://127.0.0.1/1")?;
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory).health_check(check).build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisHealthCheck {
    settings: RedisConnectionInfo,
    check_timeout: Duration,
    io_timeout: Option<Duration>,
    /// Whether the server understands `RESET`; cleared the first time it says it does not.
    use_reset: Arc<AtomicBool>,
}

impl RedisHealthCheck {
    /// Resets with `DISCARD`, `UNWATCH` and `SELECT` instead of `RESET`: for servers older than
    /// Redis 6.2, or proxies that do not pass `RESET` on. (Without it, the check finds out by
    /// itself the first time a server refuses `RESET`.) It cannot leave subscriber mode, which
    /// the `redis` crate's `PubSub` guard does when dropped anyway.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::redis::RedisConnectionFactory;
    ///
    /// let check = RedisConnectionFactory::new("redis://127.0.0.1/")?
    ///     .health_check()
    ///     .without_reset_command();
    /// # drop(check);
    /// # Ok::<(), redis::RedisError>(())
    /// ```
    pub fn without_reset_command(self) -> Self {
        RedisHealthCheck {
            use_reset: Arc::new(AtomicBool::new(false)),
            ..self
        }
    }

    fn reset_with_command(&self, conn: &mut Connection) -> RedisResult<()> {
        reset_pipeline(&self.settings).query::<()>(conn)
    }

    fn reset_without_command(&self, conn: &mut Connection) -> RedisResult<()> {
        // Leaves a MULTI block; "DISCARD without MULTI" just means there was none.
        if let Err(e) = ::redis::cmd("DISCARD").query::<()>(conn) {
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
            .query::<()>(conn)
    }
}

impl ConnectionHealthCheck<Connection> for RedisHealthCheck {
    async fn is_healthy(&self, conn: &mut Connection) -> bool {
        conn.is_open() && bounded(conn, self.check_timeout, self.io_timeout, ping)
    }

    async fn reset(&self, conn: &mut Connection) -> bool {
        conn.is_open()
            && bounded(conn, self.check_timeout, self.io_timeout, |conn| {
                if self.use_reset.load(Ordering::Relaxed) {
                    match self.reset_with_command(conn) {
                        Ok(()) => return true,
                        Err(e) if refuses_reset(&e) => {
                            self.use_reset.store(false, Ordering::Relaxed);
                        }
                        Err(_) => return false,
                    }
                }
                self.reset_without_command(conn).is_ok()
            })
    }
}

/// `RESET` and then what the URL asked for, in one pipeline: `RESET` (Redis 6.2+) leaves `MULTI`,
/// forgets `WATCH`es, leaves subscriber and `MONITOR` mode, turns `CLIENT TRACKING` off, signs the
/// connection out, goes back to RESP2 and database 0; the rest restores authentication, `HELLO 3`
/// and the configured database. Shared with the async adapter.
pub(super) fn reset_pipeline(s: &RedisConnectionInfo) -> ::redis::Pipeline {
    let mut pipe = ::redis::pipe();
    pipe.cmd("RESET").ignore();
    if s.protocol().supports_resp3() {
        let hello = pipe.cmd("HELLO").arg(3);
        if let Some(password) = s.password() {
            hello
                .arg("AUTH")
                .arg(s.username().unwrap_or("default"))
                .arg(password);
        }
        hello.ignore();
    } else if let Some(password) = s.password() {
        let auth = pipe.cmd("AUTH");
        if let Some(user) = s.username() {
            auth.arg(user);
        }
        auth.arg(password).ignore();
    }
    if s.db() != 0 {
        pipe.cmd("SELECT").arg(s.db()).ignore();
    }
    pipe
}

/// Whether the server said it does not know `RESET` (older than 6.2, or a proxy).
pub(super) fn refuses_reset(e: &::redis::RedisError) -> bool {
    e.to_string().contains("unknown command")
}

/// Whether a `DISCARD`'s error only says that no `MULTI` was open.
pub(super) fn nothing_to_discard(e: &::redis::RedisError) -> bool {
    e.to_string().contains("without MULTI")
}

fn ping(conn: &mut Connection) -> bool {
    ::redis::cmd("PING")
        .query::<String>(conn)
        .is_ok_and(|pong| pong == "PONG")
}

/// Runs `check` with the socket timeouts set to `timeout`, then restores `io_timeout`. A
/// connection whose timeouts cannot be set is reported unusable.
fn bounded(
    conn: &mut Connection,
    timeout: Duration,
    io_timeout: Option<Duration>,
    check: impl FnOnce(&mut Connection) -> bool,
) -> bool {
    let set = |conn: &Connection, t: Option<Duration>| {
        conn.set_read_timeout(t).is_ok() && conn.set_write_timeout(t).is_ok()
    };
    set(conn, Some(timeout)) && check(conn) && set(conn, io_timeout)
}
