//! Uncontended acquire + release, one caller, against the peers and the floor (issue 7).
//!
//! Targets, each lending an in-memory `u64` from a pool of 16 (see `common` for how every pool's
//! checks are set to the same, no, work):
//! - `floor`: a bare `crossbeam_queue::ArrayQueue` pop + push, the cost of the idle queue itself;
//! - `nexus blocking`: `acquire_blocking()` + drop, on this thread;
//! - `nexus async`: `acquire().await` + drop on a tokio current-thread runtime;
//! - `nexus try`: `try_acquire()` + drop;
//! - `deadpool`, `bb8`, `mobc`: `get().await` + drop on the same current-thread runtime;
//! - `r2d2`: `get()` + drop, on this thread;
//! - `barging blocking`, `barging async`: the reference of issue 13 (`common::BargingPool`, an
//!   `ArrayQueue` + `event_listener::Event` pool without FIFO or bookkeeping), `acquire_blocking()`
//!   on this thread and `acquire().await` on the current-thread runtime.
//!
//! The async loops run a whole batch inside one `block_on`, so the runtime's entry cost is spread
//! over the batch. The targets are interleaved round-robin (the order rotates every round), one
//! short batch each per round, and every ratio is the median of per-round ratios, so it compares
//! samples taken milliseconds apart: the machines this runs on change speed by several times from
//! minute to minute.
//!
//! `cargo bench --bench peers -- [--quick] [--out DIR]`; `-- --profile "nexus async"` runs one
//! target alone for 10 s (for `perf record -g`).

mod common;

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Args, Targets, fmt_ns, fmt_ratio, median};
use crossbeam_queue::ArrayQueue;

const MAX: usize = 16;

type Batch<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

struct Target<'a> {
    name: &'static str,
    run: Batch<'a>,
    /// Operations per batch, calibrated.
    n: u64,
    /// ns per op, one per round.
    samples: Vec<f64>,
}

