//! The async facade on every executor: one suite of scenarios, each written once as a generic
//! async function over a `Runtime` (how to block on a future and how to spawn a task), and run
//! under tokio (current-thread and multi-thread), smol, async-std, and
//! `futures_lite::future::block_on` on plain OS threads (no runtime at all).
//!
//! Tests are named `<scenario>_<runtime>`. Every run ends by closing the pool and checking that
//! every connection the factory made was destroyed, so a scenario that leaks fails.
//!
//! Waiting for another task is a bounded poll (`wait_until_async`) on an `async-io` timer, which works
//! under every executor; a watchdog aborts a run that hangs instead of stalling the suite.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::tracker::Tracker;
use common::wait::{wait_until_async, watchdog};
use common::{Error, LONG_TIMEOUT, Pool, SHORT_TIMEOUT, Script, timed_config};
use futures_lite::FutureExt;
use nexus_pool::{ConnectionPoolConfig, PoolError};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

// ----- runtimes ---------------------------------------------------------------------------

/// What a scenario needs from an executor.
trait Runtime: Sync {
    /// Runs `fut` to completion on the calling thread.
    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T;
    /// Spawns `fut` as a task; the returned future resolves to its output (re-raising a panic).
    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T>;
}

struct Tokio(tokio::runtime::Runtime);

impl Tokio {
    fn current_thread() -> Self {
        Tokio(
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        )
    }

    fn multi_thread() -> Self {
        Tokio(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .build()
                .unwrap(),
        )
    }
}

impl Runtime for Tokio {
    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        self.0.block_on(fut)
    }

    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        let handle = self.0.spawn(fut);
        Box::pin(async move {
            match handle.await {
                Ok(value) => value,
                Err(e) if e.is_panic() => resume_unwind(e.into_panic()),
                Err(e) => panic!("task failed: {e}"),
            }
        })
    }
}

struct Smol;

impl Runtime for Smol {
    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        smol::block_on(fut)
    }

    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        Box::pin(smol::spawn(fut))
    }
}

struct AsyncStd;

impl Runtime for AsyncStd {
    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        async_std::task::block_on(fut)
    }

    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        Box::pin(async_std::task::spawn(fut))
    }
}

/// No runtime: every task is an OS thread running `futures_lite::future::block_on`.
struct PlainThreads;

impl Runtime for PlainThreads {
    fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        futures_lite::future::block_on(fut)
    }

    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        let (tx, rx) = smol::channel::bounded(1);
        std::thread::spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| futures_lite::future::block_on(fut)));
            let _ = tx.try_send(result);
        });
        Box::pin(async move {
            match rx
                .recv()
                .await
                .expect("the task thread reports before it exits")
            {
                Ok(value) => value,
                Err(panic) => resume_unwind(panic),
            }
        })
    }
}

// ----- harness ----------------------------------------------------------------------------

/// Runs `scenario` on `rt` with a fresh pool, then closes the pool and checks that nothing leaked.
/// Aborts the process if the run takes longer than `common::wait::WATCHDOG` (a hang would stall the suite).
fn run<R: Runtime>(
    rt: R,
    config: ConnectionPoolConfig,
    scenario: impl AsyncFnOnce(&R, &Pool, &Arc<Script>),
) {
    let watchdog = watchdog();

    let (pool, counts) = common::pool(config);
    rt.block_on(scenario(&rt, &pool, &counts));
    rt.block_on(pool.close());
    assert!(pool.is_closed());
    assert_eq!(pool.current_metrics().total, 0);
    assert_eq!(counts.live(), 0, "every connection made was destroyed");
    assert_eq!(counts.created(), counts.destroyed());
    drop(watchdog);
}

// ----- scenarios --------------------------------------------------------------------------

/// Acquire and release reuse one connection, from the current task and from a spawned one.
async fn reuse<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    for round in 1..=10u64 {
        let conn = pool.acquire().await.unwrap();
        assert_eq!((conn.id, conn.use_count()), (0, round));
        pool.release(conn);
    }
    let p = pool.clone();
    let (id, uses) = rt
        .spawn(async move {
            let conn = p.acquire().await.unwrap();
            (conn.id, conn.use_count())
        })
        .await;
    assert_eq!((id, uses), (0, 11), "a spawned task reuses it too");
    assert_eq!(counts.created(), 1);
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.active, m.waiting), (1, 1, 0, 0));
}

