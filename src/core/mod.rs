//! The shared state of one pool (`Shared`): idle queue, counters and the waiter list, and every
//! mechanism that changes them, one file each:
//!
//! - `gate`: the word the hot paths read first (waiters, `CLOSED`, `SHRINK`), every change to
//!   it, and which fence pairs with which;
//! - `idle`: the fast path (lending from the idle queue) and the release path (returning to it);
//! - `idle_queue`: the queue's shape: a returned connection is lent again first;
//! - `waitlist`: the callers waiting, their slots, who is served next, and their deadlines;
//! - `acquire`: the slow path of an acquire and how it ends (served, failed, timed out);
//! - `capacity`: places in `total`: reserving, creating, retiring, destroying, `resize`;
//! - `housekeeping`: the sweep, health checks of idle connections, eviction, leak reports;
//! - `surplus`: which idle connections a whole `idle_timeout` of traffic did not need;
//! - `closing`: `close` and waiting for the last connection to go;
//! - `clock`, `entry`, `leaks`, `stats`, `sync`: the pool's time, one pooled connection's
//!   record, loans in progress, the counters and histograms, and the primitives (loom's under
//!   `cfg(loom)`).
//!
//! The facades (`crate::future`, `crate::blocking`) and the maintenance loop only call into here.
//!
//! # The algorithm
//!
//! Idle connections sit in lock-free `ArrayQueue`s (`idle`: a returned connection in a slot
//! of its own, lent first, the rest oldest first; see `idle_queue`). The uncontended path is one
//! `pop` to acquire and one `push` to release, guarded by a single load of `gate`, the word that holds the
//! number of waiters in the list and the `CLOSED` and `SHRINK` bits. While `gate` is zero nobody
//! waits and the pool is open, so the queue is all there is.
//!
//! # Who is served: first come, first served within a bound
//!
//! A caller that finds nothing joins the wait list (`waitlist`): under its short lock it links a
//! slot at the back and counts itself in `gate`, then (still under the lock) serves the front of
//! the list from `idle`. Waiters are served in their order; what a *newcomer* may do while they
//! wait depends on `fairness_bound`:
//!
//! * **Strict** (bound zero): a newcomer that sees waiters in `gate` may not pop `idle`; it
//!   queues. A release that sees waiters takes the lock, unlinks the front slot, uncounts the
//!   waiter and puts the connection into the slot, then wakes that waiter. (A release that saw
//!   nobody pushes to `idle`, and a `SeqCst` fence separates the push from its second look at
//!   `gate`; a waiter does the mirror image: count itself, fence, then look at `idle`. Either
//!   the release sees the waiter and serves the list, or the waiter sees the connection.)
//! * **Bounded** (the default, 1 ms): a returned connection is handed over like that only to a
//!   waiter that is *due*: a task at once (its wake-up is cheap), a thread once it has waited the
//!   bound. While the oldest waiter is a younger thread, the release puts the connection in
//!   `idle` and wakes that thread to take it itself (one such *competing* waiter at a time); a
//!   newcomer that is running may take it first. With more threads than connections, strict
//!   hand-off gives every connection to a parked thread and parks the running one: each use then
//!   costs a context switch (the lock-convoy problem, 10x below r2d2 in issue 13's
//!   measurements). Barging within a bound is how locks solve it (Go's `sync.Mutex` after 1 ms,
//!   parking_lot's fair unlock every 0.5 ms). For tasks barging bought throughput but cost the
//!   tail (a p99 wait of the bound), so tasks stay strictly first come, first served. Newcomers
//!   are never barred (unlike Go's starvation mode, which convoyed the oldest threads here):
//!   they can only take what sits in `idle`, and a release that finds a due waiter in front
//!   hands its connection over without passing it through `idle`. No caller thus waits longer
//!   than the bound past its first-come turn, plus one return and its own wake-up. (While no
//!   more callers wait than the pool has connections, a waiting thread yields its core twice
//!   before it parks, its slot already linked: a hand-off or a wake to compete that comes
//!   meanwhile costs no wake-up, and the list still keeps its turn; see `acquire`.)
//!
//! Either way, a connection the maintenance loop made or checked, or one a leaving waiter hands
//! back (`Offer::Oldest`), goes to the oldest waiter whatever its age: nobody else is about to
//! come back for it, and demand for it was counted for that waiter. A waiter whose connection
//! fails its checks queues again at the front: it was the oldest.
//!
//! # Cancellation
//!
//! A waiter can be dropped at any await point (a timeout, a `select!`, a dropped task). Its
//! `SlowAcquire` then unlinks its slot if it is still linked; if a connection was already put
//! into the slot, it goes back through the release path, i.e. to the next oldest waiter or to
//! `idle`. Serving and unlinking both happen under the list's lock, so one of the two sees the
//! other: no connection is stranded and no wake-up is lost. A create is guarded by its `Place` in
//! `total`, which gives the place back and wakes the creator; a connection being validated is
//! held by its guard, marked broken, so it is destroyed rather than lent with a half-finished
//! exchange on the wire.
//!
//! # Creating and destroying
//!
//! Callers never create connections themselves: a waiter signals demand and the maintenance
//! loop's creator makes connections (at most `max_concurrent_creates` at once, backing off after
//! failures) and publishes each through the release path, so it goes to the oldest waiter, or to
//! whichever waiter is left if the one that asked has given up. A waiter thus takes whichever
//! comes first, a returned connection or a new one. Connections that must go (broken, expired,
//! evicted, closed) are retired to the maintenance loop's reaper, never destroyed on the
//! dropping thread.
//!
//! # Counters
//!
//! `total` counts connections open or being created or destroyed. A create reserves its place
//! first, so `total <= max` holds, except after `resize` lowered `max` below what was open:
//! then `total` comes down to `max` as connections come back (see `capacity`). `idle` and
//! `active` are derived from `total` and the queues, so the metrics read the same atomics the
//! pool runs on.

