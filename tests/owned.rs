//! Owned guards (`acquire_owned`, `acquire_owned_blocking`, `try_acquire_owned`) and the weak
//! pool handle.
//!
//! - An owned guard is `'static`: it moves into tokio, smol and plain-thread work and goes back to
//!   the pool from there.
//! - It does not keep the pool open: dropping every handle while guards are out closes the pool,
//!   each lent connection is destroyed when its guard drops, and then nothing is left (the
//!   factory, which the pool's shared state owns, is dropped too).
//! - `AcquireOwned` futures are cancellation safe at every point, and queue in the same FIFO as
//!   borrowed acquires.
//!
//! Waiting is deterministic: queue positions are observed through `current_metrics().waiting`,
//! futures are polled by hand with counting wakers, and "eventually" is `common::wait_until`.

#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use common::polled::Polled;
use common::queue::{
    SWEEP_FUTURES, SWEEP_MAX, SWEEP_ROUNDS, VictimWas, assert_no_slot_lost, sweep, wait_for_waiting,
};
use common::wait::until_served;
use common::{
    LONG_TIMEOUT, Refused, SHORT_TIMEOUT, Script, ScriptedFactory, timed_config, wait_until,
};
use nexus_pool::{
    ConnectionPool, ConnectionScope, OwnedPooledConnection, PoolError, PooledConnection,
    WeakConnectionPool,
};

// ----- sizes and timings ----------------------------------------------------------------------

/// Waiters of each kind in the FIFO test.
const FIFO_EACH: usize = 2;

// ----- helpers --------------------------------------------------------------------------------

type Owned = OwnedPooledConnection<ScriptedFactory>;

fn pool(max: usize) -> (ConnectionPool<ScriptedFactory>, Arc<Script>) {
    common::pool(timed_config(max, LONG_TIMEOUT))
}

/// Once every pool handle is gone: every connection the factory made was destroyed, and the
/// pool's shared state (which owns the factory and its `Arc<Script>`) was dropped.
#[track_caller]
fn assert_all_gone(counts: &Arc<Script>) {
    wait_until("every connection is destroyed", || {
        counts.live() == 0 && counts.destroyed() == counts.created()
    });
    wait_until("the pool's shared state is dropped", || {
        Arc::strong_count(counts) == 1
    });
}

/// `acquire_owned_blocking`, retried while it times out: with a short `acquire_timeout` the
/// maintenance thread may be late to create the connection on a loaded machine.
#[track_caller]
fn acquire_owned_patiently(pool: &ConnectionPool<ScriptedFactory>) -> Owned {
    until_served("a connection can be acquired (a slot lost?)", || {
        pool.acquire_owned_blocking()
    })
}

/// Either kind of guard, so that one queue of hand-polled tasks can mix them.
#[allow(dead_code)] // the guards are held for their drop
enum Guard<'p> {
    Borrowed(PooledConnection<'p, ScriptedFactory>),
    Owned(Owned),
}

/// An acquire future (owned or borrowed) polled by hand, like an executor would: only after its
/// waker fired.
type Task<'p> = Polled<'p, Result<Guard<'p>, PoolError<Refused>>>;

impl<'p> Task<'p> {
    fn owned(pool: &ConnectionPool<ScriptedFactory>) -> Self {
        let acquire = pool.acquire_owned();
        Task::new(async move { acquire.await.map(Guard::Owned) })
    }

    fn borrowed(pool: &'p ConnectionPool<ScriptedFactory>) -> Self {
        let acquire = pool.acquire();
        Task::new(async move { acquire.await.map(Guard::Borrowed) })
    }
}

// ----- 1. the guard itself --------------------------------------------------------------------

/// The guard and its future are `'static` and `Send`; the weak handle is `Send + Sync`.
#[test]
fn owned_types_are_static_and_send() {
    fn static_send<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    static_send::<Owned>();
    static_send::<nexus_pool::futures::AcquireOwned<ScriptedFactory>>();
    send_sync::<Owned>();
    send_sync::<WeakConnectionPool<ScriptedFactory>>();
}

