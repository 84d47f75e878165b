//! Integration tests of the pool through its public API: reuse, the `max_connections` bound under
//! concurrency, timeouts, checkout validation, closing, expiry, broken/detached/panicked
//! connections, scopes, configuration validation, `try_acquire` and metrics.
//!
//! Each behaviour reachable from both facades is tested twice: `name` drives the async facade
//! (`acquire().await` under `futures_lite::future::block_on`), `name_blocking` the blocking one.
//! FIFO order and cancellation are covered by `tests/fifo_cancel.rs`; executors by
//! `tests/runtimes.rs`.
//!
//! No test sleeps to win a race: whatever happens on another thread (the maintenance loop
//! destroying a connection, a waiter registering) is awaited with `wait_until`, a bounded poll
//! that fails with a message naming what it waited for.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use common::Behavior;
use common::Op;
use common::Refused;
use common::SHORT_TIMEOUT;
use common::Script;
use common::ScriptedConn;
use common::ScriptedFactory;
use common::builder;
use common::checks::assert_metrics;
use common::checks::wait_destroyed;
use common::tracker::Tracker;
use common::wait::until_served;
use common::wait::watchdog;
use common::wait_until;
use futures_lite::FutureExt;
use futures_lite::future::block_on;
use nexus_pool::CheckoutValidation;
use nexus_pool::ConnectionPool;
use nexus_pool::ConnectionPoolConfig;
use nexus_pool::ConnectionScope;
use nexus_pool::CreateError;
use nexus_pool::MAX_CONNECTIONS_LIMIT;
use nexus_pool::ManualClock;
use nexus_pool::PoolError;
use nexus_pool::PooledConnection;
use std::panic::AssertUnwindSafe;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use std::time::Instant;

type Pool = ConnectionPool<ScriptedFactory>;
type Error = PoolError<Refused>;

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

// ----- closing ----------------------------------------------------------------------------

/// Three connections: two idle, one lent on another thread. Closing destroys the idle ones at
/// once, refuses new acquires, and completes only after the lent one comes back.
fn check_close(close: impl FnOnce(&Pool) + Send) {
    let config = builder(3)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    let (a, b) = (
        pool.acquire_blocking().unwrap(),
        pool.acquire_blocking().unwrap(),
    );
    let (lent_tx, lent_rx) = mpsc::channel();
    let (give_back_tx, give_back_rx) = mpsc::channel::<()>();
    let closed = AtomicBool::new(false);
    let (pool, closed) = (&pool, &closed);
    thread::scope(|s| {
        // Owned here, so that a failing assertion drops it and the holder stops waiting.
        let give_back_tx = give_back_tx;
        let holder = s.spawn(move || {
            let conn = pool.acquire_blocking().unwrap();
            lent_tx.send(conn.id).unwrap();
            give_back_rx.recv().unwrap();
            drop(conn);
        });
        let lent_id = lent_rx.recv().unwrap();
        drop((a, b));
        assert_metrics(pool, 3, 2, 0);

        let closer = s.spawn(move || {
            close(pool);
            closed.store(true, Ordering::SeqCst);
        });
        wait_until("the pool is closed", || pool.is_closed());
        wait_destroyed(pool, &counts, 2);
        assert_eq!(counts.live(), 1, "connection #{lent_id} is still lent");

        // Acquires fail at once; nothing is created.
        let started = Instant::now();
        assert!(matches!(pool.acquire_blocking(), Err(PoolError::Closed)));
        assert!(matches!(block_on(pool.acquire()), Err(PoolError::Closed)));
        assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once, not by timeout"
        );
        assert_eq!(counts.created(), 3);
        assert!(!pool.close_now(), "already closed");

        // The closer waits for the lent connection (checked again after it is given back: the
        // flag cannot be set before `close` returns, and `close` cannot return while
        // `total` counts the lent connection).
        assert!(
            !closed.load(Ordering::SeqCst),
            "close completed with a connection lent"
        );
        assert_eq!(pool.current_metrics().total, 1);
        give_back_tx.send(()).unwrap();
        holder.join().unwrap();
        closer.join().unwrap();
    });
    assert!(closed.load(Ordering::SeqCst));
    assert_eq!(counts.live(), 0);
    assert_eq!(counts.destroyed(), 3);
    assert_metrics(pool, 0, 0, 0);
}

