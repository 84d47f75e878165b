//! Lending and taking back: the fast path (pop, push, fence) and the release path's slow turns
//! (hand-off to a waiter, close, shrink).

use super::sync::{ArrayQueue, AtomicUsize, Ordering, fence};
use std::panic::Location;
use std::time::Duration;

use event_listener::IntoNotification;

use super::{
    CLOSED, DestroyReason, Entry, LeakId, Millis, Popped, SHRINK, Shared, Stats, WAITERS, clock,
};
use crate::ConnectionFactory;
use crate::events::emit;

impl<F: ConnectionFactory> Shared<F> {
    /// The coarse time (see `clock`), waking the ticker if it was asleep.
    #[inline]
    pub(crate) fn now(&self) -> Millis {
        let (now, woke) = self.clock.now();
        if woke {
            self.housekeeping.notify(1);
        }
        now
    }

    /// Pops an idle connection if nobody waits and the pool is open and not shrinking. Expired
    /// and evicted connections are retired on the way.
    #[inline]
    pub(crate) fn try_take_idle(&self) -> Option<Popped<F::Connection>> {
        if self.hot.gate.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.pop_live(&self.idle)
    }

    pub(crate) fn take_idle(&self) -> Option<Popped<F::Connection>> {
        self.pop_live(&self.idle)
    }

    pub(crate) fn take_handoff(&self) -> Option<Popped<F::Connection>> {
        self.pop_live(&self.handoff)
    }

    /// Pops from `queue`, retiring stale connections, until one is live or the queue is empty,
    /// and says what must run on it before it is lent. One clock read per pop.
    #[inline]
    fn pop_live(&self, queue: &ArrayQueue<Entry<F::Connection>>) -> Option<Popped<F::Connection>> {
        loop {
            let mut entry = queue.pop()?;
            let now = self.now();
            if let Some(reason) = self.stale_at(&entry, now) {
                self.retire(entry, reason);
                continue;
            }
            let used = entry.use_count > 0;
            let validate = used && now.saturating_sub(entry.last_used_at) >= self.validate_after;
            let reset = used && self.health.is_some();
            entry.lent_at = now;
            return Some(Popped {
                entry,
                validate,
                reset,
            });
        }
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
            Stats::count(&self.stats.acquired);
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
        self.push_idle(entry);
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

    /// Returns a connection taken from a queue but not lent.
    pub(crate) fn put_back(&self, entry: Entry<F::Connection>) {
        self.push_idle(entry);
    }

    /// Puts a healthy connection into `idle`, then serves a waiter or honours `close`/`resize`.
    #[inline]
    pub(crate) fn push_idle(&self, entry: Entry<F::Connection>) {
        if let Err(entry) = self.idle.push(entry) {
            // Cannot happen while every connection is in one place and the queue holds the
            // ceiling; closing the surplus keeps the count honest if it ever did.
            return self.retire(entry, DestroyReason::Closed);
        }
        // Publish, then look for waiters. Pairs with the fence in `Waiter::listen`.
        fence(Ordering::SeqCst);
        let gate = self.hot.gate.load(Ordering::Relaxed);
        if gate != 0 {
            self.release_slow(gate);
        }
    }

    #[cold]
    fn release_slow(&self, gate: usize) {
        if gate & CLOSED != 0 {
            return self.drain_idle(DestroyReason::Closed);
        }
        if gate & SHRINK != 0 && self.shrink_one() {
            return;
        }
        if gate & WAITERS != 0 {
            self.hand_over_one();
        }
    }

    /// Waiters exist: moves one idle connection to `handoff` for the oldest waiter not yet
    /// notified.
    fn hand_over_one(&self) {
        let Some(entry) = self.idle.pop() else {
            return;
        };
        if let Err(entry) = self.handoff.push(entry) {
            return self.retire(entry, DestroyReason::Closed);
        }
        self.notify_waiter();
        // The last waiter may have left after we saw it and before our push, draining an empty
        // hand-off queue: then nobody will take this one, so take it back. Pairs with the
        // count-then-drain in `Waiter::leave` (found by loom: concurrent_cancel).
        fence(Ordering::SeqCst);
        if self.hot.gate.load(Ordering::Relaxed) & WAITERS == 0 {
            self.drain_handoff();
        }
    }

    /// A newcomer's first look, while older waiters exist: a connection sitting idle (pushed by a
    /// release that saw no waiter) goes to the oldest waiter, as the release would have sent it.
    pub(crate) fn offer_to_oldest(&self) {
        self.hand_over_one();
    }

    /// Wakes the oldest waiter not yet notified, for a connection in `handoff`.
    ///
    /// The connection is first counted as unnotified, so that a waiter registering while nobody
    /// listens can claim it; the count is taken back if the notification reached a listener.
    /// Counting only after a failed notify loses the wake-up of a waiter that registers in
    /// between (found by loom: handover_to_cancelled_waiter).
    pub(crate) fn notify_waiter(&self) {
        self.unnotified.fetch_add(1, Ordering::SeqCst);
        if self.waiters.notify(1.additional()) > 0 {
            self.claim_unnotified();
        }
    }

    /// Claims one connection in `handoff` that no waiter was told about.
    pub(crate) fn claim_unnotified(&self) -> bool {
        self.unnotified
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Moves what waits in `handoff` back through the release path (used when the last waiter
    /// leaves, so nothing stays reserved for nobody).
    pub(crate) fn drain_handoff(&self) {
        self.unnotified.store(0, Ordering::Release);
        // Only what is there now: `push_idle` hands a connection straight back to `handoff` if a
        // waiter has arrived meanwhile, and draining that too would spin until the waiter runs
        // (found by loom: handover_to_cancelled_waiter).
        for _ in 0..self.handoff.len() {
            match self.handoff.pop() {
                Some(entry) => self.push_idle(entry),
                None => break,
            }
        }
    }

    /// Retires every idle connection (close, eviction).
    pub(crate) fn drain_idle(&self, reason: DestroyReason) {
        while let Some(entry) = self.idle.pop().or_else(|| self.handoff.pop()) {
            self.retire(entry, reason);
        }
    }

    pub(crate) fn leak_registry(&self) -> Option<&super::leaks::Registry> {
        self.leaks.as_ref()
    }

    pub(crate) fn gate(&self) -> &AtomicUsize {
        &self.hot.gate
    }

    pub(crate) fn waiter_event(&self) -> &event_listener::Event {
        &self.waiters
    }

    /// The pool's time as an `Instant`.
    pub(crate) fn instant(&self, at: Millis) -> std::time::Instant {
        self.clock.instant(at)
    }

    /// `d` in the pool's milliseconds.
    pub(crate) fn millis(d: Duration) -> Millis {
        clock::millis(d)
    }
}
