//! The core's synchronisation primitives, swapped for loom's under `cfg(loom)` so that loom
//! explores every interleaving of the pool's atomics, locks and queues (see `tests/loom.rs`).
//!
//! `crossbeam_queue::ArrayQueue` has no loom mode, so under loom it is replaced by a stand-in
//! with the same interface built on a loom `Mutex<VecDeque>`: each push or pop is one atomic step,
//! as the real queue's are linearizable, and loom sees and permutes them.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue;

#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom_queue::ArrayQueue;

/// Timers: async-io's, which run under any executor or none.
#[cfg(not(loom))]
pub(crate) use async_io::Timer;

/// Under loom time does not pass, so a timer never fires (and async-io has no loom mode).
#[cfg(loom)]
pub(crate) use loom_timer::Timer;

#[cfg(loom)]
mod loom_timer {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub(crate) struct Timer;

    impl Timer {
        pub(crate) fn at(_: Instant) -> Self {
            Timer
        }

        pub(crate) fn after(_: Duration) -> Self {
            Timer
        }

        pub(crate) fn set_at(&mut self, _: Instant) {}
    }

    impl Future for Timer {
        type Output = Instant;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Instant> {
            Poll::Pending
        }
    }
}

#[cfg(loom)]
mod loom_queue {
    use std::collections::VecDeque;

    use loom::sync::Mutex;

    /// A bounded FIFO queue with `crossbeam_queue::ArrayQueue`'s interface, visible to loom.
    #[derive(Debug)]
    pub(crate) struct ArrayQueue<T> {
        cap: usize,
        items: Mutex<VecDeque<T>>,
    }

    impl<T> ArrayQueue<T> {
        pub(crate) fn new(cap: usize) -> Self {
            ArrayQueue {
                cap,
                items: Mutex::new(VecDeque::with_capacity(cap)),
            }
        }

        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            let mut items = self.items.lock().unwrap();
            if items.len() == self.cap {
                return Err(value);
            }
            items.push_back(value);
            Ok(())
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop_front()
        }

        pub(crate) fn len(&self) -> usize {
            self.items.lock().unwrap().len()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.items.lock().unwrap().is_empty()
        }
    }
}
