//! Each adapter's settings as they sit in a configuration file (features `serde` and the
//! adapter's own): the connection string and the adapter's timeouts (for PostgreSQL also the
//! reset mode and the statement cache's bound), durations written as `"5s"` or `"500ms"`,
//! unknown fields refused. `factory()` makes the adapter's factory; its `pool_builder()` then
//! attaches the adapter's health check.
//!
//! ```toml
//! [pool]               # nexus_pool::ConnectionPoolConfig
//! max_connections = 16
//! acquire_timeout = "5s"
//!
//! [database]           # nexus_pool::adapters::settings::PostgresSettings
//! url = "postgres://app@pgbouncer.internal:6432/orders"
//! check_timeout = "2s"
//! reset_mode = "transaction_pooler"   # PgBouncer with pool_mode = transaction in front
//! ```

use serde::Deserialize;

/// Settings of [`PostgresConnectionFactory`](crate::adapters::postgres::PostgresConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::postgres::PostgresReset;
/// use nexus_pool::adapters::settings::PostgresSettings;
///
/// let settings: PostgresSettings = serde_json::from_str(
///     r#"{ "url": "postgres://postgres@127.0.0.1:6432/test", "check_timeout": "2s",
///          "reset_mode": "transaction_pooler", "statement_cache_capacity": 4 }"#,
/// )?;
/// let factory = settings.factory()?;
/// assert_eq!(factory.config().get_dbname(), Some("test"));
/// assert_eq!(factory.get_reset_mode(), PostgresReset::TransactionPooler);
/// assert_eq!(factory.get_statement_cache_capacity(), 4);
///
/// // Left out: the adapter's defaults.
/// let settings: PostgresSettings =
///     serde_json::from_str(r#"{ "url": "postgres://postgres@127.0.0.1/test" }"#)?;
/// assert_eq!(settings.factory()?.get_reset_mode(), PostgresReset::Clean);
///
/// // A mode the adapter does not know is refused, naming the ones it does.
/// let err = serde_json::from_str::<PostgresSettings>(
///     r#"{ "url": "postgres://postgres@127.0.0.1/test", "reset_mode": "transaction" }"#,
/// )
/// .unwrap_err();
/// assert!(err.to_string().contains("transaction_pooler"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "postgres"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresSettings {
    /// The connection string (URL or `key=value` form).
    pub url: String,
    /// The bound on `validate`, `is_healthy` and `reset` (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub check_timeout: Option<std::time::Duration>,
    /// How a reused session is reset, written `"clean"`, `"discard_all"`, `"rollback"` or
    /// `"transaction_pooler"` (behind PgBouncer with `pool_mode = transaction`); see
    /// [`PostgresReset`](crate::adapters::postgres::PostgresReset) and
    /// [`reset_mode`](crate::adapters::postgres::PostgresConnectionFactory::reset_mode). The
    /// adapter's default ([`Clean`](crate::adapters::postgres::PostgresReset::Clean)) if left
    /// out.
    #[serde(default)]
    pub reset_mode: Option<crate::adapters::postgres::PostgresReset>,
    /// How many statements each connection's
    /// [`prepare_cached`](crate::adapters::postgres::PostgresConnection::prepare_cached) keeps
    /// prepared; past that, the least recently used one is deallocated. 0 turns caching off.
    /// The adapter's default if left out (see
    /// [`statement_cache_capacity`](crate::adapters::postgres::PostgresConnectionFactory::statement_cache_capacity)).
    /// With `reset_mode = "transaction_pooler"` `prepare_cached` is refused whatever this says.
    #[serde(default)]
    pub statement_cache_capacity: Option<usize>,
}

#[cfg(feature = "postgres")]
impl PostgresSettings {
    /// The factory these settings describe.
    ///
    /// # Errors
    ///
    /// The connection string does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::PostgresSettings;
    /// let settings: PostgresSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<crate::adapters::postgres::PostgresConnectionFactory, ::postgres::Error> {
        let mut factory = crate::adapters::postgres::PostgresConnectionFactory::new(&self.url)?;
        if let Some(timeout) = self.check_timeout {
            factory = factory.check_timeout(timeout);
        }
        if let Some(mode) = self.reset_mode {
            factory = factory.reset_mode(mode);
        }
        if let Some(capacity) = self.statement_cache_capacity {
            factory = factory.statement_cache_capacity(capacity);
        }
        Ok(factory)
    }
}