/// The owned guard has the borrowed guard's methods, with the same effects.
#[test]
fn owned_guard_methods() {
    let (pool, counts) = pool(2);
    let mut conn = pool.acquire_owned_blocking().unwrap();
    assert_eq!(conn.id, 0, "Deref");
    conn.id = 0; // DerefMut
    assert_eq!(conn.use_count(), 1);
    assert!(conn.is_healthy());
    assert_eq!(conn.last_used_at(), conn.created_at());
    let debug = format!("{conn:?}");
    assert!(debug.starts_with("OwnedPooledConnection"), "{debug}");
    drop(conn);
    let conn = pool.try_acquire_owned().unwrap();
    assert_eq!(conn.use_count(), 2, "reused from idle");

    let mut broken = conn;
    broken.mark_broken();
    assert!(!broken.is_healthy());
    drop(broken);
    wait_until("the broken connection is destroyed", || {
        counts.destroyed() == 1
    });

    let detached = pool.acquire_owned_blocking().unwrap().detach();
    assert_eq!(pool.current_metrics().total, 0, "the pool forgot it");
    assert_eq!(detached.id, 1, "the connection made after the broken one");
    // Closing a detached connection is the caller's job: do what the factory's destroy would.
    drop(detached);
    assert_no_slot_lost(&pool, &counts);
}

/// The owned facades time out, refuse when exhausted, and fail once closed, as the borrowed ones.
#[test]
fn owned_errors() {
    let (pool, counts) = common::pool(timed_config(1, SHORT_TIMEOUT));
    let held = acquire_owned_patiently(&pool);
    assert!(matches!(
        pool.try_acquire_owned(),
        Err(PoolError::Exhausted)
    ));
    assert!(matches!(
        pool.acquire_owned_blocking(),
        Err(PoolError::Timeout(_))
    ));
    assert!(matches!(
        futures_lite::future::block_on(pool.acquire_owned()),
        Err(PoolError::Timeout(_))
    ));
    assert_eq!(pool.current_metrics().waiting, 0);
    drop(held);
    assert_no_slot_lost(&pool, &counts);
    pool.close_blocking();
    assert!(matches!(pool.try_acquire_owned(), Err(PoolError::Closed)));
    assert!(matches!(
        pool.acquire_owned_blocking(),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        futures_lite::future::block_on(pool.acquire_owned()),
        Err(PoolError::Closed)
    ));
}

/// A guard that is dropped while its holder panics is destroyed, not reused.
#[test]
fn owned_guard_dropped_in_panic_is_destroyed() {
    common::quiet_panics_starting_with("owned: on purpose");
    let (pool, counts) = pool(1);
    let conn = pool.acquire_owned_blocking().unwrap();
    let outcome = thread::spawn(move || {
        let _conn = conn;
        panic!("owned: on purpose");
    })
    .join();
    assert!(outcome.is_err());
    wait_until("the connection is destroyed", || counts.destroyed() == 1);
    assert_no_slot_lost(&pool, &counts);
}

/// `with_connection` and `ConnectionScope` keep working next to owned guards: they share the
/// pool's slots.
#[test]
fn scoped_use_next_to_owned_guards() {
    let (pool, counts) = pool(2);
    let owned = pool.acquire_owned_blocking().unwrap();
    let id = pool
        .with_connection_blocking(|conn| Ok::<_, PoolError<Refused>>(conn.id))
        .unwrap();
    assert_ne!(id, owned.id);
    let scope = ConnectionScope::new();
    let scoped = scope.acquire_blocking(&pool).unwrap();
    assert_eq!(scoped.id, id, "the connection with_connection gave back");
    assert!(matches!(
        pool.try_acquire_owned(),
        Err(PoolError::Exhausted)
    ));
    drop(scoped);
    drop(owned);
    // A scope tracks owned guards too; they borrow the scope, not the pool.
    let (a, b) = futures_lite::future::block_on(async {
        let a = scope.acquire_owned(&pool).await.unwrap();
        (a, scope.acquire_owned_blocking(&pool).unwrap())
    });
    assert_eq!(scope.len(), 2);
    assert_eq!(
        a.use_count() + b.use_count(),
        1 + 2 + 2,
        "both reused, one for the third time"
    );
    drop((a, b));
    assert!(scope.is_empty());
    futures_lite::future::block_on(async {
        pool.with_connection(async |conn| Ok::<_, PoolError<Refused>>(conn.id))
            .await
    })
    .unwrap();
    assert_no_slot_lost(&pool, &counts);
}

// ----- 2. moving guards into other runtimes ---------------------------------------------------

/// Owned guards (and an owned acquire future) move into `tokio::spawn` and `spawn_blocking` on
/// a multi-thread runtime, and come back to the pool from there.
#[test]
fn tokio_spawn_and_spawn_blocking() {
    let (pool, counts) = pool(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = pool.acquire_owned().await.unwrap();
        let id = tokio::spawn(async move {
            tokio::task::yield_now().await;
            conn.id
        })
        .await
        .unwrap();
        let conn = pool.acquire_owned().await.unwrap();
        assert_eq!(conn.id, id, "the spawned task gave it back");
        let id = tokio::task::spawn_blocking(move || conn.id).await.unwrap();
        // The future itself is 'static too: the whole acquire runs in the task.
        let conn = tokio::spawn(pool.acquire_owned()).await.unwrap().unwrap();
        assert_eq!(conn.id, id);
    });
    drop(rt);
    assert_eq!(pool.current_metrics().active, 0);
    assert_no_slot_lost(&pool, &counts);
}

