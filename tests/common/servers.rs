//! Helpers for the tests against database servers (adapters, stores, faults): which servers to
//! use, the skip line printed when no server answers, the lock that keeps a server restart away
//! from the other tests, unique names and temporary files.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::sync::{read, write};

pub const PG_VAR: &str = "NEXUS_POOL_PG_URL";
pub const REDIS_VAR: &str = "NEXUS_POOL_REDIS_URL";
pub const MYSQL_VAR: &str = "NEXUS_POOL_MYSQL_URL";
/// Where the servers listen when they run on this machine with their standard settings; the
/// tests use these when the variables are unset, so `cargo test --all-features` runs them on any
/// machine with the servers up.
pub const PG_LOCAL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_LOCAL: &str = "redis://127.0.0.1:6379/";
pub const MYSQL_LOCAL: &str = "mysql://root@127.0.0.1:3306/test";
/// PgBouncer in front of the PostgreSQL server, in transaction and in session pooling mode.
/// `.ci/pgbouncer` starts them (`.ci/run` does, on the standard ports below).
pub const PGBOUNCER_TX_VAR: &str = "NEXUS_POOL_PGBOUNCER_TX_URL";
pub const PGBOUNCER_SESSION_VAR: &str = "NEXUS_POOL_PGBOUNCER_SESSION_URL";
pub const PGBOUNCER_TX_LOCAL: &str = "postgres://postgres@127.0.0.1:6432/test";
pub const PGBOUNCER_SESSION_LOCAL: &str = "postgres://postgres@127.0.0.1:6433/test";

/// The variable holding the shell command that restarts the PostgreSQL server (`.ci/run` sets
/// it).
pub const RESTART_VAR: &str = "NEXUS_POOL_PG_RESTART";

/// How every skip line starts. `.ci/run` fails when it finds one in the test output, so change
/// both together.
pub const SKIP_MARKER: &str = "SKIPPED";

/// Prints one skip line: `SKIPPED (<why>): <test>: <how to run it>`. It goes straight to the
/// stderr handle, not through `eprintln!`: the test harness captures what the print macros
/// write in a passing test, and a skipped test passes, so a macro's line would never be seen.
/// One `write_all` of the whole line, so the harness's own lines cannot land inside it.
pub fn skip(why: &str, test: &str, detail: &str) {
    let line = format!("{SKIP_MARKER} ({why}): {test}: {detail}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The command that restarts the PostgreSQL server, from `NEXUS_POOL_PG_RESTART`, or `None` after
/// one skip line. It has no default: restarting the server under whoever else uses it is not
/// something a test run should do unasked.
pub fn restart_command(test: &str) -> Option<String> {
    match std::env::var(RESTART_VAR) {
        Ok(cmd) if !cmd.trim().is_empty() => Some(cmd),
        _ => {
            skip(
                "no restart command",
                test,
                &format!(
                    "{RESTART_VAR} is not set (the shell command that restarts the PostgreSQL \
                     server); .ci/run sets it, e.g. {RESTART_VAR}=\"pg_ctlcluster \
                     --skip-systemctl-redirect $(ls /etc/postgresql) main restart\""
                ),
            );
            None
        }
    }
}

/// Keeps a test that stops or restarts the server (it holds this exclusively) away from the
/// tests of the same binary that use the server (they hold it shared).
static SERVER: RwLock<()> = RwLock::new(());

/// For a test that uses the server: no restart meanwhile.
pub fn server_shared() -> RwLockReadGuard<'static, ()> {
    read(&SERVER)
}

/// For a test that disturbs every session on the server: it runs alone.
pub fn server_exclusive() -> RwLockWriteGuard<'static, ()> {
    write(&SERVER)
}

/// The PostgreSQL URL to test against: `NEXUS_POOL_PG_URL`, or the standard local address when
/// it is unset. `None` (after one skip line) when the variable is unset and nothing answers at
/// the local address. Panics, naming the server and how to start it, when the variable is set
/// and its server cannot be reached: a URL asked for is never skipped.
pub fn pg_url(test: &str) -> Option<String> {
    server_url(
        test,
        PG_VAR,
        PG_LOCAL,
        5432,
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect \"$(ls /etc/postgresql)\" main start",
    )
}

/// The URL of a PgBouncer in transaction pooling mode: `NEXUS_POOL_PGBOUNCER_TX_URL`, else the
/// standard local port; see [`pg_url`].
pub fn pgbouncer_tx_url(test: &str) -> Option<String> {
    server_url(
        test,
        PGBOUNCER_TX_VAR,
        PGBOUNCER_TX_LOCAL,
        6432,
        "PgBouncer (transaction pooling)",
        ".ci/pgbouncer 6432 transaction",
    )
}

