//! The blocking `mysql` adapter against a real MySQL or MariaDB (`NEXUS_POOL_MYSQL_URL`, else the
//! standard local address). Each test works in a database of its own, so that the server's
//! process list, filtered by that database, counts exactly the test's pooled connections.
#![cfg(all(feature = "mysql", feature = "blocking"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::servers::{mysql_url, server_config, unique};
use common::wait::eventually;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use nexus_pool::adapters::mysql::{MysqlConnectionFactory, connection_lost};
use nexus_pool::{ConnectionPool, PoolError};

/// Threads and queries per thread in the concurrent test.
const THREADS: usize = 8;
const QUERIES: usize = 25;

type Pool = ConnectionPool<MysqlConnectionFactory>;

/// A database of the test's own, dropped when the test ends (passing or failing), and an admin
/// connection outside the pool to watch and disturb the pool's connections.
struct Db {
    name: String,
    url: String,
    admin: Conn,
}

impl Db {
    fn new(url: &str, test: &str) -> Self {
        let name = unique(&format!("nexus_pool_{test}"));
        let mut admin = Conn::new(Opts::from_url(url).expect("the MySQL URL parses"))
            .expect("admin connection");
        admin
            .query_drop(format!("CREATE DATABASE `{name}`"))
            .unwrap();
        Db {
            name,
            url: url.to_owned(),
            admin,
        }
    }

    /// A factory for connections into this database.
    fn factory(&self) -> MysqlConnectionFactory {
        let base = MysqlConnectionFactory::new(&self.url).unwrap();
        MysqlConnectionFactory::from_opts(
            OptsBuilder::from_opts(base.opts().clone()).db_name(Some(&self.name)),
        )
    }

    fn pool(&self, max: usize) -> Pool {
        self.factory()
            .pool_builder()
            .config(server_config(max))
            .build()
            .unwrap()
    }

    /// The connections the server has open in this database.
    fn server_count(&mut self) -> usize {
        self.admin
            .exec_first::<usize, _, _>(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?",
                (&self.name,),
            )
            .unwrap()
            .unwrap()
    }

