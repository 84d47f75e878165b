//! The test toolkit, one for every test binary (each says `mod common;` and uses a part of it):
//! a factory that counts live connections, the scripted factory, a filter that keeps the panics
//! a test raises on purpose out of its output, and these modules:
//!
//! - [`wait`]: the one bounded poll (`wait_until` and its variants) and its `PATIENCE`.
//! - [`sync`]: locks that shrug off poisoning (a failed test must not fail the next ones).
//! - [`servers`]: which database servers to test against, skip lines, names and temp files.
//! - [`pg`] and [`redis_db`]: unpooled sessions and the like for the tests against PostgreSQL
//!   and Redis.
//! - [`faults`]: load, outage timing and a TCP proxy for the fault tests against PostgreSQL.
#![allow(dead_code)]

#[cfg(all(feature = "postgres", feature = "blocking"))]
pub mod faults;
pub mod pg;
#[cfg(feature = "redis")]
pub mod redis_db;
pub mod scripted;
pub mod servers;
pub mod sync;
pub mod wait;

// Each binary uses a part of these.
#[allow(unused_imports)]
pub use wait::{PATIENCE, wait_until};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};

/// A connection: its serial number.
#[derive(Debug)]
pub struct Conn {
    pub id: usize,
}

/// Counts of what the factory did; shared with the test.
#[derive(Debug, Default)]
pub struct Counts {
    pub created: AtomicUsize,
    pub destroyed: AtomicUsize,
    /// Live connections: created and not yet destroyed or dropped. Tracked by `Conn`'s owner.
    pub live: AtomicUsize,
    /// The highest `live` ever seen.
    pub peak: AtomicUsize,
    pub validations: AtomicUsize,
    /// While set, `create` fails.
    pub fail_create: AtomicBool,
    /// While set, `validate` says no.
    pub fail_validate: AtomicBool,
}

impl Counts {
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }
    pub fn destroyed(&self) -> usize {
        self.destroyed.load(Ordering::SeqCst)
    }
}

/// A factory whose behaviour the test scripts through `Counts`.
#[derive(Clone, Default)]
pub struct TestFactory {
    pub counts: Arc<Counts>,
}

#[derive(Debug, thiserror::Error)]
#[error("scripted create failure #{0}")]
pub struct CreateFailed(pub usize);

impl ConnectionFactory for TestFactory {
    type Connection = Conn;
    type Error = CreateFailed;

    async fn create(&self) -> Result<Conn, CreateFailed> {
        let id = self.counts.created.fetch_add(1, Ordering::SeqCst);
        if self.counts.fail_create.load(Ordering::SeqCst) {
            return Err(CreateFailed(id));
        }
        let live = self.counts.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.counts.peak.fetch_max(live, Ordering::SeqCst);
        Ok(Conn { id })
    }

    async fn destroy(&self, _conn: Conn) {
        self.counts.destroyed.fetch_add(1, Ordering::SeqCst);
        self.counts.live.fetch_sub(1, Ordering::SeqCst);
    }

    async fn validate(&self, _conn: &mut Conn) -> bool {
        self.counts.validations.fetch_add(1, Ordering::SeqCst);
        !self.counts.fail_validate.load(Ordering::SeqCst)
    }
}

pub fn config(max: usize) -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(max)
        .min_connections(0)
        .build()
        .unwrap()
}

pub fn pool(config: ConnectionPoolConfig) -> (ConnectionPool<TestFactory>, Arc<Counts>) {
    let factory = TestFactory::default();
    let counts = factory.counts.clone();
    (ConnectionPool::new(factory, config), counts)
}

/// Keeps the panics whose message starts with `prefix` out of the test output: panics a test
/// raises on purpose, which the pool catches. Other panics print as usual.
pub fn quiet_panics_starting_with(prefix: &'static str) {
    static PREFIXES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    static HOOK: std::sync::Once = std::sync::Once::new();
    let lock = || PREFIXES.lock().unwrap_or_else(|p| p.into_inner());
    {
        let mut prefixes = lock();
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
            if !lock().iter().any(|p| msg.starts_with(p)) {
                default(info);
            }
        }));
    });
}
