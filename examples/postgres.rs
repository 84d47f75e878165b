//! PostgreSQL through one pool from plain threads and from async tasks, then a typed store on
//! it. Needs a running server: set NEXUS_POOL_PG_URL, for instance
//!
//! ```sh
//! NEXUS_POOL_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --example postgres --features store,tokio-postgres
//! ```

use std::time::Duration;

use futures_lite::future::block_on;
use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::tokio_postgres::{TokioPostgresConnectionFactory, connection_lost};
use nexus_pool::store::{NexusStore, PooledPostgresBackend};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Visit {
    page: String,
    millis: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("NEXUS_POOL_PG_URL") else {
        println!(
            "skipped: set NEXUS_POOL_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run this example"
        );
        return Ok(());
    };

    // The factory owns a small tokio runtime that serves every connection's socket, so the pool
    // works from threads that have no runtime and from any executor.
    let mut factory = TokioPostgresConnectionFactory::new(&url)?;
    factory.config_mut().application_name("nexus-pool-example");
    let pool = factory
        .pool_builder() // attaches the health check: every reuse is reset first
        .config(
            ConnectionPoolConfig::builder()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .build()?,
        )
        .build()
        .unwrap();

    // Plain threads.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || -> Result<i32, String> {
                let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
                match block_on(conn.query_one("SELECT $1::int * 10", &[&i])) {
                    Ok(row) => Ok(row.get(0)),
                    Err(e) => {
                        if connection_lost(&e) {
                            conn.mark_broken(); // the session is gone: never reuse it
                        }
                        Err(e.to_string())
                    }
                }
            })
        })
        .collect();
    for t in threads {
        println!("thread says {}", t.join().expect("thread")?);
    }

    // Tasks on the caller's own tokio runtime (smol or async-std would do as well).
    let runtime = tokio::runtime::Runtime::new()?;
    let version: String = runtime.block_on(async {
        let conn = pool.acquire().await?;
        let row = conn.query_one("SELECT version()", &[]).await?;
        Ok::<_, Box<dyn std::error::Error>>(row.get(0))
    })?;
    println!("server: {version}");

    // A typed store on a table of its own.
    let table = format!("nexus_pool_example_{}", std::process::id());
    block_on(async {
        let visits: NexusStore<Visit, u64> =
            NexusStore::new(PooledPostgresBackend::new(pool.clone(), &table).await?);
        visits
            .save_many(&[
                (
                    1,
                    Visit {
                        page: "/".into(),
                        millis: 12,
                    },
                ),
                (
                    2,
                    Visit {
                        page: "/docs".into(),
                        millis: 30,
                    },
                ),
            ])
            .await?;
        for (id, visit) in visits.get_all().await? {
            println!("visit {id}: {} in {} ms", visit.page, visit.millis);
        }
        let conn = pool.acquire().await?;
        conn.batch_execute(&format!("DROP TABLE \"{table}\""))
            .await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;

    println!("pool: {:?}", pool.current_metrics());
    pool.close_blocking();
    Ok(())
}
