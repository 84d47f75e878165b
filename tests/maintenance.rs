//! Issue 3 through the public API: background maintenance (idle timeout, lifetime with jitter,
//! refill, health checks), reset before reuse, start-up, failure handling (time bounds, hangs,
//! panics, backoff, recovery), bursts, eviction, resizing, leak detection, and the pool dropped
//! while its maintenance runs.
//!
//! Every callback is driven by the scripted factory of `tests/common/factory.rs`. Connection ages
//! are driven by a `ManualClock` and `sweep_idle()` where the test is about an age; elsewhere the
//! configured times are short (tens to hundreds of milliseconds) and whatever another thread does
//! is awaited with `wait_until`, a bounded poll that fails naming what it waited for. No test
//! asserts an upper bound on elapsed time tighter than seconds.
//!
//! Behaviour reachable from both facades is exercised through both (`Facade`).

// Both facades are used throughout.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use async_io::Timer;
use common::Behavior;
use common::Op;
use common::PATIENCE;
use common::Script;
use common::ScriptedFactory;
use common::facade::FACADES;
use common::facade::Facade;
use common::facade::acquire_via;
use common::maintenance::*;
use common::quiet_scripted_panics;
use common::wait::wait_until_state;
use common::wait_until;
use futures_lite::future;
use futures_lite::future::block_on;
use nexus_pool::CheckoutValidation;
use nexus_pool::ConnectionPool;
use nexus_pool::ConnectionPoolConfigBuilder;
use nexus_pool::CreateError;
use nexus_pool::DestroyReason;
use nexus_pool::MaintenanceMode;
use nexus_pool::ManualClock;
use nexus_pool::PoolError;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::thread;
use std::time::Duration;
use std::time::Instant;

// ----- idle timeout -----------------------------------------------------------------------------

#[test]
fn idle_timeout_never_shrinks_below_min_idle() {
    let clock = ManualClock::new();
    let config = base(5)
        .min_connections(2)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    wait_until("the pool makes its 2 idle connections", || idle(&pool) == 2);

    let held: Vec<_> = (0..5).map(|_| pool.acquire_blocking().unwrap()).collect();
    assert_eq!(script.live(), 5);
    drop(held);
    assert_idle(&pool, 5, "all returned");

    clock.advance(Duration::from_millis(9_999));
    pool.sweep_idle();
    assert_idle(&pool, 5, "nothing idle for 10 s yet");

    clock.advance(Duration::from_millis(1));
    pool.sweep_idle();
    assert_idle(
        &pool,
        2,
        "idle past the timeout are closed, but min idle stay",
    );
    wait_until("3 are destroyed for idling", || {
        events.destroyed(DestroyReason::IdleTimeout) == 3
    });
    assert_eq!(script.live(), 2);

    // However long they idle from now on, the minimum stays.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(3600));
        pool.sweep_idle();
        assert_idle(&pool, 2, "min idle stay however long they idle");
    }
    thread::sleep(QUIET);
    assert_eq!(script.live(), 2);
    assert_idle(&pool, 2, "min idle stay");
    assert_eq!(events.destroyed_total(), 3);
    assert_eq!(script.created(), 5, "nothing closed, nothing replaced");
}

#[test]
fn idle_timeout_is_enforced_by_the_maintenance_thread() {
    let config = base(4)
        .min_connections(1)
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (pool, script, events) = start(config);
    for how in FACADES {
        let held: Vec<_> = (0..4).map(|_| acquire_via(&pool, how).unwrap()).collect();
        drop(held);
        wait_until("the maintenance loop closes the idle surplus", || {
            script.live() == 1 && idle(&pool) == 1
        });
    }
    thread::sleep(QUIET);
    assert_eq!(script.live(), 1, "min idle survive idling");
    assert_idle(&pool, 1, "min idle survive idling");
    assert!(events.destroyed(DestroyReason::IdleTimeout) >= 6);
}

// ----- lifetime ---------------------------------------------------------------------------------

