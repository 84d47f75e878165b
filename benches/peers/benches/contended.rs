//! Contended acquire + release (issue 7): pool sizes 4 and 16, with 4, 16, 64 and 256 workers.
//!
//! Each worker loops: acquire (the wait is timed with `Instant` into a preallocated `Vec` of the
//! worker's own), a little work while holding the connection, release, for a fixed duration.
//! - Async pools (nexus `acquire().await`, deadpool, bb8, mobc, and the FIFO floor: a bare tokio
//!   `Semaphore` guarding an `ArrayQueue`) run their workers as tasks on one tokio multi-thread
//!   runtime (a worker thread per core); the work is `tokio::task::yield_now().await` (the
//!   connection is held across an await) plus ~200 ns of arithmetic.
//! - Blocking pools (nexus `acquire_blocking()`, r2d2) run their workers as OS threads; the work
//!   is `std::thread::yield_now()` (the thread gives up its core while it holds the connection,
//!   as a query would, the counterpart of the tasks' await) plus ~200 ns of arithmetic.
//!
//! Reported per pool and configuration: throughput, the acquire wait's p50 / p99 / p99.9, and the
//! fairness of the run (operations per worker: min/max and coefficient of variation). Every
//! (configuration, pool) cell runs once per round with a fresh pool warmed to its full size, the
//! pools' order rotating each round; a figure is the median over rounds and a ratio the median of
//! per-round ratios.
//!
//! `cargo bench --bench contended -- [--quick] [--out DIR]`; `-- --profile "nexus async" 4 64`
//! runs one cell alone for 10 s (for `perf record -g`).

mod common;

use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    Args, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles, spin, spread,
};
use crossbeam_queue::ArrayQueue;
use nexus_pool::ConnectionPool;

const SIZES: [usize; 2] = [4, 16];
const WORKERS: [usize; 4] = [4, 16, 64, 256];
const WORK_NS: u64 = 200;

/// A pool whose workers are async tasks.
trait AsyncPool: Send + Sync + 'static {
    /// Acquire, hold across a yield and `spin` iterations, release. Returns the wait in ns.
    fn cycle(&self, spin: u64) -> impl Future<Output = u32> + Send;
}

/// A pool whose workers are OS threads.
trait SyncPool: Send + Sync + 'static {
    fn cycle(&self, spin: u64) -> u32;
}

macro_rules! async_cycle {
    ($self:ident, $spin:ident, $acquire:expr) => {{
        let t = Instant::now();
        let c = $acquire;
        let wait = nanos32(t.elapsed());
        tokio::task::yield_now().await;
        spin($spin);
        black_box(&c);
        drop(c);
        wait
    }};
}

impl AsyncPool for ConnectionPool<common::MemFactory> {
    async fn cycle(&self, n: u64) -> u32 {
        async_cycle!(self, n, self.acquire().await.unwrap())
    }
}

impl AsyncPool for common::DeadpoolPool {
    async fn cycle(&self, n: u64) -> u32 {
        async_cycle!(self, n, self.get().await.unwrap())
    }
}

impl AsyncPool for bb8::Pool<common::Bb8Mem> {
    async fn cycle(&self, n: u64) -> u32 {
        async_cycle!(self, n, self.get().await.unwrap())
    }
}

impl AsyncPool for mobc::Pool<common::MobcMem> {
    async fn cycle(&self, n: u64) -> u32 {
        async_cycle!(self, n, self.get().await.unwrap())
    }
}

/// The FIFO floor: a tokio `Semaphore` (FIFO waiters) with as many permits as connections,
/// guarding an `ArrayQueue` of them. No checks, no accounting, no timeout.
struct SemaphoreFloor {
    permits: tokio::sync::Semaphore,
    idle: ArrayQueue<u64>,
}

impl SemaphoreFloor {
    fn new(size: usize) -> Self {
        let idle = ArrayQueue::new(size);
        for i in 0..size {
            idle.push(i as u64).unwrap();
        }
        SemaphoreFloor {
            permits: tokio::sync::Semaphore::new(size),
            idle,
        }
    }
}

impl AsyncPool for SemaphoreFloor {
    async fn cycle(&self, n: u64) -> u32 {
        let t = Instant::now();
        let permit = self.permits.acquire().await.unwrap();
        let c = self.idle.pop().unwrap();
        let wait = nanos32(t.elapsed());
        tokio::task::yield_now().await;
        spin(n);
        self.idle.push(black_box(c)).unwrap();
        drop(permit);
        wait
    }
}

