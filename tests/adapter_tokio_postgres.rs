//! The `tokio-postgres` adapter against a real PostgreSQL (`NEXUS_POOL_PG_URL`, else the standard
//! local address): from plain threads with no runtime, and from tokio, smol and async-std tasks.
#![cfg(all(feature = "tokio-postgres", feature = "blocking", feature = "async"))]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::servers::{
    driver_error, pg_url, refused_port, server_config, start_error, start_one, unique,
};
use common::wait::eventually;
use futures_lite::future::block_on;
use nexus_pool::adapters::tokio_postgres::{
    PostgresReset, TokioPostgresConnection, TokioPostgresConnectionFactory, TokioPostgresError,
    TokioPostgresHealthCheck, connection_lost,
};
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, CreateError, PoolError,
    PooledConnection,
};
use tokio_postgres::error::SqlState;

type Factory = TokioPostgresConnectionFactory;
type Pool = ConnectionPool<Factory>;

fn factory(url: &str, app: &str) -> Factory {
    let mut factory = TokioPostgresConnectionFactory::new(url).expect("the PostgreSQL URL parses");
    factory.config_mut().application_name(app);
    factory
}

fn pool(url: &str, app: &str, max: usize) -> Pool {
    factory(url, app)
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

/// An unpooled session for the test's own checks (the blocking way: no runtime here).
struct Admin {
    conn: TokioPostgresConnection,
    _factory: Factory,
}

fn admin(url: &str) -> Admin {
    use nexus_pool::ConnectionFactory;
    let factory = factory(url, "nexus_pool_test_admin");
    let conn = block_on(factory.create()).expect("admin connection");
    Admin {
        conn,
        _factory: factory,
    }
}

impl Admin {
    fn sessions(&self, app: &str) -> i64 {
        block_on(self.conn.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        ))
        .unwrap()
        .get(0)
    }

    fn terminate_all(&self, app: &str) -> usize {
        let rows = block_on(self.conn.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        ))
        .unwrap();
        assert!(
            eventually(Duration::from_secs(5), || self.sessions(app) == 0),
            "terminated sessions are gone"
        );
        rows.len()
    }

    fn execute(&self, sql: &str) {
        block_on(self.conn.batch_execute(sql)).unwrap();
    }
}

fn pid(conn: &PooledConnection<'_, Factory>) -> i32 {
    block_on(conn.query_one("SELECT pg_backend_pid()", &[]))
        .unwrap()
        .get(0)
}

fn open_n(pool: &Pool, n: usize) -> HashSet<i32> {
    let guards: Vec<_> = (0..n).map(|_| pool.acquire_blocking().unwrap()).collect();
    guards.iter().map(pid).collect()
}

#[test]
fn acquire_blocking_from_a_plain_thread_without_runtime() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::acquire_blocking_from_a_plain_thread_without_runtime")
    else {
        return;
    };
    // min_connections 0: with the default 1, the maintenance loop refills the idle connection
    // while the first is lent, and the second acquire may get that new one (flaky, 1 run in 6).
    let config = ConnectionPoolConfig::builder()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let pool = factory(&url, &unique("np_tp_plain"))
        .pool_builder()
        .config(config)
        .build()
        .unwrap();
    std::thread::spawn(move || {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "no runtime here"
        );
        let conn = pool.acquire_blocking().unwrap();
        let row = block_on(conn.query_one("SELECT $1::int + 1", &[&41])).unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        drop(conn);
        // A reused connection: reset ran on this thread too.
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!(conn.use_count(), 2);
        drop(conn);
        pool.close_blocking();
    })
    .join()
    .unwrap();
}

async fn add_one(pool: &Pool, x: i32) -> i32 {
    let conn = pool.acquire().await.unwrap();
    conn.query_one("SELECT $1::int + 1", &[&x])
        .await
        .unwrap()
        .get(0)
}

#[test]
fn acquire_async_on_tokio_smol_and_async_std() {
    let Some(url) = pg_url("adapter_tokio_postgres::acquire_async_on_tokio_smol_and_async_std")
    else {
        return;
    };
    let pool = pool(&url, &unique("np_tp_rt"), 2);

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(tokio_rt.block_on(add_one(&pool, 1)), 2);
    // Inside a tokio task, the connection made on another runtime works the same.
    let p = pool.clone();
    let in_task =
        tokio_rt.block_on(async move { tokio::spawn(async move { add_one(&p, 2).await }).await });
    assert_eq!(in_task.unwrap(), 3);
    assert_eq!(smol::block_on(add_one(&pool, 3)), 4);
    assert_eq!(async_std::task::block_on(add_one(&pool, 4)), 5);
    assert!(
        pool.current_metrics().total <= 2,
        "the pool's connections served every executor"
    );
    pool.close_blocking();
    drop(tokio_rt);
}

