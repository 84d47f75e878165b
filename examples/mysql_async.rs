//! MySQL or MariaDB from async code through the `mysql_async` adapter: tokio tasks and a plain
//! thread share one pool. `cargo run --example mysql_async --features mysql-async`.
//!
//! Sixteen tokio tasks each record 25 page views with a prepared `INSERT .. ON DUPLICATE KEY
//! UPDATE`; each view also sets a session variable and creates a temporary table, which the pool
//! clears (`COM_RESET_CONNECTION`) before the connection is lent again, so every view finds a
//! clean session. A plain thread that never saw tokio reads the totals with
//! `acquire_blocking`. Then it prints what the pool saw. The server is `NEXUS_POOL_MYSQL_URL`, or
//! `mysql://root@127.0.0.1:3306/test`.

use std::error::Error;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;

const TASKS: usize = 16;
const VIEWS_EACH: usize = 25;
const PAGES: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("NEXUS_POOL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let table = format!("nexus_pool_example_views_{}", std::process::id());

    // Built inside tokio's multi-threaded runtime: the connections' sockets are served by it.
    let pool = MysqlAsyncConnectionFactory::new(&url)?
        .pool_builder() // with MysqlAsyncHealthCheck: every reuse is reset first
        .config(
            ConnectionPoolConfig::builder()
                .name("mysql-async-example")
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .build()?,
        )
        .build()?;

    pool.acquire()
        .await?
        .query_drop(format!(
            "CREATE TABLE {table} (page INT PRIMARY KEY, views BIGINT NOT NULL)"
        ))
        .await?;

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (pool, table) = (pool.clone(), table.clone());
            tokio::spawn(async move {
                for n in 0..VIEWS_EACH {
                    let mut conn = pool.acquire().await?;
                    // What the last user set is gone: a clean session every time.
                    let leftover: Option<Option<i64>> = conn.query_first("SELECT @view").await?;
                    assert_eq!(leftover, Some(None), "a session variable survived");
                    conn.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
                        .await?;
                    conn.exec_drop("SET @view = ?", (n,)).await?;
                    conn.exec_drop(
                        format!(
                            "INSERT INTO {table} VALUES (?, 1) \
                             ON DUPLICATE KEY UPDATE views = views + 1"
                        ),
                        ((t + n) % PAGES,),
                    )
                    .await?;
                }
                Ok::<(), Box<dyn Error + Send + Sync>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();

    // A plain thread, no runtime: the same pool, the blocking facade.
    let reader = {
        let (pool, table) = (pool.clone(), table.clone());
        std::thread::spawn(move || -> Result<i64, String> {
            let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
            let sql = format!("SELECT CAST(SUM(views) AS SIGNED) FROM {table}");
            let total: Option<i64> =
                futures_lite::future::block_on(conn.query_first(sql)).map_err(|e| e.to_string())?;
            Ok(total.unwrap_or_default())
        })
    };
    let total = reader.join().expect("the reader panicked")?;
    assert_eq!(total, (TASKS * VIEWS_EACH) as i64);

    pool.acquire()
        .await?
        .query_drop(format!("DROP TABLE {table}"))
        .await?;
    let stats = pool.statistics();
    println!("{total} views from {TASKS} tasks in {elapsed:.2?}, every session clean");
    println!(
        "connections created: {}, acquires: {}, acquire wait p99: {:?}",
        stats.created, stats.acquired, stats.acquire_wait.p99
    );
    pool.close().await;
    Ok(())
}
