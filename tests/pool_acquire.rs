//! The pool through its public API, acquiring: reuse of idle connections, the
//! `max_connections` bound under concurrency, timeouts (and creates failing meanwhile), and
//! checkout validation.
//!
//! Each behaviour reachable from both facades is tested twice: `name` drives the async facade
//! (`acquire().await` under `futures_lite::future::block_on`), `name_blocking` the blocking one.
//! FIFO order and cancellation are covered by `tests/fifo_*.rs`; executors by
//! `tests/runtimes.rs`.
//!
//! No test sleeps to win a race: whatever happens on another thread (the maintenance loop
//! destroying a connection, a waiter registering) is awaited with `wait_until`, a bounded poll
//! that fails with a message naming what it waited for.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::checks::{assert_metrics, wait_destroyed};
use common::tracker::Tracker;
use common::wait::{until_served, watchdog};
use common::{
    Behavior, Error, Op, Pool, Refused, SHORT_TIMEOUT, Script, ScriptedFactory, builder, wait_until,
};
use futures_lite::future::block_on;
use nexus_pool::{
    CheckoutValidation, ConnectionPoolConfig, CreateError, PoolError, PooledConnection,
};

// ----- reuse -------------------------------------------------------------------------------

fn check_reuse<'p>(
    pool: &'p Pool,
    counts: &Script,
    mut acquire: impl FnMut() -> PooledConnection<'p, ScriptedFactory>,
) {
    let first = acquire();
    let id = first.id;
    assert_eq!(first.use_count(), 1);
    assert_eq!(first.last_used_at(), first.created_at(), "a new connection");
    drop(first);
    for round in 2..=10u64 {
        let conn = acquire();
        assert_eq!(conn.id, id, "round {round}: the idle connection is reused");
        assert_eq!(conn.use_count(), round);
        assert!(conn.last_used_at() >= conn.created_at());
        pool.release(conn);
    }
    assert_eq!(counts.created(), 1, "one connection made in all");
    assert_eq!(counts.destroyed(), 0);
    assert_metrics(pool, 1, 1, 0);
}

#[test]
fn connections_are_reused() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(4));
    check_reuse(&pool, &counts, || block_on(pool.acquire()).unwrap());
}

#[test]
fn connections_are_reused_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(4));
    check_reuse(&pool, &counts, || pool.acquire_blocking().unwrap());
}

#[test]
fn blocking_and_async_share_connections() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(4));
    let a = pool.acquire_blocking().unwrap();
    let id = a.id;
    drop(a);
    let b = block_on(pool.acquire()).unwrap();
    assert_eq!((b.id, b.use_count()), (id, 2));
    drop(b);
    let c = pool.try_acquire().unwrap();
    assert_eq!((c.id, c.use_count()), (id, 3));
    drop(c);
    assert_eq!(counts.created(), 1);
}

/// Three idle connections, returned in the order 0, 1, 2: the first takes the empty slot and the
/// others queue behind it. The slot's connection is lent first, again and again while its caller
/// keeps returning it (a worker's loop keeps its session), and the others oldest first.
fn check_returned_lent_again_first<'p>(
    pool: &'p Pool,
    mut acquire: impl FnMut() -> PooledConnection<'p, ScriptedFactory>,
) {
    let held: Vec<_> = (0..3).map(|_| acquire()).collect();
    let ids: Vec<usize> = held.iter().map(|c| c.id).collect();
    for conn in held {
        drop(conn);
    }
    assert_metrics(pool, 3, 3, 0);
    for round in 0..5 {
        let conn = acquire();
        assert_eq!(
            conn.id, ids[0],
            "round {round}: the connection just returned is lent again, not the one idle longest"
        );
        drop(conn);
    }
    // Two at once: the slot's, then the one idle longest of the rest.
    let (a, b) = (acquire(), acquire());
    assert_eq!((a.id, b.id), (ids[0], ids[1]));
    assert_metrics(pool, 3, 1, 0);
    // Returned in the order b, a: b takes the empty slot and is lent first; a queues behind c.
    drop(b);
    drop(a);
    let order: Vec<usize> = {
        let all: Vec<_> = (0..3).map(|_| acquire()).collect();
        all.iter().map(|c| c.id).collect()
    };
    assert_eq!(order, vec![ids[1], ids[2], ids[0]]);
    assert_metrics(pool, 3, 3, 0);
}

