//! The `on_connect` hook: once per new connection, part of the create (its time bound and its
//! failure), and again after every reset, so what it sets survives a reuse, against the scripted
//! factory and against the real PostgreSQL through both adapters.
#![cfg(all(feature = "async", feature = "blocking"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::wait_until;
use common::{Op, Refused, ScriptedFactory, quiet_scripted_panics};
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, CreateError, PoolError,
};

fn config() -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(300))
        .create_timeout(Duration::from_millis(100))
        .checkout_validation(CheckoutValidation::Never)
        .health_check_interval(None)
        .build()
        .unwrap()
}

/// The hook runs once on each new connection before its first loan, and again after each
/// reset; the connection it prepared is what the caller gets.
#[test]
fn the_hook_prepares_each_new_connection_and_runs_again_after_a_reset() {
    quiet_scripted_panics();
    let (factory, script) = ScriptedFactory::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let pool = ConnectionPool::builder(factory)
        .config(config())
        .health_check(script.health())
        .on_connect({
            let runs = runs.clone();
            move |conn| {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, SeqCst);
                    conn.dirty = true; // stands for a `SET` the hook makes
                    Ok(())
                })
            }
        })
        .build()
        .unwrap();
    let conn = pool.acquire_blocking().unwrap();
    assert!(conn.dirty, "prepared by the hook before its first loan");
    assert_eq!(runs.load(SeqCst), 1);
    drop(conn);
    // The reset clears the session (`dirty = false`), then the hook sets it up again.
    let conn = futures_lite::future::block_on(pool.acquire()).unwrap();
    assert_eq!(script.calls(Op::Reset), 1);
    assert!(conn.dirty, "the hook ran again after the reset");
    assert_eq!(runs.load(SeqCst), 2);
    assert_eq!(script.created(), 1);
}

/// A hook that fails fails the create: the connection is closed, and a caller that times out
/// gets the hook's error as the last create error. A hook that hangs is cut at
/// `create_timeout`.
#[test]
fn a_failing_or_hanging_hook_fails_the_create() {
    quiet_scripted_panics();
    let (factory, script) = ScriptedFactory::new();
    let pool = ConnectionPool::builder(factory)
        .config(config())
        .on_connect(|conn| {
            let id = conn.id;
            Box::pin(async move { Err(Refused(1000 + id)) })
        })
        .build()
        .unwrap();
    let err = pool.acquire_blocking().map(|c| c.id).unwrap_err();
    let PoolError::Timeout(timeout) = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    match &timeout.last_create_error {
        Some(CreateError::Failed(cause)) => assert!(cause.0 >= 1000, "{cause:?}"),
        other => panic!("expected the hook's error, got {other:?}"),
    }
    wait_until("what the hook could not prepare is closed", || {
        script.live() == 0 && pool.current_metrics().total == 0
    });
    assert!(script.created() >= 1);

    let (factory, _script) = ScriptedFactory::new();
    let pool = ConnectionPool::builder(factory)
        .config(config())
        .on_connect(|_| Box::pin(futures_lite::future::pending()))
        .build()
        .unwrap();
    let err = futures_lite::future::block_on(pool.acquire())
        .map(|c| c.id)
        .unwrap_err();
    match err {
        PoolError::Timeout(t) => assert!(
            matches!(t.last_create_error, Some(CreateError::TimedOut(d)) if d == Duration::from_millis(100)),
            "{t:?}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A `SET` made in the hook survives reuse through the blocking `postgres` adapter, whose reset
/// runs `DISCARD ALL`.
#[cfg(feature = "postgres")]
#[test]
fn a_set_in_the_hook_survives_reuse_postgres() {
    use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    let Some(url) = common::servers::pg_url("a_set_in_the_hook_survives_reuse_postgres") else {
        return;
    };
    let pool = PostgresConnectionFactory::new(&url)
        .unwrap()
        .pool_builder()
        .config(common::servers::server_config(1))
        .on_connect(|client| {
            Box::pin(async move {
                client
                    .batch_execute("SET statement_timeout = '4321ms'")
                    .map_err(Into::into)
            })
        })
        .build()
        .unwrap();
    for round in 0..3 {
        let mut client = pool.acquire_blocking().unwrap();
        let row = client.query_one("SHOW statement_timeout", &[]).unwrap();
        assert_eq!(row.get::<_, String>(0), "4321ms", "round {round}");
        client
            .batch_execute("SET statement_timeout = '1s'")
            .unwrap();
    }
    assert_eq!(pool.current_metrics().total, 1, "one connection, reused");
}

/// The same through the `tokio-postgres` adapter, from a tokio task.
#[cfg(feature = "tokio-postgres")]
#[test]
fn a_set_in_the_hook_survives_reuse_tokio_postgres() {
    use nexus_pool::adapters::tokio_postgres::{
        TokioPostgresConnectionFactory, TokioPostgresError,
    };
    let Some(url) = common::servers::pg_url("a_set_in_the_hook_survives_reuse_tokio_postgres")
    else {
        return;
    };
    let pool = TokioPostgresConnectionFactory::new(&url)
        .unwrap()
        .pool_builder()
        .config(common::servers::server_config(1))
        .on_connect(|client| {
            Box::pin(async move {
                client
                    .batch_execute("SET statement_timeout = '4321ms'")
                    .await
                    .map_err(TokioPostgresError::from)
            })
        })
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for round in 0..3 {
            let client = pool.acquire().await.unwrap();
            let row = client
                .query_one("SHOW statement_timeout", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), "4321ms", "round {round}");
            client
                .batch_execute("SET statement_timeout = '1s'")
                .await
                .unwrap();
        }
    });
    assert_eq!(pool.current_metrics().total, 1, "one connection, reused");
}