#[test]
fn idle_connections_closed_by_close() {
    let _watchdog = watchdog();
    check_close(|pool| block_on(pool.close()));
}

#[test]
fn idle_connections_closed_by_close_blocking() {
    let _watchdog = watchdog();
    check_close(|pool| pool.close_blocking());
}

#[test]
fn close_of_idle_pool_completes_at_once() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    let (a, b) = (
        pool.acquire_blocking().unwrap(),
        pool.acquire_blocking().unwrap(),
    );
    drop((a, b));
    block_on(pool.close());
    assert_eq!((counts.live(), counts.destroyed()), (0, 2));
    assert_metrics(&pool, 0, 0, 0);
    // Closing again is harmless and immediate, with either facade.
    block_on(pool.close());
    pool.close_blocking();
    assert!(!pool.close_now());
}

#[test]
fn close_of_empty_pool_completes_at_once() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    assert!(pool.close_now());
    pool.close_blocking();
    block_on(pool.close());
    assert!(pool.is_closed());
    assert_eq!(counts.created(), 0);
}

/// Waiters blocked on an exhausted pool all wake with `Closed` when it closes.
fn check_close_wakes_waiters(wait: impl Fn(&Pool) -> Result<(), Error> + Sync) {
    const WAITERS: usize = 4;
    let config = builder(1)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    let held = pool.acquire_blocking().unwrap();
    thread::scope(|s| {
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                s.spawn(|| {
                    let started = Instant::now();
                    (wait(&pool), started.elapsed())
                })
            })
            .collect();
        wait_until("every waiter is registered", || {
            pool.current_metrics().waiting == WAITERS
        });
        assert!(pool.close_now());
        for w in waiters {
            let (result, waited) = w.join().unwrap();
            assert!(matches!(result, Err(PoolError::Closed)), "got {result:?}");
            assert!(
                waited < Duration::from_secs(20),
                "woken by close, not by the timeout"
            );
        }
    });
    assert_eq!(pool.current_metrics().waiting, 0);
    drop(held);
    pool.close_blocking();
    assert_eq!((counts.created(), counts.live()), (1, 0));
}

#[test]
fn close_wakes_waiters() {
    let _watchdog = watchdog();
    check_close_wakes_waiters(|pool| block_on(pool.acquire()).map(drop));
}

#[test]
fn close_wakes_waiters_blocking() {
    let _watchdog = watchdog();
    check_close_wakes_waiters(|pool| pool.acquire_blocking().map(drop));
}

#[test]
fn close_completes_when_lent_connection_is_detached() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    let idle = pool.acquire_blocking().unwrap();
    let lent = pool.acquire_blocking().unwrap();
    drop(idle);
    let closed = AtomicBool::new(false);
    let detached = thread::scope(|s| {
        let closer = s.spawn(|| {
            block_on(pool.close());
            closed.store(true, Ordering::SeqCst);
        });
        wait_until("the idle connection is destroyed", || {
            counts.destroyed() == 1
        });
        assert!(
            !closed.load(Ordering::SeqCst),
            "close completed with a connection lent"
        );
        let conn = lent.detach();
        closer.join().unwrap();
        conn
    });
    assert!(closed.load(Ordering::SeqCst));
    assert_metrics(&pool, 0, 0, 0);
    assert_eq!(
        (counts.destroyed(), counts.live()),
        (1, 1),
        "the detached one is ours"
    );
    assert_eq!(detached.id, 1);
}

