//! The pool's clock: a coarse "now" that costs one atomic load on the hot path.
//!
//! Reading the system clock costs about as much as a whole idle-queue round trip, and the hot
//! path needs the time twice (expiry and validation on checkout, last use on return). So the
//! pool keeps the time in an atomic, in milliseconds since the pool was built, and the
//! maintenance loop refreshes it every `TICK` while the pool is in use.
//!
//! Invariant: while `ticking` is set, the maintenance loop refreshes `millis` every `TICK`, so a
//! reader's value is at most about one `TICK` old. A reader that finds `ticking` clear refreshes
//! `millis` from the system clock itself, sets `ticking` and wakes the loop. Readers also set
//! `read` (a load first, so the line is written once per tick, not once per read); the loop
//! clears `read` on each tick and stops ticking, clearing `ticking`, after a tick in which
//! nobody read the clock.

use super::sync::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

/// How often the maintenance loop refreshes the coarse time while the pool is busy.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A point in the pool's time: milliseconds since the pool's origin.
pub(crate) type Millis = u64;

#[derive(Debug)]
pub(crate) struct Clock {
    origin: Instant,
    now: CachePadded<Now>,
    /// Set for a pool driven by a [`ManualClock`]: then time moves only when the test says.
    manual: Option<Arc<AtomicU64>>,
}

/// A clock that moves only when told to, for testing time-dependent behaviour (idle timeout,
/// lifetime, leak detection, validation windows) without sleeping.
///
/// Give it to a pool with
/// [`ConnectionPoolBuilder::clock`](crate::ConnectionPoolBuilder::clock). The pool reads its
/// time from it for every connection-age decision; timeouts of waits and callbacks still use
/// real time, so a test never hangs on a clock nobody advances.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nexus_pool::ManualClock;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.elapsed(), Duration::from_secs(90));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ManualClock::new().elapsed(), std::time::Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (millisecond resolution).
    ///
    /// # Examples
    ///
    /// ```
    /// let clock = nexus_pool::ManualClock::new();
    /// clock.advance(std::time::Duration::from_millis(1500));
    /// assert_eq!(clock.elapsed().as_millis(), 1500);
    /// ```
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(millis(by), Ordering::SeqCst);
    }

    /// How far the clock has been moved.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(nexus_pool::ManualClock::new().elapsed().as_secs(), 0);
    /// ```
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
struct Now {
    millis: AtomicU64,
    ticking: AtomicBool,
    read: AtomicBool,
}

impl Clock {
    pub(crate) fn new(manual: Option<ManualClock>) -> Self {
        Clock {
            manual: manual.map(|m| m.millis),
            origin: Instant::now(),
            now: CachePadded::new(Now {
                millis: AtomicU64::new(0),
                ticking: AtomicBool::new(false),
                read: AtomicBool::new(false),
            }),
        }
    }

    /// The coarse time. Returns `(now, woke)`: `woke` is true when the caller found the ticker
    /// idle and must wake the maintenance loop.
    #[inline]
    pub(crate) fn now(&self) -> (Millis, bool) {
        // A manual clock never sets `ticking`, so it is looked at only on this cold branch.
        if !self.now.ticking.load(Ordering::Relaxed) {
            return self.refresh_and_start();
        }
        if !self.now.read.load(Ordering::Relaxed) {
            self.now.read.store(true, Ordering::Relaxed);
        }
        (self.now.millis.load(Ordering::Relaxed), false)
    }

    #[cold]
    fn refresh_and_start(&self) -> (Millis, bool) {
        if let Some(manual) = &self.manual {
            return (manual.load(Ordering::Relaxed), false);
        }
        let now = self.precise();
        self.now.millis.fetch_max(now, Ordering::Relaxed);
        self.now.read.store(true, Ordering::Relaxed);
        self.now.ticking.store(true, Ordering::Relaxed);
        (now, true)
    }

    /// One tick of the maintenance loop: refresh, and say whether to keep ticking (someone read
    /// the clock since the last tick). When it says no, readers restart it.
    pub(crate) fn tick(&self) -> bool {
        if self.manual.is_some() {
            return false;
        }
        self.now.millis.fetch_max(self.precise(), Ordering::Relaxed);
        let keep = self.now.read.swap(false, Ordering::Relaxed);
        if !keep {
            self.now.ticking.store(false, Ordering::Relaxed);
        }
        keep
    }

    /// Whether a reader asked for ticks.
    pub(crate) fn is_ticking(&self) -> bool {
        self.now.ticking.load(Ordering::Relaxed)
    }

    /// The system clock, in the pool's milliseconds.
    pub(crate) fn precise(&self) -> Millis {
        if let Some(manual) = &self.manual {
            return manual.load(Ordering::Relaxed);
        }
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Converts the pool's milliseconds to an `Instant`.
    pub(crate) fn instant(&self, at: Millis) -> Instant {
        self.origin + Duration::from_millis(at)
    }
}

/// Converts a duration to the pool's milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