#[test]
fn killed_while_idle_next_acquires_get_fresh_connections() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::killed_while_idle_next_acquires_get_fresh_connections")
    else {
        return;
    };
    let app = unique("np_tp_idle_kill");
    let pool = pool(&url, &app, 3);
    let old = open_n(&pool, 3);
    let admin = admin(&url);
    assert_eq!(admin.terminate_all(&app), 3, "every pooled backend killed");
    let new = open_n(&pool, 3);
    assert_eq!(new.len(), 3);
    assert!(new.is_disjoint(&old), "no killed session was lent");
    pool.close_blocking();
}

#[test]
fn killed_while_idle_caught_by_validation_without_health_check() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::killed_while_idle_caught_by_validation_without_health_check",
    ) else {
        return;
    };
    let app = unique("np_tp_idle_validate");
    let config = ConnectionPoolConfig::builder()
        .max_connections(2)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let pool = ConnectionPool::new(factory(&url, &app), config);
    let old = open_n(&pool, 2);
    admin(&url).terminate_all(&app);
    let new = open_n(&pool, 2);
    assert!(
        new.is_disjoint(&old),
        "validation replaced the killed sessions"
    );
    pool.close_blocking();
}

#[test]
fn killed_while_lent_holder_gets_error_and_marks_it_broken() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::killed_while_lent_holder_gets_error_and_marks_it_broken")
    else {
        return;
    };
    let app = unique("np_tp_lent_kill");
    let pool = pool(&url, &app, 1);
    block_on(async {
        let mut conn = pool.acquire().await.unwrap();
        let old = conn
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0);
        admin(&url).terminate_all(&app);

        // The recommended pattern.
        let err = conn.query_one("SELECT 1", &[]).await.expect_err("killed");
        assert!(
            connection_lost(&err),
            "recognised as a lost session: {err:?}"
        );
        conn.mark_broken();
        drop(conn);

        let fresh = pool.acquire().await.unwrap();
        assert_eq!(fresh.use_count(), 1);
        let new: i32 = fresh
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_ne!(new, old);
    });
    pool.close_blocking();
}

#[test]
fn killed_while_lent_not_marked_is_never_reused() {
    let Some(url) = pg_url("adapter_tokio_postgres::killed_while_lent_not_marked_is_never_reused")
    else {
        return;
    };
    let app = unique("np_tp_lent_unmarked");
    let pool = pool(&url, &app, 1);
    let conn = pool.acquire_blocking().unwrap();
    let old = pid(&conn);
    admin(&url).terminate_all(&app);
    assert!(block_on(conn.query_one("SELECT 1", &[])).is_err());
    assert!(
        eventually(Duration::from_secs(2), || conn.is_closed()),
        "the connection task saw the socket close"
    );
    drop(conn);
    let next = pool.acquire_blocking().unwrap();
    assert_ne!(pid(&next), old);
    drop(next);
    pool.close_blocking();
}

#[test]
fn open_transaction_is_rolled_back_never_lent_dirty() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::open_transaction_is_rolled_back_never_lent_dirty")
    else {
        return;
    };
    let table = unique("np_tp_dirty");
    let admin = admin(&url);
    admin.execute(&format!("CREATE TABLE {table} (x int)"));
    let pool = pool(&url, &unique("np_tp_dirty_app"), 1);

    let conn = pool.acquire_blocking().unwrap();
    let first = pid(&conn);
    block_on(conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))).unwrap();
    drop(conn);

    // A transaction object forgotten (not dropped) leaves the session inside it, too.
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(pid(&conn), first);
    block_on(async {
        let tx = conn.transaction().await.unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (2)"), &[])
            .await
            .unwrap();
        std::mem::forget(tx);
    });
    drop(conn);

    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(pid(&conn), first, "the same session was reused");
    block_on(conn.execute(&format!("INSERT INTO {table} VALUES (3)"), &[])).unwrap();
    drop(conn);

    let rows: Vec<i32> = block_on(
        admin
            .conn
            .query(&format!("SELECT x FROM {table} ORDER BY x"), &[]),
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(
        rows,
        [3],
        "abandoned rows were rolled back, the next user's committed"
    );
    pool.close_blocking();
    admin.execute(&format!("DROP TABLE {table}"));
}

