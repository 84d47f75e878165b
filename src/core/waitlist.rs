//! The waiter list: callers waiting for a connection, oldest first, each with its own slot that a
//! connection is handed into.
//!
//! Order is kept by the list alone: a returned connection is moved straight into the slot of the
//! waiter at the front, under the list's lock, so no waiter can be passed over, woken for nothing
//! or lose its place by racing another (the event-per-pool design this replaced could, when a
//! release raced a waiter leaving). Each slot has its own `event_listener::Event`, which both
//! facades wait on: a task awaits it, a thread blocks on it with a deadline.
//!
//! The lock is held only to link, unlink or fill a slot: never across a user callback, an await
//! or I/O. The fast path never takes it (it runs only while `gate` says nobody waits).

use std::collections::VecDeque;

use event_listener::{Event, EventListener};

use super::sync::{Arc, Mutex, MutexGuard, Ordering, fence};
use super::{Entry, Shared};
use crate::ConnectionFactory;

/// The queue of waiting callers, oldest at the front.
pub(crate) struct WaitList<C> {
    queue: Mutex<VecDeque<Arc<Slot<C>>>>,
}

/// The list, locked.
pub(crate) type Queue<'a, C> = MutexGuard<'a, VecDeque<Arc<Slot<C>>>>;

impl<C> WaitList<C> {
    pub(crate) fn new() -> Self {
        WaitList {
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Locks the list. Nothing that holds the lock can panic, but a poisoned lock is still
    /// usable: the list is consistent after every single operation on it.
    pub(crate) fn lock(&self) -> Queue<'_, C> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One waiter's place: where its connection is put, and the event it sleeps on.
pub(crate) struct Slot<C> {
    served: Mutex<Option<Entry<C>>>,
    event: Event,
}

impl<C> Slot<C> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            served: Mutex::new(None),
            event: Event::new(),
        })
    }

    /// Starts listening for `serve` or `wake`. Listen first, then look at `take`.
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Takes the connection handed to this waiter, if any.
    pub(crate) fn take(&self) -> Option<Entry<C>> {
        self.lock_served().take()
    }

    /// Hands `entry` to this waiter and wakes it. Called with the list locked, after unlinking
    /// the slot, so the slot is filled at most once per linking.
    pub(crate) fn serve(&self, entry: Entry<C>) {
        *self.lock_served() = Some(entry);
        self.wake();
    }

    /// Wakes this waiter without a connection (the pool closed).
    pub(crate) fn wake(&self) {
        self.event.notify(usize::MAX);
    }

    fn lock_served(&self) -> MutexGuard<'_, Option<Entry<C>>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<F: ConnectionFactory> Shared<F> {
    /// Links `slot` into the list (at the front for a waiter whose connection failed its
    /// checks), counts it in `gate`, and serves the front from `idle`. Returns `false`, linking
    /// nothing, if the pool is closed.
    pub(crate) fn enqueue(&self, slot: &Arc<Slot<F::Connection>>, front: bool) -> bool {
        let mut queue = self.waitlist.lock();
        // Under the lock: `close` sets the bit and then takes the lock to wake the list, so a
        // slot linked here is either woken by it or never linked.
        if self.is_closed() {
            return false;
        }
        if front {
            queue.push_front(Arc::clone(slot));
        } else {
            queue.push_back(Arc::clone(slot));
        }
        self.hot.gate.fetch_add(1, Ordering::SeqCst);
        // Count, then re-check `idle`. Pairs with the fence in `Shared::push_idle`: either the
        // release sees this waiter and serves the list, or this look sees its connection.
        fence(Ordering::SeqCst);
        self.serve_locked(&mut queue);
        true
    }

    /// Unlinks `slot` if it is still linked (a waiter giving up).
    pub(crate) fn dequeue(&self, slot: &Arc<Slot<F::Connection>>) {
        let mut queue = self.waitlist.lock();
        if let Some(at) = queue.iter().position(|s| Arc::ptr_eq(s, slot)) {
            queue.remove(at);
            self.hot.gate.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Hands idle connections to the oldest waiters, as long as there are both.
    pub(crate) fn serve_waiters(&self) {
        let mut queue = self.waitlist.lock();
        self.serve_locked(&mut queue);
    }

    fn serve_locked(&self, queue: &mut Queue<'_, F::Connection>) {
        while !queue.is_empty() {
            let Some(entry) = self.idle.pop() else {
                return;
            };
            if let Some(reason) = self.stale_at(&entry, self.now()) {
                self.retire(entry, reason);
                continue;
            }
            if let Some(slot) = queue.pop_front() {
                // Uncount before the waiter runs, or the creator would see a waiter already
                // served and make a connection nobody needs (found by the fuzzer).
                self.hot.gate.fetch_sub(1, Ordering::SeqCst);
                slot.serve(entry);
            }
        }
    }

    /// Wakes every waiter for `close`; each then sees the `CLOSED` bit.
    pub(crate) fn wake_all_waiters(&self) {
        let mut queue = self.waitlist.lock();
        while let Some(slot) = queue.pop_front() {
            self.hot.gate.fetch_sub(1, Ordering::SeqCst);
            slot.wake();
        }
    }
}
