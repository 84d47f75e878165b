//! A typed key-value store over pooled connections (feature `store`).
//!
//! * [`StoreBackend<T, Id>`](StoreBackend) is where items live: `get`, `get_all`, `save`,
//!   `save_many`, `delete`, `delete_many`, all `async`.
//! * [`NexusStore<T, Id>`](NexusStore) is the typed handle an application passes around: cheap to
//!   clone, and its type does not name the backend, so tests can swap in [`MemoryBackend`].
//! * Items are stored as JSON (`serde_json`), so any `Serialize + DeserializeOwned` type works
//!   ([`StoreItem`]); ids are anything that prints and parses (`String`, integers, UUIDs:
//!   [`StoreKey`]) and are stored as text.
//!
//! The pooled backends, `PooledPostgresBackend` (feature `tokio-postgres`) and
//! `PooledSqliteBackend` (feature `rusqlite`), are made from a pool and a table name. They create
//! their table if it is missing and run every operation through the pool's
//! [`with_connection`](crate::ConnectionPool::with_connection), so a connection is held only for
//! the duration of one operation. Both take an optional **read pool** (a replica, or SQLite
//! read-only connections): `get` and `get_all` go there; writes never do.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use nexus_pool::store::{MemoryBackend, NexusStore};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct User {
//!     name: String,
//!     admin: bool,
//! }
//!
//! # futures_lite::future::block_on(async {
//! let users: NexusStore<User, u64> = NexusStore::new(MemoryBackend::new());
//! users.save(&1, &User { name: "ada".into(), admin: true }).await?;
//! users
//!     .save_many(&[
//!         (2, User { name: "bob".into(), admin: false }),
//!         (3, User { name: "cy".into(), admin: false }),
//!     ])
//!     .await?;
//! assert_eq!(users.get(&1).await?.map(|u| u.name), Some("ada".to_owned()));
//! assert_eq!(users.delete_many(&[2, 3, 4]).await?, 2);
//! assert_eq!(users.get_all().await?.len(), 1);
//! # Ok::<(), nexus_pool::store::StoreError>(())
//! # }).unwrap();
//! ```

mod memory;
#[cfg(feature = "tokio-postgres")]
mod postgres;
#[cfg(feature = "rusqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PoolError;
use crate::factory::BoxFuture;

pub use memory::MemoryBackend;
#[cfg(feature = "tokio-postgres")]
pub use postgres::PooledPostgresBackend;
#[cfg(feature = "rusqlite")]
pub use sqlite::PooledSqliteBackend;

/// The error of every store operation.
///
/// `Display` is the store's own context in one line; the cause (the [`PoolError`], the driver's
/// error, the JSON error) is the [`source()`](std::error::Error::source), not repeated in the
/// text.
///
/// # Examples
///
/// ```
/// use nexus_pool::store::{MemoryBackend, NexusStore, StoreError};
///
/// # futures_lite::future::block_on(async {
/// // A key stored by one type and read back as another does not parse.
/// let by_name: NexusStore<u8, String> = NexusStore::new(MemoryBackend::new());
/// by_name.save(&"x".to_owned(), &1).await?;
/// let by_number: NexusStore<u8, u32> = NexusStore::new(by_name.backend_as::<MemoryBackend>().unwrap().clone());
/// assert!(matches!(by_number.get_all().await, Err(StoreError::Key { .. })));
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No connection could be had from the pool (timeout, closed, or the database unreachable).
    #[error("could not get a connection")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database refused or failed an operation.
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An item could not be turned into JSON or back.
    #[error("could not encode or decode an item")]
    Serde(#[from] serde_json::Error),
    /// A stored key does not parse as the store's id type; the id type's `FromStr` error is
    /// the source.
    #[error("the stored key {key:?} is not a valid id")]
    Key {
        /// The key as stored.
        key: String,
        /// Why the id type's `FromStr` refused it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The table name is not a plain identifier.
    #[error(
        "invalid table name {0:?}: use ASCII letters, digits and `_`, not starting with a digit, \
         at most 63 characters"
    )]
    TableName(String),
}

