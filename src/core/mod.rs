//! The shared state of one pool: idle queue, hand-off queue, counters and the waiter list. This is
//! the only module that touches atomics.
//!
//! # The algorithm
//!
//! Idle connections sit in a lock-free `ArrayQueue` (`idle`). The uncontended path is one `pop` to
//! acquire and one `push` to release, guarded by a single load of `gate`, the word that holds the
//! number of registered waiters and the `CLOSED` bit. While `gate` is zero nobody waits and the
//! pool is open, so the queue is all there is.
//!
//! # Why waiters are served first-come first-served
//!
//! A caller that finds nothing becomes a waiter: it creates an `event_listener` listener (the
//! listener list is FIFO) and then counts itself in `gate`. From then on:
//!
//! * a newcomer that sees waiters in `gate` may not pop `idle` or create a connection; it queues;
//! * a release that sees waiters after its push (a `SeqCst` fence separates the push from the load
//!   of `gate`, the waiter does the mirror image: count itself, then re-check) moves one idle
//!   connection into `handoff` and notifies one *additional* listener, i.e. the oldest waiter not
//!   already notified. Only woken waiters pop `handoff`, so a newcomer cannot take a connection
//!   that was handed to an older waiter.
//!
//! # Cancellation
//!
//! A waiter can be dropped at any await point (a timeout, a `select!`, a dropped task). Its
//! `Waiter` guard then (1) drops its listener, which passes a received but unused notification on
//! to the next listener, (2) uncounts itself, and (3) if it was the last waiter, moves whatever
//! sits in `handoff` back through the release path, or otherwise wakes one more waiter when
//! `handoff` is not empty, so that no connection is stranded and no wake-up is lost. A create is
//! guarded by a `CreateSlot` that gives its place in `total` back and wakes a waiter; a connection
//! being validated is held by its guard, marked broken, so it is destroyed rather than lent with
//! a half-finished exchange on the wire.
//!
//! # Counters
//!
//! `total` counts connections open or being created or destroyed (a create reserves its place
//! first). `idle` and `active` are derived from `total` and the queues, so the metrics read the
//! same atomics the pool runs on.

mod acquire;
mod clock;
mod entry;

pub(crate) use acquire::Acquired;
pub(crate) use clock::{Clock, Millis, TICK};
pub use entry::DestroyReason;
pub(crate) use entry::Entry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use event_listener::{Event, IntoNotification};

use crate::config::CheckoutValidation;
use crate::factory::DynHealthCheck;
use crate::{ConnectionFactory, ConnectionPoolConfig};

/// The `CLOSED` bit of `gate`; the bits below it count registered waiters.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Counts behind the average acquire time.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Successful acquires that had to wait, create or validate.
    slow_acquires: AtomicU64,
    /// Nanoseconds spent in those.
    slow_nanos: AtomicU64,
}

/// Everything one pool shares between its handles, guards, waiters and maintenance.
pub(crate) struct Shared<F: ConnectionFactory> {
    pub(crate) factory: F,
    pub(crate) config: ConnectionPoolConfig,
    pub(crate) health: Option<Box<dyn DynHealthCheck<F::Connection>>>,
    pub(crate) clock: Clock,
    /// Registered waiters, plus the `CLOSED` bit.
    gate: CachePadded<AtomicUsize>,
    /// Idle connections anyone may take while nobody waits.
    idle: ArrayQueue<Entry<F::Connection>>,
    /// Connections handed to waiters that were notified; only woken waiters pop it.
    handoff: ArrayQueue<Entry<F::Connection>>,
    /// Connections in `handoff` whose notification reached no listener (every waiter was busy
    /// creating or validating); a newcomer's first re-check may take those.
    unnotified: AtomicUsize,
    /// Connections waiting for `destroy`, with the reason; they still count in `total`.
    retiring: ArrayQueue<(Entry<F::Connection>, DestroyReason)>,
    /// Connections open, being created or being destroyed.
    total: CachePadded<AtomicUsize>,
    /// Waiters listen here (FIFO).
    waiters: Event,
    /// The maintenance loop listens here for retiring connections and shutdown.
    pub(crate) maintenance: Event,
    /// `close().await` listens here for `total` to reach zero.
    drained: Event,
    /// Checkout validation runs on connections idle at least this long (`Millis::MAX`: never).
    validate_after: Millis,
    stats: Stats,
    last_create_error: Mutex<Option<Arc<F::Error>>>,
}

