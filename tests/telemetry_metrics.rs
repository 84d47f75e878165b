//! Telemetry agrees with reality: the metrics snapshot with the factory's own counts (under
//! load, and for waiters), and the statistics with the events a handler received.

// Most scenarios need both facades; with one feature off, some helpers go unused.
#![cfg_attr(
    not(all(feature = "async", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

#[cfg(feature = "blocking")]
use common::telemetry::must_acquire;
use common::telemetry::{Panicking, Recording, Seen, check_snapshot, counting_pool, named_config};
use common::{Behavior, Op, PATIENCE, ScriptedFactory, wait_until};
use nexus_pool::{CheckoutValidation, ConnectionPool, DestroyReason, PoolError};

// ----- metrics agree with reality -----------------------------------------------------------------

/// Threads hammering the pool in the stress scenario, and cycles each.
const THREADS: usize = 8;
const CYCLES: usize = 400;

/// Threads acquire, hold, break, detach and release while a sampler checks every snapshot;
/// afterwards the snapshot equals the factory's own counts.
#[cfg(feature = "blocking")]
#[test]
fn metrics_match_the_factory_under_load() {
    let (pool, counts) = counting_pool("load", 4);
    let detached = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                check_snapshot(&pool.current_metrics(), THREADS);
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = &pool;
                let detached = &detached;
                s.spawn(move || {
                    for i in 0..CYCLES {
                        let mut conn = pool.acquire_blocking().unwrap();
                        match (t + i) % 50 {
                            0 => conn.mark_broken(),
                            1 => {
                                drop(conn.detach());
                                detached.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            2 => thread::sleep(Duration::from_micros(200)),
                            _ => {}
                        }
                        drop(conn);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });

    // Broken connections are destroyed by the maintenance loop (until then they count as
    // active: open, and not idle): wait for it to settle.
    wait_until("the reaper to destroy broken connections", || {
        let m = pool.current_metrics();
        m.active == 0 && m.total == counts.live()
    });
    let m = pool.current_metrics();
    check_snapshot(&m, 0);
    assert_eq!(m.total, counts.live());
    assert_eq!(m.idle, counts.live(), "nothing is lent");
    assert_eq!((m.active, m.waiting), (0, 0));
    assert!(detached.load(Ordering::SeqCst) > 0);

    // And with connections lent: `active` is what the test holds.
    let held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
    let m = pool.current_metrics();
    assert_eq!((m.total, m.active), (counts.live(), 3));
    drop(held);
    pool.close_blocking();
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.active, m.waiting), (0, 0, 0, 0));
    assert_eq!(counts.live(), 0);
}

/// Waiters show in `waiting` and go when served or timed out; it never wraps below zero.
#[cfg(feature = "blocking")]
#[test]
fn waiting_counts_waiters_exactly() {
    let patient = named_config("waiting", 1)
        .acquire_timeout(PATIENCE)
        .build()
        .unwrap();
    let pool = ConnectionPool::new(ScriptedFactory::default(), patient);
    let held = pool.acquire_blocking().unwrap();
    thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| s.spawn(|| pool.acquire_blocking().map(drop)))
            .collect();
        wait_until("three waiters", || pool.current_metrics().waiting == 3);
        check_snapshot(&pool.current_metrics(), 3);
        drop(held);
        let served = waiters
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(Result::is_ok)
            .count();
        assert_eq!(served, 3, "one connection, passed from waiter to waiter");
    });
    assert_eq!(pool.current_metrics().waiting, 0);

    // Timed-out waiters leave no trace either.
    let short = named_config("waiting-timeouts", 1)
        .acquire_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let pool = ConnectionPool::new(ScriptedFactory::default(), short);
    let _held = pool.acquire_blocking().unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                assert!(matches!(
                    pool.acquire_blocking(),
                    Err(PoolError::Timeout(_))
                ))
            });
        }
    });
    let m = pool.current_metrics();
    assert_eq!((m.waiting, m.active), (0, 1));
    assert_eq!(pool.statistics().timed_out, 2);
}

// ----- statistics agree with the events -----------------------------------------------------------

