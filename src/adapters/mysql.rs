//! MySQL and MariaDB through the blocking [`mysql`] client (feature `mysql`): one
//! [`mysql::Conn`] per pooled slot.
//!
//! # How it is built
//!
//! [`MysqlConnectionFactory`] holds the client's [`Opts`] (from a URL,
//! `mysql://user:password@host:3306/database?...`, or built with [`OptsBuilder`]). The feature
//! builds the client in pure Rust without TLS (`mysql`'s `minimal-rust`): no C client library,
//! nothing to install.
//!
//! * `create` connects (and runs the `Opts`' `init` commands) on a helper thread, so that the
//!   pool's `create_timeout` holds even on a server that accepted the TCP connection and then
//!   went silent; `destroy` says goodbye (`COM_QUIT`) on a helper thread too.
//! * `validate` and [`MysqlHealthCheck::is_healthy`] send `COM_PING`, one round trip.
//! * [`MysqlHealthCheck::reset`] sends `COM_RESET_CONNECTION` ([`Conn::reset`]): the server rolls
//!   back a transaction left open, drops temporary tables, releases locks taken with `GET_LOCK`
//!   and table locks, resets session variables to the global values and user variables to
//!   nothing, and forgets prepared statements (the client's statement cache is cleared with
//!   them). The `Opts`' `init` commands run again, and then the pool runs its `on_connect` hook
//!   again (the reset cleared what it set). One round trip, plus one per `init` command and the
//!   hook's. On a server without `COM_RESET_CONNECTION` (MySQL before 5.7.3, MariaDB before
//!   10.2.4) the client falls back to `COM_CHANGE_USER`, which clears the same state.
//!
//! The reset runs when the connection is next lent (or at the pool's next health check pass,
//! `health_check_interval`), not when it is returned: until then, a transaction left open keeps
//! its row locks. It is a safety net; roll back on your own error paths all the same.
//!
//! # Time bounds
//!
//! The `mysql` client does its I/O inside each call, where no pool timer reaches, and takes its
//! socket timeouts (`read_timeout`, `write_timeout`) once, when it connects. So:
//!
//! * `create` and `destroy` run on helper threads: `create_timeout` and `destroy_timeout` hold.
//! * `validate`, `is_healthy` and `reset` run on the pool's thread; each first looks at
//!   [`callback_deadline`](crate::callback_deadline) and gives up without touching the socket
//!   when the pool's deadline for it has passed. A server that stops answering in the middle of
//!   one is caught by the socket options [`MysqlConnectionFactory::new`] sets unless the URL
//!   names them: `tcp_user_timeout_ms=30000` (Linux) and `tcp_keepalive_time_ms=60000` catch a
//!   dead network or host; for a hung server give the connections a read timeout
//!   ([`MysqlConnectionFactory::io_timeout`], which bounds your queries as well).
//!
//! # Thread safety
//!
//! A `mysql::Conn` is `Send`, and the guard lends it to one caller at a time. Its calls block the
//! calling thread: use this adapter from threads (`acquire_blocking()`), or the `mysql-async`
//! adapter from async code.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "blocking")] {
//! use mysql::prelude::Queryable;
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::mysql::{MysqlConnectionFactory, connection_lost};
//!
//! let pool = MysqlConnectionFactory::new("mysql://root@127.0.0.1:3306/test")?
//!     .pool_builder() // with MysqlHealthCheck attached: every reuse is reset first
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! let mut conn = pool.acquire_blocking()?;
//! let result: mysql::Result<Option<i64>> = conn.query_first("SELECT 40 + 2");
//! match result {
//!     Ok(sum) => assert_eq!(sum, Some(42)),
//!     Err(e) => {
//!         if connection_lost(&e) {
//!             conn.mark_broken(); // the session is gone: never reuse it
//!         }
//!         return Err(e.into());
//!     }
//! }
//! drop(conn);
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use ::mysql::{Conn, DriverError, Error, Opts, OptsBuilder};