/// Closing a pool in full use: every worker ends with `Closed` (never another error, never a
/// hang), and every connection is destroyed.
fn check_close_while_busy(close: impl FnOnce(&Pool)) {
    const WORKERS: usize = 8;
    let config = builder(3)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    let acquired = AtomicUsize::new(0);
    thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (pool, acquired) = (&pool, &acquired);
                s.spawn(move || {
                    for i in 0.. {
                        let result = if w % 2 == 0 {
                            pool.acquire_blocking()
                        } else {
                            block_on(pool.acquire())
                        };
                        match result {
                            Ok(mut conn) => {
                                acquired.fetch_add(1, Ordering::SeqCst);
                                if i % 7 == 0 {
                                    conn.mark_broken();
                                }
                                thread::yield_now();
                            }
                            Err(PoolError::Closed) => return i,
                            Err(e) => panic!("worker {w}, iteration {i}: {e}"),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        wait_until("the workers are busy", || {
            acquired.load(Ordering::SeqCst) >= 2_000
        });
        close(&pool);
        assert_eq!(counts.live(), 0, "close returned with connections open");
        for w in workers {
            w.join().unwrap();
        }
    });
    assert_metrics(&pool, 0, 0, 0);
    assert!(counts.peak() <= 3, "peak {}", counts.peak());
    assert_eq!(counts.created(), counts.destroyed());
}

#[test]
fn close_while_busy() {
    let _watchdog = watchdog();
    check_close_while_busy(|pool| block_on(pool.close()));
}

#[test]
fn close_while_busy_blocking() {
    let _watchdog = watchdog();
    check_close_while_busy(|pool| pool.close_blocking());
}

#[test]
fn dropping_the_last_handle_closes_the_pool() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    let clone = pool.clone();
    drop(pool.acquire_blocking().unwrap());
    drop(pool);
    assert!(!clone.is_closed(), "a clone keeps the pool open");
    drop(clone.acquire_blocking().unwrap());
    drop(clone);
    wait_until("the idle connection is destroyed", || counts.live() == 0);
    assert_eq!((counts.created(), counts.destroyed()), (1, 1));
}

// ----- expiry -----------------------------------------------------------------------------

const LIFETIME: Duration = Duration::from_secs(60);

/// A pool whose connection-age decisions follow a `ManualClock`, so expiry needs no sleep.
/// Lifetime jitter is off so that the lifetime is exact.
fn expiring_pool() -> (Pool, Arc<Script>, ManualClock) {
    let config = builder(2)
        .max_lifetime(LIFETIME)
        .max_lifetime_jitter(Duration::ZERO)
        .idle_timeout(None)
        .build()
        .unwrap();
    let (factory, counts) = ScriptedFactory::new();
    let clock = ManualClock::new();
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    (pool, counts, clock)
}

fn check_expired_idle<'p>(
    pool: &'p Pool,
    counts: &Script,
    clock: &ManualClock,
    acquire: impl Fn() -> PooledConnection<'p, ScriptedFactory>,
) {
    let old = acquire();
    assert_eq!(old.id, 0);
    drop(old);
    clock.advance(LIFETIME - Duration::from_millis(1));
    let again = acquire();
    assert_eq!(
        (again.id, again.use_count()),
        (0, 2),
        "reused until its lifetime is over"
    );
    drop(again);
    clock.advance(Duration::from_millis(1));
    let fresh = acquire();
    assert_eq!(fresh.id, 1, "an expired connection was lent");
    assert_eq!(fresh.use_count(), 1);
    wait_destroyed(pool, counts, 1);
    assert_eq!((counts.created(), counts.live()), (2, 1));
}

#[test]
fn expired_connections_are_replaced() {
    let _watchdog = watchdog();
    let (pool, counts, clock) = expiring_pool();
    check_expired_idle(&pool, &counts, &clock, || block_on(pool.acquire()).unwrap());
}

#[test]
fn expired_connections_are_replaced_blocking() {
    let _watchdog = watchdog();
    let (pool, counts, clock) = expiring_pool();
    check_expired_idle(&pool, &counts, &clock, || pool.acquire_blocking().unwrap());
}

#[test]
fn expired_connection_is_destroyed_when_returned() {
    let _watchdog = watchdog();
    let (pool, counts, clock) = expiring_pool();
    let conn = pool.acquire_blocking().unwrap();
    clock.advance(LIFETIME);
    drop(conn);
    wait_destroyed(&pool, &counts, 1);
    assert_eq!(counts.live(), 0);
    assert_metrics(&pool, 0, 0, 0);
    assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
}

/// The same on the real (coarse) clock, which the maintenance loop refreshes every 10 ms. Not a
/// race: the assertion holds for any sleep past the lifetime plus the clock's staleness; the
/// margin (250 ms) is far above that staleness even on a loaded machine.
#[test]
fn expired_connections_are_replaced_real_clock() {
    let _watchdog = watchdog();
    const SHORT_LIFETIME: Duration = Duration::from_millis(100);
    let config = builder(2)
        .max_lifetime(SHORT_LIFETIME)
        .idle_timeout(None)
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    let old = pool.acquire_blocking().unwrap();
    let old_id = old.id;
    drop(old);
    thread::sleep(SHORT_LIFETIME + Duration::from_millis(250));
    let fresh = block_on(pool.acquire()).unwrap();
    assert_ne!(fresh.id, old_id, "an expired connection was lent");
    assert_eq!(fresh.use_count(), 1);
    wait_destroyed(&pool, &counts, 1);
}

