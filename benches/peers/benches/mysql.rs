//! `SELECT 1` against a real MySQL or MariaDB (issue 17): 16 and 64 workers sharing a pool of 8,
//! nexus-pool's **shipped adapters built as the README says** next to the pool each client crate
//! ships (`mysql::Pool`, `mysql_async::Pool`), each with its documented defaults.
//!
//! The server is read from `NEXUS_POOL_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`);
//! unset, the bench prints one line and skips.
//!
//! Each worker loops for a fixed duration: acquire, `query_first("SELECT 1")` (one round trip),
//! release; the whole operation is timed. Blocking pools run their workers as OS threads, async
//! pools as tasks on a tokio multi-thread runtime. Settings:
//! - nexus mysql adapter: `MysqlConnectionFactory::new(url)?.pool_builder()` with a config of 8
//!   connections: its health check attached (`COM_RESET_CONNECTION` on every reuse), the default
//!   validation (`COM_PING` after 500 ms idle).
//! - `mysql::Pool`: its defaults (`reset_connection`: `COM_RESET_CONNECTION` on every return;
//!   `check_health`: `COM_PING` on every checkout), 8 connections.
//! - nexus mysql_async adapter: `MysqlAsyncConnectionFactory::new(url)?.pool_builder()`, built
//!   inside the bench's runtime (as in a `#[tokio::main]` app), 8 connections, its health check.
//! - `mysql_async::Pool`: its defaults (`reset_connection` on every return, done by its recycler
//!   task), 8 connections.
//!
//! Both peers are given `PoolConstraints::new(8, 8)` (their default is 10 to 100); a 30 s
//! acquire timeout everywhere. `NEXUS_POOL_MYSQL_URL=... cargo bench --bench mysql -- [--quick]
//! [--out DIR]`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::{AsyncSource, Run, SyncSource, Variant, compare, run_async, run_threads};
use common::{Args, Targets};
use mysql::prelude::Queryable as _;
use mysql_async::prelude::Queryable as _;
use nexus_pool::adapters::mysql::MysqlConnectionFactory;
use nexus_pool::adapters::mysql_async::MysqlAsyncConnectionFactory;
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};

const SIZE: usize = 8;
const TIMEOUT: Duration = common::ACQUIRE_TIMEOUT;

fn nexus_config() -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(SIZE)
        .acquire_timeout(TIMEOUT)
        .build()
        .expect("valid nexus config")
}

