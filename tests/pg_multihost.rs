//! Many hosts in one connection string, as a failover setup gives them: both PostgreSQL adapters
//! skip a host that refuses and one whose session is not what `target_session_attrs` asks for,
//! and connect to the next. Against the real server (`NEXUS_POOL_PG_URL`, else the local one);
//! the hosts that fail are loopback ports nobody listens on.
//!
//! `the_pool_follows_a_server_stopped_and_started_again` stops the server and starts it again
//! (with the command in `NEXUS_POOL_PG_RESTART`, its last word `restart` turned into `stop` and
//! `start`; `.ci/run` sets it). It holds `SERVER` exclusively, the other tests shared.
#![cfg(all(feature = "postgres", feature = "tokio-postgres", feature = "blocking"))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::servers::{
    RESTART_VAR, pg_url, refused_port, server_config, server_exclusive, server_shared,
};
use nexus_pool::adapters::postgres::PostgresConnectionFactory;
use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, connection_lost};
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};

/// `url` with a refusing host put in front of its own, and `target_session_attrs=read-write`.
fn failover_url(url: &str) -> String {
    let config: postgres::Config = url.parse().expect("NEXUS_POOL_PG_URL parses");
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!(
        "host=127.0.0.1,{host} port={},{port} user={user} dbname={db} \
         target_session_attrs=read-write connect_timeout=5",
        refused_port()
    )
}

#[test]
fn the_tokio_postgres_adapter_connects_to_the_first_host_that_answers_read_write() {
    let Some(url) = pg_url("pg_multihost::tokio_postgres") else {
        return;
    };
    let _server = server_shared();
    let pool = TokioPostgresConnectionFactory::new(&failover_url(&url))
        .unwrap()
        .pool_builder()
        .config(server_config(2))
        .build()
        .unwrap();
    for _ in 0..3 {
        let conn = pool.acquire_blocking().unwrap();
        let rows = futures_lite::future::block_on(conn.simple_query("SHOW transaction_read_only"))
            .unwrap();
        let read_only = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(read_only.as_deref(), Some("off"));
    }
    pool.close_blocking();
}

#[test]
fn the_postgres_adapter_connects_to_the_first_host_that_answers_read_write() {
    let Some(url) = pg_url("pg_multihost::postgres") else {
        return;
    };
    let _server = server_shared();
    let pool = PostgresConnectionFactory::new(&failover_url(&url))
        .unwrap()
        .pool_builder()
        .config(server_config(2))
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut conn = pool.acquire_blocking().unwrap();
        let row = conn.query_one("SHOW transaction_read_only", &[]).unwrap();
        assert_eq!(row.get::<_, String>(0), "off");
    }
    pool.close_blocking();
}

/// A session that is read-only where read-write is asked for is skipped like a refused host:
/// with no other host, the create fails with the adapter's message.
#[test]
fn a_read_only_session_is_not_taken_for_read_write() {
    let Some(url) = pg_url("pg_multihost::read_only") else {
        return;
    };
    let _server = server_shared();
    let config_url = format!(
        "{} options='-c default_transaction_read_only=on'",
        failover_url(&url)
    );
    let factory = TokioPostgresConnectionFactory::new(&config_url).unwrap();
    let started = futures_lite::future::block_on(
        factory
            .pool_builder()
            .config(common::servers::start_one())
            .build_connected(),
    );
    let err = match started {
        Ok(_) => panic!("a read-only session was taken for read-write"),
        Err(err) => err,
    };
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(
        chain.iter().any(|t| t.contains("target_session_attrs")
            || t.contains("read-write")
            || t.contains("read only")),
        "{chain:#?}"
    );
}

/// How long an acquire waits while the server is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pool may take to serve again once the server is back.
const RECOVERY: Duration = Duration::from_secs(30);

/// Runs `command` through the shell; panics if it fails.
fn run(command: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .expect("run the server command");
    assert!(status.success(), "`{command}` failed: {status}");
}

/// Starts the server again when dropped, also when the test panics while it is down.
struct Restore(Option<String>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(start) = self.0.take() {
            let _ = Command::new("sh").arg("-c").arg(&start).status();
        }
    }
}

