//! `PooledPostgresBackend`: store items as JSONB rows in PostgreSQL, through a pool of
//! `tokio-postgres` connections.

use std::fmt;

use ::tokio_postgres::NoTls;
use ::tokio_postgres::error::SqlState;
use ::tokio_postgres::types::Type;

use super::{StoreBackend, StoreError, StoreItem, StoreKey, check_table_name, decode, encode};
use crate::adapters::tokio_postgres::{
    TokioPostgresConnection, TokioPostgresConnectionFactory, connection_lost,
};
use crate::{ConnectionFactory, ConnectionPool, PooledConnection};

/// A [`StoreBackend`] on PostgreSQL: one table `(id TEXT PRIMARY KEY, data JSONB, updated_at
/// TIMESTAMPTZ)`, created if missing, every operation run through the pool.
///
/// Reads (`get`, `get_all`) go to the read pool when one is set
/// ([`with_read_pool`](Self::with_read_pool), e.g. a replica), writes always to the main pool.
/// `save_many` and `delete_many` are one transaction each. A driver error that means the session
/// is gone marks the connection broken, so the pool replaces it.
///
/// Every statement is sent as the unnamed statement with its parameter types given
/// (`query_typed`, `execute_typed`: parse, bind and execute in one round trip), never as a named
/// prepared statement: so the backend works behind PgBouncer in transaction pooling mode too,
/// where a named statement does not outlive the transaction it was prepared in (build the
/// pools' factories with [`PostgresReset::TransactionPooler`] there). The statements are small;
/// parsing them each time costs the server less than the second round trip `query(&str, ..)`
/// would.
///
/// [`PostgresReset::TransactionPooler`]: crate::adapters::tokio_postgres::PostgresReset::TransactionPooler
///
/// # Examples
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use nexus_pool::ConnectionPoolConfig;
/// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
/// use nexus_pool::store::{NexusStore, PooledPostgresBackend};
///
/// #[derive(Serialize, Deserialize)]
/// struct Order { total_cents: u64 }
///
/// # futures_lite::future::block_on(async {
/// let primary = TokioPostgresConnectionFactory::new("postgres://postgres@primary/shop")?
///     .pool_builder()
///     .config(ConnectionPoolConfig::builder().max_connections(8).build()?)
///     .build()?;
/// let replica = TokioPostgresConnectionFactory::new("postgres://postgres@replica/shop")?
///     .pool_builder()
///     .build()?;
/// let backend = PooledPostgresBackend::new(primary, "orders").await?.with_read_pool(replica);
/// let orders: NexusStore<Order, u64> = NexusStore::new(backend);
/// orders.save(&1, &Order { total_cents: 1250 }).await?; // to the primary
/// let order = orders.get(&1).await?; // from the replica
/// # drop(order);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub struct PooledPostgresBackend<Tls = NoTls>
where
    TokioPostgresConnectionFactory<Tls>: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    write: ConnectionPool<TokioPostgresConnectionFactory<Tls>>,
    read: Option<ConnectionPool<TokioPostgresConnectionFactory<Tls>>>,
    table: String,
    sql: Sql,
}

/// The statements, with the (checked, quoted) table name in place.
struct Sql {
    get: String,
    get_all: String,
    upsert: String,
    delete: String,
    delete_many: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        Sql {
            get: format!("SELECT data::text FROM {t} WHERE id = $1"),
            get_all: format!("SELECT id, data::text FROM {t} ORDER BY id COLLATE \"C\""),
            upsert: format!(
                "INSERT INTO {t} (id, data) VALUES ($1, $2::text::jsonb) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            delete_many: format!("DELETE FROM {t} WHERE id = ANY($1)"),
        }
    }
}

impl<Tls> fmt::Debug for PooledPostgresBackend<Tls>
where
    TokioPostgresConnectionFactory<Tls>: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledPostgresBackend")
            .field("table", &self.table)
            .field("write", &self.write)
            .field("read", &self.read)
            .finish()
    }
}

type Guard<'a, Tls> = PooledConnection<'a, TokioPostgresConnectionFactory<Tls>>;

/// Turns a driver error into a store error, marking the connection broken if the session is
/// gone.
fn failed<Tls>(conn: &mut Guard<'_, Tls>, err: ::tokio_postgres::Error) -> StoreError
where
    TokioPostgresConnectionFactory<Tls>: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    if connection_lost(&err) || conn.is_closed() {
        conn.mark_broken();
    }
    StoreError::database(err)
}

