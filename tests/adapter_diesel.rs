//! The Diesel adapter against real servers: PostgreSQL (`NEXUS_POOL_PG_URL`, else the standard
//! local address), MySQL / MariaDB (`NEXUS_POOL_MYSQL_URL`, else `mysql://root@127.0.0.1:3306/test`)
//! and SQLite (a temporary file). The same scenarios run on each backend, from one macro.
#![cfg(all(
    feature = "blocking",
    any(
        feature = "diesel-postgres",
        feature = "diesel-mysql",
        feature = "diesel-sqlite"
    )
))]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::servers::{server_config, unique};
use common::wait::eventually;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use nexus_pool::ConnectionPool;
use nexus_pool::adapters::diesel::{
    DieselConnection, DieselConnectionFactory, DieselReset, connection_lost,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Threads and inserts per thread in the concurrent scenario.
const THREADS: usize = 8;
const INSERTS: usize = 25;

diesel::table! {
    nexus_diesel_notes (tag, n) {
        tag -> Text,
        n -> Integer,
        body -> Text,
    }
}

use nexus_diesel_notes::dsl as notes;

#[derive(Insertable)]
#[diesel(table_name = nexus_diesel_notes)]
struct NewNote<'a> {
    tag: &'a str,
    n: i32,
    body: &'a str,
}

/// Diesel's own count of open transaction levels on `conn`.
fn depth<C: DieselConnection>(conn: &mut C) -> Option<u32> {
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .expect("the transaction manager is not in error")
        .map(|d| d.get())
}

type Pool<C> = ConnectionPool<DieselConnectionFactory<C>>;

fn pool<C: DieselConnection>(url: &str, max: usize) -> Pool<C> {
    DieselConnectionFactory::<C>::new(url)
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

#[cfg(feature = "diesel-postgres")]
mod pg {
    use super::*;
    use diesel::PgConnection;
    use diesel::sql_types::{BigInt, Bool, Integer, Text};

    pub type Conn = PgConnection;

    /// One test's server: the URL its pool uses (sessions tagged with an `application_name`),
    /// and an unpooled session for the test's own checks.
    pub struct Server {
        pub url: String,
        tag: String,
        admin: PgConnection,
    }

    static TABLE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

    pub fn server(test: &str) -> Option<Server> {
        let base = common::servers::pg_url(&format!("adapter_diesel::pg::{test}"))?;
        let tag = unique("np_diesel");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}application_name={tag}");
        let mut admin = PgConnection::establish(&base).expect("admin connection");
        let mut created = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        if !*created {
            admin
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS nexus_diesel_notes \
                     (tag TEXT NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL, \
                      PRIMARY KEY (tag, n))",
                )
                .unwrap();
            *created = true;
        }
        Some(Server { url, tag, admin })
    }

    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Integer)]
        id: i32,
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    #[derive(QueryableByName)]
    struct Flag {
        #[diesel(sql_type = Bool)]
        flag: bool,
    }

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }

    pub fn session_id(conn: &mut Conn) -> i64 {
        diesel::sql_query("SELECT pg_backend_pid() AS id")
            .get_result::<Id>(conn)
            .unwrap()
            .id
            .into()
    }

    impl Server {
        pub fn sessions(&mut self) -> i64 {
            diesel::sql_query(
                "SELECT count(*) AS count FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind::<Text, _>(&self.tag)
            .get_result::<Count>(&mut self.admin)
            .unwrap()
            .count
        }

        /// Whether the session `id` sits inside a transaction block, as the server sees it.
        pub fn in_transaction(&mut self, id: i64) -> bool {
            diesel::sql_query(
                "SELECT coalesce(bool_or(state LIKE 'idle in transaction%'), false) AS flag \
                 FROM pg_stat_activity WHERE pid = $1",
            )
            .bind::<Integer, _>(id as i32)
            .get_result::<Flag>(&mut self.admin)
            .unwrap()
            .flag
        }

        /// Terminates every pooled session; returns how many.
        pub fn kill_all(&mut self) -> i64 {
            let n = self.sessions();
            diesel::sql_query(
                "SELECT pg_terminate_backend(pid) AS flag FROM pg_stat_activity \
                 WHERE application_name = $1",
            )
            .bind::<Text, _>(&self.tag)
            .load::<Flag>(&mut self.admin)
            .unwrap();
            assert!(
                eventually(Duration::from_secs(5), || self.sessions() == 0),
                "terminated sessions are gone"
            );
            n
        }

        pub fn rows(&mut self, tag: &str) -> i64 {
            notes::nexus_diesel_notes
                .filter(notes::tag.eq(tag))
                .count()
                .get_result(&mut self.admin)
                .unwrap()
        }

        pub fn cleanup(&mut self, tag: &str) {
            diesel::delete(notes::nexus_diesel_notes.filter(notes::tag.eq(tag)))
                .execute(&mut self.admin)
                .unwrap();
        }
    }

    /// Changes a session setting; [`setting_is_default`] says whether it was reset.
    pub fn change_setting(conn: &mut Conn) {
        conn.batch_execute("SET TIME ZONE 'Asia/Tokyo'; CREATE TEMP TABLE np_scratch (x int)")
            .unwrap();
    }

    pub fn setting_is_default(conn: &mut Conn) -> bool {
        let tz = diesel::sql_query("SELECT current_setting('TimeZone') AS value")
            .get_result::<Setting>(conn)
            .unwrap()
            .value;
        let temp = diesel::sql_query("SELECT to_regclass('pg_temp.np_scratch') IS NULL AS flag")
            .get_result::<Flag>(conn)
            .unwrap()
            .flag;
        tz == "UTC" && temp
    }

    #[test]
    fn pg_reset_sends_no_rollback_outside_a_block() {
        // The clean reset is one simple query that must succeed on a session left clean: no
        // ROLLBACK (and no warning) is needed, and the same session is lent again.
        let Some(server) = server("pg_reset_sends_no_rollback_outside_a_block") else {
            return;
        };
        let pool = super::pool::<Conn>(&server.url, 1);
        let first = session_id(&mut pool.acquire_blocking().unwrap());
        for _ in 0..3 {
            let mut conn = pool.acquire_blocking().unwrap();
            assert_eq!(session_id(&mut conn), first);
            assert!(conn.use_count() > 1);
        }
        pool.close_blocking();
    }
}

