//! `ConnectionPoolConfig`: the pool's settings (with `CheckoutValidation` and `MaintenanceMode`),
//! their defaults, and `ConnectionPoolConfigBuilder`, whose validation refuses bad values with an
//! error naming the field.

use std::time::Duration;

use crate::ConfigError;

/// The largest `max_connections` a pool accepts.
///
/// Far above what any database serves; the bound keeps the pool's counters small.
pub const MAX_CONNECTIONS_LIMIT: usize = 65_535;

/// When the factory's [`validate`](crate::ConnectionFactory::validate) runs on checkout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::{CheckoutValidation, ConnectionPoolConfig};
///
/// let config = ConnectionPoolConfig::builder()
///     .checkout_validation(CheckoutValidation::IdleFor(Duration::from_secs(1)))
///     .build()?;
/// assert_eq!(config.checkout_validation(), CheckoutValidation::IdleFor(Duration::from_secs(1)));
/// # Ok::<(), nexus_pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckoutValidation {
    /// Never validate on checkout (periodic health checks still run).
    Never,
    /// Validate every connection on every checkout, except one made less than 500 ms ago and
    /// not lent yet (making it proved it works).
    Always,
    /// Validate a connection unless it was last used less than this long ago (the default, 500 ms,
    /// follows HikariCP: a connection that just worked almost surely still works). A connection
    /// not lent yet counts as used when it was made, and is skipped for at least 500 ms.
    IdleFor(Duration),
}

/// Where the pool's maintenance loop runs.
///
/// # Examples
///
/// ```
/// use nexus_pool::{ConnectionPoolConfig, MaintenanceMode};
///
/// let config = ConnectionPoolConfig::builder().maintenance(MaintenanceMode::Spawned).build()?;
/// assert_eq!(config.maintenance(), MaintenanceMode::Spawned);
/// # Ok::<(), nexus_pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MaintenanceMode {
    /// On a small thread of the pool's own (the default). No runtime needed.
    #[default]
    Thread,
    /// As a future the user spawns on an executor of their choice, from
    /// [`ConnectionPool::maintenance`](crate::ConnectionPool::maintenance). Until it is spawned
    /// the pool creates no connection.
    Spawned,
}

/// A pool's settings. Build one with [`ConnectionPoolConfig::builder`]; invalid values are refused
/// by [`ConnectionPoolConfigBuilder::build`] with a [`ConfigError`] that names the field.
///
/// | field | default |
/// |---|---|
/// | `name` | `"nexus-pool"` |
/// | `min_connections` | 1 |
/// | `max_connections` | 10 |
/// | `acquire_timeout` | 30 s |
/// | `idle_timeout` | 10 min |
/// | `max_lifetime` | 30 min |
/// | `health_check_interval` | 30 s |
/// | `checkout_validation` | `IdleFor(500 ms)` |
/// | `create_timeout` | 10 s |
/// | `check_timeout` (validate, is_healthy, reset) | 5 s |
/// | `destroy_timeout` | 5 s |
/// | `max_concurrent_creates` | 2 |
/// | `fairness_bound` | 1 ms |
/// | `create_backoff` | 10 ms doubling up to 5 s, with jitter |
/// | `max_lifetime_jitter` | 20% of `max_lifetime` |
/// | `leak_detection_threshold` | off |
/// | `max_connections_ceiling` | `max_connections` |
/// | `maintenance` | [`MaintenanceMode::Thread`] |
/// | `detailed_statistics` | off |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::ConnectionPoolConfig;
///
/// let config = ConnectionPoolConfig::builder()
///     .min_connections(2)
///     .max_connections(10)
///     .acquire_timeout(Duration::from_secs(5))
///     .idle_timeout(Duration::from_secs(300))
///     .max_lifetime(Duration::from_secs(3600))
///     .build()?;
/// assert_eq!(config.max_connections(), 10);
///
/// let defaults = ConnectionPoolConfig::default();
/// assert_eq!(defaults.acquire_timeout(), Duration::from_secs(30));
/// # Ok::<(), nexus_pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPoolConfig {
    name: String,
    min_connections: usize,
    max_connections: usize,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    health_check_interval: Option<Duration>,
    checkout_validation: CheckoutValidation,
    create_timeout: Duration,
    check_timeout: Duration,
    destroy_timeout: Duration,
    max_concurrent_creates: usize,
    fairness_bound: Duration,
    create_backoff_initial: Duration,
    create_backoff_max: Duration,
    max_lifetime_jitter: Option<Duration>,
    leak_detection_threshold: Option<Duration>,
    max_connections_ceiling: Option<usize>,
    maintenance: MaintenanceMode,
    detailed_statistics: bool,
}

