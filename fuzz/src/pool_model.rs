//! A model-based check of `ConnectionPool`, shared by the fuzz target `pool_model` and the
//! regression tests in `tests/fuzz_regressions.rs` (both include this file with `#[path]`, so it
//! uses nothing but `nexus_pool` and `std`).
//!
//! # How it works
//!
//! A run is a [`Setup`] and a list of [`Op`]s. Each op is applied to a real pool and to [`Model`],
//! a few dozen lines of sequential bookkeeping that say what a correct pool does: which caller gets
//! which connection, which connections are destroyed, how many are created. After each op the
//! harness *settles*: it drives the pool (polling the maintenance future and every pending acquire
//! whose waker fired, as an executor would) until the pool's observable state equals the model's,
//! or fails after [`SETTLE_LIMIT`]. "Observable" is: which acquires completed and with which
//! connection, the factory's counts (created, destroyed, validated, live) and the pool's metrics.
//!
//! The model is deterministic and only ever *ahead* of the pool (the pool's maintenance loop
//! creates and destroys connections later, on its own schedule), so every check is either exact
//! once settled, or a one-sided bound while settling:
//!
//! * at every observation: no connection lent twice at once; an acquire completes only if the
//!   model has served it, and then with the connection the model gave it, so waiters are served
//!   in FIFO order; the factory never created or destroyed more than the model; live connections
//!   and `total` never exceed `max` (or, right after `resize` lowered it, what was open then);
//!   `idle + active == total`;
//! * once settled: every count and metric equals the model's;
//! * a pending acquire is only polled after its waker fired, so a lost wake-up shows up as a run
//!   that cannot settle;
//! * at the end, after closing, every connection was destroyed or detached.
//!
//! Time: pool ages come from a `ManualClock` moved by [`Op::AdvanceClock`], which also runs
//! `sweep_idle`. The real-time limits are far out of reach of a run: `acquire_timeout` is 30 s and
//! the periodic sweep (a quarter of `idle_timeout`, capped at 30 s) never fires during one, so no
//! assertion depends on real time. Creates back off for at most a millisecond after a failure.
//!
//! Two ways to run maintenance, chosen by [`Setup::threaded`]: on the pool's own thread (the
//! default mode, with real concurrency), or as the `Spawned` future polled by the harness itself
//! between its checks (deterministic, and fast enough for millions of runs).
//!
//! Environment: `POOL_MODEL_THREADED=1` lets fuzz inputs choose the thread (see the fuzz
//! target).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use nexus_pool::{
    CheckoutValidation, ConnectionFactory, ConnectionPool, ConnectionPoolConfig, Maintenance,
    MaintenanceMode, ManualClock, PoolError, PooledConnection,
};

/// The largest `max_connections` a run uses (`resize` stays within it).
pub const MAX_CEILING: usize = 4;
/// The most ops one run applies.
pub const MAX_OPS: usize = 128;
/// `idle_timeout`, in manual-clock milliseconds.
pub const IDLE_TIMEOUT_MS: u64 = 1_000_000;
/// `max_lifetime`, in manual-clock milliseconds (no jitter).
pub const LIFETIME_MS: u64 = 10_000_000;
/// Checkout validation runs on connections idle at least this long (manual clock).
pub const VALIDATE_AFTER_MS: u64 = 500;
/// How long the harness drives the pool to reach the model's state before it calls it a bug.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// The pool a run builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// `max_connections`, 1 to [`MAX_CEILING`].
    pub max: usize,
    /// Maintenance on the pool's own thread (`true`) or polled by the harness (`false`).
    pub threaded: bool,
}

