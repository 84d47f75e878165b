//! The `tracing` exporter: the events it emits for waits, creates, destroys, health checks and
//! failures, with their levels and fields.

#![cfg(all(feature = "tracing", feature = "blocking"))]

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

mod common;

use common::telemetry::named_config;
use common::{Behavior, Op, ScriptedFactory, wait_until};
use nexus_pool::{CheckoutValidation, ConnectionPool};

// ----- the `tracing` exporter ---------------------------------------------------------------------

#[cfg(all(feature = "tracing", feature = "blocking"))]
mod tracing_export {
    use super::*;
    use std::fmt;
    use std::sync::OnceLock;

    use nexus_pool::export::tracing::TracingExporter;
    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    #[derive(Debug, Clone)]
    struct Captured {
        level: Level,
        message: String,
        fields: HashMap<String, String>,
    }

    /// Every event any thread emitted (the maintenance thread's too, so the subscriber is global).
    fn captured() -> &'static Mutex<Vec<Captured>> {
        static EVENTS: OnceLock<&'static Mutex<Vec<Captured>>> = OnceLock::new();
        EVENTS.get_or_init(|| {
            let events: &'static Mutex<Vec<Captured>> = Box::leak(Box::default());
            let subscriber = tracing_subscriber::registry().with(Collect(events));
            tracing::subscriber::set_global_default(subscriber).unwrap();
            events
        })
    }

    struct Collect(&'static Mutex<Vec<Captured>>);

    impl<S: Subscriber> Layer<S> for Collect {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push(Captured {
                level: *event.metadata().level(),
                message: fields.message,
                fields: fields.rest,
            });
        }
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        rest: HashMap<String, String>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.rest.insert(field.name().to_owned(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            } else {
                self.rest
                    .insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
    }

    /// The events of the pool named `pool`.
    fn events_of(pool: &str) -> Vec<Captured> {
        captured()
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.fields.get("pool.name").map(String::as_str) == Some(pool))
            .cloned()
            .collect()
    }

    fn count(pool: &str, message: &str) -> usize {
        events_of(pool)
            .iter()
            .filter(|e| e.message == message)
            .count()
    }

    #[track_caller]
    fn expect(pool: &str, message: &str, level: Level, field: &str) {
        let events = events_of(pool);
        let found = events
            .iter()
            .find(|e| e.message == message)
            .unwrap_or_else(|| panic!("no {message:?} in {events:#?}"));
        assert_eq!(found.level, level, "{found:?}");
        assert!(found.fields.contains_key(field), "{found:?} lacks {field}");
    }

    #[test]
    fn acquires_served_at_once_log_nothing() {
        const POOL: &str = "tracing-quiet";
        captured();
        let config = named_config(POOL, 1)
            .checkout_validation(CheckoutValidation::Never)
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(ScriptedFactory::default())
            .config(config)
            .event_handler(TracingExporter::new())
            .build()
            .unwrap();
        drop(pool.acquire_blocking().unwrap()); // a create, which may log a wait
        let before = events_of(POOL).len();
        for _ in 0..10 {
            drop(pool.acquire_blocking().unwrap());
        }
        assert_eq!(events_of(POOL).len(), before, "nothing for ten loans");
        pool.close_blocking();
        let messages: Vec<_> = events_of(POOL).into_iter().map(|e| e.message).collect();
        assert_eq!(messages.last().unwrap(), "connection destroyed");
        assert_eq!(count(POOL, "connection created"), 1);
    }

    #[test]
    fn events_name_the_pool_at_their_level() {
        const POOL: &str = "tracing-events";
        captured();
        let (factory, counts) = ScriptedFactory::new();
        let config = named_config(POOL, 1)
            .acquire_timeout(Duration::from_secs(1))
            .health_check_interval(Duration::from_millis(20))
            .leak_detection_threshold(Duration::from_millis(30))
            .build()
            .unwrap();
        let pool = ConnectionPool::builder(factory)
            .config(config)
            .health_check(counts.health())
            .event_handler(TracingExporter::new())
            .build()
            .unwrap();

        drop(pool.acquire_blocking().unwrap());
        expect(POOL, "connection created", Level::DEBUG, "took");

        // A wait, and a leak while the waiter holds on.
        let held = pool.acquire_blocking().unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| {
                let conn = pool.acquire_blocking().unwrap();
                thread::sleep(Duration::from_millis(50));
                pool.sweep_idle();
                drop(conn);
            });
            wait_until("the waiter", || pool.current_metrics().waiting == 1);
            thread::sleep(Duration::from_millis(20));
            drop(held);
            waiter.join().unwrap();
        });
        expect(
            POOL,
            "acquired a connection after waiting",
            Level::DEBUG,
            "waited",
        );
        expect(
            POOL,
            "connection held past the leak detection threshold",
            Level::WARN,
            "acquired_at",
        );

        // A timeout.
        let held = pool.acquire_blocking().unwrap();
        assert!(pool.acquire_blocking().is_err());
        drop(held);
        expect(POOL, "acquire timed out", Level::WARN, "waited");

        // Passed health checks, at the finest level.
        wait_until("a passed health check", || {
            count(POOL, "health check passed") > 0
        });
        expect(POOL, "health check passed", Level::TRACE, "took");

        // A failed health check, and the destroy it causes.
        counts.set(Op::IsHealthy, Behavior::Fail);
        wait_until("a failed health check", || {
            count(POOL, "health check failed") > 0
        });
        counts.set(Op::IsHealthy, Behavior::Succeed);
        expect(POOL, "health check failed", Level::WARN, "took");
        wait_until("the unhealthy connection's destroy", || {
            events_of(POOL).iter().any(|e| {
                e.message == "connection destroyed"
                    && e.fields.get("reason").map(String::as_str) == Some("Unhealthy")
            })
        });
        expect(POOL, "connection destroyed", Level::DEBUG, "reason");

        // A failed create.
        counts.set(Op::Create, Behavior::Fail);
        assert!(pool.acquire_blocking().is_err());
        counts.set(Op::Create, Behavior::Succeed);
        expect(POOL, "connection create failed", Level::WARN, "error");

        pool.close_blocking();
        // Every event of this pool carried its name (the filter above relies on it), and none
        // came from another pool's name.
        assert!(!events_of(POOL).is_empty());
        assert_eq!(events_of("no such pool").len(), 0);
    }
}
