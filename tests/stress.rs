//! Stress: one pool, everyone at once. Blocking threads (`acquire_blocking`,
//! `with_connection_blocking`) and async tasks on tokio (multi-thread), smol, async-std and plain
//! `futures_lite::future::block_on` threads share one small pool, while:
//!
//! * callers give up at random (an acquire raced against a short timer with
//!   `futures_lite::future::or`, or `tokio::time::timeout`, so the future is dropped mid-wait),
//!   and blocking callers hit the pool's own `acquire_timeout`;
//! * closures passed to `with_connection` / `with_connection_blocking` panic (caught);
//! * connections are marked broken, detached, and fail checkout validation;
//! * creates fail for stretches of time, and `evict_all` replaces everything now and then.
//!
//! A sampler checks the metrics throughout (`idle + active == total <= max`, and no more live
//! connections than `max` plus those detached). After the load, the pool must still be whole:
//! all `MAX` connections can be held at once. After closing, every connection the factory made
//! was destroyed or detached.
//!
//! Each worker draws its actions from `fastrand` seeded from `SEED` (or `STRESS_SEED`), printed
//! on failure. Thread timing is not reproducible, but the mix of actions is. The run is bounded
//! by `LOAD_FOR` and `ROUNDS`, and a watchdog aborts it after `WATCHDOG`.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use common::tracker::Tracker;
use common::wait::watchdog_for;
use common::{Behavior, Error, Op, Pool, Script, ScriptedConn, ScriptedFactory};
use futures_lite::{FutureExt, future};
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, PoolError, PooledConnection,
};

/// `max_connections`.
const MAX: usize = 6;
/// Blocking threads.
const THREADS: usize = 8;
/// Threads that each run one async worker under `futures_lite::future::block_on`.
const BLOCK_ON_THREADS: usize = 3;
/// Async workers per executor.
const TOKIO_TASKS: usize = 12;
const SMOL_TASKS: usize = 6;
const ASYNC_STD_TASKS: usize = 6;
/// Rounds per worker at most...
const ROUNDS: usize = 3_000;
/// ...and for at most this long.
const LOAD_FOR: Duration = Duration::from_secs(3);
/// The pool's `acquire_timeout`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(40);
/// The whole test, or the process is aborted.
const WATCHDOG: Duration = Duration::from_secs(20);
/// The default seed; `STRESS_SEED` overrides it.
const SEED: u64 = 0x5eed_2024_0004;
/// What the deliberate panics say (the panic hook keeps them quiet).
const DELIBERATE: &str = "stress: deliberate panic";

// ----- the factory ---------------------------------------------------------------------------

/// Creates and destroys take a little while (an `async-io` timer, so the maintenance loop has
/// several in flight); creates and validations fail for stretches of time (`chaos`).
const CREATE_TAKES: Behavior = Behavior::Jitter(Duration::from_micros(300));
const DESTROY_TAKES: Behavior = Behavior::Jitter(Duration::from_micros(200));

type Guard<'a> = PooledConnection<'a, ScriptedFactory>;

// ----- what the workers tally ------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    acquired: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    panicked: AtomicU64,
    broken: AtomicU64,
    detached: AtomicU64,
    exhausted: AtomicU64,
}

impl Tally {
    fn bump(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the workers share.
struct Shared {
    pool: Pool,
    script: Arc<Script>,
    tally: Tally,
    /// Checks that no connection is lent to two holders at once.
    tracker: Tracker,
    /// Connections detached so far; they stay alive in `detached` until the end.
    detaching: AtomicUsize,
    /// Detached connections, kept alive until the end so they stay countable.
    detached: Mutex<Vec<ScriptedConn>>,
    /// Set when the load phase is over.
    stop: AtomicBool,
    until: Instant,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst) && Instant::now() < self.until
    }

    /// Marks a fresh loan, checking that nobody else holds the connection.
    fn lend(&self, conn: &Guard<'_>) {
        self.tracker.enter(conn);
        Tally::bump(&self.tally.acquired);
    }

    /// Gives a loan back the way `rng` says: released, marked broken or detached.
    fn give_back(&self, mut conn: Guard<'_>, rng: &mut fastrand::Rng) {
        self.tracker.leave(&conn);
        match rng.u8(0..100) {
            0..=7 => {
                Tally::bump(&self.tally.broken);
                conn.mark_broken();
            }
            8 => {
                Tally::bump(&self.tally.detached);
                self.detaching.fetch_add(1, Ordering::SeqCst);
                let conn = conn.detach();
                self.detached.lock().unwrap().push(conn);
                return;
            }
            _ => {}
        }
        drop(conn);
    }