/// One step of a run. Indices pick among the pending acquires or the held connections (in the
/// order they were started), modulo their number; an op on an empty list does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `try_acquire()`.
    TryAcquire,
    /// Creates an `acquire()` future and polls it once; if it is pending it is kept.
    StartAcquire,
    /// Polls a pending acquire although its waker did not fire (a spurious poll).
    PollPending(usize),
    /// Drops a pending acquire (cancellation).
    DropPending(usize),
    /// Drops a held connection (back to the pool).
    Release(usize),
    /// `mark_broken()`, then drops it.
    MarkBroken(usize),
    /// `detach()`, then drops the connection.
    Detach(usize),
    /// Moves the manual clock forward by this many milliseconds, then `sweep_idle()`.
    AdvanceClock(u64),
    /// From now on `create` fails (`true`) or succeeds (`false`).
    FactoryFails(bool),
    /// From now on checkout validation fails (`true`) or passes (`false`).
    ValidationFails(bool),
    /// `evict_all()`.
    EvictAll,
    /// `resize(n)`, `n` in 1 to [`MAX_CEILING`].
    Resize(usize),
    /// `close_now()`.
    Close,
}

// ----- the factory ---------------------------------------------------------------------------

/// What the factory did, shared with the harness.
#[derive(Debug, Default)]
pub struct Counts {
    /// Successful creates (also the next connection's id).
    pub created: AtomicUsize,
    /// Create attempts, failed ones included.
    pub attempts: AtomicUsize,
    pub destroyed: AtomicUsize,
    pub validations: AtomicUsize,
    /// Connections that exist: created and not yet dropped (by `destroy` or by their holder).
    pub live: AtomicUsize,
    pub fail_create: AtomicBool,
    pub fail_validate: AtomicBool,
}

impl Counts {
    fn get(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }
}

/// A connection: its serial number. Dropping it, wherever that happens, counts it gone.
#[derive(Debug)]
pub struct Conn {
    pub id: usize,
    counts: Arc<Counts>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.counts.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub struct CreateFailed;

impl fmt::Display for CreateFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted create failure")
    }
}

impl std::error::Error for CreateFailed {}

/// Creates, validates and destroys as `Counts` says; every future is ready at its first poll.
pub struct Factory {
    counts: Arc<Counts>,
}

impl ConnectionFactory for Factory {
    type Connection = Conn;
    type Error = CreateFailed;

    async fn create(&self) -> Result<Conn, CreateFailed> {
        self.counts.attempts.fetch_add(1, Ordering::SeqCst);
        if self.counts.fail_create.load(Ordering::SeqCst) {
            return Err(CreateFailed);
        }
        self.counts.live.fetch_add(1, Ordering::SeqCst);
        let id = self.counts.created.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            id,
            counts: self.counts.clone(),
        })
    }

    async fn destroy(&self, conn: Conn) {
        drop(conn);
        self.counts.destroyed.fetch_add(1, Ordering::SeqCst);
    }

    async fn validate(&self, _conn: &mut Conn) -> bool {
        self.counts.validations.fetch_add(1, Ordering::SeqCst);
        !self.counts.fail_validate.load(Ordering::SeqCst)
    }
}

// ----- the model -----------------------------------------------------------------------------

/// The idle queue as the pool keeps it (`core::idle_queue`): the connection a guard returned
/// last in a slot of its own, popped first; the rest oldest first.
#[derive(Debug, Default)]
struct MIdle {
    recent: Option<MConn>,
    rest: VecDeque<MConn>,
}

impl MIdle {
    fn len(&self) -> usize {
        usize::from(self.recent.is_some()) + self.rest.len()
    }

    fn pop_front(&mut self) -> Option<MConn> {
        self.recent.take().or_else(|| self.rest.pop_front())
    }

    /// A connection a guard returned: into the slot if it is empty, else to the back.
    fn push_recent(&mut self, c: MConn) {
        if self.recent.is_none() {
            self.recent = Some(c);
        } else {
            self.rest.push_back(c);
        }
    }

    fn push_back(&mut self, c: MConn) {
        self.rest.push_back(c);
    }

    /// A sweep's start: the slot's connection joins the back.
    fn settle(&mut self) {
        if let Some(c) = self.recent.take() {
            self.rest.push_back(c);
        }
    }
}

