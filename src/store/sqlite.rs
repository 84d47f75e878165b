//! `PooledSqliteBackend`: store items as JSON rows in an SQLite file, through a pool of
//! `rusqlite` connections.

use std::fmt;

use ::rusqlite::OptionalExtension;

use super::{StoreBackend, StoreError, StoreItem, StoreKey, check_table_name, decode, encode};
use crate::ConnectionPool;
use crate::adapters::sqlite::SqliteConnectionFactory;

/// A [`StoreBackend`] on SQLite: one table `(id TEXT PRIMARY KEY, data TEXT, updated_at TEXT)`,
/// created if missing, every operation run through the pool.
///
/// SQLite writes one transaction at a time, so give the main pool `max_connections(1)`: writers
/// then queue in the pool, fairly and within `acquire_timeout`, instead of on SQLite's lock. For
/// concurrent reads add a read pool of read-only connections
/// ([`SqliteConnectionFactory::read_only`]) with [`with_read_pool`](Self::with_read_pool): WAL
/// lets them read beside the writer, and a write can never reach them.
///
/// The calls into SQLite block the task that runs them; they are short (no network), but on an
/// async executor prefer few, small operations.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use nexus_pool::ConnectionPoolConfig;
/// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
/// use nexus_pool::store::{NexusStore, PooledSqliteBackend};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Note { body: String }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("nexus-store-doc-{}.db", std::process::id()));
/// let writer = SqliteConnectionFactory::new(&path)
///     .pool_builder()
///     .config(ConnectionPoolConfig::builder().max_connections(1).build()?)
///     .build()?;
/// let readers = SqliteConnectionFactory::new(&path).read_only().pool_builder().build()?;
///
/// futures_lite::future::block_on(async {
///     let backend = PooledSqliteBackend::new(writer, "notes").await?.with_read_pool(readers);
///     let notes: NexusStore<Note, String> = NexusStore::new(backend);
///     notes.save(&"n1".to_owned(), &Note { body: "hello".into() }).await?;
///     assert_eq!(notes.get(&"n1".to_owned()).await?, Some(Note { body: "hello".into() }));
///     Ok::<(), nexus_pool::store::StoreError>(())
/// })?;
/// # for suffix in ["", "-wal", "-shm"] {
/// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
/// # }
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "rusqlite")))]
pub struct PooledSqliteBackend {
    write: ConnectionPool<SqliteConnectionFactory>,
    read: Option<ConnectionPool<SqliteConnectionFactory>>,
    table: String,
    sql: Sql,
}

/// The statements, with the (checked, quoted) table name in place.
struct Sql {
    get: String,
    get_all: String,
    upsert: String,
    delete: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        Sql {
            get: format!("SELECT data FROM {t} WHERE id = ?1"),
            get_all: format!("SELECT id, data FROM {t} ORDER BY id"),
            upsert: format!(
                "INSERT INTO {t} (id, data) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE \
                 SET data = excluded.data, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
        }
    }
}

impl fmt::Debug for PooledSqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledSqliteBackend")
            .field("table", &self.table)
            .field("write", &self.write)
            .field("read", &self.read)
            .finish()
    }
}

impl PooledSqliteBackend {
    /// A backend storing into `table` through `pool`; creates the table if it is missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::TableName`] unless `table` is a plain identifier (ASCII letters, digits and
    /// `_`, not starting with a digit); otherwise a pool or database error from creating the
    /// table (for instance when `pool` is read-only).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    /// use nexus_pool::store::{PooledSqliteBackend, StoreError};
    ///
    /// let path = std::env::temp_dir().join(format!("nexus-store-new-{}.db", std::process::id()));
    /// let pool = SqliteConnectionFactory::new(&path).pool_builder().build()?;
    /// futures_lite::future::block_on(async {
    ///     let bad = PooledSqliteBackend::new(pool.clone(), "no spaces").await;
    ///     assert!(matches!(bad, Err(StoreError::TableName(_))));
    ///     let backend = PooledSqliteBackend::new(pool, "sessions").await?;
    ///     assert_eq!(backend.table(), "sessions");
    ///     Ok::<(), StoreError>(())
    /// })?;
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn new(
        pool: ConnectionPool<SqliteConnectionFactory>,
        table: &str,
    ) -> Result<Self, StoreError> {
        check_table_name(table)?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (id TEXT PRIMARY KEY NOT NULL, \
             data TEXT NOT NULL, \
             updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        );
        pool.with_connection(async |conn| {
            conn.execute_batch(&create).map_err(StoreError::database)
        })
        .await?;
        Ok(PooledSqliteBackend {
            write: pool,
            read: None,
            table: table.to_owned(),
            sql: Sql::new(table),
        })
    }

