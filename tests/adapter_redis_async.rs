//! The async Redis adapter against a real Redis (`NEXUS_POOL_REDIS_URL`, else the standard local
//! address), driven from tokio (both flavours), smol and plain threads.
#![cfg(all(feature = "redis-async", feature = "async", feature = "blocking"))]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_db::{admin, client, kill, prefix};
use common::servers::{redis_url, server_config, unique};
use common::wait::eventually;
use futures_lite::future::block_on;
use nexus_pool::ConnectionPool;
use nexus_pool::adapters::redis_async::{
    RedisAsyncConnection, RedisAsyncConnectionFactory, connection_lost,
};
use redis::{AsyncCommands, Commands, Connection};

/// The database the pools are configured for; tests use their own key prefixes in it.
const DB: i64 = 4;

type Pool = ConnectionPool<RedisAsyncConnectionFactory>;

/// A pool whose connections are named `name` (so `CLIENT LIST` can count them).
fn pool(url: &str, max: usize, name: &str) -> Pool {
    pool_of(factory(url, name), max)
}

fn factory(url: &str, name: &str) -> RedisAsyncConnectionFactory {
    RedisAsyncConnectionFactory::from_client(client(url, DB))
        .unwrap()
        .client_name(name)
}

fn pool_of(factory: RedisAsyncConnectionFactory, max: usize) -> Pool {
    factory
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

async fn client_id(conn: &mut RedisAsyncConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(conn)
        .await
        .unwrap()
}

async fn client_info(conn: &mut RedisAsyncConnection) -> String {
    redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(conn)
        .await
        .unwrap()
}

/// The ids of the connections the server has open under `name`.
fn named_clients(admin: &mut Connection, name: &str) -> HashSet<i64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).unwrap();
    let name_field = format!("name={name}");
    list.lines()
        .filter(|line| line.split(' ').any(|f| f == name_field))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .and_then(|id| id.parse().ok())
        })
        .collect()
}

/// The commands every facade test runs: a counter, read back on the next checkout.
async fn counter(pool: &Pool, key: &str) {
    let mut conn = pool.acquire().await.unwrap();
    let n: i64 = conn.incr(key, 2).await.unwrap();
    assert_eq!(n, 2);
    drop(conn);
    let mut conn = pool.acquire().await.unwrap();
    let n: i64 = conn.get(key).await.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_tokio_multi_thread() {
    let Some(url) = redis_url("adapter_redis_async::smoke_tokio_multi_thread") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "tokio_mt");
    let factory = factory(&url, &unique("nexus_pool_smoke"));
    assert!(
        !factory.has_own_runtime(),
        "the factory took the runtime it was built in"
    );
    let pool = pool_of(factory, 2);
    counter(&pool, &format!("{p}n")).await;
    pool.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn smoke_tokio_current_thread() {
    let Some(url) = redis_url("adapter_redis_async::smoke_tokio_current_thread") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "tokio_ct");
    let factory = factory(&url, &unique("nexus_pool_smoke"));
    assert!(
        factory.has_own_runtime(),
        "a current-thread runtime is not borrowed"
    );
    let pool = pool_of(factory, 2);
    counter(&pool, &format!("{p}n")).await;
    pool.close().await;
}

#[test]
fn smoke_smol() {
    let Some(url) = redis_url("adapter_redis_async::smoke_smol") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "smol");
    smol::block_on(async {
        let pool = pool(&url, 2, &unique("nexus_pool_smoke"));
        counter(&pool, &format!("{p}n")).await;
        pool.close().await;
    });
}

#[test]
fn smoke_blocking() {
    let Some(url) = redis_url("adapter_redis_async::smoke_blocking") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "blocking");
    let pool = pool(&url, 2, &unique("nexus_pool_smoke"));
    let key = format!("{p}n");
    // Plain threads that never saw a runtime.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, key) = (pool.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let mut conn = pool.acquire_blocking().unwrap();
                    let _: i64 = block_on(conn.incr(&key, 1)).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut conn = pool.acquire_blocking().unwrap();
    let n: i64 = block_on(conn.get(&key)).unwrap();
    assert_eq!(n, 40);
    drop(conn);
    pool.close_blocking();
}