/// A connection as the model knows it.
#[derive(Debug, Clone, Copy)]
struct MConn {
    /// The factory's id; `None` for a connection the model created but the harness has not seen
    /// lent yet (the model cannot know which id the factory will give).
    id: Option<usize>,
    created_at: u64,
    last_used_at: u64,
    generation: u64,
    /// Lent at least once.
    used: bool,
}

/// How an acquire the model has finished should complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// With the connection `Model::lent` holds for its ticket.
    Lent,
    Closed,
}

/// What `try_acquire` should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryOutcome {
    Lent,
    Exhausted,
    Closed,
}

/// A sequential pool: the specification the real one is checked against. Destroys happen at
/// once here (the real pool's happen later, on the maintenance loop), and so do creates.
#[derive(Debug)]
struct Model {
    now: u64,
    generation: u64,
    max: usize,
    /// The bound on `total` (and live connections) while the pool settles: `max`, or what was
    /// open when `resize` lowered `max` below it.
    cap: usize,
    closed: bool,
    /// The pool's `SHRINK` bit: `resize` lowered `max` below `total` and the pool has not yet
    /// seen that it fits.
    shrink: bool,
    fails: bool,
    validation_fails: bool,
    /// The idle queue: the slot for a returned connection, then the rest oldest first.
    idle: MIdle,
    /// Connections lent, by the ticket of the acquire that got them.
    lent: BTreeMap<u64, MConn>,
    /// Acquires waiting, oldest first.
    pending: VecDeque<u64>,
    /// Acquires the model completed that the harness has not yet seen complete.
    expected: BTreeMap<u64, Outcome>,
    created: usize,
    destroyed: usize,
    detached: usize,
    validations: usize,
    /// The fewest connections idle after a lending pop since the last sweep (`core::surplus`).
    low: usize,
    /// The sweeps' closed sub-windows: when each opened and its low-water mark.
    windows: VecDeque<(u64, usize)>,
    /// When the current sub-window opened.
    opened: u64,
}

impl Model {
    fn new(max: usize) -> Self {
        Model {
            now: 0,
            generation: 0,
            max,
            cap: max,
            closed: false,
            shrink: false,
            fails: false,
            validation_fails: false,
            idle: MIdle::default(),
            lent: BTreeMap::new(),
            pending: VecDeque::new(),
            expected: BTreeMap::new(),
            created: 0,
            destroyed: 0,
            detached: 0,
            validations: 0,
            low: 0,
            windows: VecDeque::new(),
            opened: 0,
        }
    }

    /// A lending pop left `idle` as it is now.
    fn note_low(&mut self) {
        self.low = self.low.min(self.idle.len());
    }

