//! Export to the [`metrics`] facade, with the names of the OpenTelemetry database
//! client conventions and a `pool.name` label on every series, so several pools stay apart.
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `db.client.connection.count` | gauge | `pool.name`, `state` = `idle` \| `used` | connections open, by state |
//! | `db.client.connection.max` | gauge | `pool.name` | `max_connections` |
//! | `db.client.connection.pending_requests` | gauge | `pool.name` | callers waiting for a connection |
//! | `db.client.connection.timeouts` | counter | `pool.name` | acquires that gave up at `acquire_timeout` |
//! | `db.client.connection.wait_time` | histogram (s) | `pool.name` | how long each acquire waited (zero when a connection was idle) |
//! | `db.client.connection.use_time` | histogram (s) | `pool.name` | how long each connection was held (to about 10 ms: the pool's coarse clock) |
//! | `db.client.connection.create_time` | histogram (s) | `pool.name` | how long each successful create took |
//!
//! The label keys are the short `pool.name` and `state` of earlier versions of the conventions.
//! Their current (experimental) version spells them `db.client.connection.pool.name` and
//! `db.client.connection.state`; a collector can rename them (the OpenTelemetry Collector's
//! `attributes` processor, for one) if your dashboards expect the long keys.
//!
//! # Two halves: events and gauges
//!
//! [`MetricsExporter`] is an event handler: it records the counter and the histograms as the
//! events happen, exactly once each.
//!
//! The gauges are *read*, not tracked: [`record_gauges`] copies
//! [`current_metrics`](crate::ConnectionPool::current_metrics), which reads the atomics the pool
//! itself runs on, so a gauge can never drift from the pool, go negative or wrap, whatever
//! happened before (a detached connection, a cancelled create). Gauges kept by adding and
//! subtracting on events could drift, and could not show waiters at all: a caller produces no
//! event while it waits, so a stalled pool with fifty callers queued would show none. Call
//! `record_gauges` where your exporter reads, so the gauges are exact at that moment:
//!
//! - a pull exporter (a Prometheus scrape endpoint you serve): call it in the scrape handler,
//!   just before rendering;
//! - an exporter that pushes or serves on its own schedule: call it from a loop you already run,
//!   or drive it from [`metrics_stream`](crate::ConnectionPool::metrics_stream) /
//!   [`metrics_iter`](crate::ConnectionPool::metrics_iter) with [`record_snapshot`], which ends by
//!   itself when the pool closes.
//!
//! Neither half starts a thread or a task of its own.
//!
//! Install your recorder before building the pool: the exporter caches its metric handles at the
//! pool's first event, as the `metrics` crate advises, so a recorder installed later would not
//! see the counter and histograms.
//!
//! # Examples
//!
//! ```
//! # #[cfg(feature = "blocking")] {
//! use nexus_pool::export::metrics_facade::{MetricsExporter, record_gauges};
//! use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
//! # use nexus_pool::doc_support::Units;
//!
//! // First install a recorder (metrics-exporter-prometheus, an OpenTelemetry bridge, ...).
//! let config = ConnectionPoolConfig::builder().name("orders").build()?;
//! let pool = ConnectionPool::builder(Units)
//!     .config(config)
//!     .event_handler(MetricsExporter::new())
//!     .build()?;
//! drop(pool.acquire_blocking()?); // records wait_time, use_time and create_time
//!
//! // In the scrape handler, before rendering:
//! record_gauges(&pool);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

use crate::{ConnectionFactory, ConnectionPool, PoolEventHandler, PoolMetrics};

/// `db.client.connection.count`: connections open, labelled `state` = `idle` or `used`.
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// `db.client.connection.max`: the pool's `max_connections`.
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// `db.client.connection.pending_requests`: callers waiting for a connection.
pub const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// `db.client.connection.timeouts`: acquires that gave up at `acquire_timeout`.
pub const TIMEOUTS: &str = "db.client.connection.timeouts";
/// `db.client.connection.wait_time`: seconds each acquire waited.
pub const WAIT_TIME: &str = "db.client.connection.wait_time";
/// `db.client.connection.use_time`: seconds each connection was held (to about 10 ms).
pub const USE_TIME: &str = "db.client.connection.use_time";
/// `db.client.connection.create_time`: seconds each successful create took.
pub const CREATE_TIME: &str = "db.client.connection.create_time";
/// The label naming the pool, on every series.
pub const POOL_NAME: &str = "pool.name";
/// The label of [`CONNECTION_COUNT`] saying `idle` or `used`.
pub const STATE: &str = "state";

/// Records the counter and histograms as the pool's events happen; see the
/// [module docs](self) for the names, and [`record_gauges`] for the gauges.
///
/// Install one per pool. It works with whatever recorder is installed when the pool has its
/// first event.
///
/// # Examples
///
/// ```
/// use nexus_pool::export::metrics_facade::MetricsExporter;
/// use nexus_pool::ConnectionPool;
/// # use nexus_pool::doc_support::Units;
///
/// let pool = ConnectionPool::builder(Units)
///     .event_handler(MetricsExporter::new())
///     .build()?;
/// # drop(pool);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct MetricsExporter {
    /// The handles for the pool this exporter serves, made at its first event.
    handles: OnceLock<Handles>,
}

impl fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsExporter { .. }")
    }
}