/// 16 tasks and 4 blocking OS threads hammer a pool of 4.
async fn max_respected<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    const MAX: usize = 4;
    const TASKS: usize = 16;
    const THREADS: usize = 4;
    const ITERATIONS: usize = 500;
    let tracker = Arc::new(Tracker::default());

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, tracker) = (pool.clone(), tracker.clone());
            std::thread::spawn(move || {
                for i in 0..ITERATIONS {
                    let conn = pool
                        .acquire_blocking()
                        .unwrap_or_else(|e| panic!("thread {t}, iteration {i}: {e}"));
                    tracker.enter(&conn);
                    std::thread::yield_now();
                    tracker.leave(&conn);
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (pool, tracker) = (pool.clone(), tracker.clone());
            rt.spawn(async move {
                for i in 0..ITERATIONS {
                    let conn = pool
                        .acquire()
                        .await
                        .unwrap_or_else(|e| panic!("task {t}, iteration {i}: {e}"));
                    tracker.enter(&conn);
                    if i % 2 == 0 {
                        futures_lite::future::yield_now().await;
                    }
                    tracker.leave(&conn);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    // Every task is done and holds nothing, so the threads finish on their own.
    for thread in threads {
        thread.join().unwrap();
    }

    tracker.assert_within(counts, MAX);
    // A create started for a waiter that a returned connection served finishes on its own.
    wait_until_async("no create is in flight", || {
        pool.current_metrics().total == counts.live()
    })
    .await;
    let m = pool.current_metrics();
    assert_eq!(m.total, counts.live(), "total == live in {m:?}");
    assert_eq!(
        (m.idle, m.active, m.waiting),
        (m.total, 0, 0),
        "all returned: {m:?}"
    );
}

/// An acquire on an exhausted pool times out after `acquire_timeout`, here and in a task.
///
/// The connection is made in advance (`min_connections`, see `timeout_config`), so that no
/// acquire here depends on a create finishing within the short timeout on a loaded machine.
async fn timeout<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    wait_until_async("min_connections are made", || {
        pool.current_metrics().idle == 1
    })
    .await;
    fn check(result: Result<(), Error>) {
        match result {
            Err(PoolError::Timeout(t)) => {
                assert!(
                    t.waited >= SHORT_TIMEOUT,
                    "waited {:?} < {SHORT_TIMEOUT:?}",
                    t.waited
                );
                assert_eq!((t.total, t.max, t.idle), (1, 1, 0));
                assert!(t.last_create_error.is_none());
                assert!(t.to_string().contains("timed out"), "{t}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    let held = pool.acquire().await.unwrap();
    let started = Instant::now();
    check(pool.acquire().await.map(drop));
    assert!(started.elapsed() >= SHORT_TIMEOUT);
    let p = pool.clone();
    check(rt.spawn(async move { p.acquire().await.map(drop) }).await);
    assert_eq!(pool.current_metrics().waiting, 0, "no waiter left behind");
    drop(held);
    let conn = pool.acquire().await.unwrap();
    assert_eq!((conn.id, conn.use_count()), (0, 2));
    assert_eq!(counts.created(), 1);
}

/// Tasks waiting on an exhausted pool wake with `Closed` when it closes; `close().await` then
/// waits for the lent connection.
async fn close_wakes_waiters<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    const WAITERS: usize = 4;
    let held = pool.acquire().await.unwrap();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let p = pool.clone();
            rt.spawn(async move { p.acquire().await.map(|c| c.id) })
        })
        .collect();
    wait_until_async("every waiter is registered", || {
        pool.current_metrics().waiting == WAITERS
    })
    .await;

    let closed = Arc::new(AtomicBool::new(false));
    let (p, flag) = (pool.clone(), closed.clone());
    let closer = rt.spawn(async move {
        p.close().await;
        flag.store(true, Ordering::SeqCst);
    });
    for waiter in waiters {
        let result = waiter.await;
        assert!(matches!(result, Err(PoolError::Closed)), "got {result:?}");
    }
    assert!(pool.is_closed());
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    assert!(
        !closed.load(Ordering::SeqCst),
        "close completed with a connection lent"
    );
    assert_eq!(counts.live(), 1);
    drop(held);
    closer.await;
    assert_eq!(counts.live(), 0);
}

/// `close().await` destroys idle connections at once and waits for one lent to another task.
async fn close_waits_for_lent<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let (lent_tx, lent_rx) = smol::channel::bounded(1);
    let (back_tx, back_rx) = smol::channel::bounded::<()>(1);
    let p = pool.clone();
    let holder = rt.spawn(async move {
        let conn = p.acquire().await.unwrap();
        lent_tx.send(conn.id).await.unwrap();
        back_rx.recv().await.unwrap();
        drop(conn);
    });
    assert_eq!(lent_rx.recv().await.unwrap(), 2);
    drop((a, b));

    let closed = Arc::new(AtomicBool::new(false));
    let (p, flag) = (pool.clone(), closed.clone());
    let closer = rt.spawn(async move {
        p.close().await;
        flag.store(true, Ordering::SeqCst);
    });
    wait_until_async("the two idle connections are destroyed", || {
        counts.destroyed() == 2 && counts.live() == 1
    })
    .await;
    assert!(pool.is_closed());
    assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
    assert!(
        !closed.load(Ordering::SeqCst),
        "close completed with a connection lent"
    );
    assert_eq!(counts.live(), 1);
    back_tx.send(()).await.unwrap();
    holder.await;
    closer.await;
    assert!(closed.load(Ordering::SeqCst));
    assert_eq!((counts.live(), counts.destroyed()), (0, 3));
}

#[derive(Debug)]
enum AppError {
    Pool(Error),
    Query,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Pool(e)
    }
}

/// `with_connection` releases after success and error, destroys after a panic.
async fn with_connection<R: Runtime>(rt: &R, pool: &Pool, counts: &Arc<Script>) {
    let id = pool
        .with_connection(async |conn| {
            futures_lite::future::yield_now().await;
            Ok::<_, AppError>(conn.id)
        })
        .await
        .unwrap();
    assert_eq!(id, 0);

    let r = pool
        .with_connection(async |_conn| Err::<(), _>(AppError::Query))
        .await;
    assert!(matches!(r, Err(AppError::Query)), "got {r:?}");
    assert_eq!(pool.current_metrics().idle, 1, "released after an error");

    let p = pool.clone();
    let uses = rt
        .spawn(async move {
            p.with_connection(async |conn| Ok::<_, AppError>(conn.use_count()))
                .await
                .unwrap()
        })
        .await;
    assert_eq!(uses, 3, "reused by a spawned task");

    let r = AssertUnwindSafe(pool.with_connection(async |conn| {
        futures_lite::future::yield_now().await;
        if conn.id == 0 {
            panic!("boom in the async closure");
        }
        Ok::<(), AppError>(())
    }))
    .catch_unwind()
    .await;
    assert!(r.is_err(), "the panic propagates");
    wait_until_async(
        "the connection of the panicked closure is destroyed",
        || counts.destroyed() == 1,
    )
    .await;
    // max is 1: the slot was freed.
    let fresh = pool.acquire().await.unwrap();
    assert_eq!(
        (fresh.id, fresh.use_count()),
        (1, 1),
        "not reused after a panic"
    );
    drop(fresh);

    pool.close_now();
    let r = pool.with_connection(async |_| Ok::<(), AppError>(())).await;
    assert!(
        matches!(r, Err(AppError::Pool(PoolError::Closed))),
        "got {r:?}"
    );
}

// ----- the tests --------------------------------------------------------------------------

macro_rules! on_every_runtime {
    ($scenario:ident($config:expr) => $tokio_ct:ident, $tokio_mt:ident, $smol:ident, $async_std:ident, $no_runtime:ident) => {
        #[test]
        fn $tokio_ct() {
            run(Tokio::current_thread(), $config, $scenario);
        }

        #[test]
        fn $tokio_mt() {
            run(Tokio::multi_thread(), $config, $scenario);
        }

        #[test]
        fn $smol() {
            run(Smol, $config, $scenario);
        }

        #[test]
        fn $async_std() {
            run(AsyncStd, $config, $scenario);
        }

        #[test]
        fn $no_runtime() {
            run(PlainThreads, $config, $scenario);
        }
    };
}

on_every_runtime!(reuse(timed_config(4, LONG_TIMEOUT)) =>
    reuse_tokio_current_thread, reuse_tokio_multi_thread, reuse_smol, reuse_async_std,
    reuse_no_runtime);

on_every_runtime!(max_respected(timed_config(4, LONG_TIMEOUT)) =>
    max_respected_tokio_current_thread, max_respected_tokio_multi_thread, max_respected_smol,
    max_respected_async_std, max_respected_no_runtime);

fn timeout_config() -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(SHORT_TIMEOUT)
        .build()
        .unwrap()
}

on_every_runtime!(timeout(timeout_config()) =>
    timeout_tokio_current_thread, timeout_tokio_multi_thread, timeout_smol, timeout_async_std,
    timeout_no_runtime);

on_every_runtime!(close_wakes_waiters(timed_config(1, LONG_TIMEOUT)) =>
    close_wakes_waiters_tokio_current_thread, close_wakes_waiters_tokio_multi_thread,
    close_wakes_waiters_smol, close_wakes_waiters_async_std, close_wakes_waiters_no_runtime);

on_every_runtime!(close_waits_for_lent(timed_config(3, LONG_TIMEOUT)) =>
    close_waits_for_lent_tokio_current_thread, close_waits_for_lent_tokio_multi_thread,
    close_waits_for_lent_smol, close_waits_for_lent_async_std, close_waits_for_lent_no_runtime);

on_every_runtime!(with_connection(timed_config(1, LONG_TIMEOUT)) =>
    with_connection_tokio_current_thread, with_connection_tokio_multi_thread,
    with_connection_smol, with_connection_async_std, with_connection_no_runtime);
