//! The maintenance loop: creates connections on demand (bounded, with backoff), destroys retired
//! ones off the callers' paths, sweeps idle connections (idle timeout, lifetime, leaks), runs the
//! periodic health checks, keeps the coarse clock fresh while the pool is busy, and ends the waits
//! that pass `acquire_timeout` (one timer for all waiters).
//!
//! It is six concurrent parts. Four call the user's callbacks: the creator, the reaper, the
//! sweeper and the health checker. Two call none: the deadline keeper and the ticker (the coarse
//! clock), so that nothing a callback does can delay a deadline or the clock. With
//! [`MaintenanceMode::Thread`] (the default) all six run on a small thread of the pool's own
//! (`async_io::block_on`, no runtime needed), and each callback job on a worker thread of its
//! own, so a callback that blocks its thread delays nothing but itself. With
//! [`MaintenanceMode::Spawned`] the four callback parts are the
//! [`Maintenance`](crate::Maintenance) future the user spawns (the callbacks then run on that
//! executor), and the two others run on a timekeeper thread of the pool's own. The loop ends once
//! the pool is closed and every connection is destroyed, dropping its reference to the pool's
//! state.
//!
//! # Bounded connects
//!
//! Callers never create connections: a waiter signals demand, and the creator answers it. At most
//! `max_concurrent_creates` creates run at once, and only while demand remains: waiters not yet
//! served outnumber the creates in flight, or idle connections plus creates in flight fall short
//! of `min_connections`. A create that has run past `late_after` (a quarter of
//! `acquire_timeout`, at most `create_timeout`) no longer counts against the limit or as
//! serving a waiter, so a hung connect does not stand in for demand. After a failure no new
//! create starts for a pause that doubles from `create_backoff.0` up to `create_backoff.1` (each
//! pause between half and all of that, at random), and then only one at a time until one
//! succeeds. So during an outage of length `T` in which connects fail, the pool attempts at most
//! about `max_concurrent_creates + log2(max / initial) + 2 * T / max` connects, whatever the
//! load. Connects that hang instead stop counting once late, so a new one may start each time
//! one turns late (only one at a time once creates have failed), each still bounded by
//! `create_timeout`.
//!
//! `max_concurrent_creates` also bounds how fast a spike grows the pool: every waiter not yet
//! served is demand the creator answers with a create of its own, so with a large value a burst
//! of short requests may open as many connections as there are waiters before the warm ones
//! have served them all. The default, 2, keeps short spikes on the warm connections.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::ConnectionFactory;
use crate::MaintenanceMode;
use crate::core::{Shared, TICK, Timer};
use crate::factory::BoxFuture;

/// Starts what runs on threads of the pool's own: with [`MaintenanceMode::Thread`] the whole
/// loop, with [`MaintenanceMode::Spawned`] its timekeeping (the rest is the future the user
/// spawns). Either way deadlines and the clock are kept on a thread where no user callback runs
/// (DESIGN invariant 10).
///
/// If a thread cannot be started (the process is out of threads) that is reported on stderr
/// once, since there is no caller to return it to: without the maintenance thread the pool
/// cannot create connections; without the timekeeper, async waits arm timers of their own.
pub(crate) fn start<F: ConnectionFactory>(shared: &Arc<Shared<F>>) {
    let (job, what): (BoxFuture<'static, ()>, &str) = match shared.config.maintenance() {
        MaintenanceMode::Thread => {
            if !shared.claim_maintenance() {
                return;
            }
            let shared = shared.clone();
            let run = async move {
                future::zip(keep_time(&shared), tend(&shared, Runner::Threads)).await;
            };
            (Box::pin(run), "maintenance")
        }
        // Under loom no thread is started: the spawned future keeps time itself.
        MaintenanceMode::Spawned if cfg!(loom) => return,
        MaintenanceMode::Spawned => {
            let shared = shared.clone();
            (
                Box::pin(async move { keep_time(&shared).await }),
                "timekeeper",
            )
        }
    };
    let name = format!("{}-{what}", shared.config.name());
    if let Err(err) = std::thread::Builder::new()
        .name(name)
        .spawn(move || block_on(job))
    {
        eprintln!("nexus-pool: could not start the {what} thread: {err}");
    }
}