    /// Sends reads (`get`, `get_all`) to `pool`, typically read-only connections to the same
    /// file; writes keep going to the main pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    /// use nexus_pool::store::PooledSqliteBackend;
    ///
    /// let path = std::env::temp_dir().join(format!("nexus-store-read-{}.db", std::process::id()));
    /// let writer = SqliteConnectionFactory::new(&path).pool_builder().build()?;
    /// let readers = SqliteConnectionFactory::new(&path).read_only().pool_builder().build()?;
    /// let backend = futures_lite::future::block_on(PooledSqliteBackend::new(writer, "kv"))?
    ///     .with_read_pool(readers);
    /// assert!(backend.read_pool().is_some());
    /// # drop(backend);
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_read_pool(mut self, pool: ConnectionPool<SqliteConnectionFactory>) -> Self {
        self.read = Some(pool);
        self
    }

    /// The table items are stored in.
    ///
    /// # Examples
    ///
    /// See [`new`](Self::new).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool writes (and, without a read pool, reads) go to.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    /// # use nexus_pool::store::PooledSqliteBackend;
    /// # let path = std::env::temp_dir().join(format!("nexus-store-wp-{}.db", std::process::id()));
    /// let pool = SqliteConnectionFactory::new(&path).pool_builder().build()?;
    /// let backend = futures_lite::future::block_on(PooledSqliteBackend::new(pool, "kv"))?;
    /// println!("{:?}", backend.write_pool().current_metrics());
    /// # drop(backend);
    /// # for suffix in ["", "-wal", "-shm"] {
    /// #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_pool(&self) -> &ConnectionPool<SqliteConnectionFactory> {
        &self.write
    }

    /// The separate read pool, if one was set.
    ///
    /// # Examples
    ///
    /// See [`with_read_pool`](Self::with_read_pool).
    pub fn read_pool(&self) -> Option<&ConnectionPool<SqliteConnectionFactory>> {
        self.read.as_ref()
    }

    fn reader(&self) -> &ConnectionPool<SqliteConnectionFactory> {
        self.read.as_ref().unwrap_or(&self.write)
    }
}

impl<T: StoreItem, Id: StoreKey> StoreBackend<T, Id> for PooledSqliteBackend {
    async fn get(&self, id: &Id) -> Result<Option<T>, StoreError> {
        let key = id.to_key();
        let json: Option<String> = self
            .reader()
            .with_connection(async |conn| {
                conn.prepare_cached(&self.sql.get)
                    .and_then(|mut stmt| stmt.query_row([&key], |r| r.get(0)).optional())
                    .map_err(StoreError::database)
            })
            .await?;
        json.map(|j| decode(&j)).transpose()
    }

    async fn get_all(&self) -> Result<Vec<(Id, T)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .reader()
            .with_connection(async |conn| {
                conn.prepare_cached(&self.sql.get_all)
                    .and_then(|mut stmt| {
                        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect()
                    })
                    .map_err(StoreError::database)
            })
            .await?;
        rows.iter()
            .map(|(key, json)| Ok((Id::from_key(key)?, decode(json)?)))
            .collect()
    }

    async fn save(&self, id: &Id, item: &T) -> Result<(), StoreError> {
        let (key, json) = (id.to_key(), encode(item)?);
        self.write
            .with_connection(async |conn| {
                conn.prepare_cached(&self.sql.upsert)
                    .and_then(|mut stmt| stmt.execute([&key, &json]))
                    .map(drop)
                    .map_err(StoreError::database)
            })
            .await
    }

    async fn save_many(&self, items: &[(Id, T)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let encoded = items
            .iter()
            .map(|(id, item)| Ok((id.to_key(), encode(item)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write
            .with_connection(async |conn| {
                let mut run = || {
                    let tx = conn.transaction()?;
                    {
                        let mut stmt = tx.prepare_cached(&self.sql.upsert)?;
                        for (key, json) in &encoded {
                            stmt.execute([key, json])?;
                        }
                    }
                    tx.commit()
                };
                run().map_err(StoreError::database)
            })
            .await
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        let key = id.to_key();
        self.write
            .with_connection(async |conn| {
                conn.prepare_cached(&self.sql.delete)
                    .and_then(|mut stmt| stmt.execute([&key]))
                    .map(|n| n > 0)
                    .map_err(StoreError::database)
            })
            .await
    }

    async fn delete_many(&self, ids: &[Id]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = ids.iter().map(StoreKey::to_key).collect();
        self.write
            .with_connection(async |conn| {
                let mut run = || {
                    let tx = conn.transaction()?;
                    let mut removed = 0;
                    {
                        let mut stmt = tx.prepare_cached(&self.sql.delete)?;
                        for key in &keys {
                            removed += stmt.execute([key])? as u64;
                        }
                    }
                    tx.commit()?;
                    Ok::<_, ::rusqlite::Error>(removed)
                };
                run().map_err(StoreError::database)
            })
            .await
    }
}
