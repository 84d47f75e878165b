//! Helpers for the tests of the wait queue (FIFO order and cancellation): a strict FIFO
//! configuration, hand-polled acquires, and the audit every scenario ends with,
//! [`assert_no_slot_lost`]: nobody is left waiting, the pool's `total` matches the factory's live
//! connections, and `max_connections` connections can be held at once.

use std::collections::BTreeSet;
use std::time::Duration;

use nexus_pool::{
    ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError, PooledConnection,
};

use super::facade::{Facade, acquire_via};
use super::polled::Polled;
use super::wait::{until_served, wait_until};
use super::{Refused, Script, ScriptedFactory};

pub type TestConn<'p> = PooledConnection<'p, ScriptedFactory>;
pub type TestResult<'p> = Result<TestConn<'p>, PoolError<Refused>>;
/// An acquire future polled by hand, like an executor would: only after its waker fired. Its
/// timer only takes effect when it is polled, so until then it stays queued however long the
/// test takes: that is what makes the scenarios independent of scheduling.
pub type Task<'p> = Polled<'p, TestResult<'p>>;

/// Strict first come, first served (`fairness_bound` zero): these tests check the order itself,
/// and that cancellation never breaks it. `tests/fairness.rs` covers the default bounded mode.
pub fn strict_config(max: usize, acquire_timeout: Duration) -> ConnectionPoolConfig {
    super::builder(max)
        .acquire_timeout(acquire_timeout)
        .fairness_bound(Duration::ZERO)
        .build()
        .unwrap()
}

/// Waits until `n` callers are counted as waiting.
#[track_caller]
pub fn wait_for_waiting<F: ConnectionFactory>(pool: &ConnectionPool<F>, n: usize) {
    wait_until(&format!("{n} callers are waiting"), || {
        pool.current_metrics().waiting == n
    });
}

/// Acquires via `facade`, retrying while it times out (for connections the maintenance thread
/// must create first, when the pool's `acquire_timeout` is short).
#[track_caller]
pub fn acquire_patiently<'p, F: ConnectionFactory>(
    pool: &'p ConnectionPool<F>,
    facade: Facade,
    what: &str,
) -> PooledConnection<'p, F> {
    until_served(what, || acquire_via(pool, facade))
}

/// The audit every scenario ends with: no waiter is left, `total` matches the factory's live
/// connections, `max_connections` connections can be held at once (idle ones taken with
/// `try_acquire`, the rest created), no more than that, and the factory never had more live.
#[track_caller]
pub fn assert_no_slot_lost(pool: &ConnectionPool<ScriptedFactory>, counts: &Script) {
    let max = pool.config().max_connections();
    wait_until("nobody waits", || pool.current_metrics().waiting == 0);
    wait_until("metrics.total == the factory's live connections", || {
        pool.current_metrics().total == counts.live()
    });
    let mut held = Vec::with_capacity(max);
    while held.len() < max {
        match pool.try_acquire() {
            Ok(conn) => held.push(conn),
            Err(PoolError::Exhausted) => break,
            Err(e) => panic!("try_acquire failed: {e}"),
        }
    }
    while held.len() < max {
        let what = format!(
            "slot lost? holding {} of {max} connections, metrics {:?}",
            held.len(),
            pool.current_metrics()
        );
        held.push(acquire_patiently(pool, Facade::Blocking, &what));
    }
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "more than max_connections connections could be held"
    );
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting),
        (max, 0, max, 0),
        "metrics while holding every connection: {m:?}"
    );
    assert_eq!(counts.live(), max, "the factory's live connections");
    assert!(
        counts.peak() <= max,
        "the factory had {} live connections at once, max is {max}",
        counts.peak()
    );
    drop(held);
    let m = pool.current_metrics();
    assert_eq!((m.total, m.idle, m.waiting), (max, max, 0), "{m:?}");
}

/// Queues a hand-polled acquire: the maintenance thread then starts a create for it, however
/// late that thread gets to run, and the demand lasts until the task is dropped.
pub fn queue_demand(pool: &ConnectionPool<ScriptedFactory>) -> Task<'_> {
    let mut task = Task::new(pool.acquire());
    assert!(task.poll().is_none(), "nothing is idle");
    task
}

/// Polls every pending task whose waker fired, in queue order; hands each connection obtained to
/// `served`. Returns whether any task was polled.
pub fn poll_woken<'p>(tasks: &mut [Task<'p>], mut served: impl FnMut(usize, TestConn<'p>)) -> bool {
    let mut polled = false;
    for (i, task) in tasks.iter_mut().enumerate() {
        if task.is_pending() && task.woken() {
            polled = true;
            match task.poll() {
                None => {}
                Some(Ok(conn)) => served(i, conn),
                Some(Err(e)) => panic!("future {i} failed: {e}"),
            }
        }
    }
    polled
}

/// What the victim of a cancellation sweep scenario was doing when it was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VictimWas {
    /// Queued, not woken.
    Queued,
    /// Woken (a connection was being handed to it) but not polled again.
    Woken,
    /// Served and holding its connection (dropping it releases the connection).
    Holding,
    /// Served and already released.
    Released,
}

/// `max_connections` in a cancellation sweep.
pub const SWEEP_MAX: usize = 2;
/// Acquire futures queued behind the held connections in each sweep scenario.
pub const SWEEP_FUTURES: usize = 5;
/// Rounds of "release one connection, poll the woken futures" per sweep scenario; each round has
/// two drop points (before and after the release), so a sweep has
/// `SWEEP_FUTURES * 2 * SWEEP_ROUNDS` scenarios.
pub const SWEEP_ROUNDS: usize = 6;

/// Runs `scenario(victim, drop_at)` for each of the `SWEEP_FUTURES` victims at each of the
/// `2 * SWEEP_ROUNDS` drop points, and checks that the sweep dropped a future in every state that
/// matters (queued, woken mid-handover, holding its connection).
pub fn sweep(mut scenario: impl FnMut(usize, usize) -> VictimWas) {
    let mut seen = BTreeSet::new();
    for k in 0..SWEEP_FUTURES * 2 * SWEEP_ROUNDS {
        seen.insert(scenario(k % SWEEP_FUTURES, k / SWEEP_FUTURES));
    }
    for needed in [VictimWas::Queued, VictimWas::Woken, VictimWas::Holding] {
        assert!(
            seen.contains(&needed),
            "the sweep never dropped a {needed:?} future"
        );
    }
}
