//! Shrinking after a burst: which idle connections the traffic has not needed for a whole
//! `idle_timeout`.
//!
//! Idle connections behind the idle queue's slot rotate first-in first-out (see `idle_queue`), so
//! under steady traffic that overlaps itself every one of them is lent again before it has been
//! idle for `idle_timeout`, and the per-connection rule alone would keep a burst's connections for
//! ever. So the pool also tracks the low-water mark of the
//! idle queue: the fewest connections idle at any instant. Each sweep closes a sub-window
//! (recording its low-water mark) and opens the next; when the sub-windows recorded cover a
//! whole `idle_timeout`, the smallest of their marks is the number of connections that stayed
//! idle throughout, unneeded by the traffic, and that many (down to `min_connections`) are
//! retired, those returned longest ago first.
//!
//! Invariant: `low` is never above the number of connections idle since the current sub-window
//! opened. Lending pops lower it (`note`), and so do idle connections retired outside a sweep
//! (eviction, shrinking, a failed health check: `Shared::retire_idle`); a sweep resets it to the
//! idle count when it opens a sub-window and takes off what it retired (`retired`). Pops that put
//! the connection back (a sweep's or a health pass's own) do not count, so a connection being
//! checked is not mistaken for one in use. A racing lend may lower it a little
//! late; the cost is at most one connection retired early, made again on demand.

use std::collections::VecDeque;

use super::Millis;
use super::sync::{AtomicUsize, Mutex, Ordering};

/// The low-water mark of the idle queue, and the marks of the recent sub-windows.
#[derive(Debug)]
pub(crate) struct Surplus {
    /// The fewest connections idle since the current sub-window opened.
    low: AtomicUsize,
    /// Closed sub-windows, oldest first: when each opened and its low-water mark.
    windows: Mutex<VecDeque<(Millis, usize)>>,
    /// When the current sub-window opened.
    opened: Mutex<Millis>,
}

impl Surplus {
    pub(crate) fn new() -> Self {
        Surplus {
            low: AtomicUsize::new(0),
            windows: Mutex::new(VecDeque::new()),
            opened: Mutex::new(0),
        }
    }

    /// A lend left `idle_now()` connections idle. The count is taken only while the mark can
    /// still come down: under contention the queue empties and the mark sits at 0 until the
    /// next sweep, and counting reads the queue's tail, the cache line every release writes
    /// (perf showed the idle queue's two lines as half of a contended cycle).
    #[inline(always)]
    pub(crate) fn note(&self, idle_now: impl FnOnce() -> usize) {
        let low = self.low.load(Ordering::Relaxed);
        if low == 0 {
            return;
        }
        let idle_now = idle_now();
        if idle_now < low {
            self.low.fetch_min(idle_now, Ordering::Relaxed);
        }
    }

    /// Closes the current sub-window at `now` and opens the next with `idle_now` idle. Returns
    /// how many connections stayed idle through the whole of the last `window` (0 until the
    /// recorded sub-windows cover it). The caller retires that many (or fewer) and reports it
    /// with `retired`.
    pub(crate) fn close_window(&self, now: Millis, window: Millis, idle_now: usize) -> usize {
        let low = self.low.swap(idle_now, Ordering::Relaxed).min(idle_now);
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.push_back((*opened, low));
        *opened = now;
        let since = now.saturating_sub(window);
        // Keep the newest sub-windows that still cover `since`; older ones are of no use.
        while windows.len() > 1 && windows[1].0 <= since {
            windows.pop_front();
        }
        match windows.front() {
            Some(&(start, _)) if start <= since => windows.iter().map(|w| w.1).min().unwrap_or(0),
            _ => 0,
        }
    }

    /// `n` connections that counted in every recorded mark were retired.
    pub(crate) fn retired(&self, n: usize) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for w in windows.iter_mut() {
            w.1 = w.1.saturating_sub(n);
        }
        drop(windows);
        let _ = self
            .low
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(n))
            });
    }
}