#[cfg(feature = "diesel-mysql")]
mod mysql {
    use super::*;
    use diesel::MysqlConnection;
    use diesel::sql_types::{BigInt, Bool, Unsigned};

    pub type Conn = MysqlConnection;

    pub const MYSQL_VAR: &str = "NEXUS_POOL_MYSQL_URL";
    pub const MYSQL_LOCAL: &str = "mysql://root@127.0.0.1:3306/test";

    /// One test's server: a database of its own (so its sessions can be counted by it), and an
    /// unpooled session for the test's own checks.
    pub struct Server {
        pub url: String,
        db: String,
        admin: MysqlConnection,
    }

    fn base_url(test: &str) -> Option<String> {
        let asked = std::env::var(MYSQL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty());
        let url = asked.clone().unwrap_or_else(|| MYSQL_LOCAL.to_owned());
        let addr = common::servers::host_port(&url, 3306);
        let reachable = std::net::TcpStream::connect_timeout(
            &std::net::ToSocketAddrs::to_socket_addrs(&addr)
                .ok()?
                .next()?,
            Duration::from_secs(3),
        );
        match (reachable, asked) {
            (Ok(_), _) => Some(url),
            (Err(e), Some(_)) => {
                panic!("MySQL is not reachable at {addr} ({e}), but {MYSQL_VAR}={url} asks for it")
            }
            (Err(e), None) => {
                common::servers::skip(
                    "no server",
                    test,
                    &format!(
                        "{MYSQL_VAR} is unset and no MySQL answers at {addr} ({e}); start \
                         MariaDB, or set {MYSQL_VAR}"
                    ),
                );
                None
            }
        }
    }