/// The spawned loop: the user callbacks' part, run on the user's executor; the timekeeping runs
/// on the pool's timekeeper thread (under loom, here too).
pub(crate) async fn run_spawned<F: ConnectionFactory>(shared: &Arc<Shared<F>>) {
    if cfg!(loom) {
        future::zip(keep_time(shared), tend(shared, Runner::Inline)).await;
    } else {
        tend(shared, Runner::Inline).await;
    }
}

/// Sleeps until `at`.
async fn sleep_until(at: Instant) {
    Timer::at(at).await;
}

/// Drives a future to its end on this thread (the loop's, a worker's); async-io's `block_on` also
/// drives the timers there.
#[cfg(not(loom))]
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    async_io::block_on(fut)
}

#[cfg(loom)]
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    future::block_on(fut)
}

/// The part of the loop that runs no user callback: it ends the waits that pass their deadline
/// and keeps the coarse clock, so that nothing a callback does can delay either.
async fn keep_time<F: ConnectionFactory>(shared: &Shared<F>) {
    future::zip(deadline_keeper(shared), ticker(shared)).await;
}

/// The part that calls the user's callbacks: creates, destroys, sweeps and health checks. Each
/// call is handed to `runner`.
async fn tend<F: ConnectionFactory>(shared: &Arc<Shared<F>>, runner: Runner) {
    future::zip(
        future::zip(creator(shared, runner), reaper(shared, runner)),
        future::zip(sweeper(shared, runner), health_checker(shared, runner)),
    )
    .await;
}

/// Where the user's callbacks run.
#[derive(Debug, Clone, Copy)]
enum Runner {
    /// Each job on a thread of its own, so a callback that blocks its thread (blocking drivers
    /// do) delays nothing but itself: not a deadline, the clock, or another create.
    Threads,
    /// On the loop's own executor (the spawned mode): callbacks may then use that runtime.
    Inline,
}

impl Runner {
    /// Runs `job` to its end. `None` if it could not run to its end: its thread could not be
    /// started, or it panicked (the pool's guards inside it have put everything back).
    async fn run<F, T, Fut>(
        self,
        shared: &Arc<Shared<F>>,
        job: impl FnOnce(Arc<Shared<F>>) -> Fut + Send + 'static,
    ) -> Option<T>
    where
        F: ConnectionFactory,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Runner::Inline => Some(job(shared.clone()).await),
            Runner::Threads => {
                let handoff = Arc::new(Handoff::default());
                let sender = Sender(handoff.clone());
                let shared = shared.clone();
                let name = format!("{}-worker", shared.config.name());
                let started = std::thread::Builder::new().name(name).spawn(move || {
                    // Cancellation: if the loop stops waiting (the pool closed), the job's future
                    // is dropped here, as it would be inline. A callback blocking the thread
                    // cannot be interrupted; it is dropped when it returns.
                    let run = async { Some(job(shared).await) };
                    let abandoned = async {
                        sender.0.abandoned().await;
                        None
                    };
                    if let Some(out) = block_on(future::or(run, abandoned)) {
                        sender.send(out);
                    }
                });
                if let Err(err) = started {
                    eprintln!("nexus-pool: could not start a worker thread: {err}");
                    return None;
                }
                Receiver(handoff).recv().await
            }
        }
    }
}

/// Carries a worker thread's result back to the loop, and the loop's loss of interest to the
/// worker.
struct Handoff<T> {
    value: std::sync::Mutex<Option<T>>,
    /// Whether the worker has finished, with or without a value.
    finished: AtomicBool,
    /// Whether the loop stopped waiting.
    abandoned: AtomicBool,
    /// Notified when either flag is set.
    changed: event_listener::Event,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            value: std::sync::Mutex::new(None),
            finished: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            changed: event_listener::Event::new(),
        }
    }
}