// ----- broken, detached and panicked connections -------------------------------------------

/// The application error of the `with_connection` tests.
#[derive(Debug)]
enum AppError {
    Pool(Error),
    Query(&'static str),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Pool(e)
    }
}

fn check_mark_broken<'p>(
    pool: &'p Pool,
    counts: &Script,
    acquire: impl Fn() -> PooledConnection<'p, ScriptedFactory>,
) {
    let mut conn = acquire();
    assert!(conn.is_healthy());
    conn.mark_broken();
    assert!(!conn.is_healthy());
    drop(conn);
    wait_destroyed(pool, counts, 1);
    // max is 1: the broken one's slot was freed.
    let fresh = acquire();
    assert_eq!((fresh.id, fresh.use_count()), (1, 1));
    drop(fresh);
    assert_metrics(pool, 1, 1, 0);
}

#[test]
fn broken_connection_is_destroyed() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    check_mark_broken(&pool, &counts, || block_on(pool.acquire()).unwrap());
}

#[test]
fn broken_connection_is_destroyed_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    check_mark_broken(&pool, &counts, || pool.acquire_blocking().unwrap());
}

#[test]
fn broken_connection_released_explicitly_is_destroyed() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    let mut conn = pool.acquire_blocking().unwrap();
    conn.mark_broken();
    pool.release(conn);
    wait_destroyed(&pool, &counts, 1);
    assert_eq!(pool.acquire_blocking().unwrap().id, 1);
}

fn check_detach<'p>(
    pool: &'p Pool,
    counts: &Script,
    acquire: impl Fn() -> PooledConnection<'p, ScriptedFactory>,
) {
    let conn: ScriptedConn = acquire().detach();
    assert_eq!(conn.id, 0);
    assert_metrics(pool, 0, 0, 0);
    // max is 1: the slot is free for a new one, and the detached one is not destroyed.
    let next = acquire();
    assert_eq!((next.id, next.use_count()), (1, 1));
    drop(next);
    pool.close_blocking();
    assert_eq!(
        counts.destroyed(),
        1,
        "only the pooled connection is destroyed by close"
    );
    assert_eq!(counts.live(), 1, "the detached connection is the caller's");
    let _ = conn; // the caller's to close
}

#[test]
fn detached_connection_leaves_the_pool() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    check_detach(&pool, &counts, || block_on(pool.acquire()).unwrap());
}

#[test]
fn detached_connection_leaves_the_pool_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    check_detach(&pool, &counts, || pool.acquire_blocking().unwrap());
}

#[test]
fn panicking_closure_destroys_connection_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    let result = catch_unwind(AssertUnwindSafe(|| {
        pool.with_connection_blocking(|conn| -> Result<(), AppError> {
            assert_eq!(conn.id, 0);
            panic!("boom in the closure");
        })
    }));
    assert!(result.is_err(), "the panic propagates");
    wait_destroyed(&pool, &counts, 1);
    let fresh = pool.acquire_blocking().unwrap();
    assert_eq!((fresh.id, fresh.use_count()), (1, 1), "not reused");
}

#[test]
fn panicking_closure_destroys_connection() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    let result = block_on(
        AssertUnwindSafe(pool.with_connection(async |conn| {
            assert_eq!(conn.id, 0);
            if conn.id == 0 {
                panic!("boom in the async closure");
            }
            Ok::<(), AppError>(())
        }))
        .catch_unwind(),
    );
    assert!(result.is_err(), "the panic propagates");
    wait_destroyed(&pool, &counts, 1);
    let fresh = block_on(pool.acquire()).unwrap();
    assert_eq!((fresh.id, fresh.use_count()), (1, 1), "not reused");
}

#[test]
fn panicking_holder_thread_destroys_connection() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    thread::scope(|s| {
        let r = s
            .spawn(|| {
                let _conn = pool.acquire_blocking().unwrap();
                panic!("holder thread dies");
            })
            .join();
        assert!(r.is_err());
    });
    wait_destroyed(&pool, &counts, 1);
    assert_eq!(pool.acquire_blocking().unwrap().id, 1);
}