impl StoreError {
    /// Wraps a driver error.
    #[cfg(any(feature = "tokio-postgres", feature = "rusqlite"))]
    pub(crate) fn database(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database(Box::new(err))
    }
}

impl<E> From<PoolError<E>> for StoreError
where
    PoolError<E>: std::error::Error + Send + Sync + 'static,
{
    fn from(err: PoolError<E>) -> Self {
        StoreError::Pool(Box::new(err))
    }
}

/// What a store can hold: any type serde can turn into JSON and back. Implemented for every
/// such type.
///
/// # Examples
///
/// ```
/// fn storable<T: nexus_pool::store::StoreItem>() {}
/// storable::<Vec<String>>();
/// storable::<std::collections::HashMap<String, f64>>();
/// ```
pub trait StoreItem: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> StoreItem for T {}

/// What a store can use as an id: any type that prints (`Display`) and parses back (`FromStr`,
/// whose error is an error type or a string), such as `String`, the integers or `uuid::Uuid`.
/// Ids are stored as that text. Implemented for every such type.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use nexus_pool::store::StoreKey;
///
/// assert_eq!(42u64.to_key(), "42");
/// assert_eq!(u64::from_key("42").unwrap(), 42);
///
/// // The parse error is the source, as its own type.
/// let err = u64::from_key("forty-two").unwrap_err();
/// assert_eq!(err.to_string(), r#"the stored key "forty-two" is not a valid id"#);
/// assert!(err.source().unwrap().is::<std::num::ParseIntError>());
/// ```
pub trait StoreKey: Send + Sync + 'static + Sized {
    /// The text the id is stored as.
    fn to_key(&self) -> String;

    /// Parses a stored key back.
    ///
    /// # Errors
    ///
    /// [`StoreError::Key`] when `key` is not a valid id.
    fn from_key(key: &str) -> Result<Self, StoreError>;
}

impl<K> StoreKey for K
where
    K: fmt::Display + FromStr + Send + Sync + 'static,
    K::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn to_key(&self) -> String {
        self.to_string()
    }

    fn from_key(key: &str) -> Result<Self, StoreError> {
        key.parse().map_err(|e: K::Err| StoreError::Key {
            key: key.to_owned(),
            source: e.into(),
        })
    }
}

/// Where a store's items live. Implement it to put a [`NexusStore`] over another database.
///
/// Every method is `async` and its future is `Send`, so a store works on any executor. `save`
/// replaces an existing item with the same id. `save_many` and `delete_many` have defaults that
/// loop over `save` and `delete`; backends with transactions should override them to be atomic
/// and take one connection.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Mutex;
/// use nexus_pool::store::{NexusStore, StoreBackend, StoreError};
///
/// /// Keeps items as they are, without serialising: only for one type.
/// #[derive(Default)]
/// struct Plain(Mutex<BTreeMap<u32, String>>);
///
/// impl StoreBackend<String, u32> for Plain {
///     async fn get(&self, id: &u32) -> Result<Option<String>, StoreError> {
///         Ok(self.0.lock().unwrap().get(id).cloned())
///     }
///     async fn get_all(&self) -> Result<Vec<(u32, String)>, StoreError> {
///         Ok(self.0.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect())
///     }
///     async fn save(&self, id: &u32, item: &String) -> Result<(), StoreError> {
///         self.0.lock().unwrap().insert(*id, item.clone());
///         Ok(())
///     }
///     async fn delete(&self, id: &u32) -> Result<bool, StoreError> {
///         Ok(self.0.lock().unwrap().remove(id).is_some())
///     }
/// }
///
/// # futures_lite::future::block_on(async {
/// let store = NexusStore::new(Plain::default());
/// store.save_many(&[(1, "one".to_owned()), (2, "two".to_owned())]).await?; // the default loop
/// assert_eq!(store.get(&2).await?.as_deref(), Some("two"));
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
pub trait StoreBackend<T, Id>: Send + Sync + 'static
where
    T: Send + Sync + 'static,
    Id: Send + Sync + 'static,
{
    /// The item stored under `id`, if any.
    fn get(&self, id: &Id) -> impl Future<Output = Result<Option<T>, StoreError>> + Send;

    /// Every item with its id, ordered by the id's stored text.
    fn get_all(&self) -> impl Future<Output = Result<Vec<(Id, T)>, StoreError>> + Send;

    /// Stores `item` under `id`, replacing what was there.
    fn save(&self, id: &Id, item: &T) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores several items; when an id appears twice the last item wins.
    fn save_many(&self, items: &[(Id, T)]) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            for (id, item) in items {
                self.save(id, item).await?;
            }
            Ok(())
        }
    }

    /// Removes the item stored under `id`; `true` if there was one.
    fn delete(&self, id: &Id) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the items stored under `ids`; returns how many there were.
    fn delete_many(&self, ids: &[Id]) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut removed = 0;
            for id in ids {
                removed += u64::from(self.delete(id).await?);
            }
            Ok(removed)
        }
    }
}

