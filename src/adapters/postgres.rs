//! PostgreSQL through the blocking [`postgres`] crate (feature `postgres`).
//!
//! # How it is built
//!
//! [`PostgresConnectionFactory`] holds a parsed [`postgres::Config`] and a TLS
//! connector ([`NoTls`] unless you call
//! [`with_tls`](PostgresConnectionFactory::with_tls)); `create` is `Config::connect` (on a socket
//! the adapter watches, [below](#a-clean-session-at-no-cost)), and the pool lends a
//! [`PostgresConnection`], which derefs to the [`postgres::Client`] and keeps the session's
//! [statement cache](PostgresConnection::prepare_cached). `validate` is
//! [`Client::is_valid`](::postgres::Client::is_valid): an empty query, one round trip, bounded by
//! a timeout. [`PostgresHealthCheck`] pings the same way in `is_healthy`, and its `reset` rolls
//! back a transaction left open and clears the session: everything `DISCARD ALL` does except
//! deallocating the client's prepared statements ([`PostgresReset`] says why, and offers plain
//! `DISCARD ALL`). `destroy` closes the session politely (a `Terminate` message). A failed
//! `create` is a [`PostgresError`], with the driver's error as its source.
//!
//! # A clean session at no cost
//!
//! A reused connection is always clean (no transaction block open or failed, session state reset
//! as [`PostgresReset`] says), and no checkout makes the server log a warning (a `ROLLBACK` is
//! only ever sent into a block). The blocking client says nothing about the session's state, so
//! the adapter watches the protocol on the socket, as the `tokio-postgres` adapter does (its
//! [module docs](super::tokio_postgres#a-clean-session-at-no-cost) tell how, and
//! [what you must not do](super::tokio_postgres#what-you-must-not-do) holds here too). The hook:
//! the client's TLS step. `create` connects with `sslmode=require` and `sslnegotiation=direct`
//! and a "connector" of the adapter's own, to which the driver hands its fresh socket before a
//! byte is sent; the connector dials the same peer on a socket of its own (the driver's socket
//! offers no descriptor to look at it between calls; the one it dialled is dropped unused) and
//! gives the driver a stream that forwards every byte unchanged and reads the transaction status
//! and command tags on the way. Nothing is encrypted: this is done only for a connection that
//! would have been in the clear ([`NoTls`], TCP hosts, no `sslmode=require`); any other is
//! reset on every reuse as before ([`PostgresConnection::is_tracked`] tells).
//!
//! On reuse, with the defaults:
//!
//! * left clean (the common case): nothing to reset and no round trip, only a non-blocking look
//!   at the socket (a terminated backend's goodbye waits there unread). A connection idle past
//!   the pool's `checkout_validation` window (500 ms by default, as HikariCP's) is first
//!   validated with the bounded ping (see below);
//!   [`ping_clean_reuse(true)`](PostgresHealthCheck::ping_clean_reuse) pings every reuse;
//! * a transaction block open or failed, or session state changed: the ping, then the reset of
//!   the [mode](PostgresReset) (one round trip: the status is known, no probe needed).
//!
//! Behind PgBouncer in transaction pooling mode, use [`PostgresReset::TransactionPooler`] and
//! `query_typed` / `simple_query` rather than named statements (the variant's docs say why).
//!
//! # Thread safety
//!
//! A `postgres::Client` is `Send` but not `Sync`: the guard gives one thread at a time the use of
//! it, which is all it needs. Its methods block the calling thread on a small tokio runtime that
//! each client owns, so **they must not run inside an async runtime**: tokio panics with "Cannot
//! start a runtime from within a runtime". Use this adapter from blocking threads
//! (`acquire_blocking`, `with_connection_blocking`, or tokio's `spawn_blocking`); from async code
//! use the `tokio-postgres` adapter (`adapters::tokio_postgres`) instead.
//!
//! # Time bounds, down to a silent peer
//!
//! The client does its I/O inside the call, where the pool's timers cannot reach it. So the
//! adapter bounds what the pool runs itself, also on a peer that stops answering without closing
//! the socket (a hung server or proxy, a network that drops packets), and by default the pool's
//! `acquire_timeout` holds there:
//!
//! * `create` and `destroy` run on a helper thread, one per call, that the pool awaits without
//!   blocking: the pool's `create_timeout` and `destroy_timeout` hold, and no thread of the
//!   pool's (nor of the executor a spawned maintenance future runs on) hangs on a dead socket.
//!   A call the pool gave up on finishes on its helper, which lives until the socket fails or
//!   the peer answers. The `connect_timeout` that [`new`](PostgresConnectionFactory::new) sets (10 s)
//!   bounds only the TCP connect, not the start-up exchange after it; `create_timeout` bounds both.
//! * `validate` and [`PostgresHealthCheck::is_healthy`] are an empty query that waits for the
//!   server's answer at most until the pool's deadline for the call
//!   ([`callback_deadline`](crate::callback_deadline): the pool's `check_timeout`, on checkout
//!   cut to what is left of the `acquire_timeout`), and never longer than the factory's
//!   [`check_timeout`](PostgresConnectionFactory::check_timeout) (5 s).
//! * [`PostgresHealthCheck`]'s `reset` of a dirty session sends that same bounded ping first,
//!   and only then the reset, which like your queries is a plain query the client offers no
//!   timeout for. A peer that went silent while the connection sat in the pool past the
//!   validation window fails the validation ping, and the connection is destroyed within the
//!   bound. A connection used less than that window ago is lent without a round trip (as
//!   HikariCP, deadpool and r2d2 without its checkout test do): a peer that went silent within
//!   that window is met by your first query, which `tcp_user_timeout` ends (below), unless
//!   [`ping_clean_reuse(true)`](PostgresHealthCheck::ping_clean_reuse) pings every reuse at the
//!   cost of a round trip each.
//!
//! Under that, [`new`](PostgresConnectionFactory::new) sets two socket options unless the
//! string names them, for the reset's remaining window and for your own queries:
//! `tcp_user_timeout` of 30 s (the kernel drops the connection when what it sent stays
//! unacknowledged that long: a dead network or host; a blocked call then fails) and
//! `keepalives_idle` of 60 s (probes an idle connection, so a dead peer is found without
//! traffic). `tcp_user_timeout=0` or `keepalives=0` in the string turn them off;
//! [`from_config`](PostgresConnectionFactory::from_config) takes your `Config` as it is. For
//! queries that run too long on a live server, add `options=-c statement_timeout=...`. None of
//! them helps against a peer whose kernel still acknowledges but whose process never answers
//! (a hung server or proxy); only a timeout around the call would, and the blocking client has
//! none for a query (the `tokio-postgres` adapter does not have this limit: every future it runs
//! can be dropped at a deadline).
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "blocking")] {
//! use std::time::Duration;
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::postgres::{PostgresConnectionFactory, connection_lost};
//!
//! let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1:5432/test")?;
//! let pool = factory
//!     .pool_builder() // with PostgresHealthCheck attached: every reuse is reset first
//!     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
//!     .build()?;
//!
//! let handles: Vec<_> = (0..4)
//!     .map(|i| {
//!         let pool = pool.clone();
//!         std::thread::spawn(move || -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
//!             let mut conn = pool.acquire_blocking()?;
//!             match conn.query_one("SELECT $1::int + 1", &[&i]) {
//!                 Ok(row) => Ok(row.get(0)),
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
//! for (i, h) in handles.into_iter().enumerate() {
//!     assert_eq!(h.join().unwrap().unwrap(), i as i32 + 1);
//! }
//! pool.close_blocking();
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::postgres::config::{ChannelBinding, Host, SslMode, SslNegotiation};
use ::postgres::tls::{self, MakeTlsConnect, TlsConnect, TlsStream};
use ::postgres::types::Type;
use ::postgres::{Client, Config, NoTls, SimpleQueryMessage, Socket, Statement};

use super::helper_thread;
pub use super::pg_common::{PostgresReset, connection_lost};
use super::pg_common::{in_failed_block, probe_found_block, probe_sql, reset_sql};
use super::pg_statements::DEFAULT_CAPACITY;
pub use super::pg_statements::StatementCache;
use super::pg_wire::{self, Peek, SessionState, TrackedStream};
use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

/// How long `validate` and `is_healthy` wait for the server's answer by default.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The `connect_timeout` [`PostgresConnectionFactory::new`] sets when the URL has none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `tcp_user_timeout` [`PostgresConnectionFactory::new`] sets when the URL names none: long
/// enough to ride out a brief network hiccup, short enough that a call on a dead network fails.
const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// The `keepalives_idle` [`PostgresConnectionFactory::new`] sets when the URL names none (the
/// client's own default is two hours).
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(60);

/// Why a connection could not be made: a [`postgres::Error`] behind the adapter's context.
///
/// As every error of this crate, its `Display` is the adapter's own context in one line, and
/// the driver's error is the [`source()`](std::error::Error::source) (and
/// [`get_ref`](Self::get_ref)), not repeated in the text: downcast it for its
/// [`code()`](postgres::Error::code) or [`connection_lost`]. The server's message
/// (`FATAL: database "x" does not exist`) or the operating system's (`Connection refused`) is in
/// turn the driver's error's source. Print the whole chain with `{:#}` of `anyhow` or `eyre`.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::postgres::PostgresError;
///
/// let driver = "postgres://[nonsense".parse::<postgres::Config>().unwrap_err();
/// let err = PostgresError::from(driver);
/// assert_eq!(err.to_string(), "the PostgreSQL driver returned an error");
/// let source = err.source().unwrap().downcast_ref::<postgres::Error>().unwrap();
/// assert!(source.to_string().starts_with("invalid connection string"), "{source}");
/// assert!(err.get_ref().as_db_error().is_none());
/// ```
#[derive(Debug)]
pub struct PostgresError(::postgres::Error);

impl PostgresError {
    /// The driver's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresError;
    ///
    /// let driver = "postgres://[nonsense".parse::<postgres::Config>().unwrap_err();
    /// assert!(PostgresError::from(driver).get_ref().code().is_none());
    /// ```
    pub fn get_ref(&self) -> &::postgres::Error {
        &self.0
    }

    /// The driver's error, by value.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresError;
    ///
    /// let driver = "postgres://[nonsense".parse::<postgres::Config>().unwrap_err();
    /// let text = driver.to_string();
    /// assert_eq!(PostgresError::from(driver).into_inner().to_string(), text);
    /// ```
    pub fn into_inner(self) -> ::postgres::Error {
        self.0
    }
}

impl From<::postgres::Error> for PostgresError {
    fn from(err: ::postgres::Error) -> Self {
        PostgresError(err)
    }
}

impl fmt::Display for PostgresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the PostgreSQL driver returned an error")
    }
}