/// The same on smol: `smol::spawn` and `smol::unblock`.
#[test]
fn smol_spawn_and_unblock() {
    let (pool, counts) = pool(2);
    smol::block_on(async {
        let conn = pool.acquire_owned().await.unwrap();
        let id = smol::spawn(async move {
            smol::future::yield_now().await;
            conn.id
        })
        .await;
        let conn = pool.acquire_owned().await.unwrap();
        assert_eq!(conn.id, id);
        let id = smol::unblock(move || conn.id).await;
        let conn = smol::spawn(pool.acquire_owned()).await.unwrap();
        assert_eq!(conn.id, id);
    });
    assert_eq!(pool.current_metrics().active, 0);
    assert_no_slot_lost(&pool, &counts);
}

/// And into a plain thread, from each of the three owned facades.
#[test]
fn plain_thread() {
    let (pool, counts) = pool(3);
    let guards = vec![
        pool.acquire_owned_blocking().unwrap(),
        futures_lite::future::block_on(pool.acquire_owned()).unwrap(),
    ];
    let workers: Vec<_> = guards
        .into_iter()
        .map(|conn| thread::spawn(move || conn.id))
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let conn = pool.try_acquire_owned().unwrap();
    thread::spawn(move || drop(conn)).join().unwrap();
    assert_eq!(pool.current_metrics().idle, 2);
    assert_no_slot_lost(&pool, &counts);
}

// ----- 3. dropping the pool while guards are out -----------------------------------------------

/// Every handle is dropped while owned guards are out on a tokio task, a smol task and a plain
/// thread: the pool closes at once (a pending owned acquire fails with `Closed`, the weak handle
/// no longer upgrades, idle connections are destroyed), the lent connections live on until their
/// guards drop, and then every connection is destroyed and the shared state is freed.
#[test]
fn pool_closes_when_the_last_handle_drops_with_guards_out() {
    let (pool, counts) = pool(4);
    let weak = pool.downgrade();
    let on_tokio = pool.acquire_owned_blocking().unwrap();
    let on_smol = futures_lite::future::block_on(pool.acquire_owned()).unwrap();
    let on_thread = pool.acquire_owned_blocking().unwrap();
    drop(pool.acquire_blocking().unwrap());
    let in_main = pool.try_acquire_owned().expect("the idle connection");
    assert_eq!(counts.live(), 4);
    // Nothing idle and no room to create: it waits for a held connection, until the pool closes.
    let mut pending = Task::owned(&pool);
    assert!(pending.poll().is_none());
    wait_for_waiting(&pool, 1);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let (release_tokio, tokio_go) = tokio::sync::oneshot::channel::<()>();
    let tokio_task = rt.spawn(async move {
        tokio_go.await.unwrap();
        drop(on_tokio);
    });
    let (release_smol, smol_go) = smol::channel::bounded::<()>(1);
    let smol_task = smol::spawn(async move {
        smol_go.recv().await.unwrap();
        drop(on_smol);
    });
    let smol_driver = thread::spawn(move || smol::block_on(smol_task));
    let (release_thread, thread_go) = mpsc::channel::<()>();
    let plain = thread::spawn(move || {
        thread_go.recv().unwrap();
        drop(on_thread);
    });

    drop(pool);
    assert!(weak.upgrade().is_none(), "no strong handle is left");
    wait_until("the pending owned acquire is woken", || pending.woken());
    assert!(
        matches!(pending.poll(), Some(Err(PoolError::Closed))),
        "the pool closed with its last handle"
    );
    drop(in_main); // goes back to a closed pool: destroyed
    wait_until("the returned connection is destroyed", || {
        counts.destroyed() == 1
    });
    assert_eq!(
        counts.live(),
        3,
        "lent connections are not destroyed under their holders"
    );

    release_tokio.send(()).unwrap();
    rt.block_on(tokio_task).unwrap();
    wait_until("the tokio task's connection is destroyed", || {
        counts.live() == 2
    });
    release_smol.send_blocking(()).unwrap();
    smol_driver.join().unwrap();
    release_thread.send(()).unwrap();
    plain.join().unwrap();
    drop(pending);
    assert_all_gone(&counts);
}

