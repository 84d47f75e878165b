//! Cancellation while creates hang or fail: a caller that times out while a create hangs does
//! not cancel it (it keeps its place, and its connection lands in the pool); a create that hangs
//! past `create_timeout` is abandoned and its place freed; while creates fail, callers time out
//! with the factory's error, and are served once creates recover.
//!
//! Creates are made by the pool's maintenance thread; the tests make it start them through
//! hand-polled waiters (`queue_demand`), which stay queued however late that thread runs, so that
//! a short `acquire_timeout` never races it. Hanging creates wait at the scripted factory's gate
//! (`Behavior::Gated`).
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::facade::{Facade, acquire_via};
use common::queue::{acquire_patiently, assert_no_slot_lost, queue_demand, wait_for_waiting};
use common::{Behavior, LONG_TIMEOUT, Op, Script, ScriptedFactory, wait_until};
use nexus_pool::{ConnectionPool, ConnectionPoolConfig, CreateError, PoolError};

/// The acquire timeout in the tests where creates hang.
const CREATE_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(100);
/// The `create_timeout` past which a hanging create is abandoned.
const HANGING_CREATE_TIMEOUT: Duration = Duration::from_millis(300);
/// The acquire timeout in the tests where creates fail.
const FAIL_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(100);
/// `create_backoff` in the tests where creates fail: short, so that retries come quickly.
const FAIL_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(40));

/// A pool of at most one connection whose creates wait at the factory's closed gate, with
/// `acquire_timeout` of [`CREATE_ACQUIRE_TIMEOUT`] and the given `create_timeout`.
fn gated_pool(create_timeout: Duration) -> (ConnectionPool<ScriptedFactory>, Arc<Script>) {
    let config = common::builder(1)
        .acquire_timeout(CREATE_ACQUIRE_TIMEOUT)
        .create_timeout(create_timeout)
        .build()
        .unwrap();
    let (pool, script) = common::pool(config);
    script.set(Op::Create, Behavior::Gated);
    (pool, script)
}

// ----- 4. timeouts while a create hangs -------------------------------------------------------

/// A caller (via `facade`) times out while a create hangs. Callers do not create (the
/// maintenance loop does, for whoever waits), so nothing cancels the create: it keeps its place
/// (`TimeoutError::total` counts it), and when it finishes its connection lands in the pool.
fn run_timeout_while_creating(facade: Facade) {
    let (pool, script) = gated_pool(LONG_TIMEOUT);
    let demand = queue_demand(&pool);
    wait_until("a create started", || script.calls(Op::Create) >= 1);
    drop(demand);
    assert_eq!(script.calls(Op::Create), 1, "one create: the pool is full");
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.waiting),
        (1, 0, 0),
        "the create outlives its asker: {m:?}"
    );

    match acquire_via(&pool, facade) {
        Err(PoolError::Timeout(t)) => {
            assert!(t.waited >= CREATE_ACQUIRE_TIMEOUT, "waited {:?}", t.waited);
            assert_eq!(t.total, 1, "the create in flight holds a place: {t:?}");
            assert_eq!((t.idle, t.waiting, t.max), (0, 0, 1), "{t:?}");
            assert!(t.last_create_error.is_none(), "no create failed: {t:?}");
        }
        other => panic!("expected a timeout while the create hangs, got {other:?}"),
    }
    assert_eq!(
        script.calls(Op::Create),
        1,
        "no second create: the pool is full"
    );
    assert_eq!(
        script.abandoned(Op::Create),
        0,
        "a caller's timeout does not cancel a create"
    );

    script.open_gate();
    wait_until("the create's connection lands idle", || {
        pool.current_metrics().idle == 1
    });
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (1, 1, 0), "{m:?}");
    assert_eq!(script.live(), 1);
    let conn = acquire_via(&pool, facade).expect("the idle connection");
    assert_eq!(conn.id, 0, "the connection of the create that hung");
    assert_eq!(script.calls(Op::Create), 1);
    drop(conn);
    pool.close_blocking();
    assert_eq!(script.live(), 0, "every connection made was destroyed");
}

/// `acquire_blocking` times out while a create hangs; the create keeps its place and its
/// connection lands in the pool.
#[test]
fn timeout_while_creating_blocking() {
    run_timeout_while_creating(Facade::Blocking);
}

/// `acquire().await` times out while a create hangs; the create keeps its place and its
/// connection lands in the pool.
#[test]
fn timeout_while_creating_async() {
    run_timeout_while_creating(Facade::Async);
}