/// Settings of
/// [`TokioPostgresConnectionFactory`](crate::adapters::tokio_postgres::TokioPostgresConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::settings::TokioPostgresSettings;
/// use nexus_pool::adapters::tokio_postgres::PostgresReset;
///
/// let settings: TokioPostgresSettings = serde_json::from_str(
///     r#"{ "url": "postgres://postgres@127.0.0.1:6432/test",
///          "reset_mode": "transaction_pooler", "statement_cache_capacity": 4 }"#,
/// )?;
/// let factory = settings.factory()?;
/// assert_eq!(factory.config().get_dbname(), Some("test"));
/// assert_eq!(factory.get_reset_mode(), PostgresReset::TransactionPooler);
/// assert_eq!(factory.get_statement_cache_capacity(), 4);
///
/// // Left out: the adapter's defaults.
/// let settings: TokioPostgresSettings =
///     serde_json::from_str(r#"{ "url": "postgres://postgres@127.0.0.1/test" }"#)?;
/// assert_eq!(settings.factory()?.get_reset_mode(), PostgresReset::Clean);
///
/// // A mode the adapter does not know is refused, naming the ones it does.
/// let err = serde_json::from_str::<TokioPostgresSettings>(
///     r#"{ "url": "postgres://postgres@127.0.0.1/test", "reset_mode": "transaction" }"#,
/// )
/// .unwrap_err();
/// assert!(err.to_string().contains("transaction_pooler"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "tokio-postgres"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokioPostgresSettings {
    /// The connection string (URL or `key=value` form).
    pub url: String,
    /// How a reused session is reset, written `"clean"`, `"discard_all"`, `"rollback"` or
    /// `"transaction_pooler"` (behind PgBouncer with `pool_mode = transaction`); see
    /// [`PostgresReset`](crate::adapters::tokio_postgres::PostgresReset) and
    /// [`reset_mode`](crate::adapters::tokio_postgres::TokioPostgresConnectionFactory::reset_mode).
    /// The adapter's default ([`Clean`](crate::adapters::tokio_postgres::PostgresReset::Clean))
    /// if left out.
    #[serde(default)]
    pub reset_mode: Option<crate::adapters::tokio_postgres::PostgresReset>,
    /// How many statements each connection's
    /// [`prepare_cached`](crate::adapters::tokio_postgres::TokioPostgresConnection::prepare_cached)
    /// keeps prepared; past that, the least recently used one is deallocated. 0 turns caching
    /// off (`prepare_cached` then prepares every time). The adapter's default if left out (see
    /// [`statement_cache_capacity`](crate::adapters::tokio_postgres::TokioPostgresConnectionFactory::statement_cache_capacity)).
    /// With `reset_mode = "transaction_pooler"` `prepare_cached` is refused whatever this says.
    #[serde(default)]
    pub statement_cache_capacity: Option<usize>,
}

#[cfg(feature = "tokio-postgres")]
impl TokioPostgresSettings {
    /// The factory these settings describe.
    ///
    /// # Errors
    ///
    /// The connection string does not parse, or the factory's runtime cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::TokioPostgresSettings;
    /// let settings: TokioPostgresSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<
        crate::adapters::tokio_postgres::TokioPostgresConnectionFactory,
        crate::adapters::tokio_postgres::TokioPostgresError,
    > {
        let mut factory =
            crate::adapters::tokio_postgres::TokioPostgresConnectionFactory::new(&self.url)?;
        if let Some(mode) = self.reset_mode {
            factory = factory.reset_mode(mode);
        }
        if let Some(capacity) = self.statement_cache_capacity {
            factory = factory.statement_cache_capacity(capacity);
        }
        Ok(factory)
    }
}

/// Settings of [`RedisConnectionFactory`](crate::adapters::redis::RedisConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::settings::RedisSettings;
///
/// let settings: RedisSettings = serde_json::from_str(
///     r#"{ "url": "redis://127.0.0.1/", "connect_timeout": "1s", "io_timeout": "off" }"#,
/// )?;
/// assert_eq!(settings.io_timeout, Some(None));
/// let factory = settings.factory()?;
/// # drop(factory);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "redis"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisSettings {
    /// The connection URL.
    pub url: String,
    /// How long a connect may take (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub connect_timeout: Option<std::time::Duration>,
    /// The socket read and write timeout, or `"off"` (`Some(None)`); the adapter's default if
    /// left out.
    #[serde(default, deserialize_with = "crate::config_file::limit_opt")]
    pub io_timeout: Option<Option<std::time::Duration>>,
    /// The bound on `validate`, `is_healthy` and `reset` (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub check_timeout: Option<std::time::Duration>,
}

