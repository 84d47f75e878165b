//! The waiter list: callers waiting for a connection, oldest first, each with its own slot that a
//! connection is handed into; and the deadlines of their waits.
//!
//! Order among waiters is kept by the list alone: a connection is moved straight into the slot
//! of the waiter at the front, under the list's lock, so no waiter can be passed over by another
//! waiter or lose its place by racing one (the event-per-pool design this replaced could, when a
//! release raced a waiter leaving). Under bounded fairness (see `core`) a returned connection
//! is handed over like that only to a *due* waiter; a young front waiter is instead woken to
//! `compete` for it in `idle` with newcomers, keeping its place if it loses. One waiter competes
//! at a time; a competing waiter that leaves, or wins with more left idle, passes the turn on.
//! While one competes and the front is a young thread, a release leaves its connection in `idle`
//! without taking the lock (two atomics beside it say so: `competing`, `young_until`; see
//! `Shared::left_to_competitor` and the fence table in `gate`).
//!
//! Each slot keeps its waiter's `Waker`, which both facades wait on: a task awaits it, a thread
//! blocks on it with a deadline (the blocking facade's waker unparks it). No lock is held while a
//! waker is cloned, woken or dropped (see `Slot`).
//!
//! # Deadlines
//!
//! Every wait has the same length (`acquire_timeout`), so the list is also (nearly) in deadline
//! order (a waiter re-queued at the front keeps its older, earlier deadline). One timer is then
//! enough for all of them: the maintenance loop's *deadline keeper* sleeps until the earliest
//! deadline, ends the waits that are over, and sleeps again until the next. A waiter joining the list
//! wakes the keeper only if the keeper's timer is not already set at or before its deadline,
//! which (deadlines only grow) happens about once per `acquire_timeout`, not once per wait. A
//! timer per waiting task cost a system call and a wake-up of async-io's reactor thread on every
//! contended acquire (seen with `perf` in `benches/contended.rs`). While no keeper runs (a
//! spawned maintenance future not polled yet, or dropped), async waiters arm timers of their own;
//! a keeper that stops wakes every waiter so that each can.
//!
//! The lock is held only to link, unlink, fill or end a slot: never across a user callback, an
//! await or I/O. The fast path never takes it (it runs only while `gate` says nobody waits).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use event_listener::Event;

use super::sync::{Arc, ArrayQueue, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, fence};
use super::{Entry, Shared};
use crate::ConnectionFactory;

/// How many slots of gone waiters the free list keeps: enough for the waiters of any burst
/// worth keeping memory for. The queue is allocated with the pool (16 KiB on 64-bit targets).
const FREE_MAX: usize = 1024;

/// The queue of waiting callers, oldest at the front, and the state of the deadline keeper.
pub(crate) struct WaitList<C> {
    inner: Mutex<Inner<C>>,
    /// Slots whose waiters are gone, for the next waiters: a wait then allocates nothing. Apart
    /// from the list's lock, so that taking and giving back a slot does not queue on it.
    free: ArrayQueue<Arc<Slot<C>>>,
    /// The keeper listens here for a deadline earlier than its timer, and for `close`.
    keeper_wanted: Event,
    /// Whether a deadline keeper runs (read without the lock by the async facade).
    keeper: AtomicBool,
    /// Whether a linked waiter is `competing` (at most one is at a time). Changed under the
    /// lock; read without it by a release deciding whether to leave its connection to that
    /// waiter (`Shared::left_to_competitor`).
    competing: AtomicBool,
    /// Until when the front waiter is a young thread, in nanoseconds since `origin` (0: it is
    /// not, or nobody waits). Set under the lock whenever the front changes; read without it.
    young_until: AtomicU64,
    origin: Instant,
}

struct Inner<C> {
    /// The waiters, oldest first.
    queue: VecDeque<Waiting<C>>,
    /// When the keeper will next look at the list, if it will; a waiter with an earlier deadline
    /// sets it to its own and wakes the keeper.
    armed: Option<Instant>,
}

