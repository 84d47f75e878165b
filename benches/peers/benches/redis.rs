//! `PING` against a real Redis (issue 17): 16 and 64 tokio tasks sharing a pool of 8, nexus-pool's
//! **shipped async Redis adapter built as the README says** next to deadpool-redis and bb8-redis,
//! each with its documented defaults.
//!
//! The server is read from `NEXUS_POOL_REDIS_URL` (e.g. `redis://127.0.0.1:6379/`); unset, the
//! bench prints one line and skips.
//!
//! Each task loops for a fixed duration: acquire, `PING` (one round trip), release; the whole
//! operation is timed. Settings:
//! - nexus redis-async adapter: `RedisAsyncConnectionFactory::new(url)?.pool_builder()` with a
//!   config of 8 connections, built inside the bench's runtime: its health check attached (one
//!   `RESET` pipeline on every reuse), the default validation (`PING` after 500 ms idle).
//! - deadpool-redis: its defaults (`UNWATCH` and `PING` in one pipeline on every recycle).
//! - bb8-redis: its defaults (`test_on_check_out`: a `PING` on every checkout).
//!
//! Each pool opens a socket per slot (a multiplexed connection per slot, as all three do); the
//! same max size (8) and a 30 s acquire timeout everywhere. `NEXUS_POOL_REDIS_URL=... cargo bench
//! --bench redis -- [--quick] [--out DIR]`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::{AsyncSource, Run, Variant, compare, run_async};
use common::{Args, Targets};
use nexus_pool::adapters::redis_async::RedisAsyncConnectionFactory;
use nexus_pool::{ConnectionPool, ConnectionPoolConfig};

const SIZE: usize = 8;
const TIMEOUT: Duration = common::ACQUIRE_TIMEOUT;

impl AsyncSource for ConnectionPool<RedisAsyncConnectionFactory> {
    async fn op(&self) {
        let mut c = self.acquire().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
        assert_eq!(pong, "PONG");
    }
}

impl AsyncSource for deadpool_redis::Pool {
    async fn op(&self) {
        let mut c = self.get().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
        assert_eq!(pong, "PONG");
    }
}

impl AsyncSource for bb8::Pool<bb8_redis::RedisConnectionManager> {
    async fn op(&self) {
        let mut c = self.get().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *c).await.unwrap();
        assert_eq!(pong, "PONG");
    }
}

fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for (n, workers) in [("x16", 16), ("x64", 64)] {
        let name = |kind: &str| -> &'static str { format!("{kind} {n}").leak() };
        v.push(Variant {
            name: name("nexus redis-async adapter"),
            settings: "README: pool_builder()",
            workers,
            peer: Some(name("deadpool-redis")),
        });
        v.push(Variant {
            name: name("nexus redis-async adapter (vs bb8)"),
            settings: "the same pool, compared with bb8-redis",
            workers,
            peer: Some(name("bb8-redis")),
        });
        v.push(Variant {
            name: name("deadpool-redis"),
            settings: "defaults: UNWATCH + PING on recycle",
            workers,
            peer: None,
        });
        v.push(Variant {
            name: name("bb8-redis"),
            settings: "defaults: PING on checkout",
            workers,
            peer: None,
        });
    }
    v
}

fn run_variant(rt: &tokio::runtime::Runtime, v: &Variant, url: &str, dur: Duration) -> Run {
    let kind = v.name.rsplit_once(' ').map_or(v.name, |(k, _)| k);
    match kind {
        "nexus redis-async adapter" | "nexus redis-async adapter (vs bb8)" => {
            // As the README builds it, inside the application's runtime.
            let _in_runtime = rt.enter();
            let pool = RedisAsyncConnectionFactory::new(url)
                .unwrap()
                .pool_builder()
                .config(
                    ConnectionPoolConfig::builder()
                        .max_connections(SIZE)
                        .acquire_timeout(TIMEOUT)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            let pool = Arc::new(pool);
            let r = run_async(rt, &pool, v.workers, dur);
            rt.block_on(pool.close());
            r
        }
        "deadpool-redis" => {
            let mut cfg = deadpool_redis::Config::from_url(url);
            let mut pool_cfg = deadpool_redis::PoolConfig::new(SIZE);
            pool_cfg.timeouts.wait = Some(TIMEOUT);
            cfg.pool = Some(pool_cfg);
            let pool = cfg
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .unwrap();
            let pool = Arc::new(pool);
            let r = run_async(rt, &pool, v.workers, dur);
            pool.close();
            r
        }
        "bb8-redis" => {
            let pool = rt.block_on(async {
                let mgr = bb8_redis::RedisConnectionManager::new(url).unwrap();
                bb8::Pool::builder()
                    .max_size(SIZE as u32)
                    .connection_timeout(TIMEOUT)
                    .build(mgr)
                    .await
                    .unwrap()
            });
            run_async(rt, &Arc::new(pool), v.workers, dur)
        }
        other => unreachable!("unknown variant {other}"),
    }
}

fn main() {
    let args = Args::parse();
    let Ok(url) = std::env::var("NEXUS_POOL_REDIS_URL") else {
        println!("redis: skipped, NEXUS_POOL_REDIS_URL is not set");
        let mut tg = Targets::default();
        tg.skip(
            "Redis PING: the async adapter ≥ 0.95x deadpool-redis and bb8-redis",
            "NEXUS_POOL_REDIS_URL unset",
        );
        args.write(
            "redis",
            "## Redis `PING`\n\nSkipped: `NEXUS_POOL_REDIS_URL` was not set.\n",
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
        "# redis PING, 16 and 64 tasks, pool of {SIZE} ({} mode: {rounds} rounds of {dur:?})",
        args.mode()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let intro = format!(
        "## Redis `PING`: the async adapter\n\n\
Redis on this machine (loopback). 16 or 64 tokio tasks share a pool of {SIZE}; each loops \
acquire, `PING`, release. The nexus rows are the shipped `redis-async` adapter built as the \
README says (`RedisAsyncConnectionFactory::new(url)?.pool_builder()`, health check attached: \
one `RESET` pipeline on every reuse); the peers keep their defaults (deadpool-redis sends \
`UNWATCH` and `PING` on every recycle, bb8-redis a `PING` on every checkout). The nexus pool is \
run twice per round, once next to each peer."
    );
    compare(
        &args,
        "redis",
        &intro,
        &variants(),
        rounds,
        dur,
        |v, dur| run_variant(&rt, v, &url, dur),
    );
}
