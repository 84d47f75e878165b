//! Both PostgreSQL adapters behind PgBouncer, in transaction and in session pooling mode
//! (`NEXUS_POOL_PGBOUNCER_TX_URL` and `NEXUS_POOL_PGBOUNCER_SESSION_URL`, else the standard
//! local ports 6432 and 6433; `.ci/pgbouncer` starts them): queries, transactions, the reset
//! of a connection left dirty, and a restart of the server behind the bouncer
//! (`NEXUS_POOL_PG_RESTART`).
//!
//! Behind a transaction pooler the pools use [`PostgresReset::TransactionPooler`] and run
//! parameterised queries with `query_typed` (the unnamed statement), as the README says; behind
//! a session pooler they keep the defaults, named statements included.
//!
//! The restart disturbs every session, so it runs alone: the other tests hold `SERVER` shared,
//! the restart holds it exclusively.
#![cfg(all(
    feature = "postgres",
    feature = "tokio-postgres",
    feature = "blocking",
    feature = "async"
))]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::admin;
use common::servers::{
    host_port, pgbouncer_session_url, pgbouncer_tx_url, restart_command, server_config,
    server_exclusive, server_shared, unique,
};
use common::sync::lock;
use futures_lite::future::block_on;
use nexus_pool::ConnectionPool;
use nexus_pool::adapters::postgres::{PostgresConnectionFactory, PrepareCachedError};
use nexus_pool::adapters::tokio_postgres::{
    PostgresReset, TokioPostgresConnectionFactory, TokioPostgresError,
};
use postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

type TpPool = ConnectionPool<TokioPostgresConnectionFactory>;
type PgPool = ConnectionPool<PostgresConnectionFactory>;

/// How long the pools may take to serve queries again once the server is back.
const RECOVERY: Duration = Duration::from_secs(30);
/// Queries per worker in the query tests.
const ROUNDS: i32 = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Transaction,
    Session,
}

impl Mode {
    fn url(self, test: &str) -> Option<String> {
        match self {
            Mode::Transaction => pgbouncer_tx_url(test),
            Mode::Session => pgbouncer_session_url(test),
        }
    }

    /// The reset mode the README recommends for this pooling mode.
    fn reset(self) -> PostgresReset {
        match self {
            Mode::Transaction => PostgresReset::TransactionPooler,
            Mode::Session => PostgresReset::Clean,
        }
    }
}

/// The factory knows the mode: its health check resets that way, and behind a transaction
/// pooler its connections refuse `prepare_cached`.
fn tp_pool(url: &str, mode: Mode, max: usize) -> TpPool {
    TokioPostgresConnectionFactory::new(url)
        .expect("the URL parses")
        .reset_mode(mode.reset())
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

fn pg_pool(url: &str, mode: Mode, max: usize) -> PgPool {
    PostgresConnectionFactory::new(url)
        .expect("the URL parses")
        .reset_mode(mode.reset())
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

/// An unpooled session for the test's own setup and checks. It sends simple queries only, so it
/// works behind a transaction pooler too.
/// The first value of the first row of a simple query's answer.
fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// The values of `table`'s column `x`, in order, as the admin sees them.
fn rows(admin: &mut postgres::Client, table: &str) -> Vec<String> {
    admin
        .simple_query(&format!("SELECT x FROM {table} ORDER BY x"))
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// A query that answers `t` outside a transaction block and `f` inside one.
const OUTSIDE_BLOCK: &str = "SELECT transaction_timestamp() = statement_timestamp()";

// ---------------------------------------------------------------------------------------------
// A proxy that records what the client sends
// ---------------------------------------------------------------------------------------------

/// A TCP proxy in front of the bouncer that keeps every byte the clients send, to show what the
/// reset put on the wire.
struct Recorder {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some(&log),
                );
                pipe(server, client, None);
            }
        });
        Recorder { port, sent }
    }

    /// `url` with its `host:port` replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        url.replacen(
            &host_port(url, 5432),
            &format!("127.0.0.1:{}", self.port),
            1,
        )
    }

    fn sent_contains(&self, text: &str) -> bool {
        let sent = lock(&self.sent);
        sent.windows(text.len()).any(|w| w == text.as_bytes())
    }
}