    pub fn server(test: &str) -> Option<Server> {
        let base = base_url(&format!("adapter_diesel::mysql::{test}"))?;
        let db = unique("np_diesel");
        let mut admin = MysqlConnection::establish(&base).expect("admin connection");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.nexus_diesel_notes \
                 (tag VARCHAR(100) NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL, \
                  PRIMARY KEY (tag, n)) ENGINE = InnoDB"
            ))
            .unwrap();
        let (prefix, query) = base
            .split_once('?')
            .map_or((&*base, None), |(p, q)| (p, Some(q)));
        let root = prefix.rsplit_once('/').map_or(prefix, |(r, _)| r);
        let url = match query {
            Some(q) => format!("{root}/{db}?{q}"),
            None => format!("{root}/{db}"),
        };
        admin.batch_execute(&format!("USE {db}")).unwrap();
        Some(Server { url, db, admin })
    }

    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Unsigned<BigInt>)]
        id: u64,
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    #[derive(QueryableByName)]
    struct Flag {
        #[diesel(sql_type = Bool)]
        flag: bool,
    }

    pub fn session_id(conn: &mut Conn) -> i64 {
        diesel::sql_query("SELECT CONNECTION_ID() AS id")
            .get_result::<Id>(conn)
            .unwrap()
            .id as i64
    }

    impl Server {
        pub fn sessions(&mut self) -> i64 {
            diesel::sql_query(format!(
                "SELECT count(*) AS count FROM information_schema.PROCESSLIST \
                 WHERE DB = '{}' AND ID <> CONNECTION_ID()",
                self.db
            ))
            .get_result::<Count>(&mut self.admin)
            .unwrap()
            .count
        }

        /// Whether the session `id` has an InnoDB transaction open, as the server sees it.
        /// `INNODB_TRX` is a cache that InnoDB refreshes only when it was not read for 100 ms,
        /// so it is read after a pause longer than that.
        pub fn in_transaction(&mut self, id: i64) -> bool {
            std::thread::sleep(Duration::from_millis(150));
            self.in_transaction_now(id)
        }

        fn in_transaction_now(&mut self, id: i64) -> bool {
            diesel::sql_query(format!(
                "SELECT count(*) AS count FROM information_schema.INNODB_TRX \
                 WHERE trx_mysql_thread_id = {id}"
            ))
            .get_result::<Count>(&mut self.admin)
            .unwrap()
            .count
                > 0
        }

        /// Kills every pooled session; returns how many.
        pub fn kill_all(&mut self) -> i64 {
            let ids: Vec<Id> = diesel::sql_query(format!(
                "SELECT ID AS id FROM information_schema.PROCESSLIST \
                 WHERE DB = '{}' AND ID <> CONNECTION_ID()",
                self.db
            ))
            .load(&mut self.admin)
            .unwrap();
            for id in &ids {
                self.admin
                    .batch_execute(&format!("KILL CONNECTION {}", id.id))
                    .unwrap();
            }
            assert!(
                eventually(Duration::from_secs(5), || self.sessions() == 0),
                "killed sessions are gone"
            );
            ids.len() as i64
        }

        pub fn rows(&mut self, tag: &str) -> i64 {
            notes::nexus_diesel_notes
                .filter(notes::tag.eq(tag))
                .count()
                .get_result(&mut self.admin)
                .unwrap()
        }

        pub fn cleanup(&mut self, _tag: &str) {
            self.admin
                .batch_execute(&format!("DROP DATABASE {}", self.db))
                .unwrap();
        }
    }

    pub fn change_setting(conn: &mut Conn) {
        conn.batch_execute("SET time_zone = '+09:00'; SET autocommit = 0")
            .unwrap();
    }

    pub fn setting_is_default(conn: &mut Conn) -> bool {
        diesel::sql_query("SELECT (@@session.time_zone = '+00:00' AND @@autocommit = 1) AS flag")
            .get_result::<Flag>(conn)
            .unwrap()
            .flag
    }
}

#[cfg(feature = "diesel-sqlite")]
mod sqlite {
    use super::*;
    use diesel::SqliteConnection;
    use diesel::sql_types::{BigInt, Bool};

    pub type Conn = SqliteConnection;

    /// A temporary database file with the test's table.
    pub struct Server {
        pub url: String,
        _db: common::servers::TempDb,
        admin: SqliteConnection,
    }

