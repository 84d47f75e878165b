//! The slow path of an acquire, shared by both facades: join the waiter list (asking the creator
//! for a connection), sleep until a connection is handed over, check it; then loop.

use event_listener::EventListener;

use super::sync::Arc;
use super::waitlist::Slot;
use super::{DestroyReason, Entry, Popped, RetireOnDrop, Shared, with_timeout};
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
        // Whether this caller was handed a connection that turned out unusable: it then queues
        // again at the front, since it was already the oldest waiter.
        let mut served = false;
        loop {
            if let Some(popped) = candidate.take() {
                if popped.is_ready() {
                    return Ok(popped.entry);
                }
                if let Some(entry) = self.vet(popped).await {
                    return Ok(entry);
                }
                served = true;
                continue;
            }
            if self.is_closed() {
                return Err(PoolError::Closed);
            }
            if let Some(entry) = waiter.take() {
                served = true;
                candidate = self.inspect(entry);
                continue;
            }
            if !waiter.queued {
                if !waiter.enqueue(served) {
                    return Err(PoolError::Closed);
                }
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

/// One caller's place in the waiter list. Dropping it, at any point, leaves the list cleanly: a
/// connection already handed to it goes on to the next waiter (or back to idle).
pub(crate) struct Waiter<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
    /// Made on first use and kept across re-queueing.
    slot: Option<Arc<Slot<F::Connection>>>,
    /// Whether the slot may be linked in the list (it may have been served or unlinked by
    /// `close` since).
    queued: bool,
    listener: Option<EventListener>,
}

impl<'a, F: ConnectionFactory> Waiter<'a, F> {
    pub(crate) fn new(shared: &'a Shared<F>) -> Self {
        Waiter {
            shared,
            slot: None,
            queued: false,
            listener: None,
        }
    }

    /// Joins the list, at the back or (for a caller whose connection failed its checks) at the
    /// front; returns `false` if the pool is closed.
    fn enqueue(&mut self, front: bool) -> bool {
        let slot = self.slot.get_or_insert_with(Slot::new);
        // Listen before linking: a serve may come the moment the lock is released.
        self.listener = Some(slot.listen());
        self.queued = self.shared.enqueue(slot, front);
        self.queued
    }

    /// The connection handed to this caller, if one was.
    fn take(&mut self) -> Option<Entry<F::Connection>> {
        let entry = self.slot.as_ref()?.take()?;
        self.queued = false;
        Some(entry)
    }

    /// Sleeps until served or woken. If the last notification was used up, listens again and
    /// returns at once, so the caller re-checks before it sleeps.
    async fn wait(&mut self) {
        match self.listener.as_mut() {
            Some(listener) => {
                listener.await;
                self.listener = None;
            }
            None => self.listener = self.slot.as_ref().map(|slot| slot.listen()),
        }
    }
}

impl<F: ConnectionFactory> Drop for Waiter<'_, F> {
    fn drop(&mut self) {
        // Cancellation safety: a slot still linked is unlinked; a connection handed to it but
        // not taken goes back through the release path, to the next waiter.
        if let Some(slot) = &self.slot {
            if self.queued {
                self.shared.dequeue(slot);
            }
            if let Some(entry) = slot.take() {
                self.shared.put_back(entry);
            }
        }
    }
}
