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