    pub fn server(_test: &str) -> Option<Server> {
        let db = common::servers::TempDb::new("np_diesel");
        let url = db.path().to_str().expect("a UTF-8 temp path").to_owned();
        let mut admin = SqliteConnection::establish(&url).unwrap();
        admin
            .batch_execute(
                "PRAGMA busy_timeout = 5000; CREATE TABLE nexus_diesel_notes \
                 (tag TEXT NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL, \
                  PRIMARY KEY (tag, n))",
            )
            .unwrap();
        Some(Server {
            url,
            _db: db,
            admin,
        })
    }

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }

    #[derive(QueryableByName)]
    struct Flag {
        #[diesel(sql_type = Bool)]
        flag: bool,
    }

    impl Server {
        pub fn rows(&mut self, tag: &str) -> i64 {
            notes::nexus_diesel_notes
                .filter(notes::tag.eq(tag))
                .count()
                .get_result(&mut self.admin)
                .unwrap()
        }

        pub fn cleanup(&mut self, _tag: &str) {}

        /// Whether a write lock is held: a write from another connection cannot start.
        pub fn locked(&mut self) -> bool {
            self.admin
                .batch_execute("PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; ROLLBACK")
                .is_err()
        }
    }

    pub fn change_setting(conn: &mut Conn) {
        conn.batch_execute(
            "PRAGMA foreign_keys = OFF; CREATE TEMP TABLE np_scratch (x); \
             ATTACH DATABASE ':memory:' AS scratch",
        )
        .unwrap();
    }

    pub fn setting_is_default(conn: &mut Conn) -> bool {
        let fk = diesel::sql_query("SELECT foreign_keys AS flag FROM pragma_foreign_keys")
            .get_result::<Flag>(conn)
            .unwrap()
            .flag;
        let objects = diesel::sql_query(
            "SELECT (SELECT count(*) FROM temp.sqlite_master) \
             + (SELECT count(*) FROM pragma_database_list WHERE name = 'scratch') AS count",
        )
        .get_result::<Count>(conn)
        .unwrap()
        .count;
        fk && objects == 0
    }

    #[test]
    fn sqlite_open_transaction_releases_the_write_lock() {
        let mut server = server("").unwrap();
        let pool = super::pool::<Conn>(&server.url, 1);
        let mut conn = pool.acquire_blocking().unwrap();
        conn.batch_execute("BEGIN IMMEDIATE").unwrap();
        drop(conn);
        assert!(server.locked(), "the lent connection held the write lock");
        drop(pool.acquire_blocking().unwrap()); // reset on reuse
        assert!(!server.locked(), "the reset rolled back and released it");
        pool.close_blocking();
    }
}

