//! The pool through its public API: scopes (named pools), configuration validation,
//! `try_acquire`, and the metrics snapshot.
//!
//! Each behaviour reachable from both facades is tested twice: `name` drives the async facade
//! (`acquire().await` under `futures_lite::future::block_on`), `name_blocking` the blocking one.
//! FIFO order and cancellation are covered by `tests/fifo_*.rs`; executors by
//! `tests/runtimes.rs`.
//!
//! No test sleeps to win a race: whatever happens on another thread (the maintenance loop
//! destroying a connection, a waiter registering) is awaited with `wait_until`, a bounded poll
//! that fails with a message naming what it waited for.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::checks::{assert_metrics, wait_destroyed};
use common::wait::watchdog;
use common::{Error, Pool, Script, builder, wait_until};
use futures_lite::future::block_on;
use nexus_pool::{ConnectionPoolConfig, ConnectionScope, MAX_CONNECTIONS_LIMIT, PoolError};

// ----- scopes -----------------------------------------------------------------------------

fn named(name: &str) -> (Pool, Arc<Script>) {
    common::pool(builder(2).name(name).build().unwrap())
}

fn pool_names(scope: &ConnectionScope) -> Vec<String> {
    scope.held().into_iter().map(|h| h.pool).collect()
}

#[test]
fn scope_tracks_two_pools() {
    let _watchdog = watchdog();
    let (orders, orders_counts) = named("orders");
    let (users, users_counts) = named("users");
    let scope = ConnectionScope::new();
    assert!(scope.is_empty());
    block_on(async {
        let before = Instant::now();
        let a = scope.acquire(&orders).await.unwrap();
        let b = scope.acquire(&users).await.unwrap();
        let c = scope.acquire(&orders).await.unwrap();
        assert_eq!(pool_names(&scope), ["orders", "users", "orders"]);
        assert_eq!(scope.len(), 3);
        assert!(scope.held().iter().all(|h| h.acquired_at >= before));
        assert_eq!((a.id, b.id, c.id), (0, 0, 1));
        assert_eq!(a.use_count(), 1, "derefs to the pool's guard");
        drop(a);
        assert_eq!(pool_names(&scope), ["users", "orders"]);
        assert_eq!(orders.current_metrics().idle, 1, "released to its pool");
        drop((b, c));
    });
    assert!(scope.is_empty());
    assert_metrics(&orders, 2, 2, 0);
    assert_metrics(&users, 1, 1, 0);
    assert_eq!((orders_counts.created(), users_counts.created()), (2, 1));
}

#[test]
fn scope_tracks_two_pools_blocking() {
    let _watchdog = watchdog();
    let (orders, _) = named("orders");
    let (users, _) = named("users");
    let scope = ConnectionScope::new();
    {
        let mut a = scope.acquire_blocking(&orders).unwrap();
        let b = scope.acquire_blocking(&users).unwrap();
        assert_eq!(pool_names(&scope), ["orders", "users"]);
        a.mark_broken(); // DerefMut to the pool's guard
        drop(b);
        assert_eq!(pool_names(&scope), ["orders"]);
        assert_metrics(&users, 1, 1, 0);
        assert_metrics(&orders, 1, 0, 0);
    }
    assert!(scope.is_empty());
    assert_eq!(scope.len(), 0);
    wait_until("the broken connection is destroyed", || {
        orders.current_metrics().total == 0
    });
}

#[test]
fn scope_failed_acquire_tracks_nothing() {
    let _watchdog = watchdog();
    let (pool, _) = named("orders");
    pool.close_now();
    let scope = ConnectionScope::new();
    assert!(matches!(
        scope.acquire_blocking(&pool),
        Err(PoolError::Closed)
    ));
    assert!(matches!(
        block_on(scope.acquire(&pool)),
        Err(PoolError::Closed)
    ));
    assert!(scope.is_empty());
}

// ----- configuration ----------------------------------------------------------------------