/// An owned acquire future can outlive every pool handle: it ends with `Closed` and frees what
/// it held.
#[test]
fn owned_future_outliving_the_pool() {
    let (pool, counts) = pool(1);
    let held = pool.acquire_owned_blocking().unwrap();
    let fut = pool.acquire_owned();
    let never_polled = pool.acquire_owned();
    drop(pool);
    assert!(matches!(
        futures_lite::future::block_on(fut),
        Err(PoolError::Closed)
    ));
    drop(never_polled);
    drop(held);
    assert_all_gone(&counts);
}

// ----- 4. the weak handle ---------------------------------------------------------------------

/// `upgrade` works while any strong handle lives (clones and upgraded handles count), fails once
/// the last is dropped, and a weak handle never keeps the pool open.
#[test]
fn weak_upgrade_and_downgrade() {
    let (pool, counts) = pool(2);
    let weak = pool.downgrade();
    let weak2 = weak.clone();
    let clone = pool.clone();
    drop(pool);
    let upgraded = weak.upgrade().expect("a clone is alive");
    assert!(!upgraded.is_closed());
    drop(clone);
    assert!(weak2.upgrade().is_some(), "the upgraded handle is strong");
    let conn = upgraded.acquire_owned_blocking().unwrap();
    assert_eq!(format!("{weak:?}"), "WeakConnectionPool { .. }");

    drop(upgraded);
    assert!(weak.upgrade().is_none());
    assert!(
        weak2.upgrade().is_none(),
        "an owned guard is not a strong handle"
    );
    drop(conn);
    assert_all_gone(&counts);
    assert!(weak.upgrade().is_none());
}

/// A pool closed by `close_now` while handles remain still upgrades, to a closed pool.
#[test]
fn weak_upgrade_of_a_closed_pool() {
    let (pool, _counts) = pool(1);
    let weak = pool.downgrade();
    pool.close_now();
    let again = weak.upgrade().expect("a strong handle is alive");
    assert!(again.is_closed());
}

/// A background thread that reaches the pool through a weak handle stops by itself once the
/// application drops its pool, and does not delay the close.
#[test]
fn weak_handle_in_a_background_task() {
    let (pool, counts) = pool(1);
    let weak = pool.downgrade();
    let rounds = Arc::new(AtomicUsize::new(0));
    let background = thread::spawn({
        let rounds = rounds.clone();
        move || {
            while let Some(pool) = weak.upgrade() {
                drop(pool.try_acquire_owned());
                rounds.fetch_add(1, Ordering::SeqCst);
                drop(pool);
                thread::yield_now();
            }
        }
    });
    wait_until("the background task ran", || {
        rounds.load(Ordering::SeqCst) > 0
    });
    drop(pool);
    background.join().unwrap();
    assert_all_gone(&counts);
}

// ----- 5. FIFO shared with borrowed acquires, and cancellation --------------------------------