#[test]
fn a_returned_connection_is_lent_again_first() {
    let _watchdog = watchdog();
    let (pool, _counts) = common::pool(common::config(4));
    check_returned_lent_again_first(&pool, || block_on(pool.acquire()).unwrap());
}

#[test]
fn a_returned_connection_is_lent_again_first_blocking() {
    let _watchdog = watchdog();
    let (pool, _counts) = common::pool(common::config(4));
    check_returned_lent_again_first(&pool, || pool.acquire_blocking().unwrap());
}

// ----- the max_connections bound ---------------------------------------------------------

/// `threads` OS threads (blocking facade) and `tasks` tokio tasks (async facade) each acquire
/// and release `iterations` times. With `churn`, every fifth acquire marks its connection
/// broken, so connections are destroyed and created all along.
fn hammer(
    pool: &Pool,
    threads: usize,
    tasks: usize,
    iterations: usize,
    churn: bool,
) -> Arc<Tracker> {
    let tracker = Arc::new(Tracker::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let break_it = move |worker: usize, i: usize| churn && (worker + i) % 5 == 0;

    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let pool = pool.clone();
            let tracker = tracker.clone();
            rt.spawn(async move {
                for i in 0..iterations {
                    let mut conn = pool.acquire().await.unwrap_or_else(|e| {
                        panic!("task {t}, iteration {i}: {e}");
                    });
                    tracker.enter(&conn);
                    if i % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                    tracker.leave(&conn);
                    if break_it(t, i) {
                        conn.mark_broken();
                    }
                }
            })
        })
        .collect();

    thread::scope(|s| {
        for t in 0..threads {
            let tracker = &tracker;
            s.spawn(move || {
                for i in 0..iterations {
                    let mut conn = pool.acquire_blocking().unwrap_or_else(|e| {
                        panic!("thread {t}, iteration {i}: {e}");
                    });
                    tracker.enter(&conn);
                    if i % 4 == 0 {
                        thread::yield_now();
                    }
                    tracker.leave(&conn);
                    if break_it(t + 1, i) {
                        conn.mark_broken();
                    }
                    if i % 2 == 0 {
                        pool.release(conn);
                    }
                }
            });
        }
    });
    rt.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    tracker
}

#[test]
fn pool_never_exceeds_max() {
    let _watchdog = watchdog();
    const MAX: usize = 4;
    let (pool, counts) = common::pool(common::config(MAX));
    let tracker = hammer(&pool, 16, 16, 2_000, false);

    tracker.assert_within(&counts, MAX);
    assert_eq!(counts.destroyed(), 0);
    // A create started for a waiter that a returned connection served finishes on its own.
    wait_until("no create is in flight", || {
        pool.current_metrics().total == counts.live()
    });
    let m = pool.current_metrics();
    assert_eq!(m.total, counts.live(), "total == live connections in {m:?}");
    assert_eq!(m.idle + m.active, m.total, "in {m:?}");
    assert_eq!(
        (m.idle, m.active, m.waiting),
        (m.total, 0, 0),
        "all returned: {m:?}"
    );
}

/// The same bound while connections are broken, fail checkout validation (a thread flips the
/// factory's answer all along), are destroyed and replaced.
#[test]
fn pool_never_exceeds_max_with_churn() {
    let _watchdog = watchdog();
    const MAX: usize = 4;
    let config = builder(MAX)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    let done = AtomicBool::new(false);
    let tracker = thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                counts.set(Op::Validate, Behavior::Fail);
                thread::sleep(Duration::from_micros(300));
                counts.set(Op::Validate, Behavior::Succeed);
                thread::sleep(Duration::from_millis(1));
            }
        });
        let tracker = hammer(&pool, 8, 8, 1_000, true);
        done.store(true, Ordering::SeqCst);
        tracker
    });

    assert!(
        counts.peak() <= MAX,
        "peak of {} live connections",
        counts.peak()
    );
    let held = tracker.max_holding.load(Ordering::SeqCst);
    assert!(held <= MAX, "{held} connections held at once");
    // The last broken connections are destroyed by the maintenance thread, and creates started
    // for waiters that were served meanwhile finish on their own: wait until the pool is quiet.
    wait_until("every connection is idle or destroyed", || {
        let m = pool.current_metrics();
        m.idle == m.total && m.total == counts.live()
    });
    assert!(counts.destroyed() > 0, "the churn destroyed connections");
    assert_eq!(counts.created() - counts.destroyed(), counts.live());
    let m = pool.current_metrics();
    assert_eq!((m.active, m.waiting), (0, 0), "all returned: {m:?}");
}

