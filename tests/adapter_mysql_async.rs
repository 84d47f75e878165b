//! The `mysql_async` adapter against a real MySQL or MariaDB (`NEXUS_POOL_MYSQL_URL`, else the
//! standard local address), driven from tokio (both flavours), smol and plain threads. Each test
//! works in a database of its own, so that the server's process list, filtered by that
//! database, counts exactly the test's pooled connections.
#![cfg(all(feature = "mysql-async", feature = "async", feature = "blocking"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::servers::{mysql_url, server_config, unique};
use common::wait::eventually;
use futures_lite::future::block_on;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use nexus_pool::adapters::mysql_async::{
    MysqlAsyncConnection, MysqlAsyncConnectionFactory, connection_lost,
};
use nexus_pool::{ConnectionPool, PoolError};

/// Tasks and queries per task in the concurrent tests.
const TASKS: usize = 16;
const QUERIES: usize = 20;

type Pool = ConnectionPool<MysqlAsyncConnectionFactory>;

/// A database of the test's own, dropped when the test ends (passing or failing), and an admin
/// connection outside the pool (on a runtime of its own) to watch and disturb the pool's
/// connections.
struct Db {
    name: String,
    opts: Opts,
    admin: Option<Conn>,
    rt: tokio::runtime::Runtime,
}

impl Db {
    fn new(url: &str, test: &str) -> Self {
        let name = unique(&format!("nexus_pool_async_{test}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let base = Opts::from_url(url).expect("the MySQL URL parses");
        let mut admin = rt
            .block_on(Conn::new(base.clone()))
            .expect("admin connection");
        rt.block_on(admin.query_drop(format!("CREATE DATABASE `{name}`")))
            .unwrap();
        let opts = OptsBuilder::from_opts(base).db_name(Some(&name)).into();
        Db {
            name,
            opts,
            admin: Some(admin),
            rt,
        }
    }

    /// Made where it is called: inside a multi-threaded tokio runtime it takes that runtime.
    fn factory(&self) -> MysqlAsyncConnectionFactory {
        MysqlAsyncConnectionFactory::from_opts(self.opts.clone()).unwrap()
    }

    fn pool(&self, max: usize) -> Pool {
        self.factory()
            .pool_builder()
            .config(server_config(max))
            .build()
            .unwrap()
    }

    fn admin_query<T: mysql_async::prelude::FromRow + Send + 'static>(&mut self, sql: &str) -> T {
        let admin = self.admin.as_mut().unwrap();
        self.rt
            .block_on(admin.query_first(sql))
            .unwrap()
            .expect("a row")
    }

    /// The connections the server has open in this database.
    fn server_count(&mut self) -> usize {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}'",
            self.name
        );
        self.admin_query(&sql)
    }

    fn kill(&mut self, id: u32) {
        let admin = self.admin.as_mut().unwrap();
        self.rt
            .block_on(admin.query_drop(format!("KILL CONNECTION {id}")))
            .unwrap();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(mut admin) = self.admin.take() {
            let name = self.name.clone();
            self.rt.block_on(async move {
                let _ = admin
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await;
                let _ = admin.disconnect().await;
            });
        }
    }
}

async fn one(conn: &mut MysqlAsyncConnection) -> i64 {
    conn.query_first("SELECT 1").await.unwrap().unwrap()
}

/// Many tasks insert into one table through the pool, each checking its own rows; then the
/// total.
async fn workload(pool: &Pool, spawn: impl Fn(Pool, usize) -> Box<dyn FnOnce() + Send>) {
    pool.acquire()
        .await
        .unwrap()
        .query_drop("CREATE TABLE IF NOT EXISTS hits (task INT, n INT)")
        .await
        .unwrap();
    let joins: Vec<_> = (0..TASKS).map(|t| spawn(pool.clone(), t)).collect();
    for join in joins {
        join();
    }
    let total: Option<usize> = pool
        .acquire()
        .await
        .unwrap()
        .query_first("SELECT COUNT(*) FROM hits")
        .await
        .unwrap();
    assert_eq!(total, Some(TASKS * QUERIES));
}