/// The object-safe form of [`StoreBackend`], so that `NexusStore`'s type does not name its
/// backend.
trait DynBackend<T, Id>: Send + Sync {
    fn get<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<Option<T>, StoreError>>;
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<(Id, T)>, StoreError>>;
    fn save<'a>(&'a self, id: &'a Id, item: &'a T) -> BoxFuture<'a, Result<(), StoreError>>;
    fn save_many<'a>(&'a self, items: &'a [(Id, T)]) -> BoxFuture<'a, Result<(), StoreError>>;
    fn delete<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn delete_many<'a>(&'a self, ids: &'a [Id]) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T, Id, B> DynBackend<T, Id> for B
where
    T: Send + Sync + 'static,
    Id: Send + Sync + 'static,
    B: StoreBackend<T, Id>,
{
    fn get<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<Option<T>, StoreError>> {
        Box::pin(StoreBackend::get(self, id))
    }
    fn get_all(&self) -> BoxFuture<'_, Result<Vec<(Id, T)>, StoreError>> {
        Box::pin(StoreBackend::get_all(self))
    }
    fn save<'a>(&'a self, id: &'a Id, item: &'a T) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(StoreBackend::save(self, id, item))
    }
    fn save_many<'a>(&'a self, items: &'a [(Id, T)]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(StoreBackend::save_many(self, items))
    }
    fn delete<'a>(&'a self, id: &'a Id) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(StoreBackend::delete(self, id))
    }
    fn delete_many<'a>(&'a self, ids: &'a [Id]) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(StoreBackend::delete_many(self, ids))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A typed store of `T`s by `Id`, over any [`StoreBackend`]. Clones share the backend.
///
/// # Examples
///
/// ```
/// use nexus_pool::store::{MemoryBackend, NexusStore};
///
/// # futures_lite::future::block_on(async {
/// let counts: NexusStore<u32, String> = NexusStore::new(MemoryBackend::new());
/// let worker = counts.clone(); // the same store
/// worker.save(&"apples".to_owned(), &3).await?;
/// assert_eq!(counts.get(&"apples".to_owned()).await?, Some(3));
/// # Ok::<(), nexus_pool::store::StoreError>(())
/// # }).unwrap();
/// ```
pub struct NexusStore<T, Id> {
    backend: Arc<dyn DynBackend<T, Id>>,
    _items: PhantomData<fn() -> (T, Id)>,
}

impl<T, Id> Clone for NexusStore<T, Id> {
    fn clone(&self) -> Self {
        NexusStore {
            backend: self.backend.clone(),
            _items: PhantomData,
        }
    }
}

