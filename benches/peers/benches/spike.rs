//! A spike in the style of HikariCP's "spike demand" test (issue 7): connects cost 150 ms, a query
//! 2 ms; a burst of 50 requests hits a pool with max 50 / min 5 that holds 5 warm connections.
//!
//! Reported per pool: the time until all 50 requests are served, the distribution of their
//! latencies (from the burst's start to the end of the request's query), and how many
//! connections the pool created: by the time the last request was served, and after a settle
//! period (creates still in flight, or refilling in the background, land by then).
//!
//! Pools: nexus (async facade: 50 tokio tasks; blocking facade: 50 OS threads), deadpool, bb8,
//! mobc (50 tokio tasks on a multi-thread runtime) and r2d2 (50 OS threads). Each is built with
//! max 50, its minimum at 5 where it has one (nexus `min_connections(5)`, bb8 and r2d2
//! `min_idle(5)`), and holds 5 open connections before the burst: those with a minimum open them
//! themselves (the bench waits for them), deadpool and mobc are warmed by hand (5 concurrent
//! acquires, all held at once, then released). Checks: no-op (nexus `validate` default, deadpool `recycle` `Ok`, bb8/r2d2
//! `test_on_check_out(false)`, mobc `test_on_check_out(false)`); a 30 s acquire timeout.
//! The pools are interleaved round-robin; figures are medians over rounds.
//!
//! `cargo bench --bench spike -- [--quick] [--out DIR]`; `-- --only r2d2 --only "nexus blocking"`
//! runs just those pools and prints their rounds.

mod common;

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Args, Targets, fmt_ns, fmt_ratio, median, nanos32, percentiles};
use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};

const CONNECT: Duration = Duration::from_millis(150);
const QUERY: Duration = Duration::from_millis(2);
const BURST: usize = 50;
const MAX: usize = 50;
const MIN: usize = 5;
const SETTLE: Duration = Duration::from_millis(400);

/// Counts connections created (`create` calls started).
#[derive(Clone, Default)]
struct Created(Arc<AtomicUsize>);

impl Created {
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// nexus: the connect waits on an `async-io` timer, so it works on any executor and on the
/// blocking facade's own thread alike.
struct NexusSlow(Created);

impl ConnectionFactory for NexusSlow {
    type Connection = u64;
    type Error = io::Error;

    async fn create(&self) -> Result<u64, io::Error> {
        self.0.bump();
        smol::Timer::after(CONNECT).await;
        Ok(7)
    }
}

struct DeadpoolSlow(Created);

impl deadpool::managed::Manager for DeadpoolSlow {
    type Type = u64;
    type Error = io::Error;

    async fn create(&self) -> Result<u64, io::Error> {
        self.0.bump();
        tokio::time::sleep(CONNECT).await;
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<io::Error> {
        Ok(())
    }
}

struct Bb8Slow(Created);

impl bb8::ManageConnection for Bb8Slow {
    type Connection = u64;
    type Error = io::Error;

    async fn connect(&self) -> Result<u64, io::Error> {
        self.0.bump();
        tokio::time::sleep(CONNECT).await;
        Ok(7)
    }

    async fn is_valid(&self, _: &mut u64) -> Result<(), io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

struct MobcSlow(Created);

#[mobc::async_trait]
impl mobc::Manager for MobcSlow {
    type Connection = u64;
    type Error = io::Error;

    async fn connect(&self) -> Result<u64, io::Error> {
        self.0.bump();
        tokio::time::sleep(CONNECT).await;
        Ok(7)
    }

    async fn check(&self, conn: u64) -> Result<u64, io::Error> {
        Ok(conn)
    }
}

struct R2d2Slow(Created);

impl r2d2::ManageConnection for R2d2Slow {
    type Connection = u64;
    type Error = io::Error;

    fn connect(&self) -> Result<u64, io::Error> {
        self.0.bump();
        std::thread::sleep(CONNECT);
        Ok(7)
    }

