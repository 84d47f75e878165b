//! The idle queue's shape: the connection returned last sits in a slot of its own and is lent
//! first; the others wait in first-in first-out order behind it.
//!
//! Why the slot: a caller that returns a connection and acquires again (a worker's loop) gets the
//! same connection back, so its session, its server process and their caches stay with it. A
//! plain FIFO queue hands it the one returned longest ago instead: with more connections idle than
//! callers, every cycle moved to another server process. Four threads on a pool of eight ran at
//! 0.54x-0.67x r2d2_postgres (whose stack reuses the same four) with the plain queue, and at
//! 0.85x-0.95x with the slot (`benches/peers/benches/postgres.rs`, the `x4` rows). The rest
//! stays FIFO, so a sweep still finds the connections returned longest ago at the front (it
//! first moves the slot's connection to the back: `settle`).
//!
//! Both parts are `ArrayQueue`s (the slot one of capacity one, replaced with `force_push`), so a
//! push or a pop stays lock-free. A connection displaced from the slot is pushed to the back of
//! the rest before `push_recent` returns: the release's fence that follows publishes both (the
//! Dekker pairing in `gate` holds for each). `tests/loom.rs` (`release_left_to_a_competing_waiter`)
//! explores a displacement racing a waiter's look.

use super::sync::ArrayQueue;

/// Idle connections: the one returned last, then the rest oldest first.
#[derive(Debug)]
pub(crate) struct IdleQueue<T> {
    /// The connection returned last (by a guard), lent first.
    recent: ArrayQueue<T>,
    /// The others, oldest first.
    rest: ArrayQueue<T>,
}

impl<T> IdleQueue<T> {
    /// Room for `capacity` connections in the rest (the pool's ceiling) and one in the slot.
    pub(crate) fn new(capacity: usize) -> Self {
        IdleQueue {
            recent: ArrayQueue::new(1),
            rest: ArrayQueue::new(capacity),
        }
    }

    /// A connection a guard returned: into the slot; the one it displaces goes to the back of
    /// the rest. Gives a connection back if the rest is full.
    #[inline(always)]
    pub(crate) fn push_recent(&self, value: T) -> Result<(), T> {
        match self.recent.force_push(value) {
            None => Ok(()),
            Some(displaced) => self.rest.push(displaced),
        }
    }

    /// Any other connection (new, checked, handed back by a waiter that left): to the back.
    #[inline]
    pub(crate) fn push_back(&self, value: T) -> Result<(), T> {
        self.rest.push(value)
    }

    /// The connection returned last, else the one idle longest.
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<T> {
        self.recent.pop().or_else(|| self.rest.pop())
    }

    /// Moves the slot's connection to the back of the rest, so that popping the queue's length
    /// visits every connection once, oldest first, while pops are pushed back (a sweep).
    pub(crate) fn settle(&self) {
        if let Some(value) = self.recent.pop() {
            if let Err(value) = self.rest.push(value) {
                // The rest is full only if the slot was not needed: put it back.
                let _ = self.recent.force_push(value);
            }
        }
    }

    /// How many are idle (a snapshot, as `ArrayQueue::len`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.recent.len() + self.rest.len()
    }

    /// Whether none is idle (a snapshot).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.rest.is_empty()
    }
}
