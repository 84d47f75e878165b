//! PostgreSQL through the blocking [`postgres`] crate (feature `postgres`).
//!
//! # How it is built
//!
//! [`PostgresConnectionFactory`] holds a parsed [`postgres::Config`] and a TLS
//! connector ([`NoTls`] unless you call
//! [`with_tls`](PostgresConnectionFactory::with_tls)); `create` is `Config::connect`, so the pool
//! lends plain [`postgres::Client`]s. `validate` is
//! [`Client::is_valid`](::postgres::Client::is_valid): an empty query, one round trip, bounded by
//! a timeout. [`PostgresHealthCheck`] pings the same way in `is_healthy`, and its `reset` rolls
//! back a transaction left open and clears the session: everything `DISCARD ALL` does except
//! deallocating the client's prepared statements ([`PostgresReset`] says why, and offers plain
//! `DISCARD ALL`). `destroy` closes the session politely (a `Terminate` message). A failed
//! `create` is a [`PostgresError`]: the driver's error, printed with the server's message.
//!
//! # What a reuse costs
//!
//! A reused connection is always clean (no transaction block open or failed, session state reset
//! as [`PostgresReset`] says), and no checkout makes the server log a warning: the reset asks, in
//! the same query, whether a block is open (`transaction_timestamp() = statement_timestamp()`)
//! and sends a `ROLLBACK` only into one. But the blocking client says nothing about the session's
//! state, so, unlike the `tokio-postgres` adapter (which watches the socket and skips the reset
//! of a session left clean), this one resets every reuse: with the ping before it (see below),
//! two round trips per checkout. When that matters more than a clean session, attach a health
//! check of your own, or use the `tokio-postgres` adapter from threads with `acquire_blocking`.
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
//!   blocking: the pool's `create_timeout` and `destroy_timeout` hold, and its maintenance thread
//!   (which also runs the creator and the health checks) never hangs on a dead socket. A call
//!   the pool gave up on finishes on its helper, which lives until the socket fails or the peer
//!   answers. The `connect_timeout` that [`new`](PostgresConnectionFactory::new) sets (10 s)
//!   bounds only the TCP connect, not the start-up exchange after it; `create_timeout` bounds both.
//! * `validate` and [`PostgresHealthCheck::is_healthy`] are an empty query that waits for the
//!   server's answer at most until the pool's deadline for the call
//!   ([`callback_deadline`](crate::callback_deadline): the pool's `check_timeout`, on checkout
//!   cut to what is left of the `acquire_timeout`), and never longer than the factory's
//!   [`check_timeout`](PostgresConnectionFactory::check_timeout) (5 s).
//! * [`PostgresHealthCheck`]'s `reset` sends that same bounded ping first, and only then the
//!   reset, which like your queries is a plain query the client offers no timeout for. A peer
//!   that went silent while the connection sat in the pool fails the ping, and the connection is
//!   destroyed within the bound; it costs one round trip per reuse. What is left is a peer that
//!   goes silent between the ping's answer and the reset.
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
use std::time::{Duration, Instant};

use ::postgres::tls::{MakeTlsConnect, TlsConnect};
use ::postgres::{Client, Config, NoTls, SimpleQueryMessage, Socket};

use super::helper_thread;
use super::pg_common::OneLine;
pub use super::pg_common::{PostgresReset, connection_lost};
use super::pg_common::{in_failed_block, probe_found_block, probe_sql, reset_sql};
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

/// Why a connection could not be made: a [`postgres::Error`] whose `Display` is one line that
/// includes the server's message.
///
/// The driver's own `Display` leaves the server's words to its `source()` (`db error` for
/// `database "x" does not exist`, `error connecting to server` for `Connection refused`), so a
/// pool error printed with `{}` would hide them. This prints `db error: FATAL: database "x" does
/// not exist` instead. The driver's error is the [`source()`](std::error::Error::source) (and
/// [`get_ref`](Self::get_ref)), for its [`code()`](postgres::Error::code) or
/// [`connection_lost`].
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::adapters::postgres::PostgresError;
///
/// let driver = "postgres://[nonsense".parse::<postgres::Config>().unwrap_err();
/// let err = PostgresError::from(driver);
/// assert!(err.to_string().starts_with("invalid connection string: "), "{err}");
/// assert!(err.source().unwrap().is::<postgres::Error>());
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
        OneLine(&self.0).fmt(f)
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
}

impl<T> fmt::Debug for PostgresConnectionFactory<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug hides the password.
        f.debug_struct("PostgresConnectionFactory")
            .field("config", &self.config)
            .field("check_timeout", &self.check_timeout)
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
        PostgresHealthCheck::new().timeout(self.check_timeout)
    }
}

impl<T> PostgresConnectionFactory<T>
where
    Self: ConnectionFactory<Connection = Client>,
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
    type Connection = Client;
    type Error = PostgresError;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    /// Connects on a helper thread (see the [module docs](self#time-bounds-down-to-a-silent-peer)).
    async fn create(&self) -> Result<Client, PostgresError> {
        let (config, tls) = (self.config.clone(), self.tls.clone());
        helper_thread::run("nexus-pool-pg-connect", move || config.connect(tls))
            .await
            .map_err(PostgresError)
    }

    /// Says goodbye on a helper thread: closing waits for the replies still due, which never
    /// come on a silent peer (after a timed-out `validate`, for instance).
    async fn destroy(&self, conn: Client) {
        // Errors mean the session is gone anyway.
        helper_thread::run("nexus-pool-pg-close", move || {
            let _ = conn.close();
        })
        .await;
    }

    async fn validate(&self, conn: &mut Client) -> bool {
        ping(conn, self.check_timeout)
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
        }
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

impl ConnectionHealthCheck<Client> for PostgresHealthCheck {
    async fn is_healthy(&self, conn: &mut Client) -> bool {
        ping(conn, self.timeout)
    }

    async fn reset(&self, conn: &mut Client) -> bool {
        // The reset itself cannot be bounded (the client has no timeout for a query), so a
        // bounded ping goes first: a peer that went silent while the connection sat in the pool
        // fails it within the pool's bound instead of blocking the caller in the reset.
        if !ping(conn, self.timeout) {
            return false;
        }
        reset_unknown(conn, self.mode)
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
