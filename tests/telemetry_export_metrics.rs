//! The `metrics` exporter: the names, units and labels it promises (the OpenTelemetry database
//! client conventions), and values that agree with the events.

#![cfg(all(feature = "metrics", feature = "blocking"))]

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

mod common;

use common::telemetry::{Recording, Seen, counting_pool, named_config};
use common::{ScriptedFactory, wait_until};
use nexus_pool::{ConnectionPool, PoolError, PoolEventHandler};

// ----- the `metrics` exporter ---------------------------------------------------------------------

#[cfg(all(feature = "metrics", feature = "blocking"))]
mod metrics_export {
    use super::*;
    use std::sync::{OnceLock, PoisonError};

    use metrics::Unit;
    use metrics_util::MetricKind;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use nexus_pool::export::metrics_facade::{
        CONNECTION_COUNT, CONNECTION_MAX, CREATE_TIME, MetricsExporter, PENDING_REQUESTS,
        POOL_NAME, STATE, TIMEOUTS, USE_TIME, WAIT_TIME, record_gauges, record_snapshot,
    };

    /// The names are the OpenTelemetry database client conventions, spelled out here so that a
    /// renamed constant fails (the tests below look series up by the constants).
    #[test]
    fn names_are_the_opentelemetry_ones() {
        let names = [
            (CONNECTION_COUNT, "db.client.connection.count"),
            (CONNECTION_MAX, "db.client.connection.max"),
            (PENDING_REQUESTS, "db.client.connection.pending_requests"),
            (TIMEOUTS, "db.client.connection.timeouts"),
            (WAIT_TIME, "db.client.connection.wait_time"),
            (USE_TIME, "db.client.connection.use_time"),
            (CREATE_TIME, "db.client.connection.create_time"),
            (POOL_NAME, "pool.name"),
            (STATE, "state"),
        ];
        for (constant, spelled) in names {
            assert_eq!(constant, spelled);
        }
    }

