//! Futures polled by hand, as an executor would, with wakers that count: a test observes "woken"
//! and "served" instead of racing them. A hand-polled future's timer only takes effect when it is
//! polled, so until then it stays queued however long the test takes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts its wake-ups.
#[derive(Debug, Default)]
pub struct WakeCounter(AtomicUsize);

impl WakeCounter {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future polled by hand with a [`WakeCounter`]; dropping `fut` (setting it to `None`) cancels
/// it where it stands.
pub struct Polled<'a, T> {
    pub fut: Option<Pin<Box<dyn Future<Output = T> + 'a>>>,
    pub wakes: Arc<WakeCounter>,
    waker: Waker,
    /// `wakes` when it was last polled.
    seen: usize,
}

impl<'a, T> Polled<'a, T> {
    pub fn new(fut: impl Future<Output = T> + 'a) -> Self {
        let wakes = Arc::new(WakeCounter::default());
        Polled {
            fut: Some(Box::pin(fut)),
            waker: Waker::from(wakes.clone()),
            wakes,
            seen: 0,
        }
    }

    /// Whether it has neither completed nor been dropped.
    pub fn is_pending(&self) -> bool {
        self.fut.is_some()
    }

    /// Whether the waker fired since the last poll.
    pub fn woken(&self) -> bool {
        self.wakes.count() != self.seen
    }

    /// How often the waker fired in all.
    pub fn wake_count(&self) -> usize {
        self.wakes.count()
    }

    /// Polls once; `Some` (and the future is gone) when it completed.
    pub fn poll(&mut self) -> Option<T> {
        let fut = self.fut.as_mut()?;
        self.seen = self.wakes.count();
        match fut.as_mut().poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(result) => {
                self.fut = None;
                Some(result)
            }
            Poll::Pending => None,
        }
    }
}
