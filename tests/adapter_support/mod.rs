//! Helpers for the adapter and store tests: which servers to use, unique names, and the skip
//! line printed when a server's variable is unset.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PG_VAR: &str = "NEXUS_POOL_PG_URL";
pub const REDIS_VAR: &str = "NEXUS_POOL_REDIS_URL";
const PG_EXAMPLE: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_EXAMPLE: &str = "redis://127.0.0.1:6379/";

/// Writes straight to stderr: the test harness captures `println!`/`eprintln!` of passing tests,
/// and a skip must be seen.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The PostgreSQL URL to test against, or `None` (after printing one skip line) when the
/// variable is unset. Panics, naming the server and how to start it, when the variable is set
/// and the server cannot be reached.
pub fn pg_url(test: &str) -> Option<String> {
    server_url(
        test,
        PG_VAR,
        PG_EXAMPLE,
        5432,
        "PostgreSQL",
        "pg_ctlcluster --skip-systemctl-redirect \"$(ls /etc/postgresql)\" main start",
    )
}

/// The Redis URL to test against; see [`pg_url`].
pub fn redis_url(test: &str) -> Option<String> {
    server_url(
        test,
        REDIS_VAR,
        REDIS_EXAMPLE,
        6379,
        "Redis",
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    )
}

fn server_url(
    test: &str,
    var: &str,
    example: &str,
    default_port: u16,
    server: &str,
    start: &str,
) -> Option<String> {
    let url = match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            say(&format!(
                "skipped {test}: {var} is not set; to run it: {var}={example} cargo test --all-features"
            ));
            return None;
        }
    };
    let addr = host_port(&url, default_port);
    let reachable = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    if let Err(e) = reachable {
        panic!(
            "{server} is not reachable at {addr} ({e}), but {var}={url} asks for it. \
             Start it with `{start}` (.ci/run does this), or unset {var} to skip these tests."
        );
    }
    Some(url)
}

/// `host:port` from `scheme://[user[:pass]@]host[:port][/...]`.
fn host_port(url: &str, default_port: u16) -> String {
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

/// The adapter tests' pool configuration: `max` connections, a generous acquire timeout, the
/// rest default.
pub fn config(max: usize) -> nexus_pool::ConnectionPoolConfig {
    nexus_pool::ConnectionPoolConfig::builder()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