impl Default for ConnectionPoolConfig {
    fn default() -> Self {
        ConnectionPoolConfig {
            name: "nexus-pool".to_owned(),
            min_connections: 1,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            health_check_interval: Some(Duration::from_secs(30)),
            checkout_validation: CheckoutValidation::IdleFor(Duration::from_millis(500)),
            create_timeout: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            destroy_timeout: Duration::from_secs(5),
            max_concurrent_creates: 2,
            fairness_bound: Duration::from_millis(1),
            create_backoff_initial: Duration::from_millis(10),
            create_backoff_max: Duration::from_secs(5),
            max_lifetime_jitter: None,
            leak_detection_threshold: None,
            max_connections_ceiling: None,
            maintenance: MaintenanceMode::Thread,
            detailed_statistics: false,
        }
    }
}

impl ConnectionPoolConfig {
    /// Starts a builder with every field at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = nexus_pool::ConnectionPoolConfig::builder().max_connections(4).build()?;
    /// assert_eq!(config.max_connections(), 4);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn builder() -> ConnectionPoolConfigBuilder {
        ConnectionPoolConfigBuilder {
            config: ConnectionPoolConfig::default(),
        }
    }

    /// The pool's name, used in errors, metrics and events to tell pools apart.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().name(), "nexus-pool");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Idle connections the pool keeps ready (kept by the maintenance loop).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().min_connections(), 1);
    /// ```
    pub fn min_connections(&self) -> usize {
        self.min_connections
    }

    /// The most connections the pool ever has open at once, counting those being created.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().max_connections(), 10);
    /// ```
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long an acquire may take in all: waiting, creating and validating.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().acquire_timeout(), Duration::from_secs(30));
    /// ```
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// How long a connection may sit idle before it is closed (never below `min_connections`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().idle_timeout(), Some(Duration::from_secs(600)));
    /// ```
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// How long a connection may live; past it, it is closed instead of being lent or returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().max_lifetime(), Some(Duration::from_secs(1800)));
    /// ```
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// How often idle connections are health-checked.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().health_check_interval(), Some(Duration::from_secs(30)));
    /// ```
    pub fn health_check_interval(&self) -> Option<Duration> {
        self.health_check_interval
    }

    /// When connections are validated on checkout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::{CheckoutValidation, ConnectionPoolConfig};
    /// assert_eq!(
    ///     ConnectionPoolConfig::default().checkout_validation(),
    ///     CheckoutValidation::IdleFor(Duration::from_millis(500)),
    /// );
    /// ```
    pub fn checkout_validation(&self) -> CheckoutValidation {
        self.checkout_validation
    }

    /// How long one `create` may take before it is abandoned (and counted as a failure).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().create_timeout(), Duration::from_secs(10));
    /// ```
    pub fn create_timeout(&self) -> Duration {
        self.create_timeout
    }

    /// How long one `validate`, `is_healthy` or `reset` may take; past it the connection is
    /// destroyed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().check_timeout(), Duration::from_secs(5));
    /// ```
    pub fn check_timeout(&self) -> Duration {
        self.check_timeout
    }

    /// How long one `destroy` may take; past it the connection is dropped and its place freed.
    ///
    /// A connection being destroyed keeps its place in the pool's total until `destroy` returns
    /// or this timeout passes, so the database never counts more than `max_connections` of the
    /// pool's sessions: freeing the place at once would let a replacement connect while the
    /// server still counts the old session. The cost is bounded by this timeout: while a
    /// `destroy` hangs, a pool at its maximum has one connection fewer to lend, and a pool of 1
    /// none, for up to this long. Lower it if a pool of 1 must recover faster. Destroys run one
    /// at a time, so connections retired behind a hung one wait for it too. A `destroy` that
    /// blocks its thread inside `poll` cannot be cut short and keeps the place until it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().destroy_timeout(), Duration::from_secs(5));
    /// ```
    pub fn destroy_timeout(&self) -> Duration {
        self.destroy_timeout
    }

    /// How long a waiting thread may be passed over before it is served ahead of everyone
    /// younger.
    ///
    /// Waiters are queued first come, first served. A waiting *task* (`acquire().await`) is
    /// handed the next returned connection, always: waking it costs its executor little. A
    /// waiting *thread* (`acquire_blocking`) is parked, and waking it costs a context switch
    /// (tens of microseconds) during which nobody can use a connection handed to it: with more
    /// threads than connections, strict hand-off convoys every thread through the scheduler. So
    /// while the oldest waiter is a thread that has waited less than this bound, a returned
    /// connection is left idle and that thread is woken to take it itself; a caller that is
    /// already running may take it first. Once the thread has waited the bound, newcomers stand
    /// back and the next returned connection is its own. No caller thus waits longer than this
    /// bound past its first-come turn, plus the time until a connection comes back and the time
    /// it takes to wake.
    ///
    /// Zero is strict first come, first served for threads too. A bound longer than half of
    /// `acquire_timeout` counts as half of it, so that a waiter is due well before it times out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().fairness_bound(), Duration::from_millis(1));
    /// ```
    pub fn fairness_bound(&self) -> Duration {
        self.fairness_bound
    }

    /// The most creates in flight at once, so a recovering database meets no stampede.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().max_concurrent_creates(), 2);
    /// ```
    pub fn max_concurrent_creates(&self) -> usize {
        self.max_concurrent_creates
    }

    /// The first and the longest pause after failed creates: the pause doubles from the first
    /// up to the longest, each with up to 50% random jitter, and resets after a success.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(
    ///     nexus_pool::ConnectionPoolConfig::default().create_backoff(),
    ///     (Duration::from_millis(10), Duration::from_secs(5)),
    /// );
    /// ```
    pub fn create_backoff(&self) -> (Duration, Duration) {
        (self.create_backoff_initial, self.create_backoff_max)
    }

    /// The most a connection's lifetime is shortened (fixed at its creation), so connections
    /// made together do not expire together.
    ///
    /// Successive connections' cuts are spread evenly across `[0, jitter)` (a golden-ratio
    /// sequence from a random start per pool), so a burst of creates expires spread over the
    /// whole window rather than bunched by chance. The default, a fifth of `max_lifetime`, is
    /// the round figure just above the smallest share (about 19%) that keeps every burst apart
    /// for every lifetime of a minute or more: no second then sees more than a quarter of a
    /// burst expire (or more than one connection, for a burst of fewer than 4). A tenth still let 3 of a burst of 10, or 2 of 6, expire in one
    /// second with a 60 s lifetime. The price is a mean lifetime 10% below `max_lifetime`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// // A fifth of the default 30 min lifetime.
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().max_lifetime_jitter(), Duration::from_secs(6 * 60));
    /// ```
    pub fn max_lifetime_jitter(&self) -> Duration {
        match (self.max_lifetime_jitter, self.max_lifetime) {
            (Some(j), _) => j,
            (None, Some(life)) => life / 5,
            (None, None) => Duration::ZERO,
        }
    }

    /// How long a connection may be held before it is reported as a suspected leak.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().leak_detection_threshold(), None);
    /// ```
    pub fn leak_detection_threshold(&self) -> Option<Duration> {
        self.leak_detection_threshold
    }

    /// The largest `max_connections` that [`resize`](crate::ConnectionPool::resize) may set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ConnectionPoolConfig::default().max_connections_ceiling(), 10);
    /// ```
    pub fn max_connections_ceiling(&self) -> usize {
        self.max_connections_ceiling.unwrap_or(self.max_connections)
    }

    /// Where the maintenance loop runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionPoolConfig, MaintenanceMode};
    /// assert_eq!(ConnectionPoolConfig::default().maintenance(), MaintenanceMode::Thread);
    /// ```
    pub fn maintenance(&self) -> MaintenanceMode {
        self.maintenance
    }

    /// Whether every acquire and release is counted and timed (see
    /// [`PoolStatistics`](crate::PoolStatistics)).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!nexus_pool::ConnectionPoolConfig::default().detailed_statistics());
    /// ```
    pub fn detailed_statistics(&self) -> bool {
        self.detailed_statistics
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::new(
                "max_connections",
                format!(
                    "must be at most {MAX_CONNECTIONS_LIMIT} (got {})",
                    self.max_connections
                ),
            ));
        }
        if self.min_connections > self.max_connections {
            return Err(ConfigError::new(
                "min_connections",
                format!(
                    "must not exceed `max_connections` ({} > {})",
                    self.min_connections, self.max_connections
                ),
            ));
        }
        nonzero("acquire_timeout", Some(self.acquire_timeout))?;
        nonzero("idle_timeout", self.idle_timeout)?;
        nonzero("max_lifetime", self.max_lifetime)?;
        nonzero("health_check_interval", self.health_check_interval)?;
        nonzero("create_timeout", Some(self.create_timeout))?;
        nonzero("check_timeout", Some(self.check_timeout))?;
        nonzero("destroy_timeout", Some(self.destroy_timeout))?;
        nonzero("leak_detection_threshold", self.leak_detection_threshold)?;
        if self.max_concurrent_creates == 0 {
            return Err(ConfigError::new(
                "max_concurrent_creates",
                "must be at least 1",
            ));
        }
        if self.create_backoff_initial.is_zero()
            || self.create_backoff_initial > self.create_backoff_max
        {
            return Err(ConfigError::new(
                "create_backoff",
                format!(
                    "needs 0 < initial <= max (got {:?} and {:?})",
                    self.create_backoff_initial, self.create_backoff_max
                ),
            ));
        }
        if let (Some(jitter), Some(life)) = (self.max_lifetime_jitter, self.max_lifetime) {
            if jitter >= life {
                return Err(ConfigError::new(
                    "max_lifetime_jitter",
                    format!("must be shorter than `max_lifetime` ({jitter:?} >= {life:?})"),
                ));
            }
        }
        if let Some(ceiling) = self.max_connections_ceiling {
            if ceiling < self.max_connections || ceiling > MAX_CONNECTIONS_LIMIT {
                return Err(ConfigError::new(
                    "max_connections_ceiling",
                    format!(
                        "must be between `max_connections` ({}) and {MAX_CONNECTIONS_LIMIT} (got {ceiling})",
                        self.max_connections
                    ),
                ));
            }
        }
        if let (Some(idle), Some(life)) = (self.idle_timeout, self.max_lifetime) {
            if idle >= life {
                return Err(ConfigError::new(
                    "idle_timeout",
                    format!("must be shorter than `max_lifetime` ({idle:?} >= {life:?})"),
                ));
            }
        }
        Ok(())
    }
}

