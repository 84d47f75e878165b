//! Helpers for `tests/pg_faults.rs`: a load that checks every answer, outage timing, and a
//! TCP proxy that can go silent.
#![allow(dead_code)]

pub mod load;
pub mod outage;
pub mod proxy;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::adapter_support::eventually;

/// Locks `m`, even if a thread that held it panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Joins `threads`, passing on a panic; fails if one still runs after `limit` (a call that hung:
/// the thread is left behind so that the test ends).
pub fn join_within(threads: Vec<JoinHandle<()>>, limit: Duration, what: &str) {
    assert!(
        eventually(limit, || threads.iter().all(JoinHandle::is_finished)),
        "{what}: still running after {limit:?}, a call hung"
    );
    for thread in threads {
        thread.join().expect("a test thread panicked");
    }
}
