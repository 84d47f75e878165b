//! The Redis adapter against a real Redis (`NEXUS_POOL_REDIS_URL`, else the standard local
//! address).
#![cfg(all(feature = "redis", feature = "blocking"))]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_db::{admin, client, kill, prefix};
use common::servers::{redis_url, server_config};
use common::wait::eventually;
use nexus_pool::adapters::redis::RedisConnectionFactory;
use nexus_pool::{CheckoutValidation, ConnectionPool, ConnectionPoolConfig};
use redis::{Commands, Connection};

/// The database the pools are configured for; tests use their own key prefixes in it.
const DB: i64 = 3;

type Pool = ConnectionPool<RedisConnectionFactory>;

fn pool(url: &str, max: usize) -> Pool {
    RedisConnectionFactory::from_client(client(url, DB))
        .pool_builder()
        .config(server_config(max))
        .build()
        .unwrap()
}

fn client_id(conn: &mut Connection) -> i64 {
    redis::cmd("CLIENT").arg("ID").query(conn).unwrap()
}

#[test]
fn smoke_blocking() {
    let Some(url) = redis_url("adapter_redis::smoke_blocking") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "smoke");
    let pool = pool(&url, 2);
    let mut conn = pool.acquire_blocking().unwrap();
    let n: i64 = conn.incr(format!("{p}n"), 2).unwrap();
    assert_eq!(n, 2);
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let n: i64 = conn.get(format!("{p}n")).unwrap();
    assert_eq!(n, 2);
    drop(conn);
    pool.close_blocking();
}

#[test]
fn reset_selects_the_configured_database_again() {
    let Some(url) = redis_url("adapter_redis::reset_selects_the_configured_database_again") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "select");
    let pool = pool(&url, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let id = client_id(&mut conn);
    redis::cmd("SELECT").arg(7).query::<()>(&mut *conn).unwrap();
    let _: () = conn.set(format!("{p}elsewhere"), 1).unwrap();
    let _: () = conn.del(format!("{p}elsewhere")).unwrap();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(client_id(&mut conn), id, "the same connection was reused");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut *conn).unwrap();
    assert!(
        info.split(' ').any(|field| field == format!("db={DB}")),
        "back on db {DB}: {info}"
    );
    drop(conn);
    pool.close_blocking();
}

#[test]
fn reset_discards_an_open_multi_and_watches() {
    let Some(url) = redis_url("adapter_redis::reset_discards_an_open_multi_and_watches") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "multi");
    let (queued, watched) = (format!("{p}queued"), format!("{p}watched"));
    let pool = pool(&url, 1);
    let mut admin = admin(&url, DB);

    // A user leaves a MULTI open with a command queued, and a WATCH.
    let mut conn = pool.acquire_blocking().unwrap();
    redis::cmd("WATCH")
        .arg(&watched)
        .query::<()>(&mut *conn)
        .unwrap();
    redis::cmd("MULTI").query::<()>(&mut *conn).unwrap();
    let reply: String = redis::cmd("SET")
        .arg(&queued)
        .arg(1)
        .query(&mut *conn)
        .unwrap();
    assert_eq!(reply, "QUEUED");
    drop(conn);

    // Someone else touches the watched key.
    let _: () = admin.set(&watched, "changed").unwrap();

    let mut conn = pool.acquire_blocking().unwrap();
    let value: Option<i64> = conn.get(&queued).unwrap();
    assert_eq!(value, None, "the queued command was discarded, not run");
    // No stale WATCH: this transaction commits.
    let (ok,): (String,) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&queued)
        .arg(2)
        .query(&mut *conn)
        .unwrap();
    assert_eq!(ok, "OK");
    drop(conn);
    pool.close_blocking();
}