#[test]
fn max_lifetime_jitter_spreads_expiry() {
    // 40 connections made at the same instant, lifetime 100 s shortened by up to 50 s each.
    // The cuts are spread evenly over the 50 s, so at 75 s about half have expired. At 49.999 s
    // none may have, at 100 s all must have: an explicit jitter means "up to" it.
    const N: usize = 40;
    let clock = ManualClock::new();
    let config = base(N)
        .max_concurrent_creates(8)
        .max_lifetime(Duration::from_secs(100))
        .max_lifetime_jitter(Duration::from_secs(50))
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    fill(&pool, N);

    clock.advance(Duration::from_millis(49_999));
    pool.sweep_idle();
    assert_idle(&pool, N, "jitter shortens a lifetime by at most 50 s");

    clock.advance(Duration::from_millis(25_001));
    pool.sweep_idle();
    let left = idle(&pool);
    assert!(
        0 < left && left < N,
        "connections made together expire at different times: {left} of {N} left at 75 s"
    );

    clock.advance(Duration::from_secs(25));
    pool.sweep_idle();
    assert_eq!(idle(&pool), 0, "every lifetime is at most 100 s");
    wait_until("all are destroyed as expired", || {
        events.destroyed(DestroyReason::Expired) == N
    });
    assert_eq!(script.live(), 0);
}

/// Makes `n` connections in one burst at time zero with the default jitter and `lifetime`, then
/// moves the clock one second at a time, sweeping after each step. Returns how many expired in
/// each second.
fn expiries_per_second(n: usize, lifetime: Duration) -> Vec<usize> {
    let clock = ManualClock::new();
    let config = base(n)
        .max_concurrent_creates(8)
        .max_lifetime(lifetime)
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    fill(&pool, n);
    let mut per_second = Vec::new();
    let mut left = n;
    for _ in 0..lifetime.as_secs() {
        clock.advance(Duration::from_secs(1));
        // The sweep retires what expired by now before it returns. The maintenance thread's own
        // sweep comes every `lifetime / 4` of real time, far beyond this loop.
        pool.sweep_idle();
        let now_left = idle(&pool);
        per_second.push(left - now_left);
        left = now_left;
    }
    assert_eq!(left, 0, "every lifetime is at most {lifetime:?}");
    wait_until("all are destroyed as expired", || {
        events.destroyed(DestroyReason::Expired) == n
    });
    assert_eq!(script.live(), 0);
    per_second
}

#[test]
fn default_lifetime_jitter_spreads_a_burst_over_many_seconds() {
    // Connections made together must not come back together: by default no second may see more
    // than a quarter of a burst expire, for any lifetime of a minute or more.
    for (n, lifetime) in [(20, 60), (8, 60), (40, 120), (40, 30 * 60)] {
        let lifetime = Duration::from_secs(lifetime);
        let per_second = expiries_per_second(n, lifetime);
        let worst = per_second.iter().copied().max().unwrap();
        let busy: Vec<_> = per_second.iter().filter(|&&k| k > 0).collect();
        assert!(
            worst <= n / 4,
            "{n} made together with lifetime {lifetime:?}: {worst} expired in one second \
             (per busy second: {busy:?})"
        );
    }
}

#[test]
fn max_lifetime_without_jitter_expires_together_and_lent_ones_on_return() {
    let clock = ManualClock::new();
    let config = base(4)
        .max_lifetime(Duration::from_secs(100))
        .max_lifetime_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    let mut held: Vec<_> = (0..4).map(|_| pool.acquire_blocking().unwrap()).collect();
    let kept = held.pop().unwrap();
    drop(held);

    clock.advance(Duration::from_millis(99_999));
    pool.sweep_idle();
    assert_idle(&pool, 3, "none expired before 100 s");
    clock.advance(Duration::from_millis(1));
    pool.sweep_idle();
    assert_eq!(idle(&pool), 0, "with no jitter all expire at once");

    // The holder keeps its connection past the lifetime; it is closed when it comes back.
    assert_eq!(kept.use_count(), 1);
    drop(kept);
    assert_eq!(idle(&pool), 0, "an expired connection is not put back");
    wait_until("all 4 are destroyed as expired", || {
        events.destroyed(DestroyReason::Expired) == 4
    });
    assert_eq!(script.live(), 0);
    for how in FACADES {
        let conn = acquire_via(&pool, how).unwrap();
        assert!(conn.id >= 4, "a new connection, not an expired one");
    }
}

