//! Housekeeping of the idle queue, off every caller's path: the sweep (expired, evicted and
//! idle-too-long connections, and the surplus a burst left, see `surplus`), health checks of idle
//! connections, eviction, and leak reports.

use std::time::{Duration, Instant};

use super::sync::Ordering;
use super::{DestroyReason, Entry, Millis, Offer, RetireOnDrop, Shared, Stats, with_timeout};
use crate::ConnectionFactory;
use crate::events::emit;

impl<F: ConnectionFactory> Shared<F> {
    /// Marks every connection for replacement: idle ones are retired now, lent ones when they
    /// come back, and ones being handed over when their waiter takes them.
    pub(crate) fn evict_all(&self) {
        self.hot.generation.fetch_add(1, Ordering::AcqRel);
        for _ in 0..self.idle.len() {
            match self.pop_unlent() {
                Some(entry) => self.retire_idle(entry, DestroyReason::Evicted),
                None => break,
            }
        }
        self.create_wanted.notify(1);
    }

    /// One sweep of the idle queue (see `sweep_in_steps`), all at once: for `sweep_idle`.
    pub(crate) fn sweep(&self) {
        let mut sweep = Sweep::new(self);
        while sweep.step(self, usize::MAX) {}
        sweep.finish(self);
    }

    /// One sweep of the idle queue: retires expired and evicted connections, those idle past
    /// `idle_timeout`, and the surplus a whole `idle_timeout` of traffic did not need (see
    /// `surplus`), never below `min_connections`; reports overdue loans. It yields every
    /// `SWEEP_STEP` connections, so that a spawned loop never holds its executor through a
    /// long queue.
    pub(crate) async fn sweep_in_steps(&self) {
        let mut sweep = Sweep::new(self);
        while sweep.step(self, SWEEP_STEP) {
            futures_lite::future::yield_now().await;
        }
        sweep.finish(self);
    }

    #[inline]
    pub(crate) fn stale_at(
        &self,
        entry: &Entry<F::Connection>,
        now: Millis,
    ) -> Option<DestroyReason> {
        if entry.is_expired(now) {
            Some(DestroyReason::Expired)
        } else if entry.generation != self.hot.generation.load(Ordering::Relaxed) {
            Some(DestroyReason::Evicted)
        } else {
            None
        }
    }

    /// Checks the connections idle now, one at a time, off the queue, each bounded by
    /// `check_timeout`: healthy ones go back (to a waiter first), unhealthy ones are destroyed and
    /// the creator replaces them on demand. No lock is held while a check runs, and acquirers
    /// never wait for one.
    pub(crate) async fn check_idle_health(&self) {
        let Some(health) = &self.health else {
            return;
        };
        for _ in 0..self.settle_idle() {
            if self.is_closed() {
                return;
            }
            let Some(entry) = self.pop_unlent() else {
                return;
            };
            // A panicking or hanging check leaves the guard to retire the connection.
            let mut guard = RetireOnDrop::new(self, entry, DestroyReason::Unhealthy);
            let started = Instant::now();
            let limit = self.config.check_timeout();
            let healthy = match guard.entry.as_mut() {
                Some(entry) => with_timeout(limit, health.is_healthy(&mut entry.conn))
                    .await
                    .unwrap_or(false),
                None => false,
            };
            // A healthy connection lent since its last reset is reset here, off every caller's
            // path, so that `try_acquire` (which cannot wait for a reset) can lend it.
            let scrubbed = match guard.entry.as_mut() {
                Some(entry) if healthy && entry.dirty => {
                    let reset = with_timeout(limit, health.reset(&mut entry.conn)).await;
                    // The reset may have undone what `on_connect` set up: run it again.
                    let hooked = match (&reset, &self.on_connect) {
                        (Ok(true), Some(hook)) if health.reset_cleared_session(&entry.conn) => {
                            let ran = with_timeout(limit, hook(&mut entry.conn)).await;
                            health.prepared(&mut entry.conn);
                            matches!(ran, Ok(Ok(())))
                        }
                        _ => true,
                    };
                    entry.dirty = reset != Ok(true) || !hooked;
                    !entry.dirty
                }
                _ => healthy,
            };
            Stats::count(&self.stats.health_checks);
            if !healthy {
                Stats::count(&self.stats.health_check_failures);
            }
            emit(&self.events, |h| {
                h.on_health_check(self.config.name(), healthy, started.elapsed())
            });
            if scrubbed {
                if let Some(entry) = guard.entry.take() {
                    self.push_idle(entry, Offer::Oldest);
                }
            }
            drop(guard);
            if !scrubbed {
                self.surplus.note(|| self.idle.len());
            }
            // One check per poll: a spawned loop never holds its executor through a pass.
            futures_lite::future::yield_now().await;
        }
        self.create_wanted.notify(1);
    }
}

/// How many idle connections a sweep looks at between yields.
const SWEEP_STEP: usize = 256;

/// One sweep in progress.
struct Sweep {
    now: Millis,
    idle_limit: Option<Millis>,
    /// Idle connections not yet looked at.
    left: usize,
    /// Connections to retire, beyond the per-connection rules, as surplus.
    surplus: usize,
    /// How many were retired as surplus.
    retired: usize,
}

impl Sweep {
    fn new<F: ConnectionFactory>(shared: &Shared<F>) -> Self {
        let now = shared.clock.precise();
        let idle_limit = shared.config.idle_timeout().map(Shared::<F>::millis);
        let left = shared.settle_idle();
        let surplus = match idle_limit {
            Some(window) => shared.surplus.close_window(now, window, left),
            None => 0,
        };
        Sweep {
            now,
            idle_limit,
            left,
            surplus,
            retired: 0,
        }
    }

    /// Looks at up to `budget` idle connections; `true` if more are left.
    fn step<F: ConnectionFactory>(&mut self, shared: &Shared<F>, budget: usize) -> bool {
        let min = shared.config.min_connections();
        for _ in 0..budget.min(self.left) {
            self.left -= 1;
            if shared.is_closed() {
                self.left = 0;
                return false;
            }
            let Some(entry) = shared.pop_unlent() else {
                self.left = 0;
                return false;
            };
            if let Some(reason) = shared.stale_at(&entry, self.now) {
                shared.retire(entry, reason);
                self.retired += 1;
                continue;
            }
            // The one popped counts as idle here: it is put back unless retired.
            let above_min = shared.idle_count() >= min;
            let idle_for = self.now.saturating_sub(entry.last_used_at);
            let too_long = self.idle_limit.is_some_and(|limit| idle_for >= limit);
            if above_min && (too_long || self.retired < self.surplus) {
                shared.retire(entry, DestroyReason::IdleTimeout);
                self.retired += 1;
                continue;
            }
            shared.push_idle(entry, Offer::Oldest);
        }
        self.left > 0
    }

    fn finish<F: ConnectionFactory>(self, shared: &Shared<F>) {
        shared.surplus.retired(self.retired);
        if let (Some(leaks), Some(threshold)) =
            (&shared.leaks, shared.config.leak_detection_threshold())
        {
            for (held, location) in leaks.overdue(self.now, Shared::<F>::millis(threshold)) {
                Stats::count(&shared.stats.leaks_reported);
                emit(&shared.events, |h| {
                    h.on_leak_suspected(shared.config.name(), Duration::from_millis(held), location)
                });
            }
        }
        shared.create_wanted.notify(1);
    }
}