#[cfg(feature = "redis")]
impl RedisSettings {
    /// The factory these settings describe.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::RedisSettings;
    /// let settings: RedisSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<crate::adapters::redis::RedisConnectionFactory, ::redis::RedisError> {
        let mut factory = crate::adapters::redis::RedisConnectionFactory::new(&self.url)?;
        if let Some(timeout) = self.connect_timeout {
            factory = factory.connect_timeout(timeout);
        }
        if let Some(timeout) = self.io_timeout {
            factory = factory.io_timeout(timeout);
        }
        if let Some(timeout) = self.check_timeout {
            factory = factory.check_timeout(timeout);
        }
        Ok(factory)
    }
}

/// Settings of [`SqliteConnectionFactory`](crate::adapters::sqlite::SqliteConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::settings::SqliteSettings;
///
/// let settings: SqliteSettings =
///     serde_json::from_str(r#"{ "path": "app.db", "read_only": true, "busy_timeout": "2s" }"#)?;
/// let factory = settings.factory();
/// assert!(factory.is_read_only());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg(feature = "rusqlite")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "rusqlite"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteSettings {
    /// The database file.
    pub path: std::path::PathBuf,
    /// Open it read-only (a pool of readers beside a writer pool).
    #[serde(default)]
    pub read_only: bool,
    /// How long a statement waits for a lock (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub busy_timeout: Option<std::time::Duration>,
}

#[cfg(feature = "rusqlite")]
impl SqliteSettings {
    /// The factory these settings describe.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::SqliteSettings;
    /// let settings: SqliteSettings = serde_json::from_str(r#"{ "path": "app.db" }"#)?;
    /// assert_eq!(settings.factory().path(), std::path::Path::new("app.db"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(&self) -> crate::adapters::sqlite::SqliteConnectionFactory {
        let mut factory = crate::adapters::sqlite::SqliteConnectionFactory::new(&self.path);
        if self.read_only {
            factory = factory.read_only();
        }
        if let Some(timeout) = self.busy_timeout {
            factory = factory.busy_timeout(timeout);
        }
        factory
    }
}

/// Settings of
/// [`RedisAsyncConnectionFactory`](crate::adapters::redis_async::RedisAsyncConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::settings::RedisAsyncSettings;
///
/// let settings: RedisAsyncSettings = serde_json::from_str(
///     r#"{ "url": "redis://127.0.0.1/", "connect_timeout": "1s", "client_name": "orders" }"#,
/// )?;
/// let factory = settings.factory()?;
/// assert_eq!(factory.get_client_name(), Some("orders"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "redis-async")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "redis-async"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisAsyncSettings {
    /// The connection URL.
    pub url: String,
    /// How long a connect may take (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub connect_timeout: Option<std::time::Duration>,
    /// The name each connection gives itself (`CLIENT SETNAME`), if any.
    #[serde(default)]
    pub client_name: Option<String>,
}

#[cfg(feature = "redis-async")]
impl RedisAsyncSettings {
    /// The factory these settings describe (its runtime chosen as
    /// [`RedisAsyncConnectionFactory::new`](crate::adapters::redis_async::RedisAsyncConnectionFactory::new)
    /// says).
    ///
    /// # Errors
    ///
    /// The URL does not parse, or the factory's runtime cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::RedisAsyncSettings;
    /// let settings: RedisAsyncSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<
        crate::adapters::redis_async::RedisAsyncConnectionFactory,
        crate::adapters::redis_async::RedisAsyncError,
    > {
        let mut factory =
            crate::adapters::redis_async::RedisAsyncConnectionFactory::new(&self.url)?;
        if let Some(timeout) = self.connect_timeout {
            factory = factory.connect_timeout(timeout);
        }
        if let Some(name) = &self.client_name {
            factory = factory.client_name(name.clone());
        }
        Ok(factory)
    }
}

/// Settings of [`DieselConnectionFactory`](crate::adapters::diesel::DieselConnectionFactory),
/// for any of its backends: the backend is the connection type you ask
/// [`factory`](Self::factory) for.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "diesel-sqlite")] {
/// use std::time::Duration;
/// use diesel::SqliteConnection;
/// use nexus_pool::adapters::settings::DieselSettings;
///
/// let settings: DieselSettings =
///     serde_json::from_str(r#"{ "url": "app.db", "busy_timeout": "250ms" }"#)?;
/// assert_eq!(settings.busy_timeout, Some(Duration::from_millis(250)));
/// let factory = settings.factory::<SqliteConnection>();
/// assert_eq!(factory.url(), "app.db");
/// # }
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg(any(
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "serde",
        any(
            feature = "diesel-postgres",
            feature = "diesel-mysql",
            feature = "diesel-sqlite"
        )
    )))
)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DieselSettings {
    /// The database URL, as the backend's `establish` takes it (an SQLite file path for SQLite).
    pub url: String,
    /// SQLite only: how long a statement waits for a lock (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub busy_timeout: Option<std::time::Duration>,
}