#[test]
fn dirty_session_is_never_lent_dirty() {
    let Some(url) = redis_url("adapter_redis_async::dirty_session_is_never_lent_dirty") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "dirty");
    let (queued, watched) = (format!("{p}queued"), format!("{p}watched"));
    let name = unique("nexus_pool_dirty");
    let pool = pool(&url, 1, &name);
    let mut admin = admin(&url, DB);

    // A user selects another database, WATCHes a key and leaves a MULTI open with a command
    // queued.
    let mut conn = pool.acquire_blocking().unwrap();
    let id = block_on(client_id(&mut conn));
    block_on(async {
        redis::cmd("SELECT").arg(9).exec_async(&mut *conn).await?;
        redis::cmd("WATCH")
            .arg(&watched)
            .exec_async(&mut *conn)
            .await?;
        redis::cmd("MULTI").exec_async(&mut *conn).await?;
        let reply: String = redis::cmd("SET")
            .arg(&queued)
            .arg(1)
            .query_async(&mut *conn)
            .await?;
        assert_eq!(reply, "QUEUED");
        Ok::<_, redis::RedisError>(())
    })
    .unwrap();
    drop(conn);

    // Someone else touches the watched key.
    let _: () = admin.set(&watched, "changed").unwrap();

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(block_on(client_id(&mut conn)), id, "the same connection");
    let info = block_on(client_info(&mut conn));
    let fields: Vec<&str> = info.split_whitespace().collect();
    assert!(
        fields.contains(&&*format!("db={DB}")),
        "back on db {DB}: {info}"
    );
    assert!(fields.contains(&"multi=-1"), "not inside MULTI: {info}");
    assert!(
        fields.contains(&&*format!("name={name}")),
        "still named after RESET: {info}"
    );
    block_on(async {
        let value: Option<i64> = conn.get(&queued).await?;
        assert_eq!(value, None, "the queued command was discarded, not run");
        // No stale WATCH: this transaction commits.
        let (ok,): (String,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&queued)
            .arg(2)
            .query_async(&mut *conn)
            .await?;
        assert_eq!(ok, "OK");
        Ok::<_, redis::RedisError>(())
    })
    .unwrap();
    drop(conn);
    pool.close_blocking();
}

#[test]
fn reset_without_the_reset_command() {
    let Some(url) = redis_url("adapter_redis_async::reset_without_the_reset_command") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "legacy");
    let factory = RedisAsyncConnectionFactory::from_client(client(&url, DB)).unwrap();
    let check = factory.health_check().without_reset_command();
    let pool = ConnectionPool::builder(factory)
        .config(server_config(1))
        .health_check(check)
        .build()
        .unwrap();
    let mut conn = pool.acquire_blocking().unwrap();
    block_on(async {
        redis::cmd("SELECT").arg(5).exec_async(&mut *conn).await?;
        redis::cmd("MULTI").exec_async(&mut *conn).await?;
        let _: String = redis::cmd("SET")
            .arg(format!("{p}k"))
            .arg(1)
            .query_async(&mut *conn)
            .await?;
        Ok::<_, redis::RedisError>(())
    })
    .unwrap();
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let info = block_on(client_info(&mut conn));
    assert!(
        info.contains(&format!(" db={DB} ")),
        "back on db {DB}: {info}"
    );
    assert!(info.contains(" multi=-1 "), "not inside MULTI: {info}");
    drop(conn);
    pool.close_blocking();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_idle_is_replaced() {
    let Some(url) = redis_url("adapter_redis_async::killed_while_idle_is_replaced") else {
        return;
    };
    let name = unique("nexus_pool_idle_kill");
    let pool = pool(&url, 3, &name);
    let mut guards = Vec::new();
    for _ in 0..3 {
        guards.push(pool.acquire().await.unwrap());
    }
    let mut old = HashSet::new();
    for g in &mut guards {
        old.insert(client_id(g).await);
    }
    drop(guards);
    let mut admin = admin(&url, DB);
    for id in &old {
        kill(&mut admin, *id);
    }
    let mut guards = Vec::new();
    for _ in 0..3 {
        guards.push(pool.acquire().await.unwrap());
    }
    let mut new = HashSet::new();
    for g in &mut guards {
        // Every lent connection works.
        let pong: String = redis::cmd("PING").query_async(&mut **g).await.unwrap();
        assert_eq!(pong, "PONG");
        new.insert(client_id(g).await);
    }
    assert_eq!(new.len(), 3);
    assert!(new.is_disjoint(&old), "no killed connection was lent");
    drop(guards);
    pool.close().await;
}

