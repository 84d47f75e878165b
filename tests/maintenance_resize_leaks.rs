//! Background maintenance, eviction, resizing and leak detection: `evict_all` and
//! `set_max_connections` retire connections as they come back, and a connection held past
//! `leak_detection_threshold` is reported with where it was acquired.
//!
//! Every callback is driven by the scripted factory of `tests/common/factory.rs`; the pool and
//! its event recorder come from `tests/common/maintenance.rs`. Connection ages are driven by a
//! `ManualClock` and `sweep_idle()` where the test is about an age; elsewhere the configured
//! times are short (tens to hundreds of milliseconds) and whatever another thread does is awaited
//! with `wait_until`, a bounded poll that fails naming what it waited for. No test asserts an
//! upper bound on elapsed time tighter than seconds.
//!
//! Behaviour reachable from both facades is exercised through both (`Facade`).

// Both facades are used throughout.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::facade::{FACADES, acquire_via};
use common::maintenance::*;
use common::{Op, wait_until};
use futures_lite::future::block_on;
use nexus_pool::{DestroyReason, ManualClock};

// ----- eviction and resizing --------------------------------------------------------------------

#[test]
fn evict_all_replaces_idle_now_and_lent_on_return() {
    let config = base(4).name("evict").build().unwrap();
    let (pool, script, events) = start(config);
    let mut held: Vec<_> = (0..4).map(|_| pool.acquire_blocking().unwrap()).collect();
    let lent = held.split_off(2);
    let lent_ids: BTreeSet<_> = lent.iter().map(|c| c.id).collect();
    drop(held);
    assert_idle(&pool, 2, "two returned");

    pool.evict_all();
    assert_eq!(idle(&pool), 0, "idle ones are retired at once");
    wait_until("the idle ones are destroyed", || {
        events.destroyed(DestroyReason::Evicted) == 2
    });
    assert_eq!(script.live_ids(), lent_ids, "lent ones are not taken away");

    drop(lent);
    assert_eq!(idle(&pool), 0, "evicted ones are not put back");
    wait_until("the lent ones are destroyed on return", || {
        events.destroyed(DestroyReason::Evicted) == 4
    });
    assert_eq!(script.live(), 0);
    for how in FACADES {
        assert!(acquire_via(&pool, how).unwrap().id >= 4, "new connections");
    }
    let destroys = script.threads(Op::Destroy);
    assert_eq!(destroys.len(), 4);
    for (_, name) in destroys {
        assert_eq!(
            name.as_deref(),
            Some("evict-worker"),
            "destroyed on a worker thread of the pool, off the callers' paths"
        );
    }
}

#[test]
fn resize_down_and_up_under_load() {
    const WORKERS: usize = 8;
    let config = base(8).max_connections_ceiling(16).build().unwrap();
    let (pool, script, _) = start(config);
    let served: [AtomicUsize; WORKERS] = Default::default();
    let errors = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);

    // Waits until every worker has been served `n` more times.
    let everyone_served = |n: usize, what: &str| {
        let before: Vec<_> = served.iter().map(|s| s.load(SeqCst)).collect();
        wait_until(what, || {
            served
                .iter()
                .zip(&before)
                .all(|(s, b)| s.load(SeqCst) >= b + n)
        });
    };
    thread::scope(|s| {
        for (i, count) in served.iter().enumerate() {
            let (pool, errors, stop) = (&pool, &errors, &stop);
            s.spawn(move || {
                while !stop.load(SeqCst) {
                    match acquire_via(pool, FACADES[i % 2]) {
                        Ok(conn) => {
                            thread::sleep(Duration::from_millis(1));
                            drop(conn);
                            count.fetch_add(1, SeqCst);
                        }
                        Err(e) => {
                            eprintln!("worker {i}: {e}");
                            errors.fetch_add(1, SeqCst);
                        }
                    }
                }
            });
        }
        everyone_served(5, "everyone is served at max 8");

        pool.resize(2).unwrap();
        assert_eq!(pool.current_metrics().max, 2);
        wait_until("the pool shrinks to 2 under load", || {
            script.live() <= 2 && total(&pool) <= 2
        });
        let until = Instant::now() + QUIET;
        while Instant::now() < until {
            assert!(script.live() <= 2 && total(&pool) <= 2, "grew past 2");
        }
        everyone_served(5, "everyone is served at max 2");

        pool.resize(16).unwrap();
        everyone_served(5, "everyone is served at max 16");

        pool.resize(3).unwrap();
        wait_until("the pool shrinks to 3 under load", || {
            script.live() <= 3 && total(&pool) <= 3
        });
        everyone_served(5, "everyone is served at max 3");
        stop.store(true, SeqCst);
    });
    assert_eq!(errors.load(SeqCst), 0, "no caller failed");
    assert!(script.peak() <= 16);
    assert!(pool.resize(0).is_err());
    assert!(pool.resize(17).is_err());
}

// ----- leak detection ---------------------------------------------------------------------------

#[test]
fn leak_is_reported_once_with_the_acquire_location_and_not_taken_away() {
    let clock = ManualClock::new();
    let config = base(4)
        .leak_detection_threshold(Duration::from_secs(10))
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    let blocking_line = line!() + 1;
    let blocking = pool.acquire_blocking().unwrap();
    let async_line = line!() + 1;
    let asynced = block_on(pool.acquire()).unwrap();

    clock.advance(Duration::from_millis(9_999));
    pool.sweep_idle();
    assert!(events.leaks().is_empty(), "not held 10 s yet");

    clock.advance(Duration::from_millis(1));
    pool.sweep_idle();
    let leaks = events.leaks();
    assert_eq!(leaks.len(), 2, "{leaks:?}");
    let lines: BTreeSet<_> = leaks.iter().map(|(_, at)| at.line()).collect();
    assert_eq!(lines, BTreeSet::from([blocking_line, async_line]));
    for (held, at) in &leaks {
        assert_eq!(at.file(), file!());
        assert_eq!(*held, Duration::from_secs(10));
    }

    // Reported once, however long it is held.
    let fresh = pool.acquire_blocking().unwrap();
    clock.advance(Duration::from_secs(5));
    pool.sweep_idle();
    clock.advance(Duration::from_secs(4));
    pool.sweep_idle();
    assert_eq!(events.leaks().len(), 2);

    // The holders keep their connections.
    assert_eq!(script.live(), 3);
    assert_eq!(events.destroyed_total(), 0);
    assert!(blocking.id != asynced.id && asynced.id != fresh.id);
    drop((blocking, asynced, fresh));
    assert_idle(&pool, 3, "all returned");
}

#[test]
fn leak_is_reported_by_the_maintenance_thread() {
    let config = base(2)
        .leak_detection_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    let (pool, _, events) = start(config);
    let line = line!() + 1;
    let conn = pool.acquire_blocking().unwrap();
    wait_until("the leak is reported", || events.leaks().len() == 1);
    thread::sleep(Duration::from_millis(300));
    let leaks = events.leaks();
    assert_eq!(leaks.len(), 1, "reported once");
    assert_eq!((leaks[0].1.file(), leaks[0].1.line()), (file!(), line));
    assert!(leaks[0].0 >= Duration::from_millis(100));
    drop(conn);
    assert_idle(&pool, 1, "returned normally");
}
