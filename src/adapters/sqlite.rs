//! SQLite through [`rusqlite`], with SQLite compiled in (feature `rusqlite`, which
//! turns on rusqlite's `bundled`: nothing to install).
//!
//! # Why pool SQLite at all?
//!
//! Usually you need few connections, and that is the point of knowing why:
//!
//! * **One writer at a time.** SQLite locks the whole database for a write. Ten connections
//!   writing at once do not write ten times faster; they queue on the lock (for up to
//!   `busy_timeout`, then fail with `SQLITE_BUSY`). A write pool of `max_connections(1)` queues
//!   writers fairly in the pool instead, where waiting is cheap and bounded by `acquire_timeout`.
//! * **Readers scale, in WAL mode only.** With the write-ahead log, readers neither block the
//!   writer nor each other, so a few read connections (about one per core) help read-heavy
//!   programs. This adapter turns WAL on for every read-write connection.
//! * **Opening is cheap**: no network, no handshake. What a pool saves is what a connection
//!   accumulates: its page cache, its prepared-statement cache, its schema parse.
//!
//! So the adapter is for: sharing connections between threads (`rusqlite::Connection` is `Send`
//! but not `Sync`, so each thread needs its own, and the pool lends them out), bounding them,
//! keeping their caches warm, and the read/write split above (one writer pool, one read-only
//! reader pool, see [`read_only`](SqliteConnectionFactory::read_only)) that the store's
//! `PooledSqliteBackend` uses.
//!
//! # How it is built
//!
//! `create` opens the file (creating it unless read-only), then sets `busy_timeout` (5 s),
//! `journal_mode = WAL` and `synchronous = NORMAL` (safe in WAL: a power cut may lose the last
//! commits, never corrupt the file) on read-write connections, `foreign_keys = ON`, and runs your
//! [`on_connect`](SqliteConnectionFactory::on_connect) hook. `validate` runs `SELECT 1`; the
//! health check's `is_healthy` reads the database header (`PRAGMA schema_version`), and its
//! `reset` rolls back a transaction left open, detaches attached databases, drops temporary
//! tables, views and triggers, and sets `busy_timeout` and `foreign_keys` back.
//!
//! In-memory databases: `:memory:` gives every connection its own empty database, so pooling
//! them makes no sense. Use a file (a temporary one for tests).
//!
//! # Thread safety
//!
//! The guard lends a `rusqlite::Connection` to one thread at a time, which is what its `!Sync`
//! asks. Its calls block the calling thread (briefly: no network), including inside the pool's
//! `async` callbacks.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "blocking")] {
//! use nexus_pool::ConnectionPoolConfig;
//! use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
//!
//! let path = std::env::temp_dir().join(format!("nexus-sqlite-doc-{}.db", std::process::id()));
//!
//! // One writer, so writers queue in the pool rather than on SQLite's lock...
//! let writer = SqliteConnectionFactory::new(&path)
//!     .pool_builder()
//!     .config(ConnectionPoolConfig::builder().max_connections(1).build()?)
//!     .build()?;
//! // ...and a few readers, which WAL lets run beside it.
//! let readers = SqliteConnectionFactory::new(&path)
//!     .read_only()
//!     .pool_builder()
//!     .config(ConnectionPoolConfig::builder().max_connections(4).build()?)
//!     .build()?;
//!
//! writer.with_connection_blocking(|conn| {
//!     conn.execute_batch("CREATE TABLE IF NOT EXISTS notes (body TEXT NOT NULL);
//!                         INSERT INTO notes VALUES ('hello');")?;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! let count: i64 = readers.with_connection_blocking(|conn| {
//!     Ok::<_, Box<dyn std::error::Error>>(conn.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?)
//! })?;
//! assert_eq!(count, 1);
//!
//! writer.close_blocking();
//! readers.close_blocking();
//! for suffix in ["", "-wal", "-shm"] {
//!     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
//! }
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::rusqlite::{Connection, OpenFlags};

use crate::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolBuilder};

const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`SqliteConnectionFactory::on_connect`] takes.
type InitHook = Arc<dyn Fn(&Connection) -> ::rusqlite::Result<()> + Send + Sync>;

/// Opens connections to one SQLite file; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
///
/// let factory = SqliteConnectionFactory::new("app.db").busy_timeout(Duration::from_secs(2));
/// assert_eq!(factory.path(), std::path::Path::new("app.db"));
/// ```
#[derive(Clone)]
pub struct SqliteConnectionFactory {
    path: PathBuf,
    read_only: bool,
    busy_timeout: Duration,
    init: Option<InitHook>,
}

impl fmt::Debug for SqliteConnectionFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConnectionFactory")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("busy_timeout", &self.busy_timeout)
            .field("on_connect", &self.init.is_some())
            .finish()
    }
}

