//! The idle queue's shape: a connection a guard returns goes into a slot of its own, if the
//! slot is empty, and is lent first; the others wait in first-in first-out order behind it.
//!
//! Why the slot: a caller that returns a connection and acquires again (a worker's loop) gets the
//! same connection back, so its session, its server process and their caches stay with it. A
//! plain FIFO queue hands it the one returned longest ago instead: with more connections idle than
//! callers, every cycle moved to another server process. Four threads on a pool of eight ran at
//! 0.54x-0.67x r2d2_postgres (whose stack reuses the same four) with the plain queue, and at
//! 0.77x-1.07x with the slot (`benches/peers/benches/postgres.rs`, the `x4` rows). The rest
//! stays FIFO, so a sweep still finds the connections returned longest ago at the front (it
//! first moves the slot's connection to the back: `settle`).
//!
//! What it costs: every acquire and release looks at the slot first, and all threads share it.
//! With nanosecond holds and no more threads than connections (the `oversubscribed` bench, pools
//! of 4 and 16 x 4 threads) it took 5% to 25% of the throughput and raised the p99.9 wait from
//! about 250 ns to 1 to 2 µs (`benches/MISSES.md`): tens of nanoseconds per cycle, noise next to
//! a hold that does I/O.
//!
//! A return that finds the slot taken goes to the back of the rest; it does not displace the
//! one in the slot. Displacing (the slot always holding the very last return) measured the same
//! on PostgreSQL and cost more in the nanosecond-hold benchmarks, where it adds a second push to
//! every release that finds the slot taken.
//!
//! Both parts are `ArrayQueue`s (the slot one of capacity one), so a push or a pop stays
//! lock-free. `pop` looks at the slot, then at the rest: a connection pushed to either before
//! the release's fence is seen by a waiter's look after its own (the Dekker pairing in `gate`
//! holds for each). `tests/loom.rs` (`release_left_to_a_competing_waiter`) explores a return to
//! the rest racing a waiter's look while the slot is taken.

use super::sync::ArrayQueue;

/// Idle connections: the one in the slot, then the rest oldest first.
#[derive(Debug)]
pub(crate) struct IdleQueue<T> {
    /// A connection a guard returned while the slot was empty, lent first.
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

    /// A connection a guard returned: into the slot if it is empty, else to the back of the
    /// rest. Gives the connection back if both are full.
    #[inline(always)]
    pub(crate) fn push_recent(&self, value: T) -> Result<(), T> {
        match self.recent.push(value) {
            Ok(()) => Ok(()),
            Err(value) => self.rest.push(value),
        }
    }

    /// Any other connection (new, checked, handed back by a waiter that left): to the back.
    #[inline]
    pub(crate) fn push_back(&self, value: T) -> Result<(), T> {
        self.rest.push(value)
    }

    /// The slot's connection, else the one idle longest.
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<T> {
        self.recent.pop().or_else(|| self.rest.pop())
    }

    /// Moves the slot's connection to the back of the rest, so that popping the queue's length
    /// visits every connection once, oldest first, while pops are pushed back (a sweep).
    /// Gives the connection back if the rest is full (as `push_back`).
    pub(crate) fn settle(&self) -> Result<(), T> {
        match self.recent.pop() {
            Some(value) => self.rest.push(value),
            None => Ok(()),
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
