//! `MemoryBackend`: a store backend in process memory, for tests and examples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{StoreBackend, StoreError, StoreItem, StoreKey, decode, encode};

/// Keeps items in memory, as the same JSON text the database backends store, so that an item
/// that would not survive a round trip through a database does not survive this one either.
/// Clones share the items.
///
/// # Examples
///
/// ```
/// use nexus_pool::store::{MemoryBackend, NexusStore};
///
/// # futures_lite::future::block_on(async {
/// let backend = MemoryBackend::new();
/// let store: NexusStore<Vec<u8>, u64> = NexusStore::new(backend.clone());
/// store.save(&1, &vec![1, 2, 3]).await?;
/// assert_eq!(backend.len(), 1);
/// # Ok::<(), nexus_pool::store::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    items: Arc<Mutex<BTreeMap<String, String>>>,
}

impl MemoryBackend {
    /// An empty backend.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(nexus_pool::store::MemoryBackend::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How many items it holds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::store::MemoryBackend::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no item.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(nexus_pool::store::MemoryBackend::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: StoreItem, Id: StoreKey> StoreBackend<T, Id> for MemoryBackend {
    async fn get(&self, id: &Id) -> Result<Option<T>, StoreError> {
        let json = self.lock().get(&id.to_key()).cloned();
        json.map(|j| decode(&j)).transpose()
    }

    async fn get_all(&self) -> Result<Vec<(Id, T)>, StoreError> {
        let items = self.lock().clone();
        items
            .iter()
            .map(|(key, json)| Ok((Id::from_key(key)?, decode(json)?)))
            .collect()
    }

    async fn save(&self, id: &Id, item: &T) -> Result<(), StoreError> {
        let json = encode(item)?;
        self.lock().insert(id.to_key(), json);
        Ok(())
    }

    async fn save_many(&self, items: &[(Id, T)]) -> Result<(), StoreError> {
        // Encode everything first, so that a bad item stores nothing, as a transaction would.
        let encoded = items
            .iter()
            .map(|(id, item)| Ok((id.to_key(), encode(item)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.lock().extend(encoded);
        Ok(())
    }

    async fn delete(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.lock().remove(&id.to_key()).is_some())
    }

    async fn delete_many(&self, ids: &[Id]) -> Result<u64, StoreError> {
        let mut items = self.lock();
        Ok(ids
            .iter()
            .filter(|id| items.remove(&id.to_key()).is_some())
            .count() as u64)
    }
}
