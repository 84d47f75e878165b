//! A waiting acquire allocates nothing once the pool has warmed up: the slow path's state lives
//! in the named future, and a waiter's slot comes from the wait list's free list.
//!
//! A counting global allocator counts the allocations made on the test's own thread while it
//! runs the cycle below by hand: take the only connection, start an acquire that must wait,
//! release, complete the acquire, release again.
#![cfg(feature = "async")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use common::ScriptedFactory;
use nexus_pool::{CheckoutValidation, ConnectionPool};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread whose allocations are counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    f();
    COUNTED.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// One waiting acquire: the only connection is held, the acquire waits, the holder releases,
/// the acquire completes with it.
fn waiting_cycle(pool: &ConnectionPool<ScriptedFactory>, cx: &mut Context<'_>) {
    let held = pool.try_acquire().expect("the connection is idle");
    let mut acquire = pin!(pool.acquire());
    assert!(acquire.as_mut().poll(cx).is_pending(), "it must wait");
    drop(held);
    match acquire.as_mut().poll(cx) {
        Poll::Ready(conn) => assert_eq!(conn.expect("served").id, 0),
        Poll::Pending => panic!("the release served the waiter"),
    }
}

#[test]
fn a_waiting_acquire_allocates_nothing() {
    const CYCLES: usize = 1_000;
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .max_connections(1)
        .min_connections(0)
        .checkout_validation(CheckoutValidation::Never)
        .health_check_interval(None)
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    drop(futures_lite::future::block_on(pool.acquire()).unwrap());
    // Warm-up: the wait list's queue and free list reach their size.
    waiting_cycle(&pool, &mut cx);
    let made = allocations(|| {
        for _ in 0..CYCLES {
            waiting_cycle(&pool, &mut cx);
        }
    });
    assert_eq!(made, 0, "{made} allocations in {CYCLES} waiting acquires");
}

/// The same with a `'static` owned future.
#[test]
fn a_waiting_owned_acquire_allocates_nothing() {
    const CYCLES: usize = 1_000;
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .max_connections(1)
        .min_connections(0)
        .checkout_validation(CheckoutValidation::Never)
        .health_check_interval(None)
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    drop(futures_lite::future::block_on(pool.acquire()).unwrap());
    let cycle = |cx: &mut Context<'_>| {
        let held = pool.try_acquire().expect("the connection is idle");
        let mut acquire = pin!(pool.acquire_owned());
        assert!(acquire.as_mut().poll(cx).is_pending());
        drop(held);
        assert!(matches!(acquire.as_mut().poll(cx), Poll::Ready(Ok(_))));
    };
    cycle(&mut cx);
    let made = allocations(|| {
        for _ in 0..CYCLES {
            cycle(&mut cx);
        }
    });
    assert_eq!(
        made, 0,
        "{made} allocations in {CYCLES} waiting owned acquires"
    );
}
