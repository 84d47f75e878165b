//! The typed store on SQLite (`PooledSqliteBackend`) and in memory: no server needed.
#![cfg(all(feature = "store", feature = "rusqlite", feature = "blocking"))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::servers::{TempDb, chain, server_config};
use futures_lite::future::block_on;
use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
use nexus_pool::store::{MemoryBackend, NexusStore, PooledSqliteBackend, StoreBackend, StoreError};
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
    tags: Vec<String>,
}

fn task(title: &str) -> Task {
    Task {
        title: title.to_owned(),
        done: false,
        tags: vec!["t".to_owned()],
    }
}

fn writer(path: &Path) -> ConnectionPool<SqliteConnectionFactory> {
    SqliteConnectionFactory::new(path)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap()
}

/// Read-only connections, made only on demand (`min_connections(0)`), so that the pool's
/// counts show whether anything used it.
fn readers(path: &Path) -> ConnectionPool<SqliteConnectionFactory> {
    let config = ConnectionPoolConfig::builder()
        .min_connections(0)
        .max_connections(4)
        .build()
        .unwrap();
    SqliteConnectionFactory::new(path)
        .read_only()
        .pool_builder()
        .config(config)
        .build()
        .unwrap()
}

/// The same checks against any backend: what every `StoreBackend` must do.
async fn crud(store: &NexusStore<Task, String>) -> Result<(), StoreError> {
    let id = |s: &str| s.to_owned();
    assert_eq!(store.get(&id("a")).await?, None);
    store.save(&id("b"), &task("second")).await?;
    store.save(&id("a"), &task("first")).await?;
    assert_eq!(store.get(&id("a")).await?, Some(task("first")));

    let mut done = task("first");
    done.done = true;
    store.save(&id("a"), &done).await?;
    assert_eq!(
        store.get(&id("a")).await?,
        Some(done.clone()),
        "save replaces"
    );

    store
        .save_many(&[
            (id("c"), task("third")),
            (id("d"), task("fourth")),
            (id("c"), task("third, again")),
        ])
        .await?;
    let all = store.get_all().await?;
    let ids: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "ordered by id");
    assert_eq!(
        all[2].1,
        task("third, again"),
        "the last of a duplicate id wins"
    );

    assert!(store.delete(&id("b")).await?);
    assert!(!store.delete(&id("b")).await?);
    assert_eq!(store.delete_many(&[id("c"), id("d"), id("nope")]).await?, 2);
    assert_eq!(store.delete_many(&[]).await?, 0);
    store.save_many(&[]).await?;
    assert_eq!(store.get_all().await?, [(id("a"), done)]);
    Ok(())
}

#[test]
fn crud_on_sqlite() {
    let db = TempDb::new("nexus_pool_store");
    block_on(async {
        let backend = PooledSqliteBackend::new(writer(db.path()), "tasks").await?;
        crud(&NexusStore::new(backend)).await
    })
    .unwrap();
}

#[test]
fn crud_on_sqlite_with_a_read_pool() {
    let db = TempDb::new("nexus_pool_store");
    block_on(async {
        let backend = PooledSqliteBackend::new(writer(db.path()), "tasks")
            .await?
            .with_read_pool(readers(db.path()));
        crud(&NexusStore::new(backend)).await
    })
    .unwrap();
}

#[test]
fn crud_in_memory() {
    block_on(crud(&NexusStore::new(MemoryBackend::new()))).unwrap();
}

#[test]
fn writes_never_go_to_the_read_pool() {
    let db = TempDb::new("nexus_pool_store");
    let (w, r) = (writer(db.path()), readers(db.path()));
    block_on(async {
        let backend = PooledSqliteBackend::new(w.clone(), "split")
            .await?
            .with_read_pool(r.clone());
        let store: NexusStore<Task, u32> = NexusStore::new(backend);
        store.save(&1, &task("one")).await?;
        store
            .save_many(&[(2, task("two")), (3, task("three"))])
            .await?;
        store.delete(&3).await?;
        store.delete_many(&[2]).await?;
        assert_eq!(
            r.current_metrics().total,
            0,
            "no write touched the read pool"
        );

        assert_eq!(store.get(&1).await?, Some(task("one")));
        assert_eq!(store.get_all().await?.len(), 1);
        assert_eq!(r.current_metrics().total, 1, "reads did");
        Ok::<(), StoreError>(())
    })
    .unwrap();
    // And the read pool could not have written anyway: its connections are read-only.
    let conn = r.acquire_blocking().unwrap();
    assert!(conn.execute("DELETE FROM split", []).is_err());
}

