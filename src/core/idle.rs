//! The idle queue: lending from it (the fast path's pop, checks due on checkout) and returning
//! to it (the release path: push, fence, then serve waiters, honour `close` or a shrink). Every
//! push to and pop from the queue is made here (`pop_to_lend`, `pop_unlent`, `push_to_idle`,
//! `settle_idle`).

use super::sync::{Ordering, fence};
use std::panic::Location;
use std::time::Duration;

use super::gate::GateState;
use super::{DestroyReason, Entry, LeakId, Millis, Offer, Popped, Shared, Stats};
use crate::ConnectionFactory;
use crate::events::emit;

impl<F: ConnectionFactory> Shared<F> {
    /// Pops an idle connection if the pool is open and not shrinking and no waiter stands
    /// before this caller: nobody waits (strict FIFO), or no waiter is due yet (bounded
    /// fairness). Expired and evicted connections are retired on the way.
    #[inline]
    pub(crate) fn try_take_idle(&self) -> Option<Popped<F::Connection>> {
        if !self.hot.gate.admits_newcomers() {
            return None;
        }
        self.pop_live()
    }

    // Every push to and pop from `idle` goes through these four.

    /// Pops a connection to lend (the fast path, a waiter served, a competing waiter): the
    /// surplus low-water mark notes the queue as it is left (see `surplus`).
    #[inline(always)]
    pub(crate) fn pop_to_lend(&self) -> Option<Entry<F::Connection>> {
        let entry = self.idle.pop()?;
        self.surplus.note(|| self.idle.len());
        Some(entry)
    }

    /// Pops a connection to check, put back or retire (housekeeping, eviction, shrinking,
    /// closing): not a lend, so the surplus mark is left to the caller.
    pub(crate) fn pop_unlent(&self) -> Option<Entry<F::Connection>> {
        self.idle.pop()
    }

    /// Readies `idle` for a pass over it (a sweep, a health pass): the connection in the idle
    /// queue's slot joins the back, so popping the count returned visits each idle connection
    /// once, oldest first, while the pass pushes back what it keeps.
    pub(crate) fn settle_idle(&self) -> usize {
        if let Err(entry) = self.idle.settle() {
            // As in `push_idle`: cannot happen while the queue holds the ceiling.
            self.retire(entry, DestroyReason::Closed);
        }
        self.idle.len()
    }

    /// The bare push; the caller serves the wait list (`push_idle`) or holds its lock
    /// (`offer_to_waiters`). A connection a guard returned goes into the idle queue's slot, lent
    /// first, if the slot is empty (see `idle_queue`); any other goes to the back. Gives a
    /// connection back if the queue is full.
    #[inline(always)]
    pub(crate) fn push_to_idle(
        &self,
        entry: Entry<F::Connection>,
        offer: Offer,
    ) -> Result<(), Entry<F::Connection>> {
        match offer {
            Offer::Returned => self.idle.push_recent(entry),
            Offer::Oldest => self.idle.push_back(entry),
        }
    }

    /// Pops from `idle`, retiring stale connections, until one is live or the queue is empty.
    ///
    /// Always inlined: out of line, its `Option<Popped>` came back through memory and the
    /// caller's read of it stalled on a store-to-load forward (perf); inlining it cut the
    /// uncontended cycle of `benches/telemetry.rs` from 13.5 to 12.4 ns.
    #[inline(always)]
    fn pop_live(&self) -> Option<Popped<F::Connection>> {
        let entry = self.pop_to_lend()?;
        match self.inspect(entry) {
            Some(popped) => Some(popped),
            None => self.pop_live_after_stale(),
        }
    }

    /// `pop_live` after the first pop found a stale connection: out of line, to keep the fast
    /// path small.
    #[cold]
    #[inline(never)]
    fn pop_live_after_stale(&self) -> Option<Popped<F::Connection>> {
        loop {
            let entry = self.pop_to_lend()?;
            if let Some(popped) = self.inspect(entry) {
                return Some(popped);
            }
        }
    }

    /// Looks at a connection about to be lent: retires it if stale, otherwise says what must run
    /// on it first. One clock read.
    #[inline]
    pub(crate) fn inspect(&self, mut entry: Entry<F::Connection>) -> Option<Popped<F::Connection>> {
        let now = self.now();
        if let Some(reason) = self.stale_at(&entry, now) {
            self.retire(entry, reason);
            return None;
        }
        // A connection never lent is validated too once it has sat idle a while (a
        // `min_connections` one can outlive its server side); only one lent since its last
        // reset has session state to reset.
        let used = entry.use_count > 0;
        let after = if used {
            self.validate_after
        } else {
            self.validate_new_after
        };
        let validate = now.saturating_sub(entry.last_used_at) >= after;
        let reset = entry.dirty && self.health.is_some();
        entry.lent_at = now;
        Some(Popped {
            entry,
            validate,
            reset,
        })
    }

