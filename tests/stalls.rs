//! Nothing stalls the pool: callbacks that block their thread, a waker whose drop releases a
//! connection, creates that hang, light traffic after a burst, a long reap on a one-threaded
//! executor, and the snapshot a timeout reports.
//!
//! Each test builds the exact case that once went wrong (DESIGN invariants 7 and 10). Callbacks
//! are the scripted factory's (`tests/common/factory.rs`); `Behavior::Block` blocks the thread
//! as a blocking driver does, `Behavior::Hang` stays pending. Upper bounds on elapsed time are
//! several times what the pool needs and well under what the defect took.

#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::maintenance::{Error, Options, Pool, expect_timeout, start_with};
use common::polled::WakeCounter;
use common::{Behavior, Op, Script, ScriptedFactory, quiet_scripted_panics};
use common::{PATIENCE, wait_until};
use futures_lite::future::{self, block_on};
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, ConnectionPoolConfigBuilder,
    MaintenanceMode, ManualClock, PooledConnection,
};

/// How a test waits for a connection: on the thread, or as a task on one of three executors.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Blocking,
    FuturesLite,
    Tokio,
    Smol,
}

const CALLERS: [Caller; 4] = [
    Caller::Blocking,
    Caller::FuturesLite,
    Caller::Tokio,
    Caller::Smol,
];

/// One acquire as `how` does it; returns its result (connection id) and how long it took.
fn timed_acquire(pool: &Pool, how: Caller) -> (Result<usize, Error>, Duration) {
    let started = Instant::now();
    let result = match how {
        Caller::Blocking => pool.acquire_blocking().map(|c| c.id),
        Caller::FuturesLite => block_on(async { pool.acquire().await.map(|c| c.id) }),
        Caller::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { pool.acquire().await.map(|c| c.id) }),
        Caller::Smol => smol::block_on(async { pool.acquire().await.map(|c| c.id) }),
    };
    (result, started.elapsed())
}

fn base(max: usize) -> ConnectionPoolConfigBuilder {
    common::builder(max)
        .name("stalls")
        .checkout_validation(CheckoutValidation::Never)
        .health_check_interval(None)
}

/// A pool over a fresh scripted factory (with its health check if `health`), scripting the
/// factory before the pool exists.
fn start(
    config: ConnectionPoolConfig,
    health: bool,
    script_first: impl FnOnce(&Script),
) -> (Pool, Arc<Script>) {
    let options = Options {
        health_check: health,
        clock: None,
    };
    let (pool, script, _events) = start_with(config, options, script_first);
    (pool, script)
}

// ----- 1. a callback that blocks its thread delays no deadline --------------------------------

/// A health check blocks its thread for 2 s while every connection is taken: an acquire still
/// times out at its `acquire_timeout` (200 ms), under each facade and executor. (Before: the
/// keeper shared the thread with the check, and the acquire returned after 1.35 s.)
#[test]
fn a_blocking_health_check_delays_no_deadline() {
    let timeout = Duration::from_millis(200);
    for how in CALLERS {
        let config = base(3)
            .min_connections(3)
            .acquire_timeout(timeout)
            .health_check_interval(Some(Duration::from_millis(100)))
            .build()
            .unwrap();
        let (pool, script) = start(config, true, |_| {});
        wait_until("3 idle", || pool.current_metrics().idle == 3);
        let held = pool.acquire_blocking().unwrap();
        script.set(Op::IsHealthy, Behavior::Block(Duration::from_secs(2)));
        wait_until("a health check blocks its thread", || {
            script.running(Op::IsHealthy) == 1
        });
        let mut rest = Vec::new();
        while let Ok(conn) = pool.try_acquire() {
            rest.push(conn);
        }
        assert_eq!(
            pool.current_metrics().idle,
            0,
            "{how:?}: every connection is lent or being checked"
        );
        let (result, took) = timed_acquire(&pool, how);
        let err = expect_timeout(result);
        assert!(err.waited >= timeout, "{how:?}: waited {:?}", err.waited);
        assert!(
            took < Duration::from_secs(1),
            "{how:?}: the acquire took {took:?}, its timeout is {timeout:?}"
        );
        assert_eq!(
            script.running(Op::IsHealthy),
            1,
            "{how:?}: the check still blocks"
        );
        drop((held, rest));
    }
}

/// The coarse clock keeps ticking while a destroy blocks the maintenance side: a loan of 300 ms
/// taken while the destroy blocks is measured as such.
#[test]
fn the_clock_ticks_while_a_destroy_blocks() {
    let config = base(2).build().unwrap();
    let (pool, script) = start(config, false, |s| {
        s.set(Op::Destroy, Behavior::Block(Duration::from_secs(2)))
    });
    let mut broken = pool.acquire_blocking().unwrap();
    broken.mark_broken();
    drop(broken);
    wait_until("the destroy blocks", || script.running(Op::Destroy) == 1);
    let conn = pool.acquire_blocking().unwrap();
    let lent = conn.last_used_at();
    thread::sleep(Duration::from_millis(300));
    drop(conn);
    let conn = pool.acquire_blocking().unwrap();
    let used = conn.last_used_at().duration_since(lent);
    assert!(
        used >= Duration::from_millis(250),
        "the clock moved {used:?} during a 300 ms loan"
    );
    assert_eq!(script.running(Op::Destroy), 1, "the destroy still blocks");
}