/// The URL of a PgBouncer in session pooling mode: `NEXUS_POOL_PGBOUNCER_SESSION_URL`, else the
/// standard local port; see [`pg_url`].
pub fn pgbouncer_session_url(test: &str) -> Option<String> {
    server_url(
        test,
        PGBOUNCER_SESSION_VAR,
        PGBOUNCER_SESSION_LOCAL,
        6433,
        "PgBouncer (session pooling)",
        ".ci/pgbouncer 6433 session",
    )
}

/// The Redis URL to test against; see [`pg_url`].
pub fn redis_url(test: &str) -> Option<String> {
    server_url(
        test,
        REDIS_VAR,
        REDIS_LOCAL,
        6379,
        "Redis",
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    )
}

/// The MySQL/MariaDB URL to test against; see [`pg_url`].
pub fn mysql_url(test: &str) -> Option<String> {
    server_url(
        test,
        MYSQL_VAR,
        MYSQL_LOCAL,
        3306,
        "MariaDB/MySQL",
        "service mariadb start",
    )
}

fn server_url(
    test: &str,
    var: &str,
    local: &str,
    default_port: u16,
    server: &str,
    start: &str,
) -> Option<String> {
    let asked = std::env::var(var).ok().filter(|url| !url.trim().is_empty());
    let url = asked.clone().unwrap_or_else(|| local.to_owned());
    let addr = host_port(&url, default_port);
    let Err(e) = reachable(&addr) else {
        return Some(url);
    };
    match asked {
        Some(_) => panic!(
            "{server} is not reachable at {addr} ({e}), but {var}={url} asks for it. \
             Start it with `{start}` (.ci/run does this), or unset {var} to use {local} \
             (the test skips if nothing answers there)."
        ),
        None => {
            skip(
                "no server",
                test,
                &format!(
                    "{var} is unset and no {server} answers at {addr} ({e}); start one with \
                     `{start}`, or set {var}"
                ),
            );
            None
        }
    }
}

/// Whether something accepts a TCP connection at `addr` within 3 s.
fn reachable(addr: &str) -> Result<(), String> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_owned())?;
    TcpStream::connect_timeout(&a, Duration::from_secs(3))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `host:port` from `scheme://[user[:pass]@]host[:port][/...]`.
pub fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    }
}

/// A name no other test (in this process or another) uses: `prefix_pid_counter_nanos`, all
/// lowercase ASCII, a valid SQL identifier.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh path for an SQLite file in the temp dir; remove it with [`remove_db`].
pub fn temp_db(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.db", unique(prefix)))
}

/// Removes an SQLite file and its WAL companions.
pub fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A temporary database file, removed (with its WAL files) when the test ends.
pub struct TempDb(std::path::PathBuf);

impl TempDb {
    pub fn new(prefix: &str) -> Self {
        TempDb(temp_db(prefix))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        remove_db(&self.0);
    }
}

/// The server tests' pool configuration: `max` connections, a generous acquire timeout, the
/// rest default (one connection kept open).
pub fn server_config(max: usize) -> nexus_pool::ConnectionPoolConfig {
    nexus_pool::ConnectionPoolConfig::builder()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The text of `err` and of each of its sources, outermost first.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(err), |&e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// Walks `err`'s `source()` chain as a user (or anyhow's `{:#}`) would, and checks the error
/// contract: `err`'s own text is one line, the driver's error `D` is reachable, and some text in
/// the chain contains `needle` (the server's or the OS's words). Returns the driver's error.
#[track_caller]
pub fn driver_error<'e, D: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
    needle: &str,
) -> &'e D {
    let texts = chain(err);
    assert!(!texts[0].contains('\n'), "not one line: {:?}", texts[0]);
    assert!(
        texts.iter().any(|t| t.contains(needle)),
        "no error in the chain says {needle:?}: {texts:#?}"
    );
    std::iter::successors(Some(err), |&e| e.source())
        .find_map(|e| e.downcast_ref::<D>())
        .unwrap_or_else(|| {
            panic!(
                "the chain holds no {}: {texts:#?}",
                std::any::type_name::<D>()
            )
        })
}

/// A loopback port nobody listens on: one the OS just handed out and took back.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// Settings that make exactly one connection before the pool is handed out, so that
/// `build_connected` fails with the first create's error.
pub fn start_one() -> nexus_pool::ConnectionPoolConfig {
    nexus_pool::ConnectionPoolConfig::builder()
        .min_connections(1)
        .max_connections(1)
        .create_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What `build_connected` fails with for `factory` under [`start_one`]'s settings: the first
/// create's error. Panics if the connection was made.
#[cfg(feature = "blocking")]
pub fn start_error<F: nexus_pool::ConnectionFactory>(
    factory: F,
) -> nexus_pool::PoolError<F::Error> {
    let started = nexus_pool::ConnectionPool::builder(factory)
        .config(start_one())
        .build_connected();
    match futures_lite::future::block_on(started) {
        Ok(pool) => {
            pool.close_blocking();
            panic!("the connection was made")
        }
        Err(e) => e,
    }
}