#[test]
fn killed_while_lent_holder_gets_error_and_it_is_not_reused() {
    let Some(url) =
        redis_url("adapter_redis_async::killed_while_lent_holder_gets_error_and_it_is_not_reused")
    else {
        return;
    };
    let pool = pool(&url, 1, &unique("nexus_pool_lent_kill"));
    let mut admin = admin(&url, DB);

    // The holder follows the recommended pattern: `connection_lost`, then `mark_broken`.
    let mut conn = pool.acquire_blocking().unwrap();
    let old = block_on(client_id(&mut conn));
    kill(&mut admin, old);
    let err = block_on(redis::cmd("PING").query_async::<String>(&mut *conn))
        .expect_err("the connection was killed");
    assert!(connection_lost(&err), "{err:?}");
    conn.mark_broken();
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.use_count(), 1, "a new connection");
    let second = block_on(client_id(&mut conn));
    assert_ne!(second, old);

    // A holder that does not mark it: the reset finds out, and it is not lent again either.
    kill(&mut admin, second);
    assert!(block_on(redis::cmd("PING").query_async::<String>(&mut *conn)).is_err());
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let third = block_on(client_id(&mut conn));
    assert!(third != old && third != second, "a third connection");
    drop(conn);
    pool.close_blocking();
}

#[test]
fn abandoned_blocking_command_is_not_waited_for() {
    let Some(url) = redis_url("adapter_redis_async::abandoned_blocking_command_is_not_waited_for")
    else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "blpop");
    let pool = pool(&url, 1, &unique("nexus_pool_blpop"));
    smol::block_on(async {
        let mut conn = pool.acquire().await.unwrap();
        let old = client_id(&mut conn).await;
        // A BLPOP with no timeout, given up after 100 ms: its reply may still come, some day.
        let blpop = conn.blpop::<_, Option<(String, String)>>(format!("{p}empty"), 0.0);
        let gave_up = futures_lite::future::or(async { Some(blpop.await) }, async {
            async_io::Timer::after(Duration::from_millis(100)).await;
            None
        })
        .await;
        assert!(gave_up.is_none(), "nothing was pushed");
        drop(conn);

        let started = std::time::Instant::now();
        let mut conn = pool.acquire().await.unwrap();
        assert_ne!(client_id(&mut conn).await, old, "a new connection");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the reset did not wait behind the BLPOP: {:?}",
            started.elapsed()
        );
        drop(conn);
        pool.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_respected_as_the_server_counts() {
    let Some(url) =
        redis_url("adapter_redis_async::max_connections_respected_as_the_server_counts")
    else {
        return;
    };
    const MAX: usize = 3;
    const TASKS: usize = 12;
    let (p, _cleanup) = prefix(&url, DB, "max");
    let name = unique("nexus_pool_max");
    let pool = pool(&url, MAX, &name);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Counts the pool's connections on the server while the tasks run.
    let watcher = {
        let (url, name, done) = (url.clone(), name.clone(), done.clone());
        std::thread::spawn(move || {
            let mut admin = admin(&url, DB);
            let (mut most, mut seen) = (0, HashSet::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let now = named_clients(&mut admin, &name);
                most = most.max(now.len());
                seen.extend(now);
                std::thread::sleep(Duration::from_millis(2));
            }
            (most, seen)
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (pool, key) = (pool.clone(), format!("{p}{i}"));
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut conn = pool.acquire().await.unwrap();
                    // A WATCH/MULTI counter: only safe on a connection nobody else uses.
                    redis::cmd("WATCH")
                        .arg(&key)
                        .exec_async(&mut *conn)
                        .await
                        .unwrap();
                    let n: Option<i64> = conn.get(&key).await.unwrap();
                    let (_,): (String,) = redis::pipe()
                        .atomic()
                        .set(&key, n.unwrap_or(0) + 1)
                        .query_async(&mut *conn)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, seen) = watcher.join().unwrap();
    assert!(most >= 1, "the watcher saw the pool's connections");
    assert!(most <= MAX, "{most} connections at once, max is {MAX}");
    assert!(seen.len() <= MAX, "{} connections in all", seen.len());
    let mut admin = admin(&url, DB);
    for i in 0..TASKS {
        let n: i64 = admin.get(format!("{p}{i}")).unwrap();
        assert_eq!(n, 10, "no transaction was lost");
    }

    pool.close().await;
    assert!(
        eventually(Duration::from_secs(5), || named_clients(&mut admin, &name)
            .is_empty()),
        "close ended every connection"
    );
}

#[test]
fn unreachable_server_is_a_create_error() {
    let factory = RedisAsyncConnectionFactory::new(&format!(
        "redis://127.0.0.1:{}/",
        common::servers::refused_port()
    ))
    .unwrap();
    let config = nexus_pool::ConnectionPoolConfig::builder()
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let pool = ConnectionPool::new(factory, config);
    let err = pool.acquire_blocking().expect_err("nothing listens there");
    assert!(
        err.create_error().is_some(),
        "the driver's error is kept: {err}"
    );
}
