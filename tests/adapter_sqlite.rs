//! The SQLite adapter, on temporary files: no server needed.
#![cfg(all(feature = "rusqlite", feature = "blocking"))]

mod common;

use std::path::Path;
use std::time::Duration;

use common::servers::{TempDb, server_config};
use nexus_pool::adapters::sqlite::SqliteConnectionFactory;
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};

type Pool = ConnectionPool<SqliteConnectionFactory>;

fn pool(path: &Path, max: usize) -> Pool {
    SqliteConnectionFactory::new(path)
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

#[test]
fn new_connections_use_wal_busy_timeout_and_foreign_keys() {
    let db = TempDb::new("nexus_pool_sqlite");
    let pool = SqliteConnectionFactory::new(db.path())
        .busy_timeout(Duration::from_millis(1234))
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let busy: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 1234);
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    drop(conn);
    pool.close_blocking();
}

#[test]
fn reset_rolls_back_and_clears_session_state() {
    let db = TempDb::new("nexus_pool_sqlite");
    let other = TempDb::new("nexus_pool_sqlite");
    let pool = pool(db.path(), 1);
    let conn = pool.acquire_blocking().unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{}' AS other;
         CREATE TEMP TABLE scratch (x);
         PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 1;
         BEGIN; INSERT INTO t VALUES (1);",
        other.path().display()
    ))
    .unwrap();
    assert!(!conn.is_autocommit(), "left inside a transaction");
    drop(conn);

    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.use_count(), 2, "the same connection");
    assert!(conn.is_autocommit(), "the transaction was rolled back");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the abandoned insert is gone");
    let attached: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attached, 0, "the attached database was detached");
    let temp: i64 = conn
        .query_row("SELECT count(*) FROM temp.sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(temp, 0);
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 5000);
    drop(conn);
    pool.close_blocking();
}

#[test]
fn read_only_pool_refuses_writes() {
    let db = TempDb::new("nexus_pool_sqlite");
    let writer = pool(db.path(), 1);
    writer
        .acquire_blocking()
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let readers = SqliteConnectionFactory::new(db.path())
        .read_only()
        .pool_builder()
        .config(server_config(2))
        .build()
        .unwrap();
    let conn = readers.acquire_blocking().unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let err = conn.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{err}"
    );
    drop(conn);
    readers.close_blocking();
    writer.close_blocking();
}

/// One writer connection queues writers in the pool; readers in WAL mode read beside it.
#[test]
fn one_writer_many_readers() {
    const WRITERS: usize = 6;
    const READERS: usize = 4;
    const ROWS: usize = 50;
    let db = TempDb::new("nexus_pool_sqlite");
    let writer = pool(db.path(), 1);
    writer
        .acquire_blocking()
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let readers = SqliteConnectionFactory::new(db.path())
        .read_only()
        .pool_builder()
        .config(server_config(READERS))
        .build()
        .unwrap();

    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let writer = writer.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..ROWS {
                let conn = writer.acquire_blocking().unwrap();
                conn.execute("INSERT INTO t VALUES (?1)", [(w * ROWS + i) as i64])
                    .unwrap();
            }
        }));
    }
    for _ in 0..READERS {
        let readers = readers.clone();
        threads.push(std::thread::spawn(move || {
            let mut last = 0;
            for _ in 0..ROWS {
                let conn = readers.acquire_blocking().unwrap();
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .unwrap();
                assert!(n >= last, "counts only grow");
                last = n;
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let n: i64 = readers
        .acquire_blocking()
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n,
        (WRITERS * ROWS) as i64,
        "no write was lost to SQLITE_BUSY"
    );
    assert_eq!(writer.current_metrics().total, 1);
    readers.close_blocking();
    writer.close_blocking();
}

#[test]
fn on_connect_hook_runs_and_its_error_fails_the_create() {
    let db = TempDb::new("nexus_pool_sqlite");
    let pool = SqliteConnectionFactory::new(db.path())
        .on_connect(|conn| conn.pragma_update(None, "user_version", 7))
        .pool_builder()
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 7);
    drop(conn);
    pool.close_blocking();

    let failing = SqliteConnectionFactory::new(db.path())
        .on_connect(|conn| conn.execute_batch("THIS IS NOT SQL"))
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .acquire_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = failing.acquire_blocking().unwrap_err();
    assert!(err.create_error().is_some(), "{err}");
}

#[test]
fn missing_file_read_only_is_a_create_error() {
    let db = TempDb::new("nexus_pool_sqlite");
    let pool = SqliteConnectionFactory::new(db.path())
        .read_only()
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .acquire_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = pool.acquire_blocking().unwrap_err();
    assert!(err.create_error().is_some(), "{err}");
    assert!(!db.path().exists(), "read-only never creates the file");
}

#[cfg(feature = "async")]
#[test]
fn async_acquire_works_too() {
    let db = TempDb::new("nexus_pool_sqlite");
    let pool = pool(db.path(), 2);
    let n: i64 = futures_lite::future::block_on(async {
        let conn = pool.acquire().await.unwrap();
        conn.query_row("SELECT 6 * 7", [], |r| r.get(0)).unwrap()
    });
    assert_eq!(n, 42);
    pool.close_blocking();
}

/// Every way of building a pool from the adapter resets a connection its last user left inside
/// a transaction; only an explicit opt-out lends it as it is.
#[test]
fn every_way_of_building_a_pool_resets_a_used_session() {
    let db = TempDb::new("nexus_pool_sqlite_default_reset");
    let factory = || SqliteConnectionFactory::new(db.path());
    let pools: [(&str, Pool, bool); 4] = [
        (
            "new",
            ConnectionPool::new(factory(), server_config(1)),
            true,
        ),
        (
            "builder",
            ConnectionPool::builder(factory())
                .config(server_config(1))
                .build()
                .unwrap(),
            true,
        ),
        ("pool_builder", pool(db.path(), 1), true),
        (
            "without_health_check",
            ConnectionPool::builder(factory())
                .config(server_config(1))
                .without_health_check()
                .build()
                .unwrap(),
            false,
        ),
    ];
    for (how, pool, resets) in pools {
        let conn = pool.acquire_blocking().unwrap();
        conn.execute_batch("BEGIN").unwrap();
        assert!(!conn.is_autocommit());
        drop(conn);
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!(conn.is_autocommit(), resets, "{how}");
        if !resets {
            conn.execute_batch("ROLLBACK").unwrap();
        }
    }
}