    /// Checks an acquire error: while the pool is open only a timeout is allowed.
    fn refused(&self, err: Error) {
        match err {
            PoolError::Timeout(_) => Tally::bump(&self.tally.timed_out),
            other => panic!("an open pool refused an acquire with {other:?}"),
        }
    }
}

fn is_deliberate(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.downcast_ref::<&str>() == Some(&DELIBERATE)
        || payload
            .downcast_ref::<String>()
            .is_some_and(|s| s == DELIBERATE)
}

// ----- the workers -------------------------------------------------------------------------------

/// Which timer an async worker races its acquires against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    AsyncIo,
    Tokio,
}

/// Acquires, or gives up after `wait` (dropping the acquire future wherever it is).
async fn acquire_or_give_up<'a>(
    pool: &'a Pool,
    wait: Duration,
    cancel: Cancel,
) -> Option<Result<Guard<'a>, Error>> {
    match cancel {
        Cancel::AsyncIo => {
            future::or(async { Some(pool.acquire().await) }, async {
                Timer::after(wait).await;
                None
            })
            .await
        }
        Cancel::Tokio => tokio::time::timeout(wait, pool.acquire()).await.ok(),
    }
}

async fn async_worker(shared: Arc<Shared>, seed: u64, cancel: Cancel) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pool = &shared.pool;
    for _ in 0..ROUNDS {
        if !shared.running() {
            break;
        }
        let hold = Duration::from_micros(rng.u64(0..400));
        match rng.u8(0..100) {
            0..=34 => {
                let wait = Duration::from_micros(rng.u64(0..5_000));
                match acquire_or_give_up(pool, wait, cancel).await {
                    None => Tally::bump(&shared.tally.cancelled),
                    Some(Ok(conn)) => {
                        shared.lend(&conn);
                        Timer::after(hold).await;
                        shared.give_back(conn, &mut rng);
                    }
                    Some(Err(err)) => shared.refused(err),
                }
            }
            35..=59 => match pool.acquire().await {
                Ok(conn) => {
                    shared.lend(&conn);
                    future::yield_now().await;
                    shared.give_back(conn, &mut rng);
                }
                Err(err) => shared.refused(err),
            },
            60..=69 => {
                let panics = AssertUnwindSafe(pool.with_connection(async |conn| {
                    shared.lend(conn);
                    Timer::after(hold).await;
                    shared.tracker.leave(conn);
                    if hold > Duration::ZERO {
                        std::panic::panic_any(DELIBERATE);
                    }
                    Ok::<(), Error>(())
                }))
                .catch_unwind()
                .await;
                match panics {
                    Err(payload) if is_deliberate(&*payload) => Tally::bump(&shared.tally.panicked),
                    Err(payload) => resume_unwind(payload),
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => shared.refused(err),
                }
            }
            70..=84 => {
                let done = pool
                    .with_connection(async |conn| {
                        shared.lend(conn);
                        Timer::after(hold).await;
                        shared.tracker.leave(conn);
                        Ok::<(), Error>(())
                    })
                    .await;
                if let Err(err) = done {
                    shared.refused(err);
                }
            }
            _ => match pool.try_acquire() {
                Ok(conn) => {
                    shared.lend(&conn);
                    shared.give_back(conn, &mut rng);
                }
                Err(PoolError::Exhausted) => Tally::bump(&shared.tally.exhausted),
                Err(err) => panic!("try_acquire on an open pool: {err:?}"),
            },
        }
    }
}

fn blocking_worker(shared: &Shared, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pool = &shared.pool;
    for _ in 0..ROUNDS {
        if !shared.running() {
            break;
        }
        let hold = Duration::from_micros(rng.u64(0..400));
        match rng.u8(0..100) {
            0..=59 => match pool.acquire_blocking() {
                Ok(conn) => {
                    shared.lend(&conn);
                    thread::sleep(hold);
                    shared.give_back(conn, &mut rng);
                }
                Err(err) => shared.refused(err),
            },
            60..=74 => {
                let panics = catch_unwind(AssertUnwindSafe(|| {
                    pool.with_connection_blocking(|conn| {
                        shared.lend(conn);
                        thread::sleep(hold);
                        shared.tracker.leave(conn);
                        if hold > Duration::ZERO {
                            std::panic::panic_any(DELIBERATE);
                        }
                        Ok::<(), Error>(())
                    })
                }));
                match panics {
                    Err(payload) if is_deliberate(&*payload) => Tally::bump(&shared.tally.panicked),
                    Err(payload) => resume_unwind(payload),
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => shared.refused(err),
                }
            }
            75..=84 => {
                let done = pool.with_connection_blocking(|conn| {
                    shared.lend(conn);
                    thread::sleep(hold);
                    shared.tracker.leave(conn);
                    Ok::<(), Error>(())
                });
                if let Err(err) = done {
                    shared.refused(err);
                }
            }
            _ => match pool.try_acquire() {
                Ok(conn) => {
                    shared.lend(&conn);
                    shared.give_back(conn, &mut rng);
                }
                Err(PoolError::Exhausted) => Tally::bump(&shared.tally.exhausted),
                Err(err) => panic!("try_acquire on an open pool: {err:?}"),
            },
        }
    }
}

