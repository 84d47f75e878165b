#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: label each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
// Without a facade only `try_acquire` uses the core; the rest is there for the facades.
#![cfg_attr(not(any(feature = "async", feature = "blocking")), allow(dead_code))]

mod builder;
mod config;
#[cfg(feature = "serde")]
mod config_file;
mod connection;
mod core;
mod error;
mod events;
mod factory;
mod maintenance;
mod metrics;
mod pool;
mod scope;

#[cfg(feature = "blocking")]
mod blocking;
#[cfg(feature = "async")]
mod future;

#[cfg(any(
    feature = "postgres",
    feature = "tokio-postgres",
    feature = "redis",
    feature = "rusqlite",
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite",
    feature = "mysql",
    feature = "mysql-async"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "postgres",
        feature = "tokio-postgres",
        feature = "redis",
        feature = "rusqlite",
        feature = "diesel-postgres",
        feature = "diesel-mysql",
        feature = "diesel-sqlite",
        feature = "mysql",
        feature = "mysql-async"
    )))
)]
pub mod adapters;
#[cfg(any(feature = "metrics", feature = "tracing"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "metrics", feature = "tracing"))))]
pub mod export;
#[cfg(feature = "store")]
#[cfg_attr(docsrs, doc(cfg(feature = "store")))]
pub mod store;

pub use crate::builder::ConnectionPoolBuilder;
pub use crate::config::{
    CheckoutValidation, ConnectionPoolConfig, ConnectionPoolConfigBuilder, MAX_CONNECTIONS_LIMIT,
    MaintenanceMode,
};
pub use crate::connection::{OwnedPooledConnection, PooledConnection};
pub use crate::core::{DestroyReason, ManualClock};
pub use crate::error::{ConfigError, CreateError, PoolError, TimeoutError};
pub use crate::events::PoolEventHandler;
pub use crate::factory::{ConnectionFactory, ConnectionHealthCheck, callback_deadline};
pub use crate::maintenance::Maintenance;
#[cfg(feature = "blocking")]
pub use crate::metrics::MetricsIter;
#[cfg(feature = "async")]
pub use crate::metrics::MetricsStream;
pub use crate::metrics::{DestroyedCounts, Distribution, PoolMetrics, PoolStatistics};
pub use crate::pool::{ConnectionPool, WeakConnectionPool};
pub use crate::scope::{ConnectionScope, HeldConnection, OwnedScopedConnection, ScopedConnection};

/// The named futures of the async facade.
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod futures {
    pub use crate::future::{Acquire, AcquireOwned, Close};
}

/// Compile-time proof that the public types can cross threads.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    struct F;
    impl ConnectionFactory for F {
        type Connection = std::net::TcpStream;
        type Error = std::io::Error;
        async fn create(&self) -> Result<Self::Connection, Self::Error> {
            Err(std::io::ErrorKind::Other.into())
        }
    }
    send_sync::<ConnectionPool<F>>();
    send_sync::<PooledConnection<'static, F>>();
    send_sync::<OwnedPooledConnection<F>>();
    send_sync::<WeakConnectionPool<F>>();
    send_sync::<ConnectionScope>();
    send_sync::<ScopedConnection<'static, 'static, F>>();
    send_sync::<OwnedScopedConnection<'static, F>>();
    send_sync::<PoolError<std::io::Error>>();
    send_sync::<PoolMetrics>();
    send_sync::<ConnectionPoolConfig>();
    #[cfg(feature = "async")]
    {
        fn send<T: Send>() {}
        send::<futures::Acquire<'static, F>>();
        send::<futures::AcquireOwned<F>>();
        send::<futures::Close<'static, F>>();
    }
}