// ----- refill -----------------------------------------------------------------------------------

#[test]
fn min_idle_is_refilled_in_the_background() {
    let config = base(10).min_connections(3).build().unwrap();
    let (pool, script, _) = start(config);
    wait_until("3 idle at start", || idle(&pool) == 3 && script.live() == 3);

    let a = pool.acquire_blocking().unwrap();
    let b = block_on(pool.acquire()).unwrap();
    wait_until("idle refilled to 3 while 2 are lent", || {
        idle(&pool) == 3 && script.live() == 5
    });
    drop((a, b));
    assert_idle(&pool, 5, "all returned");
    thread::sleep(QUIET);
    assert_eq!(script.live(), 5, "no idle timeout: nothing closed");
}

#[test]
fn min_idle_is_refilled_by_the_idle_sweep() {
    let config = base(10).min_connections(3).build().unwrap();
    let (pool, script, _) = start(config);
    wait_until("3 idle at start", || idle(&pool) == 3 && script.live() == 3);

    let a = pool.acquire_blocking().unwrap();
    let b = block_on(pool.acquire()).unwrap();
    pool.sweep_idle();
    wait_until_state(
        "idle refilled to 3 while 2 are lent",
        || idle(&pool) == 3 && script.live() == 5,
        || state(&pool, &script),
    );
    drop((a, b));
    assert_idle(&pool, 5, "all returned");
}

#[test]
fn min_idle_is_refilled_after_connections_are_lost() {
    let config = base(4).min_connections(2).build().unwrap();
    let (pool, script, _) = start(config);
    wait_until("2 idle at start", || idle(&pool) == 2);
    let mut a = pool.acquire_blocking().unwrap();
    let b = block_on(pool.acquire()).unwrap();
    let broken = a.id;
    a.mark_broken();
    drop(a);
    wait_until_state(
        "the broken one is destroyed and min idle is made again",
        || idle(&pool) == 2 && script.live() == 3,
        || state(&pool, &script),
    );
    assert!(!script.live_ids().contains(&broken));
    drop(b);
}

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

// ----- start-up ---------------------------------------------------------------------------------

#[test]
fn build_connected_starts_full() {
    let (factory, script) = ScriptedFactory::new();
    let config = base(5).min_connections(3).build().unwrap();
    let pool = block_on(
        ConnectionPool::builder(factory)
            .config(config)
            .build_connected(),
    )
    .unwrap();
    assert_idle(&pool, 3, "full when it returns");
    assert_eq!(script.live(), 3);
}

#[test]
fn build_connected_fails_when_connections_cannot_be_made() {
    quiet_scripted_panics();
    for behavior in [Behavior::Fail, Behavior::Hang, Behavior::Panic] {
        let (factory, script) = ScriptedFactory::new();
        // Two connections are made, then the third create goes wrong.
        script.push(Op::Create, [Behavior::Succeed, Behavior::Succeed]);
        script.set(Op::Create, behavior);
        let config = base(5)
            .min_connections(3)
            .create_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let result = block_on(
            ConnectionPool::builder(factory)
                .config(config)
                .build_connected(),
        );
        let err = match result {
            Err(PoolError::Create(err)) => err,
            other => panic!("{behavior:?}: expected PoolError::Create, got {other:?}"),
        };
        match (behavior, &err) {
            (Behavior::Fail, CreateError::Failed(e)) => assert_eq!(e.0, 3),
            (Behavior::Hang, CreateError::TimedOut(d)) => {
                assert_eq!(*d, Duration::from_millis(100))
            }
            (Behavior::Panic, CreateError::Panicked) => {}
            _ => panic!("{behavior:?}: unexpected error {err:?}"),
        }
        assert_eq!(script.created(), 2);
        assert_eq!(script.live(), 0, "{behavior:?}: what was made is closed");
        assert_eq!(script.calls(Op::Destroy), 2);
        assert!(script.factory_dropped(), "{behavior:?}: nothing kept");
    }
}