impl std::error::Error for PostgresError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Makes blocking [`postgres::Client`]s; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
///
/// // Parsing does not connect: connections are made when the pool needs them.
/// let factory = PostgresConnectionFactory::new("postgres://app@db.internal:5432/orders")?;
/// assert_eq!(factory.config().get_dbname(), Some("orders"));
/// # Ok::<(), postgres::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresConnectionFactory<T = NoTls> {
    config: Config,
    tls: T,
    check_timeout: Duration,
    /// What the health check resets, and whether a transaction pooler is in front (then the
    /// connections refuse `prepare_cached`).
    reset: PostgresReset,
    /// How many statements each connection's `prepare_cached` keeps.
    statement_cache_capacity: usize,
}

impl<T> fmt::Debug for PostgresConnectionFactory<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug hides the password.
        f.debug_struct("PostgresConnectionFactory")
            .field("config", &self.config)
            .field("check_timeout", &self.check_timeout)
            .field("reset", &self.reset)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .finish_non_exhaustive()
    }
}

impl PostgresConnectionFactory<NoTls> {
    /// Parses a connection string, URL (`postgres://user:pass@host:port/db?opt=...`) or
    /// `key=value` form, without TLS. Unless the string names them, sets `connect_timeout` to
    /// 10 s, `tcp_user_timeout` to 30 s and `keepalives_idle` to 60 s (the
    /// [module docs](self#time-bounds-down-to-a-silent-peer) say why).
    ///
    /// # Errors
    ///
    /// The string does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let factory = PostgresConnectionFactory::new("host=127.0.0.1 user=postgres dbname=test")?;
    /// assert_eq!(factory.config().get_user(), Some("postgres"));
    /// assert_eq!(factory.config().get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
    /// assert_eq!(factory.config().get_keepalives_idle(), Duration::from_secs(60));
    ///
    /// // What the string says wins; 0 turns `tcp_user_timeout` off.
    /// let url = "postgres://postgres@127.0.0.1/test?tcp_user_timeout=0&keepalives_idle=10";
    /// let factory = PostgresConnectionFactory::new(url)?;
    /// assert_eq!(factory.config().get_tcp_user_timeout(), None);
    /// assert_eq!(factory.config().get_keepalives_idle(), Duration::from_secs(10));
    ///
    /// assert!(PostgresConnectionFactory::new("postgres://[nonsense").is_err());
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, ::postgres::Error> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // The parsed config cannot tell an explicit 0 (off) from an absent key, so the string
        // itself is asked whether it names them.
        if !url.contains("tcp_user_timeout") {
            config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        if !url.contains("keepalives_idle") {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        Ok(Self::from_config(config))
    }

    /// Uses a configuration you built, as it is, without TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let mut config = postgres::Config::new();
    /// config.host("127.0.0.1").user("postgres").dbname("test").application_name("billing");
    /// let factory = PostgresConnectionFactory::from_config(config);
    /// assert_eq!(factory.config().get_application_name(), Some("billing"));
    /// ```
    pub fn from_config(config: Config) -> Self {
        PostgresConnectionFactory {
            config,
            tls: NoTls,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            reset: PostgresReset::default(),
            statement_cache_capacity: DEFAULT_CAPACITY,
        }
    }
}

impl<T> PostgresConnectionFactory<T> {
    /// Connects through `tls` (for instance `postgres-native-tls` or `postgres-openssl`'s
    /// connector) instead of in the clear.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// // `NoTls` stands in for a real connector here.
    /// let factory = PostgresConnectionFactory::new("postgres://app@db/orders?sslmode=require")?
    ///     .with_tls(postgres::NoTls);
    /// # drop(factory);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn with_tls<U>(self, tls: U) -> PostgresConnectionFactory<U> {
        PostgresConnectionFactory {
            config: self.config,
            tls,
            check_timeout: self.check_timeout,
            reset: self.reset,
            statement_cache_capacity: self.statement_cache_capacity,
        }
    }