// ----- 2. a waker whose drop releases a connection --------------------------------------------

/// A waker that owns a connection: dropping the waker releases it into the pool.
struct HoldsConnection(Mutex<Option<PooledConnection<'static, ScriptedFactory>>>);

impl Wake for HoldsConnection {
    fn wake(self: Arc<Self>) {}
}

impl Drop for HoldsConnection {
    fn drop(&mut self) {
        drop(self.0.lock().unwrap().take());
    }
}

/// The pool holds the last reference to a waker whose drop releases the only connection; the
/// wait is polled again with another waker, so the pool drops the first one. That release must
/// not deadlock on a lock the poll holds (invariant 7), and the connection must reach the wait.
#[test]
fn a_waker_whose_drop_releases_the_connection_deadlocks_nothing() {
    let runs = 50;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = thread::spawn(move || {
        for run in 0..runs {
            let config = base(1).build().unwrap();
            let (pool, _script) = start(config, false, |_| {});
            let pool: &'static Pool = Box::leak(Box::new(pool));
            let held = pool.acquire_blocking().unwrap();
            let mut acquire = Box::pin(pool.acquire());
            let first = Waker::from(Arc::new(HoldsConnection(Mutex::new(Some(held)))));
            let polled = acquire.as_mut().poll(&mut Context::from_waker(&first));
            assert!(
                polled.is_pending(),
                "run {run}: the only connection is held"
            );
            drop(first); // the pool now holds the last reference
            let counter = Arc::new(WakeCounter::default());
            let second = Waker::from(counter.clone());
            let id = match acquire.as_mut().poll(&mut Context::from_waker(&second)) {
                Poll::Ready(conn) => conn.unwrap().id,
                Poll::Pending => {
                    assert!(counter.count() >= 1, "run {run}: the release woke the wait");
                    match acquire.as_mut().poll(&mut Context::from_waker(&second)) {
                        Poll::Ready(conn) => conn.unwrap().id,
                        Poll::Pending => panic!("run {run}: woken but not served"),
                    }
                }
            };
            assert_eq!(id, 0, "run {run}: the released connection is lent again");
            drop(acquire);
            assert_eq!(pool.current_metrics().idle, 1, "run {run}: and comes back");
            done_tx.send(run).unwrap();
        }
    });
    for run in 0..runs {
        match done_rx.recv_timeout(PATIENCE) {
            Ok(done) => assert_eq!(done, run),
            Err(_) => panic!("run {run} deadlocked (or failed: see its panic)"),
        }
    }
    worker.join().unwrap();
}

// ----- 3. hung creates never stand in for a waiter ---------------------------------------------

/// The min-idle refill's two creates never return; a waiter's demand starts a create of its own
/// while there is room, with the default `max_concurrent_creates` (2) and with 3, whether the
/// hung creates stay pending or block their threads.
#[test]
fn hung_refills_do_not_starve_a_waiter() {
    let hangs = [Behavior::Hang, Behavior::Block(Duration::from_secs(3))];
    for hang in hangs {
        for concurrent in [None, Some(3)] {
            for how in [Caller::Blocking, Caller::Tokio, Caller::Smol] {
                let mut config = base(5)
                    .min_connections(2)
                    .acquire_timeout(Duration::from_millis(500));
                if let Some(n) = concurrent {
                    config = config.max_concurrent_creates(n);
                }
                let (pool, script) = start(config.build().unwrap(), false, |s| {
                    s.push(Op::Create, [hang, hang])
                });
                wait_until("the refill's creates hang", || {
                    script.running(Op::Create) == 2
                });
                let (result, _) = timed_acquire(&pool, how);
                let id = result.unwrap_or_else(|e| {
                    panic!("{hang:?}, max_concurrent_creates {concurrent:?}, {how:?}: {e}")
                });
                assert_eq!(id, 0, "the first create that returned");
                assert!(pool.current_metrics().total <= 5);
                drop(pool);
            }
        }
    }
}

// ----- 4. the pool shrinks after a burst ---------------------------------------------------------

/// A burst opens 10 connections; then one acquire and release every 200 ms. Within about
/// `idle_timeout` (1 s) the pool is down to what that traffic needs, and stays there without
/// making new connections. (Before: idle connections rotated first-in first-out, each was used
/// before it aged out, and the pool settled at 4.)
#[test]
fn light_traffic_after_a_burst_shrinks_the_pool() {
    let clock = ManualClock::new();
    let config = base(10)
        .idle_timeout(Some(Duration::from_secs(1)))
        .max_lifetime(None)
        .build()
        .unwrap();
    quiet_scripted_panics();
    let (factory, script) = ScriptedFactory::new();
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let burst: Vec<_> = (0..10).map(|_| pool.acquire_blocking().unwrap()).collect();
    drop(burst);
    assert_eq!(pool.current_metrics().idle, 10);
    let step = Duration::from_millis(200);
    for _ in 0..10 {
        clock.advance(step);
        drop(pool.acquire_blocking().unwrap());
        pool.sweep_idle();
    }
    wait_until("the surplus is destroyed", || script.live() <= 2);
    let m = pool.current_metrics();
    assert!(m.total <= 2, "{m:?}");
    // Steady traffic keeps what it uses.
    for _ in 0..20 {
        clock.advance(step);
        drop(pool.acquire_blocking().unwrap());
        pool.sweep_idle();
    }
    assert!(pool.current_metrics().total >= 1);
    assert_eq!(script.created(), 10, "no connection was made again");
}

// ----- 5. a spawned loop yields ---------------------------------------------------------------

/// 10,000 idle connections pass `idle_timeout` under a spawned loop on a one-threaded tokio
/// runtime with instant destroys: another task on that runtime runs between the destroys,
/// instead of waiting for all 10,000.
#[test]
fn a_spawned_loop_yields_between_destroys() {
    const COUNT: usize = 10_000;
    let clock = ManualClock::new();
    let config = base(COUNT)
        .idle_timeout(Some(Duration::from_secs(1)))
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(60))
        .max_concurrent_creates(16)
        .maintenance(MaintenanceMode::Spawned)
        .build()
        .unwrap();
    let (factory, script) = ScriptedFactory::new();
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(pool.maintenance());
        let mut held = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            held.push(pool.acquire().await.unwrap());
        }
        drop(held);
        assert_eq!(pool.current_metrics().idle, COUNT);
        // Another task on the same thread: it notes how many destroys it saw happen.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let watcher = tokio::spawn({
            let seen = seen.clone();
            let script = script.clone();
            async move {
                loop {
                    let destroyed = script.calls(Op::Destroy);
                    seen.lock().unwrap().push(destroyed);
                    if destroyed >= COUNT {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
        });
        clock.advance(Duration::from_secs(2));
        pool.sweep_idle();
        watcher.await.unwrap();
        let seen = seen.lock().unwrap();
        let between = seen.iter().filter(|&&d| d > 0 && d < COUNT).count();
        assert!(
            between >= 100,
            "the other task ran {between} times during {COUNT} destroys"
        );
    });
}

