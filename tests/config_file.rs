//! `ConnectionPoolConfig` from configuration files (feature `serde`): every field as people write
//! it, defaults kept for fields left out, and the builder's validation with the field named.
#![cfg(feature = "serde")]

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
