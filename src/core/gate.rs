//! `gate`: the one word every acquire and release reads first. It holds the number of callers
//! linked in the wait list and two bits, `CLOSED` and `SHRINK`. While it is zero nobody waits and
//! the pool is open and fits its `max`, so the idle queue is all there is (the fast path). This
//! file owns every change to the word; everything else reads it through the methods below.
//!
//! | Change | By | Ordering |
//! |---|---|---|
//! | `count_waiter` | a caller linking into the wait list, under its lock | `SeqCst` |
//! | `uncount_waiters` | whoever unlinks waiters (served, gave up, expired, closed), under the lock | `SeqCst` |
//! | `close` | `ConnectionPool::close`, once | `SeqCst` |
//! | `start_shrink` | `resize` below the connections open | `SeqCst` |
//! | `end_shrink` | the first to see the pool fit again (`connection_gone`, `shrink_one`) | `AcqRel` |
//!
//! # Which fence pairs with which
//!
//! Each pairing below is a store-buffering (Dekker) pattern: each side writes, issues a `SeqCst`
//! fence (or a `SeqCst` read-modify-write), then reads what the other side wrote, so at least one
//! of the two sees the other.
//!
//! | One side | Other side | Either… |
//! |---|---|---|
//! | `Shared::enqueue`: `count_waiter`, fence, look at `idle` | `Shared::push_idle`: push to `idle`, fence, `peek` | the release sees the waiter and serves the list, or the waiter sees the connection |
//! | `Shared::enqueue` (the waiter's count) then `signal_demand`'s `SeqCst` load of `total` | `connection_gone`: `SeqCst` decrement of `total`, then the creator's `look` (`wants_create`) after its wake-up | the waiter sees the freed place and wakes the creator, or the creator sees the waiter |
//! | `resize`: `SeqCst` store of `max`, load of `total`, `start_shrink` | `reserve`: `SeqCst` increment of `total`, then loads of `total` and `max` | `resize` sees the reservation and shrinks, or the reservation sees the new `max` and backs out |
//! | `WaitList::stop_competing`: clear `competing`, fence, look at `idle` | `Shared::push_idle` leaving a connection to the competing waiter: push, fence, `still_competing` | not the gate, but the same pattern: the waiter sees the connection, or the release serves the list itself |
//!
//! `close` needs no fence of its own: it sets `CLOSED` with a `SeqCst` read-modify-write and then
//! takes the wait list's lock to wake everyone, and a caller linking checks `is_closed` under
//! that lock; a release that pushed after `close` drained `idle` sees `CLOSED` in its `peek`
//! after the fence and drains again.

use super::sync::{AtomicUsize, Ordering};

/// The `CLOSED` bit.
const CLOSED: usize = 1 << (usize::BITS - 1);
/// The `SHRINK` bit: `resize` lowered `max` below `total`, so returned connections are retired
/// until it is reached.
const SHRINK: usize = 1 << (usize::BITS - 2);
/// The bits that count linked waiters.
const WAITERS: usize = !(CLOSED | SHRINK);

/// The word, and which of its bits keep the fast path out.
#[derive(Debug)]
pub(crate) struct Gate {
    word: AtomicUsize,
    /// All bits under strict FIFO (anyone waiting bars newcomers), only `CLOSED | SHRINK` under
    /// bounded fairness (newcomers may take what is idle while young threads wait). Set once;
    /// read with `word`, on the same cache line.
    barred: usize,
}

/// One reading of the word.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateState(usize);

impl GateState {
    /// Anything at all: waiters, `CLOSED` or `SHRINK`.
    #[inline(always)]
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }

    /// Someone waits, and the pool is open and not shrinking: a release serves the list.
    #[inline(always)]
    pub(crate) fn serving(self) -> bool {
        self.0 != 0 && self.0 & (CLOSED | SHRINK) == 0
    }

    pub(crate) fn closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    pub(crate) fn shrinking(self) -> bool {
        self.0 & SHRINK != 0
    }

    pub(crate) fn waiters(self) -> usize {
        self.0 & WAITERS
    }
}

impl Gate {
    /// An open gate; `strict`: newcomers queue behind anyone waiting.
    pub(crate) fn new(strict: bool) -> Self {
        Gate {
            word: AtomicUsize::new(0),
            barred: if strict { usize::MAX } else { CLOSED | SHRINK },
        }
    }

    /// Whether a newcomer may pop `idle` (the fast path).
    #[inline(always)]
    pub(crate) fn admits_newcomers(&self) -> bool {
        self.word.load(Ordering::Relaxed) & self.barred == 0
    }

    /// A relaxed reading: the release path's look (after its fence, where it pairs).
    #[inline(always)]
    pub(crate) fn peek(&self) -> GateState {
        GateState(self.word.load(Ordering::Relaxed))
    }

    /// A `SeqCst` reading, for the creator (`wants_create`) and `connection_gone`.
    pub(crate) fn look(&self) -> GateState {
        GateState(self.word.load(Ordering::SeqCst))
    }

    /// Whether `close` has been called.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.word.load(Ordering::Acquire) & CLOSED != 0
    }

    /// A caller linked into the wait list (under its lock); it fences, then looks at `idle`.
    pub(crate) fn count_waiter(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
    }

    /// `n` waiters were unlinked (under the list's lock).
    pub(crate) fn uncount_waiters(&self, n: usize) {
        self.word.fetch_sub(n, Ordering::SeqCst);
    }

    /// Sets `CLOSED`; `false` if it was already set.
    pub(crate) fn close(&self) -> bool {
        self.word.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    /// `resize` lowered `max` below the connections open.
    pub(crate) fn start_shrink(&self) {
        self.word.fetch_or(SHRINK, Ordering::SeqCst);
    }

    /// The pool fits its `max` again.
    pub(crate) fn end_shrink(&self) {
        self.word.fetch_and(!SHRINK, Ordering::AcqRel);
    }
}