fn nonzero(field: &'static str, value: Option<Duration>) -> Result<(), ConfigError> {
    match value {
        Some(d) if d.is_zero() => Err(ConfigError::new(
            field,
            "must be greater than zero (use `None` to turn it off where that is allowed)",
        )),
        _ => Ok(()),
    }
}

/// Builds a [`ConnectionPoolConfig`]; see there for the fields and defaults.
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPoolConfig;
///
/// let err = ConnectionPoolConfig::builder()
///     .min_connections(5)
///     .max_connections(2)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "min_connections");
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConnectionPoolConfigBuilder {
    config: ConnectionPoolConfig,
}

impl From<ConnectionPoolConfig> for ConnectionPoolConfigBuilder {
    /// A builder starting from `config`'s settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::{ConnectionPoolConfig, ConnectionPoolConfigBuilder};
    ///
    /// let base = ConnectionPoolConfig::builder().max_connections(4).build()?;
    /// let wider = ConnectionPoolConfigBuilder::from(base).max_connections(8).build()?;
    /// assert_eq!(wider.max_connections(), 8);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    fn from(config: ConnectionPoolConfig) -> Self {
        ConnectionPoolConfigBuilder { config }
    }
}

impl ConnectionPoolConfigBuilder {
    /// Sets the pool's name (default `"nexus-pool"`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().name("orders-db").build()?;
    /// assert_eq!(c.name(), "orders-db");
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets how many idle connections the pool keeps ready (default 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().min_connections(0).build()?;
    /// assert_eq!(c.min_connections(), 0);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn min_connections(mut self, n: usize) -> Self {
        self.config.min_connections = n;
        self
    }

