//! Background maintenance, health checks and reset: idle connections are checked on schedule
//! and the unhealthy replaced; a returned connection is reset before its next loan, on the
//! acquiring thread or for a waiter it is handed to.
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
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::facade::{FACADES, Facade, acquire_via};
use common::maintenance::*;
use common::wait::wait_until_state;
use common::{Behavior, Op, wait_until};
use futures_lite::future::block_on;
use nexus_pool::{CheckoutValidation, DestroyReason, ManualClock};

// ----- health checks ----------------------------------------------------------------------------

#[test]
fn health_checks_replace_an_unhealthy_connection_and_keep_the_others() {
    let config = health_config(5, 3).build().unwrap();
    let (pool, script, events) = start_with(config, with_health(), |_| {});
    wait_until("3 idle", || idle(&pool) == 3);
    assert_eq!(script.live_ids(), BTreeSet::from([0, 1, 2]));

    script.kill(1);
    wait_until("the dead connection is replaced", || {
        script.live_ids() == BTreeSet::from([0, 2, 3]) && idle(&pool) == 3
    });
    wait_until("the dead one is destroyed as unhealthy", || {
        events.destroyed(DestroyReason::Unhealthy) == 1
    });
    assert!(!events.failed_health_checks().is_empty());

    let checks = script.calls(Op::IsHealthy);
    wait_until("more rounds of checks run", || {
        script.calls(Op::IsHealthy) >= checks + 6
    });
    assert_eq!(
        script.live_ids(),
        BTreeSet::from([0, 2, 3]),
        "healthy ones are kept"
    );
}

#[test]
fn every_idle_connection_dead_at_once_is_replaced() {
    let config = health_config(4, 4)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_health(), |_| {});
    wait_until("4 idle", || idle(&pool) == 4);
    // Use each once, so checkout validation applies to them.
    fill(&pool, 4);

    script.kill_all(); // the database restarted
    for i in 0..8 {
        let conn = acquire_via(&pool, FACADES[i % 2]).unwrap();
        assert!(
            !script.is_dead(conn.id),
            "an acquirer got dead connection {}",
            conn.id
        );
    }
    wait_until("every dead connection is replaced", || {
        let ids = script.live_ids();
        ids.len() == 4 && ids.iter().all(|id| !script.is_dead(*id)) && idle(&pool) == 4
    });
    assert_eq!(
        events.destroyed(DestroyReason::Unhealthy)
            + events.destroyed(DestroyReason::FailedValidation),
        4
    );
    assert!(script.peak() <= 4);
}

/// A connection made ahead of demand and never lent is validated once it has sat idle past the
/// window in which a new connection counts as known good (500 ms), so one whose server side died
/// meanwhile is replaced, not lent dead; inside the window it is lent without a check.
#[test]
fn never_lent_connection_is_validated_after_sitting_idle() {
    let clock = ManualClock::new();
    let config = base(2)
        .min_connections(2)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    wait_until("2 idle", || idle(&pool) == 2);
    let fresh = acquire_via(&pool, FACADES[0]).unwrap();
    assert_eq!(
        script.calls(Op::Validate),
        0,
        "a new connection is lent unchecked"
    );
    drop(fresh);

    script.kill_all(); // the server went away while they sat idle
    clock.advance(Duration::from_millis(600));
    for how in FACADES {
        let conn = acquire_via(&pool, how).unwrap();
        assert!(
            !script.is_dead(conn.id),
            "{how:?}: lent dead connection {}",
            conn.id
        );
        drop(conn);
    }
    // Retired connections are destroyed on the maintenance thread, and only the first had to be
    // gone before a replacement could be made, so the second's destroy may still be running.
    wait_until_state(
        "both dead connections are destroyed as failing validation",
        || events.destroyed(DestroyReason::FailedValidation) == 2,
        || state(&pool, &script),
    );
    assert_eq!(events.destroyed_total(), 2);
}