#[test]
fn reset_modes() {
    let Some(url) = pg_url("adapter_tokio_postgres::reset_modes") else {
        return;
    };
    for mode in [
        PostgresReset::DiscardAll,
        PostgresReset::Clean,
        PostgresReset::Rollback,
        PostgresReset::TransactionPooler,
    ] {
        let pool = ConnectionPool::builder(factory(&url, &unique("np_tp_modes")))
            .config(server_config(1))
            .health_check(TokioPostgresHealthCheck::new().reset_mode(mode))
            .build()
            .unwrap();
        let conn = pool.acquire_blocking().unwrap();
        let stmt = block_on(conn.prepare("SELECT $1::int * 2")).unwrap();
        block_on(conn.batch_execute("SET search_path = nowhere")).unwrap();
        block_on(conn.batch_execute("BEGIN")).unwrap();
        drop(conn);

        let conn = pool.acquire_blocking().unwrap();
        block_on(conn.batch_execute("BEGIN; COMMIT")).expect("no transaction left open");
        let path: String = block_on(conn.query_one("SHOW search_path", &[]))
            .unwrap()
            .get(0);
        let kept = block_on(conn.query_one(&stmt, &[&21])).is_ok();
        match mode {
            PostgresReset::DiscardAll => {
                assert_ne!(path, "nowhere");
                assert!(!kept, "DISCARD ALL deallocates prepared statements");
            }
            PostgresReset::Clean => {
                assert_ne!(path, "nowhere");
                assert!(kept, "statements survive");
            }
            _ => {
                assert_eq!(
                    path, "nowhere",
                    "ROLLBACK alone (and the pooler mode) keeps session settings"
                );
                assert!(kept);
            }
        }
        drop(conn);
        pool.close_blocking();
    }
}

/// The default reset keeps the statements the client prepares to look up user-defined types;
/// `DISCARD ALL` would deallocate them behind its back.
#[test]
fn user_defined_types_work_across_reuse() {
    let Some(url) = pg_url("adapter_tokio_postgres::user_defined_types_work_across_reuse") else {
        return;
    };
    let (first, second) = (unique("np_tp_enum_a"), unique("np_tp_enum_b"));
    let admin = admin(&url);
    admin.execute(&format!(
        "CREATE TYPE {first} AS ENUM ('a'); CREATE TYPE {second} AS ENUM ('b')"
    ));
    let pool = pool(&url, &unique("np_tp_enum_app"), 1);
    for ty in [&first, &second] {
        let conn = pool.acquire_blocking().unwrap();
        let stmt = block_on(conn.prepare(&format!("SELECT NULL::{ty}")));
        assert!(stmt.is_ok(), "type lookup for {ty} after a reuse: {stmt:?}");
        drop(conn);
    }
    pool.close_blocking();
    admin.execute(&format!("DROP TYPE {first}; DROP TYPE {second}"));
}