    /// A sweep opens a new sub-window; returns how many connections stayed idle through the whole
    /// last `IDLE_TIMEOUT_MS` (the surplus it may retire).
    fn close_window(&mut self) -> usize {
        let idle_now = self.idle.len();
        let low = std::mem::replace(&mut self.low, idle_now).min(idle_now);
        self.windows.push_back((self.opened, low));
        self.opened = self.now;
        let since = self.now.saturating_sub(IDLE_TIMEOUT_MS);
        while self.windows.len() > 1 && self.windows[1].0 <= since {
            self.windows.pop_front();
        }
        match self.windows.front() {
            Some(&(start, _)) if start <= since => {
                self.windows.iter().map(|w| w.1).min().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Connections open (nothing is being created or destroyed in the model).
    fn total(&self) -> usize {
        self.idle.len() + self.lent.len()
    }

    fn stale(&self, c: &MConn) -> bool {
        self.now >= c.created_at + LIFETIME_MS || c.generation != self.generation
    }

    fn validation_due(&self, c: &MConn) -> bool {
        c.used && self.now - c.last_used_at >= VALIDATE_AFTER_MS
    }

    /// A connection taken out of `idle` or `lent` is destroyed; then `connection_gone`.
    fn retire(&mut self) {
        self.destroyed += 1;
        self.gone();
    }

    /// `connection_gone`: a shrink ends once the pool fits.
    fn gone(&mut self) {
        if self.shrink && self.total() <= self.max {
            self.shrink = false;
        }
    }

    /// Retires one idle connection while the pool is above `max`; returns whether it did.
    fn shrink_one(&mut self) -> bool {
        if self.total() <= self.max {
            self.shrink = false;
            return false;
        }
        match self.idle.pop_front() {
            Some(_) => {
                self.retire();
                self.note_low();
                true
            }
            None => false,
        }
    }

    /// The release path: into `idle` (`returned`: by a guard, so into the slot if it is
    /// empty), then close, shrink, or hand-off to the oldest waiter.
    fn push_idle(&mut self, c: MConn, returned: bool) {
        if returned {
            self.idle.push_recent(c);
        } else {
            self.idle.push_back(c);
        }
        if self.closed {
            while self.idle.pop_front().is_some() {
                self.retire();
            }
            return;
        }
        if (self.shrink && self.shrink_one()) || self.pending.is_empty() {
            return;
        }
        if let Some(c) = self.idle.pop_front() {
            self.note_low();
            // What reaches a waiter this way was just released (so it is not due for
            // validation) or just created; a model that got here otherwise is incomplete.
            assert!(
                !self.stale(&c) && !self.validation_due(&c),
                "model: a hand-off that needs checks ({c:?})"
            );
            let ticket = self.pending.pop_front().expect("a waiter");
            self.lend(ticket, c);
        }
    }

    fn lend(&mut self, ticket: u64, mut c: MConn) {
        c.used = true;
        self.lent.insert(ticket, c);
        self.expected.insert(ticket, Outcome::Lent);
    }

    /// Pops idle connections, retiring stale ones, until a live one comes.
    fn take_idle(&mut self) -> Option<MConn> {
        loop {
            let c = self.idle.pop_front()?;
            self.note_low();
            if self.stale(&c) {
                self.retire();
                continue;
            }
            return Some(c);
        }
    }

    fn try_acquire(&mut self, ticket: u64) -> TryOutcome {
        if self.closed {
            return TryOutcome::Closed;
        }
        if !self.pending.is_empty() || self.shrink {
            return TryOutcome::Exhausted;
        }
        match self.take_idle() {
            Some(mut c) => {
                c.used = true;
                self.lent.insert(ticket, c);
                TryOutcome::Lent
            }
            None => TryOutcome::Exhausted,
        }
    }

    /// Returns whether the acquire completes at its first poll.
    fn start_acquire(&mut self, ticket: u64) -> bool {
        if self.closed {
            self.expected.insert(ticket, Outcome::Closed);
            return true;
        }
        if self.pending.is_empty() {
            while let Some(c) = self.take_idle() {
                if self.validation_due(&c) {
                    self.validations += 1;
                    if self.validation_fails {
                        self.retire();
                        continue;
                    }
                }
                self.lend(ticket, c);
                return true;
            }
        }
        self.pending.push_back(ticket);
        false
    }

    fn drop_pending(&mut self, ticket: u64) {
        self.pending.retain(|&t| t != ticket);
    }

    fn give_back(&mut self, ticket: u64, broken: bool) {
        let mut c = self.lent.remove(&ticket).expect("model: a lent connection");
        if broken || self.stale(&c) {
            self.retire();
            return;
        }
        c.last_used_at = self.now;
        self.push_idle(c, true);
    }

    fn detach(&mut self, ticket: u64) {
        self.lent.remove(&ticket).expect("model: a lent connection");
        self.detached += 1;
        self.gone();
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        if self.closed {
            return;
        }
        let surplus = self.close_window();
        let mut retired = 0;
        // Oldest first, each once.
        self.idle.settle();
        for _ in 0..self.idle.len() {
            let c = self.idle.pop_front().expect("counted");
            let too_long = self.now - c.last_used_at >= IDLE_TIMEOUT_MS;
            if self.stale(&c) || too_long || retired < surplus {
                self.retire();
                retired += 1;
                continue;
            }
            self.push_idle(c, false);
        }
        for w in self.windows.iter_mut() {
            w.1 = w.1.saturating_sub(retired);
        }
        self.low = self.low.saturating_sub(retired);
    }

    fn evict_all(&mut self) {
        self.generation += 1;
        while self.idle.pop_front().is_some() {
            self.retire();
        }
        // What is retired outside a sweep no longer counts as idle (`core::surplus`).
        self.note_low();
    }

    fn resize(&mut self, max: usize) {
        self.cap = max.max(self.total());
        self.max = max;
        if self.total() > max {
            self.shrink = true;
            while self.shrink_one() {}
        }
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        for ticket in std::mem::take(&mut self.pending) {
            self.expected.insert(ticket, Outcome::Closed);
        }
        while self.idle.pop_front().is_some() {
            self.retire();
        }
        // What is retired outside a sweep no longer counts as idle (`core::surplus`).
        self.note_low();
    }

    /// What the maintenance loop does by itself: create a connection for each waiter while
    /// there is room and creates succeed.
    fn settle(&mut self) {
        while !self.closed && !self.fails && !self.pending.is_empty() && self.total() < self.max {
            self.created += 1;
            let c = MConn {
                id: None,
                created_at: self.now,
                last_used_at: self.now,
                generation: self.generation,
                used: false,
            };
            self.push_idle(c, false);
        }
    }
}

// ----- the harness ---------------------------------------------------------------------------

/// A waker that records that it fired.
#[derive(Debug, Default)]
struct Flag(AtomicBool);

impl Flag {
    fn new() -> Arc<Self> {
        Arc::new(Flag(AtomicBool::new(true)))
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Pool = ConnectionPool<Factory>;
type Guard<'p> = PooledConnection<'p, Factory>;
type AcquireResult<'p> = Result<Guard<'p>, PoolError<CreateFailed>>;

/// An acquire future that did not complete at its first poll, with the waker it was polled with.
struct Waiting<'p> {
    fut: Pin<Box<nexus_pool::futures::Acquire<'p, Factory>>>,
    flag: Arc<Flag>,
}

impl<'p> Waiting<'p> {
    fn poll(&mut self) -> Poll<AcquireResult<'p>> {
        let waker = Waker::from(self.flag.clone());
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

struct Harness<'p> {
    setup: Setup,
    pool: &'p Pool,
    counts: Arc<Counts>,
    clock: ManualClock,
    /// The `Spawned` maintenance future and its waker, unless the pool runs its own thread.
    maintenance: Option<(Maintenance, Arc<Flag>)>,
    maintenance_done: bool,
    model: Model,
    guards: BTreeMap<u64, Guard<'p>>,
    pending: BTreeMap<u64, Waiting<'p>>,
    /// Ids of the connections held now.
    held: BTreeSet<usize>,
    /// Ids ever lent.
    seen: BTreeSet<usize>,
    next_ticket: u64,
    /// The ops applied so far, for the failure report.
    log: Vec<Op>,
}

/// Builds the pool for `setup` and applies `ops`; panics, with a report, on any disagreement.
pub fn run(setup: Setup, ops: &[Op]) {
    let setup = Setup {
        max: setup.max.clamp(1, MAX_CEILING),
        ..setup
    };
    let counts = Arc::new(Counts::default());
    let clock = ManualClock::new();
    let config = ConnectionPoolConfig::builder()
        .min_connections(0)
        .max_connections(setup.max)
        .max_connections_ceiling(MAX_CEILING)
        .acquire_timeout(Duration::from_secs(30))
        .idle_timeout(Duration::from_millis(IDLE_TIMEOUT_MS))
        .max_lifetime(Duration::from_millis(LIFETIME_MS))
        .max_lifetime_jitter(Duration::ZERO)
        .health_check_interval(None)
        .checkout_validation(CheckoutValidation::IdleFor(Duration::from_millis(
            VALIDATE_AFTER_MS,
        )))
        .create_backoff(Duration::from_micros(100), Duration::from_millis(1))
        .maintenance(if setup.threaded {
            MaintenanceMode::Thread
        } else {
            MaintenanceMode::Spawned
        })
        .build()
        .expect("a valid config");
    let factory = Factory {
        counts: counts.clone(),
    };
    let pool = ConnectionPool::builder(factory)
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let maintenance = (!setup.threaded).then(|| (pool.maintenance(), Flag::new()));
    let mut harness = Harness {
        setup,
        pool: &pool,
        counts,
        clock,
        maintenance,
        maintenance_done: false,
        model: Model::new(setup.max),
        guards: BTreeMap::new(),
        pending: BTreeMap::new(),
        held: BTreeSet::new(),
        seen: BTreeSet::new(),
        next_ticket: 0,
        log: Vec::new(),
    };
    for &op in ops.iter().take(MAX_OPS) {
        harness.log.push(op);
        harness.apply(op);
        harness.model.settle();
        harness.settle();
    }
    harness.finish();
}

impl<'p> Harness<'p> {
    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn nth<V>(map: &BTreeMap<u64, V>, i: usize) -> Option<u64> {
        if map.is_empty() {
            return None;
        }
        map.keys().nth(i % map.len()).copied()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::TryAcquire => {
                let ticket = self.ticket();
                let want = self.model.try_acquire(ticket);
                match (want, self.pool.try_acquire()) {
                    (TryOutcome::Lent, Ok(guard)) => self.take_guard(ticket, guard),
                    (TryOutcome::Exhausted, Err(PoolError::Exhausted))
                    | (TryOutcome::Closed, Err(PoolError::Closed)) => {}
                    (want, got) => self.fail(&format!(
                        "try_acquire: the model says {want:?}, the pool gave {:?}",
                        got.map(|g| g.id)
                    )),
                }
            }
            Op::StartAcquire => {
                let ticket = self.ticket();
                let at_once = self.model.start_acquire(ticket);
                // With a maintenance thread, a connection created for it may come before the
                // first poll returns.
                self.model.settle();
                let mut waiting = Waiting {
                    fut: Box::pin(self.pool.acquire()),
                    flag: Flag::new(),
                };
                waiting.flag.take();
                match waiting.poll() {
                    Poll::Ready(result) => self.complete(ticket, result),
                    Poll::Pending if at_once => {
                        self.fail("acquire: the model serves it at once, the pool made it wait")
                    }
                    Poll::Pending => {
                        self.pending.insert(ticket, waiting);
                    }
                }
            }
            Op::PollPending(i) => {
                if let Some(ticket) = Self::nth(&self.pending, i) {
                    let waiting = self.pending.get_mut(&ticket).expect("listed");
                    if let Poll::Ready(result) = waiting.poll() {
                        self.pending.remove(&ticket);
                        self.complete(ticket, result);
                    }
                }
            }
            Op::DropPending(i) => {
                if let Some(ticket) = Self::nth(&self.pending, i) {
                    self.model.drop_pending(ticket);
                    drop(self.pending.remove(&ticket));
                }
            }
            Op::Release(i) | Op::MarkBroken(i) => {
                if let Some(ticket) = Self::nth(&self.guards, i) {
                    let mut guard = self.guards.remove(&ticket).expect("listed");
                    self.held.remove(&guard.id);
                    let broken = matches!(op, Op::MarkBroken(_));
                    if broken {
                        guard.mark_broken();
                    }
                    self.model.give_back(ticket, broken);
                    drop(guard);
                }
            }
            Op::Detach(i) => {
                if let Some(ticket) = Self::nth(&self.guards, i) {
                    let guard = self.guards.remove(&ticket).expect("listed");
                    self.model.detach(ticket);
                    let conn = guard.detach();
                    self.held.remove(&conn.id);
                    drop(conn);
                }
            }
            Op::AdvanceClock(ms) => {
                self.model.advance(ms);
                self.clock.advance(Duration::from_millis(ms));
                self.pool.sweep_idle();
            }
            Op::FactoryFails(fails) => {
                self.model.fails = fails;
                self.counts.fail_create.store(fails, Ordering::SeqCst);
            }
            Op::ValidationFails(fails) => {
                self.model.validation_fails = fails;
                self.counts.fail_validate.store(fails, Ordering::SeqCst);
            }
            Op::EvictAll => {
                self.model.evict_all();
                self.pool.evict_all();
            }
            Op::Resize(n) => {
                let n = n.clamp(1, MAX_CEILING);
                self.model.resize(n);
                if let Err(err) = self.pool.resize(n) {
                    self.fail(&format!("resize({n}) refused: {err}"));
                }
                // Creates in flight (the model does not see them with threaded maintenance)
                // keep their places: until they end the pool may hold what it held at the
                // resize, but never more (`reserve` backs out past a lowered `max`).
                let total = self.pool.current_metrics().total;
                self.model.cap = self.model.cap.max(total);
            }
            Op::Close => {
                let first = !self.model.closed;
                self.model.close();
                if self.pool.close_now() != first {
                    self.fail("close_now() returned the wrong answer");
                }
            }
        }
    }

    /// Records a connection the pool lent for `ticket`, checking it against the model.
    fn take_guard(&mut self, ticket: u64, guard: Guard<'p>) {
        let id = guard.id;
        if !self.held.insert(id) {
            self.fail(&format!("connection {id} lent twice at once"));
        }
        let fresh = !self.seen.contains(&id);
        let Some(want) = self.model.lent.get(&ticket).map(|m| m.id) else {
            self.fail(&format!(
                "ticket {ticket} got {id}, the model lent it nothing"
            ));
        };
        match want {
            Some(want) if want != id => {
                self.fail(&format!("ticket {ticket} got {id}, the model says {want}"))
            }
            Some(_) => {}
            None if fresh => {
                if let Some(m) = self.model.lent.get_mut(&ticket) {
                    m.id = Some(id);
                }
            }
            None => self.fail(&format!(
                "ticket {ticket} got {id}, the model says a new connection"
            )),
        }
        self.seen.insert(id);
        self.guards.insert(ticket, guard);
    }

    /// Records a completed acquire, checking it against the model.
    fn complete(&mut self, ticket: u64, result: AcquireResult<'p>) {
        let Some(want) = self.model.expected.remove(&ticket) else {
            let older: Vec<_> = self.model.pending.iter().filter(|&&t| t < ticket).collect();
            self.fail(&format!(
                "ticket {ticket} completed ({:?}) but the model says it waits (older waiters: \
                 {older:?}): served out of FIFO order or without a connection to serve it",
                result.map(|g| g.id)
            ));
        };
        match (want, result) {
            (Outcome::Lent, Ok(guard)) => self.take_guard(ticket, guard),
            (Outcome::Closed, Err(PoolError::Closed)) => {}
            (want, got) => self.fail(&format!(
                "ticket {ticket}: the model says {want:?}, the pool gave {:?}",
                got.map(|g| g.id)
            )),
        }
    }

    /// Drives the pool until it matches the model, checking the bounds on the way.
    fn settle(&mut self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let mut polled = self.poll_maintenance();
            let woken: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, w)| w.flag.take())
                .map(|(&t, _)| t)
                .collect();
            for ticket in woken {
                polled = true;
                let waiting = self.pending.get_mut(&ticket).expect("listed");
                if let Poll::Ready(result) = waiting.poll() {
                    self.pending.remove(&ticket);
                    self.complete(ticket, result);
                }
            }
            self.check_bounds();
            // A finished maintenance future may still be woken by a timer that fired as it
            // was dropped; that is no work.
            let maintenance_idle =
                self.maintenance_done || self.maintenance.as_ref().is_none_or(|(_, f)| !f.is_set());
            if maintenance_idle && self.matches() {
                break;
            }
            if Instant::now() > deadline {
                self.fail("the pool did not reach the model's state (a lost wake-up, or a leak)");
            }
            if !polled {
                std::thread::yield_now();
            }
        }
        if self.model.total() <= self.model.max {
            self.model.cap = self.model.max;
        }
    }