impl<T> Handoff<T> {
    /// Waits until `flag` is set.
    async fn until(&self, flag: &AtomicBool) {
        loop {
            let changed = self.changed.listen();
            if flag.load(Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }

    async fn abandoned(&self) {
        self.until(&self.abandoned).await;
    }

    fn set(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        self.changed.notify(usize::MAX);
    }
}

/// The worker's end: it marks the job finished when dropped, also if the job panicked, so the
/// loop never waits for a worker that is gone.
struct Sender<T>(Arc<Handoff<T>>);

impl<T> Sender<T> {
    fn send(self, value: T) {
        *self.0.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.set(&self.0.finished);
    }
}

/// The loop's end: dropping it before the worker finished abandons the job.
struct Receiver<T>(Arc<Handoff<T>>);

impl<T> Receiver<T> {
    async fn recv(&self) -> Option<T> {
        self.0.until(&self.0.finished).await;
        self.0
            .value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.set(&self.0.abandoned);
    }
}

/// Starts creates while demand remains, at most `max_concurrent_creates` at once, pausing after
/// failures.
///
/// A create that has run for longer than `late_after` no longer counts, neither against
/// `max_concurrent_creates` nor as serving a waiter: a hung connect (a silent network, a full
/// backlog) must not stand in for a waiter's demand until `create_timeout`. It still holds its
/// place in `total`, and counts towards the `min_connections` refill, so late creates never
/// make the pool open more than `max_connections`.
async fn creator<F: ConnectionFactory>(shared: &Arc<Shared<F>>, runner: Runner) {
    let (initial, longest) = shared.config.create_backoff();
    let mut backoff = Backoff::new(initial, longest);
    let late_after = late_after(&shared.config);
    let mut in_flight: Vec<(Instant, BoxFuture<'_, Option<bool>>)> = Vec::new();
    loop {
        if shared.is_closed() {
            // Dropping the creates in flight gives their places back (on worker threads, once
            // each returns).
            return;
        }
        let demand = shared.create_wanted.listen();
        // After a failure, one probe at a time until a create succeeds again: this is what
        // keeps the connects during an outage within the bound in the module docs.
        let limit = if backoff.is_failing() {
            1
        } else {
            shared.config.max_concurrent_creates()
        };
        // One look at the clock per turn: deciding "paused" and "until when" from two reads lost
        // the wake-up when the pause ended between them (found by the fuzzer).
        let now = Instant::now();
        let pause = backoff.pause_at(now);
        let mut fresh = in_flight
            .iter()
            .filter(|(at, _)| now < *at + late_after)
            .count();
        while fresh < limit && pause.is_none() && shared.wants_create(fresh, in_flight.len()) {
            let Some(slot) = shared.reserve() else {
                break;
            };
            let create = runner.run(shared, move |shared| async move {
                shared.create_one(slot).await.is_ok()
            });
            in_flight.push((now, Box::pin(create)));
            fresh += 1;
        }
        // When the next create in flight turns late, demand is looked at again.
        let turns_late = in_flight
            .iter()
            .map(|(at, _)| *at + late_after)
            .filter(|at| *at > now)
            .min();
        let finished = future::poll_fn(|cx| poll_any(&mut in_flight, cx));
        let woken = async {
            demand.await;
            None
        };
        let timer = async {
            match pause.into_iter().chain(turns_late).min() {
                Some(at) => sleep_until(at).await,
                None => future::pending::<()>().await,
            }
            None
        };
        match future::or(finished, future::or(woken, timer)).await {
            Some(Some(true)) => backoff.succeeded(),
            Some(Some(false)) => backoff.failed(),
            Some(None) | None => {}
        }
    }
}

/// How long a create may run before it stops counting as serving a waiter: a quarter of
/// `acquire_timeout` (so a waiter has most of its wait left for a create of its own), and never
/// more than `create_timeout`.
fn late_after(config: &crate::ConnectionPoolConfig) -> Duration {
    (config.acquire_timeout() / 4).min(config.create_timeout())
}

/// Polls every future in `set`; the first that finishes is removed and its output returned.
fn poll_any<T>(
    set: &mut Vec<(Instant, BoxFuture<'_, T>)>,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    for i in 0..set.len() {
        if let Poll::Ready(out) = set[i].1.as_mut().poll(cx) {
            drop(set.swap_remove(i));
            return Poll::Ready(Some(out));
        }
    }
    Poll::Pending
}

/// Exponential backoff with jitter, shared by all creates.
struct Backoff {
    initial: Duration,
    longest: Duration,
    current: Duration,
    until: Option<Instant>,
}

impl Backoff {
    fn new(initial: Duration, longest: Duration) -> Self {
        Backoff {
            initial,
            longest,
            current: initial,
            until: None,
        }
    }

    /// Whether creates have failed since the last success.
    fn is_failing(&self) -> bool {
        self.current > self.initial
    }

    /// When the current pause ends, if `now` is inside one.
    fn pause_at(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|at| now < *at)
    }

    fn failed(&mut self) {
        let half = self.current / 2;
        let jitter = Duration::from_nanos(fastrand::u64(
            0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX),
        ));
        self.until = Some(Instant::now() + half + jitter);
        self.current = (self.current * 2).min(self.longest);
    }

    fn succeeded(&mut self) {
        self.current = self.initial;
        self.until = None;
    }
}

/// Ends the waits that pass `acquire_timeout`, with one timer for all waiters (see
/// `core::waitlist`), so that async waiters need no timer each.
async fn deadline_keeper<F: ConnectionFactory>(shared: &Shared<F>) {
    // Stopping (`close`, or a spawned maintenance future dropped) wakes every waiter, so that
    // async waiters arm timers of their own.
    struct Running<'a, F: ConnectionFactory>(&'a Shared<F>);
    impl<F: ConnectionFactory> Drop for Running<'_, F> {
        fn drop(&mut self) {
            self.0.set_keeper(false);
        }
    }
    shared.set_keeper(true);
    let _running = Running(shared);
    loop {
        let wanted = shared.keeper_wanted().listen();
        if shared.is_closed() {
            return;
        }
        match shared.expire_waiters(Instant::now()) {
            Some(at) => future::or(wanted, sleep_until(at)).await,
            None => wanted.await,
        }
    }
}