impl SyncPool for ConnectionPool<common::MemFactory> {
    fn cycle(&self, n: u64) -> u32 {
        let t = Instant::now();
        let c = self.acquire_blocking().unwrap();
        let wait = nanos32(t.elapsed());
        std::thread::yield_now();
        spin(n);
        black_box(&c);
        wait
    }
}

impl SyncPool for r2d2::Pool<common::R2d2Mem> {
    fn cycle(&self, n: u64) -> u32 {
        let t = Instant::now();
        let c = self.get().unwrap();
        let wait = nanos32(t.elapsed());
        std::thread::yield_now();
        spin(n);
        black_box(&c);
        wait
    }
}

/// One run of one pool in one configuration.
struct Cell {
    throughput: f64,
    p50: u32,
    p99: u32,
    p999: u32,
    min_max: f64,
    cv: f64,
}

/// Capacity to preallocate per worker for its wait samples.
fn capacity(workers: usize, dur: Duration) -> usize {
    ((8_000_000.0 * dur.as_secs_f64()) as usize / workers).max(1024)
}

fn summarize(results: Vec<(u64, Vec<u32>)>, elapsed: Duration) -> Cell {
    let ops: Vec<u64> = results.iter().map(|r| r.0).collect();
    let total: u64 = ops.iter().sum();
    let mut waits: Vec<u32> = Vec::with_capacity(total as usize);
    for (_, w) in &results {
        waits.extend_from_slice(w);
    }
    drop(results);
    let p = percentiles(&mut waits, &[50.0, 99.0, 99.9]);
    let (min, max, cv) = spread(&ops);
    Cell {
        throughput: total as f64 / elapsed.as_secs_f64(),
        p50: p[0],
        p99: p[1],
        p999: p[2],
        min_max: if max > 0 {
            min as f64 / max as f64
        } else {
            0.0
        },
        cv,
    }
}

fn run_async<P: AsyncPool>(
    rt: &tokio::runtime::Runtime,
    pool: P,
    workers: usize,
    dur: Duration,
    n: u64,
) -> Cell {
    let pool = Arc::new(pool);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let cap = capacity(workers, dur);
    let (results, elapsed) = rt.block_on(async {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (pool, stop, barrier) = (pool.clone(), stop.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(cap);
                    barrier.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        waits.push(pool.cycle(n).await);
                    }
                    (waits.len() as u64, waits)
                })
            })
            .collect();
        barrier.wait().await;
        let t0 = Instant::now();
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
        let mut results = Vec::with_capacity(workers);
        for h in handles {
            results.push(h.await.unwrap());
        }
        (results, t0.elapsed())
    });
    summarize(results, elapsed)
}

fn run_threads<P: SyncPool>(pool: P, workers: usize, dur: Duration, n: u64) -> Cell {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(workers + 1);
    let cap = capacity(workers, dur);
    let (results, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (pool, stop, barrier) = (&pool, &stop, &barrier);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let mut waits = Vec::with_capacity(cap);
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            waits.push(pool.cycle(n));
                        }
                        (waits.len() as u64, waits)
                    })
                    .expect("spawn a worker thread")
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

const POOLS: [&str; 7] = [
    "nexus async",
    "deadpool",
    "bb8",
    "mobc",
    "semaphore floor",
    "nexus blocking",
    "r2d2",
];

