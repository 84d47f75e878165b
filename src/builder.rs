//! `ConnectionPoolBuilder`: what a pool is built from (factory, configuration, health check,
//! `on_connect` hook, event handlers, a manual clock for tests), and `build`, which starts the
//! pool at once. `build_connected`, which makes `min_connections` first, is a future: it lives
//! with the others in `future.rs`.

use std::fmt;
use std::sync::Arc;

use crate::core::Shared;
use crate::{
    CheckoutValidation, ConfigError, ConnectionFactory, ConnectionHealthCheck, ConnectionPool,
    ConnectionPoolConfig, ConnectionPoolConfigBuilder, MaintenanceMode, ManualClock,
    PoolEventHandler,
};

/// Builds a [`ConnectionPool`]; see [`ConnectionPool::builder`].
///
/// # Examples
///
/// ```
/// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
/// let pool = ConnectionPool::builder(Units).build()?;
/// assert_eq!(pool.config(), &ConnectionPoolConfig::default());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConnectionPoolBuilder<F: ConnectionFactory> {
    factory: F,
    config: ConnectionPoolConfigBuilder,
    health: Option<Box<dyn crate::factory::DynHealthCheck<F::Connection>>>,
    on_connect: Option<crate::factory::ConnectHook<F>>,
    events: Vec<Box<dyn PoolEventHandler>>,
    clock: Option<ManualClock>,
}

impl<F: ConnectionFactory> fmt::Debug for ConnectionPoolBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPoolBuilder")
            .field("config", &self.config)
            .field("health_check", &self.health.is_some())
            .finish_non_exhaustive()
    }
}

impl<F: ConnectionFactory> ConnectionPoolBuilder<F> {
    pub(crate) fn new(factory: F) -> Self {
        let health = factory
            .default_health_check()
            .map(|check| Box::new(check) as Box<dyn crate::factory::DynHealthCheck<F::Connection>>);
        ConnectionPoolBuilder {
            factory,
            config: ConnectionPoolConfig::builder(),
            health,
            on_connect: None,
            events: Vec::new(),
            clock: None,
        }
    }

