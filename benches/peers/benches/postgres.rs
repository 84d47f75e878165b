//! `SELECT 1` against a real PostgreSQL (issues 7 and 15): 16 and 64 workers sharing a pool of 8
//! (and, for the blocking pools, 4: fewer threads than connections),
//! nexus-pool's **shipped adapters built exactly as the README says** next to the peers.
//!
//! The server is read from `NEXUS_POOL_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! unset, the bench prints one line and skips.
//!
//! Each worker loops for a fixed duration: acquire, `simple_query("SELECT 1")` (one round trip),
//! release; the whole operation is timed. Async pools run their workers as tasks on a tokio
//! multi-thread runtime; blocking pools (the `postgres` crate's client) as OS threads. Settings:
//! - nexus tokio-postgres adapter: `TokioPostgresConnectionFactory::new(url)?.pool_builder()`
//!   with a config of 8 connections: its health check attached (a reset on every reuse that left
//!   something behind), built inside the bench's tokio runtime (as in a `#[tokio::main]` app, so
//!   its I/O runs there), `CheckoutValidation::IdleFor(500 ms)` (the default).
//! - deadpool-postgres: its default, `RecyclingMethod::Fast` (`is_closed()` only).
//! - nexus postgres adapter: `PostgresConnectionFactory::new(url)?.pool_builder()`, 8 connections:
//!   its health check attached (a reuse left clean: a look at the socket, no round trip; a reset
//!   only when the last user left something behind), the default validation.
//! - the same with `health_check().ping_clean_reuse(true)`: every reuse pays the bounded ping.
//! - the same with `fairness_bound(10 ms)` (not a target: the trade-off of the bound).
//! - r2d2_postgres: `test_on_check_out(false)`, its fastest setting.
//! - the barging reference pool of issue 13 (`common::BargingPool`) over plain `postgres`
//!   clients, as it is (a waiting thread parks at once) and yielding (it first yields its core
//!   `YIELDS` times, as `parking_lot`'s locks, and so r2d2's, do): not targets, they show what
//!   how a waiting thread waits is worth here (MISSES).
//!
//! Same max size (8), a 30 s acquire timeout everywhere. The variants are interleaved round-robin
//! and ratios are medians of per-round ratios.
//!
//! `NEXUS_POOL_PG_URL=... cargo bench --features postgres,tokio-postgres --bench postgres --
//! [--quick] [--out DIR]`; `-- --only
//! "nexus tokio-postgres adapter x16"` runs just that variant (repeatable) and prints its rounds.

mod common;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    Args, BargingPool, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles,
};
use nexus_pool::adapters::postgres::PostgresConnectionFactory;
use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
use tokio_postgres::NoTls;

const SIZE: usize = 8;
const TIMEOUT: Duration = common::ACQUIRE_TIMEOUT;

fn nexus_config() -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(SIZE)
        .acquire_timeout(TIMEOUT)
        .build()
        .expect("valid nexus config")
}

/// An async pool, or the async floor (one client per worker).
trait AsyncSource: Send + Sync + 'static {
    /// Acquire, `SELECT 1`, release.
    fn op(&self, worker: usize) -> impl Future<Output = ()> + Send;
}