/// Copies `from` to `to` on a thread of its own, appending what passes to `log`.
fn pipe(mut from: TcpStream, mut to: TcpStream, log: Option<&Arc<Mutex<Vec<u8>>>>) {
    let log = log.cloned();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(log) = &log {
                        lock(log).extend_from_slice(&buf[..n]);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

fn tokio_postgres_queries(mode: Mode) {
    let test = format!("pgbouncer::tokio_postgres_queries_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let pool = tp_pool(&url, mode, 3);
    std::thread::scope(|s| {
        for worker in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let x = worker * 1000 + i;
                    let conn = pool.acquire_blocking().unwrap();
                    let row = block_on(conn.query_typed_one("SELECT $1 + 1", &[(&x, Type::INT4)]))
                        .unwrap();
                    assert_eq!(row.get::<_, i32>(0), x + 1);
                    let answer = block_on(conn.simple_query("SELECT 'nexus'")).unwrap();
                    assert_eq!(first_value(&answer).as_deref(), Some("nexus"));
                }
            });
        }
    });
    if mode == Mode::Session {
        // A session pooler keeps one server session per client: named statements work, also
        // across checkouts of the same connection.
        pool.close_blocking();
        let pool = tp_pool(&url, mode, 1);
        let conn = pool.acquire_blocking().unwrap();
        let stmt = block_on(conn.prepare("SELECT $1::int * 2")).unwrap();
        drop(conn);
        for _ in 0..3 {
            let conn = pool.acquire_blocking().unwrap();
            let row = block_on(conn.query_one(&stmt, &[&21])).unwrap();
            assert_eq!(row.get::<_, i32>(0), 42);
        }
        pool.close_blocking();
        return;
    }
    pool.close_blocking();
}

fn postgres_queries(mode: Mode) {
    let test = format!("pgbouncer::postgres_queries_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let pool = pg_pool(&url, mode, 3);
    std::thread::scope(|s| {
        for worker in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let x = worker * 1000 + i;
                    let mut conn = pool.acquire_blocking().unwrap();
                    let row = conn
                        .query_typed_one("SELECT $1 + 1", &[(&x, Type::INT4)])
                        .unwrap();
                    assert_eq!(row.get::<_, i32>(0), x + 1);
                    let answer = conn.simple_query("SELECT 'nexus'").unwrap();
                    assert_eq!(first_value(&answer).as_deref(), Some("nexus"));
                }
            });
        }
    });
    if mode == Mode::Session {
        let mut conn = pool.acquire_blocking().unwrap();
        let row = conn.query_one("SELECT $1::int * 2", &[&21]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
    }
    pool.close_blocking();
}

// ---------------------------------------------------------------------------------------------
// Transactions: a commit, and a rollback after an error
// ---------------------------------------------------------------------------------------------

