//! What telemetry costs on the uncontended acquire + release cycle: telemetry off (the default),
//! `detailed_statistics` on, a no-op event handler, the `metrics` exporter (feeding a minimal
//! atomic recorder) and the `tracing` exporter (no subscriber), each measured right after the
//! floor, a bare `crossbeam_queue::ArrayQueue` pop + push.
//!
//! Criterion reports each time; a final pass of interleaved rounds prints each target's ratio to
//! the floor (the median over rounds), which is the figure the core issue bounds (3x for the
//! default configuration). The two passes time the same floor differently: in the final pass the
//! compiler inlines the queue's `pop` and `push` into the timing loop (about 4.5 ns on a 2-core
//! EPYC), in criterion's loop they stay calls (about 7.7 ns), as they do inside the pool. The
//! final pass is the stricter of the two. Run with `cargo bench --bench telemetry
//! --all-features`; with `NEXUS_POOL_BENCH_QUICK=1` only the ratio pass runs. Both end with
//! the cost of one `current_metrics()` call, the snapshot a user may take on every request.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use nexus_pool::{
    ConnectionFactory, ConnectionPool, ConnectionPoolBuilder, ConnectionPoolConfig,
    PoolEventHandler,
};

struct Counter;

impl ConnectionFactory for Counter {
    type Connection = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(7)
    }
}

/// A handler that does nothing: the cost of calling one.
struct Noop;

impl PoolEventHandler for Noop {}

#[cfg(feature = "metrics")]
mod recorder {
    //! A minimal recorder: one atomic per counter and gauge, a count and a sum per histogram.
    //! Real recorders cost at least this much per sample.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    pub struct Atomics;

    #[derive(Default)]
    struct Sum {
        count: AtomicU64,
        nanos: AtomicU64,
    }

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.nanos
                .fetch_add((value * 1e9) as u64, Ordering::Relaxed);
        }
    }

    impl Recorder for Atomics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(AtomicU64::new(0)))
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(AtomicU64::new(0)))
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Sum::default()))
        }
    }
}

fn warm(builder: ConnectionPoolBuilder<Counter>) -> ConnectionPool<Counter> {
    let pool = builder.build().unwrap();
    // One idle connection, so every cycle below is served from the idle queue.
    drop(pool.acquire_blocking().unwrap());
    pool
}

/// The targets, by name: each runs one acquire + release.
fn targets() -> Vec<(&'static str, ConnectionPool<Counter>)> {
    let config = ConnectionPoolConfig::default;
    let mut targets = vec![
        ("telemetry_off", warm(ConnectionPool::builder(Counter))),
        (
            "detailed_statistics",
            warm(
                ConnectionPool::builder(Counter).config(
                    ConnectionPoolConfig::builder()
                        .detailed_statistics(true)
                        .build()
                        .unwrap(),
                ),
            ),
        ),
        (
            "noop_handler",
            warm(
                ConnectionPool::builder(Counter)
                    .config(config())
                    .event_handler(Noop),
            ),
        ),
    ];
    #[cfg(feature = "metrics")]
    {
        // Installed before the pool's first event, as the exporter's docs ask.
        let _ = metrics::set_global_recorder(recorder::Atomics);
        targets.push((
            "metrics_exporter",
            warm(
                ConnectionPool::builder(Counter)
                    .event_handler(nexus_pool::export::metrics_facade::MetricsExporter::new()),
            ),
        ));
    }
    #[cfg(feature = "tracing")]
    targets.push((
        "tracing_exporter",
        warm(
            ConnectionPool::builder(Counter)
                .event_handler(nexus_pool::export::tracing::TracingExporter::new()),
        ),
    ));
    targets
}

#[inline]
fn cycle(pool: &ConnectionPool<Counter>) {
    drop(black_box(pool.acquire_blocking().unwrap()));
}

#[inline]
fn floor_cycle(floor: &ArrayQueue<u64>) {
    let v = floor.pop().unwrap();
    floor.push(black_box(v)).unwrap();
}

fn telemetry(c: &mut Criterion) {
    let floor = ArrayQueue::new(10);
    floor.push(7u64).unwrap();
    let targets = targets();
    let default = &targets[0].1;
    // Quick mode: the final pass alone.
    if std::env::var_os("NEXUS_POOL_BENCH_QUICK").is_none() {
        let mut group = c.benchmark_group("telemetry");
        // Interleaved: each target runs right after the floor, so ratios come from close samples.
        for (name, pool) in &targets {
            group.bench_function(format!("floor_arrayqueue/before_{name}"), |b| {
                b.iter(|| floor_cycle(&floor))
            });
            group.bench_function(*name, |b| b.iter(|| cycle(pool)));
        }
        group.bench_function("current_metrics", |b| {
            b.iter(|| black_box(default.current_metrics()))
        });
        group.finish();
    }
    ratios(&floor, &targets);
    metrics_cost(default);
}

/// Prints what one `current_metrics()` call costs (the median of `ROUNDS` rounds): the
/// snapshot a user may take on every request.
#[inline(never)]
fn metrics_cost(pool: &ConnectionPool<Counter>) {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            per_cycle(|| {
                black_box(pool.current_metrics());
            })
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!(
        "\ncurrent_metrics(): {:.1} ns per call (median of {ROUNDS} rounds of {CYCLES})",
        rounds[ROUNDS / 2]
    );
}

/// Rounds of the final pass, and cycles per round.
const ROUNDS: usize = 21;
const CYCLES: u32 = 200_000;

/// Times `CYCLES` runs of `f`, in nanoseconds per run.
fn per_cycle(mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..CYCLES {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(CYCLES)
}

/// Prints each target's ratio to the floor: per round, the floor runs right before every
/// target. Reported: the median over rounds of the per-round ratio, and the ratio of the fastest
/// rounds (the figure least disturbed by other load on the machine).
fn ratios(floor: &ArrayQueue<u64>, targets: &[(&'static str, ConnectionPool<Counter>)]) {
    let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    for _ in 0..ROUNDS {
        for (i, (_, pool)) in targets.iter().enumerate() {
            let base = per_cycle(|| floor_cycle(floor));
            let target = per_cycle(|| cycle(pool));
            samples[i].push((base, target));
        }
    }
    println!("\nuncontended acquire + release vs a bare ArrayQueue pop + push");
    println!("(median of {ROUNDS} interleaved rounds of {CYCLES} cycles)");
    println!(
        "{:<22} {:>10} {:>10} {:>13} {:>10} {:>8}",
        "target", "ns/cycle", "floor ns", "median ratio", "best/best", "vs off"
    );
    let mut off = None;
    for ((name, _), rounds) in targets.iter().zip(samples) {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ratio = median(rounds.iter().map(|(b, t)| t / b).collect());
        let ns = median(rounds.iter().map(|(_, t)| *t).collect());
        let base = median(rounds.iter().map(|(b, _)| *b).collect());
        let best = |f: fn(&(f64, f64)) -> f64| rounds.iter().map(f).fold(f64::MAX, f64::min);
        let best_ratio = best(|(_, t)| *t) / best(|(b, _)| *b);
        // The first target is telemetry off: the others' cost relative to it.
        let off = *off.get_or_insert(best_ratio);
        let extra = best_ratio / off;
        println!(
            "{name:<22} {ns:>10.1} {base:>10.1} {ratio:>12.2}x {best_ratio:>9.2}x {extra:>7.2}x"
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = telemetry
}
criterion_main!(benches);
