//! Runs one blocking call on a helper thread and awaits its result without blocking the thread
//! that polls.
//!
//! The pool bounds every callback by dropping its future at a deadline (`create_timeout`,
//! `destroy_timeout`). A blocking client does its I/O inside `poll`, where no deadline can reach
//! it: on a peer that stopped answering (a hung server, a black-holed network) the call blocks
//! until the operating system gives up on the socket, and with it whatever polls the future (a
//! worker thread of the pool's, or a thread of the executor a spawned maintenance future runs
//! on), while the create keeps its place in the pool past `create_timeout`. Moved to a helper
//! thread, the call only keeps that helper busy; the future returns `Pending` while it runs, so
//! the pool's timers work, and dropping the future abandons the call: the helper finishes it
//! alone and drops its result.
//!
//! A thread per call is cheap next to what these calls do (a TCP connect and an authentication
//! exchange, a goodbye to the server), and they never run on an acquiring caller's path.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use event_listener::Event;

/// Where the helper leaves its result.
struct Slot<T> {
    /// The call's result, or its panic, once the helper is done.
    result: Mutex<Option<thread::Result<T>>>,
    /// Notified once `result` is set.
    ready: Event,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, Option<thread::Result<T>>> {
        self.result.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `call` on a new thread named `name` and resolves to its result; a panic in `call` is
/// resumed here. If no thread can be started, `call` runs on the polling thread instead.
pub(crate) async fn run<T, C>(name: &str, call: C) -> T
where
    T: Send + 'static,
    C: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Slot {
        result: Mutex::new(None),
        ready: Event::new(),
    });
    // Shared so that the call can be taken back if the thread does not start.
    let job = Arc::new(Mutex::new(Some(call)));
    let spawned = {
        let (slot, job) = (slot.clone(), job.clone());
        thread::Builder::new().name(name.to_owned()).spawn(move || {
            let call = job.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(call) = call {
                let result = panic::catch_unwind(AssertUnwindSafe(call));
                *slot.lock() = Some(result);
                slot.ready.notify(usize::MAX);
            }
        })
    };
    if spawned.is_err() {
        let call = job.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(call) = call {
            return call();
        }
    }
    loop {
        if let Some(result) = slot.lock().take() {
            return result.unwrap_or_else(|payload| panic::resume_unwind(payload));
        }
        let listener = slot.ready.listen();
        // Listen, then look again: the helper may have finished in between.
        if let Some(result) = slot.lock().take() {
            return result.unwrap_or_else(|payload| panic::resume_unwind(payload));
        }
        listener.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::run;

    #[test]
    fn returns_the_result() {
        assert_eq!(futures_lite::future::block_on(run("t", || 6 * 7)), 42);
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            futures_lite::future::block_on(run("t", || -> u8 { panic!("boom") }))
        });
        assert!(caught.is_err());
    }

    #[test]
    fn a_blocked_call_does_not_block_the_poller() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        let raced = futures_lite::future::block_on(futures_lite::future::or(
            async {
                // Blocks its thread until the sender is dropped.
                run("t", move || rx.recv().is_err()).await;
                false
            },
            async {
                async_io::Timer::after(Duration::from_millis(20)).await;
                true
            },
        ));
        assert!(raced, "the timer won while the call was blocked");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(tx); // lets the abandoned helper finish
    }
}