#[test]
fn max_connections_respected_in_pg_stat_activity() {
    let Some(url) = pg_url("adapter_tokio_postgres::max_connections_respected_in_pg_stat_activity")
    else {
        return;
    };
    const MAX: usize = 3;
    const TASKS: usize = 8;
    const ROUNDS: usize = 6;
    let app = unique("np_tp_max");
    let pool = pool(&url, &app, MAX);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));
    let observer = {
        let (done, peak, url, app) = (done.clone(), peak.clone(), url.clone(), app.clone());
        std::thread::spawn(move || {
            let admin = admin(&url);
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(admin.sessions(&app), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Half the callers are tokio tasks, half plain threads: one pool, one limit.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let start = Arc::new(Barrier::new(TASKS));
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let (pool, start) = (pool.clone(), start.clone());
        if i % 2 == 0 {
            threads.push(std::thread::spawn(move || {
                start.wait();
                for _ in 0..ROUNDS {
                    let conn = pool.acquire_blocking().unwrap();
                    block_on(conn.batch_execute("SELECT pg_sleep(0.02)")).unwrap();
                }
            }));
        } else {
            tasks.push(runtime.spawn(async move {
                tokio::task::spawn_blocking(move || start.wait())
                    .await
                    .unwrap();
                for _ in 0..ROUNDS {
                    let conn = pool.acquire().await.unwrap();
                    conn.batch_execute("SELECT pg_sleep(0.02)").await.unwrap();
                }
            }));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    for t in tasks {
        runtime.block_on(t).unwrap();
    }
    done.store(true, Ordering::Release);
    observer.join().unwrap();
    let peak = peak.load(Ordering::Acquire);
    assert!(
        peak <= MAX as i64,
        "the server saw {peak} sessions, max is {MAX}"
    );
    assert!(peak >= 1);

    pool.close_blocking();
    let admin = admin(&url);
    assert!(
        eventually(Duration::from_secs(5), || admin.sessions(&app) == 0),
        "close ended every session"
    );
}

#[test]
fn unreachable_server_is_a_create_error() {
    let factory =
        TokioPostgresConnectionFactory::new("postgres://postgres@127.0.0.1:1/test").unwrap();
    let config = ConnectionPoolConfig::builder()
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let pool = ConnectionPool::new(factory, config);
    let err = pool.acquire_blocking().expect_err("nothing listens there");
    assert!(
        err.create_error().is_some(),
        "the driver's error is kept: {err}"
    );
}

// ----- errors keep their cause ------------------------------------------------------------

/// `err` is the failed create, its text is the pool's alone, and the chain holds the driver's
/// error and `needle`; the adapter's own text, in one line, does not repeat `needle`.
#[track_caller]
fn check_create_error<'e>(
    err: &'e PoolError<TokioPostgresError>,
    needle: &str,
) -> &'e tokio_postgres::Error {
    assert!(
        matches!(err, PoolError::Create(CreateError::Failed(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "could not create a connection");
    let adapter = err.create_error().expect("the factory's error is kept");
    let text = adapter.to_string();
    assert!(!text.contains(needle), "{text:?} repeats its cause");
    assert!(!text.contains('\n'), "not one line: {text:?}");
    driver_error::<tokio_postgres::Error>(err, needle)
}

#[test]
fn refused_connection_keeps_its_cause() {
    // Needs no server: nothing listens on the port.
    let url = format!("postgres://postgres@127.0.0.1:{}/test", refused_port());

    // The adapter opens the socket itself (to watch the session's state), so a refused connect
    // is its own `Connect` error, with the operating system's error as its source.
    let err = start_error(TokioPostgresConnectionFactory::new(&url).unwrap());
    assert_eq!(err.to_string(), "could not create a connection");
    let adapter = err.create_error().expect("the factory's error is kept");
    assert!(
        matches!(adapter, TokioPostgresError::Connect(_)),
        "{adapter:?}"
    );
    let text = adapter.to_string();
    assert!(
        !text.contains("Connection refused"),
        "{text:?} repeats its cause"
    );
    assert!(!text.contains('\n'), "not one line: {text:?}");
    let io = driver_error::<std::io::Error>(&err, "Connection refused");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);

    // An acquire that times out while creates fail carries the same chain behind its own text.
    let config = ConnectionPoolConfig::builder()
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let pool = ConnectionPool::new(TokioPostgresConnectionFactory::new(&url).unwrap(), config);
    let err = pool.acquire_blocking().expect_err("nothing listens there");
    let text = err.to_string();
    assert!(
        text.starts_with("timed out after ") && text.contains("waiting)"),
        "{text:?}"
    );
    assert!(!text.contains("refused"), "{text:?} repeats its cause");
    driver_error::<std::io::Error>(&err, "Connection refused");
    driver_error::<CreateError<TokioPostgresError>>(&err, "Connection refused");
    pool.close_blocking();
}

#[test]
fn missing_database_keeps_the_servers_message() {
    let Some(url) = pg_url("adapter_tokio_postgres::missing_database_keeps_the_servers_message")
    else {
        return;
    };
    let missing = unique("np_no_such_db");
    let mut factory = factory(&url, &unique("np_errors"));
    factory.config_mut().dbname(&missing);
    let err = start_error(factory);
    let driver = check_create_error(&err, &format!("database \"{missing}\" does not exist"));
    assert_eq!(driver.code(), Some(&SqlState::INVALID_CATALOG_NAME));
}

#[test]
fn unknown_role_keeps_the_servers_message() {
    let Some(url) = pg_url("adapter_tokio_postgres::unknown_role_keeps_the_servers_message") else {
        return;
    };
    let role = unique("np_no_such_role");
    let mut factory = factory(&url, &unique("np_errors"));
    factory.config_mut().user(&role);
    let err = start_error(factory);
    let driver = check_create_error(&err, &format!("role \"{role}\" does not exist"));
    assert_eq!(
        driver.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
}

/// Needs a server that checks passwords on the test's connection (`md5` or `scram-sha-256` in
/// `pg_hba.conf`, which `.ci/run` adds for this test's role); under `trust` any password is
/// accepted, and the test prints a skip line (which fails `.ci/run`) and stops.
#[test]
fn wrong_password_keeps_the_servers_message() {
    let Some(url) = pg_url("adapter_tokio_postgres::wrong_password_keeps_the_servers_message")
    else {
        return;
    };
    // A role that `.ci/run` makes authenticate by password (see the rule it adds to
    // pg_hba.conf); elsewhere the local server may trust every login.
    let role = "nexus_pool_pw_async";
    let admin = admin(&url);
    admin.execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
    ));
    let mut factory = factory(&url, &unique("np_errors"));
    factory.config_mut().user(role).password("wrong-password");
    let outcome = block_on(factory.pool_builder().config(start_one()).build_connected());
    match outcome {
        Ok(pool) => {
            pool.close_blocking();
            common::servers::skip(
                "the server trusts this role",
                "wrong_password_keeps_the_servers_message",
                "add `host all nexus_pool_pw_async 127.0.0.1/32 scram-sha-256` to pg_hba.conf, as .ci/run does",
            );
        }
        Err(err) => {
            let driver = check_create_error(
                &err,
                &format!("password authentication failed for user \"{role}\""),
            );
            assert_eq!(driver.code(), Some(&SqlState::INVALID_PASSWORD));
        }
    }
    admin.execute(&format!("DROP ROLE {role}"));
}

/// `tokio-postgres` logs each notice the server sends (`WARNING: there is no transaction in
/// progress` among them) through `log` at `info`, target `tokio_postgres::connection`; this
/// logger counts the warnings. No other test in this binary makes the server warn.
struct WarningCounter(std::sync::atomic::AtomicUsize);

impl log::Log for WarningCounter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("tokio_postgres")
            && record.args().to_string().starts_with("WARNING")
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flush(&self) {}
}

static WARNINGS: WarningCounter = WarningCounter(std::sync::atomic::AtomicUsize::new(0));

/// The tests that count warnings run one at a time: one of them makes the server warn on
/// purpose.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn counting() -> std::sync::MutexGuard<'static, ()> {
    COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn warnings() -> usize {
    // Installed once per process; a second call finds it installed.
    let _ = log::set_logger(&WARNINGS);
    log::set_max_level(log::LevelFilter::Info);
    WARNINGS.0.load(Ordering::SeqCst)
}

/// Whether `conn`'s session is outside any transaction block: in one, the block began before
/// this statement; in a failed one, the statement errors. (A simple query: in the extended
/// protocol the two timestamps differ anyway.)
fn outside_block(conn: &PooledConnection<'_, Factory>) -> bool {
    block_on(conn.simple_query("SELECT transaction_timestamp() = statement_timestamp()")).is_ok_and(
        |messages| {
            messages.iter().any(|m| {
                matches!(m, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
            })
        },
    )
}

/// The query the server last ran for `pid`, as `pg_stat_activity` shows it.
fn last_query(admin: &Admin, pid: i32) -> String {
    block_on(
        admin
            .conn
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid]),
    )
    .unwrap()
    .get(0)
}

const CHECKOUTS: usize = 1_000;

#[test]
fn a_clean_reuse_sends_nothing_and_no_checkout_warns() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::a_clean_reuse_sends_nothing_and_no_checkout_warns")
    else {
        return;
    };
    let _counting = counting();
    let admin = admin(&url);
    let pool = pool(&url, &unique("np_tp_free"), 1);
    let conn = pool.acquire_blocking().unwrap();
    assert!(conn.is_tracked());
    // A simple query: a prepared one is followed by the client's own `Close` of its statement,
    // whose answer may still be on its way at the next checkout (then one empty query is sent).
    let backend: i32 = block_on(conn.simple_query("SELECT pg_backend_pid()"))
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .unwrap();
    drop(conn);

    // Reused after a plain query: lent without a word to the server (a reset would be the
    // session's last query).
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(last_query(&admin, backend), "SELECT pg_backend_pid()");
    drop(conn);

    // The counter sees a warning when there is one: the blind ROLLBACK the reset used to send.
    let before = warnings();
    let conn = pool.acquire_blocking().unwrap();
    block_on(conn.batch_execute("ROLLBACK")).unwrap();
    drop(conn);
    assert!(
        eventually(Duration::from_secs(5), || warnings() == before + 1),
        "the counter sees the server's warning"
    );

    let before = warnings();
    for i in 0..CHECKOUTS {
        let conn = pool.acquire_blocking().unwrap();
        match i % 4 {
            0 => {
                block_on(conn.simple_query("SELECT 1")).unwrap();
            }
            1 => {
                block_on(conn.query_one("SELECT $1::int", &[&1i32])).unwrap();
            }
            2 => {
                block_on(conn.batch_execute("BEGIN; SELECT 1; COMMIT")).unwrap();
            }
            _ => {
                block_on(conn.batch_execute("SET work_mem = '8MB'")).unwrap();
            }
        }
        drop(conn);
    }
    // Notices arrive before the answers they precede, so all have been logged by now.
    assert_eq!(warnings() - before, 0, "warnings per {CHECKOUTS} checkouts");
    pool.close_blocking();
}

