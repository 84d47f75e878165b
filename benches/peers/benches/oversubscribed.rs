//! Oversubscribed acquire + release (issue 13): more workers than connections, nexus-pool against
//! the barging reference pool (`common::BargingPool`) and the best peer of each facade.
//!
//! - Threads: pool sizes 4 and 16 × 4, 16 and 64 OS threads × two holds: `increment` (the
//!   connection is held while a local counter is incremented through `black_box`: no yield, no
//!   clock read) and `yield` (held across one `std::thread::yield_now()`). Pools: nexus
//!   `acquire_blocking()`, r2d2 `get()`, barging `acquire_blocking()`.
//! - Tasks: pool sizes 4 and 16 × 16, 64 and 256 tasks on one tokio multi-thread runtime (a worker
//!   thread per core), the connection held across one `tokio::task::yield_now().await`. Pools:
//!   nexus `acquire().await`, deadpool `get().await`, barging `acquire().await`.
//!
//! Each worker loops acquire, hold, release: first for a warm-up (a strict hand-off's convoy
//! forms only once enough holders have been preempted, tens of milliseconds to over a second after
//! the start on 2 cores: the measured window should see the steady state, not the start), then for
//! the measured window. It records, per acquire, its start (ns since an `Instant` taken before
//! the workers start) and its wait (the time spent in the acquire call), in a preallocated `Vec`
//! of its own: nothing shared is written on the hot path. Reported per cell: throughput, the
//! wait's p50 / p99 / p99.9, the fewest and the most acquires a worker made, and **overtaking**:
//! after the run all acquires are sorted by start, and an acquire X was overtaken by
//! `X.served − min(served of every acquire that started after X)` (0 if none was served before
//! it; served = start + wait), that is how long callers younger than X were served ahead of it.
//! A strictly FIFO pool overtakes only by the scheduler's delays (a thread preempted between its
//! clock reads and its place in the queue, or woken late); the p99.9 and the maximum are
//! reported.
//!
//! **Acquires still waiting when the window ends** are not dropped (that would flatter a pool that
//! starves some callers): each worker publishes the start of its in-flight acquire in a slot of
//! its own (a cache-padded `AtomicU64`, stored with `Relaxed` before the acquire call and cleared
//! after it returns: a store to a worker-private cache line, no shared write), and the slots are
//! read when the window ends, just after `stop` is set and before the workers are joined. An
//! acquire still waiting then counts with the time it had waited so far (window end − its start,
//! a lower bound) in the wait percentiles, and in the overtakes as served at the window end, that
//! is overtaken by every younger acquire served before the end; it replaces the record the worker
//! makes when that acquire completes after the stop. Reported per cell also: *stuck*, the longest
//! any worker was still waiting when the window ended (0 if none was).
//!
//! Every (configuration, pool) cell runs once per round on a fresh pool warmed to its full size,
//! the pools' order rotating each round; a figure is the median over rounds and a ratio the
//! median of per-round ratios.
//!
//! `cargo bench --bench oversubscribed -- [--quick] [--out DIR]`;
//! `-- --profile "nexus blocking" 4 64 increment [SECONDS]` runs one cell alone for 10 s unless
//! told (for `perf record -g`); the pools are `nexus blocking`, `r2d2`, `barging blocking` (holds
//! `increment` or `yield`) and `nexus async`, `deadpool`, `barging async` (hold `yield`).

mod common;

use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Args, BargingPool, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles,
};
use nexus_pool::ConnectionPool;

/// The fairness bound nexus-pool states: no caller is served more than this long after a
/// younger one. It must match the bound the crate documents (README); change both together.
const FAIRNESS_BOUND_MS: u64 = 1;
/// Slack on top of the bound for the overtake target: the measurement includes the scheduler's
/// delay between a caller's clock read and its place in the queue, and between its wake-up and
/// its return.
const OVERTAKE_SLACK_MS: u64 = 1;

const THREAD_SIZES: [usize; 2] = [4, 16];
const THREAD_WORKERS: [usize; 3] = [4, 16, 64];
const TASK_SIZES: [usize; 2] = [4, 16];
const TASK_WORKERS: [usize; 3] = [16, 64, 256];

const THREAD_POOLS: [&str; 3] = ["nexus blocking", "r2d2", "barging blocking"];
const TASK_POOLS: [&str; 3] = ["nexus async", "deadpool", "barging async"];

/// What a worker does while it holds the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hold {
    /// Increment a local counter through `black_box`: the shortest hold, no yield.
    Increment,
    /// One `std::thread::yield_now()` (threads) or `tokio::task::yield_now().await` (tasks).
    Yield,
}

