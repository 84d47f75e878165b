//! Telemetry agrees with reality: the metrics snapshot with the factory's own counts, the
//! statistics with the events a handler received, the metrics stream under every executor (and
//! none), and the `metrics` and `tracing` exporters with the names and labels they promise.
// Most scenarios need both facades; with one feature off, some helpers go unused.
#![cfg_attr(
    not(all(feature = "async", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

mod common;

use common::Behavior;
use common::Op;
use common::PATIENCE;
use common::Script;
use common::ScriptedFactory;
use common::telemetry::Panicking;
use common::telemetry::Recording;
use common::telemetry::Seen;
use common::telemetry::check_snapshot;
use common::telemetry::counting_pool;
#[cfg(feature = "blocking")]
use common::telemetry::must_acquire;
use common::telemetry::named_config;
use common::wait_until;
use nexus_pool::CheckoutValidation;
use nexus_pool::ConnectionPool;
use nexus_pool::DestroyReason;
use nexus_pool::ManualClock;
use nexus_pool::PoolError;
use nexus_pool::PoolEventHandler;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::Duration;
use std::time::Instant;

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

// ----- the metrics stream -------------------------------------------------------------------------

#[cfg(feature = "async")]
mod stream {
    use super::*;
    use futures_lite::StreamExt;
    use nexus_pool::MetricsStream;

    const TICK: Duration = Duration::from_millis(5);
    /// An interval no test waits out: a stream that ends must end on the close signal.
    const FOREVER: Duration = Duration::from_secs(3600);

    fn assert_static_send<T: Send + Sync + Unpin + 'static>(_: &T) {}

    /// Runs `scenario` on a tokio current-thread runtime.
    fn on_tokio(scenario: impl Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(scenario);
    }

    /// Runs `scenario` as a task on smol's executor.
    fn on_smol(scenario: impl Future<Output = ()> + Send + 'static) {
        smol::block_on(smol::spawn(scenario));
    }

    /// Three snapshots that track the pool, then the end once it closes.
    async fn three_then_close(pool: ConnectionPool<ScriptedFactory>) {
        let mut stream = pool.metrics_stream(TICK);
        assert_static_send(&stream);
        let first = stream.next().await.unwrap();
        assert_eq!((first.total, first.max), (0, 2));
        let held = pool.acquire().await.unwrap();
        let second = stream.next().await.unwrap();
        assert_eq!((second.total, second.active), (1, 1));
        drop(held);
        let third = stream.next().await.unwrap();
        assert_eq!((third.total, third.idle), (1, 1));
        pool.close_now();
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.next().await, None, "stays ended");
    }

    #[test]
    fn yields_without_a_runtime() {
        let (pool, _) = counting_pool("stream-none", 2);
        futures_lite::future::block_on(three_then_close(pool));
    }

    #[test]
    fn yields_under_tokio_current_thread() {
        let (pool, _) = counting_pool("stream-tokio-ct", 2);
        on_tokio(three_then_close(pool));
    }

    #[test]
    fn yields_under_tokio_multi_thread() {
        let (pool, _) = counting_pool("stream-tokio-mt", 2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async { tokio::spawn(three_then_close(pool)).await.unwrap() });
    }

    #[test]
    fn yields_under_smol() {
        let (pool, _) = counting_pool("stream-smol", 2);
        on_smol(three_then_close(pool));
    }

    #[test]
    fn yields_at_the_interval() {
        let (pool, _) = counting_pool("stream-interval", 2);
        let interval = Duration::from_millis(30);
        let started = Instant::now();
        let n = futures_lite::future::block_on(pool.metrics_stream(interval).take(4).count());
        assert_eq!(n, 4);
        // The first at once, then three intervals.
        assert!(started.elapsed() >= interval * 3, "{:?}", started.elapsed());
    }

    /// A stream waiting out its interval ends as soon as another thread closes the pool. A
    /// stream the close failed to wake fails after `PATIENCE` instead of hanging for an hour.
    async fn ends_at_close_from_another_thread(pool: ConnectionPool<ScriptedFactory>) {
        let mut stream = pool.metrics_stream(FOREVER);
        assert!(
            stream.next().await.is_some(),
            "the first snapshot comes at once"
        );
        let started = Instant::now();
        let closer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            pool.close_now();
        });
        let next = futures_lite::future::or(async { Some(stream.next().await) }, async {
            async_io::Timer::after(PATIENCE).await;
            None
        });
        assert_eq!(next.await, Some(None), "the close ends the stream");
        assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
        closer.join().unwrap();
    }

    #[test]
    fn ends_at_close_not_at_the_next_tick() {
        let (pool, _) = counting_pool("stream-close", 2);
        futures_lite::future::block_on(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_at_close_under_tokio() {
        let (pool, _) = counting_pool("stream-close-tokio", 2);
        on_tokio(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_at_close_under_smol() {
        let (pool, _) = counting_pool("stream-close-smol", 2);
        on_smol(ends_at_close_from_another_thread(pool));
    }

    #[test]
    fn ends_when_the_last_handle_is_dropped() {
        let (pool, _) = counting_pool("stream-drop", 2);
        let mut stream = pool.metrics_stream(FOREVER);
        assert!(futures_lite::future::block_on(stream.next()).is_some());
        let reader = thread::spawn(move || futures_lite::future::block_on(stream.count()));
        thread::sleep(Duration::from_millis(30));
        assert!(!reader.is_finished(), "waits for the next tick");
        drop(pool); // the stream holds no handle: this closes the pool
        assert_eq!(reader.join().unwrap(), 0);
    }

    #[test]
    fn ends_at_once_on_a_closed_pool() {
        let (pool, _) = counting_pool("stream-closed", 2);
        pool.close_now();
        let stream: MetricsStream = pool.metrics_stream(TICK);
        assert_eq!(futures_lite::future::block_on(stream.count()), 0);
    }

    #[test]
    fn under_load_every_snapshot_is_sane() {
        let (pool, _) = counting_pool("stream-load", 3);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        futures_lite::future::block_on(async {
                            drop(pool.acquire().await.unwrap());
                        });
                    }
                })
            })
            .collect();
        let seen = futures_lite::future::block_on(
            pool.metrics_stream(Duration::from_millis(1))
                .take(50)
                .inspect(|m| check_snapshot(m, 4))
                .count(),
        );
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(seen, 50);
    }

    #[test]
    #[should_panic(expected = "metrics interval must be non-zero")]
    fn a_zero_interval_panics() {
        let (pool, _) = counting_pool("stream-zero", 2);
        let _ = pool.metrics_stream(Duration::ZERO);
    }

    #[test]
    fn debug_names_the_stream() {
        let (pool, _) = counting_pool("stream-debug", 2);
        let text = format!("{:?}", pool.metrics_stream(TICK));
        assert!(text.starts_with("MetricsStream {"), "{text}");
    }
}