/// With the only connection held, waiters of all four kinds queue in a known order (owned and
/// borrowed futures, owned and borrowed blocking threads, interleaved): they are served in that
/// order.
#[test]
fn fifo_shared_with_borrowed_acquires() {
    let (pool, counts) = pool(1);
    let held = pool.acquire_owned_blocking().unwrap();
    let log = Mutex::new(Vec::new());
    let waiters = 4 * FIFO_EACH;
    thread::scope(|s| {
        let mut tasks: Vec<(usize, Task<'_>)> = Vec::new();
        for i in 0..waiters {
            match i % 4 {
                0 => tasks.push((i, Task::owned(&pool))),
                1 => tasks.push((i, Task::borrowed(&pool))),
                kind => {
                    let (pool, log) = (&pool, &log);
                    s.spawn(move || {
                        let conn = if kind == 2 {
                            Guard::Owned(pool.acquire_owned_blocking().unwrap())
                        } else {
                            Guard::Borrowed(pool.acquire_blocking().unwrap())
                        };
                        log.lock().unwrap().push(i);
                        drop(conn);
                    });
                }
            }
            if let Some((_, task)) = tasks.last_mut().filter(|(at, _)| *at == i) {
                assert!(task.poll().is_none(), "waiter {i} queued");
            }
            wait_for_waiting(&pool, i + 1);
        }
        drop(held);
        wait_until("every waiter is served", || {
            for (i, task) in &mut tasks {
                if task.is_pending() && task.woken() {
                    if let Some(result) = task.poll() {
                        let conn = result.expect("served");
                        log.lock().unwrap().push(*i);
                        drop(conn);
                    }
                }
            }
            log.lock().unwrap().len() == waiters
        });
    });
    assert_eq!(*log.lock().unwrap(), (0..waiters).collect::<Vec<_>>());
    assert_no_slot_lost(&pool, &counts);
}

/// One scenario: `SWEEP_MAX` connections held, `SWEEP_FUTURES` futures queued (owned at even
/// positions, borrowed at odd ones), then rounds of "release the oldest held connection, poll
/// the woken futures", with future `victim` dropped at point `drop_at`. The rest must be served
/// in queue order and the audit must pass.
fn sweep_scenario(victim: usize, drop_at: usize) -> VictimWas {
    let (pool, counts) = pool(SWEEP_MAX);
    let ctx = format!("victim {victim} dropped at point {drop_at}");
    let mut held: Vec<(Option<usize>, Guard<'_>)> = (0..SWEEP_MAX)
        .map(|_| (None, Guard::Owned(pool.acquire_owned_blocking().unwrap())))
        .collect();
    let mut tasks: Vec<Task<'_>> = (0..SWEEP_FUTURES)
        .map(|i| {
            if i % 2 == 0 {
                Task::owned(&pool)
            } else {
                Task::borrowed(&pool)
            }
        })
        .collect();
    for (i, task) in tasks.iter_mut().enumerate() {
        assert!(
            task.poll().is_none(),
            "future {i} completed with nothing idle"
        );
        assert_eq!(pool.current_metrics().waiting, i + 1, "future {i} queued");
    }
    let mut served = Vec::new();
    let mut was = None;
    let mut point = 0;
    for _ in 0..SWEEP_ROUNDS {
        for phase in 0..2 {
            if point == drop_at {
                let task = &mut tasks[victim];
                was = Some(if task.is_pending() {
                    let was = if task.woken() {
                        VictimWas::Woken
                    } else {
                        VictimWas::Queued
                    };
                    task.fut = None;
                    was
                } else {
                    match held.iter().position(|(owner, _)| *owner == Some(victim)) {
                        Some(at) => {
                            held.remove(at);
                            VictimWas::Holding
                        }
                        None => VictimWas::Released,
                    }
                });
            }
            point += 1;
            if phase == 0 {
                if !held.is_empty() {
                    held.remove(0);
                }
            } else {
                poll_woken(&mut tasks, &mut held, &mut served, &ctx);
            }
        }
    }
    let was = was.expect("the drop point is inside the script");
    held.clear();
    wait_until(&format!("every future is served ({ctx})"), || {
        poll_woken(&mut tasks, &mut held, &mut served, &ctx);
        held.clear();
        tasks.iter().all(|t| !t.is_pending())
    });
    let expected: Vec<usize> = (0..SWEEP_FUTURES)
        .filter(|&i| i != victim || matches!(was, VictimWas::Holding | VictimWas::Released))
        .collect();
    assert_eq!(served, expected, "service order ({ctx}, was {was:?})");
    drop(tasks);
    assert_no_slot_lost(&pool, &counts);
    was
}

/// Polls every pending task whose waker fired, in queue order, keeping what they get in `held`.
fn poll_woken<'p>(
    tasks: &mut [Task<'p>],
    held: &mut Vec<(Option<usize>, Guard<'p>)>,
    served: &mut Vec<usize>,
    ctx: &str,
) {
    for (i, task) in tasks.iter_mut().enumerate() {
        if task.is_pending() && task.woken() {
            if let Some(result) = task.poll() {
                served.push(i);
                held.push((Some(i), result.unwrap_or_else(|e| panic!("{ctx}: {e}"))));
            }
        }
    }
}

/// Dropping an owned (or borrowed) acquire future at every point, queued, woken mid-handover,
/// or holding its connection, loses no slot and no wake-up, and the others keep FIFO order.
#[test]
fn cancellation_sweep_owned() {
    sweep(sweep_scenario);
}

/// An owned acquire that waits for a create (nothing idle, room to grow) and is dropped before
/// the create lands, or times out, leaves the counters whole.
#[test]
fn cancel_owned_while_a_create_is_pending() {
    let (pool, counts) = common::pool(timed_config(1, SHORT_TIMEOUT));
    // Dropped right after it asked for a create.
    let mut task = Task::owned(&pool);
    if task.poll().is_none() {
        drop(task);
    }
    assert_no_slot_lost(&pool, &counts);
    // Timed out while the only connection is held.
    let held = acquire_owned_patiently(&pool);
    let timed_out = futures_lite::future::block_on(pool.acquire_owned());
    assert!(matches!(timed_out, Err(PoolError::Timeout(_))));
    drop(held);
    assert_no_slot_lost(&pool, &counts);
}