impl Hold {
    fn name(self) -> &'static str {
        match self {
            Hold::Increment => "increment",
            Hold::Yield => "yield",
        }
    }

    fn parse(s: &str) -> Hold {
        match s {
            "increment" => Hold::Increment,
            "yield" => Hold::Yield,
            other => panic!("unknown hold {other:?} (increment or yield)"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Threads,
    Tasks,
}

/// One configuration: its pools run on the same kind of workers.
#[derive(Clone, Copy, Debug)]
struct Config {
    kind: Kind,
    size: usize,
    workers: usize,
    hold: Hold,
}

impl Config {
    fn pools(&self) -> &'static [&'static str; 3] {
        match self.kind {
            Kind::Threads => &THREAD_POOLS,
            Kind::Tasks => &TASK_POOLS,
        }
    }

    fn label(&self) -> String {
        let w = match self.kind {
            Kind::Threads => "threads",
            Kind::Tasks => "tasks",
        };
        format!(
            "pool {} × {} {w}, hold {}",
            self.size,
            self.workers,
            self.hold.name()
        )
    }
}

/// A duration as whole milliseconds: `150 ms`.
fn fmt_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// One acquire: when it started (ns since the cell's base instant) and how long it waited (ns).
#[derive(Clone, Copy)]
struct Rec {
    start: u64,
    wait: u32,
}

#[inline]
fn rec(start: u64, waited: Duration) -> Rec {
    Rec {
        start,
        wait: nanos32(waited),
    }
}

/// `t` in ns since `base`.
#[inline]
fn since(base: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(base).as_nanos() as u64
}

/// A worker's in-flight slot: the start (ns since the cell's base instant) of the acquire it is
/// waiting in, or [`NOT_WAITING`]. Padded to its own cache lines, so that a worker's stores do
/// not touch a line another worker writes.
#[repr(align(128))]
struct Slot(AtomicU64);

/// A [`Slot`]'s value while its worker is not in an acquire call.
const NOT_WAITING: u64 = u64::MAX;

fn slots(workers: usize) -> Arc<[Slot]> {
    (0..workers)
        .map(|_| Slot(AtomicU64::new(NOT_WAITING)))
        .collect()
}

/// The start of each worker's in-flight acquire (or [`NOT_WAITING`]), read when the window ends.
fn in_flight(slots: &[Slot]) -> Vec<u64> {
    slots.iter().map(|s| s.0.load(Ordering::Relaxed)).collect()
}

/// A pool whose workers are OS threads: acquire, hold, release; returns the acquire's record.
trait SyncPool: Sync {
    fn cycle(&self, base: Instant, slot: &AtomicU64, hold: Hold, counter: &mut u64) -> Rec;
}

/// A pool whose workers are tasks: acquire, hold across one `yield_now().await`, release.
trait AsyncPool: Send + Sync + 'static {
    fn cycle(&self, base: Instant, slot: &AtomicU64) -> impl Future<Output = Rec> + Send;
}

macro_rules! sync_cycle {
    ($base:ident, $slot:ident, $hold:ident, $counter:ident, $acquire:expr) => {{
        let t = Instant::now();
        let start = since($base, t);
        $slot.store(start, Ordering::Relaxed);
        let c = $acquire;
        $slot.store(NOT_WAITING, Ordering::Relaxed);
        let waited = t.elapsed();
        match $hold {
            Hold::Increment => *$counter = black_box(*$counter + 1),
            Hold::Yield => std::thread::yield_now(),
        }
        black_box(&c);
        drop(c);
        rec(start, waited)
    }};
}

macro_rules! async_cycle {
    ($base:ident, $slot:ident, $acquire:expr) => {{
        let t = Instant::now();
        let start = since($base, t);
        $slot.store(start, Ordering::Relaxed);
        let c = $acquire;
        $slot.store(NOT_WAITING, Ordering::Relaxed);
        let waited = t.elapsed();
        tokio::task::yield_now().await;
        black_box(&c);
        drop(c);
        rec(start, waited)
    }};
}

impl SyncPool for ConnectionPool<common::MemFactory> {
    fn cycle(&self, base: Instant, slot: &AtomicU64, hold: Hold, counter: &mut u64) -> Rec {
        sync_cycle!(base, slot, hold, counter, self.acquire_blocking().unwrap())
    }
}

impl SyncPool for r2d2::Pool<common::R2d2Mem> {
    fn cycle(&self, base: Instant, slot: &AtomicU64, hold: Hold, counter: &mut u64) -> Rec {
        sync_cycle!(base, slot, hold, counter, self.get().unwrap())
    }
}

impl SyncPool for BargingPool {
    fn cycle(&self, base: Instant, slot: &AtomicU64, hold: Hold, counter: &mut u64) -> Rec {
        sync_cycle!(base, slot, hold, counter, self.acquire_blocking())
    }
}

impl AsyncPool for ConnectionPool<common::MemFactory> {
    async fn cycle(&self, base: Instant, slot: &AtomicU64) -> Rec {
        async_cycle!(base, slot, self.acquire().await.unwrap())
    }
}

