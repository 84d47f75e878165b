//! Helpers for the fault tests against PostgreSQL (`tests/pg_faults.rs`): a load that checks
//! every answer, outage timing, and a TCP proxy that can go silent.

pub mod load;
pub mod outage;
pub mod proxy;

use std::thread::JoinHandle;
use std::time::Duration;

use super::wait::eventually;

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
