//! `ConnectionPoolConfig` from configuration files (feature `serde`): every field as people write
//! it, defaults kept for fields left out, and the builder's validation with the field named; and
//! the adapters' settings (`adapters::settings`) beside it, down to a pool behind PgBouncer in
//! transaction mode (`NEXUS_POOL_PGBOUNCER_TX_URL`, else the standard local port 6432) built
//! from a file.
#![cfg(feature = "serde")]

mod common;

use std::time::Duration;

use nexus_pool::{CheckoutValidation, ConnectionPoolConfig, MaintenanceMode};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    pool: ConnectionPoolConfig,
}

fn parse(pool: &str) -> Result<ConnectionPoolConfig, String> {
    toml::from_str::<File>(&format!("[pool]\n{pool}"))
        .map(|f| f.pool)
        .map_err(|e| e.to_string())
}

#[test]
fn every_field_reads_as_written() {
    let config = parse(
        r#"
        name = "orders"
        min_connections = 2
        max_connections = 16
        acquire_timeout = "5s"
        idle_timeout = "10m"
        max_lifetime = "1h30m"
        health_check_interval = "off"
        checkout_validation = "always"
        create_timeout = "2.5s"
        check_timeout = "750ms"
        destroy_timeout = "1s"
        max_concurrent_creates = 4
        create_backoff = { initial = "20ms", max = "2s" }
        max_lifetime_jitter = "90s"
        leak_detection_threshold = "1m"
        max_connections_ceiling = 32
        maintenance = "spawned"
        detailed_statistics = true
        "#,
    )
    .unwrap();
    let expected = ConnectionPoolConfig::builder()
        .name("orders")
        .min_connections(2)
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(5400))
        .health_check_interval(None)
        .checkout_validation(CheckoutValidation::Always)
        .create_timeout(Duration::from_millis(2500))
        .check_timeout(Duration::from_millis(750))
        .destroy_timeout(Duration::from_secs(1))
        .max_concurrent_creates(4)
        .create_backoff(Duration::from_millis(20), Duration::from_secs(2))
        .max_lifetime_jitter(Duration::from_secs(90))
        .leak_detection_threshold(Duration::from_secs(60))
        .max_connections_ceiling(32)
        .maintenance(MaintenanceMode::Spawned)
        .detailed_statistics(true)
        .build()
        .unwrap();
    assert_eq!(config, expected);
}