#[test]
fn a_handler_failing_mid_transaction_leaves_the_next_user_clean() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::a_handler_failing_mid_transaction_leaves_the_next_user_clean",
    ) else {
        return;
    };
    let _counting = counting();
    let pool = pool(&url, &unique("np_tp_failed_tx"), 1);
    let before = warnings();

    // Raw SQL: a block opened, then a statement that fails: the session is in a failed block.
    let conn = pool.acquire_blocking().unwrap();
    block_on(conn.batch_execute("BEGIN")).unwrap();
    assert!(block_on(conn.batch_execute("SELECT 1/0")).is_err());
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert!(outside_block(&conn), "not 'current transaction is aborted'");
    drop(conn);

    // Raw SQL: a block left open.
    let conn = pool.acquire_blocking().unwrap();
    block_on(conn.batch_execute("BEGIN; SELECT 1")).unwrap();
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert!(outside_block(&conn), "no open transaction");
    drop(conn);

    // The `Transaction` API, dropped after an error: its own ROLLBACK is sent, unanswered yet.
    let mut conn = pool.acquire_blocking().unwrap();
    let failed: Result<(), tokio_postgres::Error> = block_on(async {
        let tx = conn.transaction().await?;
        tx.batch_execute("SELECT 1/0").await?;
        tx.commit().await
    });
    assert!(failed.is_err());
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert!(outside_block(&conn));
    drop(conn);

    // A request in flight when its future is dropped (a cancelled handler).
    let conn = pool.acquire_blocking().unwrap();
    block_on(async {
        let sleep = conn.batch_execute("BEGIN; SELECT pg_sleep(0.2)");
        futures_lite::future::or(sleep, async {
            async_io::Timer::after(Duration::from_millis(20)).await;
            Ok(())
        })
        .await
    })
    .unwrap();
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert!(outside_block(&conn), "the cancelled block was rolled back");
    drop(conn);

    assert_eq!(warnings() - before, 0, "no warning on the way");
    pool.close_blocking();
}