/// A create that hangs past `create_timeout` is dropped and its place freed (`total` back to 0);
/// a later caller's (via `facade`) `Timeout` reports it as `CreateError::TimedOut`; once creates
/// work the pool serves again, and a success clears `last_create_error`.
fn run_create_timeout_frees_slot(facade: Facade) {
    let (pool, script) = gated_pool(HANGING_CREATE_TIMEOUT);
    let demand = queue_demand(&pool);
    wait_until("a create started", || script.calls(Op::Create) >= 1);
    drop(demand);
    // Normally one create; more if this thread was held up past `create_timeout`.
    wait_until(
        "the hanging creates are abandoned and their places freed",
        || {
            script.abandoned(Op::Create) == script.calls(Op::Create)
                && pool.current_metrics().total == 0
        },
    );
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (0, 0, 0), "{m:?}");
    assert_eq!(script.live(), 0);

    // New demand: the creator, done with the abandoned create, starts another.
    let before = script.calls(Op::Create);
    let demand = queue_demand(&pool);
    wait_until("another create started", || {
        script.calls(Op::Create) > before
    });
    drop(demand);

    let err = acquire_via(&pool, facade).map(drop).unwrap_err();
    match &err {
        PoolError::Timeout(t) => match &t.last_create_error {
            Some(CreateError::TimedOut(limit)) => assert_eq!(*limit, HANGING_CREATE_TIMEOUT),
            other => panic!("expected the abandoned create in the timeout, got {other:?}"),
        },
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        err.create_error().is_none(),
        "create_error() only carries errors the factory returned"
    );
    let cause = std::error::Error::source(&err).expect("the abandoned create is the source");
    assert!(cause.to_string().contains("create timed out"), "{cause}");

    script.open_gate();
    let conn = acquire_patiently(&pool, facade, "creates work again");
    match acquire_via(&pool, facade) {
        Err(PoolError::Timeout(t)) => assert!(
            t.last_create_error.is_none(),
            "a successful create clears the last error: {t:?}"
        ),
        other => panic!("expected a timeout with the only connection held, got {other:?}"),
    }
    drop(conn);
    wait_until("every create finished or was abandoned", || {
        pool.current_metrics().total == script.live()
    });
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (1, 1, 0), "{m:?}");
    pool.close_blocking();
    assert_eq!(script.live(), 0, "every connection made was destroyed");
}

/// `acquire_blocking`: a create past `create_timeout` is dropped, its place freed, and reported.
#[test]
fn create_timeout_frees_slot_blocking() {
    run_create_timeout_frees_slot(Facade::Blocking);
}

/// `acquire().await`: a create past `create_timeout` is dropped, its place freed, and reported.
#[test]
fn create_timeout_frees_slot_async() {
    run_create_timeout_frees_slot(Facade::Async);
}

// ----- 5. failing creates ---------------------------------------------------------------------

fn failing_config(acquire_timeout: Duration) -> ConnectionPoolConfig {
    common::builder(1)
        .acquire_timeout(acquire_timeout)
        .create_backoff(FAIL_BACKOFF.0, FAIL_BACKOFF.1)
        .build()
        .unwrap()
}

/// While creates fail, a caller (via `facade`) gets `Timeout` (not `Create`: callers do not
/// create, see the `# Errors` of `acquire` and `acquire_blocking`) carrying the factory's error;
/// failed creates free their places; a waiter queued while creates fail is served once they
/// recover; a success clears the error.
fn run_failing_creates(facade: Facade) {
    let (pool, counts) = common::pool(failing_config(FAIL_ACQUIRE_TIMEOUT));
    counts.set(Op::Create, Behavior::Fail);
    // A second attempt starts only after the first failure was recorded.
    let demand = queue_demand(&pool);
    wait_until("two creates failed", || counts.calls(Op::Create) >= 2);
    drop(demand);

    let err = acquire_via(&pool, facade).map(drop).unwrap_err();
    match &err {
        PoolError::Timeout(t) => {
            assert!(t.waited >= FAIL_ACQUIRE_TIMEOUT, "waited {:?}", t.waited);
            assert_eq!((t.waiting, t.max), (0, 1), "{t:?}");
            match &t.last_create_error {
                Some(CreateError::Failed(e)) => assert!(e.0 <= counts.calls(Op::Create), "{e}"),
                other => panic!("expected the factory's error, got {other:?}"),
            }
        }
        other => panic!("expected a timeout while creates fail, got {other:?}"),
    }
    assert!(err.create_error().is_some(), "{err:?}");
    let cause = std::error::Error::source(&err)
        .and_then(|create| create.source())
        .expect("the factory's error is reachable through source()");
    assert!(
        cause.to_string().contains("scripted create failure #"),
        "{cause}"
    );

    wait_until("failed creates free their places", || {
        pool.current_metrics().total == 0
    });
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (0, 0, 0), "{m:?}");
    assert_eq!(counts.live(), 0);

    counts.set(Op::Create, Behavior::Succeed);
    let conn = acquire_patiently(&pool, facade, "creates work again");
    match acquire_via(&pool, facade) {
        Err(PoolError::Timeout(t)) => assert!(
            t.last_create_error.is_none(),
            "a successful create clears the last error: {t:?}"
        ),
        other => panic!("expected a timeout with the only connection held, got {other:?}"),
    }
    drop(conn);
    assert_no_slot_lost(&pool, &counts);

    // A waiter (with time to spare) queued while creates fail.
    let (pool, counts) = common::pool(failing_config(LONG_TIMEOUT));
    counts.set(Op::Create, Behavior::Fail);
    thread::scope(|s| {
        let waiter = s.spawn(|| acquire_via(&pool, facade).map(|conn| conn.id));
        wait_for_waiting(&pool, 1);
        wait_until("creates failed twice while the caller waits", || {
            counts.calls(Op::Create) >= 2
        });
        counts.set(Op::Create, Behavior::Succeed);
        let id = waiter.join().unwrap().expect("served once creates recover");
        assert_eq!(
            id + 1,
            counts.created(),
            "by the first create that succeeded"
        );
    });
    assert_no_slot_lost(&pool, &counts);
}

/// `acquire_blocking` while creates fail: `Timeout` with the factory's error, places freed,
/// served once creates recover.
#[test]
fn failing_creates_time_out_with_last_error_blocking() {
    run_failing_creates(Facade::Blocking);
}

/// `acquire().await` while creates fail: `Timeout` with the factory's error, places freed,
/// served once creates recover.
#[test]
fn failing_creates_time_out_with_last_error_async() {
    run_failing_creates(Facade::Async);
}
