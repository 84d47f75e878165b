//! Helpers for the tests of background maintenance and of stalls: a pool over the scripted
//! factory with an event recorder installed (`start`, `start_with`), a configuration with nothing
//! automatic (`base`), and what a failure message shows of a pool.

use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, ConnectionPoolConfigBuilder,
    DestroyReason, ManualClock, PoolError, PoolEventHandler, PooledConnection, TimeoutError,
};

use super::sync::lock;
use super::wait::{PATIENCE, wait_until, wait_until_state};
pub use super::{Error, Pool};
use super::{Op, Refused, Script, ScriptedFactory, quiet_scripted_panics};

pub type Conn<'a> = PooledConnection<'a, ScriptedFactory>;

/// How long a "nothing more happens" check watches.
pub const QUIET: Duration = Duration::from_millis(150);

/// What a failure message shows of a pool and its factory.
pub fn state(pool: &Pool, script: &Script) -> String {
    format!(
        "({:?}; live {:?}; calls create {} (running {}), destroy {} (running {}))",
        pool.current_metrics(),
        script.live_ids(),
        script.calls(Op::Create),
        script.running(Op::Create),
        script.calls(Op::Destroy),
        script.running(Op::Destroy),
    )
}

/// A configuration with nothing automatic: no minimum, no idle timeout, lifetime, health checks
/// or checkout validation, a generous acquire timeout and a short create backoff. Tests turn on
/// what they are about.
pub fn base(max: usize) -> ConnectionPoolConfigBuilder {
    ConnectionPoolConfig::builder()
        .name("maint")
        .max_connections(max)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .health_check_interval(None)
        .checkout_validation(CheckoutValidation::Never)
        .acquire_timeout(PATIENCE)
        .create_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

/// The events a pool reported.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Log>>);

#[derive(Default)]
pub struct Log {
    pub destroyed: Vec<DestroyReason>,
    pub health_checks: Vec<(bool, Duration)>,
    pub leaks: Vec<(Duration, &'static Location<'static>)>,
}

impl Events {
    pub fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.0)
    }
    pub fn destroyed(&self, reason: DestroyReason) -> usize {
        self.log()
            .destroyed
            .iter()
            .filter(|r| **r == reason)
            .count()
    }
    pub fn destroyed_total(&self) -> usize {
        self.log().destroyed.len()
    }
    pub fn failed_health_checks(&self) -> Vec<Duration> {
        let log = self.log();
        let failed = log.health_checks.iter().filter(|(ok, _)| !ok);
        failed.map(|(_, took)| *took).collect()
    }
    pub fn leaks(&self) -> Vec<(Duration, &'static Location<'static>)> {
        self.log().leaks.clone()
    }
}

impl PoolEventHandler for Events {
    fn on_destroyed(&self, _pool: &str, reason: DestroyReason) {
        self.log().destroyed.push(reason);
    }
    fn on_health_check(&self, _pool: &str, healthy: bool, took: Duration) {
        self.log().health_checks.push((healthy, took));
    }
    fn on_leak_suspected(&self, _pool: &str, held: Duration, at: &'static Location<'static>) {
        self.log().leaks.push((held, at));
    }
}

/// What a test builds its pool with, besides the configuration.
#[derive(Default)]
pub struct Options<'a> {
    pub health_check: bool,
    pub clock: Option<&'a ManualClock>,
}

/// Builds a pool over a fresh scripted factory (callbacks succeed until told otherwise), with
/// the event recorder installed.
pub fn start(config: ConnectionPoolConfig) -> (Pool, Arc<Script>, Events) {
    start_with(config, Options::default(), |_| {})
}

/// `start`, with options, scripting the factory before the pool exists.
pub fn start_with(
    config: ConnectionPoolConfig,
    options: Options<'_>,
    script_first: impl FnOnce(&Script),
) -> (Pool, Arc<Script>, Events) {
    quiet_scripted_panics();
    let (factory, script) = ScriptedFactory::new();
    script_first(&script);
    let events = Events::default();
    let mut builder = ConnectionPool::builder(factory)
        .config(config)
        .event_handler(events.clone());
    if options.health_check {
        builder = builder.health_check(script.health());
    }
    if let Some(clock) = options.clock {
        builder = builder.clock(clock.clone());
    }
    (builder.build().unwrap(), script, events)
}

pub fn with_health() -> Options<'static> {
    Options {
        health_check: true,
        clock: None,
    }
}

pub fn with_clock(clock: &ManualClock) -> Options<'_> {
    Options {
        health_check: false,
        clock: Some(clock),
    }
}

pub fn idle(pool: &Pool) -> usize {
    pool.current_metrics().idle
}

pub fn total(pool: &Pool) -> usize {
    pool.current_metrics().total
}

/// Asserts that `n` connections are idle, waiting out the instant in which the maintenance
/// thread's sweep or health check has one off the queue (it looks at them one at a time). A pool
/// that holds a different number fails after `PATIENCE`.
#[track_caller]
pub fn assert_idle(pool: &Pool, n: usize, why: &str) {
    wait_until_state(
        &format!("{n} are idle: {why}"),
        || idle(pool) == n,
        || format!("({:?})", pool.current_metrics()),
    );
}

#[track_caller]
pub fn expect_timeout<T: std::fmt::Debug>(result: Result<T, Error>) -> TimeoutError<Refused> {
    match result {
        Err(PoolError::Timeout(t)) => t,
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Makes `n` connections at the clock's current time and leaves them idle.
pub fn fill(pool: &Pool, n: usize) {
    let held: Vec<_> = (0..n).map(|_| pool.acquire_blocking().unwrap()).collect();
    drop(held);
    wait_until(&format!("{n} idle"), || idle(pool) == n);
}

/// A configuration with health checks every 20 ms, keeping `min` connections.
pub fn health_config(max: usize, min: usize) -> ConnectionPoolConfigBuilder {
    base(max)
        .min_connections(min)
        .health_check_interval(Duration::from_millis(20))
}