async fn task_queries(pool: Pool, t: usize) {
    for n in 0..QUERIES {
        let mut conn = pool.acquire().await.unwrap();
        conn.exec_drop("INSERT INTO hits VALUES (?, ?)", (t, n))
            .await
            .unwrap();
        let mine: Option<usize> = conn
            .exec_first("SELECT COUNT(*) FROM hits WHERE task = ?", (t,))
            .await
            .unwrap();
        assert_eq!(mine, Some(n + 1));
    }
}

#[test]
fn queries_from_many_tokio_tasks() {
    let Some(url) = mysql_url("adapter_mysql_async::queries_from_many_tokio_tasks") else {
        return;
    };
    let mut db = Db::new(&url, "tokio_mt");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = rt.block_on(async {
        let factory = db.factory();
        assert!(
            !factory.has_own_runtime(),
            "the factory took the runtime it was built in"
        );
        factory
            .pool_builder()
            .config(server_config(4))
            .build()
            .unwrap()
    });
    let handle = rt.handle().clone();
    rt.block_on(workload(&pool, |pool, t| {
        let task = handle.spawn(task_queries(pool, t));
        Box::new(move || futures_lite::future::block_on(task).unwrap())
    }));
    assert!(db.server_count() <= 4);
    rt.block_on(pool.close());
}

