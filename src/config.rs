//! `ConnectionPoolConfig`: the pool's settings, their defaults, and the validation that refuses bad
//! values with an error naming the field.

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
    /// Validate every connection on every checkout.
    Always,
    /// Validate a connection unless it was last used less than this long ago (the default, 500 ms,
    /// follows HikariCP: a connection that just worked almost surely still works).
    IdleFor(Duration),
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
