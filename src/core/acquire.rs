//! The slow path of an acquire, shared by both facades: join the waiter list (asking the creator
//! for a connection), sleep until a connection is handed over, check it; then loop.
//!
//! It is a hand-written state machine (`SlowAcquire`) rather than an `async fn`, so the async
//! facade can hold it inline in its named future: a waiting acquire then allocates nothing (its
//! slot comes from the wait list's free list). Only checks that run user callbacks (`validate`,
//! `reset`, the hook) are boxed, since their futures cannot be named.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::sync::{Arc, yield_now};
use super::waitlist::Slot;
use super::{DestroyReason, Entry, Outcome, Popped, RetireOnDrop, Shared};
use super::{Offer, WaiterKind};
use crate::factory::BoxFuture;
use crate::{ConnectionFactory, PoolError};

impl<F: ConnectionFactory> Shared<F> {
    /// Acquires a connection, or gives up once `deadline` has passed: the blocking facade's form
    /// of `SlowAcquire`.
    #[cfg(feature = "blocking")]
    pub(crate) async fn acquire_slow(
        &self,
        candidate: Option<Popped<F::Connection>>,
        deadline: Instant,
    ) -> Outcome<F> {
        let mut slow = SlowAcquire::new(self, candidate, deadline, WaiterKind::Thread);
        futures_lite::future::poll_fn(|cx| slow.poll(cx)).await
    }
}

/// One caller's slow acquire: its place in the waiter list, the connection it is checking, and
/// what it has been through. `S` is how it reaches the pool: a borrow, or an `Arc` for the
/// `'static` owned future.
///
/// Cancellation safety: dropping it, at any point, leaves the list cleanly (see `Drop`): a
/// connection already handed to it goes on to the next waiter (or back to idle), and one being
/// checked is retired by the check's own guard.
pub(crate) struct SlowAcquire<'a, F: ConnectionFactory, S: Deref<Target = Shared<F>>> {
    shared: S,
    deadline: Instant,
    /// What waking this caller costs, which decides when it is due (see `WaiterKind`).
    kind: WaiterKind,
    /// Taken from the list's free list on first use and kept across re-queueing.
    slot: Option<Arc<Slot<F::Connection>>>,
    /// Whether the slot may be linked in the list (it may have been served or unlinked by
    /// `close` since).
    queued: bool,
    /// A connection to lend once it passes its checks.
    candidate: Option<Popped<F::Connection>>,
    /// Whether this caller was handed a connection that turned out unusable: it then queues
    /// again at the front, since it was already the oldest waiter.
    served: bool,
    /// The checks running on a candidate (user callbacks).
    vetting: Option<BoxFuture<'a, Option<Entry<F::Connection>>>>,
    /// Woken while linked and not yet looked at why: perhaps to take an idle connection itself.
    woken: bool,
    /// How many more times this waiter gives up its core before it returns `Pending` (a thread
    /// then parks): see `yields_due`.
    yields: u32,
}

/// How many times a waiting thread yields its core before it parks, while it may be served soon.
const YIELDS_BEFORE_PARKING: u32 = 2;