impl SyncSource for ConnectionPool<MysqlConnectionFactory> {
    fn op(&self) {
        let mut c = self.acquire_blocking().unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
}

impl SyncSource for mysql::Pool {
    fn op(&self) {
        let mut c = self.try_get_conn(TIMEOUT).unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
}

impl AsyncSource for ConnectionPool<MysqlAsyncConnectionFactory> {
    async fn op(&self) {
        let mut c = self.acquire().await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
}

impl AsyncSource for mysql_async::Pool {
    async fn op(&self) {
        let mut c = self.get_conn().await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
}

fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for (n, workers) in [("x16", 16), ("x64", 64)] {
        let name = |kind: &str| -> &'static str { format!("{kind} {n}").leak() };
        v.push(Variant {
            name: name("nexus mysql adapter"),
            settings: "README: pool_builder()",
            workers,
            peer: Some(name("mysql::Pool")),
        });
        v.push(Variant {
            name: name("mysql::Pool"),
            settings: "defaults: reset on return, ping on checkout",
            workers,
            peer: None,
        });
        v.push(Variant {
            name: name("nexus mysql_async adapter"),
            settings: "README: pool_builder()",
            workers,
            peer: Some(name("mysql_async::Pool")),
        });
        v.push(Variant {
            name: name("mysql_async::Pool"),
            settings: "defaults: reset on return",
            workers,
            peer: None,
        });
    }
    v
}

fn run_variant(rt: &tokio::runtime::Runtime, v: &Variant, url: &str, dur: Duration) -> Run {
    let kind = v.name.rsplit_once(' ').map_or(v.name, |(k, _)| k);
    match kind {
        "nexus mysql adapter" => {
            let pool = MysqlConnectionFactory::new(url)
                .unwrap()
                .pool_builder()
                .config(nexus_config())
                .build()
                .unwrap();
            let r = run_threads(&pool, v.workers, dur);
            pool.close_blocking();
            r
        }
        "mysql::Pool" => {
            let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(url).unwrap())
                .pool_opts(
                    mysql::PoolOpts::default()
                        .with_constraints(mysql::PoolConstraints::new(SIZE, SIZE).unwrap()),
                );
            let pool = mysql::Pool::new(opts).unwrap();
            run_threads(&pool, v.workers, dur)
        }
        "nexus mysql_async adapter" => {
            // As the README builds it, inside the application's runtime.
            let _in_runtime = rt.enter();
            let pool = MysqlAsyncConnectionFactory::new(url)
                .unwrap()
                .pool_builder()
                .config(nexus_config())
                .build()
                .unwrap();
            let pool = Arc::new(pool);
            let r = run_async(rt, &pool, v.workers, dur);
            rt.block_on(pool.close());
            r
        }
        "mysql_async::Pool" => {
            let opts =
                mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url).unwrap())
                    .pool_opts(
                        mysql_async::PoolOpts::default().with_constraints(
                            mysql_async::PoolConstraints::new(SIZE, SIZE).unwrap(),
                        ),
                    );
            let pool = Arc::new(rt.block_on(async { mysql_async::Pool::new(opts) }));
            let r = run_async(rt, &pool, v.workers, dur);
            let pool = Arc::try_unwrap(pool).expect("the workers are done");
            rt.block_on(pool.disconnect()).unwrap();
            r
        }
        other => unreachable!("unknown variant {other}"),
    }
}

fn main() {
    let args = Args::parse();
    let Ok(url) = std::env::var("NEXUS_POOL_MYSQL_URL") else {
        println!("mysql: skipped, NEXUS_POOL_MYSQL_URL is not set");
        let mut tg = Targets::default();
        tg.skip(
            "MySQL SELECT 1: shipped adapters ≥ 0.95x their peers",
            "NEXUS_POOL_MYSQL_URL unset",
        );
        args.write(
            "mysql",
            "## MySQL/MariaDB `SELECT 1`\n\nSkipped: `NEXUS_POOL_MYSQL_URL` was not set.\n",
            &tg,
        );
        return;
    };
    let (rounds, dur) = if args.quick {
        (5, Duration::from_millis(700))
    } else {
        (5, Duration::from_secs(3))
    };
    println!(
        "# mysql SELECT 1, 16 and 64 workers, pool of {SIZE} ({} mode: {rounds} rounds of {dur:?})",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server: String = {
        let mut c = mysql::Conn::new(mysql::Opts::from_url(&url).unwrap())
            .unwrap_or_else(|e| panic!("cannot reach {url}: {e}"));
        c.query_first("SELECT VERSION()").unwrap().unwrap()
    };
    let intro = format!(
        "## MySQL/MariaDB `SELECT 1`: the shipped adapters\n\n\
{server} on this machine (loopback). 16 or 64 workers share a pool of {SIZE}; each loops \
acquire, `query_first(\"SELECT 1\")`, release. The nexus rows are the shipped adapters built as \
the README says (`Factory::new(url)?.pool_builder()`, health check attached: \
`COM_RESET_CONNECTION` on every reuse); the peers are the pools the client crates ship, with \
their defaults (`mysql::Pool` resets on return and pings on checkout, `mysql_async::Pool` resets \
on return in its recycler task) and 8 connections. Blocking pools run OS threads, async pools \
tokio tasks."
    );
    compare(
        &args,
        "mysql",
        &intro,
        &variants(),
        rounds,
        dur,
        |v, dur| run_variant(&rt, v, &url, dur),
    );
}