// ----- 8. the snapshot a timeout reports --------------------------------------------------------

/// The error of an acquire that timed out describes the pool after the caller left the queue:
/// it never counts the caller among the waiters, whichever way the wait ended (the keeper's
/// timer, or the wait's own timer where no keeper runs).
#[test]
fn a_timeout_never_counts_its_own_caller_as_waiting() {
    for mode in [MaintenanceMode::Thread, MaintenanceMode::Spawned] {
        let config = base(1)
            .acquire_timeout(Duration::from_millis(20))
            .maintenance(mode)
            .build()
            .unwrap();
        let (pool, _script) = start(config, false, |_| {});
        // Spawned but never polled: no create runs, so the one connection comes from a poll of
        // the loop here; in thread mode the loop makes it.
        let maintenance = pool.maintenance();
        let held = match mode {
            MaintenanceMode::Spawned => {
                let acquire = pool.acquire();
                block_on(future::or(async { acquire.await.unwrap() }, async {
                    maintenance.await;
                    unreachable!("the loop ends only with the pool")
                }))
            }
            _ => pool.acquire_blocking().unwrap(),
        };
        for round in 0..20 {
            for how in [Caller::Blocking, Caller::FuturesLite, Caller::Smol] {
                let (result, _) = timed_acquire(&pool, how);
                let err = expect_timeout(result);
                assert_eq!(
                    (err.waiting, err.total, err.idle),
                    (0, 1, 0),
                    "{mode:?}, round {round}, {how:?}: {err}"
                );
            }
        }
        drop(held);
    }
}

// ----- 9. try_acquire with a health check -------------------------------------------------------

/// With a health check set, a connection lent and returned must be reset before its next loan,
/// which `try_acquire` cannot wait for. Health passes reset idle connections in the background,
/// so once one has run, `try_acquire` lends a clean connection instead of saying `Exhausted`.
#[test]
fn try_acquire_lends_a_connection_the_health_pass_has_reset() {
    let config = base(2)
        .min_connections(2)
        .health_check_interval(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let (pool, script) = start(config, true, |_| {});
    wait_until("2 idle", || pool.current_metrics().idle == 2);
    for how in [Caller::Blocking, Caller::FuturesLite] {
        {
            let mut a = pool.acquire_blocking().unwrap();
            let mut b = block_on(pool.acquire()).unwrap();
            a.dirty = true; // session state left behind, as a `SET` would
            b.dirty = true;
        }
        // Counted after the checkouts, which may have reset connections themselves.
        let resets = script.calls(Op::Reset);
        wait_until("a health pass resets both", || {
            script.calls(Op::Reset) >= resets + 2
        });
        wait_until("both idle again", || pool.current_metrics().idle == 2);
        let conn = pool
            .try_acquire()
            .unwrap_or_else(|e| panic!("{how:?}: {e}"));
        assert!(!conn.dirty, "{how:?}: lent clean");
        let other = pool.try_acquire().expect("the second is clean too");
        assert!(!other.dirty);
    }
}
