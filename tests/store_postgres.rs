//! The typed store on PostgreSQL (`PooledPostgresBackend`), against `NEXUS_POOL_PG_URL`, else the
//! standard local address.
#![cfg(all(feature = "store", feature = "tokio-postgres", feature = "blocking"))]

mod common;

use std::time::Duration;

use common::servers::{pg_url, pgbouncer_tx_url, unique};
use common::wait::eventually;
use futures_lite::future::block_on;
use nexus_pool::adapters::tokio_postgres::{
    PostgresReset, TokioPostgresConnection, TokioPostgresConnectionFactory,
};
use nexus_pool::store::{NexusStore, PooledPostgresBackend, StoreError};
use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
use serde::{Deserialize, Serialize};

type Pool = ConnectionPool<TokioPostgresConnectionFactory>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance_cents: i64,
    tags: Vec<String>,
}

fn account(owner: &str, cents: i64) -> Account {
    Account {
        owner: owner.to_owned(),
        balance_cents: cents,
        tags: vec!["x".into()],
    }
}

/// A pool whose sessions are named `app`, made on demand only (`min_connections(0)`), so that
/// `pg_stat_activity` and the pool's counts show exactly what the store used.
fn pool(url: &str, app: &str, max: usize) -> Pool {
    let mut factory = TokioPostgresConnectionFactory::new(url).unwrap();
    factory.config_mut().application_name(app);
    let config = ConnectionPoolConfig::builder()
        .min_connections(0)
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    factory.pool_builder().config(config).build().unwrap()
}

/// An unpooled session for the test's own checks; drops the table when the test ends.
struct Admin {
    conn: TokioPostgresConnection,
    _factory: TokioPostgresConnectionFactory,
    table: String,
}

impl Admin {
    fn new(url: &str, table: &str) -> Self {
        let factory = TokioPostgresConnectionFactory::new(url).unwrap();
        let conn = block_on(factory.create()).expect("admin connection");
        Admin {
            conn,
            _factory: factory,
            table: table.to_owned(),
        }
    }

    fn count(&self, sql: &str, app: &str) -> i64 {
        block_on(self.conn.query_one(sql, &[&app])).unwrap().get(0)
    }

    fn sessions(&self, app: &str) -> i64 {
        self.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            app,
        )
    }

    fn terminate_all(&self, app: &str) {
        block_on(self.conn.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        ))
        .unwrap();
        assert!(eventually(Duration::from_secs(5), || self.sessions(app) == 0));
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = block_on(
            self.conn
                .batch_execute(&format!("DROP TABLE IF EXISTS \"{}\"", self.table)),
        );
    }
}

#[test]
fn crud() {
    let Some(url) = pg_url("store_postgres::crud") else {
        return;
    };
    let table = unique("np_store_crud");
    let _admin = Admin::new(&url, &table);
    let pool = pool(&url, &unique("np_store_crud_app"), 2);
    block_on(async {
        let store: NexusStore<Account, String> =
            NexusStore::new(PooledPostgresBackend::new(pool.clone(), &table).await?);
        let id = |s: &str| s.to_owned();
        assert_eq!(store.get(&id("ada")).await?, None);
        store.save(&id("ada"), &account("Ada", 100)).await?;
        store.save(&id("ada"), &account("Ada", 250)).await?;
        assert_eq!(store.get(&id("ada")).await?, Some(account("Ada", 250)));
        store
            .save_many(&[
                (id("bob"), account("Bob", 1)),
                (id("Cy"), account("Cy", 2)),
                (id("bob"), account("Bob", 3)),
            ])
            .await?;
        let all = store.get_all().await?;
        let ids: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(ids, ["Cy", "ada", "bob"], "ordered by the ids' bytes");
        assert_eq!(
            all[2].1,
            account("Bob", 3),
            "the last of a duplicate id wins"
        );
        assert!(store.delete(&id("Cy")).await?);
        assert!(!store.delete(&id("Cy")).await?);
        assert_eq!(
            store
                .delete_many(&[id("ada"), id("bob"), id("zed")])
                .await?,
            2
        );
        assert!(store.get_all().await?.is_empty());
        // A second backend on the same table finds it there.
        let again: NexusStore<Account, String> =
            NexusStore::new(PooledPostgresBackend::new(pool.clone(), &table).await?);
        again.save(&id("x"), &account("X", 0)).await?;
        assert_eq!(store.get(&id("x")).await?, Some(account("X", 0)));
        Ok::<(), StoreError>(())
    })
    .unwrap();
    pool.close_blocking();
}

#[test]
fn read_pool_serves_reads_and_never_writes() {
    let Some(url) = pg_url("store_postgres::read_pool_serves_reads_and_never_writes") else {
        return;
    };
    let table = unique("np_store_split");
    let admin = Admin::new(&url, &table);
    let (write_app, read_app) = (unique("np_store_w"), unique("np_store_r"));
    let (write, read) = (pool(&url, &write_app, 2), pool(&url, &read_app, 2));
    block_on(async {
        let backend = PooledPostgresBackend::new(write.clone(), &table)
            .await?
            .with_read_pool(read.clone());
        let store: NexusStore<Account, u64> = NexusStore::new(backend);
        store.save(&1, &account("a", 1)).await?;
        store
            .save_many(&[(2, account("b", 2)), (3, account("c", 3))])
            .await?;
        store.delete(&3).await?;
        store.delete_many(&[2]).await?;
        assert_eq!(
            read.current_metrics().total,
            0,
            "no write used the read pool"
        );
        assert_eq!(admin.sessions(&read_app), 0, "nor opened a session there");

        assert_eq!(store.get(&1).await?, Some(account("a", 1)));
        assert_eq!(store.get_all().await?.len(), 1);
        assert_eq!(
            read.current_metrics().total,
            1,
            "reads went to the read pool"
        );
        assert_eq!(admin.sessions(&read_app), 1);
        Ok::<(), StoreError>(())
    })
    .unwrap();
    write.close_blocking();
    read.close_blocking();
}