impl AsyncPool for common::DeadpoolPool {
    async fn cycle(&self, base: Instant, slot: &AtomicU64) -> Rec {
        async_cycle!(base, slot, self.get().await.unwrap())
    }
}

impl AsyncPool for BargingPool {
    async fn cycle(&self, base: Instant, slot: &AtomicU64) -> Rec {
        async_cycle!(base, slot, self.acquire().await)
    }
}

/// One run of one pool in one configuration.
struct Cell {
    throughput: f64,
    p50: u32,
    p99: u32,
    p999: u32,
    min_ops: u64,
    max_ops: u64,
    overtake_p999: u32,
    overtake_max: u32,
    /// The longest any worker was still waiting when the window ended (its censored wait, ns;
    /// 0 if none was).
    stuck: u64,
    /// Acquires started in each [`TIMELINE_BIN`] of the measured window (printed by `--profile`).
    timeline: Vec<u64>,
}

/// The width of a bin of [`Cell::timeline`].
const TIMELINE_BIN: Duration = Duration::from_millis(100);

/// Records to preallocate per worker: room for a worker doing four times its share of 20 M
/// acquires a second (the `Vec` grows past it if needed).
fn capacity(workers: usize, dur: Duration) -> usize {
    let total = 20_000_000.0 * dur.as_secs_f64();
    ((total * 4.0 / workers as f64).min(total) as usize).max(1024)
}

/// Per acquire X, how long younger acquires were served ahead of it:
/// `max(0, X.served − min(served of the acquires that started strictly after X))`.
/// Sorts `recs` by start; the overtakes are in that order.
fn overtakes(recs: &mut [Rec]) -> Vec<u32> {
    recs.sort_unstable_by_key(|r| r.start);
    let mut out = vec![0u32; recs.len()];
    let mut min_after = u64::MAX;
    let mut end = recs.len();
    while end > 0 {
        // The group of acquires that started at the same nanosecond as recs[end - 1]: none of
        // them started after another.
        let s = recs[end - 1].start;
        let mut begin = end - 1;
        while begin > 0 && recs[begin - 1].start == s {
            begin -= 1;
        }
        let mut group_min = u64::MAX;
        for (r, o) in recs[begin..end].iter().zip(&mut out[begin..end]) {
            let served = r.start + u64::from(r.wait);
            *o = u32::try_from(served.saturating_sub(min_after)).unwrap_or(u32::MAX);
            group_min = group_min.min(served);
        }
        min_after = min_after.min(group_min);
        end = begin;
    }
    out
}

/// The measured window of a cell, in ns since its base instant: the workers ran from the base,
/// were warmed up until `from`, and told to stop at `to`.
#[derive(Clone, Copy)]
struct Window {
    from: u64,
    to: u64,
}

impl Window {
    fn new(base: Instant, from: Instant, to: Instant) -> Window {
        Window {
            from: from.duration_since(base).as_nanos() as u64,
            to: to.duration_since(base).as_nanos() as u64,
        }
    }
}

/// Throughput and the spread of acquires per worker count the acquires that started in the window.
/// The waits and overtakes are those of the acquires that were waiting at some time in the window
/// (started before its end, served after its start): a caller starved since the warm-up, served
/// only after the stop, counts. An acquire's overtake is measured against every acquire younger
/// than it, warm-up and stop included.
///
/// `in_flight[i]` is the start of worker `i`'s acquire still waiting when the window ended (read
/// from its slot then), or [`NOT_WAITING`]: that acquire counts with the time it had waited so
/// far, `window.to − start` (a lower bound), and as served at `window.to` for the overtakes; this
/// censored record replaces the one the worker made when the acquire completed after the stop.
fn summarize(mut results: Vec<Vec<Rec>>, in_flight: &[u64], window: Window) -> Cell {
    let mut stuck = 0u64;
    for (r, &start) in results.iter_mut().zip(in_flight) {
        // NOT_WAITING, or an acquire started after the window's end: nothing in flight at it.
        if start >= window.to {
            continue;
        }
        let waited = window.to - start;
        let censored = Rec {
            start,
            wait: u32::try_from(waited).unwrap_or(u32::MAX),
        };
        match r.iter().rposition(|x| x.start == start) {
            // Served at or before the window's end, its slot not yet cleared when read: its own
            // record stands.
            Some(i) if r[i].start + u64::from(r[i].wait) <= window.to => continue,
            Some(i) => r[i] = censored,
            None => r.push(censored),
        }
        stuck = stuck.max(waited);
    }
    let ops: Vec<u64> = results
        .iter()
        .map(|r| {
            r.iter()
                .filter(|x| x.start >= window.from && x.start < window.to)
                .count() as u64
        })
        .collect();
    let total: u64 = ops.iter().sum();
    let mut recs: Vec<Rec> = Vec::with_capacity(results.iter().map(Vec::len).sum());
    for r in results {
        recs.extend_from_slice(&r);
    }
    let bins = (window.to - window.from).div_ceil(TIMELINE_BIN.as_nanos() as u64) as usize;
    let mut timeline = vec![0u64; bins];
    for r in recs
        .iter()
        .filter(|x| x.start >= window.from && x.start < window.to)
    {
        timeline[((r.start - window.from) / TIMELINE_BIN.as_nanos() as u64) as usize] += 1;
    }
    let all_overtakes = overtakes(&mut recs);
    let in_window = |r: &Rec| r.start < window.to && r.start + u64::from(r.wait) >= window.from;
    let mut waits: Vec<u32> = recs
        .iter()
        .filter(|r| in_window(r))
        .map(|r| r.wait)
        .collect();
    let p = percentiles(&mut waits, &[50.0, 99.0, 99.9]);
    drop(waits);
    let mut over: Vec<u32> = recs
        .iter()
        .zip(all_overtakes)
        .filter(|(r, _)| in_window(r))
        .map(|(_, o)| o)
        .collect();
    drop(recs);
    let overtake_max = over.iter().copied().max().unwrap_or(0);
    let overtake_p999 = percentiles(&mut over, &[99.9])[0];
    Cell {
        throughput: total as f64 / ((window.to - window.from) as f64 / 1e9),
        p50: p[0],
        p99: p[1],
        p999: p[2],
        min_ops: ops.iter().copied().min().unwrap_or(0),
        max_ops: ops.iter().copied().max().unwrap_or(0),
        overtake_p999,
        overtake_max,
        stuck,
        timeline,
    }
}