impl<F: ConnectionFactory> Shared<F> {
    pub(crate) fn new(
        factory: F,
        config: ConnectionPoolConfig,
        health: Option<Box<dyn DynHealthCheck<F::Connection>>>,
    ) -> Self {
        let max = config.max_connections();
        let validate_after = match config.checkout_validation() {
            CheckoutValidation::Never => Millis::MAX,
            CheckoutValidation::Always => 0,
            CheckoutValidation::IdleFor(d) => clock::millis(d),
        };
        Shared {
            validate_after,
            factory,
            config,
            health,
            clock: Clock::new(),
            gate: CachePadded::new(AtomicUsize::new(0)),
            idle: ArrayQueue::new(max),
            handoff: ArrayQueue::new(max),
            unnotified: AtomicUsize::new(0),
            retiring: ArrayQueue::new(max),
            total: CachePadded::new(AtomicUsize::new(0)),
            waiters: Event::new(),
            maintenance: Event::new(),
            drained: Event::new(),
            stats: Stats::default(),
            last_create_error: Mutex::new(None),
        }
    }

    // ----- the fast path -------------------------------------------------------------------

    /// The coarse time (see `clock`), waking the ticker if it was asleep.
    #[inline]
    pub(crate) fn now(&self) -> Millis {
        let (now, woke) = self.clock.now();
        if woke {
            self.maintenance.notify(1);
        }
        now
    }

    /// Pops an idle connection if nobody waits and the pool is open. Expired connections are
    /// retired on the way.
    #[inline]
    pub(crate) fn try_take_idle(&self) -> Option<Popped<F::Connection>> {
        if self.gate.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.pop_live(&self.idle)
    }

    /// Pops from `queue`, retiring expired connections, until one is live or the queue is empty,
    /// and says whether it is due for checkout validation. One clock read per pop.
    #[inline]
    fn pop_live(&self, queue: &ArrayQueue<Entry<F::Connection>>) -> Option<Popped<F::Connection>> {
        loop {
            let entry = queue.pop()?;
            let now = self.now();
            if entry.is_expired(now) {
                self.retire(entry, DestroyReason::Expired);
                continue;
            }
            let used = entry.use_count > 0;
            let validate = used && now.saturating_sub(entry.last_used_at) >= self.validate_after;
            let reset = used && self.health.is_some();
            return Some(Popped {
                entry,
                validate,
                reset,
            });
        }
    }