/// Keeps the coarse clock fresh while the pool is busy, and asks for a refill when fewer than
/// `min_connections` are idle.
async fn ticker<F: ConnectionFactory>(shared: &Shared<F>) {
    let mut ticking = true;
    loop {
        if shared.is_closed() {
            return;
        }
        let woken = shared.housekeeping.listen();
        if ticking {
            // Stop ticking after a tick in which nobody read the clock.
            ticking = shared.clock.tick();
        }
        // Acquires do not look at `min_connections` (it would cost the fast path); the ticks
        // that run while the pool is busy do, so idle connections are refilled within a tick.
        if shared.below_min_idle() {
            shared.signal_demand();
        }
        if ticking {
            future::or(woken, sleep_until(Instant::now() + TICK)).await;
        } else {
            woken.await;
        }
        // A reader that found the clock asleep restarted it and woke us.
        ticking = ticking || shared.clock.is_ticking();
    }
}

/// Destroys retired connections, one at a time, each bounded by `destroy_timeout`, yielding
/// after each so that a spawned loop never holds its executor through a long batch.
async fn reaper<F: ConnectionFactory>(shared: &Arc<Shared<F>>, runner: Runner) {
    loop {
        let retired = shared.retired.listen();
        if shared.retiring_count() > 0 {
            runner
                .run(shared, |shared| async move {
                    while shared.destroy_one_retiring().await {
                        future::yield_now().await;
                    }
                })
                .await;
            continue;
        }
        if shared.is_closed() && shared.total() == 0 {
            return;
        }
        retired.await;
    }
}

/// Sweeps the idle queue periodically (idle timeout, lifetime, surplus, leaks).
async fn sweeper<F: ConnectionFactory>(shared: &Arc<Shared<F>>, runner: Runner) {
    let every = sweep_interval(shared);
    while wait_or_close(shared, every).await {
        runner
            .run(
                shared,
                |shared| async move { shared.sweep_in_steps().await },
            )
            .await;
    }
}

/// Sleeps `every`; `false` if the pool closed first.
async fn wait_or_close<F: ConnectionFactory>(shared: &Shared<F>, every: Duration) -> bool {
    let closing = shared.closing.listen();
    if shared.is_closed() {
        return false;
    }
    let due = async {
        sleep_until(Instant::now() + every).await;
        true
    };
    let closed = async {
        closing.await;
        false
    };
    future::or(due, closed).await
}

/// How often to sweep: often enough for the shortest of the time limits configured.
fn sweep_interval<F: ConnectionFactory>(shared: &Shared<F>) -> Duration {
    let config = &shared.config;
    [
        config.idle_timeout(),
        config.max_lifetime(),
        config.leak_detection_threshold(),
    ]
    .into_iter()
    .flatten()
    .map(|d| d / 4)
    .fold(Duration::from_secs(30), Duration::min)
    .max(TICK)
}

/// Health-checks idle connections every `health_check_interval`, if a check is configured.
async fn health_checker<F: ConnectionFactory>(shared: &Arc<Shared<F>>, runner: Runner) {
    let Some(every) = shared
        .health
        .as_ref()
        .and(shared.config.health_check_interval())
    else {
        return;
    };
    while wait_or_close(shared, every).await {
        runner
            .run(
                shared,
                |shared| async move { shared.check_idle_health().await },
            )
            .await;
    }
}
