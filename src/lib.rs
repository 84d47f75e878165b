#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` on nightly: label each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
// Without a facade only `try_acquire` uses the core; the rest is there for the facades.
#![cfg_attr(not(any(feature = "async", feature = "blocking")), allow(dead_code))]

// The layout: one job per file.
//
// - `pool`: `ConnectionPool`, the public handle (an `Arc` inside), its admin calls and
//   `try_acquire`, the fast path both facades share.
// - `future`: the named futures and the methods that return them: the async facade (feature
//   `async`), `build_connected` and the maintenance loop's `Maintenance` future.
// - `blocking`: the blocking facade (feature `blocking`), driven by a parking `block_on`.
// - `builder`, `config`, `config_file`: how a pool is described and built.
// - `connection`, `scope`: the guards that lend a connection, and the scope that tracks several.
// - `factory`, `events`: the traits a user implements (connections, health, the event hook).
// - `snapshot`: what a pool reports about itself (`PoolMetrics`, `PoolStatistics`), and the
//   ticks the metrics stream and iterator share.
// - `maintenance`: the maintenance loop (creates, destroys, sweeps, health checks, deadlines).
// - `error`: every error of the pool itself.
// - `core`: the shared state of one pool and its wait protocol (see `core/mod.rs`).
// - `adapters`, `export`, `store`: public modules, each behind the features it names.
// - `doc_support`: the factories the doc examples share (hidden, not part of the API).
mod builder;
mod config;
#[cfg(feature = "serde")]
mod config_file;
mod connection;
mod core;
mod error;
mod events;
mod factory;
mod future;
mod maintenance;
mod pool;
mod scope;
mod snapshot;

#[cfg(feature = "blocking")]
mod blocking;

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

#[doc(hidden)]
pub mod doc_support;

#[cfg(feature = "blocking")]
pub use crate::blocking::MetricsIter;
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
pub use crate::future::Maintenance;
#[cfg(feature = "async")]
pub use crate::future::MetricsStream;
pub use crate::pool::{ConnectionPool, WeakConnectionPool};
pub use crate::scope::{ConnectionScope, HeldConnection, OwnedScopedConnection, ScopedConnection};
pub use crate::snapshot::{DestroyedCounts, Distribution, PoolMetrics, PoolStatistics};

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