    /// The longest `validate` (and the health check from [`health_check`](Self::health_check))
    /// waits for the server; 5 s by default. They also never wait past the pool's deadline for
    /// the call (its `check_timeout`, on checkout cut to what is left of the `acquire_timeout`),
    /// so this matters only to make them shorter than that.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .check_timeout(Duration::from_secs(1));
    /// # drop(factory);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// The configuration connections are made with.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1:5433/test")?;
    /// assert_eq!(factory.config().get_ports(), [5433]);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the configuration before the pool is built (an `application_name`, for instance).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let mut factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// factory.config_mut().application_name("reports");
    /// assert_eq!(factory.config().get_application_name(), Some("reports"));
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The recommended health check for these connections: [`PostgresReset::Clean`] on reuse,
    /// pings with this factory's check timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::{PostgresConnectionFactory, PostgresReset};
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// let check = factory.health_check().reset_mode(PostgresReset::Rollback);
    /// # drop(check);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn health_check(&self) -> PostgresHealthCheck {
        PostgresHealthCheck::new()
            .timeout(self.check_timeout)
            .reset_mode(self.reset)
    }

    /// Says what sits in front of the server, and so how a reused session is reset: the mode
    /// of [`health_check`](Self::health_check) (the one every pool built from this factory
    /// gets). [`PostgresReset::TransactionPooler`] also makes the connections refuse
    /// [`prepare_cached`](PostgresConnection::prepare_cached) (with
    /// [`PrepareCachedError::Refused`]): behind a transaction pooler a named statement does not
    /// outlive its transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::{PostgresConnectionFactory, PostgresReset};
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://app@bouncer:6432/orders")?
    ///     .reset_mode(PostgresReset::TransactionPooler);
    /// assert_eq!(factory.get_reset_mode(), PostgresReset::TransactionPooler);
    /// # Ok::<(), postgres::Error>(())
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
    /// [`prepare_cached`](PostgresConnection::prepare_cached) keeps prepared (100 by default);
    /// past that, the least recently used one is deallocated. 0 turns caching off.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .statement_cache_capacity(500);
    /// assert_eq!(factory.get_statement_cache_capacity(), 500);
    /// # Ok::<(), postgres::Error>(())
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