#[test]
fn session_state_is_reset_as_documented() {
    let Some(url) = pg_url("adapter_tokio_postgres::session_state_is_reset_as_documented") else {
        return;
    };
    let pool = pool(&url, &unique("np_tp_session"), 1);
    let show = |conn: &PooledConnection<'_, Factory>, name: &str| -> String {
        block_on(conn.query_one(&format!("SHOW {name}"), &[]))
            .unwrap()
            .get(0)
    };
    let conn = pool.acquire_blocking().unwrap();
    let default_timeout = show(&conn, "statement_timeout");
    let default_work_mem = show(&conn, "work_mem");
    drop(conn);

    // Each way of changing the session, alone in a checkout, is undone before the next one.
    let changes: [(&str, &str); 6] = [
        ("SET statement_timeout = '1234ms'", "statement_timeout"),
        ("SELECT set_config('work_mem', '7MB', false)", "work_mem"),
        ("CREATE TEMP TABLE np_left_behind AS SELECT 1 AS x", "temp"),
        ("SELECT pg_advisory_lock(4242)", "lock"),
        ("LISTEN np_channel", "listen"),
        ("DECLARE np_cursor CURSOR WITH HOLD FOR SELECT 1", "cursor"),
    ];
    for (sql, what) in changes {
        let conn = pool.acquire_blocking().unwrap();
        block_on(conn.simple_query(sql)).unwrap();
        drop(conn);
        let conn = pool.acquire_blocking().unwrap();
        let one = |q: &str| -> i64 { block_on(conn.query_one(q, &[])).unwrap().get(0) };
        match what {
            "statement_timeout" => assert_eq!(show(&conn, what), default_timeout),
            "work_mem" => assert_eq!(show(&conn, what), default_work_mem),
            "temp" => assert_eq!(
                one(
                    "SELECT count(*) FROM pg_class WHERE relname = 'np_left_behind' \
                     AND relpersistence = 't' AND pg_table_is_visible(oid)"
                ),
                0
            ),
            "lock" => assert_eq!(
                one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                     AND pid = pg_backend_pid()"),
                0
            ),
            "listen" => assert_eq!(one("SELECT count(*) FROM pg_listening_channels()"), 0),
            _ => assert_eq!(
                one("SELECT count(*) FROM pg_cursors WHERE name = 'np_cursor'"),
                0
            ),
        }
        drop(conn);
    }
    pool.close_blocking();
}