    /// Uses this (already validated) configuration instead of the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
    /// # use nexus_pool::doc_support::Units;
    /// let config = ConnectionPoolConfig::builder().max_connections(3).build()?;
    /// let pool = ConnectionPool::builder(Units).config(config).build()?;
    /// assert_eq!(pool.current_metrics().max, 3);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn config(mut self, config: ConnectionPoolConfig) -> Self {
        self.config = config.into();
        self
    }

    forward_settings! {
        /// the pool's name (default `"nexus-pool"`)
        name(name: impl Into<String>) = "\"orders-db\"";
        /// how many idle connections the pool keeps ready (default 1)
        min_connections(n: usize) = "2";
        /// the most connections the pool opens (default 10)
        max_connections(n: usize) = "16";
        /// how long an acquire may take in all (default 30 s)
        acquire_timeout(timeout: std::time::Duration) = "std::time::Duration::from_secs(5)";
        /// how long a connection may sit idle before it is closed, or `None` (default 10 min)
        idle_timeout(timeout: impl Into<Option<std::time::Duration>>) = "std::time::Duration::from_secs(300)";
        /// how old a connection may grow before it is replaced, or `None` (default 30 min)
        max_lifetime(lifetime: impl Into<Option<std::time::Duration>>) = "std::time::Duration::from_secs(3600)";
        /// how often idle connections are health-checked, or `None` (default 30 s)
        health_check_interval(interval: impl Into<Option<std::time::Duration>>) = "None";
        /// when a connection is validated on checkout (default `IdleFor(500 ms)`)
        checkout_validation(validation: CheckoutValidation) = "nexus_pool::CheckoutValidation::Always";
        /// the bound on one `create` (default 10 s)
        create_timeout(timeout: std::time::Duration) = "std::time::Duration::from_secs(2)";
        /// the bound on `validate`, `is_healthy` and `reset` (default 5 s)
        check_timeout(timeout: std::time::Duration) = "std::time::Duration::from_secs(1)";
        /// the bound on `destroy` (default 5 s)
        destroy_timeout(timeout: std::time::Duration) = "std::time::Duration::from_secs(1)";
        /// how many creates may run at once (default 2)
        max_concurrent_creates(n: usize) = "4";
        /// how long a waiting thread may be passed over by newcomers; zero for strict FIFO (default 1 ms)
        fairness_bound(bound: std::time::Duration) = "std::time::Duration::ZERO";
        /// the pause after a failed create, doubling up to the second value (default 10 ms to 5 s)
        create_backoff(initial: std::time::Duration, max: std::time::Duration) = "std::time::Duration::from_millis(50), std::time::Duration::from_secs(2)";
        /// the most a connection's lifetime is shortened by, fixed at creation (default 20% of `max_lifetime`)
        max_lifetime_jitter(jitter: std::time::Duration) = "std::time::Duration::from_secs(60)";
        /// how long a loan may last before it is reported as a suspected leak, or `None` (default off)
        leak_detection_threshold(threshold: impl Into<Option<std::time::Duration>>) = "std::time::Duration::from_secs(30)";
        /// the most `max_connections` can be raised to by `resize` (default `max_connections`)
        max_connections_ceiling(ceiling: usize) = "32";
        /// where the maintenance loop runs (default a thread of the pool's own)
        maintenance(mode: MaintenanceMode) = "nexus_pool::MaintenanceMode::Thread";
        /// whether every acquire and release is counted and timed (default off)
        detailed_statistics(on: bool) = "true";
    }

    /// Adds a health check (by default there is none, and connections are trusted).
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionHealthCheck, ConnectionPool};
    /// # use nexus_pool::doc_support::Units;
    /// struct Fine;
    /// impl ConnectionHealthCheck<()> for Fine {
    ///     async fn is_healthy(&self, _: &mut ()) -> bool { true }
    /// }
    /// let pool = ConnectionPool::builder(Units).health_check(Fine).build()?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health_check(mut self, check: impl ConnectionHealthCheck<F::Connection>) -> Self {
        self.health = Some(Box::new(check));
        self
    }

    /// Runs `hook` on every new connection before it is lent (sqlx's `after_connect`, bb8's
    /// `CustomizeConnection`): session settings, prepared statements, a role. It is part of the
    /// create: bounded by `create_timeout` together with it, and its error fails the create (the
    /// connection is closed, and a caller that times out meanwhile gets the hook's error as the
    /// last create error, with its `source()` chain). A reset can undo what the hook set (the
    /// PostgreSQL adapters' `DISCARD ALL` clears every `SET`), so the hook runs again after each
    /// reset, bounded by `check_timeout`; its failure then retires the connection. That costs
    /// the hook's round trips on every reuse of a used connection: settings a connection string
    /// can carry (PostgreSQL's `options=-c name=value`) survive resets at no cost.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionFactory, ConnectionPool};
    /// struct Sessions;
    /// impl ConnectionFactory for Sessions {
    ///     type Connection = Vec<String>;
    ///     type Error = std::io::Error;
    ///     async fn create(&self) -> Result<Vec<String>, std::io::Error> { Ok(Vec::new()) }
    /// }
    ///
    /// let pool = ConnectionPool::builder(Sessions)
    ///     .on_connect(|session| {
    ///         Box::pin(async move {
    ///             session.push("SET search_path = app".to_owned());
    ///             Ok(())
    ///         })
    ///     })
    ///     .build()?;
    /// # #[cfg(feature = "blocking")]
    /// assert_eq!(pool.acquire_blocking()?.len(), 1);
    /// # Ok::<(), nexus_pool::PoolError<std::io::Error>>(())
    /// ```
    pub fn on_connect<H>(mut self, hook: H) -> Self
    where
        H: for<'c> Fn(
                &'c mut F::Connection,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), F::Error>> + Send + 'c>,
            > + Send
            + Sync
            + 'static,
    {
        self.on_connect = Some(Box::new(hook));
        self
    }

    /// Builds the pool without a health check, dropping the one the factory supplies
    /// ([`ConnectionFactory::default_health_check`]): no periodic checks, and no `reset` before a
    /// connection is lent again, so its next user gets the session as the last one left it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::ConnectionPool;
    /// # use nexus_pool::doc_support::Units;
    /// let builder = ConnectionPool::builder(Units).without_health_check();
    /// assert!(format!("{builder:?}").contains("health_check: false"));
    /// ```
    pub fn without_health_check(mut self) -> Self {
        self.health = None;
        self
    }

    /// Adds an event hook, called at every lifecycle event (by default there is none). Several
    /// can be added; they are called in the order added.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, PoolEventHandler};
    /// # use nexus_pool::doc_support::Units;
    /// struct Log;
    /// impl PoolEventHandler for Log {
    ///     fn on_timed_out(&self, pool: &str, waited: std::time::Duration) {
    ///         eprintln!("{pool}: a caller gave up after {waited:?}");
    ///     }
    /// }
    /// let pool = ConnectionPool::builder(Units).event_handler(Log).build()?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event_handler(mut self, handler: impl PoolEventHandler) -> Self {
        self.events.push(Box::new(handler));
        self
    }

    /// Drives the pool's connection-age decisions from a [`ManualClock`] instead of the system
    /// clock, for tests.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::{ConnectionPool, ManualClock};
    /// # use nexus_pool::doc_support::Units;
    /// let clock = ManualClock::new();
    /// let pool = ConnectionPool::builder(Units).clock(clock.clone()).build()?;
    /// # drop(pool);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The pool's shared state, with the configuration validated.
    pub(crate) fn into_shared(self) -> Result<Arc<Shared<F>>, ConfigError> {
        let config = self.config.clone().build()?;
        Ok(self.into_shared_with(config))
    }

    /// `into_shared` with a configuration already validated.
    fn into_shared_with(self, config: ConnectionPoolConfig) -> Arc<Shared<F>> {
        Arc::new(Shared::new(
            self.factory,
            config,
            self.health,
            self.on_connect,
            self.events.into_boxed_slice(),
            self.clock,
        ))
    }

    /// Builds with `config`, which is valid as every `ConnectionPoolConfig` is (only its
    /// builder, its default and its deserializer make one, and each validates): for
    /// [`ConnectionPool::new`].
    pub(crate) fn build_valid(self, config: ConnectionPoolConfig) -> ConnectionPool<F> {
        ConnectionPool::from_shared(self.into_shared_with(config))
    }

    /// Builds the pool and starts its maintenance, which makes `min_connections` in the
    /// background: the pool starts even if the database is unreachable, and fills in when it
    /// comes back. To fail instead, use `build_connected`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::ConnectionPool;
    /// # use nexus_pool::doc_support::Units;
    /// let pool = ConnectionPool::builder(Units).max_connections(4).build()?;
    /// assert!(!pool.is_closed());
    ///
    /// let refused = ConnectionPool::builder(Units).max_connections(0).build();
    /// assert_eq!(refused.unwrap_err().field(), "max_connections");
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A setting out of range, or settings that contradict each other: the
    /// [`ConfigError`] names the field, as
    /// [`ConnectionPoolConfigBuilder::build`](crate::ConnectionPoolConfigBuilder::build) does.
    pub fn build(self) -> Result<ConnectionPool<F>, ConfigError> {
        Ok(ConnectionPool::from_shared(self.into_shared()?))
    }
}

/// Forwards each setting to the builder's `ConnectionPoolConfigBuilder`, with its doc and an
/// example, so the pool builder has every setting one level deep.
macro_rules! forward_settings {
    ($( #[doc = $what:literal] $name:ident($($arg:ident: $ty:ty),+) = $example:literal; )+) => {
        $(
            #[doc = concat!("Sets ", $what, "; see [`ConnectionPoolConfigBuilder::", stringify!($name), "`](crate::ConnectionPoolConfigBuilder::", stringify!($name), "), whose checks [`build`](Self::build) applies.")]
            ///
            /// # Examples
            ///
            /// ```
            /// # use nexus_pool::ConnectionPool;
            /// # use nexus_pool::doc_support::Units;
            #[doc = concat!("let pool = ConnectionPool::builder(Units).", stringify!($name), "(", $example, ").build()?;")]
            /// # drop(pool);
            /// # Ok::<(), nexus_pool::ConfigError>(())
            /// ```
            pub fn $name(mut self, $($arg: $ty),+) -> Self {
                self.config = self.config.$name($($arg),+);
                self
            }
        )+
    };
}
use forward_settings;