fn tokio_postgres_transactions(mode: Mode) {
    let test = format!("pgbouncer::tokio_postgres_transactions_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let table = unique("np_pgb_tp_tx");
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    let pool = tp_pool(&url, mode, 2);

    let mut conn = pool.acquire_blocking().unwrap();
    block_on(async {
        let tx = conn.transaction().await.unwrap();
        tx.query_typed(
            &format!("INSERT INTO {table} VALUES ($1)"),
            &[(&1i32, Type::INT4)],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let tx = conn.transaction().await.unwrap();
        tx.query_typed(
            &format!("INSERT INTO {table} VALUES ($1)"),
            &[(&2i32, Type::INT4)],
        )
        .await
        .unwrap();
        let err = tx.batch_execute("SELECT 1/0").await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
        );
        tx.rollback().await.unwrap();
    });
    let outside = block_on(conn.simple_query(OUTSIDE_BLOCK)).unwrap();
    assert_eq!(first_value(&outside).as_deref(), Some("t"), "no block left");
    drop(conn);

    assert_eq!(
        rows(&mut admin, &table),
        ["1"],
        "committed kept, failed rolled back"
    );
    pool.close_blocking();
    admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

fn postgres_transactions(mode: Mode) {
    let test = format!("pgbouncer::postgres_transactions_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let table = unique("np_pgb_pg_tx");
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    let pool = pg_pool(&url, mode, 2);

    let mut conn = pool.acquire_blocking().unwrap();
    let mut tx = conn.transaction().unwrap();
    tx.query_typed(
        &format!("INSERT INTO {table} VALUES ($1)"),
        &[(&1i32, Type::INT4)],
    )
    .unwrap();
    tx.commit().unwrap();

    let mut tx = conn.transaction().unwrap();
    tx.query_typed(
        &format!("INSERT INTO {table} VALUES ($1)"),
        &[(&2i32, Type::INT4)],
    )
    .unwrap();
    let err = tx.batch_execute("SELECT 1/0").unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    tx.rollback().unwrap();
    let outside = conn.simple_query(OUTSIDE_BLOCK).unwrap();
    assert_eq!(first_value(&outside).as_deref(), Some("t"), "no block left");
    drop(conn);

    assert_eq!(
        rows(&mut admin, &table),
        ["1"],
        "committed kept, failed rolled back"
    );
    pool.close_blocking();
    admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The reset: a connection left inside a transaction is clean for the next user
// ---------------------------------------------------------------------------------------------

/// What a reset behind the bouncer must have sent, or not, given what the first user did.
fn check_wire(recorder: &Recorder, mode: Mode) {
    assert!(
        recorder.sent_contains("ROLLBACK"),
        "the open blocks were rolled back"
    );
    if mode == Mode::Transaction {
        for session_level in [
            "DISCARD",
            "RESET ALL",
            "SET SESSION AUTHORIZATION",
            "UNLISTEN",
        ] {
            assert!(
                !recorder.sent_contains(session_level),
                "{session_level} sent behind a transaction pooler"
            );
        }
    } else {
        assert!(
            recorder.sent_contains("RESET ALL"),
            "behind a session pooler, the default reset cleans the session"
        );
    }
}

fn tokio_postgres_reset(mode: Mode) {
    let test = format!("pgbouncer::tokio_postgres_reset_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let table = unique("np_pgb_tp_reset");
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    let recorder = Recorder::start(host_port(&url, 5432));
    let pool = tp_pool(&recorder.url(&url), mode, 1);

    // Left inside a block, after a query the adapter takes for a session change (behind a
    // session pooler it is one: `SET`; behind a transaction pooler, only a text that names
    // `temp`, since a session `SET` there would outlive this client on the server connection).
    let conn = pool.acquire_blocking().unwrap();
    let change = match mode {
        Mode::Session => "SET search_path = nowhere, public",
        Mode::Transaction => "SELECT 'temp'",
    };
    block_on(conn.batch_execute(change)).unwrap();
    block_on(conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))).unwrap();
    drop(conn);

    // Left inside a failed block.
    let conn = pool.acquire_blocking().unwrap();
    let outside = block_on(conn.simple_query(OUTSIDE_BLOCK)).unwrap();
    assert_eq!(
        first_value(&outside).as_deref(),
        Some("t"),
        "clean for the next user"
    );
    if mode == Mode::Session {
        let path = block_on(conn.simple_query("SHOW search_path")).unwrap();
        assert_ne!(
            first_value(&path).as_deref(),
            Some("nowhere, public"),
            "the session was reset"
        );
    }
    block_on(conn.batch_execute("BEGIN")).unwrap();
    block_on(conn.batch_execute("SELECT 1/0")).unwrap_err();
    drop(conn);

    // The next users find a working session, many times over.
    for i in 0..10 {
        let conn = pool.acquire_blocking().unwrap();
        let row = block_on(conn.query_typed_one(
            &format!("INSERT INTO {table} VALUES ($1) RETURNING x"),
            &[(&(i + 10), Type::INT4)],
        ))
        .unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 10);
    }
    assert_eq!(
        rows(&mut admin, &table).len(),
        10,
        "the abandoned row is gone"
    );
    check_wire(&recorder, mode);
    pool.close_blocking();
    admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

fn postgres_reset(mode: Mode) {
    let test = format!("pgbouncer::postgres_reset_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let table = unique("np_pgb_pg_reset");
    let mut admin = admin(&url);
    admin
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    let recorder = Recorder::start(host_port(&url, 5432));
    let pool = pg_pool(&recorder.url(&url), mode, 1);

    let mut conn = pool.acquire_blocking().unwrap();
    if mode == Mode::Session {
        conn.batch_execute("SET search_path = nowhere, public")
            .unwrap();
    }
    conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    let outside = conn.simple_query(OUTSIDE_BLOCK).unwrap();
    assert_eq!(
        first_value(&outside).as_deref(),
        Some("t"),
        "clean for the next user"
    );
    if mode == Mode::Session {
        let path = conn.simple_query("SHOW search_path").unwrap();
        assert_ne!(
            first_value(&path).as_deref(),
            Some("nowhere, public"),
            "the session was reset"
        );
    }
    conn.batch_execute("BEGIN").unwrap();
    conn.batch_execute("SELECT 1/0").unwrap_err();
    drop(conn);

    for i in 0..10 {
        let mut conn = pool.acquire_blocking().unwrap();
        let row = conn
            .query_typed_one(
                &format!("INSERT INTO {table} VALUES ($1) RETURNING x"),
                &[(&(i + 10), Type::INT4)],
            )
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 10);
    }
    assert_eq!(
        rows(&mut admin, &table).len(),
        10,
        "the abandoned row is gone"
    );
    check_wire(&recorder, mode);
    pool.close_blocking();
    admin.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A server restart behind the bouncer
// ---------------------------------------------------------------------------------------------

/// One query through a fresh checkout; a connection that failed is never put back.
fn tp_round(pool: &TpPool) -> Result<(), String> {
    let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
    match block_on(conn.simple_query("SELECT 1")) {
        Ok(answer) if first_value(&answer).as_deref() == Some("1") => Ok(()),
        Ok(answer) => panic!("a wrong answer: {answer:?}"),
        Err(e) => {
            conn.mark_broken();
            Err(e.to_string())
        }
    }
}

fn pg_round(pool: &PgPool) -> Result<(), String> {
    let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
    match conn.simple_query("SELECT 1") {
        Ok(answer) if first_value(&answer).as_deref() == Some("1") => Ok(()),
        Ok(answer) => panic!("a wrong answer: {answer:?}"),
        Err(e) => {
            conn.mark_broken();
            Err(e.to_string())
        }
    }
}

/// When the server behind the bouncer started, asked through `pool`.
fn postmaster_start(pool: &TpPool) -> Option<String> {
    let conn = pool.acquire_blocking().unwrap();
    first_value(&block_on(conn.simple_query("SELECT pg_postmaster_start_time()")).unwrap())
}

/// Runs `round` until it succeeds `streak` times in a row, or `RECOVERY` passes; returns how
/// long it took, or the last error.
fn recovers(name: &str, streak: usize, mut round: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    let mut in_a_row = 0;
    let mut last = String::new();
    while in_a_row < streak {
        assert!(
            start.elapsed() < RECOVERY,
            "{name}: not recovered within {RECOVERY:?}; last error: {last}"
        );
        match round() {
            Ok(()) => in_a_row += 1,
            Err(e) => {
                in_a_row = 0;
                last = e;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    start.elapsed()
}

#[test]
fn server_restart_behind_the_bouncer() {
    const TEST: &str = "pgbouncer::server_restart_behind_the_bouncer";
    let Some(tx_url) = Mode::Transaction.url(TEST) else {
        return;
    };
    let Some(session_url) = Mode::Session.url(TEST) else {
        return;
    };
    let Some(restart) = restart_command(TEST) else {
        return;
    };
    let _server = server_exclusive();

    let tp = [
        (
            "tokio-postgres, transaction",
            tp_pool(&tx_url, Mode::Transaction, 2),
        ),
        (
            "tokio-postgres, session",
            tp_pool(&session_url, Mode::Session, 2),
        ),
    ];
    let pg = [
        (
            "postgres, transaction",
            pg_pool(&tx_url, Mode::Transaction, 2),
        ),
        ("postgres, session", pg_pool(&session_url, Mode::Session, 2)),
    ];
    // Warm: each pool holds connections to the bouncer, and the bouncer to the server.
    for (name, pool) in &tp {
        recovers(name, 3, || tp_round(pool));
    }
    for (name, pool) in &pg {
        recovers(name, 3, || pg_round(pool));
    }

    let started = postmaster_start(&tp[0].1);

    let status = Command::new("sh")
        .arg("-c")
        .arg(&restart)
        .status()
        .expect("run the restart command");
    assert!(status.success(), "`{restart}` failed: {status}");

    // Every pool serves again within the bound, and then keeps serving.
    for (name, pool) in &tp {
        let took = recovers(name, 10, || tp_round(pool));
        eprintln!("{name}: serving again after {took:?}");
    }
    for (name, pool) in &pg {
        let took = recovers(name, 10, || pg_round(pool));
        eprintln!("{name}: serving again after {took:?}");
    }
    assert_ne!(
        postmaster_start(&tp[0].1),
        started,
        "the server behind the bouncer was restarted"
    );
    for (_, pool) in tp {
        pool.close_blocking();
    }
    for (_, pool) in pg {
        pool.close_blocking();
    }
}

/// `prepare_cached` through the bouncer: behind a session pooler the cached statements serve
/// every checkout of the connection (one server session per client); behind a transaction pooler
/// the adapter refuses it with an error that says what to use, and `query_typed` is what works
/// there.
fn tokio_postgres_statement_cache(mode: Mode) {
    let test = format!("pgbouncer::tokio_postgres_statement_cache_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let pool = tp_pool(&url, mode, 2);
    std::thread::scope(|s| {
        for worker in 0..3 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let x = worker * 1000 + i;
                    let conn = pool.acquire_blocking().unwrap();
                    let row = match block_on(conn.prepare_cached("SELECT $1::int + 1")) {
                        Ok(stmt) => {
                            assert_eq!(mode, Mode::Session, "cached only behind a session pooler");
                            block_on(conn.query_one(&stmt, &[&x])).unwrap()
                        }
                        Err(err) => {
                            assert_eq!(mode, Mode::Transaction, "{err}");
                            assert!(
                                matches!(err, TokioPostgresError::StatementCacheRefused),
                                "{err:?}"
                            );
                            block_on(
                                conn.query_typed_one("SELECT $1::int + 1", &[(&x, Type::INT4)]),
                            )
                            .unwrap()
                        }
                    };
                    assert_eq!(row.get::<_, i32>(0), x + 1);
                    // Inside a transaction block too (one server connection for its length).
                    let mut conn = conn;
                    block_on(async {
                        let tx = conn.transaction().await.unwrap();
                        let row = tx
                            .query_typed_one("SELECT $1::int * 2", &[(&x, Type::INT4)])
                            .await
                            .unwrap();
                        assert_eq!(row.get::<_, i32>(0), x * 2);
                        tx.commit().await.unwrap();
                    });
                }
            });
        }
    });
    if mode == Mode::Session {
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!(conn.statement_cache().len(), 1, "one statement, cached");
    }
    pool.close_blocking();
}

/// The blocking adapter's `prepare_cached` through the bouncer, as the async one's above.
fn postgres_statement_cache(mode: Mode) {
    let test = format!("pgbouncer::postgres_statement_cache_{mode:?}");
    let Some(url) = mode.url(&test) else { return };
    let _server = server_shared();
    let pool = pg_pool(&url, mode, 2);
    std::thread::scope(|s| {
        for worker in 0..3 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let x = worker * 1000 + i;
                    let mut conn = pool.acquire_blocking().unwrap();
                    let row = match conn.prepare_cached("SELECT $1::int + 1") {
                        Ok(stmt) => {
                            assert_eq!(mode, Mode::Session, "cached only behind a session pooler");
                            conn.query_one(&stmt, &[&x]).unwrap()
                        }
                        Err(err) => {
                            assert_eq!(mode, Mode::Transaction, "{err}");
                            assert!(matches!(err, PrepareCachedError::Refused), "{err:?}");
                            conn.query_typed_one("SELECT $1::int + 1", &[(&x, Type::INT4)])
                                .unwrap()
                        }
                    };
                    assert_eq!(row.get::<_, i32>(0), x + 1);
                }
            });
        }
    });
    pool.close_blocking();
}

/// Each scenario runs as two tests, behind the bouncer in transaction and in session mode.
macro_rules! in_both_modes {
    ($($scenario:ident => $transaction:ident, $session:ident;)+) => {
        $(
            #[test]
            fn $transaction() {
                $scenario(Mode::Transaction);
            }

            #[test]
            fn $session() {
                $scenario(Mode::Session);
            }
        )+
    };
}

in_both_modes! {
    tokio_postgres_queries => tokio_postgres_queries_transaction, tokio_postgres_queries_session;
    postgres_queries => postgres_queries_transaction, postgres_queries_session;
    tokio_postgres_transactions => tokio_postgres_transactions_transaction, tokio_postgres_transactions_session;
    postgres_transactions => postgres_transactions_transaction, postgres_transactions_session;
    tokio_postgres_reset => tokio_postgres_reset_transaction, tokio_postgres_reset_session;
    postgres_reset => postgres_reset_transaction, postgres_reset_session;
    tokio_postgres_statement_cache => tokio_postgres_statement_cache_transaction, tokio_postgres_statement_cache_session;
    postgres_statement_cache => postgres_statement_cache_transaction, postgres_statement_cache_session;
}