impl<T> PostgresConnectionFactory<T>
where
    Self: ConnectionFactory<Connection = PostgresConnection>,
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
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
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

impl<T> ConnectionFactory for PostgresConnectionFactory<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = PostgresConnection;
    type Error = PostgresError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    /// Connects on a helper thread (see the [module docs](self#time-bounds-down-to-a-silent-peer)),
    /// on a socket the adapter watches when it can (see the
    /// [module docs](self#a-clean-session-at-no-cost)).
    async fn create(&self) -> Result<PostgresConnection, PostgresError> {
        let (config, tls) = (self.config.clone(), self.tls.clone());
        let trackable = trackable(&config, &tls);
        let (client, session) = helper_thread::run("nexus-pool-pg-connect", move || {
            if trackable {
                match connect_watched(&config) {
                    Err(Unwatched::Driver(e)) => return Err(e),
                    Ok(connected) => return Ok(connected),
                    // This socket cannot be watched: connect as the driver does.
                    Err(Unwatched::Socket) => {}
                }
            }
            config.connect(tls).map(|client| (client, None))
        })
        .await
        .map_err(PostgresError)?;
        Ok(PostgresConnection {
            client,
            session,
            statements: StatementCache::new(self.statement_cache_capacity),
            transaction_pooler: self.reset == PostgresReset::TransactionPooler,
            discards: AtomicU64::new(0),
            reset_cleared: AtomicBool::new(false),
        })
    }

    /// Says goodbye on a helper thread: closing waits for the replies still due, which never
    /// come on a silent peer (after a timed-out `validate`, for instance).
    async fn destroy(&self, conn: PostgresConnection) {
        // Errors mean the session is gone anyway.
        helper_thread::run("nexus-pool-pg-close", move || {
            let _ = conn.client.close();
        })
        .await;
    }

    async fn validate(&self, conn: &mut PostgresConnection) -> bool {
        ping(&mut conn.client, self.check_timeout)
    }
}