/// Fails creates and validations for stretches of time, and evicts everything now and then.
fn chaos(shared: &Shared, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let script = &shared.script;
    while shared.running() {
        thread::sleep(Duration::from_millis(rng.u64(10..60)));
        match rng.u8(0..10) {
            0..=5 => {
                script.set(Op::Create, Behavior::Fail);
                thread::sleep(Duration::from_millis(rng.u64(1..30)));
                script.set(Op::Create, CREATE_TAKES);
            }
            6..=8 => {
                script.set(Op::Validate, Behavior::Fail);
                thread::sleep(Duration::from_millis(rng.u64(1..10)));
                script.set(Op::Validate, Behavior::Succeed);
            }
            _ => shared.pool.evict_all(),
        }
    }
    script.set(Op::Create, CREATE_TAKES);
    script.set(Op::Validate, Behavior::Succeed);
}

/// Samples the metrics until the load is over; returns how many samples it took.
fn sampler(shared: &Shared) -> usize {
    let mut samples = 0;
    while shared.running() {
        let m = shared.pool.current_metrics();
        assert_eq!(m.idle + m.active, m.total, "metrics: {m:?}");
        assert!(m.total <= MAX, "total above max: {m:?}");
        assert_eq!(m.max, MAX);
        // Read `live` before `detached`: both only grow between the reads in the safe direction.
        let live = shared.script.live();
        let detached = shared.detaching.load(Ordering::SeqCst);
        assert!(
            live <= MAX + detached,
            "{live} connections live, max {MAX}, {detached} detached"
        );
        samples += 1;
        thread::sleep(Duration::from_micros(200));
    }
    samples
}

// ----- the test ------------------------------------------------------------------------------

fn join<T>(handle: thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|payload| resume_unwind(payload))
}

#[test]
fn everyone_at_once() {
    let seed = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_deliberate(info.payload()) {
            eprintln!("stress: failing with STRESS_SEED={seed}");
            default_hook(info);
        }
    }));
    let finished = watchdog_for(WATCHDOG, &format!(" (STRESS_SEED={seed})"));
    let result = catch_unwind(|| run(seed));
    drop(finished);
    if let Err(payload) = result {
        eprintln!("stress: failed with STRESS_SEED={seed}");
        resume_unwind(payload);
    }
}