    fn is_valid(&self, _: &mut u64) -> Result<(), io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

struct Spike {
    /// Until the last of the burst was served.
    all_served: Duration,
    /// Latency of each request, ns.
    latencies: Vec<u32>,
    created_at_end: usize,
    created_settled: usize,
    /// Connections created before the burst (the warm ones).
    warm: usize,
}

const POOLS: [&str; 6] = [
    "nexus async",
    "nexus blocking",
    "deadpool",
    "bb8",
    "mobc",
    "r2d2",
];

/// Runs the burst of async requests: `get` acquires, holds for the query, releases.
macro_rules! async_burst {
    ($rt:expr, $pool:expr, $get:ident, $created:expr, $hand_warm:expr) => {{
        let pool = $pool;
        $rt.block_on(async {
            // Pre-warm, for a pool without a minimum of its own: 5 concurrent acquires, all held
            // at once (so 5 distinct connections are open), then released.
            let all = Arc::new(tokio::sync::Barrier::new(MIN));
            let warm: Vec<_> = (0..if $hand_warm { MIN } else { 0 })
                .map(|_| {
                    let (pool, all) = (pool.clone(), all.clone());
                    tokio::spawn(async move {
                        let c = pool.$get().await.unwrap();
                        all.wait().await;
                        drop(c);
                    })
                })
                .collect();
            for w in warm {
                w.await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = $created.get();
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..BURST)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let c = pool.$get().await.unwrap();
                        tokio::time::sleep(QUERY).await;
                        drop(c);
                        t0.elapsed()
                    })
                })
                .collect();
            let mut lat = Vec::with_capacity(BURST);
            for t in tasks {
                lat.push(t.await.unwrap());
            }
            (t0.elapsed(), lat, before)
        })
    }};
}

fn run(rt: &tokio::runtime::Runtime, which: &str) -> Spike {
    let created = Created::default();
    let settle = |created: &Created, (end, lat, before): (Duration, Vec<Duration>, usize)| {
        let created_at_end = created.get() - before;
        std::thread::sleep(SETTLE);
        Spike {
            all_served: end,
            latencies: lat.into_iter().map(nanos32).collect(),
            created_at_end,
            created_settled: created.get() - before,
            warm: before,
        }
    };
    match which {
        "nexus async" | "nexus blocking" => {
            let config = ConnectionPoolConfig::builder()
                .max_connections(MAX)
                .min_connections(MIN)
                .acquire_timeout(common::ACQUIRE_TIMEOUT)
                .build()
                .expect("valid nexus config");
            let pool = Arc::new(ConnectionPool::new(NexusSlow(created.clone()), config));
            // The pool opens its minimum in the background: wait for it (by hand if it does not).
            let deadline = Instant::now() + Duration::from_secs(3);
            while pool.current_metrics().idle < MIN && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let hand_warm = pool.current_metrics().idle < MIN;
            if which == "nexus async" {
                let burst = async_burst!(rt, &pool, acquire, created, hand_warm);
                let s = settle(&created, burst);
                pool.close_blocking();
                s
            } else {
                let burst = threads_burst(
                    |d| {
                        let c = pool.acquire_blocking().unwrap();
                        std::thread::sleep(d);
                        drop(c);
                    },
                    |b| {
                        let c = pool.acquire_blocking().unwrap();
                        b.wait();
                        drop(c);
                    },
                    &created,
                    hand_warm,
                );
                let s = settle(&created, burst);
                pool.close_blocking();
                s
            }
        }
        "deadpool" => {
            let pool: deadpool::managed::Pool<DeadpoolSlow> = rt.block_on(async {
                deadpool::managed::Pool::builder(DeadpoolSlow(created.clone()))
                    .max_size(MAX)
                    .wait_timeout(Some(common::ACQUIRE_TIMEOUT))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .unwrap()
            });
            let burst = async_burst!(rt, &pool, get, created, true);
            settle(&created, burst)
        }
        "bb8" => {
            let pool = rt
                .block_on(
                    bb8::Pool::builder()
                        .max_size(MAX as u32)
                        .min_idle(Some(MIN as u32))
                        .connection_timeout(common::ACQUIRE_TIMEOUT)
                        .test_on_check_out(false)
                        .build(Bb8Slow(created.clone())),
                )
                .unwrap();
            // `build` opened min_idle connections.
            let burst = async_burst!(rt, &pool, get, created, false);
            settle(&created, burst)
        }
        "mobc" => {
            let pool = {
                let _g = rt.enter();
                mobc::Pool::builder()
                    .max_open(MAX as u64)
                    .max_idle(MAX as u64)
                    .get_timeout(Some(common::ACQUIRE_TIMEOUT))
                    .test_on_check_out(false)
                    .build(MobcSlow(created.clone()))
            };
            let burst = async_burst!(rt, &pool, get, created, true);
            settle(&created, burst)
        }
        "r2d2" => {
            let pool = r2d2::Pool::builder()
                .max_size(MAX as u32)
                .min_idle(Some(MIN as u32))
                .connection_timeout(common::ACQUIRE_TIMEOUT)
                .test_on_check_out(false)
                .build(R2d2Slow(created.clone()))
                .unwrap();
            let burst = threads_burst(
                |d| {
                    let c = pool.get().unwrap();
                    std::thread::sleep(d);
                    drop(c);
                },
                |b| {
                    let c = pool.get().unwrap();
                    b.wait();
                    drop(c);
                },
                &created,
                false, // `build` opened min_idle connections.
            );
            settle(&created, burst)
        }
        other => unreachable!("unknown pool {other}"),
    }
}

