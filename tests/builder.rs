//! One builder: every setting on `ConnectionPool::builder` itself, validated as the config
//! builder validates it, and the health check a factory supplies attached by every way of
//! building.
#![cfg(feature = "blocking")]

mod common;

use std::time::Duration;

use common::ScriptedFactory;
use nexus_pool::{
    CheckoutValidation, ConnectionPool, ConnectionPoolConfig, MaintenanceMode, PoolError,
};

#[test]
fn every_setting_is_one_level_deep() {
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .name("orders")
        .min_connections(0)
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .max_lifetime(None)
        .health_check_interval(Duration::from_secs(10))
        .checkout_validation(CheckoutValidation::Always)
        .create_timeout(Duration::from_secs(2))
        .check_timeout(Duration::from_secs(1))
        .destroy_timeout(Duration::from_millis(500))
        .max_concurrent_creates(4)
        .create_backoff(Duration::from_millis(20), Duration::from_secs(1))
        .max_lifetime_jitter(Duration::from_secs(7))
        .leak_detection_threshold(Duration::from_secs(60))
        .max_connections_ceiling(32)
        .maintenance(MaintenanceMode::Thread)
        .detailed_statistics(true)
        .build()
        .unwrap();
    let expected = ConnectionPoolConfig::builder()
        .name("orders")
        .min_connections(0)
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .max_lifetime(None)
        .health_check_interval(Duration::from_secs(10))
        .checkout_validation(CheckoutValidation::Always)
        .create_timeout(Duration::from_secs(2))
        .check_timeout(Duration::from_secs(1))
        .destroy_timeout(Duration::from_millis(500))
        .max_concurrent_creates(4)
        .create_backoff(Duration::from_millis(20), Duration::from_secs(1))
        .max_lifetime_jitter(Duration::from_secs(7))
        .leak_detection_threshold(Duration::from_secs(60))
        .max_connections_ceiling(32)
        .maintenance(MaintenanceMode::Thread)
        .detailed_statistics(true)
        .build()
        .unwrap();
    assert_eq!(pool.config(), &expected);
    assert_eq!(pool.current_metrics().max, 16);
}

/// A setting given after `config(..)` changes that setting only.
#[test]
fn settings_refine_a_config_passed_in() {
    let base = ConnectionPoolConfig::builder()
        .name("base")
        .max_connections(4)
        .build()
        .unwrap();
    let pool = ConnectionPool::builder(ScriptedFactory::default())
        .config(base)
        .max_connections(8)
        .build()
        .unwrap();
    assert_eq!(pool.config().name(), "base");
    assert_eq!(pool.config().max_connections(), 8);
}

#[test]
fn invalid_settings_are_refused_naming_the_field_as_the_config_builder_does() {
    let pool_err = ConnectionPool::builder(ScriptedFactory::default())
        .min_connections(5)
        .max_connections(2)
        .build()
        .unwrap_err();
    let config_err = ConnectionPoolConfig::builder()
        .min_connections(5)
        .max_connections(2)
        .build()
        .unwrap_err();
    assert_eq!(pool_err.field(), "min_connections");
    assert_eq!(pool_err.to_string(), config_err.to_string());

    let connected = futures_lite::future::block_on(
        ConnectionPool::builder(ScriptedFactory::default())
            .acquire_timeout(Duration::ZERO)
            .build_connected(),
    );
    match connected {
        Err(PoolError::Config(err)) => assert_eq!(err.field(), "acquire_timeout"),
        other => panic!("expected the config error, got {:?}", other.map(|_| ())),
    }
}