    /// Sets the most connections open at once (default 10, at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().max_connections(32).build()?;
    /// assert_eq!(c.max_connections(), 32);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Sets how long an acquire may take in all (default 30 s, not zero).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder()
    ///     .acquire_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// assert_eq!(c.acquire_timeout(), Duration::from_secs(2));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// Sets how long a connection may sit idle (default 10 min; `None` keeps idle ones forever).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().idle_timeout(None).build()?;
    /// assert_eq!(c.idle_timeout(), None);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// Sets how long a connection may live (default 30 min; `None` for no limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder()
    ///     .max_lifetime(Duration::from_secs(3600))
    ///     .build()?;
    /// assert_eq!(c.max_lifetime(), Some(Duration::from_secs(3600)));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = lifetime.into();
        self
    }

    /// Sets how often idle connections are health-checked (default 30 s; `None` turns it off).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().health_check_interval(None).build()?;
    /// assert_eq!(c.health_check_interval(), None);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn health_check_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.health_check_interval = interval.into();
        self
    }

    /// Sets when connections are validated on checkout (default `IdleFor(500 ms)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::CheckoutValidation;
    /// let c = nexus_pool::ConnectionPoolConfig::builder()
    ///     .checkout_validation(CheckoutValidation::Never)
    ///     .build()?;
    /// assert_eq!(c.checkout_validation(), CheckoutValidation::Never);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn checkout_validation(mut self, validation: CheckoutValidation) -> Self {
        self.config.checkout_validation = validation;
        self
    }

    /// Sets how long one `create` may take (default 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().create_timeout(Duration::from_secs(3)).build()?;
    /// assert_eq!(c.create_timeout(), Duration::from_secs(3));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.create_timeout = timeout;
        self
    }

    /// Sets how long one `validate`, `is_healthy` or `reset` may take (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().check_timeout(Duration::from_secs(1)).build()?;
    /// assert_eq!(c.check_timeout(), Duration::from_secs(1));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.config.check_timeout = timeout;
        self
    }

    /// Sets how long one `destroy` may take (default 5 s). The connection keeps its place in the
    /// pool until `destroy` returns or this passes (see
    /// [`ConnectionPoolConfig::destroy_timeout`]); lower it if a pool of 1 must recover faster
    /// from a hung `destroy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().destroy_timeout(Duration::from_secs(1)).build()?;
    /// assert_eq!(c.destroy_timeout(), Duration::from_secs(1));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn destroy_timeout(mut self, timeout: Duration) -> Self {
        self.config.destroy_timeout = timeout;
        self
    }

    /// Sets how long a waiting thread may be passed over before it is served ahead of everyone
    /// younger (default 1 ms; zero for strict first come, first served). See
    /// [`ConnectionPoolConfig::fairness_bound`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().fairness_bound(Duration::ZERO).build()?;
    /// assert_eq!(c.fairness_bound(), Duration::ZERO);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn fairness_bound(mut self, bound: Duration) -> Self {
        self.config.fairness_bound = bound;
        self
    }

    /// Sets the most creates in flight at once (default 2, at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().max_concurrent_creates(4).build()?;
    /// assert_eq!(c.max_concurrent_creates(), 4);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn max_concurrent_creates(mut self, n: usize) -> Self {
        self.config.max_concurrent_creates = n;
        self
    }

    /// Sets the first and the longest pause after failed creates (default 10 ms and 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder()
    ///     .create_backoff(Duration::from_millis(50), Duration::from_secs(10))
    ///     .build()?;
    /// assert_eq!(c.create_backoff().1, Duration::from_secs(10));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn create_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.create_backoff_initial = initial;
        self.config.create_backoff_max = max;
        self
    }

    /// Sets the most a connection's lifetime is shortened (default 20% of `max_lifetime`; zero
    /// turns jitter off). Each connection's cut is fixed at its creation and lies in `[0, jitter)`;
    /// successive connections' cuts are spread evenly across that range, so a burst of creates
    /// does not expire in a burst. Must be shorter than `max_lifetime`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().max_lifetime_jitter(Duration::ZERO).build()?;
    /// assert_eq!(c.max_lifetime_jitter(), Duration::ZERO);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn max_lifetime_jitter(mut self, jitter: Duration) -> Self {
        self.config.max_lifetime_jitter = Some(jitter);
        self
    }

    /// Reports a connection held longer than this as a suspected leak (default: off).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = nexus_pool::ConnectionPoolConfig::builder()
    ///     .leak_detection_threshold(Duration::from_secs(60))
    ///     .build()?;
    /// assert_eq!(c.leak_detection_threshold(), Some(Duration::from_secs(60)));
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn leak_detection_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config.leak_detection_threshold = threshold.into();
        self
    }

    /// Sets the largest `max_connections` that `resize` may set later (default:
    /// `max_connections`); the pool reserves queue room for that many.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().max_connections_ceiling(40).build()?;
    /// assert_eq!(c.max_connections_ceiling(), 40);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn max_connections_ceiling(mut self, ceiling: usize) -> Self {
        self.config.max_connections_ceiling = Some(ceiling);
        self
    }

    /// Sets where the maintenance loop runs (default: a thread of the pool's own).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::MaintenanceMode;
    /// let c = nexus_pool::ConnectionPoolConfig::builder().maintenance(MaintenanceMode::Spawned).build()?;
    /// assert_eq!(c.maintenance(), MaintenanceMode::Spawned);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn maintenance(mut self, mode: MaintenanceMode) -> Self {
        self.config.maintenance = mode;
        self
    }

    /// Counts and times every acquire and release, at the cost of a few atomic operations on
    /// the fast path (default: off; the slow path is always recorded).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = nexus_pool::ConnectionPoolConfig::builder().detailed_statistics(true).build()?;
    /// assert!(c.detailed_statistics());
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn detailed_statistics(mut self, on: bool) -> Self {
        self.config.detailed_statistics = on;
        self
    }

    /// Checks every field and returns the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first offending field: `max_connections` of 0 or above
    /// [`MAX_CONNECTIONS_LIMIT`], `min_connections` above `max_connections`, a zero duration,
    /// `idle_timeout` not shorter than `max_lifetime`, or an empty `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = nexus_pool::ConnectionPoolConfig::builder()
    ///     .idle_timeout(Duration::from_secs(60))
    ///     .max_lifetime(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "idle_timeout");
    /// ```
    pub fn build(self) -> Result<ConnectionPoolConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