// ----- timeouts ---------------------------------------------------------------------------

/// Two connections made in advance (`min_connections`), so that no acquire here depends on a
/// create finishing within the short `acquire_timeout` on a loaded machine.
fn timeout_config() -> ConnectionPoolConfig {
    builder(2)
        .min_connections(2)
        .acquire_timeout(SHORT_TIMEOUT)
        .build()
        .unwrap()
}

fn check_timeout(pool: &Pool, counts: &Script, acquire: impl Fn() -> Result<(), Error>) {
    wait_until("min_connections are made", || {
        pool.current_metrics().idle == 2
    });
    let a = pool.acquire_blocking().unwrap();
    let b = pool.acquire_blocking().unwrap();
    let started = Instant::now();
    let err = acquire().expect_err("the pool is exhausted");
    let elapsed = started.elapsed();
    let PoolError::Timeout(t) = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(
        t.waited >= SHORT_TIMEOUT,
        "waited {:?} < acquire_timeout {SHORT_TIMEOUT:?}",
        t.waited
    );
    assert!(
        elapsed >= SHORT_TIMEOUT,
        "returned after {elapsed:?} < acquire_timeout {SHORT_TIMEOUT:?}"
    );
    assert!(t.waited <= elapsed);
    assert_eq!(
        (t.total, t.max, t.idle, t.waiting),
        (2, 2, 0, 0),
        "in {t:?}"
    );
    assert!(t.last_create_error.is_none());
    assert!(err.create_error().is_none());
    let text = err.to_string();
    assert!(text.contains("timed out"), "{text:?}");
    assert!(text.contains("2 of 2 open"), "{text:?}");
    assert!(std::error::Error::source(t).is_none());
    // The pool is unharmed: no waiter left behind, and a returned connection serves at once.
    assert_metrics(pool, 2, 0, 0);
    drop(a);
    acquire().expect("a connection was returned");
    drop(b);
    assert_eq!(counts.created(), 2);
}

#[test]
fn acquire_times_out_on_exhausted_pool() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(timeout_config());
    check_timeout(&pool, &counts, || block_on(pool.acquire()).map(drop));
}

#[test]
fn acquire_times_out_on_exhausted_pool_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(timeout_config());
    check_timeout(&pool, &counts, || pool.acquire_blocking().map(drop));
}

/// Creates fail: the acquire keeps waiting (the pool retries with backoff) and times out with
/// the factory's error attached; once creates work again, the pool recovers.
fn check_create_failure(pool: &Pool, counts: &Script, acquire: impl Fn() -> Result<u64, Error>) {
    counts.set(Op::Create, Behavior::Fail);
    let err = acquire().expect_err("every create fails");
    let PoolError::Timeout(t) = &err else {
        panic!("expected a timeout carrying the create error, got {err:?}");
    };
    assert!(t.waited >= CREATE_FAILING_TIMEOUT, "waited {:?}", t.waited);
    match &t.last_create_error {
        Some(CreateError::Failed(cause)) => {
            assert!(cause.0 <= counts.calls(Op::Create), "{cause:?}")
        }
        other => panic!("expected the factory's error, got {other:?}"),
    }
    assert!(err.create_error().is_some());
    let text = err.to_string();
    assert!(text.contains("timed out"), "{text:?}");
    assert!(
        !text.contains("scripted create failure #"),
        "{text:?}: the cause is the source, not repeated in the text"
    );
    let create = std::error::Error::source(&err).expect("the cause is the source");
    assert!(create.is::<CreateError<Refused>>(), "{create:?}");
    let cause = create.source().expect("the factory's error is behind it");
    assert!(
        cause.to_string().contains("scripted create failure #"),
        "{cause}"
    );
    assert!(counts.calls(Op::Create) >= 1, "the pool tried");
    wait_until("no create is in flight", || {
        pool.current_metrics().total == 0
    });
    assert_eq!(counts.live(), 0);

    counts.set(Op::Create, Behavior::Succeed);
    // The pool may still be pausing after the failures (backoff); it must recover soon after.
    let uses = until_served("creates work again, yet", &acquire);
    assert_eq!(uses, 1, "a new connection");
    assert_metrics(pool, 1, 1, 0);
    assert_eq!(counts.live(), 1);
}