    /// The global recorder, and this test's turn at it: a snapshot drains the recorder, so the
    /// tests that read it go one at a time (each names its pool apart, too).
    fn recorder() -> (MutexGuard<'static, ()>, &'static Snapshotter) {
        static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
        static TURN: Mutex<()> = Mutex::new(());
        let snapshotter = SNAPSHOTTER.get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder.install().unwrap();
            snapshotter
        });
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        (turn, snapshotter)
    }

    /// One series as recorded: kind, name, labels other than `pool.name`, unit, value.
    #[derive(Debug)]
    struct Series {
        kind: MetricKind,
        name: String,
        labels: Vec<(String, String)>,
        unit: Option<Unit>,
        value: DebugValue,
    }

    /// The series of the pool named `pool` (draining the recorder).
    fn read(snapshotter: &Snapshotter, pool: &str) -> Vec<Series> {
        of_pool(&mut read_all(snapshotter), pool)
    }

    /// Takes the series of the pool named `pool` out of `all`.
    fn of_pool(all: &mut Vec<(String, Series)>, pool: &str) -> Vec<Series> {
        let (ours, rest): (Vec<_>, Vec<_>) = std::mem::take(all)
            .into_iter()
            .partition(|(p, _)| p == pool);
        *all = rest;
        ours.into_iter().map(|(_, series)| series).collect()
    }

    /// Every series in the recorder, with the pool it is labelled with (draining the recorder).
    fn read_all(snapshotter: &Snapshotter) -> Vec<(String, Series)> {
        let mut all = Vec::new();
        for (key, unit, _help, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let name = key.name().to_owned();
            if !name.starts_with("db.client.connection.") {
                continue;
            }
            let labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let named: Vec<_> = labels.iter().filter(|(k, _)| k == POOL_NAME).collect();
            assert_eq!(
                named.len(),
                1,
                "{name} must carry one pool.name: {labels:?}"
            );
            let pool = named[0].1.clone();
            let labels = labels.into_iter().filter(|(k, _)| k != POOL_NAME).collect();
            let series = Series {
                kind,
                name,
                labels,
                unit,
                value,
            };
            all.push((pool, series));
        }
        all
    }

    fn find<'a>(series: &'a [Series], name: &str, state: Option<&str>) -> &'a Series {
        let labels: Vec<(String, String)> = state
            .map(|s| vec![(STATE.to_owned(), s.to_owned())])
            .unwrap_or_default();
        series
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {series:#?}"))
    }

    fn gauge(series: &[Series], name: &str, state: Option<&str>) -> f64 {
        let s = find(series, name, state);
        assert_eq!(s.kind, MetricKind::Gauge, "{s:?}");
        match &s.value {
            DebugValue::Gauge(v) => {
                assert!(v.0 >= 0.0 && v.0.fract() == 0.0, "{name}: {}", v.0);
                v.0
            }
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn counter(series: &[Series], name: &str) -> u64 {
        match &find(series, name, None).value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn histogram(series: &[Series], name: &str) -> Vec<f64> {
        let s = find(series, name, None);
        assert_eq!(s.unit, Some(Unit::Seconds), "{name} is in seconds");
        match &s.value {
            DebugValue::Histogram(v) => {
                let v: Vec<f64> = v.iter().map(|x| x.0).collect();
                assert!(
                    v.iter().all(|x| *x >= 0.0 && x.is_finite()),
                    "{name}: {v:?}"
                );
                v
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    #[test]
    fn counter_and_histograms_match_the_events() {
        let (_turn, snapshotter) = recorder();
        let factory = ScriptedFactory::default();
        let seen = Arc::new(Seen::default());
        let config = named_config("metrics-events", 1)
            .acquire_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .event_handler(MetricsExporter::new())
            .event_handler(Recording {
                pool: "metrics-events".into(),
                seen: seen.clone(),
            })
            .build()
            .unwrap();
        for _ in 0..5 {
            drop(pool.acquire_blocking().unwrap());
        }
        let held = pool.acquire_blocking().unwrap();
        assert!(matches!(
            pool.acquire_blocking(),
            Err(PoolError::Timeout(_))
        ));
        thread::sleep(Duration::from_millis(5));
        drop(held);
        pool.close_blocking();

        let series = read(snapshotter, "metrics-events");
        let stats = pool.statistics();
        assert_eq!(counter(&series, TIMEOUTS), 1);
        assert_eq!(counter(&series, TIMEOUTS), stats.timed_out);
        let waits = histogram(&series, WAIT_TIME);
        assert_eq!(waits.len() as u64, seen.acquired.count());
        assert_eq!(waits.len(), 6, "every acquire, the fast ones too");
        let uses = histogram(&series, USE_TIME);
        assert_eq!(uses.len() as u64, seen.released.count());
        let creates = histogram(&series, CREATE_TIME);
        assert_eq!(creates.len() as u64, stats.created);
        assert_eq!(stats.create_time.count, stats.created);
        // Each sample is the duration its event carried, in seconds.
        for (name, samples, events) in [
            ("wait_time", waits, &seen.acquired),
            ("use_time", uses, &seen.released),
            ("create_time", creates, &seen.created),
        ] {
            let events: Vec<f64> = events.all().iter().map(Duration::as_secs_f64).collect();
            assert_eq!(samples, events, "{name}");
        }
    }

    /// Forwards the events to an exporter that several pools share.
    struct SharedExporter(Arc<MetricsExporter>);

    impl PoolEventHandler for SharedExporter {
        fn on_created(&self, pool: &str, took: Duration) {
            self.0.on_created(pool, took);
        }
        fn on_acquired(&self, pool: &str, waited: Duration) {
            self.0.on_acquired(pool, waited);
        }
        fn on_released(&self, pool: &str, held: Duration) {
            self.0.on_released(pool, held);
        }
        fn on_timed_out(&self, pool: &str, waited: Duration) {
            self.0.on_timed_out(pool, waited);
        }
    }

    /// Two pools, with an exporter each or one shared: each pool's event series count its own
    /// events only.
    #[test]
    fn event_series_stay_apart_by_name() {
        let (_turn, snapshotter) = recorder();
        two_pools_apart(snapshotter, "metrics-apart", MetricsExporter::new);
        let shared = Arc::new(MetricsExporter::new());
        two_pools_apart(snapshotter, "metrics-shared", || {
            SharedExporter(shared.clone())
        });
    }

    /// A busy pool (three acquires) and a quiet one (one acquire, one timeout), each with a
    /// handler from `exporter`: the series of each show its own events.
    fn two_pools_apart<H: PoolEventHandler>(
        snapshotter: &Snapshotter,
        prefix: &str,
        exporter: impl Fn() -> H,
    ) {
        let (busy, quiet) = (format!("{prefix}-busy"), format!("{prefix}-quiet"));
        let pool = |name: &str| {
            let config = named_config(name, 1)
                .acquire_timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            ConnectionPool::builder(ScriptedFactory::default())
                .config(config)
                .event_handler(exporter())
                .build()
                .unwrap()
        };
        let (busy_pool, quiet_pool) = (pool(&busy), pool(&quiet));
        for _ in 0..3 {
            drop(busy_pool.acquire_blocking().unwrap());
        }
        let held = quiet_pool.acquire_blocking().unwrap();
        assert!(matches!(
            quiet_pool.acquire_blocking(),
            Err(PoolError::Timeout(_))
        ));
        drop(held);
        busy_pool.close_blocking();
        quiet_pool.close_blocking();

        let mut all = read_all(snapshotter);
        let (busy, quiet) = (of_pool(&mut all, &busy), of_pool(&mut all, &quiet));
        assert_eq!(histogram(&busy, WAIT_TIME).len(), 3, "{prefix}");
        assert_eq!(histogram(&busy, USE_TIME).len(), 3, "{prefix}");
        assert_eq!(histogram(&busy, CREATE_TIME).len(), 1, "{prefix}");
        assert_eq!(counter(&busy, TIMEOUTS), 0, "{prefix}");
        assert_eq!(histogram(&quiet, WAIT_TIME).len(), 1, "{prefix}");
        assert_eq!(histogram(&quiet, USE_TIME).len(), 1, "{prefix}");
        assert_eq!(histogram(&quiet, CREATE_TIME).len(), 1, "{prefix}");
        assert_eq!(counter(&quiet, TIMEOUTS), 1, "{prefix}");
    }

    #[test]
    fn gauges_equal_the_pool_and_the_factory() {
        let (_turn, snapshotter) = recorder();
        let (factory, counts) = ScriptedFactory::new();
        let config = named_config("metrics-gauges", 3)
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .event_handler(MetricsExporter::new())
            .build()
            .unwrap();
        let check = |idle: f64, used: f64, pending: f64| {
            record_gauges(&pool);
            let series = read(snapshotter, "metrics-gauges");
            let got = (
                gauge(&series, CONNECTION_COUNT, Some("idle")),
                gauge(&series, CONNECTION_COUNT, Some("used")),
                gauge(&series, PENDING_REQUESTS, None),
                gauge(&series, CONNECTION_MAX, None),
            );
            assert_eq!(got, (idle, used, pending, 3.0));
            assert_eq!((idle + used) as usize, counts.live(), "the factory's count");
        };
        check(0.0, 0.0, 0.0);

        let mut held: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
        check(0.0, 3.0, 0.0);
        drop(held.pop());
        check(1.0, 2.0, 0.0);

        // Waiters produce no event while they wait; the gauge still shows them.
        held.push(pool.acquire_blocking().unwrap());
        thread::scope(|s| {
            let waiters: Vec<_> = (0..2)
                .map(|_| s.spawn(|| pool.acquire_blocking().map(drop)))
                .collect();
            wait_until("two waiters", || pool.current_metrics().waiting == 2);
            check(0.0, 3.0, 2.0);
            drop(held.pop());
            for w in waiters {
                w.join().unwrap().unwrap();
            }
        });
        check(1.0, 2.0, 0.0);

        // A detached connection leaves no trace in the gauges (nor in the factory's count).
        drop(held.pop().unwrap().detach());
        check(1.0, 1.0, 0.0);
        drop(held);
        check(2.0, 0.0, 0.0);

        pool.close_blocking();
        check(0.0, 0.0, 0.0);
    }

    #[test]
    fn pools_stay_apart_by_name() {
        let (_turn, snapshotter) = recorder();
        let (small, _) = counting_pool("metrics-small", 1);
        let (large, _) = counting_pool("metrics-large", 5);
        let held = large.acquire_blocking().unwrap();
        record_gauges(&small);
        record_gauges(&large);
        let snapshot = snapshotter.snapshot().into_vec();
        let for_pool = |pool: &str| -> Vec<Series> {
            // Re-read from the one snapshot: a second `read` would find the gauges drained.
            let mut out = Vec::new();
            for (key, unit, _, value) in &snapshot {
                let key = key.key();
                if key
                    .labels()
                    .any(|l| l.key() == POOL_NAME && l.value() == pool)
                {
                    out.push(Series {
                        kind: MetricKind::Gauge,
                        name: key.name().to_owned(),
                        labels: key
                            .labels()
                            .filter(|l| l.key() != POOL_NAME)
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect(),
                        unit: *unit,
                        value: match value {
                            DebugValue::Gauge(v) => DebugValue::Gauge(*v),
                            _ => continue,
                        },
                    });
                }
            }
            out
        };
        let small = for_pool("metrics-small");
        let large_series = for_pool("metrics-large");
        assert_eq!(gauge(&small, CONNECTION_MAX, None), 1.0);
        assert_eq!(gauge(&small, CONNECTION_COUNT, Some("used")), 0.0);
        assert_eq!(gauge(&large_series, CONNECTION_MAX, None), 5.0);
        assert_eq!(gauge(&large_series, CONNECTION_COUNT, Some("used")), 1.0);
        drop(held);
        large.close_blocking();
    }

    #[test]
    fn snapshots_from_the_stream_set_the_gauges() {
        let (_turn, snapshotter) = recorder();
        let (pool, _) = counting_pool("metrics-stream", 2);
        let held = pool.acquire_blocking().unwrap();
        let name = pool.config().name().to_owned();
        let snapshots = pool.metrics_iter(Duration::from_secs(3600));
        let (recorded, first) = std::sync::mpsc::channel();
        let refresher = thread::spawn(move || {
            for m in snapshots {
                record_snapshot(&name, &m);
                let _ = recorded.send(());
            }
        });
        first.recv().unwrap();
        drop(held);
        pool.close_blocking();
        refresher.join().unwrap();
        let series = read(snapshotter, "metrics-stream");
        // The one snapshot taken at once, while the connection was held.
        assert_eq!(gauge(&series, CONNECTION_COUNT, Some("used")), 1.0);
        assert_eq!(gauge(&series, CONNECTION_MAX, None), 2.0);
    }
}
