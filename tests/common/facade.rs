//! The two ways to acquire, for behaviour reachable from both facades.

use futures_lite::future::block_on;
use nexus_pool::{ConnectionFactory, ConnectionPool, PoolError, PooledConnection};

/// Which facade a caller uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facade {
    /// `acquire_blocking()` on the calling thread.
    Blocking,
    /// `acquire().await`, driven by `futures_lite::future::block_on` on the calling thread.
    Async,
}

pub const FACADES: [Facade; 2] = [Facade::Blocking, Facade::Async];

/// Acquires through `facade`.
pub fn acquire_via<F: ConnectionFactory>(
    pool: &ConnectionPool<F>,
    facade: Facade,
) -> Result<PooledConnection<'_, F>, PoolError<F::Error>> {
    match facade {
        Facade::Blocking => pool.acquire_blocking(),
        Facade::Async => block_on(pool.acquire()),
    }
}
