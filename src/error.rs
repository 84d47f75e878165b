//! Errors: what an acquire can fail with, and why a configuration was refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why an acquire did not return a connection.
///
/// `E` is the factory's error type ([`ConnectionFactory::Error`](crate::ConnectionFactory::Error)).
///
/// Every error type of this crate follows one rule: `Display` is one line of the pool's own
/// context, and the cause (the factory's error, and the driver's error behind it) is returned
/// from [`source()`](std::error::Error::source), not printed again. Print the whole chain with
/// `{:#}` of `anyhow`/`eyre`, or walk `source()` yourself.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use std::sync::Arc;
/// use nexus_pool::{CreateError, PoolError};
///
/// let err: PoolError<std::io::Error> = PoolError::Closed;
/// assert_eq!(err.to_string(), "the pool is closed");
///
/// // The factory's error is the source, and is not repeated in the pool's text.
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err: PoolError<std::io::Error> = PoolError::Create(CreateError::Failed(Arc::new(refused)));
/// assert_eq!(err.to_string(), "could not create a connection");
/// let cause = err.source().unwrap().downcast_ref::<std::io::Error>().unwrap();
/// assert_eq!(cause.kind(), std::io::ErrorKind::ConnectionRefused);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// No connection became available within `acquire_timeout`. The source is the last create
    /// failure, if creates were failing while the caller waited.
    #[error(transparent)]
    Timeout(TimeoutError<E>),
    /// The pool was closed before or while waiting.
    #[error("the pool is closed")]
    Closed,
    /// The pool could not open the connections it needed to start
    /// ([`ConnectionPoolBuilder::build_connected`](crate::ConnectionPoolBuilder::build_connected)).
    /// The source is the factory's error, when it returned one.
    #[error(transparent)]
    Create(CreateError<E>),
    /// [`try_acquire`](crate::ConnectionPool::try_acquire) found no idle connection ready to lend
    /// (it never creates, validates or resets one), or other callers were already waiting.
    #[error("no connection is available without waiting")]
    Exhausted,
    /// [`ConnectionPoolBuilder::build_connected`](crate::ConnectionPoolBuilder::build_connected)
    /// was given a setting it refuses; the error names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
            PoolError::Create(_)
            | PoolError::Closed
            | PoolError::Exhausted
            | PoolError::Config(_) => None,
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
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};
/// # use nexus_pool::doc_support::Numbers;
///
/// let config = ConnectionPoolConfig::builder()
///     .max_connections(1)
///     .acquire_timeout(Duration::from_millis(10))
///     .build()?;
/// let pool = ConnectionPool::new(Numbers(7), config);
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
/// use std::error::Error as _;
/// use std::sync::Arc;
/// use std::time::Duration;
/// use nexus_pool::CreateError;
///
/// let e: CreateError<std::io::Error> = CreateError::TimedOut(Duration::from_secs(10));
/// assert_eq!(e.to_string(), "create timed out after 10s");
///
/// // The factory's own error is the source, as its own type.
/// let e: CreateError<std::io::Error> =
///     CreateError::Failed(Arc::new(std::io::ErrorKind::ConnectionRefused.into()));
/// assert_eq!(e.to_string(), "could not create a connection");
/// assert!(e.source().unwrap().is::<std::io::Error>());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError<E> {
    /// `create` returned this error (the [source](std::error::Error::source)).
    Failed(Arc<E>),
    /// `create` ran longer than `create_timeout` and was abandoned.
    TimedOut(Duration),
    /// `create` panicked (the panic was caught).
    Panicked,
}

impl<E> fmt::Display for CreateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Failed(_) => f.write_str("could not create a connection"),
            CreateError::TimedOut(limit) => write!(f, "create timed out after {limit:?}"),
            CreateError::Panicked => f.write_str("create panicked"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CreateError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // `E` itself, not the `Arc`, so that `downcast_ref::<E>()` on the chain finds it.
            CreateError::Failed(e) => Some(e.as_ref()),
            CreateError::TimedOut(_) | CreateError::Panicked => None,
        }
    }
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

