//! Shared by the comparison benches (`peers`, `contended`, `oversubscribed`, `postgres`, `spike`):
//! argument parsing, statistics, the in-memory connection managers of every pool compared, the
//! barging reference pool, and the report files.
//!
//! Each bench binary prints its results and, given `--out DIR`, writes `DIR/<name>.md` (its
//! section of `BENCHMARKS.md`) and `DIR/<name>.targets.md` (its rows of the targets table);
//! `benches/report.sh` stitches them together.
#![allow(dead_code)]

pub mod server;

use std::fmt::Write as _;
use std::hint::black_box;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use event_listener::{Event, Listener};
use nexus_pool::{CheckoutValidation, ConnectionFactory, ConnectionPool, ConnectionPoolConfig};

// ----- arguments -------------------------------------------------------------------------------

/// `--quick`, `--out DIR`; anything else (`--bench` from `cargo bench`, filters) is ignored.
#[derive(Debug, Clone)]
pub struct Args {
    pub quick: bool,
    pub out: Option<PathBuf>,
}

impl Args {
    pub fn parse() -> Args {
        let mut args = Args {
            quick: std::env::var_os("NEXUS_POOL_BENCH_QUICK").is_some(),
            out: std::env::var_os("NEXUS_POOL_BENCH_OUT").map(PathBuf::from),
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => args.quick = true,
                "--out" => args.out = it.next().map(PathBuf::from),
                _ => {}
            }
        }
        args
    }

    pub fn mode(&self) -> &'static str {
        if self.quick { "quick" } else { "full" }
    }

    /// Writes `name.md` and `name.targets.md` into the output directory, if one was given.
    pub fn write(&self, name: &str, section: &str, targets: &Targets) {
        let Some(dir) = &self.out else { return };
        std::fs::create_dir_all(dir).expect("create the output directory");
        std::fs::write(dir.join(format!("{name}.md")), section).expect("write the section");
        std::fs::write(dir.join(format!("{name}.targets.md")), &targets.rows)
            .expect("write the targets");
    }

    pub fn write_file(&self, name: &str, contents: &str) {
        let Some(dir) = &self.out else { return };
        std::fs::create_dir_all(dir).expect("create the output directory");
        std::fs::write(dir.join(name), contents).expect("write the file");
    }
}

/// Rows of the targets table: what issues 7 and 13 ask, what this run measured, met or not.
#[derive(Debug, Default)]
pub struct Targets {
    pub rows: String,
}

impl Targets {
    pub fn add(&mut self, target: &str, measured: String, met: bool) {
        let mark = if met { "met" } else { "**missed**" };
        println!(
            "target: {target}: {measured} -> {}",
            if met { "met" } else { "MISSED" }
        );
        let _ = writeln!(self.rows, "| {target} | {measured} | {mark} |");
    }

    /// A target that could not be measured in this run (for instance no database).
    pub fn skip(&mut self, target: &str, why: &str) {
        let _ = writeln!(self.rows, "| {target} | {why} | not measured |");
    }
}

// ----- statistics ------------------------------------------------------------------------------

/// Median of `xs` (NaN-free), the mean of the middle two for an even count.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Percentiles of nanosecond samples, picked in linear time; reorders `samples`.
pub fn percentiles(samples: &mut [u32], ps: &[f64]) -> Vec<u32> {
    if samples.is_empty() {
        return vec![0; ps.len()];
    }
    let n = samples.len();
    ps.iter()
        .map(|p| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            let i = rank.saturating_sub(1).min(n - 1);
            *samples.select_nth_unstable(i).1
        })
        .collect()
}

/// Spread of work per worker: (min, max, coefficient of variation).
pub fn spread(ops: &[u64]) -> (u64, u64, f64) {
    let min = ops.iter().copied().min().unwrap_or(0);
    let max = ops.iter().copied().max().unwrap_or(0);
    let n = ops.len().max(1) as f64;
    let mean = ops.iter().sum::<u64>() as f64 / n;
    let var = ops.iter().map(|&o| (o as f64 - mean).powi(2)).sum::<f64>() / n;
    let cv = if mean > 0.0 {
        var.sqrt() / mean
    } else {
        f64::NAN
    };
    (min, max, cv)
}