#[test]
fn build_starts_without_the_database_and_fills_when_it_returns() {
    let config = base(4)
        .min_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Fail)
    });
    assert!(!pool.is_closed());
    wait_until("the pool tries to connect", || script.calls(Op::Create) > 0);
    for how in FACADES {
        let err = acquire_via(&pool, how).map(|c| c.id).unwrap_err();
        assert!(
            err.create_error().is_some(),
            "{how:?}: carries the create error"
        );
        let t = expect_timeout::<()>(Err(err));
        assert!(matches!(t.last_create_error, Some(CreateError::Failed(_))));
    }

    script.set(Op::Create, Behavior::Succeed);
    wait_until("the pool fills in the background", || {
        idle(&pool) == 2 && script.live() == 2
    });
    for how in FACADES {
        drop(acquire_via(&pool, how).unwrap());
    }
}

// ----- failing creates --------------------------------------------------------------------------

#[test]
fn hung_create_with_more_waiters_than_max_then_recovery() {
    const WAITERS: usize = 6;
    let create_timeout = Duration::from_millis(100);
    let acquire_timeout = Duration::from_millis(1500);
    let config = base(2)
        .max_concurrent_creates(2)
        .create_timeout(create_timeout)
        .acquire_timeout(acquire_timeout)
        .build()
        .unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Hang)
    });

    let outcomes: Vec<_> = thread::scope(|s| {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let pool = &pool;
                s.spawn(move || {
                    let started = Instant::now();
                    let result = acquire_via(pool, FACADES[i % 2]).map(|c| c.id);
                    (result, started.elapsed())
                })
            })
            .collect();
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (result, waited) in outcomes {
        let t = expect_timeout(result);
        match t.last_create_error {
            Some(CreateError::TimedOut(d)) => assert_eq!(d, create_timeout),
            other => panic!("expected the create time-out, got {other:?}"),
        }
        assert!(
            waited >= acquire_timeout && waited < acquire_timeout + Duration::from_secs(5),
            "a hung create does not hold a caller past acquire_timeout (waited {waited:?})"
        );
    }
    assert!(script.peak_running(Op::Create) <= 2);
    wait_until("hung creates give their places back", || {
        total(&pool) == 0 && script.running(Op::Create) == 0
    });

    // The database answers again: everyone is served, no restart.
    script.set(Op::Create, Behavior::Succeed);
    let served: Vec<_> = thread::scope(|s| {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|i| {
                let pool = &pool;
                s.spawn(move || {
                    let conn = acquire_via(pool, FACADES[i % 2]).unwrap();
                    thread::sleep(Duration::from_millis(10));
                    conn.id
                })
            })
            .collect();
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(served.len(), WAITERS);
    assert!(script.peak() <= 2, "peak {} > max 2", script.peak());
}