/// The scenarios every backend runs.
macro_rules! scenarios {
    ($backend:ident, $mod:ident) => {
        mod $mod {
            use super::*;
            use crate::$backend::{Conn, change_setting, server, setting_is_default};

            fn insert(conn: &mut Conn, tag: &str, n: i32) -> QueryResult<usize> {
                diesel::insert_into(notes::nexus_diesel_notes)
                    .values(&NewNote {
                        tag,
                        n,
                        body: "hello",
                    })
                    .execute(conn)
            }

            #[test]
            fn inserts_and_queries_from_many_threads() {
                let Some(mut server) = server("inserts_and_queries_from_many_threads") else {
                    return;
                };
                let tag = unique("many");
                let pool = pool::<Conn>(&server.url, 4);
                let start = Arc::new(Barrier::new(THREADS));
                let workers: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let (pool, start, tag) = (pool.clone(), start.clone(), tag.clone());
                        std::thread::spawn(move || {
                            start.wait();
                            for i in 0..INSERTS {
                                let n = (t * INSERTS + i) as i32;
                                pool.with_connection_blocking(|conn| -> Result<String, BoxError> {
                                    Ok(conn.transaction(|conn| {
                                        insert(conn, &tag, n)?;
                                        notes::nexus_diesel_notes
                                            .filter(notes::tag.eq(&tag))
                                            .filter(notes::n.eq(n))
                                            .select(notes::body)
                                            .first::<String>(conn)
                                    })?)
                                })
                                .map(|body| assert_eq!(body, "hello"))
                                .unwrap();
                            }
                        })
                    })
                    .collect();
                for worker in workers {
                    worker.join().unwrap();
                }
                assert_eq!(server.rows(&tag), (THREADS * INSERTS) as i64);
                assert!(pool.current_metrics().total <= 4);
                pool.close_blocking();
                server.cleanup(&tag);
            }

            /// The panic is caught inside the closure, so the guard goes back as usual: Diesel's
            /// transaction is still open on it, and the reset rolls it back.
            #[test]
            fn panic_inside_transaction_caught_connection_comes_back_clean() {
                let Some(mut server) =
                    server("panic_inside_transaction_caught_connection_comes_back_clean")
                else {
                    return;
                };
                let tag = unique("panic_caught");
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                let caught = catch_unwind(AssertUnwindSafe(|| {
                    let _ = conn.transaction(|c| {
                        insert(c, &tag, 1)?;
                        panic!("a handler bug");
                        #[allow(unreachable_code)]
                        QueryResult::Ok(())
                    });
                }));
                assert!(caught.is_err());
                assert_eq!(
                    depth(&mut *conn),
                    Some(1),
                    "Diesel still counts the transaction"
                );
                drop(conn);

                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2, "the same connection, reset");
                assert_eq!(depth(&mut *next), None);
                insert(&mut next, &tag, 2).unwrap(); // autocommit: visible at once
                drop(next);
                assert_eq!(server.rows(&tag), 1, "the panicked insert was rolled back");
                pool.close_blocking();
                server.cleanup(&tag);
            }

            /// The panic unwinds through the guard: the pool destroys that connection, and the
            /// next user gets a fresh one, outside any transaction.
            #[test]
            fn panic_inside_transaction_unwinding_the_guard_destroys_it() {
                let Some(mut server) =
                    server("panic_inside_transaction_unwinding_the_guard_destroys_it")
                else {
                    return;
                };
                let tag = unique("panic_unwound");
                let pool = pool::<Conn>(&server.url, 1);
                let worker = {
                    let (pool, tag) = (pool.clone(), tag.clone());
                    std::thread::spawn(move || {
                        let mut conn = pool.acquire_blocking().unwrap();
                        let _ = conn.transaction(|c| {
                            insert(c, &tag, 1)?;
                            panic!("a handler bug");
                            #[allow(unreachable_code)]
                            QueryResult::Ok(())
                        });
                    })
                };
                assert!(worker.join().is_err());
                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 1, "a new connection");
                assert_eq!(depth(&mut *next), None);
                drop(next);
                assert_eq!(server.rows(&tag), 0, "the panicked insert never committed");
                pool.close_blocking();
                server.cleanup(&tag);
            }

            /// A transaction begun through Diesel's transaction manager and never ended.
            #[test]
            fn tracked_transaction_left_open_is_rolled_back() {
                let Some(mut server) = server("tracked_transaction_left_open_is_rolled_back")
                else {
                    return;
                };
                let tag = unique("tracked");
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                AnsiTransactionManager::begin_transaction(&mut *conn).unwrap();
                AnsiTransactionManager::begin_transaction(&mut *conn).unwrap(); // a savepoint
                insert(&mut conn, &tag, 1).unwrap();
                assert_eq!(depth(&mut *conn), Some(2));
                drop(conn);

                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2, "the same connection, reset");
                assert_eq!(depth(&mut *next), None);
                drop(next);
                assert_eq!(server.rows(&tag), 0, "rolled back, not committed");
                pool.close_blocking();
                server.cleanup(&tag);
            }

            /// A transaction begun with raw SQL, which Diesel does not track.
            #[test]
            fn raw_begin_left_open_is_rolled_back() {
                let Some(mut server) = server("raw_begin_left_open_is_rolled_back") else {
                    return;
                };
                let tag = unique("raw");
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                conn.batch_execute("BEGIN").unwrap();
                insert(&mut conn, &tag, 1).unwrap();
                assert_eq!(depth(&mut *conn), None, "Diesel does not know");
                drop(conn);

                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2, "the same connection, reset");
                // Autocommit again: this insert is visible to others at once.
                insert(&mut next, &tag, 2).unwrap();
                drop(next);
                assert_eq!(server.rows(&tag), 1, "the first insert was rolled back");
                pool.close_blocking();
                server.cleanup(&tag);
            }

            /// `begin_test_transaction` is kept across checkouts, as with `diesel::r2d2`.
            #[test]
            fn test_transaction_is_kept() {
                let Some(mut server) = server("test_transaction_is_kept") else {
                    return;
                };
                let tag = unique("test_tx");
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                conn.begin_test_transaction().unwrap();
                insert(&mut conn, &tag, 1).unwrap();
                drop(conn);
                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2);
                let seen: i64 = notes::nexus_diesel_notes
                    .filter(notes::tag.eq(&tag))
                    .count()
                    .get_result(&mut *next)
                    .unwrap();
                assert_eq!(seen, 1, "the test transaction's write is still there");
                drop(next);
                pool.close_blocking();
                assert_eq!(server.rows(&tag), 0, "and never committed");
                server.cleanup(&tag);
            }

            /// `DieselReset::Rollback` ends a transaction left open and leaves the session as it
            /// was.
            #[test]
            fn rollback_mode_ends_transactions_and_keeps_the_session() {
                let Some(mut server) =
                    server("rollback_mode_ends_transactions_and_keeps_the_session")
                else {
                    return;
                };
                let tag = unique("rollback_mode");
                let factory = DieselConnectionFactory::<Conn>::new(&server.url);
                let check = factory.health_check().reset_mode(DieselReset::Rollback);
                let pool = factory
                    .pool_builder()
                    .health_check(check)
                    .config(server_config(1))
                    .build()
                    .unwrap();
                let mut conn = pool.acquire_blocking().unwrap();
                change_setting(&mut conn);
                conn.batch_execute("BEGIN").unwrap();
                insert(&mut conn, &tag, 1).unwrap();
                drop(conn);

                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2);
                // Committed whatever the session's autocommit (MySQL's was turned off above).
                next.transaction(|c| insert(c, &tag, 2)).unwrap();
                let kept = !setting_is_default(&mut next);
                drop(next);
                assert_eq!(server.rows(&tag), 1, "the first insert was rolled back");
                assert!(kept, "the session state was left as it was");
                pool.close_blocking();
                server.cleanup(&tag);
            }

            #[test]
            fn session_state_is_reset() {
                let Some(mut server) = server("session_state_is_reset") else {
                    return;
                };
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                assert!(setting_is_default(&mut conn));
                change_setting(&mut conn);
                assert!(!setting_is_default(&mut conn));
                drop(conn);
                let mut next = pool.acquire_blocking().unwrap();
                assert_eq!(next.use_count(), 2);
                assert!(setting_is_default(&mut next), "reset to the defaults");
                drop(next);
                pool.close_blocking();
                server.cleanup("");
            }
        }
    };
}