#[cfg(feature = "blocking")]
mod iter {
    use super::*;
    use nexus_pool::MetricsIter;

    #[test]
    fn yields_then_ends_on_close() {
        let (pool, _) = counting_pool("iter", 2);
        let mut snapshots: MetricsIter = pool.metrics_iter(Duration::from_millis(5));
        fn assert_static_send<T: Send + Sync + 'static>(_: &T) {}
        assert_static_send(&snapshots);
        assert_eq!(snapshots.next().unwrap().total, 0);
        let held = pool.acquire_blocking().unwrap();
        assert_eq!(snapshots.next().unwrap().active, 1);
        drop(held);
        pool.close_blocking();
        assert_eq!(snapshots.next(), None);
        assert_eq!(snapshots.next(), None, "stays ended");
    }

    #[test]
    fn ends_at_close_not_at_the_next_tick() {
        let (pool, _) = counting_pool("iter-close", 2);
        let mut snapshots = pool.metrics_iter(Duration::from_secs(3600));
        assert!(
            snapshots.next().is_some(),
            "the first snapshot comes at once"
        );
        let reader = thread::spawn(move || snapshots.count());
        thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "waits for the next tick");
        let started = Instant::now();
        drop(pool); // the iterator holds no handle: this closes the pool
        assert_eq!(reader.join().unwrap(), 0);
        assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    }

    #[test]
    #[should_panic(expected = "metrics interval must be non-zero")]
    fn a_zero_interval_panics() {
        let (pool, _) = counting_pool("iter-zero", 2);
        let _ = pool.metrics_iter(Duration::ZERO);
    }
}