/// Whether the adapter can watch the session: the connector is [`NoTls`] (so the session would
/// not be encrypted anyway) and the connection string asks for nothing only TLS gives
/// (`sslmode=require`, `channel_binding=require`), and every host is a TCP one (the driver
/// dials Unix sockets without a "TLS" step to hook into).
fn trackable<T: 'static>(config: &Config, tls: &T) -> bool {
    // Named positively, so that a mode added later (a stricter one) is never downgraded.
    (tls as &dyn std::any::Any).is::<NoTls>()
        && matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer)
        && matches!(
            config.get_channel_binding(),
            ChannelBinding::Disable | ChannelBinding::Prefer
        )
        && !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, Host::Tcp(_)))
}

/// Why [`connect_watched`] did not give a watched session.
enum Unwatched {
    /// The driver's error: the server refused, or no host answered.
    Driver(::postgres::Error),
    /// The socket the driver opened could not be watched.
    Socket,
}

/// `Config::connect`, with the adapter's [`Watch`] in the place of a TLS connector: with
/// `sslmode=require` and `sslnegotiation=direct` the driver hands its fresh socket, before a
/// byte is written, to the connector, whose "TLS stream" is a [`TrackedStream`] on a socket of
/// the adapter's own to the same peer. Everything else (hosts in turn, `target_session_attrs`,
/// authentication, timeouts) is the driver's. Nothing is encrypted: the adapter only does this
/// for a connection that would have been in the clear.
fn connect_watched(config: &Config) -> Result<(Client, Option<Arc<SessionState>>), Unwatched> {
    let mut config = config.clone();
    config
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(SslNegotiation::Direct);
    let watch = Watch {
        options: pg_wire::SocketOptions {
            connect_timeout: config.get_connect_timeout().copied(),
            tcp_user_timeout: config.get_tcp_user_timeout().copied(),
            keepalive: config.get_keepalives().then(|| {
                (
                    config.get_keepalives_idle(),
                    config.get_keepalives_interval(),
                    config.get_keepalives_retries(),
                )
            }),
        },
        session: Arc::new(Mutex::new(None)),
        unwatchable: Arc::new(AtomicBool::new(false)),
    };
    let (session, unwatchable) = (watch.session.clone(), watch.unwatchable.clone());
    match config.connect(watch) {
        Ok(client) => {
            let session = session
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            Ok((client, session))
        }
        Err(_) if unwatchable.load(Ordering::SeqCst) => Err(Unwatched::Socket),
        Err(e) => Err(Unwatched::Driver(e)),
    }
}

/// The "TLS connector" that watches the session instead; see [`connect_watched`].
#[derive(Clone)]
struct Watch {
    options: pg_wire::SocketOptions,
    /// The session of the last socket handed out (the driver tries hosts one after another, so
    /// once it connects, this is the one it kept).
    session: Arc<Mutex<Option<Arc<SessionState>>>>,
    /// The driver's socket did not say where it goes.
    unwatchable: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for Watch {
    type Stream = TrackedStream;
    type TlsConnect = Watch;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, _domain: &str) -> Result<Watch, std::io::Error> {
        Ok(self.clone())
    }
}

impl TlsConnect<Socket> for Watch {
    type Stream = TrackedStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TrackedStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            // The driver's socket offers neither its descriptor nor its peer, except in its
            // `Debug` text; the adapter needs a descriptor of its own to look at the socket
            // between checkouts without reading it (a terminated backend's goodbye). So it
            // dials the same peer itself and drops the driver's socket before a byte was sent
            // on it (the server forgets a connection that never spoke without a log line).
            let Some(peer) = peer_of(&socket) else {
                self.unwatchable.store(true, Ordering::SeqCst);
                return Err(std::io::Error::other("the socket's peer is unknown"));
            };
            drop(socket);
            let socket = pg_wire::open_tcp(peer, &self.options).await?;
            let session = Arc::new(SessionState::new());
            *self.session.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Arc::clone(&session));
            Ok(TrackedStream::new(socket, session))
        })
    }
}

impl TlsStream for TrackedStream {
    fn channel_binding(&self) -> tls::ChannelBinding {
        tls::ChannelBinding::none()
    }
}