impl<'a, F, S> SlowAcquire<'a, F, S>
where
    F: ConnectionFactory,
    S: Deref<Target = Shared<F>> + Clone + Send + 'a,
{
    /// `candidate` is a connection the fast path popped but that must be checked first.
    pub(crate) fn new(
        shared: S,
        candidate: Option<Popped<F::Connection>>,
        deadline: Instant,
        kind: WaiterKind,
    ) -> Self {
        SlowAcquire {
            shared,
            deadline,
            kind,
            slot: None,
            queued: false,
            candidate,
            served: false,
            vetting: None,
            woken: false,
            yields: 0,
        }
    }

    /// The pool this acquire is for.
    #[cfg(feature = "async")]
    pub(crate) fn shared(&self) -> &S {
        &self.shared
    }

    /// Drives the acquire to its outcome (see `timeout` for the ways it can time out). The
    /// facades may also drop it at their own deadline, which is safe at every `Pending`.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<F>> {
        loop {
            if let Some(vetting) = self.vetting.as_mut() {
                let Poll::Ready(vetted) = vetting.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                self.vetting = None;
                match vetted {
                    Some(entry) => return Poll::Ready(Outcome::Served(entry)),
                    None => {
                        self.served = true;
                        continue;
                    }
                }
            }
            if let Some(popped) = self.candidate.take() {
                if popped.is_ready() {
                    return Poll::Ready(Outcome::Served(popped.entry));
                }
                // Checked between candidates: each check may take up to `check_timeout`, and a
                // blocking one cannot be cut short.
                if Instant::now() >= self.deadline {
                    self.shared.push_idle(popped.entry, Offer::Oldest);
                    return Poll::Ready(Outcome::TimedOut);
                }
                let shared = self.shared.clone();
                let deadline = self.deadline;
                let vet: Pin<Box<dyn Future<Output = _> + Send + 'a>> =
                    Box::pin(async move { shared.vet(popped, deadline).await });
                self.vetting = Some(vet);
                continue;
            }
            if self.shared.is_closed() {
                return Poll::Ready(Outcome::Failed(PoolError::Closed));
            }
            if let Some(entry) = self.take() {
                self.served = true;
                self.candidate = self.shared.inspect(entry);
                continue;
            }
            if self.slot.as_ref().is_some_and(|slot| slot.is_expired()) {
                return Poll::Ready(Outcome::TimedOut);
            }
            if !self.queued {
                if self.served && Instant::now() >= self.deadline {
                    return Poll::Ready(Outcome::TimedOut);
                }
                if !self.enqueue(self.served) {
                    return Poll::Ready(Outcome::Failed(PoolError::Closed));
                }
                // Whichever comes first serves this waiter: a returned connection or a new one.
                self.shared.signal_demand();
                self.yields = self.yields_due();
                continue;
            }
            // Woken with nothing handed over: a young front waiter may take an idle connection
            // itself (bounded fairness); otherwise it keeps its place.
            if std::mem::take(&mut self.woken) {
                if let Some(entry) = self.slot.as_ref().and_then(|s| self.shared.compete(s)) {
                    self.queued = false;
                    self.served = true;
                    self.candidate = self.shared.inspect(entry);
                    continue;
                }
            }
            // Ready: woken since the last look (served, expired, closed, keeper stopped, asked
            // to compete): look again.
            if let Some(slot) = &self.slot {
                // Still linked, so the list keeps this waiter's turn (and the fairness bound)
                // while it yields. Anything that concerns it (served, expired, closed, asked to
                // compete) wakes the slot, so looking at the slot alone is enough.
                while slot.poll_wait(cx).is_pending() {
                    if self.yields == 0 {
                        return Poll::Pending;
                    }
                    self.yields -= 1;
                    yield_now();
                }
                self.woken = true;
                self.yields = self.yields_due();
            }
        }
    }

    /// Joins the list, at the back or (for a caller whose connection failed its checks) at the
    /// front; returns `false` if the pool is closed.
    fn enqueue(&mut self, front: bool) -> bool {
        let shared = &*self.shared;
        let slot = self.slot.get_or_insert_with(|| shared.slot());
        self.queued = self.shared.enqueue(slot, self.deadline, self.kind, front);
        self.queued
    }

    /// How many times to yield before waiting: `YIELDS_BEFORE_PARKING` for a thread while no
    /// more callers wait than the pool has connections, else none.
    ///
    /// A thread that yields stays runnable, so a connection handed to it, or a wake to compete
    /// for one, costs no futex wake-up and no context switch back, and the threads coming back
    /// from their queries run on past it (as past r2d2's `parking_lot` lock, which also yields
    /// before it parks). With the server on the same cores, 16 threads on 8 PostgreSQL
    /// connections went from 0.65x-0.76x r2d2_postgres's throughput to level with it
    /// (benches/MISSES.md). Behind a longer list a whole round of holds passes before this
    /// waiter's turn, and yielding only takes the core from the holders: with every waiting
    /// thread yielding, 64 threads on 4 connections (bench `contended`, a hold of a yield and
    /// some arithmetic) lost about a quarter of their throughput. A task never yields here: its
    /// executor has other tasks to run.
    fn yields_due(&self) -> u32 {
        if self.kind == WaiterKind::Thread && self.shared.waiting() <= self.shared.max() {
            YIELDS_BEFORE_PARKING
        } else {
            0
        }
    }

    /// The connection handed to this caller, if one was.
    fn take(&mut self) -> Option<Entry<F::Connection>> {
        let entry = self.slot.as_ref()?.take()?;
        self.queued = false;
        Some(entry)
    }
}

impl<F: ConnectionFactory, S: Deref<Target = Shared<F>>> Drop for SlowAcquire<'_, F, S> {
    fn drop(&mut self) {
        // Cancellation safety: a slot still linked is unlinked; a connection handed to it but
        // not taken goes back through the release path, to the next waiter. The slot then goes
        // back to the free list, if nothing else holds it.
        if let Some(slot) = self.slot.take() {
            if self.queued {
                self.shared.dequeue(&slot);
            }
            if let Some(entry) = slot.take() {
                self.shared.push_idle(entry, Offer::Oldest);
            }
            self.shared.recycle(slot);
        }
        if let Some(popped) = self.candidate.take() {
            self.shared.push_idle(popped.entry, Offer::Oldest);
        }
    }
}

impl<F: ConnectionFactory> Shared<F> {
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
                if let Some(hook) = self
                    .on_connect
                    .as_ref()
                    .filter(|_| health.reset_cleared_session(conn))
                {
                    match self.check(deadline, hook(conn)).await {
                        Some(Ok(Ok(()))) => health.prepared(conn),
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