// ----- the `metrics` exporter ---------------------------------------------------------------------

#[cfg(all(feature = "metrics", feature = "blocking"))]
mod metrics_export {
    use super::*;
    use std::sync::{OnceLock, PoisonError};

    use metrics::Unit;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use nexus_pool::export::metrics::{
        CONNECTION_COUNT, CONNECTION_MAX, CREATE_TIME, MetricsExporter, PENDING_REQUESTS,
        POOL_NAME, STATE, TIMEOUTS, USE_TIME, WAIT_TIME, record_gauges, record_snapshot,
    };

    /// The names are the OpenTelemetry database client conventions, spelled out here so that a
    /// renamed constant fails (the tests below look series up by the constants).
    #[test]
    fn names_are_the_opentelemetry_ones() {
        let names = [
            (CONNECTION_COUNT, "db.client.connection.count"),
            (CONNECTION_MAX, "db.client.connection.max"),
            (PENDING_REQUESTS, "db.client.connection.pending_requests"),
            (TIMEOUTS, "db.client.connection.timeouts"),
            (WAIT_TIME, "db.client.connection.wait_time"),
            (USE_TIME, "db.client.connection.use_time"),
            (CREATE_TIME, "db.client.connection.create_time"),
            (POOL_NAME, "pool.name"),
            (STATE, "state"),
        ];
        for (constant, spelled) in names {
            assert_eq!(constant, spelled);
        }
    }

