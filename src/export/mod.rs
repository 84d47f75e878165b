//! Exporters that forward a pool's telemetry to the observability crates, each behind the feature
//! of the same name. Both are [`PoolEventHandler`](crate::PoolEventHandler)s: install them with
//! [`ConnectionPoolBuilder::event_handler`](crate::ConnectionPoolBuilder::event_handler), beside
//! any handlers of your own. Neither starts a thread or a task.
//!
//! - [`metrics_facade`] (feature `metrics`): counters, histograms and gauges through the
//!   [`metrics`](https://docs.rs/metrics) facade, named after the OpenTelemetry database client
//!   conventions.
//! - [`tracing`] (feature `tracing`): `tracing` events for waits, creates, destroys, health
//!   checks and failures.

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics_facade;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;