fn main() {
    let args = Args::parse();
    let (rounds, batch) = if args.quick {
        (150, Duration::from_millis(2))
    } else {
        (1000, Duration::from_millis(3))
    };
    println!(
        "# uncontended acquire + release ({} mode: {rounds} rounds of {batch:?} batches)",
        args.mode()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _enter = rt.enter();

    let floor = ArrayQueue::new(MAX);
    floor.push(7u64).unwrap();

    let nexus = common::nexus_mem(MAX);
    drop(nexus.acquire_blocking().unwrap());
    let deadpool = common::deadpool_mem(MAX);
    let bb8 = common::bb8_mem(MAX);
    let mobc = common::mobc_mem(MAX);
    rt.block_on(async {
        drop(deadpool.get().await.unwrap());
        drop(bb8.get().await.unwrap());
        drop(mobc.get().await.unwrap());
    });
    let r2d2 = common::r2d2_mem(MAX);
    drop(r2d2.get().unwrap());
    let barging = common::BargingPool::new(MAX);

    let rt = &rt;
    // A target timing one batch of `n` cycles (`$batch`, with `$n` in scope).
    macro_rules! timed {
        ($name:expr, |$n:ident| $batch:expr) => {
            target(
                $name,
                Box::new(|$n| {
                    let t = Instant::now();
                    $batch;
                    t.elapsed()
                }),
            )
        };
    }
    // `n` acquire + release cycles.
    macro_rules! cycles {
        ($n:ident, $acquire:expr) => {
            for _ in 0..$n {
                let c = $acquire;
                black_box(&c);
            }
        };
    }
    // A batch on this thread, or inside one `block_on`.
    macro_rules! threads {
        ($name:expr, $acquire:expr) => {
            timed!($name, |n| cycles!(n, $acquire))
        };
    }
    macro_rules! tasks {
        ($name:expr, $acquire:expr) => {
            timed!($name, |n| rt.block_on(async { cycles!(n, $acquire) }))
        };
    }
    let mut targets: Vec<Target<'_>> = vec![
        timed!("floor (ArrayQueue)", |n| for _ in 0..n {
            let v = floor.pop().unwrap();
            floor.push(black_box(v)).unwrap();
        }),
        threads!("nexus blocking", nexus.acquire_blocking().unwrap()),
        tasks!("nexus async", nexus.acquire().await.unwrap()),
        threads!("nexus try", nexus.try_acquire().unwrap()),
        tasks!("deadpool", deadpool.get().await.unwrap()),
        tasks!("bb8", bb8.get().await.unwrap()),
        tasks!("mobc", mobc.get().await.unwrap()),
        threads!("r2d2", r2d2.get().unwrap()),
        threads!("barging blocking", barging.acquire_blocking()),
        tasks!("barging async", barging.acquire().await),
    ];

    // `--profile NAME`: run only that target, for 10 s, e.g. under `perf record -g`.
    if let Some(name) = profile_target() {
        let t = targets
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target named {name:?}"));
        let until = Instant::now() + Duration::from_secs(10);
        let mut ops = 0u64;
        while Instant::now() < until {
            (t.run)(100_000);
            ops += 100_000;
        }
        println!("profiled {name}: {ops} cycles");
        return;
    }

    // Calibrate: ops per batch so that one batch takes about `batch`.
    for t in &mut targets {
        let mut n = 64u64;
        loop {
            let d = (t.run)(n);
            if d >= batch / 4 || n >= 1 << 26 {
                let per = d.as_secs_f64() / n as f64;
                t.n = ((batch.as_secs_f64() / per) as u64).max(16);
                break;
            }
            n *= 4;
        }
    }
    // Warm every target once more at its batch size, then measure.
    for t in &mut targets {
        (t.run)(t.n);
    }
    let k = targets.len();
    let started = Instant::now();
    for round in 0..rounds {
        for j in 0..k {
            let t = &mut targets[(round + j) % k];
            let d = (t.run)(t.n);
            t.samples.push(d.as_nanos() as f64 / t.n as f64);
        }
    }
    let took = started.elapsed();

    // Per-round ratios against the floor and against each nexus facade.
    let idx = |name: &str| targets.iter().position(|t| t.name == name).unwrap();
    let (fl, nb, na) = (
        idx("floor (ArrayQueue)"),
        idx("nexus blocking"),
        idx("nexus async"),
    );
    let ratio = |a: usize, b: usize| {
        let r: Vec<f64> = (0..rounds)
            .map(|i| targets[a].samples[i] / targets[b].samples[i])
            .collect();
        median(&r)
    };

    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Uncontended acquire + release\n\n\
One caller, a pool of {MAX} in-memory `u64` connections, acquire then release. The async targets \
run on a tokio current-thread runtime, a whole batch per `block_on`. {rounds} rounds, each running \
every target for one batch of about {} (order rotated each round); a ratio is the median of \
the per-round ratios, so it compares samples taken milliseconds apart. The *barging* rows are the \
reference pool of issue 13 (an `ArrayQueue` and an `event_listener::Event`, no FIFO, no \
bookkeeping), through the same facade as the nexus row they are compared with. Measured for \
{:.1} s.\n",
        fmt_ns(batch.as_nanos() as f64),
        took.as_secs_f64()
    );
    md.push_str(&common::mem_config_table_of(
        "16",
        &["nexus-pool", "deadpool", "bb8", "r2d2", "mobc", "barging"],
    ));
    md.push_str(
        "\n| target | median per cycle | best round | vs floor | vs nexus async | vs nexus blocking |\n\
|---|---:|---:|---:|---:|---:|\n",
    );
    println!(
        "{:<22} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "target", "median", "best", "/floor", "/n.async", "/n.block"
    );
    for (i, t) in targets.iter().enumerate() {
        let med = median(&t.samples);
        let best = t.samples.iter().copied().fold(f64::MAX, f64::min);
        let (vf, va, vb) = (ratio(i, fl), ratio(i, na), ratio(i, nb));
        println!(
            "{:<22} {:>12} {:>12} {:>10} {:>10} {:>10}",
            t.name,
            fmt_ns(med),
            fmt_ns(best),
            fmt_ratio(vf),
            fmt_ratio(va),
            fmt_ratio(vb)
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.name,
            fmt_ns(med),
            fmt_ns(best),
            fmt_ratio(vf),
            fmt_ratio(va),
            fmt_ratio(vb)
        );
    }
    md.push_str(
        "\n\"vs X\" is this target's time per cycle divided by X's (median of per-round ratios): \
below 1 is faster than X, above 1 slower.\n",
    );

    let mut tg = Targets::default();
    for (facade, i) in [("async", na), ("blocking", nb)] {
        let r = ratio(i, fl);
        tg.add(
            &format!("uncontended nexus {facade} within 3x the ArrayQueue floor"),
            format!("{} of the floor", fmt_ratio(r)),
            r <= 3.0,
        );
    }
    for (peer, mine, facade) in [
        ("deadpool", na, "async"),
        ("bb8", na, "async"),
        ("r2d2", nb, "blocking"),
    ] {
        let r = ratio(idx(peer), mine);
        tg.add(
            &format!("uncontended nexus {facade} at least 8x faster than {peer}"),
            format!("{peer} takes {} as long", fmt_ratio(r)),
            r >= 8.0,
        );
    }
    md.push('\n');
    for (facade, mine, reference) in [
        ("blocking", nb, idx("barging blocking")),
        ("async", na, idx("barging async")),
    ] {
        let r = ratio(mine, reference);
        let line = format!(
            "nexus {facade} / barging {facade}: {} (median of per-round ratios of time per cycle)",
            fmt_ratio(r)
        );
        println!("{line}");
        let _ = writeln!(md, "- {line}");
        tg.add(
            &format!(
                "uncontended nexus {facade} within 1.3x the barging reference pool ({facade})"
            ),
            format!("{} of the barging pool's time per cycle", fmt_ratio(r)),
            r <= 1.3,
        );
    }
    args.write("peers", &md, &tg);
}

fn profile_target() -> Option<String> {
    let mut it = std::env::args().skip_while(|a| a != "--profile").skip(1);
    it.next()
}

fn target<'a>(name: &'static str, run: Batch<'a>) -> Target<'a> {
    Target {
        name,
        run,
        n: 0,
        samples: Vec::new(),
    }
}