    /// Polls the `Spawned` maintenance future if its waker fired; returns whether it did.
    fn poll_maintenance(&mut self) -> bool {
        let Some((maintenance, flag)) = self.maintenance.as_mut() else {
            return false;
        };
        if self.maintenance_done || !flag.take() {
            return false;
        }
        let waker = Waker::from(flag.clone());
        if Pin::new(maintenance)
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.maintenance_done = true;
        }
        true
    }

    /// What must hold at every observation, settled or not.
    fn check_bounds(&self) {
        let c = &self.counts;
        let m = self.pool.current_metrics();
        let live = Counts::get(&c.live);
        let problem = if m.idle + m.active != m.total {
            Some("idle + active != total")
        } else if m.total > self.model.cap {
            Some("total above max")
        } else if live > self.model.cap {
            Some("more live connections than max")
        } else if Counts::get(&c.created) > self.model.created {
            Some("the pool created more connections than the model")
        } else if Counts::get(&c.destroyed) > self.model.destroyed {
            Some("the pool destroyed more connections than the model")
        } else if Counts::get(&c.validations) > self.model.validations {
            Some("the pool validated more often than the model")
        } else if m.max != self.model.max {
            Some("metrics.max differs from the model's")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.fail(problem);
        }
    }

    /// Whether the pool's observable state equals the model's.
    fn matches(&self) -> bool {
        let c = &self.counts;
        let model = &self.model;
        let m = self.pool.current_metrics();
        model.expected.is_empty()
            && self
                .pending
                .keys()
                .eq(model.pending.iter().collect::<BTreeSet<_>>())
            && self.guards.keys().eq(model.lent.keys())
            && Counts::get(&c.created) == model.created
            && Counts::get(&c.destroyed) == model.destroyed
            && Counts::get(&c.validations) == model.validations
            && Counts::get(&c.live) == model.total()
            && m.total == model.total()
            && m.idle == model.idle.len()
            && m.waiting == model.pending.len()
    }

    /// Gives everything back, closes, and checks that every connection is gone.
    fn finish(mut self) {
        self.pending.clear();
        self.guards.clear();
        self.pool.close_now();
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let polled = self.poll_maintenance();
            let m = self.pool.current_metrics();
            let maintenance_over = self.maintenance.is_none() || self.maintenance_done;
            if maintenance_over && m.total == 0 && Counts::get(&self.counts.live) == 0 {
                break;
            }
            if Instant::now() > deadline {
                self.fail("closing did not destroy every connection");
            }
            if !polled {
                std::thread::yield_now();
            }
        }
        let c = &self.counts;
        let detached = self.model.detached;
        if Counts::get(&c.created) != Counts::get(&c.destroyed) + detached {
            self.fail("created != destroyed + detached after close");
        }
    }

    fn fail(&self, problem: &str) -> ! {
        let c = &self.counts;
        let mut report = String::new();
        let _ = writeln!(report, "pool model: {problem}");
        let _ = writeln!(report, "setup: {:?}", self.setup);
        let _ = writeln!(report, "ops (the last one just applied): {:?}", self.log);
        let _ = writeln!(report, "metrics: {:?}", self.pool.current_metrics());
        if let Some((_, flag)) = &self.maintenance {
            let _ = writeln!(
                report,
                "maintenance: finished {}, woken {}",
                self.maintenance_done,
                flag.is_set()
            );
        }
        let _ = writeln!(
            report,
            "factory: created {} (attempts {}), destroyed {}, validations {}, live {}",
            Counts::get(&c.created),
            Counts::get(&c.attempts),
            Counts::get(&c.destroyed),
            Counts::get(&c.validations),
            Counts::get(&c.live),
        );
        let _ = writeln!(
            report,
            "harness: pending {:?}, held {:?}",
            self.pending.keys().collect::<Vec<_>>(),
            self.guards
                .iter()
                .map(|(t, g)| (*t, g.id))
                .collect::<Vec<_>>()
        );
        let _ = writeln!(report, "model: {:#?}", self.model);
        panic!("{report}");
    }
}
