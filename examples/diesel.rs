//! Diesel on PostgreSQL through the pool: a schema from `table!`, writes from a pool of worker
//! threads, and the same pool used from async code inside a blocking section.
//!
//! ```sh
//! NEXUS_POOL_PG_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --example diesel --features diesel-postgres
//! ```
//!
//! Without `NEXUS_POOL_PG_URL` it uses the local server at that address.

use std::error::Error;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use nexus_pool::adapters::diesel::{DieselConnectionFactory, connection_lost};

diesel::table! {
    nexus_example_visits (id) {
        id -> Integer,
        page -> Text,
    }
}

use nexus_example_visits::dsl::{nexus_example_visits as visits, page};

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let url = std::env::var("NEXUS_POOL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = DieselConnectionFactory::<PgConnection>::new(&url)
        .pool_builder()
        .max_connections(4)
        .build()?;

    pool.with_connection_blocking(|conn| -> Result<(), BoxError> {
        conn.batch_execute(
            "DROP TABLE IF EXISTS nexus_example_visits; \
             CREATE TABLE nexus_example_visits (id SERIAL PRIMARY KEY, page TEXT NOT NULL)",
        )?;
        Ok(())
    })?;

    // Eight worker threads share four connections; each write is a Diesel transaction.
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let pool = pool.clone();
            std::thread::spawn(move || -> Result<(), BoxError> {
                for i in 0..25 {
                    let mut conn = pool.acquire_blocking()?;
                    let written = conn.transaction(|conn| {
                        diesel::insert_into(visits)
                            .values(page.eq(format!("/worker/{worker}/{i}")))
                            .execute(conn)
                    });
                    if let Err(e) = written {
                        if connection_lost(&e) {
                            conn.mark_broken(); // the session is gone: never reuse it
                        }
                        return Err(e.into());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker panicked")?;
    }

    // From async code: the Diesel call runs inside a blocking section (here a plain thread;
    // tokio's `spawn_blocking` or smol's `unblock` in a real service).
    let count = futures_lite::future::block_on(async {
        let pool = pool.clone();
        let section = std::thread::spawn(move || {
            pool.with_connection_blocking(|conn| -> Result<i64, BoxError> {
                Ok(visits.count().get_result(&mut **conn)?)
            })
        });
        section.join().expect("the blocking section panicked")
    })?;
    println!("{count} visits written by 8 threads through 4 pooled connections");
    assert_eq!(count, 200);

    let metrics = pool.current_metrics();
    println!(
        "pool: total {}, idle {}, active {}",
        metrics.total, metrics.idle, metrics.active
    );
    pool.with_connection_blocking(|conn| -> Result<(), BoxError> {
        conn.batch_execute("DROP TABLE nexus_example_visits")?;
        Ok(())
    })?;
    pool.close_blocking();
    Ok(())
}
