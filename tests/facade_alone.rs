//! Each facade on its own: these tests build with only `blocking` or only `async` enabled, so the
//! single-feature builds are tested, not just compiled (`.ci/run` runs them that way).

use std::time::Duration;

mod common;

use common::{Refused, ScriptedFactory};
use nexus_pool::{ConnectionPool, PoolError};

fn pool(max: usize) -> ConnectionPool<ScriptedFactory> {
    common::pool(common::timed_config(max, Duration::from_millis(100))).0
}

#[cfg(feature = "blocking")]
#[test]
fn smoke_blocking() {
    let pool = pool(1);
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.id, 0);
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    drop(conn);
    let reused = pool
        .with_connection_blocking(|conn| Ok::<_, PoolError<Refused>>(conn.use_count()))
        .unwrap();
    assert_eq!(reused, 2, "the one connection was reused");
    pool.close_blocking();
    assert_eq!(pool.current_metrics().total, 0);
    assert!(matches!(pool.acquire_blocking(), Err(PoolError::Closed)));
}

#[cfg(feature = "async")]
#[test]
fn smoke_async() {
    futures_lite::future::block_on(async {
        let pool = pool(1);
        let conn = pool.acquire().await.unwrap();
        assert_eq!(conn.id, 0);
        assert!(matches!(pool.acquire().await, Err(PoolError::Timeout(_))));
        drop(conn);
        let reused = pool
            .with_connection(async |conn| Ok::<_, PoolError<Refused>>(conn.use_count()))
            .await
            .unwrap();
        assert_eq!(reused, 2, "the one connection was reused");
        pool.close().await;
        assert_eq!(pool.current_metrics().total, 0);
        assert!(matches!(pool.acquire().await, Err(PoolError::Closed)));
    });
}

#[test]
fn try_acquire_without_facades() {
    let pool = pool(1);
    assert!(matches!(pool.try_acquire(), Err(PoolError::Exhausted)));
    assert!(pool.close_now());
    assert!(matches!(pool.try_acquire(), Err(PoolError::Closed)));
}
