//! Background maintenance, the sweep: idle connections past `idle_timeout` are closed down to
//! `min_connections`, connections past their lifetime (with jitter) are replaced, and the pool
//! refills to its minimum.
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
use std::time::Duration;

use common::facade::{FACADES, acquire_via};
use common::maintenance::*;
use common::wait::wait_until_state;
use common::wait_until;
use futures_lite::future::block_on;
use nexus_pool::{DestroyReason, ManualClock};

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
fn light_traffic_lets_the_connections_it_does_not_need_idle_out() {
    // One caller at a time reuses the connection it returned (the idle queue's slot), so the
    // other two sit idle and the sweep after `idle_timeout` retires them, while the one in use
    // stays.
    let clock = ManualClock::new();
    let config = base(3)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    let held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
    drop(held);
    let mut used = None;
    for _ in 0..11 {
        clock.advance(Duration::from_secs(1));
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!(
            *used.get_or_insert(conn.id),
            conn.id,
            "the same one each time"
        );
        drop(conn);
    }
    pool.sweep_idle();
    wait_until("the two unused are destroyed for idling", || {
        events.destroyed(DestroyReason::IdleTimeout) == 2
    });
    assert_eq!(
        script.live_ids().into_iter().collect::<Vec<_>>(),
        vec![used.unwrap()]
    );
    assert_idle(&pool, 1, "the one in use stays");
}

#[test]
fn a_sweep_looks_at_every_idle_connection_once_the_one_in_the_slot_included() {
    // A returned connection waits in the idle queue's slot and is lent first, but a sweep still
    // visits all of them: here every one has expired, the slot's among them.
    let clock = ManualClock::new();
    let config = base(3)
        .max_lifetime(Some(Duration::from_secs(60)))
        .max_lifetime_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let (pool, script, events) = start_with(config, with_clock(&clock), |_| {});
    let held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
    drop(held);
    let conn = pool.acquire_blocking().unwrap();
    drop(conn);
    clock.advance(Duration::from_secs(60));
    pool.sweep_idle();
    wait_until("all three are destroyed as expired", || {
        events.destroyed(DestroyReason::Expired) == 3
    });
    assert_eq!(script.live(), 0, "{}", state(&pool, &script));
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