    /// Counts an acquire that took the slow path (the fast path is not counted: an atomic
    /// increment there would cost a quarter of the whole cycle).
    pub(crate) fn record_slow_acquire(&self, started: Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.slow_acquires.fetch_add(1, Ordering::Relaxed);
        self.stats.slow_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Takes a connection back from a guard: publish, then notify.
    #[inline]
    pub(crate) fn release(&self, mut entry: Entry<F::Connection>, broken: Option<DestroyReason>) {
        if let Some(reason) = broken {
            return self.retire(entry, reason);
        }
        let now = self.now();
        if entry.is_expired(now) {
            return self.retire(entry, DestroyReason::Expired);
        }
        entry.last_used_at = now;
        self.push_idle(entry);
    }

    /// Returns a connection taken from `idle` but not lent.
    pub(crate) fn put_back(&self, entry: Entry<F::Connection>) {
        self.push_idle(entry);
    }

    /// Puts a healthy connection into `idle`, then serves a waiter or honours `close`.
    #[inline]
    fn push_idle(&self, entry: Entry<F::Connection>) {
        if let Err(entry) = self.idle.push(entry) {
            // Cannot happen while every connection is in one place and the queue holds `max`;
            // closing the surplus keeps the count honest if it ever did.
            return self.retire(entry, DestroyReason::Closed);
        }
        // Publish, then look for waiters. Pairs with the fence in `Waiter::listen`.
        fence(Ordering::SeqCst);
        let gate = self.gate.load(Ordering::Relaxed);
        if gate != 0 {
            self.release_slow(gate);
        }
    }

    #[cold]
    fn release_slow(&self, gate: usize) {
        if gate & CLOSED != 0 {
            self.drain_idle();
        } else if let Some(entry) = self.idle.pop() {
            // Waiters exist: hand the connection to the oldest one not yet notified.
            if let Err(entry) = self.handoff.push(entry) {
                return self.retire(entry, DestroyReason::Closed);
            }
            self.notify_waiter();
        }
    }

    /// Wakes the oldest waiter not yet notified, for a connection in `handoff`.
    pub(crate) fn notify_waiter(&self) {
        if self.waiters.notify(1.additional()) == 0 {
            self.unnotified.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Claims one connection in `handoff` that no waiter was told about.
    pub(crate) fn claim_unnotified(&self) -> bool {
        self.unnotified
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    // ----- waiting ------------------------------------------------------------------------

    /// Registered waiters.
    #[inline]
    pub(crate) fn waiting(&self) -> usize {
        self.gate.load(Ordering::Relaxed) & !CLOSED
    }

    /// Whether `close` has been called.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.gate.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn take_handoff(&self) -> Option<Popped<F::Connection>> {
        self.pop_live(&self.handoff)
    }

    pub(crate) fn take_idle(&self) -> Option<Popped<F::Connection>> {
        self.pop_live(&self.idle)
    }

    // ----- creating and destroying ----------------------------------------------------------

    /// Reserves a place in `total` for a new connection, if there is room.
    pub(crate) fn reserve(&self) -> Option<CreateSlot<'_, F>> {
        let max = self.config.max_connections();
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < max).then_some(t + 1)
            })
            .ok()
            .map(|_| CreateSlot { shared: self })
    }

    /// Makes a new connection in a reserved place.
    pub(crate) async fn create(
        &self,
        slot: CreateSlot<'_, F>,
    ) -> Result<Entry<F::Connection>, Arc<F::Error>> {
        match self.factory.create().await {
            Ok(conn) => {
                std::mem::forget(slot);
                let now = self.clock.precise();
                let expires = self
                    .config
                    .max_lifetime()
                    .map_or(Millis::MAX, |life| now.saturating_add(clock::millis(life)));
                *self
                    .last_create_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                Ok(Entry::new(conn, now, expires))
            }
            Err(err) => {
                let err = Arc::new(err);
                *self
                    .last_create_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(err.clone());
                drop(slot);
                Err(err)
            }
        }
    }

    /// The error the last failed create returned, cleared by the next successful one.
    pub(crate) fn last_create_error(&self) -> Option<Arc<F::Error>> {
        self.last_create_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hands a connection to the maintenance loop to be destroyed off the caller's path.
    pub(crate) fn retire(&self, entry: Entry<F::Connection>, reason: DestroyReason) {
        match self.retiring.push((entry, reason)) {
            Ok(()) => {
                self.maintenance.notify(1);
            }
            Err((entry, _)) => {
                // The retiring queue holds `max`, so this cannot happen; drop rather than leak.
                drop(entry);
                self.connection_gone();
            }
        }
    }

    /// Destroys one retiring connection, if any. Returns whether it did.
    pub(crate) async fn destroy_one_retiring(&self) -> bool {
        let Some((entry, _reason)) = self.retiring.pop() else {
            return false;
        };
        let guard = GoneOnDrop { shared: self };
        self.factory.destroy(entry.conn).await;
        drop(guard);
        true
    }

    /// Takes a connection out of the pool's accounts for good.
    pub(crate) fn detach(&self) {
        self.connection_gone();
    }

    /// A connection stopped counting: wake a waiter that may now create, and `close().await`.
    fn connection_gone(&self) {
        let before = self.total.fetch_sub(1, Ordering::AcqRel);
        let gate = self.gate.load(Ordering::SeqCst);
        if gate & !CLOSED != 0 {
            self.waiters.notify(1.additional());
        }
        if before == 1 && gate & CLOSED != 0 {
            self.drained.notify(usize::MAX);
        }
    }

    // ----- health checks ------------------------------------------------------------------

    /// Checks the connections idle now, one at a time, off the queue: healthy ones go back
    /// (to a waiter first), unhealthy ones are destroyed; their replacements are made on demand.
    /// No lock is held while a check runs, and acquirers never wait for one.
    pub(crate) async fn check_idle_health(&self) {
        let Some(health) = &self.health else {
            return;
        };
        for _ in 0..self.idle.len() {
            if self.is_closed() {
                return;
            }
            let Some(entry) = self.idle.pop() else {
                return;
            };
            let mut guard = RetireOnDrop::new(self, entry, DestroyReason::Unhealthy);
            let healthy = match guard.entry.as_mut() {
                Some(entry) => health.is_healthy(&mut entry.conn).await,
                None => false,
            };
            if healthy {
                if let Some(entry) = guard.entry.take() {
                    self.push_idle(entry);
                }
            }
        }
    }

    // ----- closing ------------------------------------------------------------------------

    /// Closes the pool. Returns `false` if it was already closed.
    pub(crate) fn close(&self) -> bool {
        let before = self.gate.fetch_or(CLOSED, Ordering::SeqCst);
        if before & CLOSED != 0 {
            return false;
        }
        self.waiters.notify(usize::MAX);
        self.drain_idle();
        if self.total.load(Ordering::SeqCst) == 0 {
            self.drained.notify(usize::MAX);
        }
        self.maintenance.notify(usize::MAX);
        true
    }

    fn drain_idle(&self) {
        while let Some(entry) = self.idle.pop().or_else(|| self.handoff.pop()) {
            self.retire(entry, DestroyReason::Closed);
        }
    }

    /// Moves what waits in `handoff` back through the release path (used when the last waiter
    /// leaves, so nothing stays reserved for nobody).
    pub(crate) fn drain_handoff(&self) {
        self.unnotified.store(0, Ordering::Release);
        while let Some(entry) = self.handoff.pop() {
            self.push_idle(entry);
        }
    }

    /// Ready once the pool is closed and every connection is gone. `listener` is the caller's
    /// slot for its listener between polls.
    pub(crate) fn poll_drained(
        &self,
        listener: &mut Option<event_listener::EventListener>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::future::Future;
        use std::pin::Pin;
        use std::task::Poll;
        loop {
            if self.is_closed() && self.total() == 0 {
                *listener = None;
                return Poll::Ready(());
            }
            match listener.as_mut() {
                None => *listener = Some(self.drained.listen()),
                Some(l) => {
                    if Pin::new(l).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *listener = None;
                }
            }
        }
    }

    // ----- counts -------------------------------------------------------------------------

    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.len() + self.handoff.len()
    }

    /// Average time of the acquires that had to wait, create or validate.
    pub(crate) fn average_acquire_time(&self) -> Duration {
        let count = self.stats.slow_acquires.load(Ordering::Relaxed);
        if count == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.stats.slow_nanos.load(Ordering::Relaxed) / count)
    }

    pub(crate) fn gate(&self) -> &AtomicUsize {
        &self.gate
    }

    pub(crate) fn waiter_event(&self) -> &Event {
        &self.waiters
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

/// A place reserved in `total` for a connection being created. Dropping it (a failed or cancelled
/// create) gives the place back and wakes a waiter that may create instead.
pub(crate) struct CreateSlot<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
}

impl<F: ConnectionFactory> Drop for CreateSlot<'_, F> {
    fn drop(&mut self) {
        self.shared.connection_gone();
    }
}

/// Holds a connection while a user callback runs on it; if the callback panics or its future is
/// dropped, the connection is retired (its state is unknown), never lost.
pub(crate) struct RetireOnDrop<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
    pub(crate) entry: Option<Entry<F::Connection>>,
    pub(crate) reason: DestroyReason,
}

impl<'a, F: ConnectionFactory> RetireOnDrop<'a, F> {
    pub(crate) fn new(
        shared: &'a Shared<F>,
        entry: Entry<F::Connection>,
        reason: DestroyReason,
    ) -> Self {
        RetireOnDrop {
            shared,
            entry: Some(entry),
            reason,
        }
    }
}

impl<F: ConnectionFactory> Drop for RetireOnDrop<'_, F> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.retire(entry, self.reason);
        }
    }
}

/// Uncounts a connection when its destroy finishes or is abandoned.
struct GoneOnDrop<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
}

impl<F: ConnectionFactory> Drop for GoneOnDrop<'_, F> {
    fn drop(&mut self) {
        self.shared.connection_gone();
    }
}