/// Builds pool `which` of `size` connections, warms it to `size` open connections, and runs it.
fn run_cell(
    rt: &tokio::runtime::Runtime,
    which: &str,
    size: usize,
    workers: usize,
    dur: Duration,
    n: u64,
) -> Cell {
    // Builds an async pool inside the runtime and warms it to its full size: `size` acquires
    // held at once, then returned.
    macro_rules! warm {
        ($make:expr, |$p:ident| $acquire:expr) => {
            rt.block_on(async {
                let $p = $make;
                let mut held = Vec::new();
                for _ in 0..size {
                    held.push($acquire);
                }
                drop(held);
                $p
            })
        };
    }
    match which {
        "nexus async" => {
            let pool = warm!(common::nexus_mem(size), |p| p.acquire().await.unwrap());
            run_async(rt, pool, workers, dur, n)
        }
        "deadpool" => {
            let pool = warm!(common::deadpool_mem(size), |p| p.get().await.unwrap());
            run_async(rt, pool, workers, dur, n)
        }
        "bb8" => {
            let pool = warm!(common::bb8_mem(size), |p| p.get().await.unwrap());
            run_async(rt, pool, workers, dur, n)
        }
        "mobc" => {
            let pool = warm!(common::mobc_mem(size), |p| p.get().await.unwrap());
            // Returns are spawned tasks: let them land.
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
            run_async(rt, pool, workers, dur, n)
        }
        "semaphore floor" => run_async(rt, SemaphoreFloor::new(size), workers, dur, n),
        "nexus blocking" => {
            let pool = common::nexus_mem(size);
            drop(
                (0..size)
                    .map(|_| pool.acquire_blocking().unwrap())
                    .collect::<Vec<_>>(),
            );
            run_threads(pool, workers, dur, n)
        }
        "r2d2" => {
            let pool = common::r2d2_mem(size);
            drop((0..size).map(|_| pool.get().unwrap()).collect::<Vec<_>>());
            run_threads(pool, workers, dur, n)
        }
        other => unreachable!("unknown pool {other}"),
    }
}

