//! The blocking `postgres` adapter against a real PostgreSQL (`NEXUS_POOL_PG_URL`, else the
//! standard local address).
#![cfg(all(feature = "postgres", feature = "blocking"))]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::pg::{admin, backend_pid, factory};
use common::servers::{
    driver_error, pg_url, refused_port, server_config, start_error, start_one, unique,
};
use common::wait::eventually;
use futures_lite::future::block_on;
use nexus_pool::adapters::postgres::{
    PostgresConnectionFactory, PostgresError, PostgresHealthCheck, PostgresReset,
    PrepareCachedError, connection_lost,
};
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, CreateError, PoolError,
};
use postgres::Client;
use postgres::error::SqlState;

type Pool = ConnectionPool<PostgresConnectionFactory>;

/// The recommended setup: the adapter's health check attached.
fn pool(url: &str, app: &str, max: usize) -> Pool {
    factory(url, app)
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

fn sessions(admin: &mut Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0)
}

/// Terminates every session of `app`; returns how many.
fn terminate_all(admin: &mut Client, app: &str) -> usize {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || sessions(admin, app) == 0),
        "terminated sessions are gone"
    );
    rows.len()
}

/// Opens `n` connections at once (holding them together) and returns their backend pids.
fn open_n(pool: &Pool, n: usize) -> HashSet<i32> {
    let mut guards: Vec<_> = (0..n).map(|_| pool.acquire_blocking().unwrap()).collect();
    guards.iter_mut().map(|c| backend_pid(c)).collect()
}