/// Keeps `waiters` callers asking during an outage of about `outage`, then heals the factory;
/// returns (connects attempted during the outage, the outage's length, the documented bound).
fn outage(
    max_concurrent_creates: usize,
    waiters: usize,
    outage: Duration,
) -> (usize, Duration, f64) {
    let (initial, longest) = (Duration::from_millis(10), Duration::from_millis(100));
    let config = base(8)
        .max_concurrent_creates(max_concurrent_creates)
        .create_backoff(initial, longest)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Fail)
    });
    let healed = AtomicBool::new(false);
    let (attempts, length) = thread::scope(|s| {
        let callers: Vec<_> = (0..waiters)
            .map(|i| {
                let (pool, script, healed) = (&pool, &script, &healed);
                s.spawn(move || {
                    loop {
                        let failing = !healed.load(SeqCst) && script.calls(Op::Create) > 0;
                        match acquire_via(pool, FACADES[i % 2]) {
                            Ok(conn) => {
                                thread::sleep(Duration::from_millis(5));
                                return conn.id;
                            }
                            // Healed while this caller waited: a create may have succeeded and
                            // cleared the error before its deadline.
                            Err(PoolError::Timeout(t)) => assert!(
                                !failing
                                    || healed.load(SeqCst)
                                    || matches!(t.last_create_error, Some(CreateError::Failed(_))),
                                "a caller timing out during the outage gets the create error: {t:?}"
                            ),
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                        assert!(
                            started.elapsed() < PATIENCE,
                            "a caller was not served after the outage"
                        );
                    }
                })
            })
            .collect();
        thread::sleep(outage);
        let attempts = script.calls(Op::Create);
        let length = started.elapsed();
        // Marked healed first, so that a caller who sees it unset knows no create has succeeded.
        healed.store(true, SeqCst);
        script.set(Op::Create, Behavior::Succeed);
        for caller in callers {
            caller.join().unwrap();
        }
        (attempts, length)
    });
    assert!(script.peak() <= 8);
    assert!(script.peak_running(Op::Create) <= max_concurrent_creates);
    // The bound from the module docs of `src/maintenance.rs`:
    // `max_concurrent_creates + log2(max / initial) + 2 * T / max`.
    let bound = max_concurrent_creates as f64
        + (longest.as_secs_f64() / initial.as_secs_f64()).log2()
        + 2.0 * length.as_secs_f64() / longest.as_secs_f64();
    eprintln!(
        "max_concurrent_creates {max_concurrent_creates}: {attempts} connects in {length:?}, bound {bound:.1}"
    );
    (attempts, length, bound)
}

#[test]
fn create_outage_then_recovery_stays_within_the_documented_connect_bound() {
    // With one create at a time the pauses alone bound it: after the ramp (10, 20, 40, 80 ms,
    // each at least halved by jitter) at least 50 ms pass between connects.
    let (attempts, length, bound) = outage(1, 8, Duration::from_millis(1500));
    assert!(
        attempts as f64 <= bound,
        "{attempts} connects during a {length:?} outage, documented bound {bound:.1}"
    );
    assert!(attempts >= 5, "backoff still retries ({attempts} connects)");
}

#[test]
fn create_outage_with_concurrent_creates_stays_within_the_documented_connect_bound() {
    // Four creates per pause of 50..100 ms: about twice the bound.
    let (attempts, length, bound) = outage(4, 16, Duration::from_millis(1500));
    assert!(
        attempts as f64 <= bound,
        "{attempts} connects during a {length:?} outage, documented bound {bound:.1}"
    );
}

#[test]
fn connection_created_for_a_caller_that_gave_up_goes_idle() {
    // Async: the caller gives up (drops its acquire) once the create made for it has started.
    let (pool, script, _) = start_with(base(1).build().unwrap(), Options::default(), |s| {
        s.set(Op::Create, Behavior::Slow(Duration::from_millis(500)))
    });
    let gave_up = async {
        while script.running(Op::Create) == 0 {
            Timer::after(Duration::from_millis(2)).await;
        }
        None
    };
    let got = block_on(future::or(
        async { Some(pool.acquire().await.map(|c| c.id)) },
        gave_up,
    ));
    assert!(got.is_none(), "gave up while the create ran: {got:?}");
    check_made_for_nobody(&pool, &script);

    // Blocking: the caller gives up at acquire_timeout. A try in which the maintenance thread had
    // not even started the create by then (it was not scheduled in time) proves nothing and is
    // repeated.
    for attempt in 1.. {
        let config = base(1)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let (pool, script, _) = start_with(config, Options::default(), |s| {
            s.set(Op::Create, Behavior::Slow(Duration::from_millis(800)))
        });
        expect_timeout(pool.acquire_blocking());
        if script.calls(Op::Create) > 0 {
            check_made_for_nobody(&pool, &script);
            break;
        }
        assert!(
            attempt < 5,
            "the create never started within acquire_timeout"
        );
    }
}

