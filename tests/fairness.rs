//! Bounded fairness (`fairness_bound`, the default), through the public API: a thread that has
//! waited the bound is handed the next returned connection; tasks are served first come, first
//! served; a zero bound makes threads strict too; nobody starves under load. (That a newcomer may
//! take a returned connection ahead of a *young* waiting thread is tested in
//! `src/core/waitlist.rs`, where the thread's wait can be polled by hand.)
//!
//! Async waiters here are polled by hand, so "woken" and "served" are observed, not raced. The
//! only sleeps make a waiting thread due (waited past the bound); sleeping longer only makes it
//! more due, so no assertion depends on their length.

#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::polled::Polled;
use common::{Refused, Script, ScriptedFactory, wait_until};
use nexus_pool::{ConnectionPool, PoolError, PooledConnection};

/// A bound no test outlives: every waiter stays young.
const YOUNG: Duration = Duration::from_secs(20);
/// A short bound, and a sleep well past it: a waiting thread is due.
const SHORT: Duration = Duration::from_millis(1);
const PAST_SHORT: Duration = Duration::from_millis(10);

type Conn<'p> = PooledConnection<'p, ScriptedFactory>;
type Acquired<'p> = Result<Conn<'p>, PoolError<Refused>>;

fn pool(max: usize, bound: Duration) -> (ConnectionPool<ScriptedFactory>, Arc<Script>) {
    let config = common::builder(max)
        .acquire_timeout(Duration::from_secs(60))
        .fairness_bound(bound)
        .build()
        .unwrap();
    common::pool(config)
}

/// Takes every connection of `pool` (creating them), so that the next acquire waits.
fn hold_all(pool: &ConnectionPool<ScriptedFactory>, max: usize) -> Vec<Conn<'_>> {
    (0..max).map(|_| pool.acquire_blocking().unwrap()).collect()
}

/// An acquire polled by hand.
struct Waiter<'p>(Polled<'p, Acquired<'p>>);

impl<'p> Waiter<'p> {
    /// Starts an acquire and polls it once: it must queue.
    fn queue(pool: &'p ConnectionPool<ScriptedFactory>) -> Self {
        let mut w = Waiter(Polled::new(pool.acquire()));
        assert!(w.0.poll().is_none(), "the acquire queues");
        w
    }

    fn wakes(&self) -> usize {
        self.0.wake_count()
    }

    fn served(&mut self) -> Conn<'p> {
        match self.0.poll() {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => panic!("the waiter failed: {e}"),
            None => panic!("the waiter was not served"),
        }
    }
}

#[test]
fn tasks_are_served_first_come_first_served() {
    // A task's wake-up is cheap, so a waiting task is due at once: the connection returned while
    // it waits is its own, however young it is.
    let (pool, _) = pool(1, YOUNG);
    let mut held = hold_all(&pool, 1);
    let mut waiters: Vec<_> = (0..4).map(|_| Waiter::queue(&pool)).collect();
    let mut conn = held.pop().unwrap();
    for i in 0..waiters.len() {
        drop(conn);
        for (j, w) in waiters.iter().enumerate().skip(i + 1) {
            assert_eq!(w.wakes(), 0, "waiter {j} is not woken before waiter {i}");
        }
        assert!(
            matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
            "a newcomer does not take waiter {i}'s connection"
        );
        conn = waiters[i].served();
    }
    drop(conn);
    assert!(pool.try_acquire().is_ok(), "nothing lost");
}

#[test]
fn a_due_thread_is_handed_the_next_returned_connection() {
    // A thread waiting in `acquire_blocking` may be passed over while it is young (see the
    // unit tests in `src/core/waitlist.rs`, which poll its wait by hand); once it has waited
    // the bound, the next returned connection is its own.
    the_waiting_thread_gets_the_return(
        SHORT,
        PAST_SHORT,
        "a due thread's connection is not a newcomer's",
    );
}

#[test]
fn a_zero_bound_hands_every_connection_to_the_oldest_thread() {
    the_waiting_thread_gets_the_return(
        Duration::ZERO,
        Duration::ZERO,
        "strict: the returned connection is the waiting thread's",
    );
}

/// One thread waits on a pool of one held connection; after `waited` the connection comes back,
/// and a newcomer's `try_acquire` must find nothing: it went to the waiting thread.
fn the_waiting_thread_gets_the_return(bound: Duration, waited: Duration, why: &str) {
    let (pool, _) = pool(1, bound);
    let mut held = hold_all(&pool, 1);
    thread::scope(|s| {
        // The waiter keeps its connection until the test has looked, so that it cannot go
        // back to `idle` before the test's `try_acquire`.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let pool = &pool;
        let waiter = s.spawn(move || {
            let conn = pool.acquire_blocking().ok()?;
            let _ = done_rx.recv();
            Some(conn.id)
        });
        wait_until("the thread waits", || pool.current_metrics().waiting == 1);
        thread::sleep(waited);
        drop(held.pop());
        assert!(
            matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
            "{why}"
        );
        done_tx.send(()).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(0));
    });
    assert!(pool.try_acquire().is_ok(), "nothing lost");
}

#[test]
fn a_connection_made_for_a_waiter_is_handed_to_it() {
    // The pool starts empty: the waiter's demand makes a connection, which is handed to it
    // whatever its age (nobody else is about to come back for it), so no second one is made.
    let (pool, counts) = pool(2, YOUNG);
    let mut waiter = Waiter::queue(&pool);
    wait_until("the waiter is served", || waiter.wakes() > 0);
    assert!(
        counts.created() == 1,
        "one connection for one waiter (made {})",
        counts.created()
    );
    let conn = waiter.served();
    assert_eq!(conn.id, 0);
    assert_eq!(pool.current_metrics().total, 1);
}

#[test]
fn no_thread_starves_with_more_threads_than_connections() {
    // Threads outnumber connections 8 to 1 and take them back at once after each use; a
    // barging pool can starve some for the whole run. Each thread here must be served many
    // times within the run, and nobody times out.
    const THREADS: usize = 16;
    const EACH: usize = 200;
    let config = common::builder(2)
        .acquire_timeout(Duration::from_secs(30))
        .fairness_bound(SHORT)
        .build()
        .unwrap();
    let (pool, _) = common::pool(config);
    let longest = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut longest = Duration::ZERO;
                    for _ in 0..EACH {
                        let t = Instant::now();
                        let conn = pool.acquire_blocking().expect("no acquire times out");
                        longest = longest.max(t.elapsed());
                        std::hint::black_box(&conn);
                        thread::yield_now();
                    }
                    longest
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    });
    let m = pool.current_metrics();
    assert_eq!((m.waiting, m.active), (0, 0), "{m:?}");
    eprintln!("{THREADS} threads x {EACH} acquires on 2 connections: longest wait {longest:?}");
}