#[test]
fn smoke_blocking() {
    let Some(url) = pg_url("adapter_postgres::smoke_blocking") else {
        return;
    };
    let pool = pool(&url, &unique("np_smoke"), 2);
    let value: i32 = pool
        .with_connection_blocking(|conn| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                conn.query_one("SELECT 40 + 2", &[])?.get(0),
            )
        })
        .unwrap();
    assert_eq!(value, 42);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_next_acquires_get_fresh_connections() {
    let Some(url) =
        pg_url("adapter_postgres::killed_while_idle_next_acquires_get_fresh_connections")
    else {
        return;
    };
    let app = unique("np_idle_kill");
    let pool = pool(&url, &app, 3);
    let old = open_n(&pool, 3);
    assert_eq!(old.len(), 3);

    let mut admin = admin(&url);
    assert_eq!(
        terminate_all(&mut admin, &app),
        3,
        "every pooled backend killed"
    );

    // Each dead one fails its reset on reuse, is destroyed, and a new one is made.
    let new = open_n(&pool, 3);
    assert_eq!(new.len(), 3);
    assert!(
        new.is_disjoint(&old),
        "no killed session was lent: {old:?} vs {new:?}"
    );
    assert_eq!(sessions(&mut admin, &app), 3);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_caught_by_validation_without_health_check() {
    let Some(url) =
        pg_url("adapter_postgres::killed_while_idle_caught_by_validation_without_health_check")
    else {
        return;
    };
    let app = unique("np_idle_validate");
    let config = ConnectionPoolConfig::builder()
        .max_connections(2)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let pool = ConnectionPool::new(factory(&url, &app), config);
    let old = open_n(&pool, 2);
    terminate_all(&mut admin(&url), &app);
    let new = open_n(&pool, 2);
    assert!(
        new.is_disjoint(&old),
        "validation replaced the killed sessions"
    );
    pool.close_blocking();
}

/// The recommended pattern: the holder sees the driver's error, asks `connection_lost`, and
/// marks the connection broken so it is destroyed on drop.
#[test]
fn killed_while_lent_holder_gets_error_and_marks_it_broken() {
    let Some(url) =
        pg_url("adapter_postgres::killed_while_lent_holder_gets_error_and_marks_it_broken")
    else {
        return;
    };
    let app = unique("np_lent_kill");
    let pool = pool(&url, &app, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let pid = backend_pid(&mut conn);

    terminate_all(&mut admin(&url), &app);

    let err = conn
        .query_one("SELECT 1", &[])
        .expect_err("the session was killed");
    assert!(
        connection_lost(&err),
        "recognised as a lost session: {err:?}"
    );
    conn.mark_broken();
    drop(conn);

    let mut fresh = pool.acquire_blocking().unwrap();
    assert_eq!(fresh.use_count(), 1, "a new connection, not the broken one");
    assert_ne!(backend_pid(&mut fresh), pid);
    drop(fresh);
    pool.close_blocking();
}

/// A holder that forgets `mark_broken`: the reset before the next lend fails, so the dead
/// connection is destroyed rather than lent.
#[test]
fn killed_while_lent_not_marked_is_caught_by_reset() {
    let Some(url) = pg_url("adapter_postgres::killed_while_lent_not_marked_is_caught_by_reset")
    else {
        return;
    };
    let app = unique("np_lent_unmarked");
    let pool = pool(&url, &app, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let pid = backend_pid(&mut conn);
    terminate_all(&mut admin(&url), &app);
    assert!(conn.query_one("SELECT 1", &[]).is_err());
    drop(conn); // back to the pool, dead

    let mut next = pool.acquire_blocking().unwrap();
    assert_ne!(backend_pid(&mut next), pid);
    assert_eq!(next.use_count(), 1);
    drop(next);
    pool.close_blocking();
}

#[test]
fn open_transaction_is_rolled_back_never_lent_dirty() {
    let Some(url) = pg_url("adapter_postgres::open_transaction_is_rolled_back_never_lent_dirty")
    else {
        return;
    };
    let table = unique("np_dirty");
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    let pool = pool(&url, &unique("np_dirty_app"), 1);

    // The first user leaves a transaction open with an uncommitted row.
    let mut conn = pool.acquire_blocking().unwrap();
    let pid = backend_pid(&mut conn);
    conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .unwrap();
    drop(conn);

    // The next user gets the same session, outside any transaction: its write commits alone.
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(backend_pid(&mut conn), pid, "the same session was reused");
    conn.execute(&format!("INSERT INTO {table} VALUES (2)"), &[])
        .unwrap();
    drop(conn);
    let rows: Vec<i32> = admin
        .query(&format!("SELECT x FROM {table} ORDER BY x"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [2],
        "the abandoned row was rolled back, the next user's committed"
    );

    // An aborted transaction (an error inside it) is cleaned up too.
    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("BEGIN").unwrap();
    assert!(conn.batch_execute("SELECT 1/0").is_err());
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(backend_pid(&mut conn), pid);
    let one: i32 = conn.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    drop(conn);

    pool.close_blocking();
    admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn reuse_resets_session_state() {
    let Some(url) = pg_url("adapter_postgres::reuse_resets_session_state") else {
        return;
    };
    let pool = pool(&url, &unique("np_state"), 1);
    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute(
        "SET statement_timeout = 1234; CREATE TEMP TABLE scratch (x int); \
         PREPARE leftover AS SELECT 1",
    )
    .unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    let timeout: String = conn
        .query_one("SHOW statement_timeout", &[])
        .unwrap()
        .get(0);
    assert_eq!(timeout, "0", "session settings reset");
    let scratch: Option<String> = conn
        .query_one("SELECT to_regclass('pg_temp.scratch')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(scratch, None, "temporary tables dropped");
    drop(conn);
    pool.close_blocking();
}

#[test]
fn discard_all_mode_deallocates_prepared_statements() {
    let Some(url) = pg_url("adapter_postgres::discard_all_mode_deallocates_prepared_statements")
    else {
        return;
    };
    let pool = ConnectionPool::builder(factory(&url, &unique("np_discard")))
        .config(server_config(1))
        .health_check(PostgresHealthCheck::new().reset_mode(PostgresReset::DiscardAll))
        .build()
        .unwrap();
    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("BEGIN; PREPARE leftover AS SELECT 1")
        .unwrap();
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let prepared: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = 'leftover'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        prepared, 0,
        "rolled back, then DISCARD ALL deallocated the statement"
    );
    drop(conn);
    pool.close_blocking();
}

#[test]
fn default_reset_keeps_prepared_statements_and_resets_the_rest() {
    let Some(url) =
        pg_url("adapter_postgres::default_reset_keeps_prepared_statements_and_resets_the_rest")
    else {
        return;
    };
    let app = unique("np_keep");
    let pool = pool(&url, &app, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let stmt = conn.prepare("SELECT $1::int * 2").unwrap();
    conn.batch_execute("BEGIN; SET LOCAL work_mem = '1MB'; SET search_path = nowhere")
        .unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    let doubled: i32 = conn.query_one(&stmt, &[&21]).unwrap().get(0);
    assert_eq!(doubled, 42, "the prepared statement survived");
    let path: String = conn.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_ne!(path, "nowhere", "session settings reset");
    conn.batch_execute("BEGIN; COMMIT")
        .expect("no transaction was left open");
    drop(conn);
    pool.close_blocking();
}

#[test]
fn max_connections_respected_in_pg_stat_activity() {
    let Some(url) = pg_url("adapter_postgres::max_connections_respected_in_pg_stat_activity")
    else {
        return;
    };
    const MAX: usize = 3;
    const THREADS: usize = 8;
    const ROUNDS: usize = 6;
    let app = unique("np_max");
    let pool = pool(&url, &app, MAX);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));

    let observer = {
        let (done, peak, url, app) = (done.clone(), peak.clone(), url.clone(), app.clone());
        std::thread::spawn(move || {
            let mut admin = admin(&url);
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(sessions(&mut admin, &app), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (pool, start) = (pool.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..ROUNDS {
                    let mut conn = pool.acquire_blocking().unwrap();
                    conn.batch_execute("SELECT pg_sleep(0.02)").unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    observer.join().unwrap();

    let peak = peak.load(Ordering::Acquire);
    assert!(
        peak <= MAX as i64,
        "the server saw {peak} sessions, max is {MAX}"
    );
    assert!(peak >= 1, "the observer saw the sessions");
    assert!(pool.current_metrics().total <= MAX);

    pool.close_blocking();
    let mut admin = admin(&url);
    assert!(
        eventually(Duration::from_secs(5), || sessions(&mut admin, &app) == 0),
        "close ended every session"
    );
}

#[test]
fn unreachable_server_is_a_create_error() {
    // Needs no server: nothing listens on port 1.
    let factory = PostgresConnectionFactory::new("postgres://postgres@127.0.0.1:1/test").unwrap();
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
fn check_create_error<'e>(err: &'e PoolError<PostgresError>, needle: &str) -> &'e postgres::Error {
    assert!(
        matches!(err, PoolError::Create(CreateError::Failed(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "could not create a connection");
    let adapter = err.create_error().expect("the factory's error is kept");
    let text = adapter.to_string();
    assert!(!text.contains(needle), "{text:?} repeats its cause");
    assert!(!text.contains('\n'), "not one line: {text:?}");
    let driver = driver_error::<postgres::Error>(err, needle);
    assert!(std::ptr::eq(driver, adapter.get_ref()));
    driver
}

#[test]
fn refused_connection_keeps_its_cause() {
    // Needs no server: nothing listens on the port.
    let url = format!("postgres://postgres@127.0.0.1:{}/test", refused_port());

    let err = start_error(PostgresConnectionFactory::new(&url).unwrap());
    let driver = check_create_error(&err, "Connection refused");
    assert!(connection_lost(driver), "{driver}");
    let io = driver_error::<std::io::Error>(&err, "Connection refused");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);

    // An acquire that times out while creates fail carries the same chain behind its own text.
    let config = ConnectionPoolConfig::builder()
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let pool = ConnectionPool::new(PostgresConnectionFactory::new(&url).unwrap(), config);
    let err = pool.acquire_blocking().expect_err("nothing listens there");
    let text = err.to_string();
    assert!(
        text.starts_with("timed out after ") && text.contains("waiting)"),
        "{text:?}"
    );
    assert!(!text.contains("refused"), "{text:?} repeats its cause");
    driver_error::<postgres::Error>(&err, "Connection refused");
    driver_error::<CreateError<PostgresError>>(&err, "Connection refused");
    pool.close_blocking();
}

#[test]
fn missing_database_keeps_the_servers_message() {
    let Some(url) = pg_url("adapter_postgres::missing_database_keeps_the_servers_message") else {
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
    let Some(url) = pg_url("adapter_postgres::unknown_role_keeps_the_servers_message") else {
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
    let Some(url) = pg_url("adapter_postgres::wrong_password_keeps_the_servers_message") else {
        return;
    };
    // A role that `.ci/run` makes authenticate by password (see the rule it adds to
    // pg_hba.conf); elsewhere the local server may trust every login.
    let role = "nexus_pool_pw_blocking";
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
        ))
        .unwrap();
    let mut factory = factory(&url, &unique("np_errors"));
    factory.config_mut().user(role).password("wrong-password");
    let outcome = block_on(factory.pool_builder().config(start_one()).build_connected());
    match outcome {
        Ok(pool) => {
            pool.close_blocking();
            common::servers::skip(
                "the server trusts this role",
                "wrong_password_keeps_the_servers_message",
                "add `host all nexus_pool_pw_blocking 127.0.0.1/32 scram-sha-256` to pg_hba.conf, as .ci/run does",
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
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

/// A pool whose sessions count the server's warnings (`WARNING: there is no transaction in
/// progress` among them) through the client's notice callback.
fn counting_pool(url: &str, app: &str) -> (Pool, Arc<AtomicI64>) {
    let warnings = Arc::new(AtomicI64::new(0));
    let mut factory = factory(url, app);
    let seen = Arc::clone(&warnings);
    factory.config_mut().notice_callback(move |notice| {
        if notice.severity() == "WARNING" {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (
        factory
            .pool_builder()
            .config(server_config(1))
            .build()
            .unwrap(),
        warnings,
    )
}

/// Whether the session is outside any transaction block (in a failed one the query errors).
fn outside_block(conn: &mut Client) -> bool {
    conn.simple_query("SELECT transaction_timestamp() = statement_timestamp()")
        .is_ok_and(|messages| {
            messages.iter().any(
                |m| matches!(m, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t")),
            )
        })
}

const CHECKOUTS: i64 = 1_000;

#[test]
fn no_checkout_warns() {
    let Some(url) = pg_url("adapter_postgres::no_checkout_warns") else {
        return;
    };
    let (pool, warnings) = counting_pool(&url, &unique("np_pg_warn"));
    // The counter sees a warning when there is one: the blind ROLLBACK the reset used to send.
    pool.acquire_blocking()
        .unwrap()
        .batch_execute("ROLLBACK")
        .unwrap();
    assert_eq!(warnings.load(Ordering::SeqCst), 1);

    let before = warnings.load(Ordering::SeqCst);
    for i in 0..CHECKOUTS {
        let mut conn = pool.acquire_blocking().unwrap();
        match i % 3 {
            0 => drop(conn.simple_query("SELECT 1").unwrap()),
            1 => conn.batch_execute("BEGIN; SELECT 1; COMMIT").unwrap(),
            _ => conn.batch_execute("SET work_mem = '8MB'").unwrap(),
        }
    }
    assert_eq!(
        warnings.load(Ordering::SeqCst) - before,
        0,
        "warnings per {CHECKOUTS} checkouts"
    );
    pool.close_blocking();
}

#[test]
fn a_handler_failing_mid_transaction_leaves_the_next_user_clean() {
    let Some(url) =
        pg_url("adapter_postgres::a_handler_failing_mid_transaction_leaves_the_next_user_clean")
    else {
        return;
    };
    let (pool, warnings) = counting_pool(&url, &unique("np_pg_failed_tx"));

    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("BEGIN").unwrap();
    assert!(conn.batch_execute("SELECT 1/0").is_err());
    drop(conn);
    assert!(
        outside_block(&mut pool.acquire_blocking().unwrap()),
        "not 'current transaction is aborted'"
    );

    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("BEGIN; SELECT 1").unwrap();
    drop(conn);
    assert!(
        outside_block(&mut pool.acquire_blocking().unwrap()),
        "no open transaction"
    );

    let mut conn = pool.acquire_blocking().unwrap();
    let failed = (|| -> Result<(), postgres::Error> {
        let mut tx = conn.transaction()?;
        tx.batch_execute("SELECT 1/0")?;
        tx.commit()
    })();
    assert!(failed.is_err());
    drop(conn);
    assert!(outside_block(&mut pool.acquire_blocking().unwrap()));

    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("SET statement_timeout = '1234ms'")
        .unwrap();
    drop(conn);
    let timeout: String = pool
        .acquire_blocking()
        .unwrap()
        .query_one("SHOW statement_timeout", &[])
        .unwrap()
        .get(0);
    assert_ne!(timeout, "1234ms", "session settings are reset");

    assert_eq!(warnings.load(Ordering::SeqCst), 0, "no warning on the way");
    pool.close_blocking();
}

/// The query `pid`'s session ran last, as the server sees it.
fn last_query(admin: &mut Client, pid: i32) -> String {
    admin
        .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .get(0)
}

#[test]
fn a_clean_reuse_is_only_pinged_or_sends_nothing() {
    let Some(url) = pg_url("adapter_postgres::a_clean_reuse_is_only_pinged_or_sends_nothing")
    else {
        return;
    };
    let mut admin = admin(&url);
    {
        // With `ping_clean_reuse(true)`: a clean reuse gets the bounded ping (an empty query), not a
        // reset.
        let factory = factory(&url, &unique("np_pg_ping"));
        let check = factory.health_check().ping_clean_reuse(true);
        let pool = factory
            .pool_builder()
            .config(server_config(1))
            .health_check(check)
            .build()
            .unwrap();
        let mut conn = pool.acquire_blocking().unwrap();
        assert!(conn.is_tracked(), "TCP without TLS: the adapter watches it");
        let pid = backend_pid(&mut conn);
        conn.simple_query("SELECT 'left clean'").unwrap();
        drop(conn);
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!(
            last_query(&mut admin, pid),
            "",
            "the ping, and nothing else"
        );
        drop(conn);
        pool.close_blocking();
    }

    // The defaults: lent without a word to the server (a ping or a reset would be the
    // session's last query).
    let app = unique("np_pg_free");
    let pool = pool(&url, &app, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let pid = backend_pid(&mut conn);
    conn.simple_query("SELECT 'left clean'").unwrap();
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(last_query(&mut admin, pid), "SELECT 'left clean'");
    assert_eq!(backend_pid(&mut conn), pid, "the same session");
    drop(conn);

    // Killed while idle: the look at the socket sees it, no round trip needed.
    terminate_all(&mut admin, &app);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_ne!(
        backend_pid(&mut conn),
        pid,
        "a new session, not the killed one"
    );
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let pid = backend_pid(&mut conn);
    drop(conn);

    // A row iterator dropped before its end leaves an answer unread: the reuse reads it first.
    let mut conn = pool.acquire_blocking().unwrap();
    {
        use postgres::fallible_iterator::FallibleIterator;
        let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
        let mut rows = conn
            .query_raw("SELECT generate_series(1, 100000)", params)
            .unwrap();
        assert!(rows.next().unwrap().is_some());
    }
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(backend_pid(&mut conn), pid, "the same session, usable");
    assert!(outside_block(&mut conn));
    drop(conn);
    pool.close_blocking();
}

#[test]
fn prepare_cached_reuses_statements_and_follows_the_reset() {
    let Some(url) =
        pg_url("adapter_postgres::prepare_cached_reuses_statements_and_follows_the_reset")
    else {
        return;
    };
    let statements = |conn: &mut Client| -> i64 {
        conn.query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .unwrap()
            .get(0)
    };
    // Bounded, kept across checkouts.
    let pool = factory(&url, &unique("np_pg_cache"))
        .statement_cache_capacity(2)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let mut conn = pool.acquire_blocking().unwrap();
    let stmt = conn.prepare_cached("SELECT $1::int + 1").unwrap();
    assert_eq!(conn.query_one(&stmt, &[&41]).unwrap().get::<_, i32>(0), 42);
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let prepared = statements(&mut conn);
    let again = conn.prepare_cached("SELECT $1::int + 1").unwrap();
    assert_eq!(conn.query_one(&again, &[&1]).unwrap().get::<_, i32>(0), 2);
    conn.prepare_cached("SELECT $1::text").unwrap();
    conn.prepare_cached("SELECT $1::bigint").unwrap();
    assert_eq!(conn.statement_cache().len(), 2, "bounded by the capacity");
    assert!(statements(&mut conn) >= prepared);
    drop((stmt, again, conn));
    pool.close_blocking();

    // Cleared when the reset deallocates statements.
    let pool = factory(&url, &unique("np_pg_cache_discard"))
        .reset_mode(PostgresReset::DiscardAll)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut conn = pool.acquire_blocking().unwrap();
        let stmt = conn.prepare_cached("SELECT $1::int * 2").unwrap();
        let row = conn
            .query_one(&stmt, &[&21])
            .expect("not a deallocated statement");
        assert_eq!(row.get::<_, i32>(0), 42);
        conn.batch_execute("SET application_name = 'dirty'")
            .unwrap();
    }
    let mut conn = pool.acquire_blocking().unwrap();
    conn.batch_execute("DEALLOCATE ALL").unwrap();
    let stmt = conn.prepare_cached("SELECT $1::int * 2").unwrap();
    assert_eq!(conn.query_one(&stmt, &[&21]).unwrap().get::<_, i32>(0), 42);
    drop((stmt, conn));
    pool.close_blocking();

    // Refused for a transaction pooler.
    let pool = factory(&url, &unique("np_pg_cache_pooler"))
        .reset_mode(PostgresReset::TransactionPooler)
        .pool_builder()
        .config(server_config(1))
        .build()
        .unwrap();
    let err = pool
        .acquire_blocking()
        .unwrap()
        .prepare_cached("SELECT 1")
        .unwrap_err();
    assert!(matches!(err, PrepareCachedError::Refused), "{err:?}");
    pool.close_blocking();
}

/// The adapter watches only sessions that would be in the clear: asked for TLS with no TLS
/// connector, the create fails as the driver's own would, never connects unencrypted.
#[test]
fn sslmode_require_without_tls_is_never_downgraded() {
    let Some(url) = pg_url("adapter_postgres::sslmode_require_without_tls_is_never_downgraded")
    else {
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let factory = PostgresConnectionFactory::new(&format!("{url}{separator}sslmode=require"))
        .expect("the URL parses");
    let started = block_on(factory.pool_builder().config(start_one()).build_connected());
    assert!(
        started.is_err(),
        "connected without TLS although sslmode=require"
    );
}