#[test]
fn hung_health_check_is_bounded_by_check_timeout() {
    let config = health_config(4, 2)
        .check_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_health(), |_| {});
    wait_until("2 idle", || idle(&pool) == 2);

    script.set(Op::IsHealthy, Behavior::Hang);
    wait_until("two hung checks time out and their connections go", || {
        events.failed_health_checks().len() >= 2 && events.destroyed(DestroyReason::Unhealthy) >= 2
    });
    for took in events.failed_health_checks() {
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "a hung check is given up at check_timeout (took {took:?})"
        );
    }
    // Acquirers are served all along.
    for how in FACADES {
        drop(acquire_via(&pool, how).unwrap());
    }

    script.set(Op::IsHealthy, Behavior::Succeed);
    wait_until("checks pass again and min idle is back", || {
        script.running(Op::IsHealthy) == 0 && idle(&pool) >= 2
    });
    assert!(script.peak() <= 4);
    assert!(total(&pool) <= 4);
}

#[test]
fn hung_health_check_does_not_block_acquirers_or_creates() {
    // The check is bounded only after 30 s: everything below happens while it hangs.
    let config = health_config(3, 1)
        .check_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, with_health(), |_| {});
    wait_until("1 idle", || idle(&pool) == 1);

    script.set(Op::IsHealthy, Behavior::Hang);
    wait_until("a health check hangs on connection 0", || {
        script.running(Op::IsHealthy) == 1
    });
    let a = acquire_via(&pool, Facade::Blocking).unwrap();
    let b = acquire_via(&pool, Facade::Async).unwrap();
    assert!(a.id != 0 && b.id != 0, "served by new connections");
    assert_eq!(
        script.running(Op::IsHealthy),
        1,
        "the check still hangs: the acquires did not wait for it"
    );
    assert!(script.live_ids().contains(&0));
    assert!(total(&pool) <= 3);
    assert_eq!(script.peak_running(Op::IsHealthy), 1, "one check at a time");
}

// ----- reset ------------------------------------------------------------------------------------

#[test]
fn reset_runs_before_reuse_on_the_acquiring_thread() {
    let config = base(1).build().unwrap();
    let (pool, script, _) = start_with(config, with_health(), |_| {});

    let dropper = thread::scope(|s| {
        s.spawn(|| {
            let mut conn = pool.acquire_blocking().unwrap();
            conn.dirty = true;
            drop(conn);
            thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert_eq!(script.calls(Op::Reset), 0, "returning runs no callback");
    assert_idle(&pool, 1, "returned");

    let conn = pool.acquire_blocking().unwrap();
    assert_eq!((conn.id, conn.use_count()), (0, 2));
    assert!(!conn.dirty, "reset before it is lent again");
    let resets = script.threads(Op::Reset);
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].0, thread::current().id(), "run by the acquirer");
    assert_ne!(resets[0].0, dropper);
}

#[test]
fn reset_runs_for_a_waiter_handed_a_returned_connection() {
    let config = base(1).build().unwrap();
    let (pool, script, _) = start_with(config, with_health(), |_| {});
    let lent = Barrier::new(2);
    let (conn, dropper) = thread::scope(|s| {
        let holder = s.spawn(|| {
            let mut conn = pool.acquire_blocking().unwrap();
            conn.dirty = true;
            lent.wait();
            wait_until("the async caller waits", || {
                pool.current_metrics().waiting == 1
            });
            drop(conn);
            thread::current().id()
        });
        lent.wait();
        let conn = block_on(pool.acquire()).unwrap();
        (conn, holder.join().unwrap())
    });
    assert!(!conn.dirty, "reset before it is lent again");
    let resets = script.threads(Op::Reset);
    assert_eq!(resets.len(), 1, "the first loan was of a new connection");
    assert_eq!(resets[0].0, thread::current().id());
    assert_ne!(resets[0].0, dropper, "never on the thread that dropped it");
}

#[test]
fn failed_reset_replaces_the_connection() {
    let config = base(1).build().unwrap();
    let (pool, script, events) = start_with(config, with_health(), |_| {});
    for (round, how) in FACADES.into_iter().enumerate() {
        drop(acquire_via(&pool, how).unwrap());
        script.push(Op::Reset, [Behavior::Fail]);
        let conn = acquire_via(&pool, how).unwrap();
        assert_eq!(conn.id, round + 1, "a new connection");
        assert_eq!(conn.use_count(), 1);
    }
    wait_until("both are destroyed", || {
        events.destroyed(DestroyReason::Unhealthy) == 2
    });
}