/// Who waits, as far as waking it costs: this decides when a waiter is due. (A build with one
/// facade constructs one kind only.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(all(feature = "async", feature = "blocking")), allow(dead_code))]
pub(crate) enum WaiterKind {
    /// A task: its executor polls it on a thread that is already running, so a hand-off costs
    /// little. Tasks are due at once: served strictly first come, first served.
    Task,
    /// A parked thread: waking it costs a context switch, during which nobody can use a
    /// connection handed to it. Due once it has waited `fairness_bound`.
    Thread,
}

/// One linked waiter.
struct Waiting<C> {
    /// When its wait ends.
    deadline: Instant,
    kind: WaiterKind,
    slot: Arc<Slot<C>>,
    /// Woken to take an idle connection itself (bounded fairness), and has not looked yet.
    competing: bool,
}

/// To whom a connection put into `idle` is offered first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The oldest waiter, whatever its age: a connection the maintenance loop made or checked,
    /// or one handed back by a waiter that left. Nobody is about to come back for it.
    Oldest,
    /// A connection a caller returned; that caller may be back for it at once, so under bounded
    /// fairness a young waiter races newcomers for it, and only a due waiter is handed it.
    Returned,
}

/// What serving the front of the list came to; the caller wakes the slot once the list is
/// unlocked.
enum Served<C> {
    /// A connection was put into the slot.
    Handed(Arc<Slot<C>>),
    /// The waiter is young and may take an idle connection itself (it races newcomers).
    Compete(Arc<Slot<C>>),
    /// Nobody to serve, or nothing to serve them with.
    Nothing,
}

impl<C> WaitList<C> {
    pub(crate) fn new() -> Self {
        WaitList {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                armed: None,
            }),
            free: ArrayQueue::new(FREE_MAX),
            keeper_wanted: Event::new(),
            keeper: AtomicBool::new(false),
            competing: AtomicBool::new(false),
            young_until: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// Locks the list. Nothing that holds the lock can panic, but a poisoned lock is still
    /// usable: the list is consistent after every single operation on it.
    fn lock(&self) -> MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Nanoseconds from `origin` to `at` (0 before it).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A waiter is woken to compete (with the lock held).
    fn start_competing(&self) {
        self.competing.store(true, Ordering::Relaxed);
    }

