//! Telemetry of durations: the wait, create and use time distributions and the ages the
//! statistics report show what happened, within one histogram bucket.

// Most scenarios need both facades; with one feature off, some helpers go unused.
#![cfg_attr(
    not(all(feature = "async", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

use std::sync::Arc;
use std::thread;
use std::time::Duration;

mod common;

#[cfg(feature = "blocking")]
use common::telemetry::must_acquire;
use common::telemetry::{Recording, Seen, named_config};
use common::{Behavior, Op, PATIENCE, ScriptedFactory, wait_until};
use nexus_pool::{CheckoutValidation, ConnectionPool, DestroyReason, ManualClock, PoolError};

// ----- distributions, durations and ages ----------------------------------------------------------

/// A reported percentile is never below the true one (the nearest-rank sample), and at most
/// one bucket, 12.5%, above it, or the maximum.
#[track_caller]
fn assert_percentile(reported: Duration, truth: Duration, max: Duration) {
    let ceiling = (truth + truth / 8).min(max);
    assert!(
        truth <= reported && reported <= ceiling,
        "reported {reported:?} for a true {truth:?} (ceiling {ceiling:?})"
    );
}

/// Hold times of 1 to 100 ms on the pool's clock: the distribution reports their percentiles,
/// exact maximum and mean, and the hook saw each hold as it was.
#[cfg(feature = "blocking")]
#[test]
fn hold_times_of_known_length_give_their_percentiles() {
    let clock = ManualClock::new();
    let seen = Arc::new(Seen::default());
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .config(
            named_config("holds", 1)
                .detailed_statistics(true)
                .build()
                .unwrap(),
        )
        .clock(clock.clone())
        .event_handler(Recording {
            pool: "holds".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    for ms in 1..=100 {
        let conn = pool.acquire_blocking().unwrap();
        clock.advance(Duration::from_millis(ms));
        drop(conn);
    }
    let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(seen.released.all(), samples);
    let hold = pool
        .statistics()
        .hold_time
        .expect("detailed statistics keep hold times");
    assert_eq!(hold.count, 100);
    assert_eq!(hold.max, Duration::from_millis(100));
    assert_eq!(hold.mean, Duration::from_micros(50_500));
    assert_percentile(hold.p50, Duration::from_millis(50), hold.max);
    assert_percentile(hold.p90, Duration::from_millis(90), hold.max);
    assert_percentile(hold.p99, Duration::from_millis(99), hold.max);
}

/// Waits and creates in real time: a create that takes at least `CREATE`, fast acquires that
/// wait nothing, one waiter held off for at least `WAIT`, one acquire that times out. The
/// distributions, `acquire_time` and the durations the hook received all show it.
#[cfg(feature = "blocking")]
#[test]
fn wait_and_create_times_show_what_happened() {
    const CREATE: Duration = Duration::from_millis(20);
    const WAIT: Duration = Duration::from_millis(50);
    const FAST: usize = 19;
    let seen = Arc::new(Seen::default());
    let patient = named_config("waits", 1)
        .detailed_statistics(true)
        // However long this machine stalls between two cycles, a fast acquire stays fast.
        .checkout_validation(CheckoutValidation::Never)
        .acquire_timeout(PATIENCE)
        .build()
        .unwrap();
    let (slow, script) = ScriptedFactory::new();
    script.set(Op::Create, Behavior::Slow(CREATE));
    let pool = ConnectionPool::builder(slow)
        .config(patient)
        .event_handler(Recording {
            pool: "waits".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();

    drop(pool.acquire_blocking().unwrap()); // waits for the create
    for _ in 0..FAST - 1 {
        drop(pool.acquire_blocking().unwrap()); // served from the idle queue at once
    }
    let held = pool.acquire_blocking().unwrap(); // the last fast one
    thread::scope(|s| {
        let waiter = s.spawn(|| pool.acquire_blocking().map(drop));
        wait_until("the waiter to queue", || {
            pool.current_metrics().waiting == 1
        });
        // The waiter is queued before this sleep starts, so it waits at least `WAIT`.
        thread::sleep(WAIT);
        drop(held);
        waiter.join().unwrap().unwrap();
    });

    let stats = pool.statistics();
    let acquired = seen.acquired.all();
    assert_eq!(stats.acquired, FAST as u64 + 2);
    assert_eq!(acquired.len(), FAST + 2);
    let mut sorted = acquired.clone();
    sorted.sort();
    assert!(
        sorted[..FAST].iter().all(|w| w.is_zero()),
        "a fast acquire waits nothing: {sorted:?}"
    );
    assert!(sorted[FAST] >= CREATE, "the first waited for the create");
    assert!(sorted[FAST + 1] >= WAIT, "the waiter waited for the holder");
    let wait = stats.acquire_wait;
    assert_eq!(wait.count, stats.acquired);
    assert_eq!(wait.max, sorted[FAST + 1]);
    let sum: Duration = acquired.iter().sum();
    assert_eq!(wait.mean, sum / (FAST as u32 + 2));
    assert_eq!((wait.p50, wait.p90), (Duration::ZERO, Duration::ZERO));
    assert_percentile(wait.p99, sorted[FAST + 1], wait.max);
    // `acquire_time` averages the two that could not be served at once.
    assert_eq!(
        pool.current_metrics().acquire_time,
        (sorted[FAST] + sorted[FAST + 1]) / 2
    );
    // One create, as long as the hook was told.
    let created = seen.created.all();
    assert_eq!(created.len(), 1);
    assert!(created[0] >= CREATE, "{created:?}");
    assert_eq!(stats.create_time.count, 1);
    assert_eq!(stats.create_time.max, created[0]);
    assert_eq!(stats.create_time.mean, created[0]);

    // A timeout is reported with the wait it ended, at least `acquire_timeout`.
    let timeout = Duration::from_millis(100);
    let seen = Arc::new(Seen::default());
    let short = named_config("waits-timeout", 1)
        .acquire_timeout(timeout)
        .build()
        .unwrap();
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .config(short)
        .event_handler(Recording {
            pool: "waits-timeout".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    let _held = pool.acquire_blocking().unwrap();
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    let timed_out = seen.timed_out.all();
    assert_eq!(timed_out.len(), 1);
    assert!(timed_out[0] >= timeout, "{timed_out:?}");
    assert_eq!(pool.statistics().timed_out, 1);
}

/// Connections closed for their age are counted by reason in the statistics, as the hook saw
/// them: idle past `idle_timeout`, and past `max_lifetime` when they come back.
#[cfg(feature = "blocking")]
#[test]
fn age_destroys_are_counted_by_reason() {
    let clock = ManualClock::new();
    let (factory, counts) = ScriptedFactory::new();
    let seen = Arc::new(Seen::default());
    let ages = named_config("ages", 3)
        .idle_timeout(Duration::from_secs(10))
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let pool = ConnectionPool::builder(factory)
        .config(ages)
        .clock(clock.clone())
        .event_handler(Recording {
            pool: "ages".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();

    drop((0..2).map(|_| must_acquire(&pool)).collect::<Vec<_>>());
    clock.advance(Duration::from_secs(11));
    pool.sweep_idle();
    wait_until("two idle timeouts", || {
        pool.statistics().destroyed.idle_timeout == 2
    });

    let old = must_acquire(&pool);
    clock.advance(Duration::from_secs(61));
    drop(old);
    wait_until("one expiry", || pool.statistics().destroyed.expired == 1);

    pool.close_blocking();
    let d = pool.statistics().destroyed;
    assert_eq!(d.idle_timeout, seen.destroyed(DestroyReason::IdleTimeout));
    assert_eq!(d.expired, seen.destroyed(DestroyReason::Expired));
    assert_eq!((d.idle_timeout, d.expired), (2, 1));
    assert_eq!(d.total(), counts.destroyed() as u64);
    assert_eq!(counts.live(), 0);
}
