//! Async Redis through the pool, where a pool is what you need: optimistic `WATCH`/`MULTI`
//! transactions and a `BLPOP` consumer, which a shared multiplexed connection cannot carry.
//! `cargo run --example redis_async --features redis-async`.
//!
//! Eight tokio tasks each add 25 to one counter with `WATCH`/`GET`/`MULTI`/`SET`/`EXEC`, retrying
//! when another task got there first, and push a job per increment; one task holds a connection
//! in `BLPOP` and consumes the jobs; a plain thread reads the result with `acquire_blocking`.
//! Then it prints what the pool saw. The server is `NEXUS_POOL_REDIS_URL`, or
//! `redis://127.0.0.1:6379/`.

use std::error::Error;
use std::time::{Duration, Instant};

use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
use redis::AsyncCommands;

const WRITERS: usize = 8;
const INCREMENTS_EACH: usize = 25;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("NEXUS_POOL_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let run = format!("nexus_pool_example:{}", std::process::id());
    let (counter, jobs) = (format!("{run}:counter"), format!("{run}:jobs"));

    // Built inside tokio's multi-threaded runtime: the connections' I/O runs on it.
    let pool = RedisAsyncConnectionFactory::new(&url)?
        .client_name("nexus-pool-example")
        .pool_builder()
        .config(
            ConnectionPoolConfig::builder()
                .name("redis-example")
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .build()?,
        )
        .build()?;

    let started = Instant::now();
    // The consumer holds one connection for as long as it blocks in BLPOP.
    let consumer = tokio::spawn({
        let (pool, jobs) = (pool.clone(), jobs.clone());
        async move {
            let mut conn = pool.acquire().await?;
            let mut consumed = 0;
            while consumed < WRITERS * INCREMENTS_EACH {
                let job: Option<(String, u64)> = conn.blpop(&jobs, 5.0).await?;
                match job {
                    Some(_) => consumed += 1,
                    None => break, // nothing for 5 s: the writers are gone
                }
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(consumed)
        }
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (pool, counter, jobs) = (pool.clone(), counter.clone(), jobs.clone());
            tokio::spawn(async move {
                let mut retries = 0u64;
                for _ in 0..INCREMENTS_EACH {
                    let mut conn = pool.acquire().await?;
                    loop {
                        // WATCH, read, and write only if nobody wrote in between: the three
                        // must go over one connection that nobody else uses meanwhile.
                        redis::cmd("WATCH")
                            .arg(&counter)
                            .exec_async(&mut *conn)
                            .await?;
                        let n: Option<u64> = conn.get(&counter).await?;
                        let done: Option<(String,)> = redis::pipe()
                            .atomic()
                            .set(&counter, n.unwrap_or(0) + 1)
                            .query_async(&mut *conn)
                            .await?;
                        if done.is_some() {
                            break;
                        }
                        retries += 1; // EXEC answered nil: someone else won, try again
                    }
                    let _: u64 = conn.rpush(&jobs, 1).await?;
                }
                Ok::<_, Box<dyn Error + Send + Sync>>(retries)
            })
        })
        .collect();

    let mut retries = 0;
    for writer in writers {
        retries += writer.await?.map_err(|e| e.to_string())?;
    }
    let consumed = consumer.await?.map_err(|e| e.to_string())?;
    let took = started.elapsed();

    // A plain thread, no runtime of its own, reads the result.
    let total: u64 = std::thread::spawn({
        let (pool, counter, jobs) = (pool.clone(), counter.clone(), jobs.clone());
        move || -> Result<u64, String> {
            let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
            futures_lite::future::block_on(async {
                let total: u64 = conn.get(&counter).await?;
                let _: u64 = conn.del(&[&counter, &jobs]).await?;
                Ok::<_, redis::RedisError>(total)
            })
            .map_err(|e| e.to_string())
        }
    })
    .join()
    .expect("reader thread")?;

    println!(
        "counter = {total} (expected {}), {retries} WATCH conflicts retried, {consumed} jobs \
         consumed by BLPOP, in {took:.2?}",
        WRITERS * INCREMENTS_EACH
    );
    let m = pool.current_metrics();
    let s = pool.statistics();
    println!("pool: {m:?}");
    println!(
        "created {}, acquired {}, timed out {}, wait p99 {:?}",
        s.created, s.acquired, s.timed_out, s.acquire_wait.p99
    );
    pool.close().await;
    Ok(())
}
