//! The slow path of an acquire, shared by both facades: take what is ours to take, else register
//! as a waiter (asking the creator for a connection), re-check, and sleep; then loop.

use super::sync::{Ordering, fence};
use event_listener::{EventListener, Listener};

use super::{DestroyReason, Entry, Popped, RetireOnDrop, Shared, WAITERS, with_timeout};
use crate::{ConnectionFactory, PoolError};

/// What the slow path ends with.
pub(crate) type Acquired<F> =
    Result<Entry<<F as ConnectionFactory>::Connection>, PoolError<<F as ConnectionFactory>::Error>>;

impl<F: ConnectionFactory> Shared<F> {
    /// Acquires a connection, waiting as long as it takes: the facades bound it by dropping this
    /// future at their deadline, which is safe at every await point (see `Waiter`).
    ///
    /// `candidate` is a connection the fast path popped but that must be validated first.
    pub(crate) async fn acquire_slow(
        &self,
        mut candidate: Option<Popped<F::Connection>>,
    ) -> Acquired<F> {
        let mut waiter = Waiter::new(self);
        loop {
            if let Some(popped) = candidate.take() {
                if popped.is_ready() {
                    return Ok(popped.entry);
                }
                if let Some(entry) = self.vet(popped).await {
                    return Ok(entry);
                }
                continue;
            }
            if self.is_closed() {
                return Err(PoolError::Closed);
            }
            candidate = waiter.take();
            if candidate.is_some() {
                continue;
            }
            if !waiter.is_listening() {
                waiter.listen();
                // Whichever comes first serves this waiter: a returned connection or a new one.
                self.signal_demand();
                continue;
            }
            waiter.wait().await;
        }
    }

    /// Validates and resets a connection as due. Returns it if it may be lent; otherwise it is
    /// retired and the acquire goes on.
    async fn vet(&self, popped: Popped<F::Connection>) -> Option<Entry<F::Connection>> {
        // Cancellation safety: if this future is dropped mid-callback the guard retires the
        // connection, because a half-finished exchange may be left on the wire.
        let mut guard = RetireOnDrop::new(self, popped.entry, DestroyReason::Broken);
        let conn = &mut guard.entry.as_mut()?.conn;
        let limit = self.config.check_timeout();
        if popped.validate && with_timeout(limit, self.factory.validate(conn)).await != Ok(true) {
            guard.reason = DestroyReason::FailedValidation;
            return None;
        }
        if popped.reset {
            if let Some(health) = &self.health {
                if with_timeout(limit, health.reset(conn)).await != Ok(true) {
                    guard.reason = DestroyReason::Unhealthy;
                    return None;
                }
            }
        }
        guard.entry.take()
    }
}

/// One caller's place in the waiter list. Dropping it, at any point, leaves the list cleanly:
/// see the module docs of `core` for the protocol.
pub(crate) struct Waiter<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
    /// Whether this caller is counted in `gate`.
    registered: bool,
    /// True between registering and the first re-check.
    fresh: bool,
    /// Whether nobody else was waiting when this caller registered.
    first: bool,
    listener: Option<EventListener>,
}

impl<'a, F: ConnectionFactory> Waiter<'a, F> {
    pub(crate) fn new(shared: &'a Shared<F>) -> Self {
        Waiter {
            shared,
            registered: false,
            fresh: false,
            first: false,
            listener: None,
        }
    }

    /// Takes a connection this caller is entitled to, if one is there.
    fn take(&mut self) -> Option<Popped<F::Connection>> {
        let shared = self.shared;
        if !self.registered {
            // A newcomer queues behind existing waiters.
            return if shared.waiting() == 0 {
                shared.take_idle()
            } else {
                None
            };
        }
        let fresh = std::mem::take(&mut self.fresh);
        if fresh && !self.first {
            // Older waiters come first. What sits idle (a release that saw no waiter) is theirs:
            // pass it to the oldest, as a release would, and take this caller's turn through a
            // notification. Taking it here, or claiming an untold-of connection in `handoff`,
            // let a newcomer barge ahead of older waiters (found by tests/fifo_cancel.rs).
            shared.offer_to_oldest();
            return None;
        }
        let mut popped = None;
        if !fresh || shared.claim_unnotified() {
            popped = shared.take_handoff();
        }
        let popped = popped.or_else(|| shared.take_idle());
        if popped.is_some() {
            // Served: stop counting as a waiter at once, or the creator would see a waiter with
            // nothing handed to it and make a connection nobody needs (found by the fuzzer). If
            // the connection then fails validation, this caller queues again at the back.
            self.leave();
        }
        popped
    }

    fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Starts listening, and on the first call joins the waiter count. The caller re-checks
    /// before it sleeps.
    fn listen(&mut self) {
        self.listener = Some(self.shared.waiter_event().listen());
        if !self.registered {
            self.registered = true;
            self.fresh = true;
            let before = self.shared.gate().fetch_add(1, Ordering::SeqCst);
            self.first = before & WAITERS == 0;
            // Count, then re-check. Pairs with the fence in `Shared::push_idle`.
            fence(Ordering::SeqCst);
        }
    }

    async fn wait(&mut self) {
        if let Some(listener) = self.listener.as_mut() {
            listener.await;
        }
        self.listener = None;
    }

    /// Leaves the waiter list; idempotent.
    pub(crate) fn leave(&mut self) {
        let shared = self.shared;
        if let Some(listener) = self.listener.take() {
            // A notification this caller received but will not use goes to the next waiter.
            if listener.discard() && !shared.is_closed() {
                shared.notify_waiter();
            }
        }
        if std::mem::take(&mut self.registered) {
            let before = shared.gate().fetch_sub(1, Ordering::SeqCst);
            if before & WAITERS == 1 {
                // The last waiter left: nothing may stay reserved for nobody.
                shared.drain_handoff();
            } else if shared.claim_unnotified() {
                // A connection in `handoff` that nobody was told of (every waiter was busy when
                // it came) may have been waiting for this caller's re-check, which will not
                // happen now: tell the oldest remaining waiter instead.
                shared.notify_waiter();
            }
        }
    }
}

impl<F: ConnectionFactory> Drop for Waiter<'_, F> {
    fn drop(&mut self) {
        self.leave();
    }
}