const CREATE_FAILING_TIMEOUT: Duration = Duration::from_millis(300);

/// The retry backoff is capped well below the acquire timeout, so that recovery after the
/// failures is prompt (the default cap, 5 s, could outlast the second acquire).
fn create_failing_config() -> ConnectionPoolConfig {
    builder(1)
        .acquire_timeout(CREATE_FAILING_TIMEOUT)
        .create_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .build()
        .unwrap()
}

#[test]
fn create_failure_is_reported() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(create_failing_config());
    check_create_failure(&pool, &counts, || {
        block_on(pool.acquire()).map(|c| c.use_count())
    });
}

#[test]
fn create_failure_is_reported_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(create_failing_config());
    check_create_failure(&pool, &counts, || {
        pool.acquire_blocking().map(|c| c.use_count())
    });
}

// ----- checkout validation ----------------------------------------------------------------

fn check_validation_failure<'p>(
    pool: &'p Pool,
    counts: &Script,
    acquire: impl Fn() -> PooledConnection<'p, ScriptedFactory>,
) {
    let first = acquire();
    assert_eq!(first.id, 0);
    drop(first);
    assert_eq!(
        counts.calls(Op::Validate),
        0,
        "new connections are not validated"
    );

    // Validated on reuse, and passes.
    let again = acquire();
    assert_eq!((again.id, again.use_count()), (0, 2));
    assert_eq!(counts.calls(Op::Validate), 1);
    drop(again);

    // Fails: destroyed, and a fresh one is made in its place (max is 1: the slot is freed).
    counts.set(Op::Validate, Behavior::Fail);
    let fresh = acquire();
    assert_eq!(
        fresh.id, 1,
        "a new connection replaced the one that failed validation"
    );
    assert_eq!(fresh.use_count(), 1);
    assert_eq!(counts.calls(Op::Validate), 2);
    assert_eq!(counts.created(), 2);
    wait_destroyed(pool, counts, 1);
    assert_eq!(counts.live(), 1);
    assert!(counts.peak() <= 1, "never two open with max 1");
    counts.set(Op::Validate, Behavior::Succeed);
    drop(fresh);

    let reused = acquire();
    assert_eq!((reused.id, reused.use_count()), (1, 2));
    drop(reused);
    assert_metrics(pool, 1, 1, 0);
}

fn validating_config() -> ConnectionPoolConfig {
    builder(1)
        .checkout_validation(CheckoutValidation::Always)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn validation_failure_is_handled() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(validating_config());
    check_validation_failure(&pool, &counts, || block_on(pool.acquire()).unwrap());
}

#[test]
fn validation_failure_is_handled_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(validating_config());
    check_validation_failure(&pool, &counts, || pool.acquire_blocking().unwrap());
}

#[test]
fn validation_never_does_not_call_validate() {
    let _watchdog = watchdog();
    let config = builder(1)
        .checkout_validation(CheckoutValidation::Never)
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    counts.set(Op::Validate, Behavior::Fail);
    for round in 1..=3 {
        let conn = pool.acquire_blocking().unwrap();
        assert_eq!((conn.id, conn.use_count()), (0, round));
    }
    assert_eq!(counts.calls(Op::Validate), 0);
}

#[test]
fn validation_idle_for_skips_recently_used() {
    let _watchdog = watchdog();
    // Reused at once: well within an hour of its last use, so not validated.
    let config = builder(1)
        .checkout_validation(CheckoutValidation::IdleFor(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    counts.set(Op::Validate, Behavior::Fail);
    drop(pool.acquire_blocking().unwrap());
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!((conn.id, conn.use_count()), (0, 2));
    assert_eq!(counts.calls(Op::Validate), 0);
}