use super::helper_thread;
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

/// The connect timeout [`MysqlConnectionFactory::new`] sets when the URL names none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unacknowledged data may sit on a socket before the kernel drops the connection
/// (`TCP_USER_TIMEOUT`), unless the URL says otherwise.
const DEFAULT_TCP_USER_TIMEOUT_MS: u32 = 30_000;
/// Idle time before the first TCP keepalive probe, unless the URL says otherwise.
const DEFAULT_KEEPALIVE_MS: u32 = 60_000;

/// Whether `e` means the session is gone (the server closed it, `KILL CONNECTION`, the network
/// dropped): call [`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken) then,
/// so it is destroyed at once. (If you do not, the next reset finds out and destroys it.)
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::mysql::connection_lost;
///
/// let reset = mysql::Error::IoError(std::io::ErrorKind::ConnectionReset.into());
/// assert!(connection_lost(&reset));
/// let syntax = mysql::Error::MySqlError(mysql::MySqlError {
///     state: "42000".into(),
///     message: "You have an error in your SQL syntax".into(),
///     code: 1064,
/// });
/// assert!(!connection_lost(&syntax));
/// ```
pub fn connection_lost(e: &Error) -> bool {
    match e {
        Error::IoError(_) | Error::CodecError(_) => true,
        Error::DriverError(e) => matches!(
            e,
            DriverError::PacketOutOfSync | DriverError::UnexpectedPacket | DriverError::Timeout
        ),
        // ER_SERVER_SHUTDOWN (1053), ER_CONNECTION_KILLED (1927, MariaDB's answer to
        // `KILL CONNECTION`), ER_CLIENT_INTERACTION_TIMEOUT (4031, MySQL 8's `wait_timeout`).
        Error::MySqlError(e) => matches!(e.code, 1053 | 1927 | 4031),
        _ => false,
    }
}

/// Makes one blocking [`mysql::Conn`] per pooled slot; see the
/// [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = MysqlConnectionFactory::new("mysql://app@db.internal:3306/orders")?;
/// assert_eq!(factory.opts().get_db_name(), Some("orders"));
/// # Ok::<(), mysql::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MysqlConnectionFactory {
    opts: Opts,
}