/// The peer address in a driver socket's `Debug` text (`.. peer: 127.0.0.1:5432, ..`).
fn peer_of(socket: &Socket) -> Option<SocketAddr> {
    let text = format!("{socket:?}");
    let rest = &text[text.find("peer: ")? + "peer: ".len()..];
    let end = rest.find([',', ' ', '}']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A pooled blocking session: the [`postgres::Client`] (it derefs to it), what the adapter saw
/// of the session on its socket, and the statements [`prepare_cached`](Self::prepare_cached)
/// keeps.
///
/// The adapter lends this rather than the bare `Client` because a `Client` has no room for
/// either: what a reuse needs to know (was a transaction left open?) and a per-connection
/// statement cache both live next to it. `Deref` and `DerefMut` make every `Client` method
/// a method of the guard, as before.
///
/// # Examples
///
/// ```no_run
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
///
/// let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
///     .pool_builder()
///     .build()?;
/// let mut conn = pool.acquire_blocking()?;
/// let row = conn.query_one("SELECT 40 + 2", &[])?; // a `Client` method
/// assert_eq!(row.get::<_, i32>(0), 42);
/// let client: &mut postgres::Client = conn.client_mut();
/// client.batch_execute("SELECT 1")?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresConnection {
    client: Client,
    /// What the socket said about the session; `None` when the adapter could not watch it
    /// (TLS, Unix sockets), and then every reuse is reset.
    session: Option<Arc<SessionState>>,
    /// What `prepare_cached` prepared on this session.
    statements: StatementCache,
    /// The factory said a transaction pooler is in front: `prepare_cached` refuses.
    transaction_pooler: bool,
    /// How many `DISCARD ALL` the health check sent to this session while not watching it.
    discards: AtomicU64,
    /// Whether the last reset cleared session settings (so the `on_connect` hook runs again).
    reset_cleared: AtomicBool,
}

impl fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("closed", &self.client.is_closed())
            .field("tracked", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl Deref for PostgresConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PostgresConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Why [`PostgresConnection::prepare_cached`] gave no statement.
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::postgres::PrepareCachedError;
///
/// let err = PrepareCachedError::Refused;
/// assert!(err.to_string().contains("query_typed"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareCachedError {
    /// The factory is set for a transaction pooler ([`PostgresReset::TransactionPooler`]),
    /// where a named statement does not outlive its transaction: use `query_typed`.
    #[error(
        "prepare_cached is refused behind a transaction pooler (PostgresReset::TransactionPooler): \
         a named statement does not outlive its transaction there; use query_typed"
    )]
    Refused,
    /// Preparing failed; the driver's error is the source.
    #[error("could not prepare the statement")]
    Postgres(#[from] ::postgres::Error),
}

impl PostgresConnection {
    /// The client, as `Deref` gives it.
    ///
    /// # Examples
    ///
    /// See [`PostgresConnection`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably, as `DerefMut` gives it.
    ///
    /// # Examples
    ///
    /// See [`PostgresConnection`].
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The client, out of the wrapper (after
    /// [`detach`](crate::PooledConnection::detach), say).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    /// # let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let client: postgres::Client = pool.acquire_blocking()?.detach().into_client();
    /// client.close()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Whether the health check can skip the reset of this session when its last user left
    /// nothing behind (see the [module docs](self#a-clean-session-at-no-cost)): `false` for a
    /// session the adapter could not watch (TLS, a Unix socket), which is reset on every reuse.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    /// # let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// assert!(pool.acquire_blocking()?.is_tracked()); // TCP, no TLS: watched
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_tracked(&self) -> bool {
        self.session.is_some()
    }

    /// Prepares `query` once per session and hands out the same statement after that (as
    /// deadpool-postgres's `prepare_cached`): a query run with a cached statement is one round
    /// trip instead of two. The cache is the connection's, bounded by the factory's
    /// [`statement_cache_capacity`](PostgresConnectionFactory::statement_cache_capacity), kept
    /// across checkouts and cleared when the session's statements are deallocated (a reset in
    /// [`PostgresReset::DiscardAll`] mode, or your own `DISCARD ALL` / `DEALLOCATE ALL` on a
    /// [tracked](Self::is_tracked) session).
    ///
    /// # Errors
    ///
    /// [`PrepareCachedError::Refused`] when the factory's
    /// [`reset_mode`](PostgresConnectionFactory::reset_mode) is
    /// [`PostgresReset::TransactionPooler`] (a named statement does not outlive its transaction
    /// there: use `query_typed`); otherwise the driver's error from preparing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .pool_builder()
    ///     .build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// let stmt = conn.prepare_cached("SELECT $1::int + 1")?;
    /// assert_eq!(conn.query_one(&stmt, &[&41])?.get::<_, i32>(0), 42);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prepare_cached(&mut self, query: &str) -> Result<Statement, PrepareCachedError> {
        self.prepare_typed_cached(query, &[])
    }