#[test]
fn reset_every_reuse_resets_a_clean_session_too_and_cancel_query_works() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::reset_every_reuse_resets_a_clean_session_too_and_cancel_query_works",
    ) else {
        return;
    };
    let admin = admin(&url);
    let pool = ConnectionPool::builder(factory(&url, &unique("np_tp_every")))
        .config(server_config(1))
        .health_check(TokioPostgresHealthCheck::new().reset_every_reuse(true))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let backend = pid(&conn);
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert_ne!(
        last_query(&admin, backend),
        "SELECT pg_backend_pid()",
        "the reset ran"
    );

    // A long query, cancelled from another thread through the adapter's own cancel.
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| block_on(conn.simple_query("SELECT pg_sleep(30)")));
        while !sleeper.is_finished() {
            block_on(conn.cancel_query()).expect("cancel request delivered");
            std::thread::sleep(Duration::from_millis(50));
        }
        let err = sleeper.join().unwrap().expect_err("cancelled");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
        );
    });
    drop(conn);
    pool.close_blocking();
}

#[test]
fn built_inside_a_multi_thread_runtime_runs_there_else_on_its_own() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::built_inside_a_multi_thread_runtime_runs_there_else_on_its_own",
    ) else {
        return;
    };
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let inside = app.block_on(async { factory(&url, &unique("np_tp_rt")) });
    assert!(!inside.has_own_runtime());
    let pool = inside
        .pool_builder()
        .config(server_config(2))
        .build()
        .unwrap();
    let sum = app.block_on(async {
        let conn = pool.acquire().await.unwrap();
        // The connection task is one of the application runtime's tasks.
        assert!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                >= 1
        );
        let row = conn.query_one("SELECT 40 + 2", &[]).await.unwrap();
        row.get::<_, i32>(0)
    });
    assert_eq!(sum, 42);
    app.block_on(pool.close());

    // A current-thread runtime could be stalled by a blocking caller: the factory starts its own.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let factory = single.block_on(async { factory(&url, &unique("np_tp_rt1")) });
    assert!(factory.has_own_runtime());

    // And a pool meant to outlive the runtime it was built in can ask for its own.
    let factory = app
        .block_on(async { factory_with_own_runtime(&url) })
        .unwrap();
    drop(app);
    assert!(factory.has_own_runtime());
    let pool = factory
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(
        block_on(conn.query_one("SELECT 1", &[]))
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    drop(conn);
    pool.close_blocking();
}

fn factory_with_own_runtime(
    url: &str,
) -> Result<Factory, nexus_pool::adapters::tokio_postgres::TokioPostgresError> {
    factory(url, &unique("np_tp_rt_own")).with_own_runtime()
}