/// One pool's registered series.
struct Handles {
    pool: String,
    timeouts: Counter,
    wait: Histogram,
    used: Histogram,
    create: Histogram,
}

impl Handles {
    fn new(pool: &str) -> Self {
        Handles {
            pool: pool.to_owned(),
            timeouts: counter!(TIMEOUTS, POOL_NAME => pool.to_owned()),
            wait: histogram!(WAIT_TIME, POOL_NAME => pool.to_owned()),
            used: histogram!(USE_TIME, POOL_NAME => pool.to_owned()),
            create: histogram!(CREATE_TIME, POOL_NAME => pool.to_owned()),
        }
    }
}

impl MetricsExporter {
    /// An exporter, ready to install with
    /// [`event_handler`](crate::ConnectionPoolBuilder::event_handler). It also describes the
    /// series (units and help text) to the recorder installed now.
    ///
    /// # Examples
    ///
    /// ```
    /// let exporter = nexus_pool::export::metrics_facade::MetricsExporter::new();
    /// # drop(exporter);
    /// ```
    pub fn new() -> Self {
        describe();
        MetricsExporter::default()
    }

    /// Runs `f` on the handles for `pool`: the cached ones, or (should one exporter be shared by
    /// pools of different names) ones registered for this call.
    #[inline]
    fn with(&self, pool: &str, f: impl FnOnce(&Handles)) {
        let cached = self.handles.get_or_init(|| Handles::new(pool));
        if cached.pool == pool {
            f(cached);
        } else {
            f(&Handles::new(pool));
        }
    }
}

impl PoolEventHandler for MetricsExporter {
    fn on_created(&self, pool: &str, took: Duration) {
        self.with(pool, |h| h.create.record(took.as_secs_f64()));
    }

    fn on_acquired(&self, pool: &str, waited: Duration) {
        self.with(pool, |h| h.wait.record(waited.as_secs_f64()));
    }

    fn on_released(&self, pool: &str, held: Duration) {
        self.with(pool, |h| h.used.record(held.as_secs_f64()));
    }

    fn on_timed_out(&self, pool: &str, waited: Duration) {
        // Not a wait_time sample: that series counts acquires that got a connection.
        let _ = waited;
        self.with(pool, |h| h.timeouts.increment(1));
    }
}

/// Sets the pool's gauges (`db.client.connection.count` by state, `.max`, `.pending_requests`)
/// from [`current_metrics`](ConnectionPool::current_metrics): the pool's own counters, read now.
/// Call it where your exporter reads; see the [module docs](self) for why the gauges are read
/// rather than tracked.
///
/// # Caveats
///
/// The values are exact at the moment of the call and stale right after, like any gauge.
///
/// # Examples
///
/// ```
/// use nexus_pool::export::metrics_facade::record_gauges;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
///
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// record_gauges(&pool); // e.g. in the scrape handler, before rendering
/// ```
pub fn record_gauges<F: ConnectionFactory>(pool: &ConnectionPool<F>) {
    record_snapshot(pool.config().name(), &pool.current_metrics());
}

/// Sets the gauges of the pool named `pool_name` from a snapshot, such as one from
/// [`metrics_stream`](ConnectionPool::metrics_stream): the way to keep the gauges fresh from a
/// task that needs no pool handle and ends when the pool closes.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "blocking")] {
/// use std::time::Duration;
/// use nexus_pool::export::metrics_facade::record_snapshot;
/// use nexus_pool::{ConnectionPool, ConnectionPoolConfig};
/// # use nexus_pool::doc_support::Units;
///
/// let pool = ConnectionPool::new(Units, ConnectionPoolConfig::default());
/// let name = pool.config().name().to_owned();
/// let refresher = std::thread::spawn({
///     let snapshots = pool.metrics_iter(Duration::from_secs(10));
///     move || snapshots.for_each(|m| record_snapshot(&name, &m))
/// });
/// pool.close_blocking();
/// refresher.join().unwrap(); // ended with the pool
/// # }
/// ```
pub fn record_snapshot(pool_name: &str, metrics: &PoolMetrics) {
    describe();
    let name = || pool_name.to_owned();
    gauge!(CONNECTION_COUNT, POOL_NAME => name(), STATE => "idle").set(metrics.idle as f64);
    gauge!(CONNECTION_COUNT, POOL_NAME => name(), STATE => "used").set(metrics.active as f64);
    gauge!(CONNECTION_MAX, POOL_NAME => name()).set(metrics.max as f64);
    gauge!(PENDING_REQUESTS, POOL_NAME => name()).set(metrics.waiting as f64);
}

/// Tells the recorder the units and meaning of every series.
fn describe() {
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "Connections open, by state (idle or used)"
    );
    describe_gauge!(
        CONNECTION_MAX,
        Unit::Count,
        "The most connections the pool may open"
    );
    describe_gauge!(
        PENDING_REQUESTS,
        Unit::Count,
        "Callers waiting for a connection"
    );
    describe_counter!(
        TIMEOUTS,
        Unit::Count,
        "Acquires that gave up at the acquire timeout"
    );
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "Time an acquire waited for a connection"
    );
    describe_histogram!(
        USE_TIME,
        Unit::Seconds,
        "Time a connection was held before it came back"
    );
    describe_histogram!(CREATE_TIME, Unit::Seconds, "Time a successful create took");
}