/// The burst on OS threads: pre-warm (if `hand_warm`) with 5 concurrent acquires, then 50
/// threads at once. `hold(d)` acquires, holds the connection for `d`, releases; `hold_until(b)`
/// acquires, waits on the barrier, releases.
fn threads_burst(
    hold: impl Fn(Duration) + Sync,
    hold_until: impl Fn(&std::sync::Barrier) + Sync,
    created: &Created,
    hand_warm: bool,
) -> (Duration, Vec<Duration>, usize) {
    // Pre-warm, for a pool without a minimum of its own: 5 concurrent acquires, all held at once,
    // then released.
    let all = std::sync::Barrier::new(MIN);
    std::thread::scope(|s| {
        for _ in 0..if hand_warm { MIN } else { 0 } {
            s.spawn(|| hold_until(&all));
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let before = created.get();
    let barrier = std::sync::Barrier::new(BURST + 1);
    let t0 = std::sync::OnceLock::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..BURST)
            .map(|_| {
                let (barrier, t0, hold) = (&barrier, &t0, &hold);
                s.spawn(move || {
                    barrier.wait();
                    let t0: &Instant = t0.get().expect("set before the barrier");
                    hold(QUERY);
                    t0.elapsed()
                })
            })
            .collect();
        t0.get_or_init(Instant::now);
        barrier.wait();
        let lat: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let end = lat.iter().copied().max().unwrap_or_default();
        (end, lat, before)
    })
}

