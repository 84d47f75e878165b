//! `Entry`: a connection together with the facts the pool keeps about it.

use super::clock::Millis;

/// Why the pool closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DestroyReason {
    /// Its holder marked it broken, or dropped it while a validation was in flight.
    Broken,
    /// Its holder panicked while holding it.
    Panicked,
    /// It sat idle longer than `idle_timeout` while more than `min_connections` were open.
    IdleTimeout,
    /// `evict_all` was called after it was created.
    Evicted,
    /// `resize` lowered `max_connections` below the number open.
    Resized,
    /// It outlived `max_lifetime`.
    Expired,
    /// It failed checkout validation.
    FailedValidation,
    /// It failed a periodic health check, or a health check on it panicked.
    Unhealthy,
    /// The pool was closed.
    Closed,
}

impl DestroyReason {
    /// How many reasons there are.
    pub(crate) const COUNT: usize = 9;

    /// A dense index, for counters.
    pub(crate) fn index(self) -> usize {
        match self {
            DestroyReason::Broken => 0,
            DestroyReason::Panicked => 1,
            DestroyReason::IdleTimeout => 2,
            DestroyReason::Expired => 3,
            DestroyReason::FailedValidation => 4,
            DestroyReason::Unhealthy => 5,
            DestroyReason::Evicted => 6,
            DestroyReason::Resized => 7,
            DestroyReason::Closed => 8,
        }
    }
}

/// A connection and its metadata, boxed once when the connection is made: the queues, guards
/// and hand-offs then move one pointer instead of the whole record, which keeps the hot path's
/// copies small whatever the connection type (found with callgrind: moving the 56-byte record
/// through pop, guard and return cost more instructions than the queue operations themselves).
/// Lives in exactly one place at a time: the idle queue, the slot of the waiter it is handed to,
/// the retiring queue, or a `PooledConnection` guard.
#[derive(Debug)]
pub(crate) struct Entry<C>(Box<Facts<C>>);

/// What `Entry` holds.
#[derive(Debug)]
pub(crate) struct Facts<C> {
    pub(crate) conn: C,
    pub(crate) created_at: Millis,
    pub(crate) last_used_at: Millis,
    pub(crate) use_count: u64,
    /// Lent since its session was last reset (only a health check's `reset` clears it).
    pub(crate) dirty: bool,
    /// `created_at + max_lifetime - jitter`, fixed at creation; `Millis::MAX` for never.
    pub(crate) expires_at: Millis,
    /// The pool's eviction generation when it was created; older ones are replaced.
    pub(crate) generation: u64,
    /// When it was last lent (meaningful while lent).
    pub(crate) lent_at: Millis,
}

impl<C> Entry<C> {
    pub(crate) fn new(conn: C, now: Millis, expires_at: Millis, generation: u64) -> Self {
        Entry(Box::new(Facts {
            conn,
            created_at: now,
            last_used_at: now,
            use_count: 0,
            dirty: false,
            expires_at,
            generation,
            lent_at: now,
        }))
    }

    /// The connection, taking it out of the pool's records.
    pub(crate) fn into_conn(self) -> C {
        self.0.conn
    }

    #[inline]
    pub(crate) fn is_expired(&self, now: Millis) -> bool {
        now >= self.0.expires_at
    }
}

impl<C> std::ops::Deref for Entry<C> {
    type Target = Facts<C>;

    #[inline]
    fn deref(&self) -> &Facts<C> {
        &self.0
    }
}

impl<C> std::ops::DerefMut for Entry<C> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Facts<C> {
        &mut self.0
    }
}
