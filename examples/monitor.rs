//! Monitor: watch contention appear and fade. A pool of 4 connections serves a load that ramps
//! up from 1 to 16 worker threads and back down, while the main thread prints a live view from
//! `metrics_stream` every 200 ms: connections total/idle/active, callers waiting, and the wait
//! percentiles from `statistics()`.
//!
//! Run it with `cargo run --example monitor`. It ends by itself in about 8 seconds.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, Distribution};

/// A stand-in for a database client: connecting takes 20 ms.
struct SlowToConnect;

impl ConnectionFactory for SlowToConnect {
    type Connection = ();
    type Error = std::io::Error;

    async fn create(&self) -> Result<(), std::io::Error> {
        async_io::Timer::after(Duration::from_millis(20)).await;
        Ok(())
    }
}

const MAX_CONNECTIONS: usize = 4;
const PEAK_WORKERS: usize = 16;
/// Each half of the load profile (up, then down).
const RAMP: Duration = Duration::from_secs(4);
/// How long a worker holds a connection per "query", and rests between queries.
const QUERY: Duration = Duration::from_millis(8);
const REST: Duration = Duration::from_millis(12);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ConnectionPoolConfig::builder()
        .name("monitor")
        .max_connections(MAX_CONNECTIONS)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        // Count the acquires served at once too, so the percentiles cover every acquire.
        .detailed_statistics(true)
        .build()?;
    let pool = ConnectionPool::new(SlowToConnect, config);

    let wanted = Arc::new(AtomicUsize::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..PEAK_WORKERS)
        .map(|id| {
            let (pool, wanted, done) = (pool.clone(), wanted.clone(), done.clone());
            thread::spawn(move || worker(id, &pool, &wanted, &done))
        })
        .collect();

    // The load: ramp up, then down; then close the pool, which ends the stream below.
    let driver = thread::spawn({
        let (pool, wanted, done) = (pool.clone(), wanted.clone(), done.clone());
        move || {
            let step = RAMP / PEAK_WORKERS as u32;
            for n in (1..=PEAK_WORKERS).chain((0..PEAK_WORKERS).rev()) {
                wanted.store(n, Ordering::Relaxed);
                thread::sleep(step);
            }
            done.store(true, Ordering::Relaxed);
            pool.close_now();
        }
    });

    // The view. The stream runs on any executor; here, on this thread with no runtime at all.
    let live = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last = pool.statistics().acquire_wait;
    futures_lite::future::block_on(async {
        let mut snapshots = pool.metrics_stream(Duration::from_millis(200));
        while let Some(m) = snapshots.next().await {
            let stats = pool.statistics();
            let line = format!(
                "{:>5.1}s  workers {:>2}  total {} idle {} active {} waiting {:>2}  \
                 wait p50 {:>9} p99 {:>9}  (last 200 ms: avg {:>9})",
                started.elapsed().as_secs_f64(),
                wanted.load(Ordering::Relaxed),
                m.total,
                m.idle,
                m.active,
                m.waiting,
                show(stats.acquire_wait.p50),
                show(stats.acquire_wait.p99),
                show(window_mean(&last, &stats.acquire_wait)),
            );
            last = stats.acquire_wait;
            if live {
                print!("\r\x1b[2K{line}");
                let _ = std::io::stdout().flush();
            } else {
                println!("{line}");
            }
        }
    });
    if live {
        println!();
    }

    driver.join().expect("the load driver panicked");
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let stats = pool.statistics();
    println!(
        "done: {} acquires, {} timed out, {} connections created; wait p50 {} p90 {} p99 {} max {}",
        stats.acquired,
        stats.timed_out,
        stats.created,
        show(stats.acquire_wait.p50),
        show(stats.acquire_wait.p90),
        show(stats.acquire_wait.p99),
        show(stats.acquire_wait.max),
    );
    Ok(())
}

/// Worker `id` runs queries while the load wants at least `id + 1` workers.
fn worker(
    id: usize,
    pool: &ConnectionPool<SlowToConnect>,
    wanted: &AtomicUsize,
    done: &AtomicBool,
) {
    while !done.load(Ordering::Relaxed) {
        if id >= wanted.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        match pool.acquire_blocking() {
            Ok(conn) => {
                thread::sleep(QUERY);
                drop(conn);
            }
            Err(_) => return, // closed
        }
        thread::sleep(REST);
    }
}

/// The mean wait of the acquires between two readings of the distribution.
fn window_mean(before: &Distribution, now: &Distribution) -> Duration {
    let sum = |d: &Distribution| d.mean.as_nanos() * u128::from(d.count);
    let count = now.count.saturating_sub(before.count);
    if count == 0 {
        return Duration::ZERO;
    }
    let nanos = sum(now).saturating_sub(sum(before)) / u128::from(count);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn show(d: Duration) -> String {
    format!("{d:.1?}")
}
