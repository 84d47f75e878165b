//! Builds a pool from a TOML file: `cargo run --example config_file --features serde [FILE]`
//! (by default `examples/pool.toml`). A wrong value is refused with a message naming the field.

use std::error::Error;

use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};
use serde::Deserialize;

/// The service's configuration file: the pool's settings are one section of it.
#[derive(Deserialize)]
struct Settings {
    pool: ConnectionPoolConfig,
}

/// A stand-in for a database client, so that the example needs no server.
struct Sessions;

impl ConnectionFactory for Sessions {
    type Connection = String;
    type Error = std::io::Error;

    async fn create(&self) -> Result<String, std::io::Error> {
        Ok("session".to_owned())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pool.toml").to_owned());
    let text = std::fs::read_to_string(&path)?;
    let settings: Settings = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let config = settings.pool;
    println!(
        "{}: {} to {} connections, acquire_timeout {:?}, idle_timeout {:?}",
        config.name(),
        config.min_connections(),
        config.max_connections(),
        config.acquire_timeout(),
        config.idle_timeout(),
    );

    let pool = ConnectionPool::new(Sessions, config);
    let conn = pool.acquire_blocking()?;
    println!("lent {:?}; {:?}", *conn, pool.current_metrics());
    drop(conn);

    let wrong = "[pool]\nmax_connections = 0\n";
    match toml::from_str::<Settings>(wrong) {
        Ok(_) => unreachable!("max_connections 0 is refused"),
        Err(e) => println!("refused, as it should be:\n{e}"),
    }
    Ok(())
}
