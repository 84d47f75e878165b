//! `SELECT 1` against a real PostgreSQL (issue 7): 64 workers sharing a pool of 8.
//!
//! The server is read from `NEXUS_POOL_PG_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! unset, the bench prints one line and skips.
//!
//! Each worker loops for a fixed duration: acquire, `simple_query("SELECT 1")` (one round trip),
//! release; the whole operation is timed. Async pools (tokio-postgres clients, connection tasks
//! spawned on the same runtime) run 64 tasks on a tokio multi-thread runtime; blocking pools (the
//! `postgres` crate's client) run 64 OS threads. The floors hold one dedicated connection per
//! worker, no pool at all. Every pool is measured with its checkout check *in its default form*,
//! and each peer also in its other setting:
//! - nexus-pool: `CheckoutValidation::IdleFor(500 ms)` (the default): `validate` (a `SELECT 1`
//!   round trip after an `is_closed()` check) runs only on a connection idle 500 ms or more.
//! - deadpool-postgres: `RecyclingMethod::Fast` (the default: `is_closed()` only, no round trip)
//!   and `RecyclingMethod::Verified` (a round trip on every checkout).
//! - bb8-postgres: `test_on_check_out(true)` (the default: `simple_query("")` on every checkout)
//!   and `false`.
//! - r2d2_postgres: `test_on_check_out(true)` (the default: `simple_query("")` on every checkout)
//!   and `false`.
//!
//! Same max size (8), a 30 s acquire timeout everywhere. The variants are interleaved round-robin
//! and ratios are medians of per-round ratios.
//!
//! `NEXUS_POOL_PG_URL=... cargo bench --bench postgres -- [--quick] [--out DIR]`; `-- --only
//! "nexus async"` runs just that variant (repeatable) and prints its rounds; with
//! `NEXUS_POOL_BENCH_DEBUG=1` it also prints the nexus pool's metrics and statistics after each run.

mod common;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Args, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles, spread};
use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
use tokio_postgres::NoTls;

const WORKERS: usize = 64;
const SIZE: usize = 8;
const TIMEOUT: Duration = common::ACQUIRE_TIMEOUT;

/// nexus-pool's factory of tokio-postgres connections. The pool may create connections on its
/// own maintenance thread, outside any tokio runtime, so the connect runs as a task on the bench's
/// runtime (through its `Handle`) and the connection task is spawned there too, as bb8-postgres
/// and deadpool-postgres do; the resulting `JoinHandle` can be awaited from any thread.
struct PgAsync {
    config: tokio_postgres::Config,
    rt: tokio::runtime::Handle,
}

impl ConnectionFactory for PgAsync {
    type Connection = tokio_postgres::Client;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let config = self.config.clone();
        self.rt
            .spawn(async move {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            })
            .await
            .expect("the connect task ran")
    }

    async fn validate(&self, conn: &mut tokio_postgres::Client) -> bool {
        !conn.is_closed() && conn.simple_query("SELECT 1").await.is_ok()
    }
}

/// nexus-pool's factory of `postgres` (blocking) connections, for the blocking facade.
struct PgBlocking {
    config: postgres::Config,
}

impl ConnectionFactory for PgBlocking {
    type Connection = postgres::Client;
    type Error = postgres::Error;

    async fn create(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(postgres::NoTls)
    }

    async fn validate(&self, conn: &mut postgres::Client) -> bool {
        !conn.is_closed() && conn.simple_query("SELECT 1").is_ok()
    }
}

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