#[test]
fn reset_without_the_reset_command() {
    let Some(url) = redis_url("adapter_redis::reset_without_the_reset_command") else {
        return;
    };
    let (p, _cleanup) = prefix(&url, DB, "legacy");
    let factory = RedisConnectionFactory::from_client(client(&url, DB));
    let check = factory.health_check().without_reset_command();
    let pool = ConnectionPool::builder(factory)
        .config(server_config(1))
        .health_check(check)
        .build()
        .unwrap();

    let mut conn = pool.acquire_blocking().unwrap();
    redis::cmd("SELECT").arg(5).query::<()>(&mut *conn).unwrap();
    redis::cmd("MULTI").query::<()>(&mut *conn).unwrap();
    let _: String = redis::cmd("SET")
        .arg(format!("{p}k"))
        .arg(1)
        .query(&mut *conn)
        .unwrap();
    drop(conn);
    let mut conn = pool.acquire_blocking().unwrap();
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut *conn).unwrap();
    assert!(
        info.contains(&format!(" db={DB} ")),
        "back on db {DB}: {info}"
    );
    assert!(info.contains(" multi=-1 "), "not inside MULTI: {info}");
    drop(conn);
    // A reset on a connection with nothing to undo works too.
    let conn = pool.acquire_blocking().unwrap();
    drop(conn);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_next_acquires_get_fresh_connections() {
    let Some(url) =
        redis_url("adapter_redis::killed_while_idle_next_acquires_get_fresh_connections")
    else {
        return;
    };
    let pool = pool(&url, 3);
    let mut guards: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
    let old: HashSet<i64> = guards.iter_mut().map(|c| client_id(c)).collect();
    drop(guards);
    let mut admin = admin(&url, DB);
    for id in &old {
        kill(&mut admin, *id);
    }
    let mut guards: Vec<_> = (0..3).map(|_| pool.acquire_blocking().unwrap()).collect();
    let new: HashSet<i64> = guards.iter_mut().map(|c| client_id(c)).collect();
    assert_eq!(new.len(), 3);
    assert!(new.is_disjoint(&old), "no killed connection was lent");
    drop(guards);
    pool.close_blocking();
}

#[test]
fn killed_while_idle_caught_by_validation_without_health_check() {
    let Some(url) =
        redis_url("adapter_redis::killed_while_idle_caught_by_validation_without_health_check")
    else {
        return;
    };
    let config = ConnectionPoolConfig::builder()
        .max_connections(1)
        .checkout_validation(CheckoutValidation::Always)
        .build()
        .unwrap();
    let pool = ConnectionPool::new(
        RedisConnectionFactory::from_client(client(&url, DB)),
        config,
    );
    let mut conn = pool.acquire_blocking().unwrap();
    let old = client_id(&mut conn);
    drop(conn);
    kill(&mut admin(&url, DB), old);
    let mut conn = pool.acquire_blocking().unwrap();
    assert_ne!(
        client_id(&mut conn),
        old,
        "PING failed, a new connection was made"
    );
    drop(conn);
    pool.close_blocking();
}

#[test]
fn killed_while_lent_holder_gets_error_and_it_is_not_reused() {
    let Some(url) =
        redis_url("adapter_redis::killed_while_lent_holder_gets_error_and_it_is_not_reused")
    else {
        return;
    };
    let pool = pool(&url, 1);
    let mut conn = pool.acquire_blocking().unwrap();
    let old = client_id(&mut conn);
    kill(&mut admin(&url, DB), old);

    let err = redis::cmd("PING")
        .query::<String>(&mut *conn)
        .expect_err("the connection was killed");
    // The recommended pattern.
    assert!(
        err.is_io_error() || !redis::ConnectionLike::is_open(&*conn),
        "{err:?}"
    );
    conn.mark_broken();
    drop(conn);

    let mut conn = pool.acquire_blocking().unwrap();
    assert_eq!(conn.use_count(), 1);
    assert_ne!(client_id(&mut conn), old);
    drop(conn);
    pool.close_blocking();
}

#[test]
fn max_connections_respected_as_the_server_counts() {
    let Some(url) = redis_url("adapter_redis::max_connections_respected_as_the_server_counts")
    else {
        return;
    };
    const MAX: usize = 3;
    let pool = pool(&url, MAX);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut ids = HashSet::new();
                for _ in 0..10 {
                    let mut conn = pool.acquire_blocking().unwrap();
                    ids.insert(client_id(&mut conn));
                    std::thread::sleep(Duration::from_millis(2));
                }
                ids
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for w in workers {
        ids.extend(w.join().unwrap());
    }
    assert!(
        ids.len() <= MAX,
        "{} distinct connections, max is {MAX}",
        ids.len()
    );

    let mut admin = admin(&url, DB);
    pool.close_blocking();
    assert!(
        eventually(Duration::from_secs(5), || {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
            ids.iter().all(|id| !list.contains(&format!("id={id} ")))
        }),
        "close ended every connection"
    );
}

#[test]
fn unreachable_server_is_a_create_error() {
    let factory = RedisConnectionFactory::new("redis://127.0.0.1:1/").unwrap();
    let config = ConnectionPoolConfig::builder()
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
