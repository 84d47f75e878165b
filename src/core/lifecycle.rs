//! The life of a connection outside the hot path: creating one in a reserved place, retiring
//! and destroying, eviction, resizing, the idle sweep, health checks, and closing.

use super::sync::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::EventListener;

use super::{
    CLOSED, CreateSlot, DestroyReason, Entry, GoneOnDrop, Interrupted, Millis, Offer, RetireOnDrop,
    SHRINK, Shared, Stats, WAITERS, with_timeout,
};
use crate::events::emit;
use crate::{ConfigError, ConnectionFactory, CreateError};

impl<F: ConnectionFactory> Shared<F> {
    // ----- creating -----------------------------------------------------------------------

    /// Reserves a place in `total` for a new connection, if there is room.
    ///
    /// `max` is read before the increment, so a `resize` lowering it in between would let the
    /// reservation through above the new `max`. Hence the second look, `SeqCst` like `resize`'s
    /// store and its load of `total`: either `resize` sees this place (and shrinks the pool as
    /// connections come back) or this look sees the new `max` and gives the place back. So
    /// `total` never exceeds the larger of the new `max` and what `resize` found (found by the
    /// fuzzer, threaded maintenance).
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<CreateSlot<F>> {
        let max = self.max();
        self.total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < max).then_some(t + 1)
            })
            .ok()?;
        let slot = CreateSlot {
            shared: Arc::clone(self),
            armed: true,
        };
        if self.total.load(Ordering::SeqCst) > self.max.load(Ordering::SeqCst) {
            // Dropping the slot gives the place back.
            return None;
        }
        Some(slot)
    }

    /// Whether the creator should start another create: waiters (all unserved: a served waiter
    /// is no longer counted) outnumber the creates that may still serve them (`fresh`, those not
    /// yet late), or idle connections plus every create in flight (`in_flight`, late ones too)
    /// are below `min_connections`.
    pub(crate) fn wants_create(&self, fresh: usize, in_flight: usize) -> bool {
        if self.is_closed() || self.total() >= self.max() {
            return false;
        }
        self.hot.gate.load(Ordering::SeqCst) & WAITERS > fresh
            || self.idle_count() + in_flight < self.config.min_connections()
    }

    /// Whether fewer than `min_connections` are idle and there is room for more.
    pub(crate) fn below_min_idle(&self) -> bool {
        let min = self.config.min_connections();
        min > 0 && !self.is_closed() && self.idle_count() < min && self.total() < self.max()
    }

    /// Tells the creator that a caller waits, if there is room for a new connection. At `max`
    /// there is none, and waking the creator on every contended acquire cost a wake-up of the
    /// maintenance thread each (seen with `perf` in `benches/contended.rs`); a place freed later
    /// wakes the creator itself (`connection_gone`, `resize`).
    ///
    /// `SeqCst`, with the waiter's count in `gate` before it and `connection_gone`'s decrement
    /// and the creator's look at `gate` (`wants_create`) after its wake-up: either this load
    /// sees the freed place, or the creator sees this waiter.
    pub(crate) fn signal_demand(&self) {
        if self.total.load(Ordering::SeqCst) < self.max() {
            self.create_wanted.notify(1);
        }
    }

    /// Makes one connection in a reserved place, bounded by `create_timeout`, and publishes it
    /// through the release path (to the oldest waiter, or idle).
    pub(crate) async fn create_one(
        &self,
        slot: CreateSlot<F>,
    ) -> Result<(), CreateError<F::Error>> {
        let started = Instant::now();
        let limit = self.config.create_timeout();
        // The hook is part of the create: one time bound for both, and its error is the
        // create's (the connection it could not prepare is closed).
        let made = async {
            let mut conn = self.factory.create().await?;
            if let Some(hook) = &self.on_connect {
                if let Err(err) = hook(&mut conn).await {
                    self.factory.destroy(conn).await;
                    return Err(err);
                }
                if let Some(health) = &self.health {
                    health.prepared(&mut conn);
                }
            }
            Ok(conn)
        };
        let failure = match with_timeout(limit, made).await {
            Ok(Ok(conn)) => {
                slot.fill();
                *self.lock_last_error() = None;
                let took = started.elapsed();
                Stats::count(&self.stats.created);
                self.stats.create.record(took);
                emit(&self.events, |h| h.on_created(self.config.name(), took));
                let entry = self.new_entry(conn);
                if self.is_closed() {
                    self.retire(entry, DestroyReason::Closed);
                } else {
                    self.push_idle(entry, Offer::Oldest);
                }
                return Ok(());
            }
            Ok(Err(err)) => CreateError::Failed(Arc::new(err)),
            Err(Interrupted::TimedOut) => CreateError::TimedOut(limit),
            Err(Interrupted::Panicked) => CreateError::Panicked,
        };
        drop(slot);
        Stats::count(&self.stats.create_failures);
        // The factory's own error when there is one (a handler can downcast it to the driver's
        // type); otherwise the `CreateError` that says the create timed out or panicked.
        emit(&self.events, |h| match &failure {
            CreateError::Failed(e) => h.on_create_failed(self.config.name(), e.as_ref()),
            other => h.on_create_failed(self.config.name(), other),
        });
        *self.lock_last_error() = Some(failure.clone());
        Err(failure)
    }

    /// Wraps a new connection, fixing its expiry now: `max_lifetime` shortened by a cut in
    /// `[0, max_lifetime_jitter)`.
    ///
    /// The cuts are not drawn independently: 20 connections made together with independent
    /// uniform cuts in a 1.5 s window (the old default for a 60 s lifetime) had 11 to 16 expire
    /// in the same second, and even in a wide window random cuts cluster by chance. Instead each
    /// create takes the next point of a golden-ratio (Weyl) sequence, `phase + n / φ` modulo 1:
    /// any run of `n` consecutive points, wherever it starts, splits the window into gaps no
    /// shorter than 0.44 and no longer than 1.9 times `window / n` (three-distance theorem), so a
    /// burst of creates is spread evenly however large it is, and connections made at different
    /// times keep spreading. A shared counter, so concurrent creates still take distinct points.
    fn new_entry(&self, conn: F::Connection) -> Entry<F::Connection> {
        /// 2^64 / φ: one step of the sequence, in units of 2^-64 of the window.
        const GOLDEN_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
        let now = self.clock.precise();
        let expires = match self.config.max_lifetime() {
            None => Millis::MAX,
            Some(life) => {
                let jitter = Self::millis(self.config.max_lifetime_jitter());
                let phase = self
                    .lifetime_phase
                    .fetch_add(GOLDEN_STEP, Ordering::Relaxed);
                // `jitter * phase / 2^64`: below `jitter`, so it fits a u64.
                let cut = ((u128::from(jitter) * u128::from(phase)) >> 64) as u64;
                now.saturating_add(Self::millis(life).saturating_sub(cut))
            }
        };
        let generation = self.hot.generation.load(Ordering::Acquire);
        Entry::new(conn, now, expires, generation)
    }

    fn lock_last_error(&self) -> super::sync::MutexGuard<'_, Option<CreateError<F::Error>>> {
        self.last_create_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Why the last create failed, cleared by the next successful one.
    pub(crate) fn last_create_error(&self) -> Option<CreateError<F::Error>> {
        self.lock_last_error().clone()
    }

    // ----- retiring and destroying ----------------------------------------------------------

    /// Hands a connection to the reaper to be destroyed off the caller's path. It keeps its
    /// place in `total` until destroyed.
    pub(crate) fn retire(&self, entry: Entry<F::Connection>, reason: DestroyReason) {
        match self.retiring.push((entry, reason)) {
            Ok(()) => {
                self.retired.notify(1);
            }
            Err((entry, _)) => {
                // The retiring queue holds the ceiling, so this cannot happen; drop rather than
                // leak the place.
                drop(entry);
                self.connection_gone();
            }
        }
    }

    /// Destroys one retiring connection, if any, bounded by `destroy_timeout` (past it the
    /// connection is dropped). Returns whether there was one.
    pub(crate) async fn destroy_one_retiring(&self) -> bool {
        let Some((entry, reason)) = self.retiring.pop() else {
            return false;
        };
        let _gone = GoneOnDrop { shared: self };
        // Timed out or panicked: the connection is dropped either way and its place freed.
        let _ = with_timeout(
            self.config.destroy_timeout(),
            self.factory.destroy(entry.into_conn()),
        )
        .await;
        self.stats.destroyed(reason);
        emit(&self.events, |h| h.on_destroyed(self.config.name(), reason));
        true
    }

    /// Connections waiting for the reaper.
    pub(crate) fn retiring_count(&self) -> usize {
        self.retiring.len()
    }

    /// Takes a connection out of the pool's accounts for good.
    pub(crate) fn detach(&self) {
        self.connection_gone();
    }

    /// A connection stopped counting: room for the creator, maybe the end of a shrink or close.
    pub(crate) fn connection_gone(&self) {
        let before = self.total.fetch_sub(1, Ordering::SeqCst);
        let gate = self.hot.gate.load(Ordering::SeqCst);
        if gate & SHRINK != 0 && before - 1 <= self.max() {
            self.hot.gate.fetch_and(!SHRINK, Ordering::AcqRel);
        }
        if gate & CLOSED != 0 {
            if before == 1 {
                self.drained.notify(usize::MAX);
                self.retired.notify(usize::MAX);
            }
        } else {
            self.create_wanted.notify(1);
        }
    }

    // ----- eviction and resizing --------------------------------------------------------------

    /// Marks every connection for replacement: idle ones are retired now, lent ones when they
    /// come back, and ones being handed over when their waiter takes them.
    pub(crate) fn evict_all(&self) {
        self.hot.generation.fetch_add(1, Ordering::AcqRel);
        for _ in 0..self.idle.len() {
            match self.idle.pop() {
                Some(entry) => self.retire_idle(entry, DestroyReason::Evicted),
                None => break,
            }
        }
        self.create_wanted.notify(1);
    }

    /// Changes `max_connections`. Lowering it retires idle connections now and returned ones
    /// until the pool fits; raising it lets waiters be served by new connections.
    pub(crate) fn resize(&self, max: usize) -> Result<(), ConfigError> {
        let ceiling = self.config.max_connections_ceiling();
        if max == 0 || max > ceiling {
            return Err(ConfigError::new(
                "max_connections",
                format!("must be between 1 and `max_connections_ceiling` ({ceiling}) (got {max})"),
            ));
        }
        if max < self.config.min_connections() {
            return Err(ConfigError::new(
                "max_connections",
                format!(
                    "must not be below `min_connections` ({max} < {})",
                    self.config.min_connections()
                ),
            ));
        }
        self.max.store(max, Ordering::SeqCst);
        // `SeqCst`, paired with `reserve`'s increment and second look.
        if self.total.load(Ordering::SeqCst) > max {
            self.hot.gate.fetch_or(SHRINK, Ordering::SeqCst);
            while self.shrink_one() {}
        }
        self.create_wanted.notify(1);
        Ok(())
    }

    /// Retires one idle connection if the pool is above `max`. Returns whether it did.
    pub(crate) fn shrink_one(&self) -> bool {
        let live = self.total().saturating_sub(self.retiring.len());
        if live <= self.max() {
            if self.total() <= self.max() {
                self.hot.gate.fetch_and(!SHRINK, Ordering::AcqRel);
            }
            return false;
        }
        match self.idle.pop() {
            Some(entry) => {
                self.retire_idle(entry, DestroyReason::Resized);
                true
            }
            None => false,
        }
    }

    // ----- housekeeping -----------------------------------------------------------------------

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
        for _ in 0..self.idle.len() {
            if self.is_closed() {
                return;
            }
            let Some(entry) = self.idle.pop() else {
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
                self.surplus.note(self.idle.len());
            }
            // One check per poll: a spawned loop never holds its executor through a pass.
            futures_lite::future::yield_now().await;
        }
        self.create_wanted.notify(1);
    }

    // ----- closing ----------------------------------------------------------------------------

    /// Closes the pool. Returns `false` if it was already closed.
    pub(crate) fn close(&self) -> bool {
        let before = self.hot.gate.fetch_or(CLOSED, Ordering::SeqCst);
        if before & CLOSED != 0 {
            return false;
        }
        self.wake_all_waiters();
        self.drain_idle(DestroyReason::Closed);
        if self.total.load(Ordering::SeqCst) == 0 {
            self.drained.notify(usize::MAX);
        }
        self.create_wanted.notify(usize::MAX);
        self.retired.notify(usize::MAX);
        self.housekeeping.notify(usize::MAX);
        self.closing.notify(usize::MAX);
        true
    }

    /// Ready once the pool is closed and every connection is gone. `listener` is the caller's
    /// slot for its listener between polls.
    pub(crate) fn poll_drained(
        &self,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            if self.is_closed() && self.total() == 0 {
                *listener = None;
                return Poll::Ready(());
            }
            match listener.as_mut() {
                None => *listener = Some(self.drained.listen()),
                Some(l) => {
                    if std::pin::Pin::new(l).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *listener = None;
                }
            }
        }
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
        let left = shared.idle.len();
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
            let Some(entry) = shared.idle.pop() else {
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