impl<T, Id> fmt::Debug for NexusStore<T, Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NexusStore { .. }")
    }
}

impl<T, Id> NexusStore<T, Id>
where
    T: Send + Sync + 'static,
    Id: Send + Sync + 'static,
{
    /// A store over `backend`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::store::{MemoryBackend, NexusStore};
    ///
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// # drop(store);
    /// ```
    pub fn new(backend: impl StoreBackend<T, Id>) -> Self {
        NexusStore {
            backend: Arc::new(backend),
            _items: PhantomData,
        }
    }

    /// The backend, if it is a `B` (to reach its pools, for instance).
    ///
    /// # Examples
    ///
    /// ```
    /// use nexus_pool::store::{MemoryBackend, NexusStore};
    ///
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// assert!(store.backend_as::<MemoryBackend>().is_some());
    /// ```
    pub fn backend_as<B: 'static>(&self) -> Option<&B> {
        self.backend.as_any().downcast_ref()
    }

    /// The item stored under `id`, if any.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// assert_eq!(store.get(&7).await?, None);
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn get(&self, id: &Id) -> Result<Option<T>, StoreError> {
        self.backend.get(id).await
    }

    /// Every item with its id, ordered by the id's stored text.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<char, String> = NexusStore::new(MemoryBackend::new());
    /// store.save(&"b".to_owned(), &'B').await?;
    /// store.save(&"a".to_owned(), &'A').await?;
    /// assert_eq!(store.get_all().await?, [("a".to_owned(), 'A'), ("b".to_owned(), 'B')]);
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_all(&self) -> Result<Vec<(Id, T)>, StoreError> {
        self.backend.get_all().await
    }

    /// Stores `item` under `id`, replacing what was there.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// store.save(&1, &"first".to_owned()).await?;
    /// store.save(&1, &"second".to_owned()).await?;
    /// assert_eq!(store.get(&1).await?.as_deref(), Some("second"));
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn save(&self, id: &Id, item: &T) -> Result<(), StoreError> {
        self.backend.save(id, item).await
    }

    /// Stores several items (in one transaction on the pooled backends); when an id appears
    /// twice the last item wins.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`]; the pooled backends then store none of the items.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// store.save_many(&[(1, "a".to_owned()), (1, "b".to_owned())]).await?;
    /// assert_eq!(store.get(&1).await?.as_deref(), Some("b"));
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn save_many(&self, items: &[(Id, T)]) -> Result<(), StoreError> {
        self.backend.save_many(items).await
    }

    /// Removes the item stored under `id`; `true` if there was one.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// store.save(&1, &"x".to_owned()).await?;
    /// assert!(store.delete(&1).await?);
    /// assert!(!store.delete(&1).await?);
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        self.backend.delete(id).await
    }

    /// Removes the items stored under `ids`; returns how many there were.
    ///
    /// # Errors
    ///
    /// The backend's [`StoreError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use nexus_pool::store::{MemoryBackend, NexusStore};
    /// # futures_lite::future::block_on(async {
    /// let store: NexusStore<String, u64> = NexusStore::new(MemoryBackend::new());
    /// store.save(&1, &"x".to_owned()).await?;
    /// assert_eq!(store.delete_many(&[1, 2]).await?, 1);
    /// # Ok::<(), nexus_pool::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn delete_many(&self, ids: &[Id]) -> Result<u64, StoreError> {
        self.backend.delete_many(ids).await
    }
}

/// Checks that `name` is a plain identifier, so it can be put into SQL (quoted) safely.
#[cfg(any(feature = "tokio-postgres", feature = "rusqlite"))]
fn check_table_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::TableName(name.to_owned()))
    }
}

/// An item as the JSON text the backends store.
fn encode<T: Serialize>(item: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(item)?)
}

/// An item back from its JSON text.
fn decode<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(json)?)
}