fn run_threads<P: SyncPool>(pool: P, workers: usize, hold: Hold, time: Timing) -> Cell {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(workers + 1);
    let cap = capacity(workers, time.warmup + time.measure);
    let slots = slots(workers);
    let base = Instant::now();
    let (results, in_flight, window) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (pool, stop, barrier) = (&pool, &stop, &barrier);
                let slot = &slots[i].0;
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let mut recs = Vec::with_capacity(cap);
                        let mut counter = 0u64;
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            recs.push(pool.cycle(base, slot, hold, &mut counter));
                        }
                        black_box(counter);
                        recs
                    })
                    .expect("spawn a worker thread")
            })
            .collect();
        barrier.wait();
        std::thread::sleep(time.warmup);
        let from = Instant::now();
        std::thread::sleep(time.measure);
        let to = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let in_flight = in_flight(&slots);
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (results, in_flight, Window::new(base, from, to))
    });
    summarize(results, &in_flight, window)
}

fn run_tasks<P: AsyncPool>(
    rt: &tokio::runtime::Runtime,
    pool: P,
    workers: usize,
    time: Timing,
) -> Cell {
    let pool = Arc::new(pool);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let cap = capacity(workers, time.warmup + time.measure);
    let slots = slots(workers);
    let base = Instant::now();
    let (results, in_flight, window) = rt.block_on(async {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (pool, stop, barrier) = (pool.clone(), stop.clone(), barrier.clone());
                let slots = slots.clone();
                tokio::spawn(async move {
                    let mut recs = Vec::with_capacity(cap);
                    barrier.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        recs.push(pool.cycle(base, &slots[i].0).await);
                    }
                    recs
                })
            })
            .collect();
        barrier.wait().await;
        tokio::time::sleep(time.warmup).await;
        let from = Instant::now();
        tokio::time::sleep(time.measure).await;
        let to = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let in_flight = in_flight(&slots);
        let mut results = Vec::with_capacity(workers);
        for h in handles {
            results.push(h.await.unwrap());
        }
        (results, in_flight, Window::new(base, from, to))
    });
    summarize(results, &in_flight, window)
}

/// How long a cell's workers run before the measured window (so that the window sees the steady
/// state, convoy included, rather than the start), and the window's length.
#[derive(Clone, Copy, Debug)]
struct Timing {
    warmup: Duration,
    measure: Duration,
}