#[test]
fn every_session_killed_the_store_carries_on() {
    let Some(url) = pg_url("store_postgres::every_session_killed_the_store_carries_on") else {
        return;
    };
    let table = unique("np_store_kill");
    let admin = Admin::new(&url, &table);
    let app = unique("np_store_kill_app");
    let pool = pool(&url, &app, 2);
    block_on(async {
        let store: NexusStore<Account, u64> =
            NexusStore::new(PooledPostgresBackend::new(pool.clone(), &table).await?);
        store.save(&1, &account("a", 1)).await?;
        admin.terminate_all(&app);
        // The dead idle session fails its reset and is replaced before the next operation.
        assert_eq!(store.get(&1).await?, Some(account("a", 1)));
        store.save(&2, &account("b", 2)).await?;
        assert_eq!(store.get_all().await?.len(), 2);
        Ok::<(), StoreError>(())
    })
    .unwrap();
    pool.close_blocking();
}

#[test]
fn killed_mid_operation_is_a_database_error_and_the_connection_is_dropped() {
    let Some(url) = pg_url(
        "store_postgres::killed_mid_operation_is_a_database_error_and_the_connection_is_dropped",
    ) else {
        return;
    };
    let table = unique("np_store_mid");
    let admin = Admin::new(&url, &table);
    let app = unique("np_store_mid_app");
    let pool = pool(&url, &app, 1);
    let store: NexusStore<Account, u64> =
        NexusStore::new(block_on(PooledPostgresBackend::new(pool.clone(), &table)).unwrap());
    // Hold the table's lock so that the store's write waits, then kill its session mid-wait.
    block_on(admin.conn.batch_execute(&format!(
        "BEGIN; LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"
    )))
    .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || block_on(store.save(&1, &account("a", 1))))
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            admin.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &app
        ) == 1
        }),
        "the store's write waits on the lock"
    );
    block_on(admin.conn.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    ))
    .unwrap();
    let err = writer.join().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    block_on(admin.conn.batch_execute("ROLLBACK")).unwrap();

    // The store saw the session was gone and marked the connection broken: destroyed, not idle.
    assert!(
        eventually(Duration::from_secs(5), || pool.current_metrics().total == 0),
        "the dead connection was destroyed: {:?}",
        pool.current_metrics()
    );
    block_on(store.save(&1, &account("a", 1))).unwrap();
    assert_eq!(block_on(store.get(&1)).unwrap(), Some(account("a", 1)));
    pool.close_blocking();
}

/// Behind PgBouncer in transaction pooling mode (`NEXUS_POOL_PGBOUNCER_TX_URL`), where a named
/// statement does not survive from one transaction to the next: every operation of the store,
/// from several threads at once (so the bouncer hands each client's transactions to different
/// server connections), gives the right answers.
#[test]
fn crud_behind_a_transaction_pooler() {
    const TEST: &str = "store_postgres::crud_behind_a_transaction_pooler";
    let Some(url) = pg_url(TEST) else {
        return;
    };
    let Some(bouncer) = pgbouncer_tx_url(TEST) else {
        return;
    };
    const WORKERS: usize = 4;
    const ROUNDS: usize = 20;
    let table = unique("np_store_pooler");
    let _admin = Admin::new(&url, &table);
    let config = ConnectionPoolConfig::builder()
        .max_connections(WORKERS)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let pool = TokioPostgresConnectionFactory::new(&bouncer)
        .unwrap()
        .reset_mode(PostgresReset::TransactionPooler)
        .pool_builder()
        .config(config)
        .build()
        .unwrap();
    let store: NexusStore<Account, String> =
        NexusStore::new(block_on(PooledPostgresBackend::new(pool.clone(), &table)).unwrap());
    std::thread::scope(|s| {
        for worker in 0..WORKERS {
            let store = &store;
            s.spawn(move || {
                block_on(async {
                    for round in 0..ROUNDS {
                        let id = format!("w{worker}r{round}");
                        let cents = (worker * 1000 + round) as i64;
                        store.save(&id, &account(&id, cents)).await?;
                        assert_eq!(store.get(&id).await?, Some(account(&id, cents)));
                        let pair = [format!("{id}a"), format!("{id}b")];
                        store
                            .save_many(&[
                                (pair[0].clone(), account("a", 1)),
                                (pair[1].clone(), account("b", 2)),
                            ])
                            .await?;
                        assert_eq!(store.delete_many(&pair).await?, 2);
                        assert!(store.delete(&id).await?);
                        assert_eq!(store.get(&id).await?, None);
                    }
                    store
                        .save(&format!("w{worker}"), &account("kept", 7))
                        .await?;
                    Ok::<(), StoreError>(())
                })
                .unwrap();
            });
        }
    });
    let all = block_on(store.get_all()).unwrap();
    let ids: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ids, ["w0", "w1", "w2", "w3"]);
    pool.close_blocking();
}