impl<Tls> PooledPostgresBackend<Tls>
where
    TokioPostgresConnectionFactory<Tls>: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    /// A backend storing into `table` through `pool`; creates the table if it is missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::TableName`] unless `table` is a plain identifier (ASCII letters, digits and
    /// `_`, not starting with a digit; it is used quoted, so case is kept); otherwise a pool or
    /// database error from creating the table.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// use nexus_pool::store::PooledPostgresBackend;
    ///
    /// # futures_lite::future::block_on(async {
    /// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
    ///     .pool_builder()
    ///     .build()?;
    /// let backend = PooledPostgresBackend::new(pool, "sessions").await?;
    /// assert_eq!(backend.table(), "sessions");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn new(
        pool: ConnectionPool<TokioPostgresConnectionFactory<Tls>>,
        table: &str,
    ) -> Result<Self, StoreError> {
        check_table_name(table)?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (id TEXT PRIMARY KEY, data JSONB NOT NULL, \
             updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        );
        pool.with_connection(async |conn| match conn.batch_execute(&create).await {
            Ok(()) => Ok(()),
            // Two processes creating the same table at once: the other one won, which is fine.
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::DUPLICATE_TABLE) =>
            {
                Ok(())
            }
            Err(e) => Err(failed(conn, e)),
        })
        .await?;
        Ok(PooledPostgresBackend {
            write: pool,
            read: None,
            table: table.to_owned(),
            sql: Sql::new(table),
        })
    }

    /// Sends reads (`get`, `get_all`) to `pool`, a replica for instance; writes keep going to
    /// the main pool. The table must exist there (a replica gets it from its primary).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # use nexus_pool::store::PooledPostgresBackend;
    /// # futures_lite::future::block_on(async {
    /// # let primary = TokioPostgresConnectionFactory::new("postgres://postgres@primary/test")?.pool_builder().build()?;
    /// let replica = TokioPostgresConnectionFactory::new("postgres://postgres@replica/test")?
    ///     .pool_builder()
    ///     .build()?;
    /// let backend = PooledPostgresBackend::new(primary, "sessions").await?.with_read_pool(replica);
    /// assert!(backend.read_pool().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn with_read_pool(
        mut self,
        pool: ConnectionPool<TokioPostgresConnectionFactory<Tls>>,
    ) -> Self {
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
    /// ```no_run
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # use nexus_pool::store::PooledPostgresBackend;
    /// # futures_lite::future::block_on(async {
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let backend = PooledPostgresBackend::new(pool, "sessions").await?;
    /// println!("{:?}", backend.write_pool().current_metrics());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn write_pool(&self) -> &ConnectionPool<TokioPostgresConnectionFactory<Tls>> {
        &self.write
    }

    /// The separate read pool, if one was set.
    ///
    /// # Examples
    ///
    /// See [`with_read_pool`](Self::with_read_pool).
    pub fn read_pool(&self) -> Option<&ConnectionPool<TokioPostgresConnectionFactory<Tls>>> {
        self.read.as_ref()
    }

    fn reader(&self) -> &ConnectionPool<TokioPostgresConnectionFactory<Tls>> {
        self.read.as_ref().unwrap_or(&self.write)
    }
}

impl<T, Id, Tls> StoreBackend<T, Id> for PooledPostgresBackend<Tls>
where
    T: StoreItem,
    Id: StoreKey,
    Tls: Send + Sync + 'static,
    TokioPostgresConnectionFactory<Tls>: ConnectionFactory<Connection = TokioPostgresConnection>,
{
    async fn get(&self, id: &Id) -> Result<Option<T>, StoreError> {
        let key = id.to_key();
        let json: Option<String> = self
            .reader()
            .with_connection(async |conn| {
                match conn
                    .query_typed_opt(&self.sql.get, &[(&key, Type::TEXT)])
                    .await
                {
                    Ok(row) => Ok(row.map(|r| r.get(0))),
                    Err(e) => Err(failed(conn, e)),
                }
            })
            .await?;
        json.map(|j| decode(&j)).transpose()
    }

    async fn get_all(&self) -> Result<Vec<(Id, T)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .reader()
            .with_connection(
                async |conn| match conn.query_typed(&self.sql.get_all, &[]).await {
                    Ok(rows) => Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
                    Err(e) => Err(failed(conn, e)),
                },
            )
            .await?;
        rows.iter()
            .map(|(key, json)| Ok((Id::from_key(key)?, decode(json)?)))
            .collect()
    }

    async fn save(&self, id: &Id, item: &T) -> Result<(), StoreError> {
        let (key, json) = (id.to_key(), encode(item)?);
        self.write
            .with_connection(async |conn| {
                match conn
                    .execute_typed(&self.sql.upsert, &[(&key, Type::TEXT), (&json, Type::TEXT)])
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(failed(conn, e)),
                }
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
                let result = async {
                    let tx = conn.transaction().await?;
                    for (key, json) in &encoded {
                        tx.execute_typed(
                            &self.sql.upsert,
                            &[(key, Type::TEXT), (json, Type::TEXT)],
                        )
                        .await?;
                    }
                    tx.commit().await
                }
                .await;
                result.map_err(|e| failed(conn, e))
            })
            .await
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        let key = id.to_key();
        self.write
            .with_connection(async |conn| {
                match conn
                    .execute_typed(&self.sql.delete, &[(&key, Type::TEXT)])
                    .await
                {
                    Ok(n) => Ok(n > 0),
                    Err(e) => Err(failed(conn, e)),
                }
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
                match conn
                    .execute_typed(&self.sql.delete_many, &[(&keys, Type::TEXT_ARRAY)])
                    .await
                {
                    Ok(n) => Ok(n),
                    Err(e) => Err(failed(conn, e)),
                }
            })
            .await
    }
}