/// The pool's counts add up and stay within its bound, and settle at `lent` active: nothing is
/// leaked (a connection being created or destroyed in the background counts as active
/// meanwhile, hence the wait).
#[track_caller]
fn sane(pool: &ConnectionPool<TokioPostgresConnectionFactory>, lent: usize) {
    let m = pool.current_metrics();
    assert_eq!(m.total, m.idle + m.active, "{m:?}");
    assert!(m.total <= m.max, "{m:?}");
    assert_eq!(m.waiting, 0, "{m:?}");
    let settled = common::wait::eventually(Duration::from_secs(10), || {
        let m = pool.current_metrics();
        m.active == lent && m.total == m.idle + m.active && m.total <= m.max
    });
    assert!(settled, "{:?}", pool.current_metrics());
}

/// One request as an application makes it: acquire, a write, release; a lost session is
/// marked broken, and the pool evicts every connection (the failover recipe in the README).
fn round(pool: &ConnectionPool<TokioPostgresConnectionFactory>) -> Result<(), String> {
    // The whole chain, as a user's `{:#}` prints it: the cause of a timeout is its source.
    let mut conn = pool
        .acquire_blocking()
        .map_err(|e| common::servers::chain(&e).join(": "))?;
    match futures_lite::future::block_on(conn.batch_execute("SELECT 1")) {
        Ok(()) => Ok(()),
        Err(e) => {
            if connection_lost(&e) {
                conn.mark_broken();
                pool.evict_all();
            }
            Err(e.to_string())
        }
    }
}

/// A failover as a multi-host URL with `target_session_attrs=read-write` sees it: the server
/// stops (the refusing host in front of it stays down) and comes back. While it is down,
/// acquires fail within the acquire timeout with an error that says why; once it is back, the
/// pool serves again, every connection a new session; the counts stay sane throughout.
#[test]
fn the_pool_follows_a_server_stopped_and_started_again() {
    const TEST: &str = "pg_multihost::the_pool_follows_a_server_stopped_and_started_again";
    let Some(url) = pg_url(TEST) else {
        return;
    };
    let restart = match std::env::var(RESTART_VAR) {
        Ok(cmd) if cmd.trim_end().ends_with(" restart") => cmd,
        _ => {
            common::servers::skip(
                "no restart command",
                TEST,
                &format!(
                    "{RESTART_VAR} is not set to a command ending in `restart` (its `stop` and \
                     `start` forms stop and start the server); .ci/run sets it"
                ),
            );
            return;
        }
    };
    let base = restart
        .trim_end()
        .strip_suffix("restart")
        .unwrap()
        .to_owned();
    let (stop, start) = (format!("{base}stop"), format!("{base}start"));
    let _server = server_exclusive();

    let pool = TokioPostgresConnectionFactory::new(&failover_url(&url))
        .unwrap()
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .max_connections(3)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let pid = |conn: &nexus_pool::PooledConnection<'_, TokioPostgresConnectionFactory>| -> i32 {
        futures_lite::future::block_on(conn.query_one("SELECT pg_backend_pid()", &[]))
            .unwrap()
            .get(0)
    };
    let before: Vec<i32> = {
        let held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
        held.iter().map(pid).collect()
    };
    sane(&pool, 0);

    let mut restore = Restore(Some(start.clone()));
    run(&stop);
    // Down: the idle sessions are gone; each request fails, and no acquire waits past its
    // timeout (a create against a refusing server fails at once and is retried until then).
    let mut failures = Vec::new();
    for _ in 0..5 {
        let began = Instant::now();
        match round(&pool) {
            Ok(()) => panic!("served while the server is stopped"),
            Err(e) => failures.push(e),
        }
        assert!(
            began.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(3),
            "an acquire waited {:?}",
            began.elapsed()
        );
        sane(&pool, 0);
    }
    assert!(
        failures.iter().all(|e| e.contains("refused")),
        "every error says why: {failures:#?}"
    );
    eprintln!("while down: {}", failures[0]);

    run(&start);
    restore.0 = None;
    let began = Instant::now();
    let mut in_a_row = 0;
    let mut last = String::new();
    while in_a_row < 10 {
        assert!(
            began.elapsed() < RECOVERY,
            "not serving again within {RECOVERY:?}; last error: {last}"
        );
        match round(&pool) {
            Ok(()) => in_a_row += 1,
            Err(e) => {
                in_a_row = 0;
                last = e;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        sane(&pool, 0);
    }
    eprintln!("serving again {:?} after the start", began.elapsed());
    let after: Vec<i32> = {
        let held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
        sane(&pool, 3);
        held.iter().map(pid).collect()
    };
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "only new sessions after the restart: {before:?} then {after:?}"
    );
    sane(&pool, 0);
    pool.close_blocking();
}
