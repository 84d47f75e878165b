//! The per-connection statement cache behind `prepare_cached`.
//!
//! # The algorithm
//!
//! A map from (SQL text, parameter types) to the `Statement` the server prepared for it, with a
//! use stamp per entry. A hit refreshes the stamp; an insert into a full cache evicts the entry
//! with the oldest stamp (a scan: the bound is small, and an insert already paid a round trip).
//! An evicted or cleared `Statement` is dropped, and the driver deallocates it on the server once
//! no clone of it is alive (`Close`; closing a statement the server no longer has is not an
//! error).
//!
//! # Invariants
//!
//! * At most `capacity` entries; a capacity of 0 caches nothing.
//! * `deallocations` is the session's count of `DISCARD ALL` / `DEALLOCATE ALL` when the cache
//!   was last known valid: a lookup that sees a higher count clears the cache first, so a
//!   statement the server dropped is never handed out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[cfg(all(feature = "postgres", not(feature = "tokio-postgres")))]
use ::postgres::{Statement, types::Type};
#[cfg(feature = "tokio-postgres")]
use ::tokio_postgres::{Statement, types::Type};

/// How many statements a connection keeps prepared unless the factory says otherwise.
pub(crate) const DEFAULT_CAPACITY: usize = 100;

/// One connection's prepared statements, keyed by their SQL text and parameter types; see
/// `prepare_cached` on the adapters' connections.
///
/// The cache belongs to one server session: it is cleared when that session's prepared
/// statements are deallocated (a reset in [`PostgresReset::DiscardAll`] mode, or a `DISCARD
/// ALL` / `DEALLOCATE ALL` of your own on a session the adapter watches), and goes with the
/// connection when the pool destroys it.
///
/// [`PostgresReset::DiscardAll`]: super::pg_common::PostgresReset::DiscardAll
///
/// # Examples
///
/// ```no_run
/// # #[cfg(all(feature = "tokio-postgres", feature = "blocking"))] {
/// use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
///
/// let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?
///     .statement_cache_capacity(16)
///     .pool_builder()
///     .build()?;
/// let conn = pool.acquire_blocking()?;
/// futures_lite::future::block_on(conn.prepare_cached("SELECT $1::int"))?;
/// assert_eq!(conn.statement_cache().len(), 1);
/// assert_eq!(conn.statement_cache().capacity(), 16);
/// conn.statement_cache().clear();
/// assert!(conn.statement_cache().is_empty());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StatementCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

struct Entries {
    /// Each statement with the stamp of its last use.
    map: HashMap<(String, Vec<Type>), (Statement, u64)>,
    /// The stamp the next use gets.
    clock: u64,
    /// The session's deallocation count the entries are valid for.
    deallocations: u64,
}

impl fmt::Debug for StatementCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> Self {
        StatementCache {
            capacity,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                clock: 0,
                deallocations: 0,
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many statements are cached.
    ///
    /// # Caveats
    ///
    /// A hint: a `prepare_cached` running at the same time may change it.
    ///
    /// # Examples
    ///
    /// See [`StatementCache`].
    pub fn len(&self) -> usize {
        self.entries().map.len()
    }

    /// Whether no statement is cached.
    ///
    /// # Caveats
    ///
    /// A hint, as [`len`](Self::len).
    ///
    /// # Examples
    ///
    /// See [`StatementCache`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most statements this cache keeps (the factory's `statement_cache_capacity`).
    ///
    /// # Examples
    ///
    /// See [`StatementCache`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every cached statement; the driver deallocates each on the server once no clone
    /// of it is alive.
    ///
    /// # Examples
    ///
    /// See [`StatementCache`].
    pub fn clear(&self) {
        let dropped = std::mem::take(&mut self.entries().map);
        // Dropped out of the lock: a statement's drop queues its `Close` with the driver.
        drop(dropped);
    }

    /// Forgets the statement cached for `query` with `types`; returns whether there was one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(all(feature = "tokio-postgres", feature = "blocking"))] {
    /// # use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
    /// # let pool = TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1/test")?.pool_builder().build()?;
    /// let conn = pool.acquire_blocking()?;
    /// futures_lite::future::block_on(conn.prepare_cached("SELECT 1"))?;
    /// assert!(conn.statement_cache().remove("SELECT 1", &[]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, query: &str, types: &[Type]) -> bool {
        let removed = self
            .entries()
            .map
            .remove(&(query.to_owned(), types.to_vec()));
        removed.is_some()
    }

    /// The statement cached for `query` with `types`, if the session has not deallocated its
    /// statements since it was cached (`deallocations` is the session's count now).
    pub(crate) fn get(&self, query: &str, types: &[Type], deallocations: u64) -> Option<Statement> {
        let mut entries = self.entries();
        if entries.deallocations != deallocations {
            let stale = std::mem::take(&mut entries.map);
            entries.deallocations = deallocations;
            drop(entries);
            drop(stale);
            return None;
        }
        let stamp = entries.clock;
        entries.clock += 1;
        // Keys are owned: a lookup by borrowed parts would need a key type of its own; the
        // allocation is small next to the round trip a miss costs.
        let (statement, used) = entries.map.get_mut(&(query.to_owned(), types.to_vec()))?;
        *used = stamp;
        Some(statement.clone())
    }

    /// Caches `statement`, evicting the least recently used entry when full; nothing when the
    /// capacity is 0 or the session deallocated its statements since `deallocations` was read.
    pub(crate) fn insert(
        &self,
        query: &str,
        types: &[Type],
        statement: Statement,
        deallocations: u64,
    ) {
        let mut entries = self.entries();
        if self.capacity == 0 || entries.deallocations != deallocations {
            return;
        }
        let mut evicted = None;
        if entries.map.len() >= self.capacity {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            evicted = oldest.and_then(|key| entries.map.remove(&key));
        }
        let stamp = entries.clock;
        entries.clock += 1;
        entries
            .map
            .insert((query.to_owned(), types.to_vec()), (statement, stamp));
        drop(entries);
        drop(evicted);
    }
}