#[track_caller]
fn refused(builder: nexus_pool::ConnectionPoolConfigBuilder, field: &str) {
    let err = builder
        .build()
        .expect_err("an invalid configuration was accepted");
    assert_eq!(err.field(), field, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{field}`")),
        "{text:?} names the field"
    );
}

#[test]
fn config_refuses_invalid_values() {
    let _watchdog = watchdog();
    let b = ConnectionPoolConfig::builder;
    let zero = Duration::ZERO;
    let sec = Duration::from_secs(1);
    refused(b().max_connections(0), "max_connections");
    refused(
        b().max_connections(MAX_CONNECTIONS_LIMIT + 1),
        "max_connections",
    );
    refused(b().max_connections(usize::MAX), "max_connections");
    refused(b().min_connections(5).max_connections(4), "min_connections");
    refused(b().acquire_timeout(zero), "acquire_timeout");
    refused(b().idle_timeout(zero), "idle_timeout");
    refused(b().max_lifetime(zero), "max_lifetime");
    refused(b().health_check_interval(zero), "health_check_interval");
    refused(b().idle_timeout(sec).max_lifetime(sec), "idle_timeout");
    refused(b().idle_timeout(2 * sec).max_lifetime(sec), "idle_timeout");
    refused(b().name(""), "name");
    refused(b().create_timeout(zero), "create_timeout");
    refused(b().check_timeout(zero), "check_timeout");
    refused(b().destroy_timeout(zero), "destroy_timeout");
    refused(
        b().leak_detection_threshold(zero),
        "leak_detection_threshold",
    );
    refused(b().max_concurrent_creates(0), "max_concurrent_creates");
    refused(b().create_backoff(zero, sec), "create_backoff");
    refused(b().create_backoff(2 * sec, sec), "create_backoff");
    refused(
        b().max_lifetime(sec).max_lifetime_jitter(sec),
        "max_lifetime_jitter",
    );
    refused(
        b().max_connections(4).max_connections_ceiling(3),
        "max_connections_ceiling",
    );
    refused(
        b().max_connections_ceiling(MAX_CONNECTIONS_LIMIT + 1),
        "max_connections_ceiling",
    );
}

#[test]
fn config_accepts_edge_values() {
    let _watchdog = watchdog();
    let b = ConnectionPoolConfig::builder;
    let sec = Duration::from_secs(1);
    let c = b().max_connections(MAX_CONNECTIONS_LIMIT).build().unwrap();
    assert_eq!(c.max_connections(), MAX_CONNECTIONS_LIMIT);
    let c = b().min_connections(3).max_connections(3).build().unwrap();
    assert_eq!((c.min_connections(), c.max_connections()), (3, 3));
    let c = b().idle_timeout(None).max_lifetime(sec).build().unwrap();
    assert_eq!((c.idle_timeout(), c.max_lifetime()), (None, Some(sec)));
    let c = b()
        .idle_timeout(2 * sec)
        .max_lifetime(None)
        .build()
        .unwrap();
    assert_eq!((c.idle_timeout(), c.max_lifetime()), (Some(2 * sec), None));
    let c = b().health_check_interval(None).build().unwrap();
    assert_eq!(c.health_check_interval(), None);
    let c = b()
        .idle_timeout(sec)
        .max_lifetime(sec + Duration::from_millis(1))
        .acquire_timeout(Duration::from_nanos(1))
        .build()
        .unwrap();
    assert_eq!(c.acquire_timeout(), Duration::from_nanos(1));
    assert_eq!(
        ConnectionPoolConfig::builder().build().unwrap(),
        ConnectionPoolConfig::default()
    );
}

// ----- try_acquire ------------------------------------------------------------------------

#[test]
fn try_acquire_never_waits_or_creates() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(2));
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "nothing idle"
    );
    assert_eq!(counts.created(), 0, "try_acquire does not create");
    let a = pool.acquire_blocking().unwrap();
    assert!(
        matches!(pool.try_acquire(), Err(PoolError::Exhausted)),
        "the only one is lent"
    );
    drop(a);
    let b = pool.try_acquire().expect("the returned connection is idle");
    assert_eq!((b.id, b.use_count()), (0, 2));
    assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
    drop(b);
    let e: Error = PoolError::Exhausted;
    assert!(e.to_string().contains("without waiting"));
    pool.close_blocking();
    assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
}

#[test]
fn try_acquire_yields_to_waiters_under_strict_fifo() {
    let _watchdog = watchdog();
    let config = builder(1)
        .acquire_timeout(Duration::from_secs(30))
        .fairness_bound(Duration::ZERO)
        .build()
        .unwrap();
    let (pool, _counts) = common::pool(config);
    let held = pool.acquire_blocking().unwrap();
    let (got_tx, got_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        // Owned here, so that a failing assertion drops it and the waiter stops waiting.
        let done_tx = done_tx;
        let pool = &pool;
        let waiter = s.spawn(move || {
            let conn = pool.acquire_blocking();
            got_tx
                .send(conn.as_ref().map(|c| c.use_count()).ok())
                .unwrap();
            // Hold it until the main thread has tried (and failed) to take it.
            done_rx.recv().unwrap();
            drop(conn);
        });
        wait_until("the waiter is registered", || {
            pool.current_metrics().waiting == 1
        });
        drop(held);
        // Whether or not the waiter has taken it yet (it is in the waiter's slot or lent to
        // it), the connection is not ours to take.
        assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
        assert_eq!(
            got_rx.recv().unwrap(),
            Some(2),
            "the waiter got the connection"
        );
        done_tx.send(()).unwrap();
        waiter.join().unwrap();
    });
    assert!(pool.try_acquire().is_ok(), "returned by the waiter");
}

// ----- metrics ----------------------------------------------------------------------------

#[test]
fn metrics_agree_with_factory_counts() {
    let _watchdog = watchdog();
    let (pool, counts) = common::pool(common::config(5));
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting, m.max),
        (0, 0, 0, 0, 5)
    );
    assert_eq!(m.acquire_time, Duration::ZERO, "no acquire yet");

    let a = pool.acquire_blocking().unwrap();
    let mut b = block_on(pool.acquire()).unwrap();
    let c = pool.acquire_blocking().unwrap();
    let d = block_on(pool.acquire()).unwrap();
    assert_metrics(&pool, 4, 0, 0);
    assert_eq!(counts.live(), 4);
    assert!(
        pool.current_metrics().acquire_time > Duration::ZERO,
        "creates are slow acquires"
    );

    drop(a);
    assert_metrics(&pool, 4, 1, 0);
    b.mark_broken();
    drop(b);
    wait_destroyed(&pool, &counts, 1);
    assert_metrics(&pool, 3, 1, 0);
    let detached = c.detach();
    assert_metrics(&pool, 2, 1, 0);
    assert_eq!(counts.live(), 3, "pooled (2) + detached (1)");
    pool.release(d);
    assert_metrics(&pool, 2, 2, 0);
    assert_eq!(pool.current_metrics().total, counts.live() - 1);

    // A waiter shows up in `waiting`.
    let config = builder(1)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (small, _) = common::pool(config);
    let held = small.acquire_blocking().unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| small.acquire_blocking().map(drop));
        wait_until("the waiter is counted", || {
            small.current_metrics().waiting == 1
        });
        assert_metrics(&small, 1, 0, 1);
        drop(held);
        waiter.join().unwrap().unwrap();
    });
    assert_metrics(&small, 1, 1, 0);

    pool.close_blocking();
    assert_metrics(&pool, 0, 0, 0);
    assert_eq!(counts.live(), 1, "only the detached connection remains");
    assert_eq!(counts.destroyed(), 3);
    let _ = detached;
    let text = format!("{pool:?}");
    assert!(text.contains("nexus-pool"), "{text}");
}