    /// [`prepare_cached`](Self::prepare_cached) with parameter types given; the types are part
    /// of the key.
    ///
    /// # Errors
    ///
    /// As [`prepare_cached`](Self::prepare_cached).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    /// # let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// let stmt = conn.prepare_typed_cached("SELECT $1", &[postgres::types::Type::INT8])?;
    /// assert_eq!(stmt.params(), &[postgres::types::Type::INT8]);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prepare_typed_cached(
        &mut self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, PrepareCachedError> {
        if self.transaction_pooler {
            return Err(PrepareCachedError::Refused);
        }
        let deallocations = self.deallocations();
        if let Some(statement) = self.statements.get(query, types, deallocations) {
            return Ok(statement);
        }
        let statement = self.client.prepare_typed(query, types)?;
        self.statements
            .insert(query, types, statement.clone(), deallocations);
        Ok(statement)
    }

    /// The statements [`prepare_cached`](Self::prepare_cached) keeps for this session.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "blocking")] {
    /// # use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    /// # let pool = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let mut conn = pool.acquire_blocking()?;
    /// conn.prepare_cached("SELECT 1")?;
    /// assert_eq!(conn.statement_cache().len(), 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn statement_cache(&self) -> &StatementCache {
        &self.statements
    }

    fn deallocations(&self) -> u64 {
        let seen = self
            .session
            .as_deref()
            .map_or(0, SessionState::deallocations);
        seen + self.discards.load(Ordering::SeqCst)
    }
}

/// An empty query, one round trip, waiting at most `cap` and never past the pool's deadline for
/// the callback: the client blocks inside the pool's poll, where the pool's own timer cannot
/// stop it.
fn ping(conn: &mut Client, cap: Duration) -> bool {
    let left = crate::callback_deadline().map_or(cap, |deadline| {
        cap.min(deadline.saturating_duration_since(Instant::now()))
    });
    !conn.is_closed() && conn.is_valid(left).is_ok()
}

/// Pings idle connections and resets used ones; see [`PostgresReset`] for what a reset does.
///
/// `is_healthy` is an empty query that waits at most its [`timeout`](Self::timeout), and never
/// past the pool's deadline for the call. `reset` sends the same bounded ping first, then the
/// reset: a peer that went silent while the connection sat idle fails within the pool's bound
/// (see the [module docs](self#time-bounds-down-to-a-silent-peer)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::adapters::postgres::{PostgresHealthCheck, PostgresReset};
///
/// let check = PostgresHealthCheck::new()
///     .reset_mode(PostgresReset::DiscardAll)
///     .timeout(Duration::from_secs(2));
/// # drop(check);
/// ```
#[derive(Debug, Clone)]
pub struct PostgresHealthCheck {
    mode: PostgresReset,
    timeout: Duration,
    /// Reset every reuse, even when the socket says the last user left nothing behind.
    every_reuse: bool,
    /// Ping a reuse the socket says was left clean (the silent-peer bound at checkout).
    ping_clean: bool,
}

impl Default for PostgresHealthCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresHealthCheck {
    /// [`PostgresReset::Clean`] on reset, a 5 s timeout on pings.
    ///
    /// # Examples
    ///
    /// ```
    /// let check = nexus_pool::adapters::postgres::PostgresHealthCheck::new();
    /// # drop(check);
    /// ```
    pub fn new() -> Self {
        PostgresHealthCheck {
            mode: PostgresReset::Clean,
            timeout: DEFAULT_CHECK_TIMEOUT,
            every_reuse: false,
            ping_clean: false,
        }
    }