/// How many statements `pid`'s session has prepared, as the server sees them.
fn server_statements(conn: &PooledConnection<'_, Factory>) -> i64 {
    let messages =
        block_on(conn.simple_query("SELECT count(*) FROM pg_prepared_statements")).unwrap();
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn prepare_cached_reuses_statements_across_checkouts_within_its_bound() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::prepare_cached_reuses_statements_across_checkouts_within_its_bound",
    ) else {
        return;
    };
    let pool = factory(&url, &unique("np_stmt_cache"))
        .statement_cache_capacity(2)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let before = server_statements(&conn);
    let first = block_on(conn.prepare_cached("SELECT $1::int + 1")).unwrap();
    assert_eq!(
        block_on(conn.query_one(&first, &[&41]))
            .unwrap()
            .get::<_, i32>(0),
        42
    );
    assert_eq!(conn.statement_cache().len(), 1);
    drop(conn);

    // The next checkout (same session, the default reset keeps statements) hits the cache.
    let conn = pool.acquire_blocking().unwrap();
    let prepared = server_statements(&conn);
    let again = block_on(conn.prepare_cached("SELECT $1::int + 1")).unwrap();
    assert_eq!(
        server_statements(&conn),
        prepared,
        "a hit prepares nothing on the server"
    );
    let typed =
        block_on(conn.prepare_typed_cached("SELECT $1", &[tokio_postgres::types::Type::INT8]))
            .unwrap();
    assert_eq!(typed.params(), &[tokio_postgres::types::Type::INT8]);
    assert_eq!(
        server_statements(&conn),
        prepared + 1,
        "types are part of the key"
    );
    assert_eq!(conn.statement_cache().len(), 2);
    drop((first, again, typed));

    // A third statement evicts the least recently used one, and the server forgets it.
    let third = block_on(conn.prepare_cached("SELECT $1::text")).unwrap();
    assert_eq!(conn.statement_cache().len(), 2, "bounded by the capacity");
    let evicted_first = block_on(conn.prepare_cached("SELECT $1::int + 1")).unwrap();
    assert_eq!(conn.statement_cache().len(), 2);
    drop((third, evicted_first));
    assert!(
        eventually(Duration::from_secs(5), || server_statements(&conn) - before
            <= 2),
        "evicted statements are deallocated on the server: {} more than before",
        server_statements(&conn) - before
    );
    drop(conn);
    pool.close_blocking();
}

#[test]
fn prepare_cached_is_cleared_when_the_session_deallocates_statements() {
    let Some(url) = pg_url(
        "adapter_tokio_postgres::prepare_cached_is_cleared_when_the_session_deallocates_statements",
    ) else {
        return;
    };
    // A reset in `DiscardAll` mode deallocates every statement: the cache follows.
    let pool = factory(&url, &unique("np_stmt_discard"))
        .reset_mode(PostgresReset::DiscardAll)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let pid = pid(&conn);
    block_on(conn.prepare_cached("SELECT $1::int * 2")).unwrap();
    // Something for the reset to clean, so that it sends `DISCARD ALL`.
    block_on(conn.batch_execute("SET application_name = 'dirty'")).unwrap();
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(self::pid(&conn), pid, "the same session, reset");
    let stmt = block_on(conn.prepare_cached("SELECT $1::int * 2")).unwrap();
    let row = block_on(conn.query_one(&stmt, &[&21])).expect("not a deallocated statement");
    assert_eq!(row.get::<_, i32>(0), 42);

    // So does a `DEALLOCATE ALL` of the user's own, at once.
    block_on(conn.batch_execute("DEALLOCATE ALL")).unwrap();
    let stmt = block_on(conn.prepare_cached("SELECT $1::int * 2")).unwrap();
    let row = block_on(conn.query_one(&stmt, &[&21])).expect("prepared again");
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(conn);
    pool.close_blocking();

    // The same with the reset on every reuse (the path of a session the adapter does not watch).
    let factory =
        factory(&url, &unique("np_stmt_discard_every")).reset_mode(PostgresReset::DiscardAll);
    let check = factory.health_check().reset_every_reuse(true);
    let pool = ConnectionPool::builder(factory)
        .config(server_config(1))
        .health_check(check)
        .build()
        .unwrap();
    for _ in 0..3 {
        let conn = pool.acquire_blocking().unwrap();
        let stmt = block_on(conn.prepare_cached("SELECT $1::int * 2")).unwrap();
        let row = block_on(conn.query_one(&stmt, &[&21])).expect("not a deallocated statement");
        assert_eq!(row.get::<_, i32>(0), 42);
    }
    pool.close_blocking();
}

#[test]
fn prepare_cached_is_refused_for_a_transaction_pooler() {
    let Some(url) =
        pg_url("adapter_tokio_postgres::prepare_cached_is_refused_for_a_transaction_pooler")
    else {
        return;
    };
    let pool = factory(&url, &unique("np_stmt_pooler"))
        .reset_mode(PostgresReset::TransactionPooler)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    let err = block_on(conn.prepare_cached("SELECT 1")).unwrap_err();
    assert!(
        matches!(err, TokioPostgresError::StatementCacheRefused),
        "{err:?}"
    );
    assert!(err.to_string().contains("query_typed"), "{err}");
    assert!(conn.statement_cache().is_empty());
    drop(conn);
    pool.close_blocking();
}
