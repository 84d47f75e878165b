//! The test toolkit, one for every test binary (each says `mod common;` and uses a part of it):
//!
//! - [`factory`]: the one test factory and health check, scripted at run time (fail, hang, be
//!   slow, block, panic, wait at a gate), keeping ids, live connections and call counts; with
//!   [`pool`], [`builder`] and [`config`] to start a pool over it.
//! - [`maintenance`]: a scripted pool with an event recorder, for the tests of background
//!   maintenance and stalls.
//! - [`checks`]: a quiet pool's metrics, and destroys awaited until the pool has caught up.
//! - [`wait`]: the one bounded poll (`wait_until` and its variants), its `PATIENCE`, retrying an
//!   acquire through timeouts, and a watchdog for tests that could hang.
//! - [`sync`]: locks that shrug off poisoning (a failed test must not fail the next ones).
//! - [`facade`]: the two ways to acquire (`Facade`), where both facades are built.
//! - [`polled`]: futures polled by hand with counting wakers, so "woken" and "served" are
//!   observed, not raced.
//! - [`telemetry`]: a named pool, a handler that records every event, and the snapshot
//!   invariants, for the telemetry tests.
//! - [`tracker`]: checks that no connection is lent to two holders at once.
//! - [`queue`]: for the tests of the wait queue: strict FIFO, hand-polled acquires, and the
//!   audit that no place in the pool was lost.
//! - [`servers`]: which database servers to test against, skip lines, names and temp files.
//! - [`pg`] and [`redis_db`]: unpooled sessions and the like for the tests against PostgreSQL
//!   and Redis.
//! - [`faults`]: load, outage timing and a TCP proxy for the fault tests against PostgreSQL.
#![allow(dead_code)]

pub mod checks;
#[cfg(all(feature = "async", feature = "blocking"))]
pub mod facade;
pub mod factory;
#[cfg(all(feature = "postgres", feature = "blocking"))]
pub mod faults;
#[cfg(all(feature = "async", feature = "blocking"))]
pub mod maintenance;
pub mod pg;
pub mod polled;
#[cfg(all(feature = "async", feature = "blocking"))]
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis_db;
pub mod servers;
pub mod sync;
pub mod telemetry;
pub mod tracker;
pub mod wait;

// Each binary uses a part of these.
#[allow(unused_imports)]
pub use factory::{
    Behavior, Error, Op, Pool, Refused, Script, ScriptedConn, ScriptedFactory,
    quiet_scripted_panics,
};
#[allow(unused_imports)]
pub use wait::{PATIENCE, wait_until};

use std::sync::Arc;
use std::time::Duration;

use nexus_pool::{ConnectionPool, ConnectionPoolConfig, ConnectionPoolConfigBuilder};

/// An acquire timeout that never fires in a passing test.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(30);
/// An acquire timeout that is meant to fire.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(50);

/// A configuration of at most `max` connections and no minimum; the rest default.
pub fn builder(max: usize) -> ConnectionPoolConfigBuilder {
    ConnectionPoolConfig::builder()
        .max_connections(max)
        .min_connections(0)
}

/// [`builder`], built.
pub fn config(max: usize) -> ConnectionPoolConfig {
    builder(max).build().unwrap()
}

/// [`builder`] with `acquire_timeout`, built.
pub fn timed_config(max: usize, acquire_timeout: Duration) -> ConnectionPoolConfig {
    builder(max)
        .acquire_timeout(acquire_timeout)
        .build()
        .unwrap()
}

/// A pool over a fresh [`ScriptedFactory`] (every callback succeeds until told otherwise), and
/// its script.
pub fn pool(config: ConnectionPoolConfig) -> (ConnectionPool<ScriptedFactory>, Arc<Script>) {
    let (factory, script) = ScriptedFactory::new();
    (ConnectionPool::new(factory, config), script)
}

/// Keeps the panics whose message starts with `prefix` out of the test output: panics a test
/// raises on purpose, which the pool catches. Other panics print as usual.
pub fn quiet_panics_starting_with(prefix: &'static str) {
    static PREFIXES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    static HOOK: std::sync::Once = std::sync::Once::new();
    {
        let mut prefixes = sync::lock(&PREFIXES);
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !sync::lock(&PREFIXES).iter().any(|p| msg.starts_with(p)) {
                default(info);
            }
        }));
    });
}
