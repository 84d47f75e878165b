//! MySQL or MariaDB from plain threads through the blocking `mysql` adapter: bank transfers in
//! transactions, and a check that the money adds up.
//! `cargo run --example mysql --features mysql`.
//!
//! Eight threads each make 50 transfers between accounts, each in a transaction that locks both
//! rows in id order. Every tenth handler returns early, leaving its transaction open with a row
//! inserted; the pool rolls it back before the connection is lent again
//! (`COM_RESET_CONNECTION`), so no later user commits it. (Roll back on your own error paths
//! all the same: until the connection is reused, an open transaction keeps its locks.)
//! Then it prints the total, which never changes, and what the pool saw. The server is
//! `NEXUS_POOL_MYSQL_URL`, or `mysql://root@127.0.0.1:3306/test`.

use std::error::Error;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::mysql::{MysqlConnectionFactory, connection_lost};

const THREADS: usize = 8;
const TRANSFERS_EACH: usize = 50;
const ACCOUNTS: u32 = 10;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("NEXUS_POOL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let table = format!("nexus_pool_example_{}", std::process::id());

    let pool = MysqlConnectionFactory::new(&url)?
        .pool_builder() // with MysqlHealthCheck: every reuse is reset first
        .config(
            ConnectionPoolConfig::builder()
                .name("mysql-example")
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .build()?,
        )
        .build()?;

    let mut conn = pool.acquire_blocking()?;
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"
    ))?;
    conn.query_drop(format!(
        "CREATE TABLE {table}_holds (thread INT, n INT, PRIMARY KEY (thread, n)) ENGINE=InnoDB"
    ))?;
    conn.exec_batch(
        format!("INSERT INTO {table} VALUES (?, 1000)"),
        (0..ACCOUNTS).map(|id| (id,)),
    )?;
    drop(conn);

    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, table) = (pool.clone(), table.clone());
            std::thread::spawn(move || -> Result<(), String> {
                for n in 0..TRANSFERS_EACH {
                    let from = ((t * 7 + n * 3) as u32) % ACCOUNTS;
                    let to = (from + 1 + (n as u32) % (ACCOUNTS - 1)) % ACCOUNTS;
                    let mut conn = pool.acquire_blocking().map_err(|e| e.to_string())?;
                    let result = (|| -> mysql::Result<()> {
                        conn.query_drop("START TRANSACTION")?;
                        if n % 10 == 9 {
                            // A handler that returns early, half-way through its transaction:
                            // the pool rolls it back (COM_RESET_CONNECTION) before the
                            // connection is lent again, so the next user does not commit it.
                            conn.exec_drop(
                                format!("INSERT INTO {table}_holds VALUES (?, ?)"),
                                (t, n),
                            )?;
                            return Ok(());
                        }
                        for id in [from.min(to), from.max(to)] {
                            conn.exec_drop(
                                format!("SELECT balance FROM {table} WHERE id = ? FOR UPDATE"),
                                (id,),
                            )?;
                        }
                        let debit =
                            format!("UPDATE {table} SET balance = balance - 10 WHERE id = ?");
                        conn.exec_drop(debit, (from,))?;
                        let credit =
                            format!("UPDATE {table} SET balance = balance + 10 WHERE id = ?");
                        conn.exec_drop(credit, (to,))?;
                        conn.query_drop("COMMIT")
                    })();
                    if let Err(e) = result {
                        if connection_lost(&e) {
                            conn.mark_broken();
                        }
                        return Err(e.to_string());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker panicked")?;
    }
    let elapsed = started.elapsed();

    let mut conn = pool.acquire_blocking()?;
    let total: Option<i64> = conn.query_first(format!("SELECT SUM(balance) FROM {table}"))?;
    conn.query_drop(format!("DROP TABLE {table}"))?;
    drop(conn);
    assert_eq!(
        total,
        Some(i64::from(ACCOUNTS) * 1000),
        "money was made or lost"
    );

    let stats = pool.statistics();
    let handlers = THREADS * TRANSFERS_EACH;
    println!(
        "{handlers} handlers from {THREADS} threads in {elapsed:.2?}: {} transfers committed, {} \
         left open and rolled back by the pool; total balance {} (unchanged)",
        handlers - handlers / 10,
        handlers / 10,
        total.unwrap_or_default()
    );
    println!(
        "connections created: {}, acquires: {}, acquire wait p99: {:?}",
        stats.created, stats.acquired, stats.acquire_wait.p99
    );
    pool.close_blocking();
    Ok(())
}