fn run(seed: u64) {
    let config = ConnectionPoolConfig::builder()
        .min_connections(2)
        .max_connections(MAX)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .checkout_validation(CheckoutValidation::IdleFor(Duration::from_millis(1)))
        .create_backoff(Duration::from_millis(1), Duration::from_millis(10))
        .max_concurrent_creates(2)
        .build()
        .expect("a valid config");
    let (factory, script) = ScriptedFactory::new();
    script.set(Op::Create, CREATE_TAKES);
    script.set(Op::Destroy, DESTROY_TAKES);
    let pool = ConnectionPool::new(factory, config);
    let shared = Arc::new(Shared {
        pool,
        script: script.clone(),
        tally: Tally::default(),
        tracker: Tracker::default(),
        detaching: AtomicUsize::new(0),
        detached: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        until: Instant::now() + LOAD_FOR,
    });
    let started = Instant::now();
    let mut seeds = fastrand::Rng::with_seed(seed);

    let mut handles = Vec::new();
    for _ in 0..THREADS {
        let (shared, seed) = (shared.clone(), seeds.u64(..));
        handles.push(thread::spawn(move || blocking_worker(&shared, seed)));
    }
    for _ in 0..BLOCK_ON_THREADS {
        let (shared, seed) = (shared.clone(), seeds.u64(..));
        handles.push(thread::spawn(move || {
            future::block_on(async_worker(shared, seed, Cancel::AsyncIo))
        }));
    }
    let tokio_seeds: Vec<u64> = (0..TOKIO_TASKS).map(|_| seeds.u64(..)).collect();
    handles.push(thread::spawn({
        let shared = shared.clone();
        move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async {
                let tasks: Vec<_> = tokio_seeds
                    .into_iter()
                    .enumerate()
                    .map(|(i, seed)| {
                        let cancel = if i % 2 == 0 {
                            Cancel::Tokio
                        } else {
                            Cancel::AsyncIo
                        };
                        tokio::spawn(async_worker(shared.clone(), seed, cancel))
                    })
                    .collect();
                for task in tasks {
                    if let Err(err) = task.await {
                        resume_unwind(err.into_panic());
                    }
                }
            });
        }
    }));
    let smol_seeds: Vec<u64> = (0..SMOL_TASKS).map(|_| seeds.u64(..)).collect();
    handles.push(thread::spawn({
        let shared = shared.clone();
        move || {
            smol::block_on(async {
                let tasks: Vec<_> = smol_seeds
                    .into_iter()
                    .map(|seed| smol::spawn(async_worker(shared.clone(), seed, Cancel::AsyncIo)))
                    .collect();
                for task in tasks {
                    task.await;
                }
            });
        }
    }));
    let async_std_seeds: Vec<u64> = (0..ASYNC_STD_TASKS).map(|_| seeds.u64(..)).collect();
    handles.push(thread::spawn({
        let shared = shared.clone();
        move || {
            async_std::task::block_on(async {
                let tasks: Vec<_> = async_std_seeds
                    .into_iter()
                    .map(|seed| {
                        async_std::task::spawn(async_worker(shared.clone(), seed, Cancel::AsyncIo))
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            });
        }
    }));
    let chaos_seed = seeds.u64(..);
    let chaos = thread::spawn({
        let shared = shared.clone();
        move || chaos(&shared, chaos_seed)
    });
    let sampler = thread::spawn({
        let shared = shared.clone();
        move || sampler(&shared)
    });

    // Join everything even if one part failed, so the others see `stop` and end.
    let mut failure = None;
    for handle in handles {
        if let Err(payload) = handle.join() {
            shared.stop.store(true, Ordering::SeqCst);
            failure.get_or_insert(payload);
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    join(chaos);
    let samples = join(sampler);
    if let Some(payload) = failure {
        resume_unwind(payload);
    }
    let load = started.elapsed();

    // The pool is whole: every place can be filled and held at once.
    let pool = &shared.pool;
    let m = pool.current_metrics();
    assert_eq!(m.waiting, 0, "nobody waits any more: {m:?}");
    assert_eq!(m.idle + m.active, m.total, "{m:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = Vec::new();
    while held.len() < MAX {
        match pool.acquire_blocking() {
            Ok(conn) => {
                shared.lend(&conn);
                held.push(conn);
            }
            Err(err) if Instant::now() < deadline => drop(err),
            Err(err) => panic!(
                "could hold only {} of {MAX} connections: {err:?}",
                held.len()
            ),
        }
    }
    let m = pool.current_metrics();
    assert_eq!((m.total, m.active, m.idle), (MAX, MAX, 0), "{m:?}");
    assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
    for conn in held {
        shared.tracker.leave(&conn);
        drop(conn);
    }

    // Closing destroys everything; only the detached connections are left, and then not those.
    let close_async = seeds.bool();
    if close_async {
        future::block_on(pool.close());
    } else {
        pool.close_blocking();
    }
    assert!(pool.is_closed());
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting),
        (0, 0, 0, 0),
        "{m:?}"
    );
    let detached = shared.detaching.load(Ordering::SeqCst);
    assert_eq!(script.live(), detached, "live after close = detached");
    assert_eq!(
        script.created() - script.destroyed(),
        detached,
        "created - destroyed = detached"
    );
    shared.detached.lock().unwrap().clear();
    assert_eq!(script.live(), 0);
    assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
    assert!(matches!(pool.acquire_blocking(), Err(PoolError::Closed)));

    let stats = pool.statistics();
    assert_eq!(stats.created, script.created() as u64);
    assert_eq!(stats.destroyed.total(), script.destroyed() as u64);
    let t = &shared.tally;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "stress (seed {seed}): {:?} of load; {} loans, {} timeouts, {} cancelled, {} panics, \
         {} broken, {} detached, {} try_acquire refusals; factory: {} attempts, {} created, {} \
         destroyed; destroyed by cause: {:?}; {samples} metric samples; closed with {}",
        load,
        n(&t.acquired),
        n(&t.timed_out),
        n(&t.cancelled),
        n(&t.panicked),
        n(&t.broken),
        n(&t.detached),
        n(&t.exhausted),
        script.calls(Op::Create),
        script.created(),
        script.destroyed(),
        stats.destroyed,
        if close_async {
            "close().await"
        } else {
            "close_blocking()"
        },
    );
}
