//! Places in `total`, the count of connections open, being created or being destroyed: reserving
//! one and creating a connection in it, retiring a connection to the reaper and destroying it,
//! giving a place back, and `resize`. `total` is at most `max`, except after `resize` lowered
//! `max` below what was open: then returned connections are retired (`SHRINK`, see `gate`) until
//! the pool fits.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use super::sync::Ordering;
use super::{DestroyReason, Entry, Interrupted, Millis, Offer, Shared, Stats, with_timeout};
use crate::events::emit;
use crate::{ConfigError, ConnectionFactory, CreateError};

impl<F: ConnectionFactory> Shared<F> {
    /// Reserves a place in `total` for a new connection, if there is room.
    ///
    /// `max` is read before the increment, so a `resize` lowering it in between would let the
    /// reservation through above the new `max`. Hence the second look, `SeqCst` like `resize`'s
    /// store and its load of `total`: either `resize` sees this place (and shrinks the pool as
    /// connections come back) or this look sees the new `max` and gives the place back. So
    /// `total` never exceeds the larger of the new `max` and what `resize` found (found by the
    /// fuzzer, threaded maintenance).
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<CreatePlace<F>> {
        let max = self.max();
        self.total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < max).then_some(t + 1)
            })
            .ok()?;
        let slot = Place::new(Arc::clone(self));
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
        self.hot.gate.look().waiters() > fresh
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
        slot: CreatePlace<F>,
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
                slot.keep();
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
        let _place = Place::new(self);
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

    /// A connection stopped counting: room for the creator, maybe the end of a shrink or close.
    pub(crate) fn connection_gone(&self) {
        let before = self.total.fetch_sub(1, Ordering::SeqCst);
        let gate = self.hot.gate.look();
        if gate.shrinking() && before - 1 <= self.max() {
            self.hot.gate.end_shrink();
        }
        if gate.closed() {
            if before == 1 {
                self.drained.notify(usize::MAX);
                self.retired.notify(usize::MAX);
            }
        } else {
            self.create_wanted.notify(1);
        }
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
            self.hot.gate.start_shrink();
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
                self.hot.gate.end_shrink();
            }
            return false;
        }
        match self.pop_unlent() {
            Some(entry) => {
                self.retire_idle(entry, DestroyReason::Resized);
                true
            }
            None => false,
        }
    }
}

/// A place in `total`: reserved for a connection being created, or held by one being destroyed.
/// Dropping it gives the place back (`connection_gone`: room for the creator, perhaps the end of
/// a shrink or a close), unless a created connection now `keep`s it. Generic over how it reaches
/// the pool, so a create can own an `Arc` and run on a thread of its own.
pub(crate) struct Place<F: ConnectionFactory, S: Deref<Target = Shared<F>>> {
    shared: S,
    /// Cleared once the place holds a connection.
    held: bool,
}

impl<F: ConnectionFactory, S: Deref<Target = Shared<F>>> Place<F, S> {
    fn new(shared: S) -> Self {
        Place { shared, held: true }
    }

    /// The place now holds a connection: keep it.
    pub(crate) fn keep(mut self) {
        self.held = false;
    }
}

impl<F: ConnectionFactory, S: Deref<Target = Shared<F>>> Drop for Place<F, S> {
    fn drop(&mut self) {
        if self.held {
            self.shared.connection_gone();
        }
    }
}

/// A place reserved for a create.
pub(crate) type CreatePlace<F> = Place<F, Arc<Shared<F>>>;

/// Holds a connection while a user callback runs on it; if the callback panics or its future is
/// dropped, the connection is retired (its state is unknown), never lost.
pub(crate) struct RetireOnDrop<'a, F: ConnectionFactory> {
    shared: &'a Shared<F>,
    pub(crate) entry: Option<Entry<F::Connection>>,
    pub(crate) reason: DestroyReason,
}

impl<'a, F: ConnectionFactory> RetireOnDrop<'a, F> {
    pub(crate) fn new(
        shared: &'a Shared<F>,
        entry: Entry<F::Connection>,
        reason: DestroyReason,
    ) -> Self {
        RetireOnDrop {
            shared,
            entry: Some(entry),
            reason,
        }
    }
}

impl<F: ConnectionFactory> Drop for RetireOnDrop<'_, F> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.retire(entry, self.reason);
        }
    }
}