#[test]
fn closure_error_still_releases_blocking() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    let r = pool.with_connection_blocking(|_conn| Err::<(), _>(AppError::Query("syntax error")));
    assert!(matches!(r, Err(AppError::Query("syntax error"))));
    assert_metrics(&pool, 1, 1, 0);
    let ok = pool.with_connection_blocking(|conn| Ok::<_, AppError>((conn.id, conn.use_count())));
    assert_eq!(ok.unwrap(), (0, 2), "the same connection, reused");
    assert_eq!(counts.destroyed(), 0);
}

#[test]
fn closure_error_still_releases() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(1));
    let r =
        block_on(pool.with_connection(async |_conn| Err::<(), _>(AppError::Query("syntax error"))));
    assert!(matches!(r, Err(AppError::Query("syntax error"))));
    assert_metrics(&pool, 1, 1, 0);
    let ok =
        block_on(pool.with_connection(async |conn| Ok::<_, AppError>((conn.id, conn.use_count()))));
    assert_eq!(ok.unwrap(), (0, 2), "the same connection, reused");
    assert_eq!(counts.destroyed(), 0);
}

#[test]
fn with_connection_reports_acquire_errors() {
    let _watchdog = watchdog();
    let (pool, _counts) = common::pool(common::config(1));
    pool.close_blocking();
    let r = pool.with_connection_blocking(|_| Ok::<(), AppError>(()));
    assert!(
        matches!(r, Err(AppError::Pool(PoolError::Closed))),
        "got {r:?}"
    );
    let r = block_on(pool.with_connection(async |_| Ok::<(), AppError>(())));
    assert!(
        matches!(r, Err(AppError::Pool(PoolError::Closed))),
        "got {r:?}"
    );
}

#[test]
fn with_connection_mutates_the_connection() {
    let _watchdog = watchdog();
    let (pool, _counts) = common::pool(common::config(1));
    let id = block_on(pool.with_connection(async |conn| {
        conn.id += 100;
        Ok::<_, Error>(conn.id)
    }))
    .unwrap();
    assert_eq!(id, 100);
    let id = pool
        .with_connection_blocking(|conn| Ok::<_, Error>(conn.id))
        .unwrap();
    assert_eq!(id, 100, "DerefMut reached the pooled connection");
}

// ----- scopes -----------------------------------------------------------------------------

fn named(name: &str) -> (Pool, Arc<Script>) {
    common::pool(builder(2).name(name).build().unwrap())
}

fn pool_names(scope: &ConnectionScope) -> Vec<String> {
    scope.held().into_iter().map(|h| h.pool).collect()
}

#[test]
fn scope_tracks_two_pools() {
    let _watchdog = watchdog();
    let (orders, orders_counts) = named("orders");
    let (users, users_counts) = named("users");
    let scope = ConnectionScope::new();
    assert!(scope.is_empty());
    block_on(async {
        let before = Instant::now();
        let a = scope.acquire(&orders).await.unwrap();
        let b = scope.acquire(&users).await.unwrap();
        let c = scope.acquire(&orders).await.unwrap();
        assert_eq!(pool_names(&scope), ["orders", "users", "orders"]);
        assert_eq!(scope.len(), 3);
        assert!(scope.held().iter().all(|h| h.acquired_at >= before));
        assert_eq!((a.id, b.id, c.id), (0, 0, 1));
        assert_eq!(a.use_count(), 1, "derefs to the pool's guard");
        drop(a);
        assert_eq!(pool_names(&scope), ["users", "orders"]);
        assert_eq!(orders.current_metrics().idle, 1, "released to its pool");
        drop((b, c));
    });
    assert!(scope.is_empty());
    assert_metrics(&orders, 2, 2, 0);
    assert_metrics(&users, 1, 1, 0);
    assert_eq!((orders_counts.created(), users_counts.created()), (2, 1));
}