    /// Book-keeping when a connection is lent: the event hook and the leak registry, each only
    /// when configured. Returns the loan's leak id.
    #[inline]
    pub(crate) fn lent(
        &self,
        entry: &Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> LeakId {
        if self.bookkeeping {
            self.lent_slow(entry, waited, location)
        } else {
            LeakId::NONE
        }
    }

    #[cold]
    fn lent_slow(
        &self,
        entry: &Entry<F::Connection>,
        waited: Duration,
        location: &'static Location<'static>,
    ) -> LeakId {
        if self.detailed {
            self.stats.wait.record(waited);
        }
        emit(&self.events, |h| h.on_acquired(self.config.name(), waited));
        match &self.leaks {
            Some(leaks) => leaks.register(entry.lent_at, location),
            None => LeakId::NONE,
        }
    }

    /// Takes a connection back from a guard: publish, then notify.
    #[inline]
    pub(crate) fn release(
        &self,
        mut entry: Entry<F::Connection>,
        broken: Option<DestroyReason>,
        leak: LeakId,
    ) {
        let now = self.now();
        if self.bookkeeping {
            self.released_slow(&entry, now, leak);
        }
        if let Some(reason) = broken.or_else(|| self.stale_at(&entry, now)) {
            return self.retire(entry, reason);
        }
        entry.last_used_at = now;
        self.push_idle(entry, Offer::Returned);
    }

    #[cold]
    fn released_slow(&self, entry: &Entry<F::Connection>, now: Millis, leak: LeakId) {
        if let Some(leaks) = &self.leaks {
            leaks.unregister(leak);
        }
        let held = Duration::from_millis(now.saturating_sub(entry.lent_at));
        if self.detailed {
            Stats::count(&self.stats.released);
            self.stats.hold.record(held);
        }
        emit(&self.events, |h| h.on_released(self.config.name(), held));
    }

    /// Puts a healthy connection into `idle`, then serves a waiter (as `offer` says) or honours
    /// `close`/`resize`.
    #[inline]
    pub(crate) fn push_idle(&self, entry: Entry<F::Connection>, offer: Offer) {
        // Someone waits (and the pool is open and not shrinking): serve the list under one lock
        // (`offer_to_waiters`), rather than push, fence and then lock it to serve.
        // A thread woken to compete will look at `idle` anyway: then the lock is skipped.
        let serving = self.hot.gate.peek().serving();
        let left = serving && self.left_to_competitor(offer);
        let entry = if serving && !left {
            match self.offer_to_waiters(entry, offer) {
                Ok(()) => return,
                Err(entry) => entry,
            }
        } else {
            entry
        };
        if let Err(entry) = self.push_to_idle(entry, offer) {
            // Cannot happen while every connection is in one place and the queue holds the
            // ceiling; closing the surplus keeps the count honest if it ever did.
            return self.retire(entry, DestroyReason::Closed);
        }
        // Publish, then look for waiters. Pairs with the fence in `Shared::enqueue` (a waiter
        // linking sees this connection, or this look sees the waiter) and, for a connection
        // `left` to the competing waiter, with the one in `WaitList::stop_competing` (it is
        // still competing and will see this connection, or the list is served here).
        fence(Ordering::SeqCst);
        let gate = self.hot.gate.peek();
        if gate.any() {
            self.release_slow(gate, offer, left);
        }
    }

    #[cold]
    fn release_slow(&self, gate: GateState, offer: Offer, left: bool) {
        if gate.closed() {
            return self.drain_idle(DestroyReason::Closed);
        }
        if gate.shrinking() && self.shrink_one() {
            return;
        }
        if gate.waiters() != 0 && !(left && self.still_competing()) {
            self.serve_waiters(offer);
        }
    }

    /// Retires every idle connection (close).
    pub(crate) fn drain_idle(&self, reason: DestroyReason) {
        while let Some(entry) = self.pop_unlent() {
            self.retire_idle(entry, reason);
        }
    }

    /// Retires a connection popped from `idle` outside a sweep (eviction, shrinking, a failed
    /// health check). It no longer counts as idle, so the surplus low-water mark comes down with
    /// it (`surplus`'s invariant): else a later sweep would count a connection made since as one
    /// that sat idle through the whole window, and retire it.
    pub(crate) fn retire_idle(&self, entry: Entry<F::Connection>, reason: DestroyReason) {
        self.retire(entry, reason);
        self.surplus.note(|| self.idle.len());
    }
}
