//! Diesel `SELECT 1` against a real PostgreSQL (issue 17): 16 workers sharing a pool of 8,
//! nexus-pool's **shipped Diesel adapter built as the README says** next to `diesel::r2d2` and
//! `deadpool-diesel`.
//!
//! The server is read from `NEXUS_POOL_PG_URL`; unset, the bench prints one line and skips.
//!
//! Each worker loops for a fixed duration: acquire, `diesel::select(1.into_sql::<Integer>())`
//! (Diesel's cached prepared statement, one round trip), release; the whole operation is timed.
//! Settings:
//! - nexus diesel adapter (threads): `DieselConnectionFactory::<PgConnection>::new(url)
//!   .pool_builder()` with 8 connections: its health check attached (a reset, one round trip, on
//!   every reuse), `CheckoutValidation::IdleFor(500 ms)` (the default); OS threads call
//!   `acquire_blocking()`.
//! - the same with `health_check().reset_mode(DieselReset::Rollback)`: transactions ended, the
//!   session kept (the probe alone, one round trip).
//! - diesel::r2d2 (threads): its defaults (`test_on_check_out(true)`: a `SELECT 1` on every
//!   checkout), and with `test_on_check_out(false)`, its fastest setting.
//! - deadpool-diesel (tasks): its defaults; tokio tasks call `pool.get().await?.interact(..)`,
//!   which runs the query on tokio's blocking threads.
//! - nexus diesel adapter (tasks): the same tokio tasks run `with_connection_blocking` inside
//!   `spawn_blocking`, as the README says to use Diesel from async code.
//!
//! Same max size (8), a 30 s acquire timeout everywhere. The variants are interleaved round-robin
//! and ratios are medians of per-round ratios.
//!
//! `NEXUS_POOL_PG_URL=... cargo bench --bench diesel -- [--quick] [--out DIR]`

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Args, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles};
use diesel::prelude::*;
use diesel::sql_types::Integer;
use nexus_pool::ConnectionPool;
use nexus_pool::adapters::diesel::{DieselConnectionFactory, DieselReset};

const SIZE: usize = 8;
const WORKERS: usize = 16;
const TIMEOUT: Duration = common::ACQUIRE_TIMEOUT;

type NexusDiesel = ConnectionPool<DieselConnectionFactory<PgConnection>>;
type R2d2Diesel = diesel::r2d2::Pool<diesel::r2d2::ConnectionManager<PgConnection>>;

fn select_one(conn: &mut PgConnection) {
    diesel::select(1.into_sql::<Integer>())
        .execute(conn)
        .unwrap();
}

struct Run {
    throughput: f64,
    p50: u32,
    p99: u32,
    p999: u32,
}

fn summarize(results: Vec<Vec<u32>>, elapsed: Duration) -> Run {
    let ops: u64 = results.iter().map(|r| r.len() as u64).sum();
    let mut all: Vec<u32> = results.into_iter().flatten().collect();
    let p = percentiles(&mut all, &[50.0, 99.0, 99.9]);
    Run {
        throughput: ops as f64 / elapsed.as_secs_f64(),
        p50: p[0],
        p99: p[1],
        p999: p[2],
    }
}

fn run_threads(op: &(dyn Fn() + Sync), dur: Duration) -> Run {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(WORKERS + 1);
    let (results, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        op();
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

fn run_tasks<F, Fut>(rt: &tokio::runtime::Runtime, op: F, dur: Duration) -> Run
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(WORKERS + 1));
    let (results, elapsed) = rt.block_on(async {
        let handles: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (op, stop, barrier) = (op.clone(), stop.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(1 << 16);
                    barrier.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        op().await;
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

/// (name, settings).
const VARIANTS: [(&str, &str); 6] = [
    ("nexus diesel adapter, threads", "README: pool_builder()"),
    ("nexus diesel Rollback, threads", "reset_mode(Rollback)"),
    ("diesel::r2d2, threads", "defaults (test_on_check_out)"),
    ("diesel::r2d2 no check, threads", "test_on_check_out(false)"),
    ("nexus diesel adapter, tasks", "README: spawn_blocking"),
    ("deadpool-diesel, tasks", "defaults, interact()"),
];

fn nexus(url: &str) -> NexusDiesel {
    DieselConnectionFactory::<PgConnection>::new(url)
        .pool_builder()
        .max_connections(SIZE)
        .acquire_timeout(TIMEOUT)
        .build()
        .unwrap()
}

fn r2d2(url: &str, check: bool) -> R2d2Diesel {
    diesel::r2d2::Pool::builder()
        .max_size(SIZE as u32)
        .connection_timeout(TIMEOUT)
        .test_on_check_out(check)
        .build(diesel::r2d2::ConnectionManager::new(url))
        .unwrap()
}

fn run_variant(rt: &tokio::runtime::Runtime, which: &str, url: &str, dur: Duration) -> Run {
    let warm = Duration::from_millis(100);
    match which {
        "nexus diesel adapter, threads" => {
            let pool = nexus(url);
            let op = || select_one(&mut pool.acquire_blocking().unwrap());
            run_threads(&op, warm);
            let r = run_threads(&op, dur);
            pool.close_blocking();
            r
        }
        "nexus diesel Rollback, threads" => {
            let factory = DieselConnectionFactory::<PgConnection>::new(url);
            let check = factory.health_check().reset_mode(DieselReset::Rollback);
            let pool = factory
                .pool_builder()
                .health_check(check)
                .max_connections(SIZE)
                .acquire_timeout(TIMEOUT)
                .build()
                .unwrap();
            let op = || select_one(&mut pool.acquire_blocking().unwrap());
            run_threads(&op, warm);
            let r = run_threads(&op, dur);
            pool.close_blocking();
            r
        }
        "diesel::r2d2, threads" | "diesel::r2d2 no check, threads" => {
            let pool = r2d2(url, which == "diesel::r2d2, threads");
            let op = || select_one(&mut pool.get().unwrap());
            run_threads(&op, warm);
            run_threads(&op, dur)
        }
        "nexus diesel adapter, tasks" => {
            let pool = nexus(url);
            let op = {
                let pool = pool.clone();
                move || {
                    let pool = pool.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            pool.with_connection_blocking(|conn| {
                                select_one(conn);
                                Ok::<_, nexus_pool::PoolError<diesel::ConnectionError>>(())
                            })
                            .unwrap()
                        })
                        .await
                        .unwrap()
                    }
                }
            };
            run_tasks(rt, op.clone(), warm);
            let r = run_tasks(rt, op, dur);
            pool.close_blocking();
            r
        }
        "deadpool-diesel, tasks" => {
            // Its objects close on tokio's blocking threads when they drop: keep the runtime's
            // context until the pool is gone.
            let _in_runtime = rt.enter();
            let mgr =
                deadpool_diesel::postgres::Manager::new(url, deadpool_diesel::Runtime::Tokio1);
            let pool = deadpool_diesel::postgres::Pool::builder(mgr)
                .max_size(SIZE)
                .wait_timeout(Some(TIMEOUT))
                .runtime(deadpool_diesel::Runtime::Tokio1)
                .build()
                .unwrap();
            let op = {
                let pool = pool.clone();
                move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        conn.interact(select_one).await.unwrap();
                    }
                }
            };
            run_tasks(rt, op.clone(), warm);
            let r = run_tasks(rt, op, dur);
            pool.close();
            r
        }
        other => unreachable!("unknown variant {other}"),
    }
}

