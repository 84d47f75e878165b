//! The harness of the benches against a real server (`mysql`, `redis`): workers loop acquire,
//! one round trip, release for a fixed time; variants are interleaved round-robin, and a ratio
//! is the median of per-round ratios, all from one run. (`postgres` has the same loop inline.)

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Args, Targets, fmt_ns, fmt_rate, fmt_ratio, median, nanos32, percentiles};

/// An async pool: acquire, one round trip, release.
pub trait AsyncSource: Send + Sync + 'static {
    fn op(&self) -> impl Future<Output = ()> + Send;
}

/// A blocking pool: acquire, one round trip, release.
pub trait SyncSource: Send + Sync + 'static {
    fn op(&self);
}

/// One timed run of one variant.
pub struct Run {
    pub throughput: f64,
    pub p50: u32,
    pub p99: u32,
    pub p999: u32,
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

/// `workers` tokio tasks on `rt`, a 100 ms warm-up and then `dur` measured.
pub fn run_async<S: AsyncSource>(
    rt: &tokio::runtime::Runtime,
    src: &Arc<S>,
    workers: usize,
    dur: Duration,
) -> Run {
    let once = |dur: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
        let (results, elapsed) = rt.block_on(async {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (src, stop, barrier) = (src.clone(), stop.clone(), barrier.clone());
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(1 << 16);
                        barrier.wait().await;
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            src.op().await;
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
    };
    once(Duration::from_millis(100));
    once(dur)
}

/// `workers` OS threads, a 100 ms warm-up and then `dur` measured.
pub fn run_threads<S: SyncSource>(src: &S, workers: usize, dur: Duration) -> Run {
    let once = |dur: Duration| {
        let stop = AtomicBool::new(false);
        let barrier = std::sync::Barrier::new(workers + 1);
        let (results, elapsed) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let (stop, barrier) = (&stop, &barrier);
                    s.spawn(move || {
                        let mut lat = Vec::with_capacity(1 << 16);
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            src.op();
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
    };
    once(Duration::from_millis(100));
    once(dur)
}

/// One row of a comparison: its name (ending in ` xN`), its settings, its worker count, and the
/// name of the peer it is compared with (for the nexus rows).
pub struct Variant {
    pub name: &'static str,
    pub settings: &'static str,
    pub workers: usize,
    pub peer: Option<&'static str>,
}

/// Runs every variant `rounds` times, interleaved, prints each run and writes the report:
/// `intro` (markdown, before the table) and a table with each nexus row's ratio to its peer.
pub fn compare(
    args: &Args,
    bench: &str,
    intro: &str,
    variants: &[Variant],
    rounds: usize,
    dur: Duration,
    mut run: impl FnMut(&Variant, Duration) -> Run,
) {
    let started = Instant::now();
    let mut runs: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for j in 0..variants.len() {
            let vi = (round * 3 + j) % variants.len();
            let v = &variants[vi];
            let r = run(v, dur);
            println!(
                "round {} {:<34} {:>10}  p50 {:>9}  p99 {:>9}  p99.9 {:>9}",
                round + 1,
                v.name,
                fmt_rate(r.throughput),
                fmt_ns(r.p50 as f64),
                fmt_ns(r.p99 as f64),
                fmt_ns(r.p999 as f64)
            );
            runs[vi].push(r);
            // Let closed connections end on the server before the next variant connects.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let took = started.elapsed();
    let idx = |name: &str| variants.iter().position(|v| v.name == name).unwrap();
    let ratio = |a: usize, b: usize| {
        median(
            &runs[a]
                .iter()
                .zip(&runs[b])
                .map(|(x, y)| x.throughput / y.throughput)
                .collect::<Vec<_>>(),
        )
    };
    let m =
        |vi: usize, f: &dyn Fn(&Run) -> f64| median(&runs[vi].iter().map(f).collect::<Vec<_>>());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{intro} Each run lasts {} ({rounds} rounds, variants interleaved; a ratio is the median of \
per-round ratios). Latency is the whole operation (acquire + round trip). Measured for {:.0} s.\n\n\
| variant | settings | workers | throughput | vs peer | p50 | p99 | p99.9 |\n\
|---|---|---:|---:|---:|---:|---:|---:|",
        fmt_ns(dur.as_nanos() as f64),
        took.as_secs_f64()
    );
    let mut tg = Targets::default();
    for (vi, v) in variants.iter().enumerate() {
        let peer = v.peer.map(idx);
        let vs = peer.map_or(String::new(), |p| {
            format!("{} ({})", fmt_ratio(ratio(vi, p)), variants[p].name)
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {vs} | {} | {} | {} |",
            v.name,
            v.settings,
            v.workers,
            fmt_rate(m(vi, &|r| r.throughput)),
            fmt_ns(m(vi, &|r| r.p50 as f64)),
            fmt_ns(m(vi, &|r| r.p99 as f64)),
            fmt_ns(m(vi, &|r| r.p999 as f64)),
        );
        if let Some(p) = peer {
            let r = ratio(vi, p);
            let (mine, theirs) = (m(vi, &|r| r.p999 as f64), m(p, &|r| r.p999 as f64));
            tg.add(
                &format!("{}: ≥ 0.95x {}, p99.9 no worse", v.name, variants[p].name),
                format!(
                    "{}; p99.9 {} vs {}",
                    fmt_ratio(r),
                    fmt_ns(mine),
                    fmt_ns(theirs)
                ),
                r >= 0.95 && mine <= theirs,
            );
        }
    }
    md.push_str(
        "\n*vs peer*: throughput ratio against the peer named in the cell, at the same worker \
count; above 1 is more operations per second. The server runs on the same 2 cores as the \
bench.\n",
    );
    println!("\n{md}");
    args.write(bench, &md, &tg);
}