#[test]
fn fields_left_out_keep_their_defaults() {
    assert_eq!(parse("").unwrap(), ConnectionPoolConfig::default());
    let config = parse(r#"checkout_validation = "2s""#).unwrap();
    assert_eq!(
        config.checkout_validation(),
        CheckoutValidation::IdleFor(Duration::from_secs(2))
    );
    assert_eq!(config.max_connections(), 10);
}

#[test]
fn invalid_settings_are_refused_naming_the_field() {
    let cases = [
        ("max_connections = 0", "max_connections"),
        (
            "min_connections = 5\nmax_connections = 2",
            "min_connections",
        ),
        (r#"acquire_timeout = "0s""#, "acquire_timeout"),
        (r#"acquire_timeout = "30""#, "unit"),
        (r#"idle_timeout = "ten minutes""#, "invalid duration"),
        ("acquire_timeout = 30", "a duration with a unit"),
        (r#"maintenance = "tokio""#, "spawned"),
        ("max_conections = 3", "max_conections"),
    ];
    for (text, named) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(named), "{text:?}: {err}");
    }
}

#[test]
fn json_and_environment_style_strings_read_too() {
    let config: ConnectionPoolConfig =
        serde_json::from_str(r#"{"max_connections": 3, "leak_detection_threshold": "500ms"}"#)
            .unwrap();
    assert_eq!(config.max_connections(), 3);
    assert_eq!(
        config.leak_detection_threshold(),
        Some(Duration::from_millis(500))
    );
}

/// A service's file with a `[pool]` and a `[database]` section makes a working pool.
#[cfg(all(feature = "rusqlite", feature = "blocking"))]
#[test]
fn a_pool_and_its_adapter_from_one_file() {
    use nexus_pool::ConnectionPool;
    use nexus_pool::adapters::settings::SqliteSettings;

    #[derive(Deserialize)]
    struct Service {
        pool: ConnectionPoolConfig,
        database: SqliteSettings,
    }
    let dir = std::env::temp_dir().join(format!("nexus-pool-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.db");
    let text = format!(
        "[pool]\nmax_connections = 2\nacquire_timeout = \"2s\"\n\n[database]\npath = {:?}\nbusy_timeout = \"250ms\"\n",
        file.display().to_string()
    );
    let service: Service = toml::from_str(&text).unwrap();
    let pool = ConnectionPool::new(service.database.factory(), service.pool);
    let conn = pool.acquire_blocking().unwrap();
    let answer: i64 = conn
        .query_row("SELECT 41 + 1", [], |row| row.get(0))
        .unwrap();
    assert_eq!(answer, 42);
    let busy: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
        .unwrap();
    assert_eq!(busy, 250);
    drop(conn);
    pool.close_blocking();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The PostgreSQL adapters' settings: reset mode and statement cache
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "postgres")]
use nexus_pool::adapters::postgres::PostgresReset;
#[cfg(all(feature = "tokio-postgres", not(feature = "postgres")))]
use nexus_pool::adapters::tokio_postgres::PostgresReset;

/// `fields` as the `[database]` section of a file.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
fn database<S: serde::de::DeserializeOwned>(fields: &str) -> Result<S, String> {
    #[derive(Deserialize)]
    struct Section<S> {
        database: S,
    }
    toml::from_str::<Section<S>>(&format!("[database]\n{fields}"))
        .map(|f| f.database)
        .map_err(|e| e.to_string())
}

/// What a factory made from settings was given: its reset mode and its statement cache's bound.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
type Made = (PostgresReset, usize);

/// The `url` line of every `[database]` section below.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
const PG_SETTINGS_URL: &str = r#"url = "postgres://app@127.0.0.1:6432/orders""#;

/// Every reset mode by its name, the statement cache's bound (0 included), and both left out
/// (`defaults`, what the factory has without settings), as `made` finds them on the factory.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
fn pg_fields_reach_the_factory<S: serde::de::DeserializeOwned>(
    made: impl Fn(S) -> Made,
    defaults: Made,
) {
    let made_of =
        |fields: &str| made(database::<S>(&format!("{PG_SETTINGS_URL}\n{fields}")).expect(fields));
    assert_eq!(
        made_of("reset_mode = \"transaction_pooler\"\nstatement_cache_capacity = 4"),
        (PostgresReset::TransactionPooler, 4)
    );
    for (name, mode) in [
        ("clean", PostgresReset::Clean),
        ("discard_all", PostgresReset::DiscardAll),
        ("rollback", PostgresReset::Rollback),
        ("transaction_pooler", PostgresReset::TransactionPooler),
    ] {
        assert_eq!(made_of(&format!("reset_mode = {name:?}")).0, mode, "{name}");
    }
    assert_eq!(
        made_of("statement_cache_capacity = 0").1,
        0,
        "0 (caching off) is taken as written"
    );
    assert_eq!(made_of(""), defaults, "left out: the adapter's defaults");
}

/// A reset mode the adapters do not know is refused naming the accepted ones; a value of the
/// wrong kind or a misspelt field, naming the field.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
fn pg_wrong_fields_are_refused<S: serde::de::DeserializeOwned + std::fmt::Debug>() {
    for unknown in ["transaction", "TransactionPooler", "discard"] {
        let text = format!("{PG_SETTINGS_URL}\nreset_mode = {unknown:?}");
        let err = database::<S>(&text).expect_err(&text);
        assert!(err.contains("unknown variant"), "{text:?}: {err}");
        assert!(err.contains("reset_mode"), "{text:?}: {err}");
        for accepted in ["clean", "discard_all", "rollback", "transaction_pooler"] {
            assert!(err.contains(accepted), "{text:?}: {err}");
        }
    }
    let cases = [
        ("reset_mode = 1", "reset_mode"),
        ("statement_cache_capacity = -1", "statement_cache_capacity"),
        (
            "statement_cache_capacity = \"4\"",
            "statement_cache_capacity",
        ),
        ("statement_cache = 4", "statement_cache"),
    ];
    for (fields, named) in cases {
        let text = format!("{PG_SETTINGS_URL}\n{fields}");
        let err = database::<S>(&text).expect_err(&text);
        assert!(err.contains(named), "{text:?}: {err}");
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_settings_set_the_reset_mode_and_the_statement_cache() {
    use nexus_pool::adapters::postgres::PostgresConnectionFactory;
    use nexus_pool::adapters::settings::PostgresSettings;

    let plain = PostgresConnectionFactory::new("postgres://app@127.0.0.1:6432/orders").unwrap();
    pg_fields_reach_the_factory(
        |settings: PostgresSettings| {
            let factory = settings.factory().unwrap();
            (
                factory.get_reset_mode(),
                factory.get_statement_cache_capacity(),
            )
        },
        (plain.get_reset_mode(), plain.get_statement_cache_capacity()),
    );
    pg_wrong_fields_are_refused::<PostgresSettings>();
}

#[cfg(feature = "tokio-postgres")]
#[test]
fn tokio_postgres_settings_set_the_reset_mode_and_the_statement_cache() {
    use nexus_pool::adapters::settings::TokioPostgresSettings;
    use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;

    let plain =
        TokioPostgresConnectionFactory::new("postgres://app@127.0.0.1:6432/orders").unwrap();
    pg_fields_reach_the_factory(
        |settings: TokioPostgresSettings| {
            let factory = settings.factory().unwrap();
            (
                factory.get_reset_mode(),
                factory.get_statement_cache_capacity(),
            )
        },
        (plain.get_reset_mode(), plain.get_statement_cache_capacity()),
    );
    pg_wrong_fields_are_refused::<TokioPostgresSettings>();
}

/// Pools built from a file with `reset_mode = "transaction_pooler"`, behind PgBouncer in
/// transaction mode: a connection left inside a transaction comes back outside one (reset, not
/// replaced), and the connections know the pooler is there (`prepare_cached` refused) and took
/// the cache's bound.
#[cfg(all(
    feature = "blocking",
    any(feature = "postgres", feature = "tokio-postgres")
))]
mod behind_pgbouncer {
    use nexus_pool::ConnectionPoolConfig;
    use serde::Deserialize;

    use crate::common::servers::{pgbouncer_tx_url, server_shared};

    /// A service's file: the pool's settings and the adapter's, `S`.
    #[derive(Deserialize)]
    struct Service<S> {
        pool: ConnectionPoolConfig,
        database: S,
    }

    /// The file of a service behind PgBouncer in transaction mode at `url`: one connection, the
    /// reset mode for the pooler and a statement cache bound of 4.
    fn service<S: serde::de::DeserializeOwned>(url: &str) -> Service<S> {
        let text = format!(
            "[pool]\nmax_connections = 1\nacquire_timeout = \"10s\"\n\n\
             [database]\nurl = {url:?}\nreset_mode = \"transaction_pooler\"\n\
             statement_cache_capacity = 4\n"
        );
        toml::from_str(&text).unwrap()
    }

    /// A query that answers `t` outside a transaction block and `f` inside one.
    const OUTSIDE_BLOCK: &str = "SELECT transaction_timestamp() = statement_timestamp()";

    /// The first value of the first row of a simple query's answer.
    fn first_value(messages: &[postgres::SimpleQueryMessage]) -> Option<String> {
        messages.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
    }

    /// The one connection was reset and lent again, not replaced.
    fn reused_not_replaced(stats: &nexus_pool::PoolStatistics) {
        assert_eq!(stats.created, 1, "{stats:?}");
        assert_eq!(stats.destroyed.total(), 0, "{stats:?}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_pool_from_settings() {
        use nexus_pool::adapters::postgres::PrepareCachedError;
        use nexus_pool::adapters::settings::PostgresSettings;

        let test = "config_file::behind_pgbouncer::postgres_pool_from_settings";
        let Some(url) = pgbouncer_tx_url(test) else {
            return;
        };
        let _server = server_shared();
        let service: Service<PostgresSettings> = service(&url);
        let pool = service
            .database
            .factory()
            .unwrap()
            .pool_builder()
            .config(service.pool)
            .build()
            .unwrap();

        let mut conn = pool.acquire_blocking().unwrap();
        conn.batch_execute("BEGIN; SELECT 1").unwrap();
        let inside = conn.simple_query(OUTSIDE_BLOCK).unwrap();
        assert_eq!(
            first_value(&inside).as_deref(),
            Some("f"),
            "inside the block"
        );
        drop(conn); // left inside the transaction

        let mut conn = pool.acquire_blocking().unwrap();
        let outside = conn.simple_query(OUTSIDE_BLOCK).unwrap();
        assert_eq!(
            first_value(&outside).as_deref(),
            Some("t"),
            "the next user is not in a transaction"
        );
        assert!(
            matches!(
                conn.prepare_cached("SELECT 1"),
                Err(PrepareCachedError::Refused)
            ),
            "the connections know a transaction pooler is in front"
        );
        assert_eq!(conn.statement_cache().capacity(), 4);
        drop(conn);
        reused_not_replaced(&pool.statistics());
        pool.close_blocking();
    }

    #[cfg(feature = "tokio-postgres")]
    #[test]
    fn tokio_postgres_pool_from_settings() {
        use futures_lite::future::block_on;
        use nexus_pool::adapters::settings::TokioPostgresSettings;
        use nexus_pool::adapters::tokio_postgres::TokioPostgresError;

        let test = "config_file::behind_pgbouncer::tokio_postgres_pool_from_settings";
        let Some(url) = pgbouncer_tx_url(test) else {
            return;
        };
        let _server = server_shared();
        let service: Service<TokioPostgresSettings> = service(&url);
        let pool = service
            .database
            .factory()
            .unwrap()
            .pool_builder()
            .config(service.pool)
            .build()
            .unwrap();

        let conn = pool.acquire_blocking().unwrap();
        block_on(conn.batch_execute("BEGIN; SELECT 1")).unwrap();
        let inside = block_on(conn.simple_query(OUTSIDE_BLOCK)).unwrap();
        assert_eq!(
            first_value(&inside).as_deref(),
            Some("f"),
            "inside the block"
        );
        drop(conn); // left inside the transaction

        let conn = pool.acquire_blocking().unwrap();
        let outside = block_on(conn.simple_query(OUTSIDE_BLOCK)).unwrap();
        assert_eq!(
            first_value(&outside).as_deref(),
            Some("t"),
            "the next user is not in a transaction"
        );
        assert!(
            matches!(
                block_on(conn.prepare_cached("SELECT 1")),
                Err(TokioPostgresError::StatementCacheRefused)
            ),
            "the connections know a transaction pooler is in front"
        );
        assert_eq!(conn.statement_cache().capacity(), 4);
        drop(conn);
        reused_not_replaced(&pool.statistics());
        pool.close_blocking();
    }
}