/// Runs every kind of event through one pool, then checks each statistics counter against what
/// a recording handler saw and against the factory.
#[cfg(feature = "blocking")]
#[test]
fn statistics_match_the_events() {
    let (factory, counts) = ScriptedFactory::new();
    let seen = Arc::new(Seen::default());
    let config = named_config("stats", 3)
        .max_connections_ceiling(4)
        .detailed_statistics(true)
        .acquire_timeout(Duration::from_millis(300))
        .checkout_validation(CheckoutValidation::IdleFor(Duration::from_millis(20)))
        .health_check_interval(Duration::from_millis(20))
        .leak_detection_threshold(Duration::from_millis(30))
        .build()
        .unwrap();
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .health_check(counts.health())
        .event_handler(Panicking)
        .event_handler(Recording {
            pool: "stats".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();

    // Creates, slow and fast acquires, releases.
    let three: Vec<_> = (0..3).map(|_| must_acquire(&pool)).collect();
    drop(three);
    for _ in 0..10 {
        drop(must_acquire(&pool));
    }
    // Broken.
    must_acquire(&pool).mark_broken();
    // A timeout, and a leak while the pool is held long enough.
    let all: Vec<_> = (0..3).map(|_| must_acquire(&pool)).collect();
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    pool.sweep_idle();
    // Resized: the surplus is destroyed when it comes back.
    pool.resize(2).unwrap();
    drop(all);
    wait_until("the shrink", || pool.current_metrics().total <= 2);
    pool.resize(3).unwrap();
    // Failed validation: idle past `IdleFor` and refused.
    // (A health check may have the idle connection off the queue at that moment, and the
    // acquire then gets a fresh one, which is not validated: try again.)
    counts.set(Op::Validate, Behavior::Fail);
    wait_until("a failed validation", || {
        thread::sleep(Duration::from_millis(40));
        drop(must_acquire(&pool));
        pool.statistics().destroyed.failed_validation > 0
    });
    counts.set(Op::Validate, Behavior::Succeed);
    // Unhealthy: the periodic check finds it.
    counts.set(Op::IsHealthy, Behavior::Fail);
    wait_until("a failed health check", || {
        pool.statistics().health_check_failures > 0
    });
    counts.set(Op::IsHealthy, Behavior::Succeed);
    // Panicked while held.
    let pool_ref = &pool;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _conn = must_acquire(pool_ref);
        panic!("the holder panics");
    }));
    // Evicted.
    drop(must_acquire(&pool));
    pool.evict_all();
    // Create failures, surfaced in the timeout.
    counts.set(Op::Create, Behavior::Fail);
    let held: Vec<_> = std::iter::from_fn(|| pool.try_acquire().ok()).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match pool.acquire_blocking() {
            Err(PoolError::Timeout(t)) if t.last_create_error.is_some() => break,
            // The creator did not get to run within the timeout (an overloaded machine).
            Err(PoolError::Timeout(t)) => assert!(Instant::now() < deadline, "{t:?}"),
            other => panic!("expected a timeout, got {:?}", other.map(|c| c.id)),
        }
    }
    counts.set(Op::Create, Behavior::Succeed);
    drop(held);
    // Detached: gone from the pool, not destroyed.
    drop(must_acquire(&pool).detach());
    // Closed: the rest.
    drop(must_acquire(&pool));
    pool.close_blocking();

    let stats = pool.statistics();
    let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
    assert_eq!(get(&seen.wrong_name), 0);
    assert_eq!(stats.created, seen.created.count());
    assert_eq!(stats.create_failures, get(&seen.create_failed));
    assert_eq!(stats.acquired, seen.acquired.count());
    assert_eq!(stats.released, Some(seen.released.count()));
    assert_eq!(stats.timed_out, seen.timed_out.count());
    assert_eq!(stats.health_checks, get(&seen.health_checks));
    assert_eq!(stats.health_check_failures, get(&seen.health_failures));
    assert_eq!(stats.leaks_reported, seen.leaks.count());
    let d = stats.destroyed;
    for (reason, counted) in [
        (DestroyReason::Broken, d.broken),
        (DestroyReason::Panicked, d.panicked),
        (DestroyReason::IdleTimeout, d.idle_timeout),
        (DestroyReason::Expired, d.expired),
        (DestroyReason::FailedValidation, d.failed_validation),
        (DestroyReason::Unhealthy, d.unhealthy),
        (DestroyReason::Evicted, d.evicted),
        (DestroyReason::Resized, d.resized),
        (DestroyReason::Closed, d.closed),
    ] {
        assert_eq!(counted, seen.destroyed(reason), "{reason:?}");
    }
    // Distributions count the same samples.
    assert_eq!(stats.acquire_wait.count, stats.acquired);
    assert_eq!(stats.hold_time.map(|h| h.count), stats.released);
    assert_eq!(stats.create_time.count, stats.created);
    // And the factory agrees.
    assert_eq!(stats.created, counts.created() as u64);
    assert_eq!(
        stats.created + stats.create_failures,
        counts.calls(Op::Create) as u64
    );
    assert_eq!(d.total(), counts.destroyed() as u64);
    assert_eq!(
        counts.live(),
        0,
        "everything made was destroyed or detached"
    );
    // The scenario reached every kind it meant to.
    for (what, n) in [
        ("broken", d.broken),
        ("panicked", d.panicked),
        ("failed validation", d.failed_validation),
        ("unhealthy", d.unhealthy),
        ("evicted", d.evicted),
        ("resized", d.resized),
        ("closed", d.closed),
        ("timeouts", stats.timed_out),
        ("create failures", stats.create_failures),
        ("leaks", stats.leaks_reported),
        ("health checks", stats.health_checks),
    ] {
        assert!(n > 0, "the scenario produced no {what}");
    }
    assert_eq!(
        stats.released,
        Some(stats.acquired - 1),
        "every loan came back but the detached one"
    );
}

/// Without detailed statistics, the fast path is not counted, but everything else still
/// matches the events.
#[cfg(feature = "blocking")]
#[test]
fn statistics_without_details_match_the_slow_events() {
    let factory = ScriptedFactory::default();
    let seen = Arc::new(Seen::default());
    let pool = ConnectionPool::builder(factory)
        .config(named_config("lean", 2).build().unwrap())
        .event_handler(Recording {
            pool: "lean".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    for _ in 0..20 {
        drop(pool.acquire_blocking().unwrap());
    }
    pool.close_blocking();
    let stats = pool.statistics();
    assert!(!stats.detailed);
    assert_eq!((stats.released, stats.hold_time), (None, None));
    assert_eq!(
        stats.acquired, 1,
        "only the first acquire had to wait for a create"
    );
    assert_eq!(seen.acquired.count(), 20, "the hook sees every acquire");
    assert_eq!(seen.released.count(), 20);
    assert_eq!(stats.created, seen.created.count());
    assert_eq!(
        stats.destroyed.closed,
        seen.destroyed(DestroyReason::Closed)
    );
}
