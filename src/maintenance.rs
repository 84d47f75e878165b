//! The maintenance loop: creates connections on demand (bounded, with backoff), destroys retired
//! ones off the callers' paths, sweeps idle connections (idle timeout, lifetime, leaks), runs the
//! periodic health checks, keeps the coarse clock fresh while the pool is busy, and ends the waits
//! that pass `acquire_timeout` (one timer for all waiters).
//!
//! It is one future made of five concurrent parts, so a slow health check never delays a create,
//! the clock or a deadline. It runs on a small thread of the pool's own (`async_io::block_on`, no runtime
//! needed), or on the user's executor ([`MaintenanceMode::Spawned`]). It ends once the pool is
//! closed and every connection is destroyed, dropping its reference to the pool's state.
//!
//! # Bounded connects
//!
//! At most `max_concurrent_creates` creates run at once, and only while demand remains: waiters
//! not yet served outnumber the creates in flight, or fewer than `min_connections` are idle. After
//! a failure no new create starts for a pause that doubles from `create_backoff.0` up to
//! `create_backoff.1` (each with up to 50% random jitter), and then only one at a time until one
//! succeeds. So during an outage of length `T` the pool attempts at most about
//! `max_concurrent_creates + log2(max / initial) + 2 * T / max` connects, whatever the load.
//!
//! `max_concurrent_creates` also bounds how fast a spike grows the pool: each waiter can start a
//! create, so with a large value a burst of short requests may open as many connections as there
//! are waiters before the warm ones have served them all. The default, 2, keeps short spikes on
//! the warm connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::ConnectionFactory;
use crate::MaintenanceMode;
use crate::core::{Shared, TICK, Timer};
use crate::factory::BoxFuture;

/// The maintenance loop of a pool, from [`ConnectionPool::maintenance`](crate::ConnectionPool::maintenance).
#[must_use = "futures do nothing unless polled; spawn it on an executor"]
pub struct Maintenance {
    run: Option<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Maintenance { .. }")
    }
}

impl Maintenance {
    pub(crate) fn new<F: ConnectionFactory>(shared: &Arc<Shared<F>>) -> Self {
        let spawned = shared.config.maintenance() == MaintenanceMode::Spawned;
        let run = (spawned && shared.claim_maintenance()).then(|| {
            let shared = shared.clone();
            Box::pin(async move { run(&shared).await }) as BoxFuture<'static, ()>
        });
        Maintenance { run }
    }
}

impl Future for Maintenance {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.run.as_mut() {
            Some(run) => run.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

/// Starts the pool's maintenance thread.
///
/// If the thread cannot be started (the process is out of threads) the pool cannot create
/// connections; that is reported on stderr once, since there is no caller to return it to.
pub(crate) fn start_thread<F: ConnectionFactory>(shared: Arc<Shared<F>>) {
    if !shared.claim_maintenance() {
        return;
    }
    let name = format!("{}-maintenance", shared.config.name());
    if let Err(err) = std::thread::Builder::new()
        .name(name)
        .spawn(move || block_on(run(&shared)))
    {
        eprintln!("nexus-pool: could not start the maintenance thread: {err}");
    }
}

/// Sleeps until `at`.
async fn sleep_until(at: Instant) {
    Timer::at(at).await;
}

/// Drives the loop on its thread; async-io's `block_on` also drives the timers there.
#[cfg(not(loom))]
fn block_on(run: impl Future<Output = ()>) {
    async_io::block_on(run);
}

#[cfg(loom)]
fn block_on(run: impl Future<Output = ()>) {
    future::block_on(run);
}

async fn run<F: ConnectionFactory>(shared: &Shared<F>) {
    future::zip(
        future::zip(creator(shared), reaper(shared)),
        future::zip(
            housekeeper(shared),
            future::zip(health_checker(shared), deadline_keeper(shared)),
        ),
    )
    .await;
}

/// Starts creates while demand remains, at most `max_concurrent_creates` at once, pausing after
/// failures.
async fn creator<F: ConnectionFactory>(shared: &Shared<F>) {
    let (initial, longest) = shared.config.create_backoff();
    let mut backoff = Backoff::new(initial, longest);
    let mut in_flight: Vec<BoxFuture<'_, bool>> = Vec::new();
    loop {
        if shared.is_closed() {
            // Dropping the creates in flight gives their places back.
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
        let pause = backoff.pause_at(Instant::now());
        while in_flight.len() < limit && pause.is_none() && shared.wants_create(in_flight.len()) {
            match shared.reserve() {
                Some(slot) => {
                    in_flight.push(Box::pin(
                        async move { shared.create_one(slot).await.is_ok() },
                    ))
                }
                None => break,
            }
        }
        let finished = future::poll_fn(|cx| poll_any(&mut in_flight, cx));
        let woken = async {
            demand.await;
            None
        };
        let paused = async {
            match pause {
                Some(at) => sleep_until(at).await,
                None => future::pending::<()>().await,
            }
            None
        };
        match future::or(finished, future::or(woken, paused)).await {
            Some(true) => backoff.succeeded(),
            Some(false) => backoff.failed(),
            None => {}
        }
    }
}

/// Polls every future in `set`; the first that finishes is removed and its output returned.
fn poll_any<T>(set: &mut Vec<BoxFuture<'_, T>>, cx: &mut Context<'_>) -> Poll<Option<T>> {
    for i in 0..set.len() {
        if let Poll::Ready(out) = set[i].as_mut().poll(cx) {
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

/// Destroys retired connections, one at a time, each bounded by `destroy_timeout`.
async fn reaper<F: ConnectionFactory>(shared: &Shared<F>) {
    loop {
        let retired = shared.retired.listen();
        while shared.destroy_one_retiring().await {}
        if shared.is_closed() && shared.total() == 0 {
            return;
        }
        retired.await;
    }
}

/// Keeps the coarse clock fresh while the pool is busy and sweeps the idle queue periodically.
async fn housekeeper<F: ConnectionFactory>(shared: &Shared<F>) {
    let every = sweep_interval(shared);
    let mut next_sweep = Instant::now() + every;
    let mut ticking = true;
    loop {
        if shared.is_closed() {
            return;
        }
        let woken = shared.housekeeping.listen();
        if Instant::now() >= next_sweep {
            shared.sweep();
            next_sweep = Instant::now() + every;
        }
        if ticking {
            // Stop ticking after a tick in which nobody read the clock.
            ticking = shared.clock.tick();
        }
        // Acquires do not look at `min_connections` (it would cost the fast path); the ticks
        // that run while the pool is busy do, so idle connections are refilled within a tick.
        if shared.below_min_idle() {
            shared.signal_demand();
        }
        let wake_at = if ticking {
            next_sweep.min(Instant::now() + TICK)
        } else {
            next_sweep
        };
        future::or(woken, sleep_until(wake_at)).await;
        // A reader that found the clock asleep restarted it and woke us.
        ticking = ticking || shared.clock.is_ticking();
    }
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
async fn health_checker<F: ConnectionFactory>(shared: &Shared<F>) {
    let Some(every) = shared
        .health
        .as_ref()
        .and(shared.config.health_check_interval())
    else {
        return;
    };
    loop {
        let closing = shared.closing.listen();
        if shared.is_closed() {
            return;
        }
        let due = async {
            sleep_until(Instant::now() + every).await;
            true
        };
        let closed = async {
            closing.await;
            false
        };
        if !future::or(due, closed).await {
            return;
        }
        shared.check_idle_health().await;
    }
}