#[test]
fn save_many_is_all_or_nothing() {
    let db = TempDb::new("nexus_pool_store");
    block_on(async {
        let backend = PooledSqliteBackend::new(writer(db.path()), "maps").await?;
        // JSON objects need string keys: a map with list keys does not serialise.
        let store: NexusStore<BTreeMap<Vec<u8>, u8>, u32> = NexusStore::new(backend);
        let good = BTreeMap::new();
        let bad = BTreeMap::from([(vec![1u8], 1u8)]);
        let err = store
            .save_many(&[(1, good.clone()), (2, bad)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Serde(_)), "{err}");
        assert!(store.get_all().await?.is_empty(), "nothing was stored");
        store.save(&1, &good).await?;
        assert_eq!(store.get(&1).await?, Some(good));
        Ok::<(), StoreError>(())
    })
    .unwrap();
}

#[test]
fn bad_table_names_and_foreign_keys_are_refused() {
    let db = TempDb::new("nexus_pool_store");
    block_on(async {
        for bad in ["", "1abc", "a b", "x\"; DROP TABLE y; --", &"x".repeat(64)] {
            let result = PooledSqliteBackend::new(writer(db.path()), bad).await;
            assert!(matches!(result, Err(StoreError::TableName(_))), "{bad:?}");
        }
        let backend = PooledSqliteBackend::new(writer(db.path()), "Mixed_Case_1").await?;
        let by_name: NexusStore<u8, String> = NexusStore::new(backend);
        by_name.save(&"not a number".to_owned(), &1).await?;

        // The same table read with a numeric id type: the key does not parse.
        let backend = PooledSqliteBackend::new(writer(db.path()), "Mixed_Case_1").await?;
        let by_number: NexusStore<u8, u64> = NexusStore::new(backend);
        let err = by_number.get_all().await.unwrap_err();
        assert!(matches!(err, StoreError::Key { .. }), "{err}");
        Ok::<(), StoreError>(())
    })
    .unwrap();
}

#[test]
fn concurrent_writers_share_one_connection() {
    const THREADS: usize = 6;
    const EACH: u32 = 25;
    let db = TempDb::new("nexus_pool_store");
    let w = writer(db.path());
    let store: NexusStore<u32, u32> =
        NexusStore::new(block_on(PooledSqliteBackend::new(w.clone(), "counts")).unwrap());
    let threads: Vec<_> = (0..THREADS as u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    block_on(store.save(&(t * EACH + i), &i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        block_on(store.get_all()).unwrap().len(),
        THREADS * EACH as usize
    );
    assert_eq!(w.current_metrics().total, 1);
}

#[test]
fn closed_pool_is_a_pool_error() {
    let db = TempDb::new("nexus_pool_store");
    let w = writer(db.path());
    let backend = block_on(PooledSqliteBackend::new(w.clone(), "closed")).unwrap();
    w.close_blocking();
    let err = block_on(StoreBackend::<u8, u8>::get(&backend, &1)).unwrap_err();
    assert!(matches!(err, StoreError::Pool(_)), "{err}");
    // The store's context, then the pool's, each told once.
    assert_eq!(
        chain(&err),
        ["could not get a connection", "the pool is closed"]
    );
}

#[test]
fn database_and_encoding_errors_keep_their_cause() {
    let db = TempDb::new("nexus_pool_store");
    block_on(PooledSqliteBackend::new(writer(db.path()), "made")).unwrap();
    // Creating a table through read-only connections: the driver refuses.
    let err = block_on(PooledSqliteBackend::new(readers(db.path()), "refused")).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert_eq!(err.to_string(), "the database failed");
    let texts = chain(&err);
    assert!(
        std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |&e| e
            .source())
        .any(|e| e.is::<rusqlite::Error>()),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("readonly")), "{texts:?}");

    let err = StoreError::from(serde_json::from_str::<u8>("x").unwrap_err());
    assert_eq!(err.to_string(), "could not encode or decode an item");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .is::<serde_json::Error>()
    );
}
