//! The pool through its public API, a connection's life: expiry by age, and connections marked
//! broken, detached, or whose holder panicked (also inside `with_connection`).
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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::checks::{assert_metrics, wait_destroyed};
use common::wait::watchdog;
use common::{Error, Pool, Script, ScriptedConn, ScriptedFactory, builder};
use futures_lite::FutureExt;
use futures_lite::future::block_on;
use nexus_pool::{ConnectionPool, ManualClock, PoolError, PooledConnection};

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