fn main() {
    let args = Args::parse();
    let rounds = if args.quick { 3 } else { 7 };
    println!(
        "# spike: connect {CONNECT:?}, query {QUERY:?}, burst {BURST}, max {MAX}, min {MIN} ({} mode: {rounds} rounds)",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // `--only NAME` (repeatable): run only those pools, printing rounds (for diagnosis).
    let only: Vec<String> = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].clone())
        .collect();
    let started = Instant::now();
    let mut runs: Vec<Vec<Spike>> = POOLS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..POOLS.len() {
            let pi = (round + j) % POOLS.len();
            if !only.is_empty() && !only.iter().any(|o| o == POOLS[pi]) {
                continue;
            }
            let s = run(&rt, POOLS[pi]);
            println!(
                "round {} {:<15} warm {}, all served {:>9}, created {} (by the end) / {} (settled)",
                round + 1,
                POOLS[pi],
                s.warm,
                fmt_ns(s.all_served.as_nanos() as f64),
                s.created_at_end,
                s.created_settled
            );
            runs[pi].push(s);
        }
    }
    let took = started.elapsed();
    if !only.is_empty() {
        return;
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Spike (HikariCP style)\n\n\
Connects cost {} and a query {}; {BURST} requests arrive at once at a pool with max {MAX}, \
min {MIN}, that holds {MIN} warm connections. *All served* is the time from the burst's start \
until the last request finished its query; latencies run from the burst's start to each \
request's end. *Open at the burst* is how many connections the pool had created before it. \
*Created* counts the `create`/`connect` calls started after the burst began: \
when the last request was served, and after {} more (creates in flight land, background refills \
run). Medians over {rounds} rounds (pools interleaved), latency percentiles over all rounds' \
requests. The async pools' query is a `tokio::time::sleep` (1 ms timer wheel: 2 to 3 ms), the \
threads' a `std::thread::sleep`, so compare async with async and threads with threads. \
Measured for {:.0} s.\n\n\
| pool | configuration |\n|---|---|\n\
| nexus async / blocking | `max_connections(50)`, `min_connections(5)` (the bench waits until 5 are idle), `acquire_timeout(30 s)`, default checkout validation (`validate` is the no-op default); async: 50 tokio tasks, blocking: 50 OS threads |\n\
| deadpool | `max_size(50)`, `wait_timeout(30 s)`, `Runtime::Tokio1` (no minimum: warmed by hand, 5 concurrent acquires held at once) |\n\
| bb8 | `max_size(50)`, `min_idle(5)`, `connection_timeout(30 s)`, `test_on_check_out(false)` |\n\
| mobc | `max_open(50)`, `max_idle(50)`, `get_timeout(30 s)`, `test_on_check_out(false)` (no minimum: warmed by hand, 5 concurrent acquires held at once) |\n\
| r2d2 | `max_size(50)`, `min_idle(5)`, `connection_timeout(30 s)`, `test_on_check_out(false)`; 50 OS threads |\n\n\
| pool | open at the burst | all served | p50 | p90 | p99 | max | created by the end | created after settling |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        fmt_ns(CONNECT.as_nanos() as f64),
        fmt_ns(QUERY.as_nanos() as f64),
        fmt_ns(SETTLE.as_nanos() as f64),
        took.as_secs_f64()
    );
    let served = |pi: usize| {
        median(
            &runs[pi]
                .iter()
                .map(|s| s.all_served.as_secs_f64() * 1e9)
                .collect::<Vec<_>>(),
        )
    };
    let created = |pi: usize, settled: bool| {
        median(
            &runs[pi]
                .iter()
                .map(|s| {
                    (if settled {
                        s.created_settled
                    } else {
                        s.created_at_end
                    }) as f64
                })
                .collect::<Vec<_>>(),
        )
    };
    for (pi, p) in POOLS.iter().enumerate() {
        let mut lat: Vec<u32> = runs[pi].iter().flat_map(|s| s.latencies.clone()).collect();
        let q = percentiles(&mut lat, &[50.0, 90.0, 99.0, 100.0]);
        let _ = writeln!(
            md,
            "| {p} | {} | {} | {} | {} | {} | {} | {} | {} |",
            median(&runs[pi].iter().map(|s| s.warm as f64).collect::<Vec<_>>()),
            fmt_ns(served(pi)),
            fmt_ns(q[0] as f64),
            fmt_ns(q[1] as f64),
            fmt_ns(q[2] as f64),
            fmt_ns(q[3] as f64),
            created(pi, false),
            created(pi, true),
        );
    }
    println!("\n{md}");

    let mut tg = Targets::default();
    let peers = ["deadpool", "bb8", "mobc", "r2d2"];
    let pidx = |n: &str| POOLS.iter().position(|p| *p == n).unwrap();
    // Each facade against the best peer of its kind: the async pools' query is a tokio sleep
    // (2 to 3 ms), the threads' a `std::thread::sleep` (2 ms). Both facades must make it.
    let best_of = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| (*n, served(pidx(n))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    };
    let (best_async, best_a) = best_of(&["deadpool", "bb8", "mobc"]);
    let (best_threads, best_t) = best_of(&["r2d2"]);
    let (na, nb) = (served(pidx("nexus async")), served(pidx("nexus blocking")));
    tg.add(
        "spike: all 50 served no later than the best peer (of the same kind)",
        format!(
            "nexus async {} vs {best_async} {} ({}); nexus blocking {} vs {best_threads} {} ({})",
            fmt_ns(na),
            fmt_ns(best_a),
            fmt_ratio(na / best_a),
            fmt_ns(nb),
            fmt_ns(best_t),
            fmt_ratio(nb / best_t),
        ),
        na <= best_a && nb <= best_t,
    );
    let fewest_peer = peers
        .iter()
        .map(|n| created(pidx(n), true))
        .fold(f64::MAX, f64::min);
    let mine = created(pidx("nexus async"), true).max(created(pidx("nexus blocking"), true));
    tg.add(
        "spike: fewer connections created than any peer",
        format!("nexus created {mine} after the warm 5 (worst facade); the fewest of any peer: {fewest_peer}"),
        mine < fewest_peer,
    );
    args.write("spike", &md, &tg);
}