impl MysqlConnectionFactory {
    /// Parses a connection URL (`mysql://[user[:password]@]host[:port][/database][?params]`,
    /// with the `mysql` crate's parameters). Sets what the URL does not name: a 10 s
    /// `tcp_connect_timeout_ms`, `tcp_user_timeout_ms=30000` (Linux) and
    /// `tcp_keepalive_time_ms=60000` (see the [module docs](self#time-bounds)).
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let factory = MysqlConnectionFactory::new("mysql://root@127.0.0.1:3306/test")?;
    /// assert_eq!(factory.opts().get_tcp_connect_timeout(), Some(Duration::from_secs(10)));
    /// assert!(MysqlConnectionFactory::new("postgres://not/mysql").is_err());
    /// # Ok::<(), mysql::Error>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, Error> {
        let opts = Opts::from_url(url)?;
        let mut builder = OptsBuilder::from_opts(opts.clone());
        if opts.get_tcp_connect_timeout().is_none() {
            builder = builder.tcp_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        }
        if opts.get_tcp_user_timeout_ms().is_none() {
            builder = builder.tcp_user_timeout_ms(Some(DEFAULT_TCP_USER_TIMEOUT_MS));
        }
        if opts.get_tcp_keepalive_time_ms().is_none() {
            builder = builder.tcp_keepalive_time_ms(Some(DEFAULT_KEEPALIVE_MS));
        }
        Ok(Self::from_opts(builder))
    }

    /// Uses options you built, as they are.
    ///
    /// # Examples
    ///
    /// ```
    /// use mysql::OptsBuilder;
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let opts = OptsBuilder::new()
    ///     .ip_or_hostname(Some("127.0.0.1"))
    ///     .user(Some("root"))
    ///     .db_name(Some("test"))
    ///     .init(vec!["SET time_zone = '+00:00'"]);
    /// let factory = MysqlConnectionFactory::from_opts(opts);
    /// assert_eq!(factory.opts().get_init().len(), 1);
    /// ```
    pub fn from_opts(opts: impl Into<Opts>) -> Self {
        MysqlConnectionFactory { opts: opts.into() }
    }

    /// The read and write timeout of every connection's socket, set when it connects: it bounds
    /// the health check's calls on a hung server, and your queries too (a query that runs
    /// longer fails). `None` (what the URL says, by default) waits as long as the server takes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let factory = MysqlConnectionFactory::new("mysql://root@127.0.0.1/test")?
    ///     .io_timeout(Some(Duration::from_secs(30)));
    /// assert_eq!(factory.opts().get_read_timeout(), Some(&Duration::from_secs(30)));
    /// # Ok::<(), mysql::Error>(())
    /// ```
    pub fn io_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.opts = OptsBuilder::from_opts(self.opts)
            .read_timeout(timeout)
            .write_timeout(timeout)
            .into();
        self
    }

    /// The options connections are opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let factory = MysqlConnectionFactory::new("mysql://root@127.0.0.1:3307/test")?;
    /// assert_eq!(factory.opts().get_tcp_port(), 3307);
    /// # Ok::<(), mysql::Error>(())
    /// ```
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// The health check: `COM_PING` for idle connections, `COM_RESET_CONNECTION` on reuse.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let factory = MysqlConnectionFactory::new("mysql://root@127.0.0.1/test")?;
    /// let check = factory.health_check();
    /// # drop(check);
    /// # Ok::<(), mysql::Error>(())
    /// ```
    pub fn health_check(&self) -> MysqlHealthCheck {
        MysqlHealthCheck { _private: () }
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
    /// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
    ///
    /// let pool = MysqlConnectionFactory::new("mysql://root@127.0.0.1/test")?
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

impl ConnectionFactory for MysqlConnectionFactory {
    type Connection = Conn;
    type Error = Error;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    /// Connects on a helper thread (see the [module docs](self#time-bounds)).
    async fn create(&self) -> Result<Conn, Error> {
        let opts = self.opts.clone();
        helper_thread::run("nexus-pool-mysql-connect", move || Conn::new(opts)).await
    }

    /// Says goodbye (`COM_QUIT`) on a helper thread: on a silent peer the write may wait.
    async fn destroy(&self, conn: Conn) {
        helper_thread::run("nexus-pool-mysql-close", move || drop(conn)).await;
    }

    async fn validate(&self, conn: &mut Conn) -> bool {
        ping(conn)
    }
}

/// Pings idle connections with `COM_PING` and resets used ones with `COM_RESET_CONNECTION`;
/// see the [module docs](self). Made by [`MysqlConnectionFactory::health_check`].
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPool;
/// use nexus_pool::adapters::mysql::MysqlConnectionFactory;
///
/// let factory = MysqlConnectionFactory::new("mysql://root@127.0.0.1/test")?;
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory).health_check(check).build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MysqlHealthCheck {
    _private: (),
}

impl ConnectionHealthCheck<Conn> for MysqlHealthCheck {
    async fn is_healthy(&self, conn: &mut Conn) -> bool {
        ping(conn)
    }

    /// `COM_RESET_CONNECTION` and the `Opts`' `init` commands; the pool then runs its
    /// `on_connect` hook again.
    async fn reset(&self, conn: &mut Conn) -> bool {
        !deadline_passed() && conn.reset().is_ok()
    }
}

/// `COM_PING`, unless the pool has already stopped waiting for the call.
fn ping(conn: &mut Conn) -> bool {
    !deadline_passed() && conn.ping().is_ok()
}

/// Whether the pool's deadline for the callback running on this thread has passed: then the
/// call is not started (it could not be cut short once it is).
fn deadline_passed() -> bool {
    crate::callback_deadline().is_some_and(|deadline| deadline <= Instant::now())
}