mod acquire;
mod capacity;
mod clock;
mod closing;
mod entry;
mod gate;
mod housekeeping;
mod idle;
mod idle_queue;
mod leaks;
mod stats;
mod surplus;
mod sync;
mod timeout;
mod waitlist;

pub(crate) use waitlist::{Offer, WaiterKind};

use capacity::RetireOnDrop;
pub(crate) use timeout::Outcome;
use timeout::{Interrupted, with_timeout};

#[cfg(feature = "async")]
pub(crate) use acquire::SlowAcquire;
pub use clock::ManualClock;
pub(crate) use clock::{Clock, Millis, TICK};
pub use entry::DestroyReason;
pub(crate) use entry::Entry;
use gate::Gate;
pub(crate) use leaks::LeakId;
use stats::Stats;
pub(crate) use sync::Timer;
use sync::{ArrayQueue, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

use std::time::Duration;

use crossbeam_utils::CachePadded;
use event_listener::Event;

use crate::config::CheckoutValidation;
use crate::events::Handlers;
use crate::factory::{ConnectHook, DynHealthCheck};
use crate::{ConnectionFactory, ConnectionPoolConfig, CreateError};

/// How long a connection never lent counts as known good after it was made (HikariCP's bypass
/// window for recently used connections, applied to new ones).
const FRESH_FOR: Duration = Duration::from_millis(500);

/// What the hot paths read on every call, on one cache line.
#[derive(Debug)]
struct Hot {
    /// Registered waiters, plus the `CLOSED` and `SHRINK` bits (see `gate`).
    gate: Gate,
    /// Bumped by `evict_all`; connections created under an older one are replaced.
    generation: AtomicU64,
}

/// Everything one pool shares between its handles, guards, waiters and maintenance.
pub(crate) struct Shared<F: ConnectionFactory> {
    pub(crate) factory: F,
    pub(crate) config: ConnectionPoolConfig,
    pub(crate) health: Option<Box<dyn DynHealthCheck<F::Connection>>>,
    /// Run on each new connection, and again after each reset (which may have undone it).
    pub(crate) on_connect: Option<ConnectHook<F>>,
    pub(crate) events: Handlers,
    pub(crate) clock: Clock,
    hot: CachePadded<Hot>,
    /// Idle connections anyone may take while nobody waits: the slot's first.
    idle: idle_queue::IdleQueue<Entry<F::Connection>>,
    /// Callers waiting, oldest first; connections are handed into their slots.
    waitlist: waitlist::WaitList<F::Connection>,
    /// Connections waiting for `destroy`, with the reason; they still count in `total`.
    retiring: ArrayQueue<(Entry<F::Connection>, DestroyReason)>,
    /// Connections open, being created or being destroyed.
    total: CachePadded<AtomicUsize>,
    /// The current `max_connections` (changed by `resize`).
    max: AtomicUsize,
    /// The creator listens here for demand.
    pub(crate) create_wanted: Event,
    /// The reaper listens here for retiring connections.
    pub(crate) retired: Event,
    /// The housekeeper listens here: clock restarts, `close`.
    pub(crate) housekeeping: Event,
    /// The health checker listens here for `close`.
    pub(crate) closing: Event,
    /// `close().await` listens here for `total` to reach zero.
    drained: Event,
    /// Whether the maintenance loop has been started (thread) or handed out (spawned).
    maintenance_started: AtomicBool,
    /// Checkout validation runs on connections idle at least this long (`Millis::MAX`: never).
    validate_after: Millis,
    /// The same for a connection never lent: making it proved it works, so it is validated only
    /// once it has sat idle `FRESH_FOR` as well.
    validate_new_after: Millis,
    /// Bounded fairness (`fairness_bound` not zero): a waiter is due, served ahead of anyone
    /// younger, once its deadline is this close (`acquire_timeout - fairness_bound`). `None`:
    /// strict FIFO, every waiter is due at once.
    fairness: Option<Duration>,
    /// Connections on loan, when leak detection is on.
    leaks: Option<leaks::Registry>,
    pub(crate) stats: Stats,
    /// `config.detailed_statistics()`, kept beside the stats for the hot path.
    detailed: bool,
    /// Whether lending and returning must do anything beyond the queues: detailed statistics,
    /// event handlers or leak detection. One branch on the hot path when none is configured.
    bookkeeping: bool,
    /// Nanoseconds spent in acquires that took the slow path, for the average acquire time
    /// (detailed statistics only; otherwise the wait distribution has it).
    slow_nanos: AtomicU64,
    /// How many acquires took the slow path.
    slow_acquires: AtomicU64,
    last_create_error: Mutex<Option<CreateError<F::Error>>>,
    /// The idle queue's low-water mark, for shrinking after a burst.
    pub(crate) surplus: surplus::Surplus,
    /// Where the next connection's lifetime jitter falls in the jitter window, in units of 2^-64
    /// of it: a golden-ratio sequence from a random start (see `new_entry`).
    lifetime_phase: AtomicU64,
}

impl<F: ConnectionFactory> Shared<F> {
    pub(crate) fn new(
        factory: F,
        config: ConnectionPoolConfig,
        health: Option<Box<dyn DynHealthCheck<F::Connection>>>,
        on_connect: Option<ConnectHook<F>>,
        events: Handlers,
        clock: Option<ManualClock>,
    ) -> Self {
        let capacity = config.max_connections_ceiling();
        let validate_after = match config.checkout_validation() {
            CheckoutValidation::Never => Millis::MAX,
            CheckoutValidation::Always => 0,
            CheckoutValidation::IdleFor(d) => clock::millis(d),
        };
        let detailed = config.detailed_statistics();
        // A waiter is due (served ahead of younger callers) this long before its deadline.
        // (The bound counts as at most half the wait, so a waiter is due well before it ends.)
        let fairness = (!config.fairness_bound().is_zero()).then(|| {
            let timeout = config.acquire_timeout();
            timeout - config.fairness_bound().min(timeout / 2)
        });
        let bookkeeping =
            detailed || !events.is_empty() || config.leak_detection_threshold().is_some();
        Shared {
            fairness,
            bookkeeping,
            leaks: config
                .leak_detection_threshold()
                .map(|_| leaks::Registry::default()),
            max: AtomicUsize::new(config.max_connections()),
            validate_after,
            validate_new_after: validate_after.max(clock::millis(FRESH_FOR)),
            factory,
            config,
            health,
            on_connect,
            events,
            clock: Clock::new(clock),
            hot: CachePadded::new(Hot {
                gate: Gate::new(fairness.is_none()),
                generation: AtomicU64::new(0),
            }),
            idle: idle_queue::IdleQueue::new(capacity),
            waitlist: waitlist::WaitList::new(),
            retiring: ArrayQueue::new(capacity),
            total: CachePadded::new(AtomicUsize::new(0)),
            create_wanted: Event::new(),
            retired: Event::new(),
            housekeeping: Event::new(),
            closing: Event::new(),
            drained: Event::new(),
            maintenance_started: AtomicBool::new(false),
            detailed,
            stats: Stats::default(),
            slow_nanos: AtomicU64::new(0),
            slow_acquires: AtomicU64::new(0),
            last_create_error: Mutex::new(None),
            surplus: surplus::Surplus::new(),
            // Random, so pools started together (one per process of a fleet) spread apart too.
            lifetime_phase: AtomicU64::new(fastrand::u64(..)),
        }
    }

    // ----- time ---------------------------------------------------------------------------

    /// The coarse time (see `clock`), waking the ticker if it was asleep.
    #[inline]
    pub(crate) fn now(&self) -> Millis {
        let (now, woke) = self.clock.now();
        if woke {
            self.housekeeping.notify(1);
        }
        now
    }

    pub(crate) fn leak_registry(&self) -> Option<&leaks::Registry> {
        self.leaks.as_ref()
    }

    /// The pool's time as an `Instant`.
    pub(crate) fn instant(&self, at: Millis) -> std::time::Instant {
        self.clock.instant(at)
    }

    /// `d` in the pool's milliseconds.
    pub(crate) fn millis(d: Duration) -> Millis {
        clock::millis(d)
    }

    // ----- counts -------------------------------------------------------------------------

    /// Registered waiters.
    #[inline]
    pub(crate) fn waiting(&self) -> usize {
        self.hot.gate.peek().waiters()
    }

    /// Whether `close` has been called.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.hot.gate.is_closed()
    }

    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Acquire)
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// Counts an acquire that took the slow path (the fast path is not counted: an atomic
    /// increment there would cost a quarter of the whole cycle). Three relaxed adds, since the
    /// wait distribution also gives the average; detailed statistics record every acquire in
    /// `lent`, so the slow ones' average is kept apart then.
    pub(crate) fn record_slow_acquire(&self, waited: Duration) {
        if self.detailed {
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.slow_acquires.fetch_add(1, Ordering::Relaxed);
            self.slow_nanos.fetch_add(nanos, Ordering::Relaxed);
        } else {
            self.stats.wait.record(waited);
        }
    }

    pub(crate) fn count_timeout(&self) {
        Stats::count(&self.stats.timed_out);
    }

    /// The statistics since the pool was built.
    pub(crate) fn statistics(&self) -> crate::PoolStatistics {
        self.stats.snapshot(self.detailed)
    }

    /// Average time of the acquires that had to wait or validate.
    pub(crate) fn average_acquire_time(&self) -> Duration {
        if !self.detailed {
            return self.stats.wait.mean();
        }
        let count = self.slow_acquires.load(Ordering::Relaxed);
        if count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.slow_nanos.load(Ordering::Relaxed) / count)
    }

    /// Claims the right to run the maintenance loop; only the first caller gets it.
    pub(crate) fn claim_maintenance(&self) -> bool {
        !self.maintenance_started.swap(true, Ordering::AcqRel)
    }
}

/// A connection just taken from a queue, and what must run on it before it is lent.
pub(crate) struct Popped<C> {
    pub(crate) entry: Entry<C>,
    /// Checkout validation is due.
    pub(crate) validate: bool,
    /// It was used before and a health check is configured: reset its session state.
    pub(crate) reset: bool,
}

impl<C> Popped<C> {
    /// Whether it can be lent as it is, without running any user callback.
    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        !self.validate && !self.reset
    }
}
