//! Loom models of the core's races. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --features loom --test loom`.
//!
//! Each model builds a small pool whose connections exist up front (no maintenance loop runs
//! under loom: it needs timers) and explores every interleaving of the threads below, within
//! the preemption bound, under strict FIFO (`fairness_bound` zero: every returned connection is
//! handed to the oldest waiter) and under bounded fairness with waiting threads that are due at
//! once or stay young (see `BOUNDS`; tasks are always due at once). A lost wake-up shows up as a deadlock, a stranded connection as a
//! failed `try_acquire` at the end.
#![cfg(loom)]

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use loom::thread;
use nexus_pool::{
    CheckoutValidation, ConnectionFactory, ConnectionPool, ConnectionPoolConfig, MaintenanceMode,
    PoolError,
};

struct Numbers;

impl ConnectionFactory for Numbers {
    type Connection = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(7)
    }
}

/// The fairness bounds every model runs under: strict FIFO; a bound every waiting thread passes
/// at once (due: handed the next returned connection while newcomers may take what is idle);
/// and a bound no model outlives (young threads race newcomers).
const BOUNDS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_secs(10),
];

/// Explores `model` under each of `BOUNDS`.
fn each_mode(model: fn(Duration)) {
    for bound in BOUNDS {
        loom::model(move || model(bound));
    }
}

/// A pool of `n` ready connections with nothing time-driven switched on.
fn pool(n: usize, bound: Duration) -> Arc<ConnectionPool<Numbers>> {
    let config = ConnectionPoolConfig::builder()
        .acquire_timeout(Duration::from_secs(60))
        .fairness_bound(bound)
        .max_connections(n)
        .min_connections(n)
        .idle_timeout(None)
        .max_lifetime(None)
        .health_check_interval(None)
        .checkout_validation(CheckoutValidation::Never)
        .maintenance(MaintenanceMode::Spawned)
        .build()
        .unwrap();
    let built = loom::future::block_on(
        ConnectionPool::builder(Numbers)
            .config(config)
            .build_connected(),
    );
    Arc::new(built.unwrap())
}

/// Polls `fut` once; `true` if it finished.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> bool {
    loom::future::block_on(futures_lite::future::poll_fn(|cx| {
        Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx).is_ready())
    }))
}

/// Every connection can be taken at once, and nobody is left registered as waiting.
fn assert_whole(pool: &ConnectionPool<Numbers>, n: usize) {
    let held: Vec<_> = (0..n)
        .map(|i| {
            pool.try_acquire()
                .unwrap_or_else(|e| panic!("connection {i} lost: {e}"))
        })
        .collect();
    assert_eq!(held.len(), n);
    assert_eq!(pool.current_metrics().waiting, 0);
}

/// A release racing a waiter that registers: the waiter is always woken.
#[test]
fn release_during_acquire() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let waiter = thread::spawn({
            let pool = pool.clone();
            move || {
                let conn = loom::future::block_on(pool.acquire()).unwrap();
                assert_eq!(*conn, 7);
            }
        });
        drop(held);
        waiter.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// An acquire polled once (registered) and then dropped while the connection is released.
#[test]
fn concurrent_cancel() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let canceller = thread::spawn({
            let pool = pool.clone();
            move || {
                let mut acquire = pool.acquire();
                if poll_once(&mut acquire) {
                    // It may have been served at once if the release came first.
                    return;
                }
                drop(acquire);
            }
        });
        drop(held);
        canceller.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// A connection handed to a waiter that is being cancelled goes to the next waiter.
#[test]
fn handover_to_cancelled_waiter() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let second = thread::spawn({
            let pool = pool.clone();
            move || {
                let conn = loom::future::block_on(pool.acquire()).unwrap();
                assert_eq!(*conn, 7);
            }
        });
        let canceller = thread::spawn({
            let pool = pool.clone();
            move || {
                // Registered (or served at once), then dropped: a connection handed to it, or
                // held by it, must reach `second`.
                let mut first = pool.acquire();
                let _ = poll_once(&mut first);
                drop(first);
            }
        });
        drop(held);
        canceller.join().unwrap();
        second.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// Close racing an acquire and a release: the waiter gets the connection or `Closed`, never hangs.
