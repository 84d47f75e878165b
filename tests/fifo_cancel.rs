//! FIFO fairness across the blocking and async facades, and the safety of acquires that are
//! cancelled (dropped or timed out) at every point: while queued, while a connection is being
//! handed to them, and while they create a connection.
//!
//! Every scenario ends with the same audit, [`assert_no_slot_lost`]: nobody is left waiting, the
//! pool's `total` matches the factory's live connections, and `max_connections` connections can
//! be held at once.
//!
//! Waiting is deterministic: "N waiters are queued" is observed through
//! `current_metrics().waiting`, async futures are polled by hand with counting wakers, and the
//! few sleeps below only place a release near a deadline; no assertion depends on their timing.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{Counts, CreateFailed, TestFactory};
use nexus_pool::futures::Acquire;
use nexus_pool::{
    ConnectionFactory, ConnectionPool, ConnectionPoolConfig, CreateError, PoolError,
    PooledConnection, TimeoutError,
};

// ----- sizes and timings ----------------------------------------------------------------------

/// Waiters queued in a known order in the FIFO tests (a newcomer comes after them).
const WAITERS: usize = 8;
/// How long a spin loop waits for a condition before the test fails.
const SPIN_LIMIT: Duration = Duration::from_secs(5);
/// An acquire timeout that never fires in a passing test.
const LONG_TIMEOUT: Duration = Duration::from_secs(10);

/// `max_connections` in the cancellation sweep.
const SWEEP_MAX: usize = 2;
/// Acquire futures queued behind the held connections in each sweep scenario.
const SWEEP_FUTURES: usize = 5;
/// Rounds of "release one connection, poll the woken futures" per sweep scenario; each round has
/// two drop points (before and after the release), so a sweep has
/// `SWEEP_FUTURES * 2 * SWEEP_ROUNDS` scenarios.
const SWEEP_ROUNDS: usize = 6;

/// The acquire timeout in the handover race.
const HANDOVER_TIMEOUT: Duration = Duration::from_millis(20);
/// Iterations of the handover race per facade.
const HANDOVER_ITERATIONS: usize = 60;
/// The release is placed at the waiter's deadline plus an offset swept over `[-J, +J]` µs.
const HANDOVER_JITTER_US: i64 = 1_500;

/// Iterations of the drop-versus-release race when it checks that no slot is lost.
const RACE_ITERATIONS: usize = 20_000;
/// Iterations when it looks for a connection stranded out of `try_acquire`'s reach (the window
/// is a few instructions wide: 100 000 iterations hit it in most runs on a 2-core machine).
const RACE_ITERATIONS_STRICT: usize = 100_000;
/// Main spins `i % RACE_MAX_SPIN` times before its release in iteration `i` of that race.
const RACE_MAX_SPIN: usize = 48;

// ----- helpers: configuration, waiting, facades -----------------------------------------------

type TestConn<'p> = PooledConnection<'p, TestFactory>;
type TestResult<'p> = Result<TestConn<'p>, PoolError<CreateFailed>>;

fn config(max: usize, acquire_timeout: Duration) -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .build()
        .unwrap()
}

/// Spins (1 ms sleeps) until `cond` holds; fails the test after [`SPIN_LIMIT`].
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SPIN_LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {SPIN_LIMIT:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[track_caller]
fn wait_for_waiting<F: ConnectionFactory>(pool: &ConnectionPool<F>, n: usize) {
    wait_until(&format!("{n} callers are waiting"), || {
        pool.current_metrics().waiting == n
    });
}

/// Which facade a caller uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Facade {
    /// `acquire_blocking()` on the calling thread.
    Blocking,
    /// `acquire().await`, driven by `futures_lite::future::block_on` on the calling thread.
    Async,
}

fn acquire_via<F: ConnectionFactory>(
    pool: &ConnectionPool<F>,
    facade: Facade,
) -> Result<PooledConnection<'_, F>, PoolError<F::Error>> {
    match facade {
        Facade::Blocking => pool.acquire_blocking(),
        Facade::Async => futures_lite::future::block_on(pool.acquire()),
    }
}

