//! `PoolMetrics`: a cheap snapshot of a pool's state.

use std::time::Duration;

/// A snapshot of a pool, from [`ConnectionPool::current_metrics`](crate::ConnectionPool::current_metrics).
///
/// # Caveats
///
/// The fields are read one after another while the pool runs, so they are a hint that may be
/// stale by the time it is read; `idle` is clamped so that `idle + active == total` always holds
/// in the snapshot. `total` exceeds `max` only for a moment after `resize` lowered it.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
///
/// struct Units;
/// impl ConnectionFactory for Units {
///     type Connection = ();
///     type Error = std::io::Error;
///     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// }
///
/// let config = ConnectionPoolConfig::builder().min_connections(0).build()?;
/// let pool = ConnectionPool::new(Units, config);
/// let held = pool.acquire_blocking()?;
/// let m = pool.current_metrics();
/// assert_eq!((m.total, m.idle, m.active, m.waiting), (1, 0, 1, 0));
/// # drop(held);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// Connections open, being created, or being destroyed.
    pub total: usize,
    /// Connections idle in the pool, ready to be lent.
    pub idle: usize,
    /// Connections lent out or in transition (`total - idle`).
    pub active: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// The pool's `max_connections`.
    pub max: usize,
    /// Average time of the acquires that could not be served from the idle queue at once (they
    /// waited, created or validated a connection). Those served at once take a few dozen
    /// nanoseconds and are not counted, so this is the figure that shows an undersized pool.
    pub acquire_time: Duration,
}