    /// The global recorder, and this test's turn at it: a snapshot drains the recorder, so the
    /// tests that read it go one at a time (each names its pool apart, too).
    fn recorder() -> (MutexGuard<'static, ()>, &'static Snapshotter) {
        static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
        static TURN: Mutex<()> = Mutex::new(());
        let snapshotter = SNAPSHOTTER.get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder.install().unwrap();
            snapshotter
        });
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        (turn, snapshotter)
    }

    /// One series as recorded: kind, name, labels other than `pool.name`, unit, value.
    #[derive(Debug)]
    struct Series {
        kind: MetricKind,
        name: String,
        labels: Vec<(String, String)>,
        unit: Option<Unit>,
        value: DebugValue,
    }

    /// The series of the pool named `pool` (draining the recorder).
    fn read(snapshotter: &Snapshotter, pool: &str) -> Vec<Series> {
        of_pool(&mut read_all(snapshotter), pool)
    }

    /// Takes the series of the pool named `pool` out of `all`.
    fn of_pool(all: &mut Vec<(String, Series)>, pool: &str) -> Vec<Series> {
        let (ours, rest): (Vec<_>, Vec<_>) = std::mem::take(all)
            .into_iter()
            .partition(|(p, _)| p == pool);
        *all = rest;
        ours.into_iter().map(|(_, series)| series).collect()
    }

    /// Every series in the recorder, with the pool it is labelled with (draining the recorder).
    fn read_all(snapshotter: &Snapshotter) -> Vec<(String, Series)> {
        let mut all = Vec::new();
        for (key, unit, _help, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let name = key.name().to_owned();
            if !name.starts_with("db.client.connection.") {
                continue;
            }
            let labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let named: Vec<_> = labels.iter().filter(|(k, _)| k == POOL_NAME).collect();
            assert_eq!(
                named.len(),
                1,
                "{name} must carry one pool.name: {labels:?}"
            );
            let pool = named[0].1.clone();
            let labels = labels.into_iter().filter(|(k, _)| k != POOL_NAME).collect();
            let series = Series {
                kind,
                name,
                labels,
                unit,
                value,
            };
            all.push((pool, series));
        }
        all
    }

    fn find<'a>(series: &'a [Series], name: &str, state: Option<&str>) -> &'a Series {
        let labels: Vec<(String, String)> = state
            .map(|s| vec![(STATE.to_owned(), s.to_owned())])
            .unwrap_or_default();
        series
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {series:#?}"))
    }

    fn gauge(series: &[Series], name: &str, state: Option<&str>) -> f64 {
        let s = find(series, name, state);
        assert_eq!(s.kind, MetricKind::Gauge, "{s:?}");
        match &s.value {
            DebugValue::Gauge(v) => {
                assert!(v.0 >= 0.0 && v.0.fract() == 0.0, "{name}: {}", v.0);
                v.0
            }
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn counter(series: &[Series], name: &str) -> u64 {
        match &find(series, name, None).value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn histogram(series: &[Series], name: &str) -> Vec<f64> {
        let s = find(series, name, None);
        assert_eq!(s.unit, Some(Unit::Seconds), "{name} is in seconds");
        match &s.value {
            DebugValue::Histogram(v) => {
                let v: Vec<f64> = v.iter().map(|x| x.0).collect();
                assert!(
                    v.iter().all(|x| *x >= 0.0 && x.is_finite()),
                    "{name}: {v:?}"
                );
                v
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    #[test]
    fn counter_and_histograms_match_the_events() {
        let (_turn, snapshotter) = recorder();
        let factory = ScriptedFactory::default();
        let seen = Arc::new(Seen::default());
        let config = named_config("metrics-events", 1)
            .acquire_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .event_handler(MetricsExporter::new())
            .event_handler(Recording {
                pool: "metrics-events".into(),
                seen: seen.clone(),
            })
            .build()
            .unwrap();
        for _ in 0..5 {
            drop(pool.acquire_blocking().unwrap());
        }
        let held = pool.acquire_blocking().unwrap();
        assert!(matches!(
            pool.acquire_blocking(),
            Err(PoolError::Timeout(_))
        ));
        thread::sleep(Duration::from_millis(5));
        drop(held);
        pool.close_blocking();

        let series = read(snapshotter, "metrics-events");
        let stats = pool.statistics();
        assert_eq!(counter(&series, TIMEOUTS), 1);
        assert_eq!(counter(&series, TIMEOUTS), stats.timed_out);
        let waits = histogram(&series, WAIT_TIME);
        assert_eq!(waits.len() as u64, seen.acquired.count());
        assert_eq!(waits.len(), 6, "every acquire, the fast ones too");
        let uses = histogram(&series, USE_TIME);
        assert_eq!(uses.len() as u64, seen.released.count());
        let creates = histogram(&series, CREATE_TIME);
        assert_eq!(creates.len() as u64, stats.created);
        assert_eq!(stats.create_time.count, stats.created);
        // Each sample is the duration its event carried, in seconds.
        for (name, samples, events) in [
            ("wait_time", waits, &seen.acquired),
            ("use_time", uses, &seen.released),
            ("create_time", creates, &seen.created),
        ] {
            let events: Vec<f64> = events.all().iter().map(Duration::as_secs_f64).collect();
            assert_eq!(samples, events, "{name}");
        }
    }

    /// Forwards the events to an exporter that several pools share.
    struct SharedExporter(Arc<MetricsExporter>);

    impl PoolEventHandler for SharedExporter {
        fn on_created(&self, pool: &str, took: Duration) {
            self.0.on_created(pool, took);
        }
        fn on_acquired(&self, pool: &str, waited: Duration) {
            self.0.on_acquired(pool, waited);
        }
        fn on_released(&self, pool: &str, held: Duration) {
            self.0.on_released(pool, held);
        }
        fn on_timed_out(&self, pool: &str, waited: Duration) {
            self.0.on_timed_out(pool, waited);
        }
    }

    /// Two pools, with an exporter each or one shared: each pool's event series count its own
    /// events only.
    #[test]
    fn event_series_stay_apart_by_name() {
        let (_turn, snapshotter) = recorder();
        two_pools_apart(snapshotter, "metrics-apart", MetricsExporter::new);
        let shared = Arc::new(MetricsExporter::new());
        two_pools_apart(snapshotter, "metrics-shared", || {
            SharedExporter(shared.clone())
        });
    }

    /// A busy pool (three acquires) and a quiet one (one acquire, one timeout), each with a
    /// handler from `exporter`: the series of each show its own events.
    fn two_pools_apart<H: PoolEventHandler>(
        snapshotter: &Snapshotter,
        prefix: &str,
        exporter: impl Fn() -> H,
    ) {
        let (busy, quiet) = (format!("{prefix}-busy"), format!("{prefix}-quiet"));
        let pool = |name: &str| {
            let config = named_config(name, 1)
                .acquire_timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            ConnectionPool::builder(ScriptedFactory::default())
                .config(config)
                .event_handler(exporter())
                .build()
                .unwrap()
        };
        let (busy_pool, quiet_pool) = (pool(&busy), pool(&quiet));
        for _ in 0..3 {
            drop(busy_pool.acquire_blocking().unwrap());
        }
        let held = quiet_pool.acquire_blocking().unwrap();
        assert!(matches!(
            quiet_pool.acquire_blocking(),
            Err(PoolError::Timeout(_))
        ));
        drop(held);
        busy_pool.close_blocking();
        quiet_pool.close_blocking();

        let mut all = read_all(snapshotter);
        let (busy, quiet) = (of_pool(&mut all, &busy), of_pool(&mut all, &quiet));
        assert_eq!(histogram(&busy, WAIT_TIME).len(), 3, "{prefix}");
        assert_eq!(histogram(&busy, USE_TIME).len(), 3, "{prefix}");
        assert_eq!(histogram(&busy, CREATE_TIME).len(), 1, "{prefix}");
        assert_eq!(counter(&busy, TIMEOUTS), 0, "{prefix}");
        assert_eq!(histogram(&quiet, WAIT_TIME).len(), 1, "{prefix}");
        assert_eq!(histogram(&quiet, USE_TIME).len(), 1, "{prefix}");
        assert_eq!(histogram(&quiet, CREATE_TIME).len(), 1, "{prefix}");
        assert_eq!(counter(&quiet, TIMEOUTS), 1, "{prefix}");
    }

    #[test]
    fn gauges_equal_the_pool_and_the_factory() {
        let (_turn, snapshotter) = recorder();
        let (factory, counts) = ScriptedFactory::new();
        let config = named_config("metrics-gauges", 3)
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .event_handler(MetricsExporter::new())
            .build()
            .unwrap();
        let check = |idle: f64, used: f64, pending: f64| {
            record_gauges(&pool);
            let series = read(snapshotter, "metrics-gauges");
            let got = (
                gauge(&series, CONNECTION_COUNT, Some("idle")),
                gauge(&series, CONNECTION_COUNT, Some("used")),
                gauge(&series, PENDING_REQUESTS, None),
                gauge(&series, CONNECTION_MAX, None),
            );
            assert_eq!(got, (idle, used, pending, 3.0));
            assert_eq!((idle + used) as usize, counts.live(), "the factory's count");
        };
        check(0.0, 0.0, 0.0);

        let mut held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
        check(0.0, 3.0, 0.0);
        drop(held.pop());
        check(1.0, 2.0, 0.0);

        // Waiters produce no event while they wait; the gauge still shows them.
        held.push(pool.acquire_blocking().unwrap());
        thread::scope(|s| {
            let waiters: Vec<_> = (0..2)
                .map(|_| s.spawn(|| pool.acquire_blocking().map(drop)))
                .collect();
            wait_until("two waiters", || pool.current_metrics().waiting == 2);
            check(0.0, 3.0, 2.0);
            drop(held.pop());
            for w in waiters {
                w.join().unwrap().unwrap();
            }
        });
        check(1.0, 2.0, 0.0);

        // A detached connection leaves no trace in the gauges (nor in the factory's count).
        drop(held.pop().unwrap().detach());
        check(1.0, 1.0, 0.0);
        drop(held);
        check(2.0, 0.0, 0.0);

        pool.close_blocking();
        check(0.0, 0.0, 0.0);
    }

    #[test]
    fn pools_stay_apart_by_name() {
        let (_turn, snapshotter) = recorder();
        let (small, _) = counting_pool("metrics-small", 1);
        let (large, _) = counting_pool("metrics-large", 5);
        let held = large.acquire_blocking().unwrap();
        record_gauges(&small);
        record_gauges(&large);
        let snapshot = snapshotter.snapshot().into_vec();
        let for_pool = |pool: &str| -> Vec<Series> {
            // Re-read from the one snapshot: a second `read` would find the gauges drained.
            let mut out = Vec::new();
            for (key, unit, _, value) in &snapshot {
                let key = key.key();
                if key
                    .labels()
                    .any(|l| l.key() == POOL_NAME && l.value() == pool)
                {
                    out.push(Series {
                        kind: MetricKind::Gauge,
                        name: key.name().to_owned(),
                        labels: key
                            .labels()
                            .filter(|l| l.key() != POOL_NAME)
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect(),
                        unit: *unit,
                        value: match value {
                            DebugValue::Gauge(v) => DebugValue::Gauge(*v),
                            _ => continue,
                        },
                    });
                }
            }
            out
        };
        let small = for_pool("metrics-small");
        let large_series = for_pool("metrics-large");
        assert_eq!(gauge(&small, CONNECTION_MAX, None), 1.0);
        assert_eq!(gauge(&small, CONNECTION_COUNT, Some("used")), 0.0);
        assert_eq!(gauge(&large_series, CONNECTION_MAX, None), 5.0);
        assert_eq!(gauge(&large_series, CONNECTION_COUNT, Some("used")), 1.0);
        drop(held);
        large.close_blocking();
    }

    #[test]
    fn snapshots_from_the_stream_set_the_gauges() {
        let (_turn, snapshotter) = recorder();
        let (pool, _) = counting_pool("metrics-stream", 2);
        let held = pool.acquire_blocking().unwrap();
        let name = pool.config().name().to_owned();
        let snapshots = pool.metrics_iter(Duration::from_secs(3600));
        let (recorded, first) = std::sync::mpsc::channel();
        let refresher = thread::spawn(move || {
            for m in snapshots {
                record_snapshot(&name, &m);
                let _ = recorded.send(());
            }
        });
        first.recv().unwrap();
        drop(held);
        pool.close_blocking();
        refresher.join().unwrap();
        let series = read(snapshotter, "metrics-stream");
        // The one snapshot taken at once, while the connection was held.
        assert_eq!(gauge(&series, CONNECTION_COUNT, Some("used")), 1.0);
        assert_eq!(gauge(&series, CONNECTION_MAX, None), 2.0);
    }
}

// ----- the `tracing` exporter ---------------------------------------------------------------------

#[cfg(all(feature = "tracing", feature = "blocking"))]
mod tracing_export {
    use super::*;
    use std::fmt;
    use std::sync::OnceLock;

    use nexus_pool::export::tracing::TracingExporter;
    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    #[derive(Debug, Clone)]
    struct Captured {
        level: Level,
        message: String,
        fields: HashMap<String, String>,
    }

    /// Every event any thread emitted (the maintenance thread's too, so the subscriber is global).
    fn captured() -> &'static Mutex<Vec<Captured>> {
        static EVENTS: OnceLock<&'static Mutex<Vec<Captured>>> = OnceLock::new();
        EVENTS.get_or_init(|| {
            let events: &'static Mutex<Vec<Captured>> = Box::leak(Box::default());
            let subscriber = tracing_subscriber::registry().with(Collect(events));
            tracing::subscriber::set_global_default(subscriber).unwrap();
            events
        })
    }

    struct Collect(&'static Mutex<Vec<Captured>>);

    impl<S: Subscriber> Layer<S> for Collect {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push(Captured {
                level: *event.metadata().level(),
                message: fields.message,
                fields: fields.rest,
            });
        }
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        rest: HashMap<String, String>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.rest.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            } else {
                self.rest
                    .insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
    }

    /// The events of the pool named `pool`.
    fn events_of(pool: &str) -> Vec<Captured> {
        captured()
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.fields.get("pool.name").map(String::as_str) == Some(pool))
            .cloned()
            .collect()
    }

    fn count(pool: &str, message: &str) -> usize {
        events_of(pool)
            .iter()
            .filter(|e| e.message == message)
            .count()
    }

    #[track_caller]
    fn expect(pool: &str, message: &str, level: Level, field: &str) {
        let events = events_of(pool);
        let found = events
            .iter()
            .find(|e| e.message == message)
            .unwrap_or_else(|| panic!("no {message:?} in {events:#?}"));
        assert_eq!(found.level, level, "{found:?}");
        assert!(found.fields.contains_key(field), "{found:?} lacks {field}");
    }

    #[test]
    fn acquires_served_at_once_log_nothing() {
        const POOL: &str = "tracing-quiet";
        captured();
        let config = named_config(POOL, 1)
            .checkout_validation(CheckoutValidation::Never)
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(ScriptedFactory::default())
            .config(config)
            .event_handler(TracingExporter::new())
            .build()
            .unwrap();
        drop(pool.acquire_blocking().unwrap()); // a create, which may log a wait
        let before = events_of(POOL).len();
        for _ in 0..10 {
            drop(pool.acquire_blocking().unwrap());
        }
        assert_eq!(events_of(POOL).len(), before, "nothing for ten loans");
        pool.close_blocking();
        let messages: Vec<_> = events_of(POOL).into_iter().map(|e| e.message).collect();
        assert_eq!(messages.last().unwrap(), "connection destroyed");
        assert_eq!(count(POOL, "connection created"), 1);
    }

    #[test]
    fn events_name_the_pool_at_their_level() {
        const POOL: &str = "tracing-events";
        captured();
        let (factory, counts) = ScriptedFactory::new();
        let config = named_config(POOL, 1)
            .acquire_timeout(Duration::from_secs(1))
            .health_check_interval(Duration::from_millis(20))
            .leak_detection_threshold(Duration::from_millis(30))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .health_check(counts.health())
            .event_handler(TracingExporter::new())
            .build()
            .unwrap();

        drop(pool.acquire_blocking().unwrap());
        expect(POOL, "connection created", Level::DEBUG, "took");

        // A wait, and a leak while the waiter holds on.
        let held = pool.acquire_blocking().unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| {
                let conn = pool.acquire_blocking().unwrap();
                thread::sleep(Duration::from_millis(50));
                pool.sweep_idle();
                drop(conn);
            });
            wait_until("the waiter", || pool.current_metrics().waiting == 1);
            thread::sleep(Duration::from_millis(20));
            drop(held);
            waiter.join().unwrap();
        });
        expect(
            POOL,
            "acquired a connection after waiting",
            Level::DEBUG,
            "waited",
        );
        expect(
            POOL,
            "connection held past the leak detection threshold",
            Level::WARN,
            "acquired_at",
        );

        // A timeout.
        let held = pool.acquire_blocking().unwrap();
        assert!(pool.acquire_blocking().is_err());
        drop(held);
        expect(POOL, "acquire timed out", Level::WARN, "waited");

        // Passed health checks, at the finest level.
        wait_until("a passed health check", || {
            count(POOL, "health check passed") > 0
        });
        expect(POOL, "health check passed", Level::TRACE, "took");

        // A failed health check, and the destroy it causes.
        counts.set(Op::IsHealthy, Behavior::Fail);
        wait_until("a failed health check", || {
            count(POOL, "health check failed") > 0
        });
        counts.set(Op::IsHealthy, Behavior::Succeed);
        expect(POOL, "health check failed", Level::WARN, "took");
        wait_until("the unhealthy connection's destroy", || {
            events_of(POOL).iter().any(|e| {
                e.message == "connection destroyed"
                    && e.fields.get("reason").map(String::as_str) == Some("Unhealthy")
            })
        });
        expect(POOL, "connection destroyed", Level::DEBUG, "reason");

        // A failed create.
        counts.set(Op::Create, Behavior::Fail);
        assert!(pool.acquire_blocking().is_err());
        counts.set(Op::Create, Behavior::Succeed);
        expect(POOL, "connection create failed", Level::WARN, "error");

        pool.close_blocking();
        // Every event of this pool carried its name (the filter above relies on it), and none
        // came from another pool's name.
        assert!(!events_of(POOL).is_empty());
        assert_eq!(events_of("no such pool").len(), 0);
    }
}