/// A duration in nanoseconds, clamped into a `u32` sample (4.29 s at most).
#[inline]
pub fn nanos32(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Human time from nanoseconds: `85 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "–".to_string()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate in operations per second: `812 k/s`, `3.41 M/s`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.0} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} /s")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".to_string()
    } else if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

// ----- work ------------------------------------------------------------------------------------

/// Busy work standing in for using the connection: about `ns` nanoseconds of arithmetic, no
/// clock read, no memory traffic (calibrated once with [`calibrate_spin`]).
#[inline]
pub fn spin(iters: u64) {
    let mut x = 0u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    black_box(x);
}

/// Iterations of [`spin`] that take about `ns` nanoseconds on this machine.
pub fn calibrate_spin(ns: u64) -> u64 {
    let probe = 1_000_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        spin(probe);
        best = best.min(t.elapsed().as_nanos() as f64 / probe as f64);
    }
    ((ns as f64 / best).round() as u64).max(1)
}

// ----- the in-memory connection, for every pool --------------------------------------------------
//
// Every pool lends a `u64` made at no cost. Checks are configured to the same (no) work:
// - nexus-pool: `CheckoutValidation::Never` (a validate callback would be the default no-op too),
//   no health check; `idle_timeout` / `max_lifetime` left at their defaults (10 min / 30 min),
//   so the expiry check stays on the path, as in the peers that have one.
// - deadpool: `Manager::recycle` returns `Ok(())` (deadpool always calls it; it cannot be off).
// - bb8: `test_on_check_out(false)` (`is_valid` is a no-op anyway); idle_timeout / max_lifetime
//   defaults (10 min / 30 min).
// - r2d2: `test_on_check_out(false)` (`is_valid` is a no-op anyway); defaults otherwise.
// - mobc: `test_on_check_out(false)` (`check` is a no-op anyway), `max_idle = max_open` so no
//   returned connection is closed for lack of idle room (its default max_idle is 2).
// Every pool: the same maximum size, a 30 s acquire timeout.

pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// nexus-pool's factory of in-memory connections.
pub struct MemFactory;

impl ConnectionFactory for MemFactory {
    type Connection = u64;
    type Error = io::Error;

    async fn create(&self) -> Result<u64, io::Error> {
        Ok(7)
    }
}

pub fn nexus_mem(max: usize) -> ConnectionPool<MemFactory> {
    let config = ConnectionPoolConfig::builder()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .checkout_validation(CheckoutValidation::Never)
        .build()
        .expect("valid nexus config");
    ConnectionPool::new(MemFactory, config)
}

/// deadpool's manager of in-memory connections.
pub struct DeadpoolMem;

impl deadpool::managed::Manager for DeadpoolMem {
    type Type = u64;
    type Error = io::Error;

    async fn create(&self) -> Result<u64, io::Error> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _conn: &mut u64,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<io::Error> {
        Ok(())
    }
}

pub type DeadpoolPool = deadpool::managed::Pool<DeadpoolMem>;

pub fn deadpool_mem(max: usize) -> DeadpoolPool {
    deadpool::managed::Pool::builder(DeadpoolMem)
        .max_size(max)
        .wait_timeout(Some(ACQUIRE_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("valid deadpool config")
}

/// bb8's manager of in-memory connections.
pub struct Bb8Mem;

impl bb8::ManageConnection for Bb8Mem {
    type Connection = u64;
    type Error = io::Error;

    async fn connect(&self) -> Result<u64, io::Error> {
        Ok(7)
    }

    async fn is_valid(&self, _conn: &mut u64) -> Result<(), io::Error> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

pub fn bb8_mem(max: usize) -> bb8::Pool<Bb8Mem> {
    bb8::Pool::builder()
        .max_size(max as u32)
        .connection_timeout(ACQUIRE_TIMEOUT)
        .test_on_check_out(false)
        .build_unchecked(Bb8Mem)
}

/// r2d2's manager of in-memory connections.
pub struct R2d2Mem;

impl r2d2::ManageConnection for R2d2Mem {
    type Connection = u64;
    type Error = io::Error;

    fn connect(&self) -> Result<u64, io::Error> {
        Ok(7)
    }

    fn is_valid(&self, _conn: &mut u64) -> Result<(), io::Error> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

pub fn r2d2_mem(max: usize) -> r2d2::Pool<R2d2Mem> {
    r2d2::Pool::builder()
        .max_size(max as u32)
        .connection_timeout(ACQUIRE_TIMEOUT)
        .test_on_check_out(false)
        .build(R2d2Mem)
        .expect("valid r2d2 config")
}

/// mobc's manager of in-memory connections.
pub struct MobcMem;

#[mobc::async_trait]
impl mobc::Manager for MobcMem {
    type Connection = u64;
    type Error = io::Error;

    async fn connect(&self) -> Result<u64, io::Error> {
        Ok(7)
    }

    async fn check(&self, conn: u64) -> Result<u64, io::Error> {
        Ok(conn)
    }
}

pub fn mobc_mem(max: usize) -> mobc::Pool<MobcMem> {
    mobc::Pool::builder()
        .max_open(max as u64)
        .max_idle(max as u64)
        .get_timeout(Some(ACQUIRE_TIMEOUT))
        .test_on_check_out(false)
        .build(MobcMem)
}

// ----- the barging reference pool (issue 13) ---------------------------------------------------

/// The reference of issue 13: "a pool that lets any caller take any idle connection". An
/// `ArrayQueue` of connections and an `event_listener::Event`; acquire pops, or registers a
/// listener, pops again, and waits; release pushes and notifies one listener. No FIFO (a running
/// caller takes an idle connection ahead of any woken one), no accounting, no timeout, no checks:
/// the least a pool can cost, and the throughput a pool gets by letting callers barge.
pub struct BargingPool {
    idle: ArrayQueue<u64>,
    returned: Event,
}

/// A connection of a [`BargingPool`], returned to it on drop.
pub struct BargingGuard<'a> {
    pool: &'a BargingPool,
    conn: u64,
}

impl std::ops::Deref for BargingGuard<'_> {
    type Target = u64;

    fn deref(&self) -> &u64 {
        &self.conn
    }
}

impl Drop for BargingGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.pool.release(self.conn);
    }
}

impl BargingPool {
    /// A pool holding `size` open connections.
    pub fn new(size: usize) -> BargingPool {
        let idle = ArrayQueue::new(size);
        for i in 0..size {
            idle.push(i as u64).expect("room for every connection");
        }
        BargingPool {
            idle,
            returned: Event::new(),
        }
    }

    #[inline]
    fn guard(&self, conn: u64) -> BargingGuard<'_> {
        BargingGuard { pool: self, conn }
    }

    /// An idle connection, if there is one; never waits. (The PostgreSQL bench builds a
    /// yielding wait from it; `acquire_blocking` is left as it was, so the reference's own
    /// cycle does not change.)
    #[inline]
    pub fn try_acquire(&self) -> Option<BargingGuard<'_>> {
        self.idle.pop().map(|c| self.guard(c))
    }

    /// Acquires a connection, parking this thread while none is idle.
    #[inline]
    pub fn acquire_blocking(&self) -> BargingGuard<'_> {
        loop {
            if let Some(c) = self.idle.pop() {
                return self.guard(c);
            }
            let listener = self.returned.listen();
            if let Some(c) = self.idle.pop() {
                return self.guard(c);
            }
            listener.wait();
        }
    }

    /// Acquires a connection, waiting asynchronously while none is idle.
    #[inline]
    pub async fn acquire(&self) -> BargingGuard<'_> {
        loop {
            if let Some(c) = self.idle.pop() {
                return self.guard(c);
            }
            let listener = self.returned.listen();
            if let Some(c) = self.idle.pop() {
                return self.guard(c);
            }
            listener.await;
        }
    }

    #[inline]
    fn release(&self, conn: u64) {
        self.idle
            .push(conn)
            .expect("a connection returns to the pool it came from");
        self.returned.notify(1);
    }
}

/// The configuration table every section repeats, so a reader sees what each pool ran with.
pub fn mem_config_table(max: &str) -> String {
    mem_config_table_of(max, &["nexus-pool", "deadpool", "bb8", "r2d2", "mobc"])
}

/// The configuration table of just the pools named (`nexus-pool`, `deadpool`, `bb8`, `r2d2`,
/// `mobc`, `barging`), in that table's order.
pub fn mem_config_table_of(max: &str, pools: &[&str]) -> String {
    let all = mem_config_rows(max);
    let mut table = String::from("| pool | configuration |\n|---|---|\n");
    for row in all.lines() {
        if pools.iter().any(|p| row.starts_with(&format!("| {p} |"))) {
            table.push_str(row);
            table.push('\n');
        }
    }
    table
}

fn mem_config_rows(max: &str) -> String {
    format!(
        "| nexus-pool | `max_connections({max})`, `acquire_timeout(30 s)`, `checkout_validation(Never)`, no health check, idle_timeout 10 min / max_lifetime 30 min (defaults) |\n\
| deadpool | `max_size({max})`, `wait_timeout(30 s)`, `Runtime::Tokio1`, `recycle` returns `Ok(())` (always called), `QueueMode::Fifo` (default) |\n\
| bb8 | `max_size({max})`, `connection_timeout(30 s)`, `test_on_check_out(false)` (`is_valid` is a no-op anyway), idle_timeout 10 min / max_lifetime 30 min (defaults) |\n\
| r2d2 | `max_size({max})`, `connection_timeout(30 s)`, `test_on_check_out(false)` (`is_valid` is a no-op anyway), min_idle = max (default), idle_timeout 10 min / max_lifetime 30 min (defaults) |\n\
| mobc | `max_open({max})`, `max_idle({max})`, `get_timeout(30 s)`, `test_on_check_out(false)` (`check` is a no-op anyway) |\n\
| barging | the reference of issue 13, in `benches/peers/benches/common`: {max} connections in a `crossbeam_queue::ArrayQueue`, an `event_listener::Event`; acquire = pop, else listen, pop again, wait; release = push, `notify(1)`. No FIFO, no accounting, no timeout, no checks |\n"
    )
}