    /// The competing waiter looked, left or was served (with the lock held). The caller then
    /// looks at `idle` and serves on if it holds anything: the fence pairs with the one in
    /// `Shared::push_idle`, so a release that left its connection to the competitor after
    /// reading `true` here pushed it before this look.
    fn stop_competing(&self) {
        self.competing.store(false, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }
}

/// One waiter's place: where its connection is put, and how its waiter is woken.
///
/// The slot keeps its waiter's `Waker` itself, under its own short lock, rather than in an
/// `event_listener::Event`: a listener polled with a new waker drops the old one under the
/// event's lock, and a waker's drop may run anything, including a release into this pool that
/// wakes this very slot (a deadlock, seen when a waker owned the last guard). Here no lock is
/// held while a waker is cloned, woken or dropped (DESIGN invariant 7).
pub(crate) struct Slot<C> {
    state: Mutex<SlotState<C>>,
}

struct SlotState<C> {
    /// The connection handed to this waiter, if any.
    served: Option<Entry<C>>,
    /// Set by the keeper when the deadline passed while the slot was linked.
    expired: bool,
    /// A wake-up the waiter has not seen yet.
    woken: bool,
    /// Whom to wake: the task or blocked thread polling the wait.
    waker: Option<Waker>,
}

impl<C> Slot<C> {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                served: None,
                expired: false,
                woken: false,
                waker: None,
            }),
        })
    }

    /// Takes the connection handed to this waiter, if any.
    pub(crate) fn take(&self) -> Option<Entry<C>> {
        self.lock().served.take()
    }

    /// Whether the keeper ended this wait.
    pub(crate) fn is_expired(&self) -> bool {
        self.lock().expired
    }

    /// Ready once woken since the last time it was ready; otherwise registers `cx`'s waker.
    /// The caller looks at the slot (`take`, `is_expired`) after every `Ready`, so a wake-up
    /// that comes between its look and this poll is not lost: it is seen here as `woken`.
    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(());
        }
        if state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        drop(state);
        // Invariant 7: a waker is cloned and dropped with no lock held; its drop may release a
        // connection into this pool, which may serve and wake this very slot.
        let new = cx.waker().clone();
        let mut state = self.lock();
        if std::mem::take(&mut state.woken) {
            drop(state);
            drop(new);
            return Poll::Ready(());
        }
        let old = state.waker.replace(new);
        drop(state);
        drop(old);
        Poll::Pending
    }

    /// Hands `entry` to this waiter (then `wake` it). Called with the list locked, after
    /// unlinking the slot, so the slot is filled at most once per linking.
    fn fill(&self, entry: Entry<C>) {
        self.lock().served = Some(entry);
    }

    /// Marks this wait as ended by the keeper (with the list locked, as it unlinks the slot);
    /// the caller wakes it once the list is unlocked.
    fn expire(&self) {
        self.lock().expired = true;
    }

    /// Wakes this waiter: served, expired, or without a connection (the pool closed, the keeper
    /// stopped). Never called with the list locked: the waker runs outside every lock.
    fn wake(&self) {
        let waker = {
            let mut state = self.lock();
            state.woken = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Readies a slot whose waiter is gone for the next one; returns the waker it held, to be
    /// dropped once no lock is held.
    fn clear(&self) -> Option<Waker> {
        let mut state = self.lock();
        state.served = None;
        state.expired = false;
        state.woken = false;
        state.waker.take()
    }

    /// Nothing that holds the lock can panic, but a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, SlotState<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<F: ConnectionFactory> Shared<F> {
    /// Links `slot` into the list (at the front for a waiter whose connection failed its
    /// checks), counts it in `gate`, and serves the front from `idle`. Returns `false`, linking
    /// nothing, if the pool is closed.
    pub(crate) fn enqueue(
        &self,
        slot: &Arc<Slot<F::Connection>>,
        deadline: Instant,
        kind: WaiterKind,
        front: bool,
    ) -> bool {
        let mut inner = self.waitlist.lock();
        // Under the lock: `close` sets the bit and then takes the lock to wake the list, so a
        // slot linked here is either woken by it or never linked.
        if self.is_closed() {
            return false;
        }
        let waiting = Waiting {
            deadline,
            kind,
            slot: Arc::clone(slot),
            competing: false,
        };
        if front {
            inner.queue.push_front(waiting);
        } else {
            inner.queue.push_back(waiting);
        }
        self.front_changed(&inner);
        self.hot.gate.count_waiter();
        // Count, then re-check `idle`. Pairs with the fence in `Shared::push_idle`: either the
        // release sees this waiter and serves the list, or this look sees its connection. A
        // waiter alone in the list takes what it sees; behind others, the list's order decides.
        fence(Ordering::SeqCst);
        let served = if inner.queue.len() == 1 {
            self.serve_one(&mut inner)
                .map_or(Served::Nothing, Served::Handed)
        } else {
            self.serve_front(&mut inner, Offer::Oldest)
        };
        let wake_keeper = self.waitlist.keeper.load(Ordering::Relaxed)
            && inner.armed.is_none_or(|at| at > deadline);
        if wake_keeper {
            inner.armed = Some(deadline);
        }
        drop(inner);
        if wake_keeper {
            self.waitlist.keeper_wanted.notify(1);
        }
        match served {
            Served::Handed(slot) => {
                slot.wake();
                // More may sit idle (rare: a release that saw no waiter): serve on.
                self.serve_waiters(Offer::Oldest);
            }
            Served::Compete(slot) => slot.wake(),
            Served::Nothing => {}
        }
        true
    }

    /// A slot for a new wait: one a gone waiter left on the free list, or a new one.
    pub(crate) fn slot(&self) -> Arc<Slot<F::Connection>> {
        self.waitlist.free.pop().unwrap_or_else(Slot::new)
    }

    /// Takes back the slot of a waiter that is gone (unlinked, its connection taken back), for
    /// a later wait. A slot something else still holds (a wake-up in flight) is left to drop.
    pub(crate) fn recycle(&self, slot: Arc<Slot<F::Connection>>) {
        if Arc::strong_count(&slot) != 1 {
            return;
        }
        // Invariant 7: the waiter's waker is dropped with no lock held.
        drop(slot.clear());
        // A full free list drops the slot, which holds nothing now.
        let _ = self.waitlist.free.push(slot);
    }

    /// Unlinks `slot` if it is still linked (a waiter giving up).
    pub(crate) fn dequeue(&self, slot: &Arc<Slot<F::Connection>>) {
        let mut inner = self.waitlist.lock();
        let Some(at) = inner.queue.iter().position(|w| Arc::ptr_eq(&w.slot, slot)) else {
            return;
        };
        // The list's reference is dropped under the lock: the waiter still holds its own,
        // so this never drops the slot (and the waker in it).
        let gone = inner.queue.remove(at);
        self.front_changed(&inner);
        self.hot.gate.uncount_waiters(1);
        let competing = gone.is_some_and(|w| w.competing);
        if competing {
            self.waitlist.stop_competing();
        }
        drop(inner);
        // Under bounded fairness the front may have changed: the next waiter may be due, or
        // should take what the one that left was woken for.
        if self.fairness.is_some() && (at == 0 || competing) {
            self.serve_waiters(Offer::Returned);
        }
    }

    /// Serves the list after a release: hands idle connections to waiters that are due, and
    /// wakes a young front waiter to take one itself (see "Bounded fairness"). Each waiter is
    /// woken after the lock is released: a wake-up can run an executor's scheduling code, and
    /// holding the list through it made releases and arrivals queue on the lock (seen with
    /// `perf` in `benches/contended.rs`).
    pub(crate) fn serve_waiters(&self, offer: Offer) {
        loop {
            let served = self.serve_front(&mut self.waitlist.lock(), offer);
            match served {
                Served::Handed(slot) => slot.wake(),
                Served::Compete(slot) => return slot.wake(),
                Served::Nothing => return,
            }
        }
    }

    /// Serves the front waiter as `offer` and its age decide: a due one is handed an idle
    /// connection; a young thread is woken to take a returned connection itself, unless another
    /// waiter already is, and is handed any other.
    fn serve_front(&self, inner: &mut Inner<F::Connection>, offer: Offer) -> Served<F::Connection> {
        let Some(front) = inner.queue.front_mut() else {
            return Served::Nothing;
        };
        if offer == Offer::Returned && !self.is_due(front) {
            if self.waitlist.competing.load(Ordering::Relaxed) || self.idle.is_empty() {
                return Served::Nothing;
            }
            front.competing = true;
            self.waitlist.start_competing();
            return Served::Compete(Arc::clone(&front.slot));
        }
        self.serve_one(inner)
            .map_or(Served::Nothing, Served::Handed)
    }

    /// Whether `waiting` is served ahead of newcomers: a task at once, a thread once it has
    /// waited `fairness_bound` (at once under strict FIFO).
    fn is_due(&self, waiting: &Waiting<F::Connection>) -> bool {
        waiting.kind == WaiterKind::Task
            || self.fairness.is_none_or(|due_within| {
                Instant::now()
                    .checked_add(due_within)
                    .is_none_or(|at| waiting.deadline <= at)
            })
    }

    /// Records until when the new front waiter is young (see `left_to_competitor`); called under
    /// the lock whenever the front may have changed.
    fn front_changed(&self, inner: &Inner<F::Connection>) {
        let until = match (self.fairness, inner.queue.front()) {
            (Some(due_within), Some(front)) if front.kind == WaiterKind::Thread => front
                .deadline
                .checked_sub(due_within)
                .map_or(0, |at| self.waitlist.nanos(at)),
            _ => 0,
        };
        self.waitlist.young_until.store(until, Ordering::Relaxed);
    }

    /// Whether a release of `offer` may leave its connection in `idle` for the waiter already
    /// woken to compete, without locking the list: one is, and the front waiter is a thread
    /// that is still young. Under contention most releases find that (the woken thread takes a
    /// context switch to run, while running holders release and take again), and locking the
    /// list for each of them made the releases queue on its lock. Read without the lock, so a
    /// release may see a front that just changed: at worst a waiter that has just become due is
    /// served by the next release rather than this one. Nothing is lost: the caller pushes, fences,
    /// and reads `competing` again (`still_competing`).
    pub(crate) fn left_to_competitor(&self, offer: Offer) -> bool {
        offer == Offer::Returned && self.waitlist.competing.load(Ordering::Relaxed) && {
            let until = self.waitlist.young_until.load(Ordering::Relaxed);
            until != 0 && self.waitlist.nanos(Instant::now()) < until
        }
    }

    /// After a release left its connection in `idle` (then fenced): whether the competing waiter
    /// will see it. If not, the release serves the list itself. Pairs with the fence in
    /// `WaitList::stop_competing`.
    pub(crate) fn still_competing(&self) -> bool {
        self.waitlist.competing.load(Ordering::Relaxed)
    }

    /// A release's look at the list while someone waits, under one lock: a due front waiter is
    /// handed `entry` straight away, so no newcomer can take it on its way through `idle`; a
    /// young one (a thread, `Offer::Returned`) gets it in `idle` and is woken to compete for it,
    /// unless a waiter already is. Under the lock, no fence is needed: a waiter that links later
    /// looks at `idle` under it too, and `close` drains `idle` after taking it. Gives `entry`
    /// back, for the release's own path, if nobody waits or the pool closed.
    pub(crate) fn offer_to_waiters(
        &self,
        entry: Entry<F::Connection>,
        offer: Offer,
    ) -> Result<(), Entry<F::Connection>> {
        let mut inner = self.waitlist.lock();
        let Some(front) = inner.queue.front() else {
            return Err(entry);
        };
        if self.is_closed() {
            return Err(entry);
        }
        let mut competitor_served = false;
        let wake = if offer == Offer::Oldest || self.is_due(front) {
            let Some(waiting) = inner.queue.pop_front() else {
                return Err(entry);
            };
            self.front_changed(&inner);
            self.hot.gate.uncount_waiters(1);
            if waiting.competing {
                self.waitlist.stop_competing();
                competitor_served = true;
            }
            waiting.slot.fill(entry);
            waiting.slot
        } else {
            self.push_to_idle(entry, offer)?;
            if self.waitlist.competing.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(front) = inner.queue.front_mut() else {
                return Ok(());
            };
            front.competing = true;
            self.waitlist.start_competing();
            Arc::clone(&front.slot)
        };
        drop(inner);
        wake.wake();
        // A release may have left its connection to the waiter just served (see
        // `stop_competing`): serve on.
        if competitor_served && !self.idle.is_empty() {
            self.serve_waiters(Offer::Returned);
        }
        Ok(())
    }

    /// Moves one idle connection into the front waiter's slot and unlinks it, if there are
    /// both; the caller wakes it once the lock is released. Filling under the lock is what
    /// keeps a cancelled waiter from losing it: `dequeue` then finds the slot gone and takes the
    /// connection back out. Whether the connection is still fit to lend is the waiter's to
    /// check (`inspect`, as on the fast path); one found stale is retired there and the waiter
    /// queues again at the front.
    fn serve_one(&self, inner: &mut Inner<F::Connection>) -> Option<Arc<Slot<F::Connection>>> {
        let waiting = inner.queue.pop_front()?;
        let Some(entry) = self.pop_to_lend() else {
            // Nothing idle: the waiter keeps its place at the front.
            inner.queue.push_front(waiting);
            return None;
        };
        self.front_changed(inner);
        // Uncount before the waiter runs, or the creator would see a waiter already served and
        // make a connection nobody needs (found by the fuzzer).
        self.hot.gate.uncount_waiters(1);
        // Every caller serves on from `idle` after this (`serve_waiters` loops, `enqueue` calls
        // it), which is the look `stop_competing` asks for.
        if waiting.competing {
            self.waitlist.stop_competing();
        }
        waiting.slot.fill(entry);
        Some(waiting.slot)
    }

    /// For a waiter woken with nothing in its slot: if it was woken to take an idle connection
    /// itself (a young front waiter under bounded fairness), takes one and unlinks the waiter.
    /// `None` leaves it linked, in its place: newcomers took what was idle, or the wake-up was
    /// for something else.
    pub(crate) fn compete(&self, slot: &Arc<Slot<F::Connection>>) -> Option<Entry<F::Connection>> {
        let mut inner = self.waitlist.lock();
        if !self.waitlist.competing.load(Ordering::Relaxed) {
            return None;
        }
        let at = inner.queue.iter().position(|w| w.competing)?;
        if !Arc::ptr_eq(&inner.queue[at].slot, slot) {
            return None;
        }
        inner.queue[at].competing = false;
        // Before the pop: a release that left its connection to this waiter is seen by it.
        self.waitlist.stop_competing();
        let entry = self.pop_to_lend()?;
        // The list keeps a reference until here; the waiter holds its own (see `dequeue`).
        drop(inner.queue.remove(at));
        self.front_changed(&inner);
        self.hot.gate.uncount_waiters(1);
        let more = !inner.queue.is_empty() && !self.idle.is_empty();
        drop(inner);
        // More idle for the next waiter: serve on.
        if more {
            self.serve_waiters(Offer::Returned);
        }
        Some(entry)
    }

    /// Wakes every waiter for `close`, and the keeper; each then sees the `CLOSED` bit.
    pub(crate) fn wake_all_waiters(&self) {
        let mut inner = self.waitlist.lock();
        let unlinked = std::mem::take(&mut inner.queue);
        self.front_changed(&inner);
        self.waitlist.stop_competing();
        self.hot.gate.uncount_waiters(unlinked.len());
        drop(inner);
        unlinked.iter().for_each(|w| w.slot.wake());
        self.waitlist.keeper_wanted.notify(usize::MAX);
    }

    // ----- the deadline keeper ------------------------------------------------------------

    /// The keeper listens here for a deadline earlier than its timer, and for `close`.
    pub(crate) fn keeper_wanted(&self) -> &Event {
        &self.waitlist.keeper_wanted
    }

    /// Whether a deadline keeper ends the waits that pass their deadline, so that an async
    /// waiter needs no timer of its own.
    #[cfg(feature = "async")]
    pub(crate) fn deadlines_kept(&self) -> bool {
        self.waitlist.keeper.load(Ordering::Acquire)
    }

    /// Marks the keeper as running or stopped. Stopping wakes every waiter, so that async
    /// waiters arm timers of their own.
    pub(crate) fn set_keeper(&self, running: bool) {
        let inner = self.waitlist.lock();
        self.waitlist.keeper.store(running, Ordering::Release);
        if running {
            return;
        }
        // Woken after the lock is released (invariant 7); a waiter that links after the store
        // sees it and arms its own timer.
        let linked: Vec<_> = inner.queue.iter().map(|w| w.slot.clone()).collect();
        drop(inner);
        linked.iter().for_each(|slot| slot.wake());
    }

    /// Ends the waits whose deadline is not after `now`, and returns when the keeper must look
    /// again (the earliest deadline left), if anyone waits. The whole list is scanned: it is
    /// only nearly in deadline order (two callers can start in one order and link in the
    /// other), and the keeper runs about once per `acquire_timeout`.
    pub(crate) fn expire_waiters(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.waitlist.lock();
        let mut expired = Vec::new();
        let mut at = 0;
        while at < inner.queue.len() {
            if inner.queue[at].deadline <= now {
                if let Some(w) = inner.queue.remove(at) {
                    if w.competing {
                        self.waitlist.stop_competing();
                    }
                    w.slot.expire();
                    expired.push(w.slot);
                }
            } else {
                at += 1;
            }
        }
        if !expired.is_empty() {
            self.front_changed(&inner);
            self.hot.gate.uncount_waiters(expired.len());
        }
        inner.armed = inner.queue.iter().map(|w| w.deadline).min();
        let next = inner.armed;
        drop(inner);
        expired.iter().for_each(|slot| slot.wake());
        // The front changed: the next waiter may be due, or should compete.
        if self.fairness.is_some() && !expired.is_empty() {
            self.serve_waiters(Offer::Returned);
        }
        next
    }
}

/// The bounded-fairness rule for waiting *threads*, whose wait (the state machine
/// `acquire_blocking` parks on) is polled by hand here, so that "woken" and "served" are
/// observed rather than raced. `tests/fairness.rs` covers the rest through the public API.
#[cfg(all(test, not(loom), feature = "blocking", feature = "async"))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    use super::super::acquire::SlowAcquire;
    use super::super::{Entry, LeakId, Outcome, Shared};
    use super::WaiterKind;
    use crate::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};

    struct Numbers;

    impl ConnectionFactory for Numbers {
        type Connection = u32;
        type Error = std::io::Error;

        async fn create(&self) -> Result<u32, std::io::Error> {
            Ok(7)
        }
    }

    /// A pool of one connection, created and idle, whose waiting threads stay young.
    fn pool() -> ConnectionPool<Numbers> {
        pool_of(1)
    }

    /// A pool of `n` connections, created and idle, whose waiting threads stay young.
    fn pool_of(n: usize) -> ConnectionPool<Numbers> {
        let config = ConnectionPoolConfig::builder()
            .max_connections(n)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(60))
            .fairness_bound(Duration::from_secs(20))
            .build()
            .unwrap();
        let pool = ConnectionPool::new(Numbers, config);
        let all: Vec<_> = (0..n).map(|_| pool.acquire_blocking().unwrap()).collect();
        drop(all);
        pool
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waiting thread's acquire, polled by hand.
    struct ThreadWait<'p> {
        wait: SlowAcquire<'p, Numbers, &'p Shared<Numbers>>,
        wakes: Arc<Wakes>,
    }

    impl<'p> ThreadWait<'p> {
        fn queue(pool: &'p ConnectionPool<Numbers>) -> Self {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut w = ThreadWait {
                wait: SlowAcquire::new(pool.shared(), None, deadline, WaiterKind::Thread),
                wakes: Arc::default(),
            };
            assert!(w.poll().is_none(), "the acquire queues");
            w
        }

        /// `Some` with the connection once served; no wait here fails or reaches its deadline.
        fn poll(&mut self) -> Option<Entry<u32>> {
            let waker = Waker::from(self.wakes.clone());
            match self.wait.poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(Outcome::Served(entry)) => Some(entry),
                Poll::Ready(Outcome::Failed(err)) => panic!("the wait failed: {err}"),
                Poll::Ready(Outcome::TimedOut) => panic!("the wait timed out"),
                Poll::Pending => None,
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }

        /// Polls it, expecting a connection, and returns that to the pool.
        fn served(&mut self, pool: &ConnectionPool<Numbers>) {
            let entry = self.poll().expect("served");
            pool.shared().release(entry, None, LeakId::NONE);
        }
    }

    #[test]
    fn a_young_thread_races_newcomers_for_a_returned_connection() {
        let pool = pool();
        let held = pool.try_acquire().unwrap();
        let mut waiter = ThreadWait::queue(&pool);
        drop(held);
        assert_eq!(waiter.wakes(), 1, "woken to take it itself");
        // It has not run yet; a caller that is running takes the connection first.
        let newcomer = pool
            .try_acquire()
            .expect("a newcomer takes the idle connection");
        assert!(
            waiter.poll().is_none(),
            "the thread finds nothing and waits on"
        );
        assert_eq!(pool.current_metrics().waiting, 1, "in its place");
        drop(newcomer);
        assert_eq!(waiter.wakes(), 2);
        waiter.served(&pool);
        assert_eq!(pool.current_metrics().waiting, 0);
        assert!(pool.try_acquire().is_ok(), "nothing lost");
    }

    #[test]
    fn young_threads_keep_their_order_when_nobody_barges() {
        let pool = pool();
        let held = pool.try_acquire().unwrap();
        let mut first = ThreadWait::queue(&pool);
        let mut second = ThreadWait::queue(&pool);
        drop(held);
        assert_eq!((first.wakes(), second.wakes()), (1, 0), "only the oldest");
        assert!(
            pool.try_acquire().is_ok(),
            "the connection waits in `idle`, not in a slot"
        );
        // (That newcomer returned it at once: the oldest is still the one woken.)
        assert_eq!((first.wakes(), second.wakes()), (1, 0));
        first.served(&pool);
        assert_eq!(second.wakes(), 1, "then the next");
        second.served(&pool);
    }

    #[test]
    fn a_woken_thread_that_leaves_passes_its_turn_on() {
        let pool = pool();
        let held = pool.try_acquire().unwrap();
        let first = ThreadWait::queue(&pool);
        let mut second = ThreadWait::queue(&pool);
        drop(held);
        assert_eq!(first.wakes(), 1);
        drop(first); // gave up before it looked
        assert_eq!(second.wakes(), 1, "the next thread is woken in its place");
        second.served(&pool);
        assert_eq!(pool.current_metrics().waiting, 0);
        assert!(pool.try_acquire().is_ok(), "nothing lost");
    }

    #[test]
    fn releases_while_a_thread_competes_leave_their_connections_to_it() {
        let pool = pool_of(2);
        let held = (pool.try_acquire().unwrap(), pool.try_acquire().unwrap());
        let mut first = ThreadWait::queue(&pool);
        let mut second = ThreadWait::queue(&pool);
        drop(held.0);
        assert_eq!(
            (first.wakes(), second.wakes()),
            (1, 0),
            "the oldest competes"
        );
        // A second release finds it still competing: left in `idle` for it, nobody else woken.
        drop(held.1);
        assert_eq!((first.wakes(), second.wakes()), (1, 0));
        assert_eq!(pool.current_metrics().idle, 2);
        // The competitor takes one and, seeing another idle, passes the turn on.
        let entry = first.poll().expect("served");
        assert_eq!(
            second.wakes(),
            1,
            "the next thread competes for the one left"
        );
        second.served(&pool);
        pool.shared().release(entry, None, LeakId::NONE);
        assert_eq!(pool.current_metrics().waiting, 0);
        assert_eq!(pool.current_metrics().idle, 2, "nothing lost");
    }

    #[test]
    fn a_competitor_that_leaves_hands_on_what_was_left_to_it() {
        let pool = pool_of(2);
        let held = (pool.try_acquire().unwrap(), pool.try_acquire().unwrap());
        let first = ThreadWait::queue(&pool);
        let mut second = ThreadWait::queue(&pool);
        drop(held.0);
        drop(held.1);
        assert_eq!((first.wakes(), second.wakes()), (1, 0));
        drop(first); // gave up before it looked
        assert_eq!(second.wakes(), 1, "the next thread competes in its place");
        second.served(&pool);
        assert_eq!(pool.current_metrics().waiting, 0);
        assert_eq!(pool.current_metrics().idle, 2, "nothing lost");
    }

    #[test]
    fn a_task_ahead_of_threads_bars_newcomers() {
        // A task is due at once: a connection returned while it is first in line is handed
        // to it, though the threads behind it are young.
        let pool = pool();
        let held = pool.try_acquire().unwrap();
        let mut task = Box::pin(pool.acquire());
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let mut thread = ThreadWait::queue(&pool);
        drop(held);
        assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
        assert_eq!((wakes.0.load(Ordering::SeqCst), thread.wakes()), (1, 0));
        let Poll::Ready(Ok(conn)) = task.as_mut().poll(&mut Context::from_waker(&waker)) else {
            panic!("the task is served");
        };
        drop(conn);
        assert_eq!(thread.wakes(), 1);
        thread.served(&pool);
    }
}