#[test]
fn concurrent_close() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let waiter = thread::spawn({
            let pool = pool.clone();
            move || match loom::future::block_on(pool.acquire()) {
                Ok(conn) => assert_eq!(*conn, 7),
                Err(PoolError::Closed) => {}
                Err(other) => panic!("unexpected {other}"),
            }
        });
        let closer = thread::spawn({
            let pool = pool.clone();
            move || {
                pool.close_now();
            }
        });
        drop(held);
        closer.join().unwrap();
        waiter.join().unwrap();
        assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
    });
}

/// A blocking waiter and an async waiter queued together are both served.
#[test]
fn two_facades_waiting() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let blocking = thread::spawn({
            let pool = pool.clone();
            move || {
                let conn = pool.acquire_blocking().unwrap();
                assert_eq!(*conn, 7);
            }
        });
        let asynchronous = thread::spawn({
            let pool = pool.clone();
            move || {
                let conn = loom::future::block_on(pool.acquire()).unwrap();
                assert_eq!(*conn, 7);
            }
        });
        drop(held);
        blocking.join().unwrap();
        asynchronous.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// A waker that does nothing: the second waker of `new_waker_during_release`.
struct Noop;

impl std::task::Wake for Noop {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// A waiter polled again with a new waker (the slot swaps wakers with no lock held while it
/// clones and drops them) while the connection is released: the wake-up reaches whichever waker
/// is current, or is kept for the next poll, and the waiter is served.
#[test]
fn new_waker_during_release() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let waiter = thread::spawn({
            let pool = pool.clone();
            move || {
                let mut acquire = pool.acquire();
                if poll_once(&mut acquire) {
                    return;
                }
                let other = std::task::Waker::from(std::sync::Arc::new(Noop));
                let polled = std::pin::Pin::new(&mut acquire)
                    .poll(&mut std::task::Context::from_waker(&other));
                if polled.is_ready() {
                    return;
                }
                let conn = loom::future::block_on(acquire).unwrap();
                assert_eq!(*conn, 7);
            }
        });
        drop(held);
        waiter.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// A newcomer racing a waiting thread for a returned connection (under bounded fairness a young
/// thread is woken to take it itself, and the newcomer may take it first): whoever takes it,
/// the thread is served once it comes back, and nothing is stranded.
#[test]
fn newcomer_races_woken_waiter() {
    each_mode(|bound| {
        let pool = pool(1, bound);
        let held = pool.try_acquire().unwrap();
        let waiter = thread::spawn({
            let pool = pool.clone();
            move || {
                let conn = pool.acquire_blocking().unwrap();
                assert_eq!(*conn, 7);
            }
        });
        let newcomer = thread::spawn({
            let pool = pool.clone();
            move || {
                if let Ok(conn) = pool.try_acquire() {
                    drop(conn);
                }
            }
        });
        drop(held);
        newcomer.join().unwrap();
        waiter.join().unwrap();
        assert_whole(&pool, 1);
    });
}

/// Two connections returned while two threads wait. Under a young bound the first release wakes
/// the oldest thread to compete, and the second may leave its connection in `idle` for it without
/// locking the list (the first may sit in the idle queue's slot, so the second goes to the back
/// of the queue behind it), racing that thread's look: whichever wins, both threads are served
/// and nothing is stranded.
#[test]
fn release_left_to_a_competing_waiter() {
    each_mode(|bound| {
        let pool = pool(2, bound);
        let held = (pool.try_acquire().unwrap(), pool.try_acquire().unwrap());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                thread::spawn({
                    let pool = pool.clone();
                    move || {
                        let conn = pool.acquire_blocking().unwrap();
                        assert_eq!(*conn, 7);
                    }
                })
            })
            .collect();
        drop(held.0);
        drop(held.1);
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_whole(&pool, 2);
    });
}