impl<E> fmt::Display for TimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for a connection ({} of {} open, {} idle, {} waiting)",
            self.waited, self.total, self.max, self.idle, self.waiting
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TimeoutError<E> {
    /// The last create failure: a [`CreateError`], whose own source is the factory's error when
    /// the factory returned one (a timed-out or panicked create is reachable too).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_create_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
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

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::io;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{CreateError, PoolError, TimeoutError};

    /// The factory's error: a driver error with a cause of its own, as tokio-postgres has.
    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server")]
    struct Driver(#[source] io::Error);

    fn failed() -> CreateError<Driver> {
        CreateError::Failed(Arc::new(Driver(io::ErrorKind::ConnectionRefused.into())))
    }

    fn timeout(last: Option<CreateError<Driver>>) -> PoolError<Driver> {
        PoolError::Timeout(TimeoutError {
            waited: Duration::from_millis(50),
            total: 2,
            idle: 0,
            waiting: 1,
            max: 2,
            last_create_error: last,
        })
    }

    /// Each error's text, then its sources', outermost first.
    fn chain(err: &(dyn Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(err), |&e| e.source())
            .map(ToString::to_string)
            .collect()
    }

    /// The `io::Error` at the end of the chain, found by walking it, as a user would.
    fn driver_cause(err: &(dyn Error + 'static)) -> Option<io::ErrorKind> {
        std::iter::successors(Some(err), |&e| e.source())
            .find_map(|e| e.downcast_ref::<io::Error>())
            .map(io::Error::kind)
    }

    #[test]
    fn every_variant_with_a_cause_returns_it_from_source() {
        // Timeout while creates failed: the create error, then the factory's error, then its
        // cause.
        let err = timeout(Some(failed()));
        let create = err
            .source()
            .expect("a timeout with a create failure has a source");
        assert!(create.is::<CreateError<Driver>>(), "{create:?}");
        assert!(create.source().unwrap().is::<Driver>());
        assert_eq!(driver_cause(&err), Some(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            chain(&err),
            [
                "timed out after 50ms waiting for a connection (2 of 2 open, 0 idle, 1 waiting)",
                "could not create a connection",
                "error connecting to server",
                &io::Error::from(io::ErrorKind::ConnectionRefused).to_string(),
            ]
        );

        // Timeout while creates timed out or panicked: that is the source.
        for (last, text) in [
            (
                CreateError::TimedOut(Duration::from_secs(10)),
                "create timed out after 10s",
            ),
            (CreateError::Panicked, "create panicked"),
        ] {
            let err = timeout(Some(last));
            assert_eq!(err.source().map(|e| e.to_string()).as_deref(), Some(text));
            assert!(err.source().unwrap().source().is_none());
        }

        // A failed start (`build_connected`): the factory's error itself.
        let err: PoolError<Driver> = PoolError::Create(failed());
        assert!(err.source().unwrap().is::<Driver>());
        assert_eq!(driver_cause(&err), Some(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            chain(&err)[..2],
            [
                "could not create a connection",
                "error connecting to server"
            ]
        );

        // The variants without a cause.
        let none: [PoolError<Driver>; 5] = [
            timeout(None),
            PoolError::Closed,
            PoolError::Exhausted,
            PoolError::Create(CreateError::TimedOut(Duration::from_secs(1))),
            PoolError::Create(CreateError::Panicked),
        ];
        for err in none {
            assert!(err.source().is_none(), "{err:?}");
        }
    }

    #[test]
    fn display_is_the_pools_context_in_one_line_without_the_cause() {
        for err in [
            timeout(Some(failed())),
            timeout(None),
            PoolError::Create(failed()),
            PoolError::Closed,
            PoolError::Exhausted,
        ] {
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text:?}");
            assert!(!text.ends_with('.'), "{text:?}");
            assert!(
                !text.contains("error connecting"),
                "{text:?} repeats its cause"
            );
            assert!(text.starts_with(char::is_lowercase), "{text:?}");
        }
    }
}
