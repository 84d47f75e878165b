//! Background maintenance, callbacks that panic or hang: every callback is bounded by its time
//! limit and a panic is caught; the pool keeps its counts and keeps serving.
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
use std::thread;
use std::time::{Duration, Instant};

use common::facade::{FACADES, Facade, acquire_via};
use common::maintenance::*;
use common::{Behavior, Op, Script, wait_until};
use nexus_pool::{CheckoutValidation, CreateError, DestroyReason, PoolError};

// ----- panics and hangs in callbacks ------------------------------------------------------------

#[test]
fn panicking_or_hanging_create_gives_its_place_back() {
    // The four cases run at once: each waits out a 2 s acquire_timeout.
    thread::scope(|s| {
        for behavior in [Behavior::Panic, Behavior::Hang] {
            for how in FACADES {
                s.spawn(move || {
                    let config = base(1)
                        .create_timeout(Duration::from_millis(100))
                        .acquire_timeout(Duration::from_secs(2))
                        .build()
                        .unwrap();
                    let (pool, script, _) =
                        start_with(config, Options::default(), |s| s.set(Op::Create, behavior));
                    let t = expect_timeout(acquire_via(&pool, how));
                    match (behavior, t.last_create_error) {
                        (Behavior::Panic, Some(CreateError::Panicked)) => {}
                        (Behavior::Hang, Some(CreateError::TimedOut(_))) => {}
                        (_, other) => panic!("{behavior:?} {how:?}: got {other:?}"),
                    }
                    wait_until("the place is given back", || {
                        total(&pool) == 0 && script.running(Op::Create) == 0
                    });
                    script.set(Op::Create, Behavior::Succeed);
                    assert_eq!(
                        acquire_via(&pool, how).unwrap().id,
                        0,
                        "{behavior:?} {how:?}"
                    );
                });
            }
        }
    });
}

#[test]
fn panicking_or_hanging_validate_gives_its_place_back() {
    for behavior in [Behavior::Panic, Behavior::Hang] {
        for how in FACADES {
            let config = base(1)
                .checkout_validation(CheckoutValidation::Always)
                .check_timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            let (pool, script, events) = start(config);
            drop(acquire_via(&pool, how).unwrap());
            script.push(Op::Validate, [behavior]);
            let conn = acquire_via(&pool, how).unwrap();
            assert_eq!(
                conn.id, 1,
                "{behavior:?} {how:?}: replaced by a new connection"
            );
            assert_eq!(script.live_ids(), BTreeSet::from([1]));
            assert_eq!(events.destroyed(DestroyReason::FailedValidation), 1);
        }
    }
}

#[test]
fn panicking_or_hanging_is_healthy_gives_its_place_back() {
    for behavior in [Behavior::Panic, Behavior::Hang] {
        let config = health_config(1, 1)
            .check_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let (pool, script, events) = start_with(config, with_health(), |_| {});
        wait_until("1 idle", || idle(&pool) == 1);
        script.push(Op::IsHealthy, [behavior]);
        wait_until("the connection is replaced", || {
            script.live_ids() == BTreeSet::from([1]) && idle(&pool) == 1
        });
        assert_eq!(events.destroyed(DestroyReason::Unhealthy), 1);
        for how in FACADES {
            assert_eq!(
                acquire_via(&pool, how).unwrap().id,
                1,
                "{behavior:?} {how:?}"
            );
        }
    }
}

#[test]
fn panicking_or_hanging_reset_gives_its_place_back() {
    for behavior in [Behavior::Panic, Behavior::Hang] {
        for how in FACADES {
            let config = base(1)
                .check_timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            let (pool, script, events) = start_with(config, with_health(), |_| {});
            drop(acquire_via(&pool, how).unwrap());
            script.push(Op::Reset, [behavior]);
            let conn = acquire_via(&pool, how).unwrap();
            assert_eq!(
                conn.id, 1,
                "{behavior:?} {how:?}: replaced by a new connection"
            );
            assert_eq!(script.live_ids(), BTreeSet::from([1]));
            assert_eq!(events.destroyed(DestroyReason::Unhealthy), 1);
        }
    }
}

#[test]
fn panicking_or_hanging_destroy_gives_its_place_back() {
    for behavior in [Behavior::Panic, Behavior::Hang] {
        for how in FACADES {
            let config = base(1)
                .destroy_timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            let (pool, script, _) = start(config);
            script.push(Op::Destroy, [behavior]);
            let mut conn = acquire_via(&pool, how).unwrap();
            conn.mark_broken();
            drop(conn);
            wait_until("the connection is gone and its place free", || {
                total(&pool) == 0 && script.live() == 0
            });
            assert_eq!(
                acquire_via(&pool, how).unwrap().id,
                1,
                "{behavior:?} {how:?}"
            );
        }
    }
}

/// Retires the one connection of a pool of 1 whose next `destroy` does `behavior`; returns when
/// that destroy has started, with the instant just before the connection was retired.
fn retire_into_destroy(pool: &Pool, script: &Script, behavior: Behavior, how: Facade) -> Instant {
    script.push(Op::Destroy, [behavior]);
    let mut conn = acquire_via(pool, how).unwrap();
    conn.mark_broken();
    let retired_at = Instant::now();
    drop(conn);
    wait_until("the destroy runs", || script.running(Op::Destroy) == 1);
    retired_at
}