    /// Whether a reuse the adapter saw left clean is pinged before it is lent (`false` by
    /// default). With `true`, every reuse costs one bounded round trip, so that a peer that went
    /// silent even a moment after the connection's last use (a hung server or proxy, a network
    /// that drops packets) fails the acquire within the pool's bound. By default a clean reuse
    /// costs no round trip (a closed or terminated session is still caught, by a look at the
    /// socket), and only a connection idle past the pool's `checkout_validation` window (500 ms)
    /// is pinged first; a peer that went silent within the window is met by your own query,
    /// which the blocking client cannot bound: the socket's `tcp_user_timeout` (30 s from
    /// [`new`](PostgresConnectionFactory::new)) ends it. A session left dirty is pinged and reset
    /// either way.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    ///
    /// let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?;
    /// let check = factory.health_check().ping_clean_reuse(true);
    /// let pool = factory.pool_builder().health_check(check).build()?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ping_clean_reuse(mut self, ping: bool) -> Self {
        self.ping_clean = ping;
        self
    }

    /// Resets every reused session, also when the adapter saw its last user leave nothing
    /// behind: two round trips per reuse (a ping, then the reset), for applications that change
    /// session state in ways the adapter cannot see (the `tokio-postgres` adapter's
    /// [module docs](super::tokio_postgres#what-you-must-not-do) list them; they hold here too).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::postgres::PostgresHealthCheck;
    ///
    /// let check = PostgresHealthCheck::new().reset_every_reuse(true);
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
    /// use nexus_pool::adapters::postgres::{PostgresHealthCheck, PostgresReset};
    ///
    /// let check = PostgresHealthCheck::new().reset_mode(PostgresReset::Rollback);
    /// # drop(check);
    /// ```
    pub fn reset_mode(mut self, mode: PostgresReset) -> Self {
        self.mode = mode;
        self
    }

    /// The longest `is_healthy` and the ping before a reset wait for the server's answer; the
    /// pool's deadline for the call may cut them shorter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::postgres::PostgresHealthCheck;
    ///
    /// let check = PostgresHealthCheck::new().timeout(Duration::from_millis(500));
    /// # drop(check);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl ConnectionHealthCheck<PostgresConnection> for PostgresHealthCheck {
    async fn is_healthy(&self, conn: &mut PostgresConnection) -> bool {
        ping(&mut conn.client, self.timeout)
    }

    async fn reset(&self, conn: &mut PostgresConnection) -> bool {
        if conn.client.is_closed() {
            return false;
        }
        conn.reset_cleared.store(false, Ordering::Relaxed);
        let Some(session) = conn.session.clone().filter(|_| !self.every_reuse) else {
            // The reset itself cannot be bounded (the client has no timeout for a query), so a
            // bounded ping goes first: a peer that went silent while the connection sat in the
            // pool fails it within the pool's bound instead of blocking the caller in the reset.
            if !ping(&mut conn.client, self.timeout) {
                return false;
            }
            let reset = reset_unknown(&mut conn.client, self.mode);
            if self.mode == PostgresReset::DiscardAll {
                // Sent, or the session is destroyed: either way the cached statements are gone.
                conn.discards.fetch_add(1, Ordering::SeqCst);
            }
            conn.reset_cleared
                .store(self.mode != PostgresReset::Rollback, Ordering::Relaxed);
            return reset;
        };
        // Between calls nothing reads the socket (the client polls its connection only inside
        // them), so whatever the server said since, a terminated backend's goodbye included,
        // waits there unread: one non-blocking peek says whether anything does.
        let peek = session.peek();
        if peek == Some(Peek::End) {
            return false;
        }
        if peek == Some(Peek::Nothing) && session.clean() {
            // The common case: every answer came back idle and nothing changed. Nothing to
            // reset; at most the bounded ping (see `ping_clean_reuse`).
            return !self.ping_clean || ping(&mut conn.client, self.timeout);
        }
        // Something is left: an answer not read yet (a dropped row iterator, something unasked
        // on the socket), an open block, or changed state. The bounded ping reads everything
        // before its own answer, so the status after it is current.
        if !ping(&mut conn.client, self.timeout) {
            return false;
        }
        let (in_block, changed) = (session.in_transaction(), session.changed());
        let sql = reset_sql(self.mode, in_block, changed);
        for statement in sql {
            if conn.client.batch_execute(statement).is_err() {
                return false;
            }
        }
        conn.reset_cleared.store(
            !sql.is_empty() && self.mode != PostgresReset::Rollback,
            Ordering::Relaxed,
        );
        // The reset's own `RESET ALL` and friends marked it changed; all are answered now.
        session.clear_changed();
        true
    }

    fn reset_cleared_session(&self, conn: &PostgresConnection) -> bool {
        conn.reset_cleared.load(Ordering::Relaxed)
    }

    /// The hook's own settings are the session's clean state: not a change to reset.
    fn prepared(&self, conn: &mut PostgresConnection) {
        if let Some(session) = conn.session.as_deref() {
            session.clear_changed();
        }
    }
}

/// Resets a session whose state is unknown (the blocking client tells nothing about it) without
/// the warning a blind `ROLLBACK` writes: one round trip when no transaction was left open.
fn reset_unknown(conn: &mut Client, mode: PostgresReset) -> bool {
    if mode == PostgresReset::DiscardAll {
        return match conn.batch_execute("DISCARD ALL") {
            Ok(()) => true,
            Err(e) if mode.needs_rollback(&e) => {
                conn.batch_execute("ROLLBACK").is_ok() && conn.batch_execute("DISCARD ALL").is_ok()
            }
            Err(_) => false,
        };
    }
    let in_block = match conn.simple_query(&probe_sql(mode)) {
        Ok(messages) => probe_found_block(messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })),
        Err(e) if in_failed_block(&e) => true,
        Err(_) => return false,
    };
    !in_block
        || reset_sql(mode, true, true)
            .iter()
            .all(|sql| conn.batch_execute(sql).is_ok())
}
