//! Background maintenance, the loop itself: how it runs (thread, spawned future), that the pool
//! dropped while it runs lets go of everything, and the deadline keeper that ends async waits.
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

use std::thread;
use std::time::{Duration, Instant};

use common::facade::{FACADES, acquire_via};
use common::maintenance::*;
use common::{Behavior, Op, quiet_scripted_panics, wait_until};
use futures_lite::future::{self, block_on};
use nexus_pool::{ConnectionPoolConfigBuilder, MaintenanceMode};

// ----- maintenance lifetime ---------------------------------------------------------------------

#[test]
fn dropped_pool_stops_its_busy_maintenance_thread() {
    let config = health_config(6, 3)
        .idle_timeout(Duration::from_millis(100))
        .max_lifetime(Duration::from_millis(400))
        .leak_detection_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, with_health(), |s| {
        s.set(Op::Destroy, Behavior::Slow(Duration::from_millis(20)))
    });
    wait_until("3 idle", || idle(&pool) == 3);
    for how in FACADES {
        let held: Vec<_> = (0..4).map(|_| acquire_via(&pool, how).unwrap()).collect();
        drop(held);
    }
    drop(pool);
    wait_until(
        "every connection is destroyed and the factory dropped",
        || script.live() == 0 && script.factory_dropped(),
    );
    for (_, name) in script.threads(Op::Destroy) {
        assert_eq!(name.as_deref(), Some("maint-worker"));
    }
}

#[test]
fn dropped_pool_stops_its_maintenance_thread_with_callbacks_hanging() {
    quiet_scripted_panics();
    // A create hanging (no bound for an hour), a health check hanging, a destroy hanging.
    let cases: [(Op, ConnectionPoolConfigBuilder); 3] = [
        (
            Op::Create,
            base(4)
                .min_connections(2)
                .create_timeout(Duration::from_secs(3600)),
        ),
        (
            Op::IsHealthy,
            health_config(4, 2).check_timeout(Duration::from_millis(200)),
        ),
        (
            Op::Destroy,
            base(4)
                .min_connections(2)
                .destroy_timeout(Duration::from_millis(200)),
        ),
    ];
    for (op, config) in cases {
        let (pool, script, _) = start_with(config.build().unwrap(), with_health(), |s| {
            if op == Op::Create {
                s.set(op, Behavior::Hang);
            }
        });
        if op != Op::Create {
            wait_until("2 idle", || idle(&pool) == 2);
            script.set(op, Behavior::Hang);
        }
        if op != Op::Destroy {
            wait_until("a callback hangs", || script.running(op) >= 1);
        }
        drop(pool);
        wait_until(
            &format!("the factory is dropped with {op:?} hanging"),
            || script.live() == 0 && script.factory_dropped(),
        );
    }
}

#[test]
fn spawned_maintenance_runs_on_the_callers_executor_and_ends_with_the_pool() {
    let config = base(4)
        .min_connections(2)
        .maintenance(MaintenanceMode::Spawned)
        .build()
        .unwrap();
    let (pool, script, _) = start(config);
    thread::sleep(QUIET);
    assert_eq!(script.live(), 0, "nothing is made before it is spawned");

    let task = pool.maintenance();
    block_on(pool.maintenance()); // a second one ends at once
    let runner = thread::spawn(move || block_on(task));
    wait_until("min idle made by the spawned loop", || idle(&pool) == 2);
    for how in FACADES {
        drop(acquire_via(&pool, how).unwrap());
    }

    drop(pool);
    wait_until("the spawned loop ends", || runner.is_finished());
    runner.join().unwrap();
    assert_eq!(script.live(), 0);
    assert!(script.factory_dropped());
}

// ----- acquire deadlines ------------------------------------------------------------------------

/// The maintenance loop's deadline keeper ends async waits (one timer for all waiters); where no
/// keeper runs, because a spawned maintenance future was never polled, an async acquire arms a
/// timer of its own and still times out.
#[test]
fn async_acquire_times_out_without_a_running_maintenance_loop() {
    let timeout = Duration::from_millis(200);
    let config = base(1)
        .acquire_timeout(timeout)
        .maintenance(MaintenanceMode::Spawned)
        .build()
        .unwrap();
    let (pool, script, _) = start(config);
    let _unpolled = pool.maintenance();
    let started = Instant::now();
    let err = expect_timeout(block_on(pool.acquire()));
    assert!(err.waited >= timeout, "waited {:?}", err.waited);
    assert!(started.elapsed() < timeout + Duration::from_secs(5));
    assert_eq!(script.live(), 0, "nothing was made: no maintenance ran");
    assert_eq!(pool.current_metrics().waiting, 0);
}

/// A spawned maintenance future dropped while async callers wait on its deadline keeper wakes
/// them, and each then times out on a timer of its own instead of waiting for ever.
#[test]
fn async_waiters_time_out_after_the_maintenance_future_is_dropped() {
    let timeout = Duration::from_millis(300);
    let config = base(1)
        .acquire_timeout(timeout)
        .maintenance(MaintenanceMode::Spawned)
        .build()
        .unwrap();
    let (pool, _script, _) = start(config);
    let stop = event_listener::Event::new();
    thread::scope(|s| {
        let stopped = stop.listen();
        let maintenance = pool.maintenance();
        s.spawn(move || block_on(future::or(maintenance, stopped)));
        let held = pool.acquire_blocking().unwrap();
        let waiter = s.spawn(|| {
            let started = Instant::now();
            let result = block_on(pool.acquire());
            (result.map(|c| c.id), started.elapsed())
        });
        wait_until("the async caller waits", || {
            pool.current_metrics().waiting == 1
        });
        stop.notify(usize::MAX); // the maintenance future is dropped
        let (result, waited) = waiter.join().unwrap();
        expect_timeout(result);
        assert!(
            waited >= timeout && waited < timeout + Duration::from_secs(5),
            "waited {waited:?}"
        );
        drop(held);
    });
}
