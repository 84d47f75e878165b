//! Waiting for what another thread (or the maintenance loop) does: one bounded poll, which fails
//! naming what it waited for, and never a sleep that races.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nexus_pool::PoolError;

/// The longest a `wait_until` waits: far above what the awaited event takes, so reaching it means
/// the event is not coming (on a loaded machine threads were seen to stall for a second).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often [`wait_until`] looks.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// How often [`eventually`] looks: its conditions ask a server.
const SERVER_POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `cond` every `every` until it holds or `limit` passes; returns whether it held.
pub fn poll_every(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

/// Polls `cond` until it holds; panics naming `what` if it does not within [`PATIENCE`].
#[track_caller]
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_state(what, cond, String::new);
}

/// [`wait_until`], adding `state()` (what the test can see) to the failure message.
#[track_caller]
pub fn wait_until_state(what: &str, cond: impl FnMut() -> bool, state: impl Fn() -> String) {
    assert!(
        poll_every(PATIENCE, POLL_EVERY, cond),
        "gave up after {PATIENCE:?} waiting until {what} {}",
        state()
    );
}

/// Polls `cond` (every 10 ms: it may ask a server) until it holds or `limit` passes; returns
/// whether it held.
pub fn eventually(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_every(limit, SERVER_POLL_EVERY, cond)
}

/// [`eventually`], failing the test with `what` if `cond` does not hold within `limit`.
#[track_caller]
pub fn wait_within(limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(eventually(limit, cond), "not within {limit:?}: {what}");
}

/// [`wait_until`] for async code: polls `cond` on an `async-io` timer (any executor, or none)
/// until it holds, failing after [`PATIENCE`].
pub async fn wait_until_async(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {PATIENCE:?} waiting until {what}"
        );
        async_io::Timer::after(POLL_EVERY).await;
    }
}

/// Runs `acquire` until it returns a connection, retrying while it times out (on a loaded
/// machine a thread may sleep through a short `acquire_timeout`, or the maintenance thread may be
/// late to create the connection); fails naming `what` after [`PATIENCE`] or on any other error.
#[track_caller]
pub fn until_served<T, E: std::fmt::Display>(
    what: &str,
    mut acquire: impl FnMut() -> Result<T, PoolError<E>>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match acquire() {
            Ok(conn) => return conn,
            Err(PoolError::Timeout(t)) if Instant::now() < deadline => drop(t),
            Err(e) => panic!("{what}: no connection within {PATIENCE:?}: {e}"),
        }
    }
}

/// Aborts the process if the test is still running after its limit: a test that hangs (a
/// `close` that never completes, a thread that is never woken) fails loudly instead of stalling
/// the suite. Disarmed when dropped, at the end of the test or while it unwinds.
#[must_use]
pub struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

/// How long a test may run under [`watchdog`].
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Arms a [`Watchdog`] for [`WATCHDOG`].
pub fn watchdog() -> Watchdog {
    watchdog_for(WATCHDOG, "")
}

/// Arms a [`Watchdog`] for `limit`; its message names the test (the current thread) and `note`.
pub fn watchdog_for(limit: Duration, note: &str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let name = thread::current().name().unwrap_or("?").to_owned();
    let note = note.to_owned();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("test {name} hung for {limit:?}{note}: aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}