    fn kill(&mut self, id: u32) {
        self.admin
            .query_drop(format!("KILL CONNECTION {id}"))
            .unwrap();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self
            .admin
            .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

#[test]
fn queries_from_many_threads() {
    let Some(url) = mysql_url("adapter_mysql::queries_from_many_threads") else {
        return;
    };
    let mut db = Db::new(&url, "threads");
    let pool = db.pool(4);
    pool.acquire_blocking()
        .unwrap()
        .query_drop("CREATE TABLE hits (thread INT, n INT)")
        .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for n in 0..QUERIES {
                    let mut conn = pool.acquire_blocking().unwrap();
                    conn.exec_drop("INSERT INTO hits VALUES (?, ?)", (t, n))
                        .unwrap();
                    let mine: Option<usize> = conn
                        .exec_first("SELECT COUNT(*) FROM hits WHERE thread = ?", (t,))
                        .unwrap();
                    assert_eq!(mine, Some(n + 1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: Option<usize> = pool
        .acquire_blocking()
        .unwrap()
        .query_first("SELECT COUNT(*) FROM hits")
        .unwrap();
    assert_eq!(total, Some(THREADS * QUERIES));
    assert!(db.server_count() <= 4);
    pool.close_blocking();
}

#[test]
fn open_transaction_is_rolled_back_before_the_next_user() {
    let Some(url) =
        mysql_url("adapter_mysql::open_transaction_is_rolled_back_before_the_next_user")
    else {
        return;
    };
    let mut db = Db::new(&url, "tx");
    let pool = db.pool(1);
    let mut conn = pool.acquire_blocking().unwrap();
    conn.query_drop("CREATE TABLE t (x INT) ENGINE=InnoDB")
        .unwrap();
    let id = conn.connection_id();
    conn.query_drop("START TRANSACTION").unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").unwrap();
    drop(conn); // no COMMIT, no ROLLBACK

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.connection_id(), id, "the same session, reused");
    let in_tx: Option<i64> = conn.query_first("SELECT @@in_transaction").unwrap();
    assert_eq!(in_tx, Some(0), "no transaction open");
    let rows: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").unwrap();
    assert_eq!(rows, Some(0), "the insert was rolled back");
    drop(conn);
    let seen: Option<i64> = db
        .admin
        .query_first(format!("SELECT COUNT(*) FROM `{}`.t", db.name))
        .unwrap();
    assert_eq!(seen, Some(0));
    pool.close_blocking();
}

#[test]
fn temporary_table_and_session_variables_do_not_survive() {
    let Some(url) =
        mysql_url("adapter_mysql::temporary_table_and_session_variables_do_not_survive")
    else {
        return;
    };
    let db = Db::new(&url, "session");
    let pool = db.pool(1);
    let mut conn = pool.acquire_blocking().unwrap();
    let id = conn.connection_id();
    conn.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
        .unwrap();
    conn.query_drop("SET @left_behind = 42, SESSION sql_select_limit = 7")
        .unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.connection_id(), id, "the same session, reused");
    let err = conn
        .query_drop("SELECT * FROM scratch")
        .expect_err("the temporary table is gone");
    assert!(err.to_string().contains("doesn't exist"), "{err}");
    let var: Option<Option<i64>> = conn.query_first("SELECT @left_behind").unwrap();
    assert_eq!(var, Some(None), "the user variable is gone");
    let same: Option<i64> = conn
        .query_first("SELECT @@SESSION.sql_select_limit = @@GLOBAL.sql_select_limit")
        .unwrap();
    assert_eq!(
        same,
        Some(1),
        "the session variable is back to the global value"
    );
    drop(conn);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_is_replaced() {
    let Some(url) = mysql_url("adapter_mysql::killed_while_idle_is_replaced") else {
        return;
    };
    let mut db = Db::new(&url, "idle_kill");
    // One slot, so that the next acquire must take the killed connection.
    let pool = db.pool(1);
    let mut conn = pool.acquire_blocking().unwrap();
    let old = conn.connection_id();
    conn.query_drop("DO 1").unwrap();
    drop(conn);
    // (The client may have replaced its first TCP session with a Unix socket one: the server
    // ends the first one a moment later.)
    assert!(eventually(Duration::from_secs(10), || db.server_count() == 1));
    db.kill(old);
    assert!(
        eventually(Duration::from_secs(10), || db.server_count() == 0),
        "the server ended the killed session"
    );

    let mut conn = pool.acquire_blocking().unwrap();
    assert_ne!(conn.connection_id(), old, "a new connection");
    let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
    drop(conn);
    assert_eq!(pool.statistics().created, 2);
    // The pool's maintenance thread destroys the killed one, off the acquirer's path.
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
    let Some(url) = mysql_url("adapter_mysql::killed_while_lent_is_not_reused") else {
        return;
    };
    let mut db = Db::new(&url, "lent_kill");
    let pool = db.pool(1);

    // The holder follows the recommended pattern: `connection_lost`, then `mark_broken`.
    let mut conn = pool.acquire_blocking().unwrap();
    let first = conn.connection_id();
    db.kill(first);
    let err = conn
        .query_drop("SELECT 1")
        .expect_err("the session was killed");
    assert!(connection_lost(&err), "{err:?}");
    conn.mark_broken();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    let second = conn.connection_id();
    assert_ne!(second, first);
    assert_eq!(conn.use_count(), 1, "a new connection");

    // A holder that does not mark it: the reset finds out, and it is not lent again either.
    db.kill(second);
    assert!(conn.query_drop("SELECT 1").is_err());
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let third = conn.connection_id();
    assert!(third != first && third != second, "a third connection");
    let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
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
fn max_connections_respected_as_the_server_counts() {
    let Some(url) = mysql_url("adapter_mysql::max_connections_respected_as_the_server_counts")
    else {
        return;
    };
    const MAX: usize = 3;
    let mut db = Db::new(&url, "max");
    let pool = ConnectionPool::builder(db.factory())
        .config(
            nexus_pool::ConnectionPoolConfig::builder()
                .max_connections(MAX)
                .acquire_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // MAX holders at once, each waiting for the others before letting go.
    let all_held = Arc::new(Barrier::new(MAX + 1));
    let counted = Arc::new(Barrier::new(MAX + 1));
    let holders: Vec<_> = (0..MAX)
        .map(|_| {
            let (pool, all_held, counted) = (pool.clone(), all_held.clone(), counted.clone());
            std::thread::spawn(move || {
                let mut conn = pool.acquire_blocking().unwrap();
                conn.query_drop("DO 1").unwrap();
                all_held.wait();
                counted.wait();
            })
        })
        .collect();
    all_held.wait();
    assert_eq!(db.server_count(), MAX, "one session per lent connection");
    match pool.acquire_blocking() {
        Err(PoolError::Timeout { .. }) => {}
        other => panic!("a fourth acquire must wait and time out: {other:?}"),
    }
    assert_eq!(db.server_count(), MAX, "no fourth session was opened");
    counted.wait();
    for h in holders {
        h.join().unwrap();
    }

    // A burst from more threads than connections: the server never sees more than MAX.
    let peak = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pool, peak, name) = (pool.clone(), peak.clone(), db.name.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let mut conn = loop {
                        match pool.acquire_blocking() {
                            Ok(conn) => break conn,
                            Err(PoolError::Timeout { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let seen: Option<usize> = conn
                        .exec_first(
                            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?",
                            (&name,),
                        )
                        .unwrap();
                    peak.fetch_max(seen.unwrap(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&peak),
        "the server saw {peak} sessions at most"
    );
    pool.close_blocking();
    assert!(eventually(Duration::from_secs(10), || db.server_count() == 0));
}

#[test]
fn on_connect_runs_again_after_each_reset() {
    let Some(url) = mysql_url("adapter_mysql::on_connect_runs_again_after_each_reset") else {
        return;
    };
    let db = Db::new(&url, "hook");
    let runs = Arc::new(AtomicUsize::new(0));
    let pool = {
        let runs = runs.clone();
        db.factory()
            .pool_builder()
            .config(server_config(1))
            .on_connect(move |conn: &mut Conn| {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    conn.query_drop("SET @app = 'billing', SESSION sql_select_limit = 1000")
                })
            })
            .build()
            .unwrap()
    };
    let mut conn = pool.acquire_blocking().unwrap();
    let id = conn.connection_id();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let app: Option<String> = conn.query_first("SELECT @app").unwrap();
    assert_eq!(app.as_deref(), Some("billing"));
    conn.query_drop("SET @app = 'changed by a user', SESSION sql_select_limit = 5")
        .unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.connection_id(), id, "the same session, reset");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the hook ran again");
    let (app, limit): (Option<String>, i64) = conn
        .query_first("SELECT @app, @@SESSION.sql_select_limit")
        .unwrap()
        .unwrap();
    assert_eq!(app.as_deref(), Some("billing"));
    assert_eq!(limit, 1000);
    drop(conn);
    pool.close_blocking();
}
