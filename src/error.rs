//! Errors: what an acquire can fail with, and why a configuration was refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why an acquire did not return a connection.
///
/// `E` is the factory's error type ([`ConnectionFactory::Error`](crate::ConnectionFactory::Error)).
///
/// # Examples
///
/// ```
/// use nexus_pool::PoolError;
///
/// let err: PoolError<std::io::Error> = PoolError::Closed;
/// assert_eq!(err.to_string(), "the pool is closed");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// No connection became available within `acquire_timeout`.
    #[error("{0}")]
    Timeout(TimeoutError<E>),
    /// The pool was closed before or while waiting.
    #[error("the pool is closed")]
    Closed,
    /// The pool could not open the connections it needed to start
    /// ([`ConnectionPoolBuilder::build_connected`](crate::ConnectionPoolBuilder::build_connected)).
    #[error("could not create a connection: {0}")]
    Create(CreateError<E>),
    /// [`try_acquire`](crate::ConnectionPool::try_acquire) found no idle connection and no room to
    /// create one without waiting.
    #[error("no connection is available without waiting")]
    Exhausted,
}

impl<E> PoolError<E> {
    /// The last error the factory returned while this caller waited, if creates were failing.
    ///
    /// This is what tells "the pool is busy" apart from "the database cannot be reached".
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::PoolError;
    ///
    /// let err: PoolError<std::io::Error> = PoolError::Exhausted;
    /// assert!(err.create_error().is_none());
    /// ```
    pub fn create_error(&self) -> Option<&E> {
        match self {
            PoolError::Timeout(t) => match &t.last_create_error {
                Some(CreateError::Failed(e)) => Some(e),
                _ => None,
            },
            PoolError::Create(CreateError::Failed(e)) => Some(e),
            PoolError::Create(_) | PoolError::Closed | PoolError::Exhausted => None,
        }
    }
}

/// The details of an acquire that timed out.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use std::time::Duration;
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};
///
/// struct Numbers;
/// impl ConnectionFactory for Numbers {
///     type Connection = u32;
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<u32, std::io::Error> { Ok(7) }
/// }
///
/// let config = ConnectionPoolConfig::builder()
///     .max_connections(1)
///     .acquire_timeout(Duration::from_millis(10))
///     .build()?;
/// let pool = ConnectionPool::new(Numbers, config);
/// let _held = pool.acquire_blocking()?;
/// match pool.acquire_blocking() {
///     Err(PoolError::Timeout(t)) => {
///         assert_eq!(t.total, 1);
///         assert!(t.last_create_error.is_none());
///     }
///     other => panic!("expected a timeout, got {other:?}"),
/// }
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct TimeoutError<E> {
    /// How long the caller waited before giving up.
    pub waited: Duration,
    /// Connections open (idle, lent out, or being created) when the caller gave up.
    pub total: usize,
    /// Idle connections when the caller gave up.
    pub idle: usize,
    /// Other callers waiting when the caller gave up.
    pub waiting: usize,
    /// The pool's `max_connections`.
    pub max: usize,
    /// Why the last create failed, if creates were failing while this caller waited.
    pub last_create_error: Option<CreateError<E>>,
}

/// Why the factory could not make a connection.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::CreateError;
///
/// let e: CreateError<std::io::Error> = CreateError::TimedOut(Duration::from_secs(10));
/// assert_eq!(e.to_string(), "create timed out after 10s");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError<E> {
    /// `create` returned this error.
    #[error("{0}")]
    Failed(Arc<E>),
    /// `create` ran longer than `create_timeout` and was abandoned.
    #[error("create timed out after {0:?}")]
    TimedOut(Duration),
    /// `create` panicked (the panic was caught).
    #[error("create panicked")]
    Panicked,
}

impl<E> Clone for CreateError<E> {
    fn clone(&self) -> Self {
        match self {
            CreateError::Failed(e) => CreateError::Failed(e.clone()),
            CreateError::TimedOut(d) => CreateError::TimedOut(*d),
            CreateError::Panicked => CreateError::Panicked,
        }
    }
}

impl<E: fmt::Display> fmt::Display for TimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for a connection ({} of {} open, {} idle, {} waiting)",
            self.waited, self.total, self.max, self.idle, self.waiting
        )?;
        match &self.last_create_error {
            Some(CreateError::Failed(err)) => {
                write!(f, "; the last attempt to connect failed: {err}")?
            }
            Some(other) => write!(f, "; the last attempt to connect failed: {other}")?,
            None => {}
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TimeoutError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.last_create_error {
            Some(CreateError::Failed(e)) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A configuration value was refused. The message names the field and says why.
///
/// # Examples
///
/// ```
/// use nexus_pool::ConnectionPoolConfig;
///
/// let err = ConnectionPoolConfig::builder().max_connections(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_connections");
/// assert_eq!(err.to_string(), "invalid pool configuration: `max_connections` must be at least 1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool configuration: `{field}` {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending field, as the builder method is named.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::ConnectionPoolConfig;
    ///
    /// let err = ConnectionPoolConfig::builder()
    ///     .acquire_timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "acquire_timeout");
    /// ```
    pub fn field(&self) -> &'static str {
        self.field
    }
}