/// The `tokio-postgres` adapter resets only what a user left behind, and takes what the hook set
/// as the session's clean state: reuses that change nothing run neither a reset nor the hook
/// again; a reuse that changes a setting gets a reset and the hook once more.
#[cfg(feature = "tokio-postgres")]
#[test]
fn the_hook_runs_again_only_after_a_reset_that_cleared_the_session() {
    use nexus_pool::adapters::tokio_postgres::{
        TokioPostgresConnectionFactory, TokioPostgresError,
    };
    let Some(url) = common::servers::pg_url("the_hook_runs_again_only_after_a_reset") else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let pool = TokioPostgresConnectionFactory::new(&url)
        .unwrap()
        .with_own_runtime()
        .unwrap()
        .pool_builder()
        .config(common::servers::server_config(1))
        .on_connect({
            let runs = runs.clone();
            move |client| {
                let runs = runs.clone();
                Box::pin(async move {
                    runs.fetch_add(1, SeqCst);
                    client
                        .batch_execute("SET statement_timeout = '4321ms'")
                        .await
                        .map_err(TokioPostgresError::from)
                })
            }
        })
        .build()
        .unwrap();
    let show = |client: &nexus_pool::PooledConnection<'_, TokioPostgresConnectionFactory>| {
        let rows =
            futures_lite::future::block_on(client.simple_query("SHOW statement_timeout")).unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    for round in 0..5 {
        let client = pool.acquire_blocking().unwrap();
        assert_eq!(show(&client), "4321ms", "round {round}");
    }
    assert_eq!(runs.load(SeqCst), 1, "no reset, no second run of the hook");
    {
        let client = pool.acquire_blocking().unwrap();
        futures_lite::future::block_on(client.batch_execute("SET statement_timeout = '1s'"))
            .unwrap();
    }
    let client = pool.acquire_blocking().unwrap();
    assert_eq!(show(&client), "4321ms", "reset, then the hook again");
    assert_eq!(runs.load(SeqCst), 2);
    drop(client);
    pool.close_blocking();
}