#[test]
fn scope_tracks_two_pools_blocking() {
    let _watchdog = watchdog();
    let (orders, _) = named("orders");
    let (users, _) = named("users");
    let scope = ConnectionScope::new();
    {
        let mut a = scope.acquire_blocking(&orders).unwrap();
        let b = scope.acquire_blocking(&users).unwrap();
        assert_eq!(pool_names(&scope), ["orders", "users"]);
        a.mark_broken(); // DerefMut to the pool's guard
        drop(b);
        assert_eq!(pool_names(&scope), ["orders"]);
        assert_metrics(&users, 1, 1, 0);
        assert_metrics(&orders, 1, 0, 0);
    }
    assert!(scope.is_empty());
    assert_eq!(scope.len(), 0);
    wait_until("the broken connection is destroyed", || {
        orders.current_metrics().total == 0
    });
}

#[test]
fn scope_failed_acquire_tracks_nothing() {
    let _watchdog = watchdog();
    let (pool, _) = named("orders");
    pool.close_now();
    let scope = ConnectionScope::new();
    assert!(matches!(
        scope.acquire_blocking(&pool),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        block_on(scope.acquire(&pool)),
        Err(PoolError::Closed)
    ));
    assert!(scope.is_empty());
}

// ----- configuration ----------------------------------------------------------------------