#[test]
fn queries_from_tokio_current_thread_smol_and_plain_threads() {
    let Some(url) =
        mysql_url("adapter_mysql_async::queries_from_tokio_current_thread_smol_and_plain_threads")
    else {
        return;
    };
    let db = Db::new(&url, "executors");

    // A current-thread runtime is not borrowed: a blocking caller could stall it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let factory = db.factory();
        assert!(factory.has_own_runtime());
        let pool = factory
            .pool_builder()
            .config(server_config(2))
            .build()
            .unwrap();
        assert_eq!(one(&mut pool.acquire().await.unwrap()).await, 1);
        pool.close().await;
    });

    // smol: many tasks on smol's executor, the sockets served by the factory's runtime.
    smol::block_on(async {
        let pool = db.pool(4);
        pool.acquire()
            .await
            .unwrap()
            .query_drop("CREATE TABLE hits (task INT, n INT)")
            .await
            .unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| smol::spawn(task_queries(pool.clone(), t)))
            .collect();
        for task in tasks {
            task.await;
        }
        pool.close().await;
    });

    // Plain threads that never saw a runtime.
    let pool = db.pool(4);
    let threads: Vec<_> = (0..TASKS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for n in 0..QUERIES {
                    let mut conn = pool.acquire_blocking().unwrap();
                    block_on(conn.exec_drop("INSERT INTO hits VALUES (?, ?)", (t + TASKS, n)))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut conn = pool.acquire_blocking().unwrap();
    let total: Option<usize> = block_on(conn.query_first("SELECT COUNT(*) FROM hits")).unwrap();
    assert_eq!(total, Some(2 * TASKS * QUERIES));
    drop(conn);
    pool.close_blocking();
}

#[test]
fn open_transaction_is_rolled_back_before_the_next_user() {
    let Some(url) =
        mysql_url("adapter_mysql_async::open_transaction_is_rolled_back_before_the_next_user")
    else {
        return;
    };
    let mut db = Db::new(&url, "tx");
    let pool = db.pool(1);
    smol::block_on(async {
        let mut conn = pool.acquire().await.unwrap();
        conn.query_drop("CREATE TABLE t (x INT) ENGINE=InnoDB")
            .await
            .unwrap();
        let id = conn.id();
        conn.query_drop("START TRANSACTION").await.unwrap();
        conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
        drop(conn); // no COMMIT, no ROLLBACK

        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(conn.id(), id, "the same session, reused");
        let in_tx: Option<i64> = conn.query_first("SELECT @@in_transaction").await.unwrap();
        assert_eq!(in_tx, Some(0), "no transaction open");
        let rows: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(rows, Some(0), "the insert was rolled back");
    });
    let sql = format!("SELECT COUNT(*) FROM `{}`.t", db.name);
    assert_eq!(db.admin_query::<i64>(&sql), 0);
    pool.close_blocking();
}

#[test]
fn temporary_table_and_session_variables_do_not_survive() {
    let Some(url) =
        mysql_url("adapter_mysql_async::temporary_table_and_session_variables_do_not_survive")
    else {
        return;
    };
    let db = Db::new(&url, "session");
    let pool = db.pool(1);
    let mut conn = pool.acquire_blocking().unwrap();
    let id = conn.id();
    block_on(async {
        conn.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
            .await
            .unwrap();
        conn.query_drop("SET @left_behind = 42, SESSION sql_select_limit = 7")
            .await
            .unwrap();
    });
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.id(), id, "the same session, reused");
    block_on(async {
        let err = conn
            .query_drop("SELECT * FROM scratch")
            .await
            .expect_err("the temporary table is gone");
        assert!(err.to_string().contains("doesn't exist"), "{err}");
        let var: Option<Option<i64>> = conn.query_first("SELECT @left_behind").await.unwrap();
        assert_eq!(var, Some(None), "the user variable is gone");
        let same: Option<i64> = conn
            .query_first("SELECT @@SESSION.sql_select_limit = @@GLOBAL.sql_select_limit")
            .await
            .unwrap();
        assert_eq!(
            same,
            Some(1),
            "the session variable is back to the global value"
        );
    });
    drop(conn);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_is_replaced() {
    let Some(url) = mysql_url("adapter_mysql_async::killed_while_idle_is_replaced") else {
        return;
    };
    let mut db = Db::new(&url, "idle_kill");
    // One slot, so that the next acquire must take the killed connection.
    let pool = db.pool(1);
    let conn = pool.acquire_blocking().unwrap();
    let old = conn.id();
    drop(conn);
    assert!(eventually(Duration::from_secs(10), || db.server_count() == 1));
    db.kill(old);
    assert!(
        eventually(Duration::from_secs(10), || db.server_count() == 0),
        "the server ended the killed session"
    );

    let mut conn = pool.acquire_blocking().unwrap();
    assert_ne!(conn.id(), old, "a new connection");
    assert_eq!(block_on(one(&mut conn)), 1);
    drop(conn);
    assert_eq!(pool.statistics().created, 2);
    assert!(
        eventually(Duration::from_secs(10), || pool.current_metrics().total
            == 1),
        "the killed one is gone from the pool"
    );
    assert!(
        eventually(Duration::from_secs(10), || db.server_count() == 1),
        "nothing leaked on the server"
    );
    pool.close_blocking();
    assert!(eventually(Duration::from_secs(10), || db.server_count() == 0));
}

#[test]
fn killed_while_lent_is_not_reused() {
    let Some(url) = mysql_url("adapter_mysql_async::killed_while_lent_is_not_reused") else {
        return;
    };
    let mut db = Db::new(&url, "lent_kill");
    let pool = db.pool(1);

    // The holder follows the recommended pattern: `connection_lost`, then `mark_broken`.
    let mut conn = pool.acquire_blocking().unwrap();
    let first = conn.id();
    db.kill(first);
    let err = block_on(conn.query_drop("SELECT 1")).expect_err("the session was killed");
    assert!(connection_lost(&err), "{err:?}");
    conn.mark_broken();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    let second = conn.id();
    assert_ne!(second, first);
    assert_eq!(conn.use_count(), 1, "a new connection");

    // A holder that does not mark it: the reset finds out, and it is not lent again either.
    db.kill(second);
    assert!(block_on(conn.query_drop("SELECT 1")).is_err());
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let third = conn.id();
    assert!(third != first && third != second, "a third connection");
    assert_eq!(block_on(one(&mut conn)), 1);
    drop(conn);
    assert!(eventually(Duration::from_secs(10), || pool
        .current_metrics()
        .total
        == 1));
    assert!(
        eventually(Duration::from_secs(10), || db.server_count() == 1),
        "only the live connection is open on the server"
    );
    pool.close_blocking();
}

#[test]
fn abandoned_query_is_not_waited_for() {
    let Some(url) = mysql_url("adapter_mysql_async::abandoned_query_is_not_waited_for") else {
        return;
    };
    let db = Db::new(&url, "abandoned");
    let pool = db.pool(1);
    smol::block_on(async {
        let mut conn = pool.acquire().await.unwrap();
        let old = conn.id();
        // A slow query, given up after 100 ms: its result may still come, later.
        let slow = conn.query_drop("SELECT SLEEP(30)");
        let gave_up = futures_lite::future::or(async { Some(slow.await) }, async {
            async_io::Timer::after(Duration::from_millis(100)).await;
            None
        })
        .await;
        assert!(gave_up.is_none(), "the query was still running");
        drop(conn);

        let started = Instant::now();
        let mut conn = pool.acquire().await.unwrap();
        assert_ne!(conn.id(), old, "a new connection");
        assert_eq!(one(&mut conn).await, 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the reset did not wait for the abandoned query: {:?}",
            started.elapsed()
        );
        drop(conn);
        pool.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_respected_as_the_server_counts() {
    let Some(url) =
        mysql_url("adapter_mysql_async::max_connections_respected_as_the_server_counts")
    else {
        return;
    };
    const MAX: usize = 3;
    // The admin runtime must not be started or dropped inside this one: a thread of its own.
    let name = unique("nexus_pool_async_max");
    let opts: Opts = OptsBuilder::from_opts(Opts::from_url(&url).unwrap())
        .db_name(Some(&name))
        .into();
    let mut admin = Conn::new(Opts::from_url(&url).unwrap()).await.unwrap();
    admin
        .query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    let count_sql =
        format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{name}'");

    let pool = MysqlAsyncConnectionFactory::from_opts(opts)
        .unwrap()
        .pool_builder()
        .config(
            nexus_pool::ConnectionPoolConfig::builder()
                .max_connections(MAX)
                .acquire_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..MAX {
        let mut conn = pool.acquire().await.unwrap();
        conn.query_drop("DO 1").await.unwrap();
        held.push(conn);
    }
    let count: Option<usize> = admin.query_first(&count_sql).await.unwrap();
    assert_eq!(count, Some(MAX), "one session per lent connection");
    match pool.acquire().await {
        Err(PoolError::Timeout { .. }) => {}
        other => panic!("a fourth acquire must wait and time out: {other:?}"),
    }
    let count: Option<usize> = admin.query_first(&count_sql).await.unwrap();
    assert_eq!(count, Some(MAX), "no fourth session was opened");
    drop(held);

    // A burst from more tasks than connections: the server never sees more than MAX.
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (pool, peak, sql) = (pool.clone(), peak.clone(), count_sql.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut conn = loop {
                        match pool.acquire().await {
                            Ok(conn) => break conn,
                            Err(PoolError::Timeout { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let seen: Option<usize> = conn.query_first(&sql).await.unwrap();
                    peak.fetch_max(seen.unwrap(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&peak),
        "the server saw {peak} sessions at most"
    );
    pool.close().await;
    let _ = admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await;
    let _ = admin.disconnect().await;
}

#[test]
fn on_connect_runs_again_after_each_reset() {
    let Some(url) = mysql_url("adapter_mysql_async::on_connect_runs_again_after_each_reset") else {
        return;
    };
    let db = Db::new(&url, "hook");
    let runs = Arc::new(AtomicUsize::new(0));
    let pool = {
        let runs = runs.clone();
        db.factory()
            .pool_builder()
            .config(server_config(1))
            .on_connect(move |conn: &mut MysqlAsyncConnection| {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    conn.query_drop("SET @app = 'billing', SESSION sql_select_limit = 1000")
                        .await
                        .map_err(Into::into)
                })
            })
            .build()
            .unwrap()
    };
    block_on(async {
        let mut conn = pool.acquire().await.unwrap();
        let id = conn.id();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let app: Option<String> = conn.query_first("SELECT @app").await.unwrap();
        assert_eq!(app.as_deref(), Some("billing"));
        conn.query_drop("SET @app = 'changed by a user', SESSION sql_select_limit = 5")
            .await
            .unwrap();
        drop(conn);

        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(conn.id(), id, "the same session, reset");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the hook ran again");
        let (app, limit): (Option<String>, i64) = conn
            .query_first("SELECT @app, @@SESSION.sql_select_limit")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(app.as_deref(), Some("billing"));
        assert_eq!(limit, 1000);
    });
    pool.close_blocking();
}
