//! Closing: `close` sets `CLOSED` (see `gate`), wakes every waiter and the maintenance loop,
//! and retires what is idle; connections on loan are retired as they come back, and
//! `close().await` waits until `total` reaches zero.

use std::task::{Context, Poll};

use event_listener::EventListener;

use super::sync::Ordering;
use super::{DestroyReason, Shared};
use crate::ConnectionFactory;

impl<F: ConnectionFactory> Shared<F> {
    /// Closes the pool. Returns `false` if it was already closed.
    pub(crate) fn close(&self) -> bool {
        if !self.hot.gate.close() {
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
