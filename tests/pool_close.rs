//! The pool through its public API, closing: `close`, `close_blocking` and `close_now` wake the
//! waiters, wait for lent connections (or not), and leave nothing open.
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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::checks::{assert_metrics, wait_destroyed};
use common::wait::watchdog;
use common::{Error, Pool, builder, wait_until};
use futures_lite::future::block_on;
use nexus_pool::PoolError;

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