/// The one create started for a caller that left ends as an idle connection.
#[track_caller]
fn check_made_for_nobody(pool: &Pool, script: &Script) {
    wait_until_state(
        "the connection made for nobody is idle",
        || idle(pool) == 1,
        || state(pool, script),
    );
    let conn = pool.try_acquire().unwrap();
    assert_eq!(conn.id, 0);
    assert_eq!((script.calls(Op::Create), script.created()), (1, 1));
}

#[test]
fn connection_created_for_a_caller_that_gave_up_goes_to_the_next_waiter() {
    let config = base(1).build().unwrap();
    let (pool, script, _) = start_with(config, Options::default(), |s| {
        s.set(Op::Create, Behavior::Slow(Duration::from_secs(1)))
    });
    let quit = AtomicBool::new(false);
    let (quitter, patient) = thread::scope(|s| {
        let quitter = s.spawn(|| {
            let gave_up = async {
                while !quit.load(SeqCst) {
                    Timer::after(Duration::from_millis(2)).await;
                }
                None
            };
            block_on(future::or(
                async { Some(pool.acquire().await.map(|c| c.id)) },
                gave_up,
            ))
        });
        wait_until("the first caller waits", || {
            pool.current_metrics().waiting == 1
        });
        let patient = s.spawn(|| pool.acquire_blocking().map(|c| c.id));
        wait_until("the second caller waits", || {
            pool.current_metrics().waiting == 2
        });
        quit.store(true, SeqCst);
        (quitter.join().unwrap(), patient.join().unwrap())
    });
    assert!(quitter.is_none(), "the first caller gave up");
    assert_eq!(patient.unwrap(), 0, "the next waiter got the connection");
    assert_eq!((script.calls(Op::Create), script.created()), (1, 1));
}

// ----- bursts -----------------------------------------------------------------------------------

/// Far fewer than `max_connections` (50): a short spike is served by the warm connections.
const BURST_PEAK_LIMIT: usize = 25;

/// A pool of max 50 with 5 warm connections and creates that take 100 ms.
fn burst_pool(max_concurrent_creates: usize) -> (Pool, Arc<Script>) {
    let config = base(50)
        .min_connections(5)
        .max_concurrent_creates(max_concurrent_creates)
        .build()
        .unwrap();
    let (pool, script, _) = start(config);
    wait_until("5 warm", || idle(&pool) == 5);
    script.set(Op::Create, Behavior::Slow(Duration::from_millis(100)));
    (pool, script)
}

/// 50 threads at once each take a connection for 2 ms.
fn burst_blocking(pool: &Pool) {
    let start = Barrier::new(50);
    thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                start.wait();
                let conn = pool.acquire_blocking().unwrap();
                thread::sleep(Duration::from_millis(2));
                drop(conn);
            });
        }
    });
}

/// 50 tasks at once each take a connection for 2 ms.
fn burst_async(pool: &Pool) {
    smol::block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let pool = pool.clone();
                smol::spawn(async move {
                    let conn = pool.acquire().await.unwrap();
                    Timer::after(Duration::from_millis(2)).await;
                    drop(conn);
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
}

/// Once the creates started during the burst have finished, the pool is far below its max.
#[track_caller]
fn check_burst_peak(script: &Script, max_concurrent_creates: usize) {
    wait_until("the creates started during the burst finish", || {
        script.running(Op::Create) == 0
    });
    assert!(
        script.peak() <= BURST_PEAK_LIMIT,
        "a burst of 50 short holds grew the pool to {} (max_concurrent_creates {})",
        script.peak(),
        max_concurrent_creates
    );
    assert!(script.peak_running(Op::Create) <= max_concurrent_creates);
}

#[test]
fn burst_is_served_by_warm_connections_blocking() {
    let (pool, script) = burst_pool(2);
    burst_blocking(&pool);
    check_burst_peak(&script, 2);
}

#[test]
fn burst_is_served_by_warm_connections_async() {
    let (pool, script) = burst_pool(2);
    burst_async(&pool);
    check_burst_peak(&script, 2);
}

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