impl SqliteConnectionFactory {
    /// Read-write connections to the file at `path` (created if missing), in WAL mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let factory = nexus_pool::adapters::sqlite::SqliteConnectionFactory::new("app.db");
    /// # drop(factory);
    /// ```
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteConnectionFactory {
            path: path.as_ref().to_owned(),
            read_only: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            init: None,
        }
    }

    /// Opens the file read-only (it must exist): for a pool of readers beside a writer pool.
    /// A write through such a connection fails with `SQLITE_READONLY`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    ///
    /// let readers = SqliteConnectionFactory::new("app.db").read_only();
    /// assert!(readers.is_read_only());
    /// ```
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Whether connections are opened read-only.
    ///
    /// # Examples
    ///
    /// ```
    /// let factory = nexus_pool::adapters::sqlite::SqliteConnectionFactory::new("app.db");
    /// assert!(!factory.is_read_only());
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// How long a statement waits for another connection's lock before failing with
    /// `SQLITE_BUSY`; 5 s by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    ///
    /// let factory = SqliteConnectionFactory::new("app.db").busy_timeout(Duration::from_millis(250));
    /// # drop(factory);
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Runs `hook` on every new connection after the adapter's own settings: more pragmas,
    /// functions, collations. An error fails the create.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    ///
    /// let factory = SqliteConnectionFactory::new("app.db")
    ///     .on_connect(|conn| conn.pragma_update(None, "cache_size", -16_000));
    /// # drop(factory);
    /// ```
    pub fn on_connect(
        mut self,
        hook: impl Fn(&Connection) -> ::rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.init = Some(Arc::new(hook));
        self
    }

    /// The database file.
    ///
    /// # Examples
    ///
    /// ```
    /// let factory = nexus_pool::adapters::sqlite::SqliteConnectionFactory::new("/tmp/x.db");
    /// assert_eq!(factory.path().to_str(), Some("/tmp/x.db"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The health check that resets connections to this factory's settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let check = nexus_pool::adapters::sqlite::SqliteConnectionFactory::new("app.db").health_check();
    /// # drop(check);
    /// ```
    pub fn health_check(&self) -> SqliteHealthCheck {
        SqliteHealthCheck {
            busy_timeout: self.busy_timeout,
        }
    }

    /// Starts a pool builder: the same as [`ConnectionPool::builder`] with this factory, which
    /// attaches [`health_check`](Self::health_check) (see
    /// [`ConnectionFactory::default_health_check`]), so every reused connection is reset before
    /// it is lent. Add a config and `build()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::ConnectionPoolConfig;
    /// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
    ///
    /// let pool = SqliteConnectionFactory::new("app.db")
    ///     .pool_builder()
    ///     .config(ConnectionPoolConfig::builder().min_connections(0).max_connections(1).build()?)
    ///     .build()?; // with min_connections(0), opens the file on the first acquire
    /// assert_eq!(pool.current_metrics().total, 0);
    /// # Ok::<(), nexus_pool::ConfigError>(())
    /// ```
    pub fn pool_builder(self) -> ConnectionPoolBuilder<Self> {
        ConnectionPool::builder(self)
    }

    fn open(&self) -> ::rusqlite::Result<Connection> {
        let mode = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        // NO_MUTEX: a connection is used by one thread at a time, which the guard guarantees.
        let flags = mode | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        if !self.read_only {
            // Persistent in the file; the busy timeout covers the brief lock it takes.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        if let Some(init) = &self.init {
            init(&conn)?;
        }
        Ok(conn)
    }
}

impl ConnectionFactory for SqliteConnectionFactory {
    type Connection = Connection;
    type Error = ::rusqlite::Error;

    /// The adapter's health check ([`health_check`](Self::health_check)): every pool built from
    /// this factory gets it, so a used session is reset before it is lent again, unless the
    /// builder is told otherwise.
    fn default_health_check(&self) -> Option<impl ConnectionHealthCheck<Self::Connection>> {
        Some(self.health_check())
    }

    async fn create(&self) -> ::rusqlite::Result<Connection> {
        self.open()
    }

    async fn destroy(&self, conn: Connection) {
        // `close` reports errors that `drop` would swallow; there is nobody to report them to.
        let _ = conn.close();
    }

    async fn validate(&self, conn: &mut Connection) -> bool {
        conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
            .is_ok_and(|one| one == 1)
    }
}

/// Checks and resets pooled SQLite connections; made by
/// [`SqliteConnectionFactory::health_check`].
///
/// # Examples
///
/// ```
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
///
/// let factory = SqliteConnectionFactory::new("app.db");
/// let check = factory.health_check();
/// let pool = ConnectionPool::builder(factory)
///     .config(ConnectionPoolConfig::builder().min_connections(0).build()?)
///     .health_check(check)
///     .build()?;
/// # drop(pool);
/// # Ok::<(), nexus_pool::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteHealthCheck {
    busy_timeout: Duration,
}

impl ConnectionHealthCheck<Connection> for SqliteHealthCheck {
    async fn is_healthy(&self, conn: &mut Connection) -> bool {
        // Reads the database header: the file is still there and readable.
        conn.query_row("PRAGMA schema_version", [], |row| row.get::<_, i64>(0))
            .is_ok()
    }

    async fn reset(&self, conn: &mut Connection) -> bool {
        reset(conn, self.busy_timeout).is_ok()
    }
}

fn reset(conn: &mut Connection, busy_timeout: Duration) -> ::rusqlite::Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    let attached: Vec<String> = {
        let mut stmt = conn.prepare_cached("PRAGMA database_list")?;
        let names = stmt.query_map([], |row| row.get::<_, String>(1))?;
        names
            .filter(|n| !matches!(n.as_deref(), Ok("main" | "temp")))
            .collect::<Result<_, _>>()?
    };
    for name in attached {
        conn.execute("DETACH DATABASE ?1", [name])?;
    }
    let temp: Vec<(String, String)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT type, name FROM temp.sqlite_master WHERE type IN ('table', 'view', 'trigger')",
        )?;
        let objects = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        objects.collect::<Result<_, _>>()?
    };
    for (kind, name) in temp {
        let kind = match kind.as_str() {
            "table" => "TABLE",
            "view" => "VIEW",
            _ => "TRIGGER",
        };
        let quoted = name.replace('"', "\"\"");
        conn.execute_batch(&format!("DROP {kind} IF EXISTS temp.\"{quoted}\""))?;
    }
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)
}