/// Builds pool `which` for `config`, warms it to its full size, and runs it.
fn run_cell(rt: &tokio::runtime::Runtime, which: &str, config: Config, time: Timing) -> Cell {
    let Config {
        size,
        workers,
        hold,
        ..
    } = config;
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
        "nexus blocking" => {
            let pool = common::nexus_mem(size);
            drop(
                (0..size)
                    .map(|_| pool.acquire_blocking().unwrap())
                    .collect::<Vec<_>>(),
            );
            run_threads(pool, workers, hold, time)
        }
        "r2d2" => {
            let pool = common::r2d2_mem(size);
            drop((0..size).map(|_| pool.get().unwrap()).collect::<Vec<_>>());
            run_threads(pool, workers, hold, time)
        }
        "barging blocking" => run_threads(BargingPool::new(size), workers, hold, time),
        "nexus async" => {
            assert_eq!(hold, Hold::Yield, "tasks hold across a yield");
            let pool = warm!(common::nexus_mem(size), |p| p.acquire().await.unwrap());
            run_tasks(rt, pool, workers, time)
        }
        "deadpool" => {
            assert_eq!(hold, Hold::Yield, "tasks hold across a yield");
            let pool = warm!(common::deadpool_mem(size), |p| p.get().await.unwrap());
            run_tasks(rt, pool, workers, time)
        }
        "barging async" => {
            assert_eq!(hold, Hold::Yield, "tasks hold across a yield");
            run_tasks(rt, BargingPool::new(size), workers, time)
        }
        other => panic!(
            "unknown pool {other:?} (one of {})",
            THREAD_POOLS
                .iter()
                .chain(&TASK_POOLS)
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn main() {
    let args = Args::parse();
    // Threads get the longer warm-up: their convoy takes time to form; tasks have none.
    let ms = Duration::from_millis;
    let (rounds, threads_time, tasks_time) = if args.quick {
        let measure = ms(100);
        (
            3,
            Timing {
                warmup: ms(200),
                measure,
            },
            Timing {
                warmup: ms(50),
                measure,
            },
        )
    } else {
        let measure = ms(300);
        (
            5,
            Timing {
                warmup: ms(450),
                measure,
            },
            Timing {
                warmup: ms(100),
                measure,
            },
        )
    };
    let time_for = |kind: Kind| match kind {
        Kind::Threads => threads_time,
        Kind::Tasks => tasks_time,
    };
    println!(
        "# oversubscribed ({} mode: {rounds} rounds; per cell {} of warm-up (threads) or {} \
(tasks), then {} measured; fairness bound {FAIRNESS_BOUND_MS} ms)",
        args.mode(),
        fmt_ms(threads_time.warmup),
        fmt_ms(tasks_time.warmup),
        fmt_ms(threads_time.measure)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rt_threads = rt.metrics().num_workers();

    // `--profile POOL SIZE WORKERS HOLD [SECONDS]`: run that one cell alone, for 10 s unless told
    // (e.g. under `perf record -g`).
    let mut it = std::env::args().skip_while(|a| a != "--profile").skip(1);
    if let (Some(pool), Some(size), Some(workers), Some(hold)) =
        (it.next(), it.next(), it.next(), it.next())
    {
        let kind = if TASK_POOLS.contains(&pool.as_str()) {
            Kind::Tasks
        } else {
            Kind::Threads
        };
        let config = Config {
            kind,
            size: size.parse().expect("SIZE is a number"),
            workers: workers.parse().expect("WORKERS is a number"),
            hold: Hold::parse(&hold),
        };
        let secs: f64 = it
            .next()
            .map_or(10.0, |s| s.parse().expect("SECONDS is a number"));
        let time = Timing {
            measure: Duration::from_secs_f64(secs),
            ..time_for(kind)
        };
        let c = run_cell(&rt, &pool, config, time);
        println!(
            "profiled {pool}, {}: {}, wait p50 {} p99 {} p99.9 {}, ops per worker {}..{}, \
overtake p99.9 {} max {}, stuck {}",
            config.label(),
            fmt_rate(c.throughput),
            fmt_ns(c.p50 as f64),
            fmt_ns(c.p99 as f64),
            fmt_ns(c.p999 as f64),
            c.min_ops,
            c.max_ops,
            fmt_ns(c.overtake_p999 as f64),
            fmt_ns(c.overtake_max as f64),
            fmt_ns(c.stuck as f64),
        );
        println!(
            "acquires started per {TIMELINE_BIN:?} of the window: {:?}",
            c.timeline
        );
        return;
    }

    let mut configs: Vec<Config> = Vec::new();
    for hold in [Hold::Increment, Hold::Yield] {
        for size in THREAD_SIZES {
            for workers in THREAD_WORKERS {
                configs.push(Config {
                    kind: Kind::Threads,
                    size,
                    workers,
                    hold,
                });
            }
        }
    }
    for size in TASK_SIZES {
        for workers in TASK_WORKERS {
            configs.push(Config {
                kind: Kind::Tasks,
                size,
                workers,
                hold: Hold::Yield,
            });
        }
    }

    // cells[config][pool][round], pool indexing the config's pool list.
    let mut cells: Vec<Vec<Vec<Cell>>> = configs
        .iter()
        .map(|c| c.pools().iter().map(|_| Vec::new()).collect())
        .collect();
    let started = Instant::now();
    for round in 0..rounds {
        for (ci, &config) in configs.iter().enumerate() {
            let pools = config.pools();
            for j in 0..pools.len() {
                let pi = (round + ci + j) % pools.len();
                let cell = run_cell(&rt, pools[pi], config, time_for(config.kind));
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

    // Pool indices within a config's list: nexus first, then the peer, then the barging pool.
    let (nexus, peer, barging) = (0, 1, 2);
    let med = |ci: usize, pi: usize, f: &dyn Fn(&Cell) -> f64| {
        median(&cells[ci][pi].iter().map(f).collect::<Vec<_>>())
    };
    let ratio = |ci: usize, a: usize, b: usize, f: &dyn Fn(&Cell) -> f64| {
        let r: Vec<f64> = cells[ci][a]
            .iter()
            .zip(&cells[ci][b])
            .map(|(x, y)| f(x) / f(y).max(1e-9))
            .collect();
        median(&r)
    };
    let thr = |c: &Cell| c.throughput;
    let p99 = |c: &Cell| c.p99 as f64;
    let p999 = |c: &Cell| c.p999 as f64;
    let threads: Vec<usize> = (0..configs.len())
        .filter(|&ci| configs[ci].kind == Kind::Threads)
        .collect();
    let tasks: Vec<usize> = (0..configs.len())
        .filter(|&ci| configs[ci].kind == Kind::Tasks)
        .collect();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Oversubscribed acquire + release (issue 13)\n\n\
More workers than connections, or as many. Each worker loops acquire, hold, release: for {} of \
warm-up (threads; tasks {}), then {} measured; only the acquires that start in the measured \
window count. The warm-up lets the window see the steady state rather than the start: a strict \
hand-off's convoy (threads) forms only once enough holders have been preempted, from tens of \
milliseconds to over a second after the start on 2 cores, and under load it can break up and \
form again (`--profile` prints a cell's acquires per 100 ms). **Threads** (pool sizes {THREAD_SIZES:?} × {THREAD_WORKERS:?} OS threads): the hold is \
*increment* (a local counter incremented through `black_box`; no yield) or *yield* (one \
`std::thread::yield_now()`); pools: nexus `acquire_blocking()`, r2d2 `get()`, barging \
`acquire_blocking()`. **Tasks** (pool sizes {TASK_SIZES:?} × {TASK_WORKERS:?} tasks on one tokio \
multi-thread runtime, {rt_threads} worker threads): the hold is one \
`tokio::task::yield_now().await`; pools: nexus `acquire().await`, deadpool `get().await`, barging \
`acquire().await`. The *barging* pool is the reference of issue 13: an `ArrayQueue` of \
connections and an `event_listener::Event`, which lets any caller take any idle connection (no \
FIFO, no bookkeeping). Every cell runs once per round ({rounds} rounds, pools' order rotating) on \
a fresh pool warmed to its full size; a figure is the median over rounds, a ratio the median of \
per-round ratios. Measured for {:.0} s.\n\n\
Per acquire the worker records, in a preallocated `Vec` of its own, its start (an `Instant` \
before the acquire call) and its wait (the time in the call). *Overtake*: the acquires are \
sorted by start, and an acquire X was overtaken by X's served time (start + wait) minus the \
earliest served time of the acquires that started after it, or 0: how long younger callers \
were served ahead of X. It includes the scheduler's delays: a thread preempted between its \
clock read and its place in the queue, or between its wake-up and its return, counts as \
overtaken for as long as it was off the core. With hold *increment* the threads never block \
while connections are free, so the kernel preempts them at the end of their time slice, often \
inside the timed acquire: even a strictly FIFO pool with no more threads than connections \
shows maxima of tens of milliseconds there on a loaded 2-core machine; the *yield* cells, where \
threads give up their core every cycle, show the pool's own ordering far better. nexus-pool's \
stated fairness bound, used by the targets: {FAIRNESS_BOUND_MS} ms.\n",
        fmt_ms(threads_time.warmup),
        fmt_ms(tasks_time.warmup),
        fmt_ms(threads_time.measure),
        took.as_secs_f64()
    );
    md.push_str(&common::mem_config_table_of(
        "4 or 16",
        &["nexus-pool", "deadpool", "r2d2", "barging"],
    ));
    md.push_str(
        "\n| row | facade | workers |\n|---|---|---|\n\
| nexus blocking | `ConnectionPool::acquire_blocking()` (`common::nexus_mem`) | OS threads |\n\
| r2d2 | `r2d2::Pool::get()` (`common::r2d2_mem`) | OS threads |\n\
| barging blocking | `BargingPool::acquire_blocking()` (`event_listener` `wait()`) | OS threads |\n\
| nexus async | `ConnectionPool::acquire().await` (`common::nexus_mem`) | tokio tasks |\n\
| deadpool | `deadpool::managed::Pool::get().await` (`common::deadpool_mem`) | tokio tasks |\n\
| barging async | `BargingPool::acquire().await` | tokio tasks |\n",
    );

    // ----- throughput -----
    md.push_str(
        "\n### Throughput\n\n\
Acquire + release cycles per second.\n\n\
| kind | size | workers | hold | nexus | peer | barging | nexus / peer | nexus / barging | peer / barging |\n\
|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    println!(
        "\n{:<8} {:>4} {:>5} {:<9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9}",
        "kind",
        "size",
        "workers",
        "hold",
        "nexus",
        "peer",
        "barging",
        "n/peer",
        "n/barg",
        "peer/barg"
    );
    for (ci, c) in configs.iter().enumerate() {
        let kind = match c.kind {
            Kind::Threads => "threads",
            Kind::Tasks => "tasks",
        };
        let peer_name = c.pools()[peer];
        let (tn, tp, tb) = (
            med(ci, nexus, &thr),
            med(ci, peer, &thr),
            med(ci, barging, &thr),
        );
        let (rp, rb, rpb) = (
            ratio(ci, nexus, peer, &thr),
            ratio(ci, nexus, barging, &thr),
            ratio(ci, peer, barging, &thr),
        );
        let _ = writeln!(
            md,
            "| {kind} | {} | {} | {} | {} | {peer_name} {} | {} | {} | {} | {} |",
            c.size,
            c.workers,
            c.hold.name(),
            fmt_rate(tn),
            fmt_rate(tp),
            fmt_rate(tb),
            fmt_ratio(rp),
            fmt_ratio(rb),
            fmt_ratio(rpb),
        );
        println!(
            "{kind:<8} {:>4} {:>5} {:<9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>9}   (peer: {peer_name})",
            c.size,
            c.workers,
            c.hold.name(),
            fmt_rate(tn),
            fmt_rate(tp),
            fmt_rate(tb),
            fmt_ratio(rp),
            fmt_ratio(rb),
            fmt_ratio(rpb),
        );
    }

    // ----- waits, spread, overtaking -----
    md.push_str(
        "\n### Acquire wait, spread and overtaking\n\n\
p50 / p99 / p99.9 of the time spent in the acquire call; *ops/worker* the fewest and the most \
acquires one worker made in the cell (in the measured window); *overtake* p99.9 and maximum \
over all acquires of the cell; *stuck* the longest any worker was still waiting when the window \
ended (medians over rounds). The waits and overtakes are those of every acquire that waited in \
the window: an acquire still waiting when the window ends counts with the time it had waited so \
far (a lower bound), and as served at the window's end for the overtakes (overtaken by every \
younger acquire served before the end), so a pool cannot look better by leaving callers \
waiting.\n\n\
| kind | size | workers | hold | pool | p50 | p99 | p99.9 | ops/worker min | max | overtake p99.9 | overtake max | stuck |\n\
|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    println!(
        "\n{:<8} {:>4} {:>5} {:<9} {:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}",
        "kind",
        "size",
        "workers",
        "hold",
        "pool",
        "p50",
        "p99",
        "p99.9",
        "ops min",
        "ops max",
        "ovt p99.9",
        "ovt max",
        "stuck"
    );
    for (ci, c) in configs.iter().enumerate() {
        let kind = match c.kind {
            Kind::Threads => "threads",
            Kind::Tasks => "tasks",
        };
        for (pi, p) in c.pools().iter().enumerate() {
            let cols = [
                fmt_ns(med(ci, pi, &|c| c.p50 as f64)),
                fmt_ns(med(ci, pi, &p99)),
                fmt_ns(med(ci, pi, &p999)),
                format!("{:.0}", med(ci, pi, &|c| c.min_ops as f64)),
                format!("{:.0}", med(ci, pi, &|c| c.max_ops as f64)),
                fmt_ns(med(ci, pi, &|c| c.overtake_p999 as f64)),
                fmt_ns(med(ci, pi, &|c| c.overtake_max as f64)),
                fmt_ns(med(ci, pi, &|c| c.stuck as f64)),
            ];
            let _ = writeln!(
                md,
                "| {kind} | {} | {} | {} | {p} | {} |",
                c.size,
                c.workers,
                c.hold.name(),
                cols.join(" | ")
            );
            println!(
                "{kind:<8} {:>4} {:>5} {:<9} {p:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}",
                c.size,
                c.workers,
                c.hold.name(),
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                cols[4],
                cols[5],
                cols[6],
                cols[7]
            );
        }
    }
    md.push_str(
        "\nnexus's wait against the peer's (r2d2 for threads, deadpool for tasks), the median of \
per-round ratios: at most 1, nexus's is no worse. The targets use p99.9 for threads, p99 for \
tasks.\n\n\
| kind | size | workers | hold | nexus p99.9 / peer p99.9 | nexus p99 / peer p99 |\n\
|---|---:|---:|---|---:|---:|\n",
    );
    println!("\nwait against the peer (median of per-round ratios; <= 1: nexus no worse)");
    for (ci, c) in configs.iter().enumerate() {
        let kind = match c.kind {
            Kind::Threads => "threads",
            Kind::Tasks => "tasks",
        };
        let (r999, r99) = (ratio(ci, nexus, peer, &p999), ratio(ci, nexus, peer, &p99));
        let _ = writeln!(
            md,
            "| {kind} | {} | {} | {} | {} vs {} | {} vs {} |",
            c.size,
            c.workers,
            c.hold.name(),
            fmt_ratio(r999),
            c.pools()[peer],
            fmt_ratio(r99),
            c.pools()[peer],
        );
        println!(
            "{kind:<8} {:>4} {:>5} {:<9} p99.9 {:>8} p99 {:>8}   vs {}",
            c.size,
            c.workers,
            c.hold.name(),
            fmt_ratio(r999),
            fmt_ratio(r99),
            c.pools()[peer]
        );
    }

    // ----- targets -----
    let mut tg = Targets::default();
    // The worst cell of `set` by `f`: the lowest value if `lowest`, else the highest.
    let worst = |set: &[usize], f: &dyn Fn(usize) -> f64, lowest: bool| {
        set.iter()
            .map(|&ci| (f(ci), ci))
            .reduce(|a, x| {
                if (lowest && x.0 < a.0) || (!lowest && x.0 > a.0) {
                    x
                } else {
                    a
                }
            })
            .unwrap()
    };
    let at = |ci: usize| configs[ci].label();
    let (r, ci) = worst(&threads, &|ci| ratio(ci, nexus, peer, &thr), true);
    tg.add(
        "oversubscribed threads (issue 13): throughput ≥ r2d2's in every cell",
        format!("worst nexus/r2d2 {} ({})", fmt_ratio(r), at(ci)),
        r >= 1.0,
    );
    let (r, ci) = worst(&threads, &|ci| ratio(ci, nexus, barging, &thr), true);
    tg.add(
        "oversubscribed threads (issue 13): throughput ≥ 0.8x the barging pool's in every cell",
        format!("worst nexus/barging {} ({})", fmt_ratio(r), at(ci)),
        r >= 0.8,
    );
    let (r, ci) = worst(&threads, &|ci| ratio(ci, nexus, peer, &p999), false);
    tg.add(
        "oversubscribed threads (issue 13): p99.9 wait ≤ r2d2's in every cell",
        format!("worst nexus/r2d2 p99.9 {} ({})", fmt_ratio(r), at(ci)),
        r <= 1.0,
    );
    let (r, ci) = worst(&tasks, &|ci| ratio(ci, nexus, peer, &thr), true);
    tg.add(
        "oversubscribed tasks (issue 13): throughput ≥ deadpool's in every cell",
        format!("worst nexus/deadpool {} ({})", fmt_ratio(r), at(ci)),
        r >= 1.0,
    );
    let (r, ci) = worst(&tasks, &|ci| ratio(ci, nexus, peer, &p99), false);
    tg.add(
        "oversubscribed tasks (issue 13): p99 wait ≤ deadpool's in every cell",
        format!("worst nexus/deadpool p99 {} ({})", fmt_ratio(r), at(ci)),
        r <= 1.0,
    );
    let limit = ((FAIRNESS_BOUND_MS + OVERTAKE_SLACK_MS) * 1_000_000) as f64;
    for (facade, set) in [("threads", &threads), ("tasks", &tasks)] {
        let (m, ci) = worst(set, &|ci| med(ci, nexus, &|c| c.overtake_max as f64), false);
        // The single largest overtake of any round, for the record.
        let (single, sci) = worst(
            set,
            &|ci| {
                cells[ci][nexus]
                    .iter()
                    .map(|c| c.overtake_max as f64)
                    .fold(0.0, f64::max)
            },
            false,
        );
        tg.add(
            &format!(
                "oversubscribed {facade} (issue 13): nexus max overtake ≤ the fairness bound \
({FAIRNESS_BOUND_MS} ms) + {OVERTAKE_SLACK_MS} ms slack"
            ),
            format!(
                "worst cell {} (median over rounds; {}); largest of any round {} ({})",
                fmt_ns(m),
                at(ci),
                fmt_ns(single),
                at(sci)
            ),
            m <= limit,
        );
    }
    let yields: Vec<usize> = threads
        .iter()
        .copied()
        .filter(|&ci| configs[ci].hold == Hold::Yield)
        .collect();
    let (m, ci) = worst(
        &yields,
        &|ci| med(ci, nexus, &|c| c.overtake_max as f64),
        false,
    );
    tg.add(
        "oversubscribed threads, hold yield (issue 13; the cells least blurred by preemption, \
reported): nexus max overtake",
        format!("worst cell {} (median over rounds; {})", fmt_ns(m), at(ci)),
        true,
    );
    args.write("oversubscribed", &md, &tg);
}