fn main() {
    let args = Args::parse();
    let (rounds, dur) = if args.quick {
        (4, Duration::from_millis(60))
    } else {
        (5, Duration::from_millis(600))
    };
    let n = common::calibrate_spin(WORK_NS);
    println!(
        "# contended ({} mode: {rounds} rounds, {dur:?} per cell, work = {n} spin iterations ~ {WORK_NS} ns)",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let threads = rt.metrics().num_workers();

    // `--profile POOL SIZE WORKERS`: run that one cell for 10 s (e.g. under `perf record -g`).
    let mut it = std::env::args().skip_while(|a| a != "--profile").skip(1);
    if let (Some(pool), Some(size), Some(workers)) = (it.next(), it.next(), it.next()) {
        let (size, workers) = (size.parse().unwrap(), workers.parse().unwrap());
        let c = run_cell(&rt, &pool, size, workers, Duration::from_secs(10), n);
        println!(
            "profiled {pool} size {size} × {workers}: {}, p50 {} p99 {} p99.9 {}, CV {:.3}",
            fmt_rate(c.throughput),
            fmt_ns(c.p50 as f64),
            fmt_ns(c.p99 as f64),
            fmt_ns(c.p999 as f64),
            c.cv
        );
        return;
    }

    let configs: Vec<(usize, usize)> = SIZES
        .iter()
        .flat_map(|&s| WORKERS.iter().map(move |&w| (s, w)))
        .collect();
    // cells[config][pool][round]
    let mut cells: Vec<Vec<Vec<Cell>>> = configs
        .iter()
        .map(|_| POOLS.iter().map(|_| Vec::new()).collect())
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        for (ci, &(size, workers)) in configs.iter().enumerate() {
            for j in 0..POOLS.len() {
                let pi = (round + ci + j) % POOLS.len();
                let cell = run_cell(&rt, POOLS[pi], size, workers, dur, n);
                cells[ci][pi].push(cell);
            }
        }
        println!(
            "round {} done at {:.1} s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let took = started.elapsed();

    let pidx = |name: &str| POOLS.iter().position(|p| *p == name).unwrap();
    let med = |ci: usize, pi: usize, f: &dyn Fn(&Cell) -> f64| {
        median(&cells[ci][pi].iter().map(f).collect::<Vec<_>>())
    };
    let ratio = |ci: usize, a: usize, b: usize, f: &dyn Fn(&Cell) -> f64| {
        let r: Vec<f64> = cells[ci][a]
            .iter()
            .zip(&cells[ci][b])
            .map(|(x, y)| f(x) / f(y))
            .collect();
        median(&r)
    };
    let thr = |c: &Cell| c.throughput;
    let (na, dp, bb, sf, nb, r2) = (
        pidx("nexus async"),
        pidx("deadpool"),
        pidx("bb8"),
        pidx("semaphore floor"),
        pidx("nexus blocking"),
        pidx("r2d2"),
    );

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Contended acquire + release\n\n\
Workers loop acquire, a little work, release, for {} per cell; pool sizes {SIZES:?} × workers \
{WORKERS:?}. Async pools run their workers as tasks on one tokio multi-thread runtime \
({threads} worker threads), holding the connection across `tokio::task::yield_now().await` plus \
~{WORK_NS} ns of arithmetic; blocking pools (nexus `acquire_blocking`, r2d2) run OS threads \
holding it across `std::thread::yield_now()` (the thread gives up its core, as a query would) plus \
the ~{WORK_NS} ns of arithmetic. The acquire wait is timed with `Instant` around \
the acquire call into a preallocated per-worker `Vec`, merged after the run. Every cell runs once \
per round ({rounds} rounds, pools' order rotating) on a fresh pool warmed to its full size; a \
figure is the median over rounds, a ratio the median of per-round ratios. The *semaphore floor* \
is a bare tokio `Semaphore` (FIFO) guarding an `ArrayQueue`: the least a FIFO async pool can \
cost. Measured for {:.0} s.\n",
        fmt_ns(dur.as_nanos() as f64),
        took.as_secs_f64()
    );
    md.push_str(&common::mem_config_table("4 or 16"));
    md.push_str(
        "\n![Throughput against worker count](BENCHMARKS-throughput.svg)\n\n### Throughput\n\n",
    );
    md.push_str("| size | workers |");
    for p in POOLS {
        let _ = write!(md, " {p} |");
    }
    md.push_str(" nexus async / deadpool | nexus async / bb8 | nexus async / floor | nexus blocking / r2d2 |\n|---:|---:|");
    md.push_str(&"---:|".repeat(POOLS.len() + 4));
    md.push('\n');
    println!(
        "\n{:>4} {:>7} {}",
        "size",
        "workers",
        POOLS.map(|p| format!("{p:>15}")).join("")
    );
    for (ci, &(size, workers)) in configs.iter().enumerate() {
        let _ = write!(md, "| {size} | {workers} |");
        let mut line = format!("{size:>4} {workers:>7} ");
        for pi in 0..POOLS.len() {
            let t = med(ci, pi, &thr);
            let _ = write!(md, " {} |", fmt_rate(t));
            line.push_str(&format!("{:>15}", fmt_rate(t)));
        }
        let _ = writeln!(
            md,
            " {} | {} | {} | {} |",
            fmt_ratio(ratio(ci, na, dp, &thr)),
            fmt_ratio(ratio(ci, na, bb, &thr)),
            fmt_ratio(ratio(ci, na, sf, &thr)),
            fmt_ratio(ratio(ci, nb, r2, &thr)),
        );
        println!("{line}");
    }

    md.push_str(
        "\n### Acquire wait and fairness\n\n\
p50 / p99 / p99.9 of the time spent in the acquire call; *min/max* is the fewest operations a \
worker did over the most (1.00: all equal), *CV* the coefficient of variation of operations per \
worker (0: all equal). A FIFO pool keeps both tight once workers outnumber connections.\n\n\
| size | workers | pool | p50 | p99 | p99.9 | p99 / p50 | min/max | CV |\n\
|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    println!(
        "\n{:>4} {:>7} {:<16} {:>9} {:>9} {:>9} {:>8} {:>6}",
        "size", "workers", "pool", "p50", "p99", "p99.9", "min/max", "CV"
    );
    for (ci, &(size, workers)) in configs.iter().enumerate() {
        for (pi, p) in POOLS.iter().enumerate() {
            let p50 = med(ci, pi, &|c| c.p50 as f64);
            let p99 = med(ci, pi, &|c| c.p99 as f64);
            let p999 = med(ci, pi, &|c| c.p999 as f64);
            let mm = med(ci, pi, &|c| c.min_max);
            let cv = med(ci, pi, &|c| c.cv);
            let tail = if p50 > 0.0 {
                fmt_ratio(p99 / p50)
            } else {
                "–".into()
            };
            let _ = writeln!(
                md,
                "| {size} | {workers} | {p} | {} | {} | {} | {tail} | {mm:.2} | {cv:.3} |",
                fmt_ns(p50),
                fmt_ns(p99),
                fmt_ns(p999),
            );
            println!(
                "{size:>4} {workers:>7} {p:<16} {:>9} {:>9} {:>9} {mm:>8.2} {cv:>6.3}",
                fmt_ns(p50),
                fmt_ns(p99),
                fmt_ns(p999)
            );
        }
    }

    // Targets.
    let mut tg = Targets::default();
    let under: Vec<usize> = (0..configs.len())
        .filter(|&ci| configs[ci].1 <= configs[ci].0)
        .collect();
    let over: Vec<usize> = (0..configs.len())
        .filter(|&ci| configs[ci].1 > configs[ci].0)
        .collect();
    let worst = |set: &[usize], f: &dyn Fn(usize) -> f64, lowest: bool| {
        set.iter()
            .map(|&ci| (f(ci), ci))
            .fold(None, |acc: Option<(f64, usize)>, x| match acc {
                Some(a) if (lowest && a.0 <= x.0) || (!lowest && a.0 >= x.0) => Some(a),
                _ => Some(x),
            })
            .unwrap()
    };
    let at = |ci: usize| format!("size {} × {} workers", configs[ci].0, configs[ci].1);
    for (peer, pi) in [("deadpool", dp), ("bb8", bb)] {
        let (r, ci) = worst(&under, &|ci| ratio(ci, na, pi, &thr), true);
        tg.add(
            &format!("contended, workers ≤ connections: throughput ≥ 2.5x {peer}"),
            format!("worst {} ({})", fmt_ratio(r), at(ci)),
            r >= 2.5,
        );
    }
    let (r, ci) = worst(&over, &|ci| ratio(ci, na, dp, &thr), true);
    let (rf, cif) = worst(&over, &|ci| ratio(ci, sf, dp, &thr), true);
    tg.add(
        "oversubscribed (async): throughput ≥ deadpool's",
        format!(
            "worst {} ({}); the semaphore floor's worst: {} ({})",
            fmt_ratio(r),
            at(ci),
            fmt_ratio(rf),
            at(cif)
        ),
        r >= 1.0,
    );
    let (r, ci) = worst(
        &over,
        &|ci| med(ci, na, &|c| c.p99 as f64) / med(ci, na, &|c| c.p50 as f64).max(1.0),
        false,
    );
    let (rf, cif) = worst(
        &over,
        &|ci| med(ci, sf, &|c| c.p99 as f64) / med(ci, sf, &|c| c.p50 as f64).max(1.0),
        false,
    );
    tg.add(
        "oversubscribed (async): p99 wait ≤ 1.5x the median",
        format!(
            "worst p99/p50 {} ({}); the semaphore floor's worst: {} ({})",
            fmt_ratio(r),
            at(ci),
            fmt_ratio(rf),
            at(cif)
        ),
        r <= 1.5,
    );
    let (r, ci) = worst(
        &over,
        &|ci| med(ci, na, &|c| c.p999 as f64) / med(ci, dp, &|c| c.p999 as f64).max(1.0),
        false,
    );
    tg.add(
        "oversubscribed (async): p99.9 wait no worse than deadpool's",
        format!("worst nexus/deadpool p99.9 {} ({})", fmt_ratio(r), at(ci)),
        r <= 1.0,
    );
    let (r, ci) = worst(&over, &|ci| med(ci, na, &|c| c.cv), false);
    let (rf, cif) = worst(&over, &|ci| med(ci, sf, &|c| c.cv), false);
    tg.add(
        "oversubscribed (async): FIFO (proxy used here: CV of ops per worker ≤ 0.05)",
        format!(
            "worst CV {r:.3} ({}); the semaphore floor's worst: {rf:.3} ({})",
            at(ci),
            at(cif)
        ),
        r <= 0.05,
    );
    let (r, ci) = worst(&over, &|ci| ratio(ci, nb, r2, &thr), true);
    tg.add(
        "oversubscribed (threads): throughput against r2d2 (reported)",
        format!("worst nexus/r2d2 {} ({})", fmt_ratio(r), at(ci)),
        true,
    );
    let (r, ci) = worst(
        &over,
        &|ci| med(ci, r2, &|c| c.p999 as f64) / med(ci, nb, &|c| c.p999 as f64).max(1.0),
        true,
    );
    tg.add(
        "oversubscribed (threads): p99.9 wait 10x better than r2d2's",
        format!("worst r2d2/nexus p99.9 {} ({})", fmt_ratio(r), at(ci)),
        r >= 10.0,
    );

    // The plot: throughput against worker count, log-log, one panel per pool size.
    let series: Vec<Vec<Vec<f64>>> = SIZES
        .iter()
        .map(|&s| {
            (0..POOLS.len())
                .map(|pi| {
                    configs
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.0 == s)
                        .map(|(ci, _)| med(ci, pi, &thr))
                        .collect()
                })
                .collect()
        })
        .collect();
    let svg = plot(&series, args.mode());
    args.write_file("BENCHMARKS-throughput.svg", &svg);
    args.write("contended", &md, &tg);
}

/// A compact axis label: `200 k/s`, `1 M/s`, `10 M/s`.
fn tick(v: f64) -> String {
    if v >= 1e6 {
        format!("{} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{} k/s", v / 1e3)
    } else {
        format!("{v} /s")
    }
}

/// Hand-written SVG: two panels (pool 4, pool 16), x = workers (log), y = ops/s (log).
fn plot(series: &[Vec<Vec<f64>>], mode: &str) -> String {
    const COLORS: [&str; 7] = [
        "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#8c564b",
    ];
    const DASH: [&str; 7] = ["", "", "", "", "6,4", "", "3,3"];
    let (pw, ph, ml, mt, mb, gap) = (420.0, 300.0, 84.0, 40.0, 50.0, 90.0);
    let width = ml + 2.0 * pw + gap + 20.0;
    let height = mt + ph + mb + 70.0;
    let all: Vec<f64> = series
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::MAX, f64::min).log10().floor();
    let hi = all.iter().copied().fold(0.0, f64::max).log10().ceil();
    let (xlo, xhi) = (
        (WORKERS[0] as f64).log2(),
        (WORKERS[WORKERS.len() - 1] as f64).log2(),
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Contended acquire + release: \
throughput against workers ({mode} run; log-log)</text>",
        width / 2.0
    );
    for (k, size) in SIZES.iter().enumerate() {
        let x0 = ml + k as f64 * (pw + gap);
        let px = |w: f64| x0 + (w.log2() - xlo) / (xhi - xlo) * pw;
        let py = |v: f64| mt + ph - (v.log10() - lo) / (hi - lo) * ph;
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">pool of {size}</text>",
            x0 + pw / 2.0,
            mt - 6.0
        );
        for w in WORKERS {
            let x = px(w as f64);
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{mt}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/>\n\
<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{w}</text>",
                mt + ph,
                mt + ph + 16.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text>",
            x0 + pw / 2.0,
            mt + ph + 34.0
        );
        // Grid lines and labels at 1, 2 and 5 of every decade.
        let mut e = lo;
        while e <= hi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powf(e);
                if v.log10() > hi + 1e-9 {
                    break;
                }
                let y = py(v);
                let (stroke, weight) = if m == 1.0 { ("#ccc", "") } else { ("#eee", "") };
                let _ = writeln!(
                    s,
                    "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{stroke}\"{weight}/>\n\
<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
                    x0 + pw,
                    x0 - 6.0,
                    y + 4.0,
                    tick(v)
                );
            }
            e += 1.0;
        }
        for (pi, ys) in series[k].iter().enumerate() {
            let pts: Vec<String> = WORKERS
                .iter()
                .zip(ys)
                .filter(|(_, v)| **v > 0.0)
                .map(|(w, v)| format!("{:.1},{:.1}", px(*w as f64), py(*v)))
                .collect();
            let dash = if DASH[pi].is_empty() {
                String::new()
            } else {
                format!(" stroke-dasharray=\"{}\"", DASH[pi])
            };
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
                pts.join(" "),
                COLORS[pi]
            );
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap();
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{}\"/>",
                    COLORS[pi]
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "<text transform=\"rotate(-90)\" x=\"{}\" y=\"14\" text-anchor=\"middle\">operations per second</text>",
        -(mt + ph / 2.0)
    );
    let ly = mt + ph + 56.0;
    for (pi, p) in POOLS.iter().enumerate() {
        let x = ml + (pi % 4) as f64 * 200.0;
        let y = ly + (pi / 4) as f64 * 18.0;
        let dash = if DASH[pi].is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{}\"", DASH[pi])
        };
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\n\
<text x=\"{}\" y=\"{}\">{p}</text>",
            x + 24.0,
            COLORS[pi],
            x + 30.0,
            y + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