impl AsyncSource for ConnectionPool<PgAsync> {
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

impl AsyncSource for bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>> {
    async fn op(&self, _: usize) {
        let c = self.get().await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
}

struct AsyncFloor(Vec<tokio_postgres::Client>);

impl AsyncSource for AsyncFloor {
    async fn op(&self, worker: usize) {
        self.0[worker].simple_query("SELECT 1").await.unwrap();
    }
}

trait SyncSource: Send + Sync + 'static {
    fn op(&self, worker: usize);
}

impl SyncSource for ConnectionPool<PgBlocking> {
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

struct SyncFloor(Vec<std::sync::Mutex<postgres::Client>>);

impl SyncSource for SyncFloor {
    fn op(&self, worker: usize) {
        // Uncontended: each worker locks only its own client.
        self.0[worker]
            .lock()
            .unwrap()
            .simple_query("SELECT 1")
            .unwrap();
    }
}

struct Run {
    throughput: f64,
    p50: u32,
    p99: u32,
    p999: u32,
    cv: f64,
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
        cv: spread(&ops).2,
    }
}

fn run_async<S: AsyncSource>(rt: &tokio::runtime::Runtime, src: &Arc<S>, dur: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(WORKERS + 1));
    let (results, elapsed) = rt.block_on(async {
        let handles: Vec<_> = (0..WORKERS)
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

fn run_threads<S: SyncSource>(src: &S, dur: Duration) -> Run {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(WORKERS + 1);
    let (results, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
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

const VARIANTS: [(&str, &str); 10] = [
    ("nexus async", "IdleFor(500 ms) (default)"),
    ("deadpool-postgres", "Fast: is_closed() (default)"),
    (
        "deadpool-postgres verified",
        "Verified: round trip every checkout",
    ),
    ("bb8-postgres", "test_on_check_out(true) (default)"),
    ("bb8-postgres no check", "test_on_check_out(false)"),
    ("floor async", "one tokio-postgres client per task"),
    ("nexus blocking", "IdleFor(500 ms) (default)"),
    ("r2d2_postgres", "test_on_check_out(true) (default)"),
    ("r2d2_postgres no check", "test_on_check_out(false)"),
    ("floor threads", "one postgres client per thread"),
];

fn run_variant(
    rt: &tokio::runtime::Runtime,
    which: &str,
    url: &str,
    dur: Duration,
) -> Result<Run, Box<dyn std::error::Error>> {
    let async_config: tokio_postgres::Config = url.parse()?;
    let sync_config: postgres::Config = url.parse()?;
    let warm = Duration::from_millis(100);
    Ok(match which {
        "nexus async" => {
            let pool = Arc::new(ConnectionPool::new(
                PgAsync {
                    config: async_config,
                    rt: rt.handle().clone(),
                },
                nexus_config(),
            ));
            run_async(rt, &pool, warm);
            let r = run_async(rt, &pool, dur);
            if std::env::var_os("NEXUS_POOL_BENCH_DEBUG").is_some() {
                eprintln!("nexus async after the run: {:?}", pool.current_metrics());
                eprintln!("nexus async statistics: {:?}", pool.statistics());
            }
            rt.block_on(pool.close());
            r
        }
        "deadpool-postgres" | "deadpool-postgres verified" => {
            let recycling_method = if which.ends_with("verified") {
                deadpool_postgres::RecyclingMethod::Verified
            } else {
                deadpool_postgres::RecyclingMethod::Fast
            };
            let mgr = deadpool_postgres::Manager::from_config(
                async_config,
                NoTls,
                deadpool_postgres::ManagerConfig { recycling_method },
            );
            let pool = deadpool_postgres::Pool::builder(mgr)
                .max_size(SIZE)
                .wait_timeout(Some(TIMEOUT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()?;
            let pool = Arc::new(pool);
            run_async(rt, &pool, warm);
            let r = run_async(rt, &pool, dur);
            pool.close();
            r
        }
        "bb8-postgres" | "bb8-postgres no check" => {
            let mgr = bb8_postgres::PostgresConnectionManager::new(async_config, NoTls);
            let pool = rt.block_on(
                bb8::Pool::builder()
                    .max_size(SIZE as u32)
                    .connection_timeout(TIMEOUT)
                    .test_on_check_out(!which.ends_with("no check"))
                    .build(mgr),
            )?;
            let pool = Arc::new(pool);
            run_async(rt, &pool, warm);
            run_async(rt, &pool, dur)
        }
        "floor async" => {
            let clients = rt.block_on(async {
                let mut v = Vec::new();
                for _ in 0..WORKERS {
                    v.push(
                        PgAsync {
                            config: async_config.clone(),
                            rt: rt.handle().clone(),
                        }
                        .create()
                        .await?,
                    );
                }
                Ok::<_, tokio_postgres::Error>(v)
            })?;
            let floor = Arc::new(AsyncFloor(clients));
            run_async(rt, &floor, warm);
            run_async(rt, &floor, dur)
        }
        "nexus blocking" => {
            let pool = ConnectionPool::new(
                PgBlocking {
                    config: sync_config,
                },
                nexus_config(),
            );
            run_threads(&pool, warm);
            let r = run_threads(&pool, dur);
            pool.close_blocking();
            r
        }
        "r2d2_postgres" | "r2d2_postgres no check" => {
            let mgr = r2d2_postgres::PostgresConnectionManager::new(sync_config, postgres::NoTls);
            let pool = r2d2::Pool::builder()
                .max_size(SIZE as u32)
                .connection_timeout(TIMEOUT)
                .test_on_check_out(!which.ends_with("no check"))
                .build(mgr)?;
            run_threads(&pool, warm);
            run_threads(&pool, dur)
        }
        "floor threads" => {
            let mut v = Vec::new();
            for _ in 0..WORKERS {
                v.push(std::sync::Mutex::new(sync_config.connect(postgres::NoTls)?));
            }
            let floor = SyncFloor(v);
            run_threads(&floor, warm);
            run_threads(&floor, dur)
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
            "PostgreSQL SELECT 1: ≥ best peer, within 5% of the floor",
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
        (3, Duration::from_millis(500))
    } else {
        (3, Duration::from_secs(4))
    };
    println!(
        "# postgres SELECT 1, {WORKERS} workers, pool of {SIZE} ({} mode: {rounds} rounds of {dur:?})",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt
        .block_on(async {
            let c = PgAsync {
                config: url.parse()?,
                rt: rt.handle().clone(),
            }
            .create()
            .await?;
            let rows = c.simple_query("SHOW server_version").await?;
            let v = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            Ok::<_, tokio_postgres::Error>(v.unwrap_or_default())
        })
        .unwrap_or_else(|e| panic!("cannot reach {url}: {e}"));

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
            if !only.is_empty() && !only.iter().any(|o| o == VARIANTS[vi].0) {
                continue;
            }
            let r = run_variant(&rt, VARIANTS[vi].0, &url, dur)
                .unwrap_or_else(|e| panic!("{}: {e}", VARIANTS[vi].0));
            println!(
                "round {} {:<28} {:>10}  p50 {:>9}  p99 {:>9}",
                round + 1,
                VARIANTS[vi].0,
                fmt_rate(r.throughput),
                fmt_ns(r.p50 as f64),
                fmt_ns(r.p99 as f64)
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
    let (na, nb, fa, ft) = (
        idx("nexus async"),
        idx("nexus blocking"),
        idx("floor async"),
        idx("floor threads"),
    );
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## PostgreSQL `SELECT 1`\n\n\
PostgreSQL {server} on this machine (loopback, trust auth). {WORKERS} workers share a pool of \
{SIZE}; each loops acquire, `simple_query(\"SELECT 1\")`, release for {} per run ({rounds} rounds, \
variants interleaved; a ratio is the median of per-round ratios). Async pools: tokio-postgres, \
{WORKERS} tasks on a tokio multi-thread runtime; blocking pools: the `postgres` crate, {WORKERS} \
OS threads. Floors: one dedicated connection per worker, no pool. Latency is the whole \
operation (acquire + query). Measured for {:.0} s.\n\n\
| variant | checkout check | throughput | vs floor | vs nexus | p50 | p99 | p99.9 | CV ops/worker |\n\
|---|---|---:|---:|---:|---:|---:|---:|---:|",
        fmt_ns(dur.as_nanos() as f64),
        took.as_secs_f64()
    );
    for (vi, (name, check)) in VARIANTS.iter().enumerate() {
        let blocking =
            name.contains("blocking") || name.contains("r2d2") || name.contains("threads");
        let (floor, mine) = if blocking { (ft, nb) } else { (fa, na) };
        let m = |f: &dyn Fn(&Run) -> f64| median(&runs[vi].iter().map(f).collect::<Vec<_>>());
        let _ = writeln!(
            md,
            "| {name} | {check} | {} | {} | {} | {} | {} | {} | {:.3} |",
            fmt_rate(thr(vi)),
            fmt_ratio(ratio(vi, floor)),
            fmt_ratio(ratio(vi, mine)),
            fmt_ns(m(&|r| r.p50 as f64)),
            fmt_ns(m(&|r| r.p99 as f64)),
            fmt_ns(m(&|r| r.p999 as f64)),
            m(&|r| r.cv)
        );
    }
    md.push_str(
        "\n*vs floor* and *vs nexus* compare with the floor and the nexus facade of the same kind \
(async with async, threads with threads): throughput ratio, above 1 is more queries per second. \
The server runs on the same 2 cores: the floors' 64 server backends compete for them where the \
pools' 8 do not, so a floor here is the cost of no pool, not an upper bound.\n",
    );
    println!("\n{md}");

    let mut tg = Targets::default();
    // The best peer with its checkout check in its default form, any kind.
    let defaults = ["deadpool-postgres", "bb8-postgres", "r2d2_postgres"];
    let (best_name, best) = defaults
        .iter()
        .map(|n| (*n, idx(n)))
        .max_by(|a, b| thr(a.1).total_cmp(&thr(b.1)))
        .unwrap();
    // Judged on the async facade; the blocking one is shown beside it.
    let vs_best = ratio(na, best);
    tg.add(
        "PostgreSQL SELECT 1: throughput ≥ the best peer (defaults; async facade)",
        format!(
            "nexus async / {best_name} {}, nexus blocking / {best_name} {}",
            fmt_ratio(ratio(na, best)),
            fmt_ratio(ratio(nb, best))
        ),
        vs_best >= 1.0,
    );
    let r = ratio(na, fa);
    tg.add(
        "PostgreSQL SELECT 1: within 5% of the floor (validation on, default; async facade)",
        format!(
            "nexus async {} of the async floor; nexus blocking {} of the thread floor",
            fmt_ratio(r),
            fmt_ratio(ratio(nb, ft))
        ),
        r >= 0.95,
    );
    args.write("postgres", &md, &tg);
}
