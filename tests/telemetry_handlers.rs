//! Event handlers that misbehave: a handler that panics in every method, or calls back into its
//! own pool from every method, harms neither the pool nor the other handlers.

// Most scenarios need both facades; with one feature off, some helpers go unused.
#![cfg_attr(
    not(all(feature = "async", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

mod common;

#[cfg(feature = "blocking")]
use common::telemetry::must_acquire;
use common::telemetry::{Recording, Seen, named_config};
use common::{Behavior, Op, PATIENCE, Script, ScriptedFactory, wait_until};
use nexus_pool::{ConnectionPool, DestroyReason, ManualClock, PoolError, PoolEventHandler};

// ----- handlers that misbehave ----------------------------------------------------------------------

/// The message of every panic the misbehaving handlers raise.
const HANDLER_BUG: &str = "a handler bug (on purpose)";

/// A handler that panics in every method.
struct PanicsEverywhere;

impl PoolEventHandler for PanicsEverywhere {
    fn on_created(&self, _: &str, _: Duration) {
        panic!("{HANDLER_BUG}");
    }
    fn on_create_failed(&self, _: &str, _: &(dyn std::error::Error + 'static)) {
        panic!("{HANDLER_BUG}");
    }
    fn on_destroyed(&self, _: &str, _: DestroyReason) {
        panic!("{HANDLER_BUG}");
    }
    fn on_acquired(&self, _: &str, _: Duration) {
        panic!("{HANDLER_BUG}");
    }
    fn on_released(&self, _: &str, _: Duration) {
        panic!("{HANDLER_BUG}");
    }
    fn on_timed_out(&self, _: &str, _: Duration) {
        panic!("{HANDLER_BUG}");
    }
    fn on_health_check(&self, _: &str, _: bool, _: Duration) {
        panic!("{HANDLER_BUG}");
    }
    fn on_leak_suspected(&self, _: &str, _: Duration, _: &'static Location<'static>) {
        panic!("{HANDLER_BUG}");
    }
}

/// A handler that calls back into its own pool from every method: reads its metrics and
/// statistics, acquires and releases (which, with leak detection on, locks the leak registry)
/// and runs the idle sweep (the registry again, and the idle queue). Called with one of those
/// held, it would deadlock. (One level deep: the calls' own events do not recurse.)
#[derive(Clone, Default)]
struct ReentersThePool {
    pool: Arc<Mutex<Option<ConnectionPool<ScriptedFactory>>>>,
    calls: Arc<AtomicU64>,
}

impl ReentersThePool {
    fn reenter(&self) {
        thread_local! {
            static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if INSIDE.with(|inside| inside.replace(true)) {
            return;
        }
        let pool = self.pool.lock().unwrap().clone();
        if let Some(pool) = pool {
            let _ = pool.current_metrics();
            let _ = pool.statistics();
            drop(pool.try_acquire());
            pool.sweep_idle();
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        INSIDE.with(|inside| inside.set(false));
    }
}

impl PoolEventHandler for ReentersThePool {
    fn on_created(&self, _: &str, _: Duration) {
        self.reenter();
    }
    fn on_create_failed(&self, _: &str, _: &(dyn std::error::Error + 'static)) {
        self.reenter();
    }
    fn on_destroyed(&self, _: &str, _: DestroyReason) {
        self.reenter();
    }
    fn on_acquired(&self, _: &str, _: Duration) {
        self.reenter();
    }
    fn on_released(&self, _: &str, _: Duration) {
        self.reenter();
    }
    fn on_timed_out(&self, _: &str, _: Duration) {
        self.reenter();
    }
    fn on_health_check(&self, _: &str, _: bool, _: Duration) {
        self.reenter();
    }
    fn on_leak_suspected(&self, _: &str, _: Duration, _: &'static Location<'static>) {
        self.reenter();
    }
}

/// Drives one pool through every kind of event: creates (and a failed one), fast and waiting
/// acquires, releases (one while the holder unwinds from a panic), a timeout, destroys, health
/// checks, and a suspected leak on the manual clock.
#[cfg(feature = "blocking")]
fn every_event(pool: &ConnectionPool<ScriptedFactory>, counts: &Script, clock: &ManualClock) {
    // A failed create, while the pool is empty: surfaced in the timeout.
    counts.set(Op::Create, Behavior::Fail);
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    counts.set(Op::Create, Behavior::Succeed);
    for _ in 0..3 {
        drop(must_acquire(pool));
    }
    // Released while the holder unwinds: the handlers run inside the unwinding drop.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _conn = must_acquire(pool);
        panic!("{HANDLER_BUG}");
    }));
    // A broken connection is destroyed.
    must_acquire(pool).mark_broken();
    // A leak: held past the threshold on the pool's clock.
    let leaked = must_acquire(pool);
    clock.advance(Duration::from_secs(2));
    pool.sweep_idle();
    wait_until("the leak report", || pool.statistics().leaks_reported > 0);
    // A timeout, with every connection held.
    let mut held: Vec<_> = std::iter::from_fn(|| pool.try_acquire().ok()).collect();
    while held.len() + 1 < pool.config().max_connections() {
        held.push(must_acquire(pool));
    }
    held.push(leaked);
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    drop(held);
    // Health checks run on idle connections.
    wait_until("a health check", || pool.statistics().health_checks > 0);
}

/// A pool whose handlers misbehave: the first of them panics in every method, the second
/// calls back into the pool. The pool serves on, the handler after them sees every event, and
/// no call deadlocks.
#[cfg(feature = "blocking")]
#[test]
fn handlers_that_panic_or_reenter_break_nothing() {
    common::quiet_panics_starting_with(HANDLER_BUG);
    let clock = ManualClock::new();
    let (factory, counts) = ScriptedFactory::new();
    let seen = Arc::new(Seen::default());
    let reenters = ReentersThePool::default();
    let config = named_config("misbehaving", 2)
        .detailed_statistics(true)
        .acquire_timeout(Duration::from_millis(200))
        .health_check_interval(Duration::from_millis(10))
        .leak_detection_threshold(Duration::from_secs(1))
        .build()
        .unwrap();
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .clock(clock.clone())
        .health_check(counts.health())
        .event_handler(PanicsEverywhere)
        .event_handler(reenters.clone())
        .event_handler(Recording {
            pool: "misbehaving".into(),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    *reenters.pool.lock().unwrap() = Some(pool.clone());

    // On a thread of its own, so that a deadlock fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    let driver = {
        let (pool, counts, clock) = (pool.clone(), counts.clone(), clock.clone());
        thread::spawn(move || {
            every_event(&pool, &counts, &clock);
            drop(must_acquire(&pool));
            pool.close_blocking();
            done.send(()).unwrap();
        })
    };
    match finished.recv_timeout(PATIENCE * 3) {
        Ok(()) => driver.join().unwrap(),
        Err(RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(driver.join().unwrap_err())
        }
        Err(RecvTimeoutError::Timeout) => panic!("a handler that re-enters the pool deadlocked it"),
    }
    // The handler holds a pool: let it go, or the pool would keep itself alive.
    reenters.pool.lock().unwrap().take();

    let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
    for (what, n) in [
        ("created", seen.created.count()),
        ("create failed", get(&seen.create_failed)),
        ("acquired", seen.acquired.count()),
        ("released", seen.released.count()),
        ("timed out", seen.timed_out.count()),
        ("health check", get(&seen.health_checks)),
        ("leak suspected", seen.leaks.count()),
        ("broken", seen.destroyed(DestroyReason::Broken)),
        ("panicked", seen.destroyed(DestroyReason::Panicked)),
        ("closed", seen.destroyed(DestroyReason::Closed)),
    ] {
        assert!(
            n > 0,
            "the handler after the misbehaving ones saw no {what} event"
        );
    }
    assert!(get(&reenters.calls) > 0);
    assert_eq!(
        seen.leaks.all(),
        [Duration::from_secs(2)],
        "the leak was reported once, held for what the manual clock advanced"
    );
    let stats = pool.statistics();
    assert_eq!(stats.acquired, seen.acquired.count());
    assert_eq!(stats.released, Some(seen.released.count()));
    assert_eq!(stats.destroyed.total(), counts.destroyed() as u64);
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.active, m.waiting), (0, 0, 0, 0));
    assert_eq!(counts.live(), 0, "every connection was destroyed");
}