#[test]
fn hung_destroy_keeps_its_place_until_destroy_timeout() {
    // The place is kept until `destroy` returns or `destroy_timeout` passes, so the database
    // never holds more than `max_connections` of ours; a pool of 1 has nothing to lend meanwhile.
    // A second, so the checks made while the destroy hangs run well inside it.
    const DESTROY_TIMEOUT: Duration = Duration::from_secs(1);
    thread::scope(|s| {
        for how in FACADES {
            s.spawn(move || {
                let config = base(1).destroy_timeout(DESTROY_TIMEOUT).build().unwrap();
                let (pool, script, events) = start(config);
                let retired_at = retire_into_destroy(&pool, &script, Behavior::Hang, how);

                let total_then = total(&pool);
                let tried = pool.try_acquire().map(|c| c.id);
                // Only if the timeout cannot have passed yet do these describe the hang (a
                // machine stalled for a second would skip them rather than fail).
                if retired_at.elapsed() < DESTROY_TIMEOUT {
                    assert_eq!(total_then, 1, "{how:?}: the hung destroy keeps its place");
                    assert!(
                        matches!(tried, Err(PoolError::Exhausted)),
                        "{how:?}: nothing to lend while the destroy hangs: {tried:?}"
                    );
                }

                let conn = acquire_via(&pool, how).unwrap();
                assert!(
                    retired_at.elapsed() >= DESTROY_TIMEOUT,
                    "{how:?}: the place came back before destroy_timeout"
                );
                assert_eq!(conn.id, 1, "{how:?}: a new connection");
                assert_eq!(script.peak(), 1, "{how:?}: never two at once");
                assert_eq!(
                    script.running(Op::Destroy),
                    0,
                    "{how:?}: the hung destroy was dropped"
                );
                assert_eq!(events.destroyed(DestroyReason::Broken), 1);
            });
        }
    });
}

#[test]
fn blocking_destroy_keeps_its_place_until_it_returns() {
    // A destroy that blocks its thread inside `poll` cannot be cut short: the timeout is looked
    // at only once `poll` returns, and by then the destroy has finished. So the place is kept for
    // as long as it blocks, past `destroy_timeout` (README, "Time bounds"); what still holds is
    // that the database never holds two connections of a pool of 1, and that the pool recovers
    // once the destroy returns.
    const DESTROY_TIMEOUT: Duration = Duration::from_millis(300);
    const BLOCKS_FOR: Duration = Duration::from_secs(1);
    thread::scope(|s| {
        for how in FACADES {
            s.spawn(move || {
                let config = base(1).destroy_timeout(DESTROY_TIMEOUT).build().unwrap();
                let (pool, script, events) = start(config);
                let retired_at =
                    retire_into_destroy(&pool, &script, Behavior::Block(BLOCKS_FOR), how);
                let conn = acquire_via(&pool, how).unwrap();
                let held = retired_at.elapsed();
                assert!(
                    held >= BLOCKS_FOR,
                    "{how:?}: freed after {held:?}, before the blocking destroy returned (if \
                     blocking callbacks can now be cut short, update README's time bounds)"
                );
                assert_eq!(conn.id, 1, "{how:?}: a new connection");
                assert_eq!(script.peak(), 1, "{how:?}: never two at once");
                assert_eq!(events.destroyed(DestroyReason::Broken), 1);
            });
        }
    });
}

#[test]
fn hung_validate_or_reset_never_delays_an_acquire_past_acquire_timeout() {
    let acquire_timeout = Duration::from_millis(300);
    for op in [Op::Validate, Op::Reset] {
        for how in FACADES {
            let config = base(1)
                .min_connections(1)
                .checkout_validation(CheckoutValidation::Always)
                // Only acquire_timeout can end the wait.
                .check_timeout(Duration::from_secs(60))
                .acquire_timeout(acquire_timeout)
                .build()
                .unwrap();
            let (pool, script, events) = start_with(config, with_health(), |_| {});
            // Made in the background, so no acquire below waits for a create.
            wait_until("1 idle", || idle(&pool) == 1);
            drop(acquire_via(&pool, how).unwrap());
            script.push(op, [Behavior::Hang]);
            let started = Instant::now();
            expect_timeout(acquire_via(&pool, how));
            let waited = started.elapsed();
            assert!(
                waited >= acquire_timeout && waited < acquire_timeout + Duration::from_secs(5),
                "{op:?} {how:?}: waited {waited:?}"
            );
            wait_until(
                "the connection left mid-check is destroyed and replaced",
                || {
                    events.destroyed(DestroyReason::Broken) == 1
                        && script.live_ids() == BTreeSet::from([1])
                        && idle(&pool) == 1
                },
            );
            assert_eq!(acquire_via(&pool, how).unwrap().id, 1, "{op:?} {how:?}");
        }
    }
}