#[cfg(any(
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite"
))]
impl DieselSettings {
    /// The factory these settings describe, for connections of type `C`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-postgres")] {
    /// # use nexus_pool::adapters::settings::DieselSettings;
    /// let settings: DieselSettings =
    ///     serde_json::from_str(r#"{ "url": "postgres://app@db/orders?connect_timeout=3" }"#)?;
    /// let factory = settings.factory::<diesel::PgConnection>();
    /// assert!(factory.url().contains("connect_timeout=3&tcp_user_timeout=30000"));
    /// # }
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory<C: crate::adapters::diesel::DieselConnection>(
        &self,
    ) -> crate::adapters::diesel::DieselConnectionFactory<C> {
        let factory = crate::adapters::diesel::DieselConnectionFactory::new(&self.url);
        match self.busy_timeout {
            Some(timeout) => factory.busy_timeout(timeout),
            None => factory,
        }
    }
}

/// Settings of [`MysqlConnectionFactory`](crate::adapters::mysql::MysqlConnectionFactory).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::adapters::settings::MysqlSettings;
///
/// let settings: MysqlSettings = serde_json::from_str(
///     r#"{ "url": "mysql://root@127.0.0.1:3306/test", "io_timeout": "30s" }"#,
/// )?;
/// let factory = settings.factory()?;
/// assert_eq!(factory.opts().get_read_timeout(), Some(&Duration::from_secs(30)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "mysql"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MysqlSettings {
    /// The connection URL (`mysql://user:password@host:3306/database?...`).
    pub url: String,
    /// The socket read and write timeout of every connection, or `"off"` (`Some(None)`); what
    /// the URL says if left out.
    #[serde(default, deserialize_with = "crate::config_file::limit_opt")]
    pub io_timeout: Option<Option<std::time::Duration>>,
}

#[cfg(feature = "mysql")]
impl MysqlSettings {
    /// The factory these settings describe.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::MysqlSettings;
    /// let settings: MysqlSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<crate::adapters::mysql::MysqlConnectionFactory, ::mysql::Error> {
        let factory = crate::adapters::mysql::MysqlConnectionFactory::new(&self.url)?;
        Ok(match self.io_timeout {
            Some(timeout) => factory.io_timeout(timeout),
            None => factory,
        })
    }
}

/// Settings of
/// [`MysqlAsyncConnectionFactory`](crate::adapters::mysql_async::MysqlAsyncConnectionFactory).
///
/// # Examples
///
/// ```
/// use nexus_pool::adapters::settings::MysqlAsyncSettings;
///
/// let settings: MysqlAsyncSettings = serde_json::from_str(
///     r#"{ "url": "mysql://root@127.0.0.1:3306/test", "connect_timeout": "2s" }"#,
/// )?;
/// let factory = settings.factory()?;
/// assert_eq!(factory.opts().db_name(), Some("test"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "mysql-async")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "serde", feature = "mysql-async"))))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MysqlAsyncSettings {
    /// The connection URL (`mysql://user:password@host:3306/database?...`).
    pub url: String,
    /// How long a connect may take (the adapter's default if left out).
    #[serde(default, deserialize_with = "crate::config_file::duration_opt")]
    pub connect_timeout: Option<std::time::Duration>,
}

#[cfg(feature = "mysql-async")]
impl MysqlAsyncSettings {
    /// The factory these settings describe (its runtime chosen as
    /// [`MysqlAsyncConnectionFactory::new`](crate::adapters::mysql_async::MysqlAsyncConnectionFactory::new)
    /// says).
    ///
    /// # Errors
    ///
    /// The URL does not parse, or the factory's runtime cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::settings::MysqlAsyncSettings;
    /// let settings: MysqlAsyncSettings = serde_json::from_str(r#"{ "url": "not a url" }"#)?;
    /// assert!(settings.factory().is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn factory(
        &self,
    ) -> Result<
        crate::adapters::mysql_async::MysqlAsyncConnectionFactory,
        crate::adapters::mysql_async::MysqlAsyncError,
    > {
        let factory = crate::adapters::mysql_async::MysqlAsyncConnectionFactory::new(&self.url)?;
        Ok(match self.connect_timeout {
            Some(timeout) => factory.connect_timeout(timeout),
            None => factory,
        })
    }
}
