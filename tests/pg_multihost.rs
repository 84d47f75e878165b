//! Many hosts in one connection string, as a failover setup gives them: both PostgreSQL adapters
//! skip a host that refuses and one whose session is not what `target_session_attrs` asks for,
//! and connect to the next. Against the real server (`NEXUS_POOL_PG_URL`, else the local one);
//! the hosts that fail are loopback ports nobody listens on.
#![cfg(all(feature = "postgres", feature = "tokio-postgres", feature = "blocking"))]

mod adapter_support;

use adapter_support::{config, pg_url, refused_port};
use nexus_pool::adapters::postgres::PostgresConnectionFactory;
use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;

/// `url` with a refusing host put in front of its own, and `target_session_attrs=read-write`.
fn failover_url(url: &str) -> String {
    let config: postgres::Config = url.parse().expect("NEXUS_POOL_PG_URL parses");
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!(
        "host=127.0.0.1,{host} port={},{port} user={user} dbname={db} \
         target_session_attrs=read-write connect_timeout=5",
        refused_port()
    )
}

#[test]
fn the_tokio_postgres_adapter_connects_to_the_first_host_that_answers_read_write() {
    let Some(url) = pg_url("pg_multihost::tokio_postgres") else {
        return;
    };
    let pool = TokioPostgresConnectionFactory::new(&failover_url(&url))
        .unwrap()
        .pool_builder()
        .config(config(2))
        .build()
        .unwrap();
    for _ in 0..3 {
        let conn = pool.acquire_blocking().unwrap();
        let rows = futures_lite::future::block_on(conn.simple_query("SHOW transaction_read_only"))
            .unwrap();
        let read_only = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(read_only.as_deref(), Some("off"));
    }
    pool.close_blocking();
}

#[test]
fn the_postgres_adapter_connects_to_the_first_host_that_answers_read_write() {
    let Some(url) = pg_url("pg_multihost::postgres") else {
        return;
    };
    let pool = PostgresConnectionFactory::new(&failover_url(&url))
        .unwrap()
        .pool_builder()
        .config(config(2))
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut conn = pool.acquire_blocking().unwrap();
        let row = conn.query_one("SHOW transaction_read_only", &[]).unwrap();
        assert_eq!(row.get::<_, String>(0), "off");
    }
    pool.close_blocking();
}

/// A session that is read-only where read-write is asked for is skipped like a refused host:
/// with no other host, the create fails with the adapter's message.
#[test]
fn a_read_only_session_is_not_taken_for_read_write() {
    let Some(url) = pg_url("pg_multihost::read_only") else {
        return;
    };
    let config_url = format!(
        "{} options='-c default_transaction_read_only=on'",
        failover_url(&url)
    );
    let factory = TokioPostgresConnectionFactory::new(&config_url).unwrap();
    let started = futures_lite::future::block_on(
        factory
            .pool_builder()
            .config(adapter_support::start_one())
            .build_connected(),
    );
    let err = match started {
        Ok(_) => panic!("a read-only session was taken for read-write"),
        Err(err) => err,
    };
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(
        chain.iter().any(|t| t.contains("target_session_attrs")
            || t.contains("read-write")
            || t.contains("read only")),
        "{chain:#?}"
    );
}
