//! The slow path of an acquire, shared by both facades: join the waiter list (asking the creator
//! for a connection), sleep until a connection is handed over, check it; then loop.

use std::future::Future;
use std::time::Instant;

use super::sync::Arc;
use super::waitlist::Slot;
use super::{DestroyReason, Entry, Interrupted, Popped, RetireOnDrop, Shared, with_timeout};
use crate::{ConnectionFactory, PoolError};

/// What the slow path ends with.
pub(crate) type Acquired<F> =
    Result<Entry<<F as ConnectionFactory>::Connection>, PoolError<<F as ConnectionFactory>::Error>>;

impl<F: ConnectionFactory> Shared<F> {
    /// Acquires a connection, or gives up with `None` once `deadline` has passed. The facades
    /// may also drop this future at their deadline, which is safe at every await point (see
    /// `Waiter`).
    ///
    /// `candidate` is a connection the fast path popped but that must be validated first.
    pub(crate) async fn acquire_slow(
        &self,
        mut candidate: Option<Popped<F::Connection>>,
        deadline: Instant,
    ) -> Option<Acquired<F>> {
        let mut waiter = Waiter::new(self, deadline);
        // Whether this caller was handed a connection that turned out unusable: it then queues
        // again at the front, since it was already the oldest waiter.
        let mut served = false;
        loop {
            if let Some(popped) = candidate.take() {
                if popped.is_ready() {
                    return Some(Ok(popped.entry));
                }
                // Checked between candidates: each check may take up to `check_timeout`, and a
                // blocking one cannot be cut short.
                if Instant::now() >= deadline {
                    self.put_back(popped.entry);
                    return None;
                }
                if let Some(entry) = self.vet(popped, deadline).await {
                    return Some(Ok(entry));
                }
                served = true;
                continue;
            }
            if self.is_closed() {
                return Some(Err(PoolError::Closed));
            }
            if let Some(entry) = waiter.take() {
                served = true;
                candidate = self.inspect(entry);
                continue;
            }
            if waiter.is_expired() {
                return None;
            }
            if !waiter.queued {
                if served && Instant::now() >= deadline {
                    return None;
                }
                if !waiter.enqueue(served) {
                    return Some(Err(PoolError::Closed));
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
    async fn vet(
        &self,
        popped: Popped<F::Connection>,
        deadline: Instant,
    ) -> Option<Entry<F::Connection>> {
        // Cancellation safety: if this future is dropped mid-callback the guard retires the
        // connection, because a half-finished exchange may be left on the wire.
        let mut guard = RetireOnDrop::new(self, popped.entry, DestroyReason::Broken);
        let conn = &mut guard.entry.as_mut()?.conn;
        if popped.validate {
            match self.check(deadline, self.factory.validate(conn)).await {
                Some(Ok(true)) => {}
                // Cut short by the deadline: the guard's reason stays `Broken`.
                None => return None,
                Some(_) => {
                    guard.reason = DestroyReason::FailedValidation;
                    return None;
                }
            }
        }
        if popped.reset {
            if let Some(health) = &self.health {
                match self.check(deadline, health.reset(conn)).await {
                    Some(Ok(true)) => {}
                    None => return None,
                    Some(_) => {
                        guard.reason = DestroyReason::Unhealthy;
                        return None;
                    }
                }
                // The reset may have undone what `on_connect` set up: run it again.
                if let Some(hook) = &self.on_connect {
                    match self.check(deadline, hook(conn)).await {
                        Some(Ok(Ok(()))) => {}
                        None => return None,
                        Some(_) => {
                            guard.reason = DestroyReason::Unhealthy;
                            return None;
                        }
                    }
                }
            }
        }
        let mut entry = guard.entry.take()?;
        entry.dirty = false;
        Some(entry)
    }
}

impl<F: ConnectionFactory> Shared<F> {
    /// Runs one checkout check, bounded by `check_timeout` and by what is left before the
    /// acquire's deadline (`acquire_timeout` bounds the whole acquire). `None`: the deadline
    /// cut it short, leaving the connection in an unknown state, as a caller's drop would.
    async fn check<T>(
        &self,
        deadline: Instant,
        fut: impl Future<Output = T>,
    ) -> Option<Result<T, Interrupted>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self.config.check_timeout();
        if left >= limit {
            return Some(with_timeout(limit, fut).await);
        }
        match with_timeout(left, fut).await {
            Err(Interrupted::TimedOut) => None,
            other => Some(other),
        }
    }
}

/// One caller's place in the waiter list. Dropping it, at any point, leaves the list cleanly: a
/// connection already handed to it goes on to the next waiter (or back to idle).
pub(crate) struct Waiter<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
    deadline: Instant,
    /// Made on first use and kept across re-queueing.
    slot: Option<Arc<Slot<F::Connection>>>,
    /// Whether the slot may be linked in the list (it may have been served or unlinked by
    /// `close` since).
    queued: bool,
}

impl<'a, F: ConnectionFactory> Waiter<'a, F> {
    pub(crate) fn new(shared: &'a Shared<F>, deadline: Instant) -> Self {
        Waiter {
            shared,
            deadline,
            slot: None,
            queued: false,
        }
    }

    /// Joins the list, at the back or (for a caller whose connection failed its checks) at the
    /// front; returns `false` if the pool is closed.
    fn enqueue(&mut self, front: bool) -> bool {
        let deadline = self.deadline;
        let slot = self.slot.get_or_insert_with(|| Slot::new(deadline));
        self.queued = self.shared.enqueue(slot, front);
        self.queued
    }

    /// The connection handed to this caller, if one was.
    fn take(&mut self) -> Option<Entry<F::Connection>> {
        let entry = self.slot.as_ref()?.take()?;
        self.queued = false;
        Some(entry)
    }

    /// Whether the deadline keeper ended this wait.
    fn is_expired(&self) -> bool {
        self.slot.as_ref().is_some_and(|slot| slot.is_expired())
    }

    /// Sleeps until served or woken. A wake-up that came since the caller last looked at the
    /// slot makes it return at once, so the caller looks again before it sleeps.
    async fn wait(&mut self) {
        if let Some(slot) = &self.slot {
            futures_lite::future::poll_fn(|cx| slot.poll_wait(cx)).await;
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