/// The audit every scenario ends with: no waiter is left, `total` matches the factory's live
/// connections, `max_connections` connections can be held at once (idle ones taken with
/// `try_acquire`, the rest created), no more than that, and the factory never had more live.
#[track_caller]
fn assert_no_slot_lost(pool: &ConnectionPool<TestFactory>, counts: &Counts) {
    let max = pool.config().max_connections();
    wait_until("nobody waits", || pool.current_metrics().waiting == 0);
    wait_until("metrics.total == the factory's live connections", || {
        pool.current_metrics().total == counts.live()
    });
    let mut held = Vec::with_capacity(max);
    while held.len() < max {
        match pool.try_acquire() {
            Ok(conn) => held.push(conn),
            Err(PoolError::Exhausted) => break,
            Err(e) => panic!("try_acquire failed: {e}"),
        }
    }
    while held.len() < max {
        let m = pool.current_metrics();
        match pool.acquire_blocking() {
            Ok(conn) => held.push(conn),
            Err(e) => panic!(
                "slot lost: could hold only {} of {max} connections ({e}); metrics before: {m:?}",
                held.len()
            ),
        }
    }
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "more than max_connections connections could be held"
    );
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting),
        (max, 0, max, 0),
        "metrics while holding every connection: {m:?}"
    );
    assert_eq!(counts.live(), max, "the factory's live connections");
    assert!(
        counts.peak() <= max,
        "the factory had {} live connections at once, max is {max}",
        counts.peak()
    );
    drop(held);
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (max, max, 0), "{m:?}");
}

// ----- helpers: polling futures by hand -------------------------------------------------------

/// A waker that counts its wake-ups.
#[derive(Default)]
struct WakeCounter(AtomicUsize);

impl WakeCounter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An acquire future polled by hand, like an executor would: only after its waker fired.
struct Task<'p> {
    fut: Option<Acquire<'p, TestFactory>>,
    wakes: Arc<WakeCounter>,
    waker: Waker,
    /// `wakes` when it was last polled.
    seen: usize,
}

impl<'p> Task<'p> {
    fn new(fut: Acquire<'p, TestFactory>) -> Self {
        let wakes = Arc::new(WakeCounter::default());
        Task {
            fut: Some(fut),
            waker: Waker::from(wakes.clone()),
            wakes,
            seen: 0,
        }
    }

    fn is_pending(&self) -> bool {
        self.fut.is_some()
    }

    /// Whether the waker fired since the last poll.
    fn woken(&self) -> bool {
        self.wakes.count() != self.seen
    }

    /// Polls once; `Some` (and the future is gone) when it completed.
    fn poll(&mut self) -> Option<TestResult<'p>> {
        let fut = self.fut.as_mut()?;
        self.seen = self.wakes.count();
        let mut cx = Context::from_waker(&self.waker);
        match Pin::new(fut).poll(&mut cx) {
            Poll::Ready(result) => {
                self.fut = None;
                Some(result)
            }
            Poll::Pending => None,
        }
    }
}

/// Polls every pending task whose waker fired, in queue order; hands each connection obtained to
/// `served`. Returns whether any task was polled.
fn poll_woken<'p>(tasks: &mut [Task<'p>], mut served: impl FnMut(usize, TestConn<'p>)) -> bool {
    let mut polled = false;
    for (i, task) in tasks.iter_mut().enumerate() {
        if task.is_pending() && task.woken() {
            polled = true;
            match task.poll() {
                None => {}
                Some(Ok(conn)) => served(i, conn),
                Some(Err(e)) => panic!("future {i} failed: {e}"),
            }
        }
    }
    polled
}

// ----- helpers: a factory whose creates fail or hang on command ------------------------------

/// What the scripted factory's `create` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Succeed,
    /// Pending until the mode changes.
    Hang,
}

struct Script {
    /// The mode, and the wakers of creates hanging on it.
    state: Mutex<(Mode, Vec<Waker>)>,
    started: AtomicUsize,
    /// Creates dropped before they finished.
    cancelled: AtomicUsize,
    live: AtomicUsize,
}