/// The scenarios that need a server: killed sessions and the server's own count.
macro_rules! server_scenarios {
    ($backend:ident, $mod:ident) => {
        mod $mod {
            use super::*;
            use crate::$backend::{Conn, server, session_id};

            fn open_n(pool: &Pool<Conn>, n: usize) -> Vec<i64> {
                let mut guards: Vec<_> = (0..n).map(|_| pool.acquire_blocking().unwrap()).collect();
                guards.iter_mut().map(|c| session_id(c)).collect()
            }

            #[test]
            fn killed_while_idle_is_replaced() {
                let Some(mut server) = server("killed_while_idle_is_replaced") else {
                    return;
                };
                let pool = pool::<Conn>(&server.url, 2);
                let old = open_n(&pool, 2);
                assert_eq!(server.kill_all(), 2);
                let new = open_n(&pool, 2);
                assert!(
                    new.iter().all(|id| !old.contains(id)),
                    "no killed session was lent: {old:?} vs {new:?}"
                );
                assert_eq!(server.sessions(), 2);
                pool.close_blocking();
                server.cleanup("");
            }

            #[test]
            fn killed_while_lent_is_marked_broken_and_replaced() {
                let Some(mut server) = server("killed_while_lent_is_marked_broken_and_replaced")
                else {
                    return;
                };
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                let id = session_id(&mut conn);
                server.kill_all();
                let err = notes::nexus_diesel_notes
                    .count()
                    .get_result::<i64>(&mut *conn)
                    .expect_err("the session was killed");
                assert!(connection_lost(&err), "recognised as lost: {err:?}");
                conn.mark_broken();
                drop(conn);
                let mut fresh = pool.acquire_blocking().unwrap();
                assert_eq!(fresh.use_count(), 1);
                assert_ne!(session_id(&mut fresh), id);
                drop(fresh);
                pool.close_blocking();
                server.cleanup("");
            }

            /// A holder that forgets `mark_broken`: the reset fails and the pool replaces it.
            #[test]
            fn killed_while_lent_not_marked_is_caught_by_reset() {
                let Some(mut server) = server("killed_while_lent_not_marked_is_caught_by_reset")
                else {
                    return;
                };
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                let id = session_id(&mut conn);
                server.kill_all();
                drop(conn);
                let mut fresh = pool.acquire_blocking().unwrap();
                assert_eq!(fresh.use_count(), 1);
                assert_ne!(session_id(&mut fresh), id);
                drop(fresh);
                pool.close_blocking();
                server.cleanup("");
            }

            /// Left open with raw SQL: the server itself says the session is out of the
            /// transaction once the connection is lent again.
            #[test]
            fn server_sees_no_transaction_after_reuse() {
                let Some(mut server) = server("server_sees_no_transaction_after_reuse") else {
                    return;
                };
                let tag = unique("server_tx");
                let pool = pool::<Conn>(&server.url, 1);
                let mut conn = pool.acquire_blocking().unwrap();
                let id = session_id(&mut conn);
                conn.batch_execute("BEGIN").unwrap();
                diesel::insert_into(notes::nexus_diesel_notes)
                    .values(&NewNote {
                        tag: &tag,
                        n: 1,
                        body: "x",
                    })
                    .execute(&mut *conn)
                    .unwrap();
                drop(conn);
                assert!(server.in_transaction(id), "left inside a transaction");
                let next = pool.acquire_blocking().unwrap();
                assert!(
                    !server.in_transaction(id),
                    "rolled back before the next lend"
                );
                drop(next);
                pool.close_blocking();
                server.cleanup(&tag);
            }

            #[test]
            fn max_connections_respected_as_the_server_counts_them() {
                let Some(mut server) =
                    server("max_connections_respected_as_the_server_counts_them")
                else {
                    return;
                };
                const MAX: usize = 3;
                const ROUNDS: usize = 10;
                let pool = pool::<Conn>(&server.url, MAX);
                let peak = Arc::new(AtomicI64::new(0));
                let start = Arc::new(Barrier::new(THREADS + 1));
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let (pool, start) = (pool.clone(), start.clone());
                        std::thread::spawn(move || {
                            start.wait();
                            for _ in 0..ROUNDS {
                                let mut conn = pool.acquire_blocking().unwrap();
                                session_id(&mut conn);
                            }
                        })
                    })
                    .collect();
                start.wait();
                while !workers.iter().all(|w| w.is_finished()) {
                    peak.fetch_max(server.sessions(), Ordering::AcqRel);
                }
                for w in workers {
                    w.join().unwrap();
                }
                // Every slot taken at once: the server counts exactly MAX sessions.
                let held: Vec<_> = (0..MAX).map(|_| pool.acquire_blocking().unwrap()).collect();
                assert_eq!(server.sessions(), MAX as i64);
                assert!(pool.try_acquire().is_err());
                drop(held);
                let peak = peak.load(Ordering::Acquire);
                assert!(
                    peak <= MAX as i64,
                    "the server saw {peak} sessions, max is {MAX}"
                );
                pool.close_blocking();
                assert!(
                    eventually(Duration::from_secs(5), || server.sessions() == 0),
                    "close ended every session"
                );
                server.cleanup("");
            }
        }
    };
}

#[cfg(feature = "diesel-postgres")]
scenarios!(pg, pg_scenarios);
#[cfg(feature = "diesel-postgres")]
server_scenarios!(pg, pg_server);
#[cfg(feature = "diesel-mysql")]
scenarios!(mysql, mysql_scenarios);
#[cfg(feature = "diesel-mysql")]
server_scenarios!(mysql, mysql_server);
#[cfg(feature = "diesel-sqlite")]
scenarios!(sqlite, sqlite_scenarios);