fn main() {
    let args = Args::parse();
    let Ok(url) = std::env::var("NEXUS_POOL_PG_URL") else {
        println!("diesel: skipped, NEXUS_POOL_PG_URL is not set");
        let mut tg = Targets::default();
        tg.skip(
            "Diesel SELECT 1: shipped adapter ≥ 0.95x its peers",
            "NEXUS_POOL_PG_URL unset",
        );
        args.write(
            "diesel",
            "## Diesel `SELECT 1`\n\nSkipped: `NEXUS_POOL_PG_URL` was not set.\n",
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
        "# diesel SELECT 1, {WORKERS} workers, pool of {SIZE} ({} mode: {rounds} rounds of {dur:?})",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let mut runs: Vec<Vec<Run>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..VARIANTS.len() {
            let vi = (round + j) % VARIANTS.len();
            let (name, _) = VARIANTS[vi];
            let r = run_variant(&rt, name, &url, dur);
            println!(
                "round {} {:<32} {:>10}  p50 {:>9}  p99 {:>9}  p99.9 {:>9}",
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

    let ratio = |a: usize, b: usize| {
        median(
            &runs[a]
                .iter()
                .zip(&runs[b])
                .map(|(x, y)| x.throughput / y.throughput)
                .collect::<Vec<_>>(),
        )
    };
    // Each nexus row against the peer a user of that kind would otherwise pick.
    let peer_of = |vi: usize| match vi {
        0 | 1 => Some(2),
        4 => Some(5),
        _ => None,
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Diesel `SELECT 1`: the shipped adapter\n\n\
{WORKERS} workers share a pool of {SIZE} on PostgreSQL (loopback); each loops acquire, \
`diesel::select(1.into_sql::<Integer>())`, release for {} per run ({rounds} rounds, variants \
interleaved; a ratio is the median of per-round ratios). Measured for {:.0} s.\n\n\
| variant | settings | throughput | vs peer | vs r2d2 no check | p50 | p99 | p99.9 |\n\
|---|---|---:|---:|---:|---:|---:|---:|",
        fmt_ns(dur.as_nanos() as f64),
        took.as_secs_f64()
    );
    let mut tg = Targets::default();
    for (vi, (name, settings)) in VARIANTS.iter().enumerate() {
        let m = |f: &dyn Fn(&Run) -> f64| median(&runs[vi].iter().map(f).collect::<Vec<_>>());
        let vs = peer_of(vi).map_or(String::new(), |p| fmt_ratio(ratio(vi, p)));
        let vs_fast = if vi <= 1 {
            fmt_ratio(ratio(vi, 3))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {name} | {settings} | {} | {vs} | {vs_fast} | {} | {} | {} |",
            fmt_rate(m(&|r| r.throughput)),
            fmt_ns(m(&|r| r.p50 as f64)),
            fmt_ns(m(&|r| r.p99 as f64)),
            fmt_ns(m(&|r| r.p999 as f64)),
        );
        if let Some(p) = peer_of(vi) {
            let r = ratio(vi, p);
            tg.add(
                &format!("{name}: ≥ 0.95x {}", VARIANTS[p].0),
                fmt_ratio(r),
                r >= 0.95,
            );
        }
    }
    md.push_str(
        "\n*vs peer*: throughput ratio against `diesel::r2d2` with its defaults (thread rows) or \
`deadpool-diesel` (task rows); above 1 is more queries per second. The nexus adapter resets \
every reused connection (one round trip: a probe and the session cleaning by default, the probe \
alone with `Rollback`), `diesel::r2d2` by default pings on every checkout, \
`deadpool-diesel` checks nothing on reuse. The server runs on the same 2 cores as the bench.\n",
    );
    println!("\n{md}");
    args.write("diesel", &md, &tg);
}
