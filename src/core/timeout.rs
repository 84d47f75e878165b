//! Every time bound the pool sets, and the answer to "why did my acquire time out?".
//!
//! # `acquire_timeout`
//!
//! An acquire that cannot be served from the idle queue at once takes the slow path
//! (`acquire`) with a deadline, `acquire_timeout` from its start; everything it does is bounded
//! by that one deadline, and the first of these to reach it ends the wait:
//!
//! 1. **The deadline keeper** (`waitlist`, `Shared::expire_waiters`, run by the maintenance loop):
//!    one timer for the whole wait list ends every linked wait whose deadline has passed. The
//!    usual way a wait ends without a connection.
//! 2. **The waiter's own bound**, while no keeper runs (a spawned maintenance future that is not
//!    polled yet, or was dropped): an async acquire arms a timer of its own
//!    (`crate::future`, `Slow::poll`); a blocking acquire always parks with the deadline
//!    (`crate::blocking`, `block_on`).
//! 3. **Checks on a connection** before it is lent (checkout validation, the reset, the connect
//!    hook run again): each is bounded by `check_timeout` and by what is left of the deadline
//!    (`Shared::check`, below); the slow path also looks at the deadline between candidates, since
//!    a blocking check cannot be cut short.
//!
//! Each of these ends in `Outcome::TimedOut`, and `Shared::conclude` (below) turns that into the
//! caller's `PoolError::Timeout`: how long it waited, the pool's counts at that moment and, if
//! creates have been failing, why the last one failed (`Shared::last_create_error`, recorded by
//! the creator in `capacity`). It also counts the time-out and tells the event hook. A pool
//! closed meanwhile answers `PoolError::Closed` instead.
//!
//! What usually makes an acquire time out: every connection is lent for longer than the wait
//! (the error's counts say `idle: 0` and `total` at `max`), or creates keep failing (its
//! `last_create_error` says why), or a check on the candidate hung until the deadline.
//!
//! # Bounds on user callbacks
//!
//! `create` (with the connect hook), `destroy`, `validate`, `is_healthy` and `reset` run
//! through `with_timeout`: past `create_timeout`, `destroy_timeout` or `check_timeout` their
//! future is dropped, and a panic in one is caught. The callback can read its deadline with
//! `callback_deadline`, since a timer cannot stop one that blocks inside a poll.

use std::future::Future;
use std::time::{Duration, Instant};

use super::sync::Timer;
use super::{Entry, Shared};
use crate::error::TimeoutError;
use crate::events::emit;
use crate::snapshot::PoolMetrics;
use crate::{ConnectionFactory, PoolError};

/// How the slow path of an acquire ended.
pub(crate) enum Outcome<F: ConnectionFactory> {
    /// A connection, checked and ready to lend.
    Served(Entry<F::Connection>),
    /// An error to give the caller as it is (the pool closed).
    Failed(PoolError<F::Error>),
    /// The deadline passed first, by any of the ways in the module doc.
    TimedOut,
}

/// What the caller of a slow acquire gets: the connection and how long it waited, or the error.
type Concluded<F> = Result<
    (Entry<<F as ConnectionFactory>::Connection>, Duration),
    PoolError<<F as ConnectionFactory>::Error>,
>;

impl<F: ConnectionFactory> Shared<F> {
    /// What a slow acquire that started at `started` and ended with `outcome` gives its caller:
    /// the connection and how long it waited (counted in the statistics), or the error.
    pub(crate) fn conclude(&self, outcome: Outcome<F>, started: Instant) -> Concluded<F> {
        match outcome {
            Outcome::Served(entry) => {
                let waited = started.elapsed();
                self.record_slow_acquire(waited);
                Ok((entry, waited))
            }
            Outcome::Failed(err) => Err(err),
            Outcome::TimedOut => Err(self.timed_out(started)),
        }
    }

    /// The error for an acquire that gave up after waiting since `started`. The caller has
    /// already left the wait list, so the snapshot never counts it among the waiters.
    fn timed_out(&self, started: Instant) -> PoolError<F::Error> {
        if self.is_closed() {
            return PoolError::Closed;
        }
        let waited = started.elapsed();
        self.count_timeout();
        emit(&self.events, |h| h.on_timed_out(self.config.name(), waited));
        let m = PoolMetrics::of(self);
        PoolError::Timeout(TimeoutError {
            waited,
            total: m.total,
            idle: m.idle,
            waiting: m.waiting,
            max: m.max,
            last_create_error: self.last_create_error(),
        })
    }
}

impl<F: ConnectionFactory> Shared<F> {
    /// Runs one checkout check, bounded by `check_timeout` and by what is left before the
    /// acquire's deadline (`acquire_timeout` bounds the whole acquire). `None`: the deadline
    /// cut it short, leaving the connection in an unknown state, as a caller's drop would.
    pub(crate) async fn check<T>(
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

/// Why a user callback gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    TimedOut,
    Panicked,
}

/// Runs a user callback's future for at most `limit`. On time-out the future is dropped; a panic
/// is caught, since a user's bug must not kill the maintenance loop or leak what the caller holds.
/// The callback sees the deadline through `callback_deadline`: the timer cannot stop one that
/// blocks inside a poll, so such a callback must bound itself.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, Interrupted> {
    use futures_lite::FutureExt;
    let deadline = Instant::now().checked_add(limit);
    let guarded = async {
        std::panic::AssertUnwindSafe(crate::factory::with_deadline(deadline, fut))
            .catch_unwind()
            .await
            .map_err(|_| Interrupted::Panicked)
    };
    futures_lite::future::or(guarded, async {
        Timer::after(limit).await;
        Err(Interrupted::TimedOut)
    })
    .await
}