impl Script {
    fn set_mode(&self, mode: Mode) {
        let wakers = {
            let mut state = self.state.lock().unwrap();
            state.0 = mode;
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_mode(&self, cx: &mut Context<'_>) -> Poll<Mode> {
        let mut state = self.state.lock().unwrap();
        if state.0 == Mode::Hang {
            state.1.push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(state.0)
        }
    }

    fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Counts a create dropped before it finished.
struct CancelGuard<'a>(&'a Script, bool);

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure of create #{0}")]
struct ScriptedError(usize);

#[derive(Clone)]
struct ScriptedFactory {
    script: Arc<Script>,
}

impl ConnectionFactory for ScriptedFactory {
    type Connection = usize;
    type Error = ScriptedError;

    async fn create(&self) -> Result<usize, ScriptedError> {
        let id = self.script.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = CancelGuard(&self.script, true);
        let mode = futures_lite::future::poll_fn(|cx| self.script.poll_mode(cx)).await;
        guard.1 = false;
        match mode {
            Mode::Succeed => {
                self.script.live.fetch_add(1, Ordering::SeqCst);
                Ok(id)
            }
            Mode::Hang => Err(ScriptedError(id)),
        }
    }

    async fn destroy(&self, _conn: usize) {
        self.script.live.fetch_sub(1, Ordering::SeqCst);
    }
}

// ----- 1. FIFO across facades -----------------------------------------------------------------

/// How a FIFO waiter waits.
#[derive(Clone, Copy, Debug)]
enum WaiterKind {
    /// `acquire_blocking()` on its own thread.
    Blocking,
    /// `acquire().await` under `futures_lite::future::block_on` on its own thread.
    AsyncThread,
    /// `acquire().await` in a task on a multi-threaded tokio runtime.
    Tokio,
}

/// Queues `WAITERS` waiters one at a time (kind chosen by `kind(i)`) behind the only connection,
/// checks that a newcomer cannot `try_acquire`, queues the newcomer as waiter `WAITERS`, then
/// releases: everyone must be served in arrival order, and a thread spinning on `try_acquire`
/// must not get the connection before the last waiter was served.
fn run_fifo(kind: impl Fn(usize) -> WaiterKind) {
    let (pool, counts) = common::pool(common::config(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let held = pool.acquire_blocking().expect("the first connection");

    thread::scope(|s| {
        for i in 0..=WAITERS {
            if i == WAITERS {
                assert!(
                    matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
                    "a newcomer's try_acquire must not jump the queue"
                );
            }
            let (served, tx) = (served.clone(), tx.clone());
            match kind(i) {
                WaiterKind::Blocking => {
                    let pool = &pool;
                    s.spawn(move || {
                        let outcome = pool.acquire_blocking().map(|conn| {
                            served.lock().unwrap().push(i);
                            drop(conn);
                        });
                        tx.send((i, outcome.map_err(|e| e.to_string()))).unwrap();
                    });
                }
                WaiterKind::AsyncThread => {
                    let pool = &pool;
                    s.spawn(move || {
                        let outcome = futures_lite::future::block_on(async {
                            let conn = pool.acquire().await?;
                            served.lock().unwrap().push(i);
                            drop(conn);
                            Ok::<(), PoolError<CreateFailed>>(())
                        });
                        tx.send((i, outcome.map_err(|e| e.to_string()))).unwrap();
                    });
                }
                WaiterKind::Tokio => {
                    let pool = pool.clone();
                    rt.spawn(async move {
                        let outcome = match pool.acquire().await {
                            Ok(conn) => {
                                served.lock().unwrap().push(i);
                                drop(conn);
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        tx.send((i, outcome)).unwrap();
                    });
                }
            }
            wait_for_waiting(&pool, i + 1);
        }

        // A barger that may only win once every waiter is served.
        let barger = s.spawn(|| {
            let deadline = Instant::now() + SPIN_LIMIT;
            loop {
                match pool.try_acquire() {
                    Ok(conn) => {
                        let served_before = served.lock().unwrap().len();
                        drop(conn);
                        return served_before;
                    }
                    Err(PoolError::Exhausted) => {
                        assert!(
                            Instant::now() < deadline,
                            "the barger never got a connection"
                        );
                        thread::yield_now();
                    }
                    Err(e) => panic!("barger: {e}"),
                }
            }
        });

        drop(held);
        for _ in 0..=WAITERS {
            let (i, outcome) = rx
                .recv_timeout(SPIN_LIMIT)
                .expect("a waiter was never served");
            outcome.unwrap_or_else(|e| panic!("waiter {i} failed: {e}"));
        }
        assert_eq!(
            barger.join().unwrap(),
            WAITERS + 1,
            "try_acquire took the connection before every waiter was served"
        );
    });

    assert_eq!(
        *served.lock().unwrap(),
        (0..=WAITERS).collect::<Vec<_>>(),
        "waiters must be served in arrival order, the newcomer last"
    );
    assert_no_slot_lost(&pool, &counts);
}

/// Blocking threads and async tasks alternating in one queue are served strictly FIFO; a
/// newcomer is refused by `try_acquire` and served last.
#[test]
fn fifo_mixed_blocking_and_async() {
    run_fifo(|i| {
        if i % 2 == 0 {
            WaiterKind::Blocking
        } else {
            WaiterKind::AsyncThread
        }
    });
}

/// FIFO holds when async waiters run on a multi-threaded tokio runtime among blocking threads.
#[test]
fn fifo_mixed_with_tokio_tasks() {
    run_fifo(|i| match i % 3 {
        0 => WaiterKind::Blocking,
        1 => WaiterKind::AsyncThread,
        _ => WaiterKind::Tokio,
    });
}

/// FIFO holds among blocking waiters only.
#[test]
fn fifo_blocking_only() {
    run_fifo(|_| WaiterKind::Blocking);
}

/// FIFO holds among async waiters only.
#[test]
fn fifo_async_only() {
    run_fifo(|_| WaiterKind::AsyncThread);
}

// ----- 2. cancellation sweep ------------------------------------------------------------------

/// What the victim of a sweep scenario was doing when it was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum VictimWas {
    /// Queued, not woken.
    Queued,
    /// Woken (a connection was being handed to it) but not polled again.
    Woken,
    /// Served and holding its connection (dropping it releases the connection).
    Holding,
    /// Served and already released.
    Released,
}

/// One scenario: `SWEEP_MAX` connections held, `SWEEP_FUTURES` acquire futures queued (and, if
/// `blocking_tail`, a blocking waiter behind them), then rounds of "release the oldest held
/// connection, poll the woken futures (keeping what they get)", with future `victim` dropped at
/// drop point `drop_at` (even: before a release, odd: after it, before the poll). Then every
/// connection is released and the rest are driven like an executor would (only when woken).
///
/// The futures must complete in queue order. The blocking tail runs on its own thread, so when it
/// records its turn is up to the scheduler; what FIFO promises it is that every future ahead of
/// it was handed a connection (its waker fired) before the tail got one.
fn sweep_scenario(victim: usize, drop_at: usize, blocking_tail: bool) -> VictimWas {
    let (pool, counts) = common::pool(config(SWEEP_MAX, LONG_TIMEOUT));
    let served = Mutex::new(Vec::new());
    let tail_done = AtomicBool::new(false);
    // The futures whose waker had never fired when the tail got its connection.
    let tail_saw_unwoken = Mutex::new(None::<Vec<usize>>);
    let ctx = format!("victim {victim} dropped at point {drop_at}, blocking tail {blocking_tail}");

    let mut held: VecDeque<(Option<usize>, TestConn<'_>)> = (0..SWEEP_MAX)
        .map(|_| (None, pool.acquire_blocking().expect("initial connection")))
        .collect();
    let mut tasks: Vec<Task<'_>> = (0..SWEEP_FUTURES)
        .map(|_| Task::new(pool.acquire()))
        .collect();
    for (i, task) in tasks.iter_mut().enumerate() {
        assert!(
            task.poll().is_none(),
            "future {i} completed with nothing idle"
        );
        assert_eq!(
            pool.current_metrics().waiting,
            i + 1,
            "future {i} registered"
        );
    }

    let wakes: Vec<Arc<WakeCounter>> = tasks.iter().map(|t| t.wakes.clone()).collect();

    let was = thread::scope(|s| {
        if blocking_tail {
            s.spawn(|| {
                let conn = pool.acquire_blocking().expect("the blocking tail waiter");
                let unwoken = (0..wakes.len())
                    .filter(|&i| wakes[i].count() == 0)
                    .collect();
                *tail_saw_unwoken.lock().unwrap() = Some(unwoken);
                drop(conn);
                tail_done.store(true, Ordering::SeqCst);
            });
            wait_for_waiting(&pool, SWEEP_FUTURES + 1);
        }

        let mut was = None;
        let mut point = 0;
        for _ in 0..SWEEP_ROUNDS {
            for phase in 0..2 {
                if point == drop_at {
                    was = Some(drop_victim(victim, &mut tasks, &mut held));
                }
                point += 1;
                if phase == 0 {
                    drop(held.pop_front());
                } else {
                    poll_woken(&mut tasks, |i, conn| {
                        served.lock().unwrap().push(i);
                        held.push_back((Some(i), conn));
                    });
                }
            }
        }
        let was = was.unwrap_or_else(|| panic!("drop point {drop_at} is past the script"));

        // Release everything, then drive the rest; each connection goes back at once.
        held.clear();
        let deadline = Instant::now() + SPIN_LIMIT;
        loop {
            let polled = poll_woken(&mut tasks, |i, conn| {
                served.lock().unwrap().push(i);
                drop(conn);
            });
            let pending: Vec<usize> = (0..tasks.len())
                .filter(|&i| tasks[i].is_pending())
                .collect();
            if pending.is_empty() {
                break;
            }
            if !polled {
                let tail_running = blocking_tail && !tail_done.load(Ordering::SeqCst);
                if !tail_running || Instant::now() >= deadline {
                    let m = pool.current_metrics();
                    let ready_anyway: Vec<usize> = pending
                        .iter()
                        .copied()
                        .filter(|&i| tasks[i].poll().is_some())
                        .collect();
                    panic!(
                        "lost wake-up ({ctx}, was {was:?}): futures {pending:?} are pending and \
                         not woken, no connection is held; polled anyway, {ready_anyway:?} \
                         completed; metrics {m:?}"
                    );
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        was
    });

    let expected: Vec<usize> = (0..SWEEP_FUTURES)
        .filter(|&i| i != victim || matches!(was, VictimWas::Holding | VictimWas::Released))
        .collect();
    assert_eq!(
        *served.lock().unwrap(),
        expected,
        "service order ({ctx}, was {was:?})"
    );
    if blocking_tail {
        let expected_unwoken = if was == VictimWas::Queued {
            vec![victim]
        } else {
            vec![]
        };
        assert_eq!(
            tail_saw_unwoken.lock().unwrap().take(),
            Some(expected_unwoken),
            "futures never woken when the blocking tail was served ({ctx}, was {was:?})"
        );
    }
    drop(tasks);
    assert_no_slot_lost(&pool, &counts);
    was
}

/// Drops future `victim` in whatever state it is in.
fn drop_victim<'p>(
    victim: usize,
    tasks: &mut [Task<'p>],
    held: &mut VecDeque<(Option<usize>, TestConn<'p>)>,
) -> VictimWas {
    let task = &mut tasks[victim];
    if task.is_pending() {
        let was = if task.woken() {
            VictimWas::Woken
        } else {
            VictimWas::Queued
        };
        task.fut = None;
        return was;
    }
    match held.iter().position(|(owner, _)| *owner == Some(victim)) {
        Some(at) => {
            held.remove(at);
            VictimWas::Holding
        }
        None => VictimWas::Released,
    }
}

fn run_sweep(blocking_tail: bool) {
    let points = 2 * SWEEP_ROUNDS;
    let mut seen = BTreeSet::new();
    for k in 0..SWEEP_FUTURES * points {
        seen.insert(sweep_scenario(
            k % SWEEP_FUTURES,
            k / SWEEP_FUTURES,
            blocking_tail,
        ));
    }
    for needed in [VictimWas::Queued, VictimWas::Woken, VictimWas::Holding] {
        assert!(
            seen.contains(&needed),
            "the sweep never dropped a {needed:?} future"
        );
    }
}

/// Dropping an acquire future at every point (queued, woken mid-handover, holding) loses no
/// connection and no wake-up, and the other futures are still served in FIFO order.
#[test]
fn cancellation_sweep_async() {
    run_sweep(false);
}

/// The same sweep with a blocking waiter queued behind the futures: whatever is dropped, the
/// blocking waiter is still served, last.
#[test]
fn cancellation_sweep_with_blocking_waiter() {
    run_sweep(true);
}

// ----- 3. timeouts and drops racing a release -------------------------------------------------

/// Each iteration: the only connection is held, one waiter (via `facade`, on its own thread)
/// queues, and the connection is released within ±`HANDOVER_JITTER_US` of the waiter's deadline.
/// The waiter may be served or time out; either way no slot may be lost.
fn run_timeout_during_handover(facade: Facade) {
    let (pool, counts) = common::pool(config(1, HANDOVER_TIMEOUT));
    let (mut served, mut timed_out) = (0, 0);
    for i in 0..HANDOVER_ITERATIONS {
        let span = 2 * HANDOVER_JITTER_US;
        let offset_us = -HANDOVER_JITTER_US + span * i as i64 / (HANDOVER_ITERATIONS as i64 - 1);
        let held = pool.acquire_blocking().expect("the connection");
        thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let pool = &pool;
            let waiter = s.spawn(move || {
                tx.send(Instant::now()).unwrap();
                acquire_via(pool, facade).map(drop)
            });
            let started = rx.recv().unwrap();
            wait_for_waiting(pool, 1);
            let deadline = started + HANDOVER_TIMEOUT;
            let release_at = if offset_us < 0 {
                deadline - Duration::from_micros(offset_us.unsigned_abs())
            } else {
                deadline + Duration::from_micros(offset_us as u64)
            };
            if let Some(wait) = release_at.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            drop(held);
            match waiter.join().unwrap() {
                Ok(()) => served += 1,
                Err(PoolError::Timeout(_)) => timed_out += 1,
                Err(e) => panic!("iteration {i}: unexpected {e}"),
            }
        });
        assert_no_slot_lost(&pool, &counts);
    }
    eprintln!("{facade:?}: {served} served, {timed_out} timed out around the release");
    assert_eq!(served + timed_out, HANDOVER_ITERATIONS);
}

/// A blocking waiter whose deadline fires around a release (on another thread) loses no slot.
#[test]
fn timeout_during_handover_blocking() {
    run_timeout_during_handover(Facade::Blocking);
}

/// An async waiter whose timer fires around a release (on another thread) loses no slot.
#[test]
fn timeout_during_handover_async() {
    run_timeout_during_handover(Facade::Async);
}

/// What the drop-versus-release race observed.
struct RaceOutcome {
    /// Iterations after which nobody waited and a connection was idle, yet `try_acquire` said
    /// `Exhausted` (the connection was only reachable through a slow acquire).
    stranded: usize,
    /// Of those, how many were still stranded 1 ms later (so not a transient state).
    stranded_after_1ms: usize,
}

/// Each iteration: main holds the only connection and registers an acquire future; then another
/// thread drops the future while main releases the connection, at once (spinning, with a sweep
/// of small delays on main). Afterwards nobody may wait and the connection must be idle.
fn race_drop_against_release(iterations: usize) -> RaceOutcome {
    let (pool, counts) = common::pool(config(1, LONG_TIMEOUT));
    let slot: Mutex<Option<Acquire<'_, TestFactory>>> = Mutex::new(None);
    let epoch = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let (mut stranded, mut stranded_after_1ms) = (0, 0);
    let mut held = Some(pool.acquire_blocking().expect("the connection"));

    thread::scope(|s| {
        s.spawn(|| {
            let mut seen = 0;
            loop {
                let mut spins = 0u32;
                let now = loop {
                    let now = epoch.load(Ordering::Acquire);
                    if now != seen {
                        break now;
                    }
                    spins += 1;
                    if spins % 1024 == 0 {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                };
                if now == usize::MAX {
                    return;
                }
                seen = now;
                drop(slot.lock().unwrap().take());
                done.store(now, Ordering::Release);
            }
        });

        for i in 1..=iterations {
            let mut fut = pool.acquire();
            let mut cx = Context::from_waker(Waker::noop());
            assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
            assert_eq!(
                pool.current_metrics().waiting,
                1,
                "iteration {i}: registered"
            );
            *slot.lock().unwrap() = Some(fut);

            epoch.store(i, Ordering::Release);
            for _ in 0..i % RACE_MAX_SPIN {
                std::hint::spin_loop();
            }
            drop(held.take());

            let deadline = Instant::now() + SPIN_LIMIT;
            while done.load(Ordering::Acquire) != i {
                assert!(Instant::now() < deadline, "the dropping thread stalled");
                thread::yield_now();
            }

            let m = pool.current_metrics();
            assert_eq!(
                (m.total, m.idle, m.waiting),
                (1, 1, 0),
                "iteration {i}: after the race {m:?}"
            );
            held = Some(match pool.try_acquire() {
                Ok(conn) => conn,
                Err(PoolError::Exhausted) => {
                    stranded += 1;
                    // Not a passing state: nothing else runs now, and it stays that way.
                    thread::sleep(Duration::from_millis(1));
                    match pool.try_acquire() {
                        Ok(conn) => conn,
                        Err(PoolError::Exhausted) => {
                            stranded_after_1ms += 1;
                            pool.acquire_blocking().unwrap_or_else(|e| {
                                panic!("iteration {i}: slot lost, the idle connection is unreachable: {e}")
                            })
                        }
                        Err(e) => panic!("iteration {i}: {e}"),
                    }
                }
                Err(e) => panic!("iteration {i}: {e}"),
            });
        }
        epoch.store(usize::MAX, Ordering::Release);
    });

    drop(held);
    assert_no_slot_lost(&pool, &counts);
    eprintln!(
        "drop vs release: {stranded} of {iterations} iterations stranded the connection \
         ({stranded_after_1ms} still stranded 1 ms later)"
    );
    RaceOutcome {
        stranded,
        stranded_after_1ms,
    }
}

/// A future dropped while a release hands it the connection loses no slot: the connection
/// stays reachable by the next acquire, and nobody is left counted as waiting.
#[test]
fn drop_racing_release_loses_no_slot() {
    race_drop_against_release(RACE_ITERATIONS);
}

/// After a future is dropped while a release hands it the connection, and nobody waits, the
/// connection is idle for `try_acquire` (documented: `Exhausted` only when nothing is idle or
/// others wait).
///
/// Failed before the fix in `release_slow` (about 1 iteration in 1 000): the release loads `gate` (1 waiter) after its push
/// to `idle`; the waiter then uncounts itself as the last one and runs `drain_handoff`, which
/// finds `handoff` still empty; only then does the release move the connection to `handoff` and
/// notify nobody (`unnotified` = 1). The connection stays in `handoff` with `gate` = 0: metrics
/// say idle 1 / waiting 0, `try_acquire` and the fast path of both facades cannot see it, and
/// only a slow acquire (whose first re-check claims `unnotified`) gets it back.
#[test]
fn drop_racing_release_leaves_connection_to_try_acquire() {
    let outcome = race_drop_against_release(RACE_ITERATIONS_STRICT);
    assert_eq!(
        outcome.stranded, 0,
        "{} of {RACE_ITERATIONS_STRICT} iterations left the connection where try_acquire cannot \
         see it although metrics said idle 1, waiting 0 ({} still so 1 ms later)",
        outcome.stranded, outcome.stranded_after_1ms
    );
}

// ----- 4. timeout while creating --------------------------------------------------------------

/// A pool whose creates follow `script`, with a short `create_timeout` so a hung create is
/// abandoned quickly, and a short `acquire_timeout`.
fn hanging_pool(script: &Arc<Script>) -> ConnectionPool<ScriptedFactory> {
    let config = ConnectionPoolConfig::builder()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(HANDOVER_TIMEOUT)
        .create_timeout(Duration::from_millis(200))
        .create_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .build()
        .unwrap();
    let factory = ScriptedFactory {
        script: script.clone(),
    };
    ConnectionPool::new(factory, config)
}

fn new_script(mode: Mode) -> Arc<Script> {
    Arc::new(Script {
        state: Mutex::new((mode, Vec::new())),
        started: AtomicUsize::new(0),
        cancelled: AtomicUsize::new(0),
        live: AtomicUsize::new(0),
    })
}

/// A caller (via `facade`) whose connection is being created times out while the create hangs;
/// the create, made by the pool on the caller's behalf, is abandoned at `create_timeout` and its
/// place freed; once creates work again the next caller is served and nothing leaked.
fn run_timeout_while_creating(facade: Facade) {
    let script = new_script(Mode::Hang);
    let pool = hanging_pool(&script);
    match acquire_via(&pool, facade) {
        Err(PoolError::Timeout(t)) => assert!(t.waited >= HANDOVER_TIMEOUT),
        other => panic!("expected a timeout while the create hangs, got {other:?}"),
    }
    wait_until("the hung create to be abandoned", || {
        script.cancelled() >= 1
    });
    wait_until("its place to be freed", || {
        pool.current_metrics().total == 0
    });
    let timed_out = matches!(
        acquire_via(&pool, facade),
        Err(PoolError::Timeout(TimeoutError {
            last_create_error: Some(CreateError::TimedOut(_)),
            ..
        }))
    );
    assert!(timed_out, "a later waiter learns that creates time out");
    script.set_mode(Mode::Succeed);
    let conn = acquire_until_ok(&pool, facade);
    drop(conn);
    assert_eq!(pool.current_metrics().waiting, 0);
    assert!(pool.current_metrics().total <= 1);
    pool.close_blocking();
    assert_eq!(script.live(), 0, "every connection made was destroyed");
}

/// Acquires until it succeeds (the pool may still be pausing after failed creates).
fn acquire_until_ok<F: ConnectionFactory>(
    pool: &ConnectionPool<F>,
    facade: Facade,
) -> PooledConnection<'_, F> {
    let deadline = Instant::now() + SPIN_LIMIT;
    loop {
        match acquire_via(pool, facade) {
            Ok(conn) => return conn,
            Err(PoolError::Timeout(_)) if Instant::now() < deadline => {}
            Err(other) => panic!("the pool did not recover: {other}"),
        }
    }
}

/// `acquire_blocking` times out while its connection is being created.
#[test]
fn timeout_while_creating_blocking() {
    run_timeout_while_creating(Facade::Blocking);
}

/// `acquire().await` times out while its connection is being created.
#[test]
fn timeout_while_creating_async() {
    run_timeout_while_creating(Facade::Async);
}

// ----- 5. failing creates ---------------------------------------------------------------------

/// While creates fail, callers (via `facade`) time out carrying the create error and no place
/// stays reserved; two waiters queued during the outage are served in order once creates work.
fn run_failing_create(facade: Facade) {
    let config = ConnectionPoolConfig::builder()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(HANDOVER_TIMEOUT)
        .create_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(config);
    counts.fail_create.store(true, Ordering::SeqCst);

    match acquire_via(&pool, facade) {
        Err(err @ PoolError::Timeout(_)) => {
            let failure = err
                .create_error()
                .expect("the create error reaches the caller");
            assert!(
                failure.0 < counts.created(),
                "it is one of the failed creates"
            );
            assert!(err.to_string().contains("scripted create failure"), "{err}");
        }
        other => panic!("expected a timeout carrying the create error, got {other:?}"),
    }
    wait_until("no place to stay reserved", || {
        pool.current_metrics().total == 0
    });
    assert_eq!(counts.live(), 0);

    // Two waiters queue while creates still fail; healing serves both, oldest first.
    let long = ConnectionPoolConfig::builder()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(LONG_TIMEOUT)
        .create_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .build()
        .unwrap();
    let (pool, counts) = common::pool(long);
    counts.fail_create.store(true, Ordering::SeqCst);
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        for i in 0..2 {
            let (pool, order) = (&pool, &order);
            s.spawn(move || {
                let conn = acquire_via(pool, facade).expect("served after healing");
                order.lock().unwrap().push(i);
                drop(conn);
            });
            wait_for_waiting(pool, i + 1);
        }
        wait_until("creates to fail while they wait", || counts.created() >= 2);
        counts.fail_create.store(false, Ordering::SeqCst);
    });
    assert_eq!(*order.lock().unwrap(), [0, 1], "served in arrival order");
    assert_eq!(pool.current_metrics().waiting, 0);
    assert_no_slot_lost(&pool, &counts);
}

/// Failing creates with blocking callers.
#[test]
fn failing_create_frees_slot_and_wakes_next_blocking() {
    run_failing_create(Facade::Blocking);
}

/// Failing creates with async callers.
#[test]
fn failing_create_frees_slot_and_wakes_next_async() {
    run_failing_create(Facade::Async);
}