#[track_caller]
fn refused(builder: nexus_pool::ConnectionPoolConfigBuilder, field: &str) {
    let err = builder
        .build()
        .expect_err("an invalid configuration was accepted");
    assert_eq!(err.field(), field, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{field}`")),
        "{text:?} names the field"
    );
}

#[test]
fn config_refuses_invalid_values() {
    let _watchdog = watchdog();
    let b = ConnectionPoolConfig::builder;
    let zero = Duration::ZERO;
    let sec = Duration::from_secs(1);
    refused(b().max_connections(0), "max_connections");
    refused(
        b().max_connections(MAX_CONNECTIONS_LIMIT + 1),
        "max_connections",
    );
    refused(b().max_connections(usize::MAX), "max_connections");
    refused(b().min_connections(5).max_connections(4), "min_connections");
    refused(b().acquire_timeout(zero), "acquire_timeout");
    refused(b().idle_timeout(zero), "idle_timeout");
    refused(b().max_lifetime(zero), "max_lifetime");
    refused(b().health_check_interval(zero), "health_check_interval");
    refused(b().idle_timeout(sec).max_lifetime(sec), "idle_timeout");
    refused(b().idle_timeout(2 * sec).max_lifetime(sec), "idle_timeout");
    refused(b().name(""), "name");
    refused(b().create_timeout(zero), "create_timeout");
    refused(b().check_timeout(zero), "check_timeout");
    refused(b().destroy_timeout(zero), "destroy_timeout");
    refused(
        b().leak_detection_threshold(zero),
        "leak_detection_threshold",
    );
    refused(b().max_concurrent_creates(0), "max_concurrent_creates");
    refused(b().create_backoff(zero, sec), "create_backoff");
    refused(b().create_backoff(2 * sec, sec), "create_backoff");
    refused(
        b().max_lifetime(sec).max_lifetime_jitter(sec),
        "max_lifetime_jitter",
    );
    refused(
        b().max_connections(4).max_connections_ceiling(3),
        "max_connections_ceiling",
    );
    refused(
        b().max_connections_ceiling(MAX_CONNECTIONS_LIMIT + 1),
        "max_connections_ceiling",
    );
}

#[test]
fn config_accepts_edge_values() {
    let _watchdog = watchdog();
    let b = ConnectionPoolConfig::builder;
    let sec = Duration::from_secs(1);
    let c = b().max_connections(MAX_CONNECTIONS_LIMIT).build().unwrap();
    assert_eq!(c.max_connections(), MAX_CONNECTIONS_LIMIT);
    let c = b().min_connections(3).max_connections(3).build().unwrap();
    assert_eq!((c.min_connections(), c.max_connections()), (3, 3));
    let c = b().idle_timeout(None).max_lifetime(sec).build().unwrap();
    assert_eq!((c.idle_timeout(), c.max_lifetime()), (None, Some(sec)));
    let c = b()
        .idle_timeout(2 * sec)
        .max_lifetime(None)
        .build()
        .unwrap();
    assert_eq!((c.idle_timeout(), c.max_lifetime()), (Some(2 * sec), None));
    let c = b().health_check_interval(None).build().unwrap();
    assert_eq!(c.health_check_interval(), None);
    let c = b()
        .idle_timeout(sec)
        .max_lifetime(sec + Duration::from_millis(1))
        .acquire_timeout(Duration::from_nanos(1))
        .build()
        .unwrap();
    assert_eq!(c.acquire_timeout(), Duration::from_nanos(1));
    assert_eq!(
        ConnectionPoolConfig::builder().build().unwrap(),
        ConnectionPoolConfig::default()
    );
}

// ----- try_acquire ------------------------------------------------------------------------

#[test]
fn try_acquire_never_waits_or_creates() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "nothing idle"
    );
    assert_eq!(counts.created(), 0, "try_acquire does not create");
    let a = pool.acquire_blocking().unwrap();
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "the only one is lent"
    );
    drop(a);
    let b = pool.try_acquire().expect("the returned connection is idle");
    assert_eq!((b.id, b.use_count()), (0, 2));
    assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
    drop(b);
    let e: Error = PoolError::Exhausted;
    assert!(e.to_string().contains("without waiting"));
    pool.close_blocking();
    assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
}

#[test]
fn try_acquire_yields_to_waiters_under_strict_fifo() {
    let _watchdog = watchdog();
    let config = builder(1)
        .acquire_timeout(Duration::from_secs(30))
        .fairness_bound(Duration::ZERO)
        .build()
        .unwrap();
    let (pool, _counts) = common::pool(config);
    let held = pool.acquire_blocking().unwrap();
    let (got_tx, got_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        // Owned here, so that a failing assertion drops it and the waiter stops waiting.
        let done_tx = done_tx;
        let pool = &pool;
        let waiter = s.spawn(move || {
            let conn = pool.acquire_blocking();
            got_tx
                .send(conn.as_ref().map(|c| c.use_count()).ok())
                .unwrap();
            // Hold it until the main thread has tried (and failed) to take it.
            done_rx.recv().unwrap();
            drop(conn);
        });
        wait_until("the waiter is registered", || {
            pool.current_metrics().waiting == 1
        });
        drop(held);
        // Whether or not the waiter has taken it yet (it is in the waiter's slot or lent to
        // it), the connection is not ours to take.
        assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
        assert_eq!(
            got_rx.recv().unwrap(),
            Some(2),
            "the waiter got the connection"
        );
        done_tx.send(()).unwrap();
        waiter.join().unwrap();
    });
    assert!(pool.try_acquire().is_ok(), "returned by the waiter");
}

// ----- metrics ----------------------------------------------------------------------------

#[test]
fn metrics_agree_with_factory_counts() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(5));
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting, m.max),
        (0, 0, 0, 0, 5)
    );
    assert_eq!(m.acquire_time, Duration::ZERO, "no acquire yet");

    let a = pool.acquire_blocking().unwrap();
    let mut b = block_on(pool.acquire()).unwrap();
    let c = pool.acquire_blocking().unwrap();
    let d = block_on(pool.acquire()).unwrap();
    assert_metrics(&pool, 4, 0, 0);
    assert_eq!(counts.live(), 4);
    assert!(
        pool.current_metrics().acquire_time > Duration::ZERO,
        "creates are slow acquires"
    );

    drop(a);
    assert_metrics(&pool, 4, 1, 0);
    b.mark_broken();
    drop(b);
    wait_destroyed(&pool, &counts, 1);
    assert_metrics(&pool, 3, 1, 0);
    let detached = c.detach();
    assert_metrics(&pool, 2, 1, 0);
    assert_eq!(counts.live(), 3, "pooled (2) + detached (1)");
    pool.release(d);
    assert_metrics(&pool, 2, 2, 0);
    assert_eq!(pool.current_metrics().total, counts.live() - 1);

    // A waiter shows up in `waiting`.
    let config = builder(1)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (small, _) = common::pool(config);
    let held = small.acquire_blocking().unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| small.acquire_blocking().map(drop));
        wait_until("the waiter is counted", || {
            small.current_metrics().waiting == 1
        });
        assert_metrics(&small, 1, 0, 1);
        drop(held);
        waiter.join().unwrap().unwrap();
    });
    assert_metrics(&small, 1, 1, 0);

    pool.close_blocking();
    assert_metrics(&pool, 0, 0, 0);
    assert_eq!(counts.live(), 1, "only the detached connection remains");
    assert_eq!(counts.destroyed(), 3);
    let _ = detached;
    let text = format!("{pool:?}");
    assert!(text.contains("nexus-pool"), "{text}");
}
