//! Each facade on its own: these tests build with only `blocking` or only `async` enabled, so the
//! single-feature builds are tested, not just compiled (`.ci/run` runs them that way).

use std::time::Duration;

use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig, PoolError};

struct Numbers;

impl ConnectionFactory for Numbers {
    type Connection = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(9)
    }
}

fn pool(max: usize) -> ConnectionPool<Numbers> {
    let config = ConnectionPoolConfig::builder()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    ConnectionPool::new(Numbers, config)
}

#[cfg(feature = "blocking")]
#[test]
fn smoke_blocking() {
    let pool = pool(1);
    let conn = pool.acquire_blocking().unwrap();
    assert_eq!(*conn, 9);
    assert!(matches!(
        pool.acquire_blocking(),
        Err(PoolError::Timeout(_))
    ));
    drop(conn);
    let reused = pool
        .with_connection_blocking(|conn| Ok::<_, PoolError<std::io::Error>>(conn.use_count()))
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
        assert_eq!(*conn, 9);
        assert!(matches!(pool.acquire().await, Err(PoolError::Timeout(_))));
        drop(conn);
        let reused = pool
            .with_connection(async |conn| Ok::<_, PoolError<std::io::Error>>(conn.use_count()))
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