impl AsyncSource for ConnectionPool<TokioPostgresConnectionFactory> {
    async fn op(&self, _: usize) {
        let c = self.acquire().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
}

impl AsyncSource for deadpool_postgres::Pool {
    async fn op(&self, _: usize) {
        let c = self.get().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
}

trait SyncSource: Send + Sync + 'static {
    fn op(&self, worker: usize);
}

impl SyncSource for ConnectionPool<PostgresConnectionFactory> {
    fn op(&self, _: usize) {
        let mut c = self.acquire_blocking().unwrap();
        c.simple_query("SELECT 1").unwrap();
    }
}

impl SyncSource for r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>> {
    fn op(&self, _: usize) {
        let mut c = self.get().unwrap();
        c.simple_query("SELECT 1").unwrap();
    }
}

/// How many times the yielding barging rows yield before they park.
const YIELDS: usize = 3;

/// The barging reference pool over plain clients: it lends the index of a client, each behind a
/// mutex of its own that only the holder of its index locks (never contended). A thread that
/// finds nothing idle parks at once (`yields` 0), or first yields its core `yields` times,
/// looking again after each (what `parking_lot`'s locks, and so r2d2's, do before they park).
/// Either way it has no place in line while it yields: nexus-pool's threads also yield before
/// they park (while no more wait than the pool has connections), but only once their place in
/// the wait list is taken.
struct BargingClients {
    pool: BargingPool,
    clients: Vec<std::sync::Mutex<postgres::Client>>,
    yields: usize,
}

impl BargingClients {
    fn connect(url: &str, yields: usize) -> Result<Self, postgres::Error> {
        let clients = (0..SIZE)
            .map(|_| postgres::Client::connect(url, postgres::NoTls).map(std::sync::Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(BargingClients {
            pool: BargingPool::new(SIZE),
            clients,
            yields,
        })
    }

    fn acquire(&self) -> common::BargingGuard<'_> {
        for _ in 0..self.yields {
            if let Some(lent) = self.pool.try_acquire() {
                return lent;
            }
            std::thread::yield_now();
        }
        self.pool.acquire_blocking()
    }
}

impl SyncSource for BargingClients {
    fn op(&self, _: usize) {
        let lent = self.acquire();
        let mut c = self.clients[*lent as usize].lock().unwrap();
        c.simple_query("SELECT 1").unwrap();
    }
}

struct Run {
    throughput: f64,
    p50: u32,
    p99: u32,
    p999: u32,
}

fn summarize(results: Vec<Vec<u32>>, elapsed: Duration) -> Run {
    let ops: Vec<u64> = results.iter().map(|r| r.len() as u64).collect();
    let mut all: Vec<u32> = results.into_iter().flatten().collect();
    let p = percentiles(&mut all, &[50.0, 99.0, 99.9]);
    Run {
        throughput: ops.iter().sum::<u64>() as f64 / elapsed.as_secs_f64(),
        p50: p[0],
        p99: p[1],
        p999: p[2],
    }
}

fn run_async<S: AsyncSource>(
    rt: &tokio::runtime::Runtime,
    src: &Arc<S>,
    workers: usize,
    dur: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let (results, elapsed) = rt.block_on(async {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (src, stop, barrier) = (src.clone(), stop.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        src.op(w).await;
                        lat.push(nanos32(t.elapsed()));
                    }
                    lat
                })
            })
            .collect();
        barrier.wait().await;
        let t0 = Instant::now();
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap());
        }
        (results, t0.elapsed())
    });
    summarize(results, elapsed)
}

fn run_threads<S: SyncSource>(src: &S, workers: usize, dur: Duration) -> Run {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(workers + 1);
    let (results, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        src.op(w);
                        lat.push(nanos32(t.elapsed()));
                    }
                    lat
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (results, t0.elapsed())
    });
    summarize(results, elapsed)
}

/// (name, settings, workers).
const VARIANTS: [(&str, &str, usize); 18] = [
    (
        "nexus tokio-postgres adapter x16",
        "README: pool_builder()",
        16,
    ),
    ("deadpool-postgres x16", "Fast: is_closed() (default)", 16),
    ("nexus postgres adapter x16", "README: pool_builder()", 16),
    (
        "nexus postgres adapter, ping x16",
        "pool_builder(), ping_clean_reuse(true)",
        16,
    ),
    (
        "nexus postgres adapter, bound 10 ms x16",
        "pool_builder(), fairness_bound(10 ms)",
        16,
    ),
    ("r2d2_postgres no check x16", "test_on_check_out(false)", 16),
    ("barging reference x16", "parks at once", 16),
    (
        "barging reference, yields x16",
        "yields 3 times, then parks",
        16,
    ),
    (
        "nexus tokio-postgres adapter x64",
        "README: pool_builder()",
        64,
    ),
    ("deadpool-postgres x64", "Fast: is_closed() (default)", 64),
    ("nexus postgres adapter x64", "README: pool_builder()", 64),
    (
        "nexus postgres adapter, ping x64",
        "pool_builder(), ping_clean_reuse(true)",
        64,
    ),
    (
        "nexus postgres adapter, bound 10 ms x64",
        "pool_builder(), fairness_bound(10 ms)",
        64,
    ),
    ("r2d2_postgres no check x64", "test_on_check_out(false)", 64),
    ("barging reference x64", "parks at once", 64),
    (
        "barging reference, yields x64",
        "yields 3 times, then parks",
        64,
    ),
    ("nexus postgres adapter x4", "README: pool_builder()", 4),
    ("r2d2_postgres no check x4", "test_on_check_out(false)", 4),
];

fn run_variant(
    rt: &tokio::runtime::Runtime,
    which: &str,
    workers: usize,
    url: &str,
    dur: Duration,
) -> Result<Run, Box<dyn std::error::Error>> {
    let warm = Duration::from_millis(100);
    let kind = which.rsplit_once(' ').map_or(which, |(k, _)| k);
    Ok(match kind {
        "nexus tokio-postgres adapter" => {
            // As the README builds it, inside the application's runtime (as in `#[tokio::main]`).
            let _in_runtime = rt.enter();
            let pool = TokioPostgresConnectionFactory::new(url)?
                .pool_builder()
                .config(nexus_config())
                .build()
                .unwrap();
            let pool = Arc::new(pool);
            run_async(rt, &pool, workers, warm);
            let r = run_async(rt, &pool, workers, dur);
            rt.block_on(pool.close());
            r
        }
        "deadpool-postgres" => {
            let mgr = deadpool_postgres::Manager::from_config(
                url.parse()?,
                NoTls,
                deadpool_postgres::ManagerConfig::default(),
            );
            let pool = deadpool_postgres::Pool::builder(mgr)
                .max_size(SIZE)
                .wait_timeout(Some(TIMEOUT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()?;
            let pool = Arc::new(pool);
            run_async(rt, &pool, workers, warm);
            let r = run_async(rt, &pool, workers, dur);
            pool.close();
            r
        }
        "nexus postgres adapter" => {
            let pool = PostgresConnectionFactory::new(url)?
                .pool_builder()
                .config(nexus_config())
                .build()
                .unwrap();
            run_threads(&pool, workers, warm);
            let r = run_threads(&pool, workers, dur);
            pool.close_blocking();
            r
        }
        "nexus postgres adapter, ping" => {
            let factory = PostgresConnectionFactory::new(url)?;
            let check = factory.health_check().ping_clean_reuse(true);
            let pool = factory
                .pool_builder()
                .config(nexus_config())
                .health_check(check)
                .build()
                .unwrap();
            run_threads(&pool, workers, warm);
            let r = run_threads(&pool, workers, dur);
            pool.close_blocking();
            r
        }
        "nexus postgres adapter, bound 10 ms" => {
            // The README's build, with threads allowed to pass a waiting thread for longer.
            let config = ConnectionPoolConfig::builder()
                .max_connections(SIZE)
                .acquire_timeout(TIMEOUT)
                .fairness_bound(Duration::from_millis(10))
                .build()
                .expect("valid nexus config");
            let pool = PostgresConnectionFactory::new(url)?
                .pool_builder()
                .config(config)
                .build()
                .unwrap();
            run_threads(&pool, workers, warm);
            let r = run_threads(&pool, workers, dur);
            pool.close_blocking();
            r
        }
        "r2d2_postgres no check" => {
            let mgr = r2d2_postgres::PostgresConnectionManager::new(url.parse()?, postgres::NoTls);
            let pool = r2d2::Pool::builder()
                .max_size(SIZE as u32)
                .connection_timeout(TIMEOUT)
                .test_on_check_out(false)
                .build(mgr)?;
            run_threads(&pool, workers, warm);
            run_threads(&pool, workers, dur)
        }
        "barging reference" | "barging reference, yields" => {
            let yields = if kind.ends_with("yields") { YIELDS } else { 0 };
            let pool = BargingClients::connect(url, yields)?;
            run_threads(&pool, workers, warm);
            run_threads(&pool, workers, dur)
        }
        other => unreachable!("unknown variant {other}"),
    })
}

fn main() {
    let args = Args::parse();
    let Ok(url) = std::env::var("NEXUS_POOL_PG_URL") else {
        println!("postgres: skipped, NEXUS_POOL_PG_URL is not set");
        let mut tg = Targets::default();
        tg.skip(
            "PostgreSQL SELECT 1: shipped adapters ≥ 0.95x their peers",
            "NEXUS_POOL_PG_URL unset",
        );
        args.write(
            "postgres",
            "## PostgreSQL `SELECT 1`\n\nSkipped: `NEXUS_POOL_PG_URL` was not set.\n",
            &tg,
        );
        return;
    };
    let (rounds, dur) = if args.quick {
        (5, Duration::from_millis(700))
    } else {
        (5, Duration::from_secs(3))
    };
    println!(
        "# postgres SELECT 1, 4, 16 and 64 workers, pool of {SIZE} ({} mode: {rounds} rounds of {dur:?})",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach {url}: {e}"));
        let v: String = c.query_one("SHOW server_version", &[]).unwrap().get(0);
        v
    };

    // `--only NAME` (repeatable): run only those variants, printing rounds (for diagnosis).
    let only: Vec<String> = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].clone())
        .collect();
    let started = Instant::now();
    let mut runs: Vec<Vec<Run>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..VARIANTS.len() {
            let vi = (round * 3 + j) % VARIANTS.len();
            let (name, _, workers) = VARIANTS[vi];
            if !only.is_empty() && !only.iter().any(|o| o == name) {
                continue;
            }
            let r = run_variant(&rt, name, workers, &url, dur)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            println!(
                "round {} {:<34} {:>10}  p50 {:>9}  p99 {:>9}  p99.9 {:>9}",
                round + 1,
                name,
                fmt_rate(r.throughput),
                fmt_ns(r.p50 as f64),
                fmt_ns(r.p99 as f64),
                fmt_ns(r.p999 as f64)
            );
            runs[vi].push(r);
            // Let closed connections' server processes exit before the next variant connects.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let took = started.elapsed();
    if !only.is_empty() {
        return;
    }

    let idx = |name: &str| VARIANTS.iter().position(|v| v.0 == name).unwrap();
    let thr = |vi: usize| median(&runs[vi].iter().map(|r| r.throughput).collect::<Vec<_>>());
    let ratio = |a: usize, b: usize| {
        median(
            &runs[a]
                .iter()
                .zip(&runs[b])
                .map(|(x, y)| x.throughput / y.throughput)
                .collect::<Vec<_>>(),
        )
    };
    let p999 = |vi: usize| median(&runs[vi].iter().map(|r| r.p999 as f64).collect::<Vec<_>>());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## PostgreSQL `SELECT 1`: the shipped adapters\n\n\
PostgreSQL {server} on this machine (loopback, trust auth). 16 or 64 workers (4 for two blocking rows) share a pool of \
{SIZE}; each loops acquire, `simple_query(\"SELECT 1\")`, release for {} per run ({rounds} rounds, \
variants interleaved; a ratio is the median of per-round ratios). The nexus rows are the shipped \
adapters built as the README says (`Factory::new(url)?.pool_builder()`, health check attached); \
async pools run tokio tasks, blocking pools OS threads. Latency is the whole operation (acquire + \
query). Measured for {:.0} s.\n\n\
| variant | settings | workers | throughput | vs peer | p50 | p99 | p99.9 |\n\
|---|---|---:|---:|---:|---:|---:|---:|",
        fmt_ns(dur.as_nanos() as f64),
        took.as_secs_f64()
    );
    // Each nexus row is compared with the peer of its kind and worker count.
    let peer_of = |name: &str| -> Option<usize> {
        let n = name.rsplit_once(' ').map_or("", |(_, n)| n);
        if name.starts_with("nexus tokio-postgres") {
            Some(idx(&format!("deadpool-postgres {n}")))
        } else if name.starts_with("nexus postgres") || name.starts_with("barging") {
            Some(idx(&format!("r2d2_postgres no check {n}")))
        } else {
            None
        }
    };
    let mut tg = Targets::default();
    for (vi, (name, settings, workers)) in VARIANTS.iter().enumerate() {
        let m = |f: &dyn Fn(&Run) -> f64| median(&runs[vi].iter().map(f).collect::<Vec<_>>());
        let vs = peer_of(name).map_or("".to_string(), |p| fmt_ratio(ratio(vi, p)));
        let _ = writeln!(
            md,
            "| {name} | {settings} | {workers} | {} | {vs} | {} | {} | {} |",
            fmt_rate(thr(vi)),
            fmt_ns(m(&|r| r.p50 as f64)),
            fmt_ns(m(&|r| r.p99 as f64)),
            fmt_ns(m(&|r| r.p999 as f64)),
        );
        // The targets are the README's builds at 16 and 64. The bound rows show what the
        // fairness trade-off costs, the ping rows an opt-in setting, the x4 rows a service with
        // fewer threads than connections, the barging rows where the blocking gap comes from.
        let target = name.starts_with("nexus")
            && !name.contains("bound")
            && !name.contains("ping")
            && *workers != 4;
        if let Some(p) = peer_of(name).filter(|_| target) {
            let r = ratio(vi, p);
            tg.add(
                &format!("{name}: ≥ 0.95x {}, p99.9 no worse", VARIANTS[p].0),
                format!(
                    "{}; p99.9 {} vs {}",
                    fmt_ratio(r),
                    fmt_ns(p999(vi)),
                    fmt_ns(p999(p))
                ),
                r >= 0.95 && p999(vi) <= p999(p),
            );
        }
    }
    md.push_str(
        "\n*vs peer*: throughput ratio against deadpool-postgres (async rows) or r2d2_postgres \
(blocking rows) at the same worker count; above 1 is more queries per second. The server runs \
on the same 2 cores as the bench. The *bound 10 ms* rows are not a target: they show what \
`fairness_bound` trades (a waiting thread passed over for up to 10 ms instead of 1 ms, fewer \
hand-offs to parked threads) against the default rows. The *x4* rows are not a target either: \
4 threads on the pool of 8, a service with fewer threads than connections, where a pool that \
lends a returned connection again first keeps each thread on its own server process. The \
*ping* rows are not a target: `ping_clean_reuse(true)` is an opt-in setting (a round trip on \
every checkout). The *barging reference* rows are not a target: issue 13's reference pool over \
plain clients, whose waiting threads park at once or first yield their core three times (as \
r2d2's `parking_lot` mutex does), with no place in line while they yield; with the server on \
the same cores, a waiting thread that stays runnable is passed over by the threads that keep a \
connection busy. nexus-pool's waiting threads yield twice before they park while no more wait \
than the pool has connections, once their place in the wait list is taken, so the bound still \
holds (`benches/MISSES.md`).\n",
    );
    println!("\n{md}");
    args.write("postgres", &md, &tg);
}
