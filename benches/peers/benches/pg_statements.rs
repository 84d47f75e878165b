//! A parameterised query with and without the adapters' statement cache (issue 15), against a
//! real PostgreSQL (`NEXUS_POOL_PG_URL`; unset, the bench prints one line and skips).
//!
//! 16 workers share a pool of 8 built as the README says (`pool_builder()`), each looping
//! acquire, one `SELECT $1::int + 1` with its parameter, release, for a fixed time. The ways of
//! running the query:
//! - `query(&str)`: the driver prepares a named statement on every call (a round trip), then
//!   binds and executes it (a second one);
//! - `prepare_cached`: the statement comes from the connection's cache after its first use, so
//!   a call is one round trip (bind and execute);
//! - `query_typed`: the unnamed statement, parsed, bound and executed in one round trip (what
//!   works behind a transaction pooler), for reference.
//!
//! The tokio-postgres adapter runs them as tasks on a tokio runtime (the pool built inside it),
//! the blocking postgres adapter as threads. Variants are interleaved round-robin; the ratios are
//! medians of per-round ratios against `query(&str)` of the same adapter.
//!
//! `NEXUS_POOL_PG_URL=... cargo bench --bench pg_statements -- [--rounds N] [--secs S]`
//! (defaults: 5 rounds of 2 s each).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nexus_pool::ConnectionPoolConfig;
use nexus_pool::adapters::postgres::PostgresConnectionFactory;
use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
use tokio_postgres::types::Type;

const SIZE: usize = 8;
const WORKERS: usize = 16;
const SQL: &str = "SELECT $1::int + 1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Query,
    Cached,
    Typed,
}

const WAYS: [Way; 3] = [Way::Query, Way::Cached, Way::Typed];

fn config() -> ConnectionPoolConfig {
    ConnectionPoolConfig::builder()
        .max_connections(SIZE)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .expect("valid config")
}

/// Operations per second of `WORKERS` tasks running `way` for `dur`.
fn tokio_round(
    rt: &tokio::runtime::Runtime,
    pool: &Arc<nexus_pool::ConnectionPool<TokioPostgresConnectionFactory>>,
    way: Way,
    dur: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (pool, stop, ops) = (pool.clone(), stop.clone(), ops.clone());
                tokio::spawn(async move {
                    let mut x = w as i32;
                    while !stop.load(Ordering::Relaxed) {
                        let conn = pool.acquire().await.unwrap();
                        let row = match way {
                            Way::Query => conn.query_one(SQL, &[&x]).await.unwrap(),
                            Way::Cached => {
                                let stmt = conn.prepare_cached(SQL).await.unwrap();
                                conn.query_one(&stmt, &[&x]).await.unwrap()
                            }
                            Way::Typed => conn
                                .query_typed_one(SQL, &[(&x, Type::INT4)])
                                .await
                                .unwrap(),
                        };
                        assert_eq!(row.get::<_, i32>(0), x + 1);
                        x = x.wrapping_add(1) % 1_000_000;
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        ops.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
    })
}

/// Operations per second of `WORKERS` threads running `way` for `dur`.
fn blocking_round(
    pool: &nexus_pool::ConnectionPool<PostgresConnectionFactory>,
    way: Way,
    dur: Duration,
) -> f64 {
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (stop, ops) = (&stop, &ops);
            s.spawn(move || {
                let mut x = w as i32;
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = pool.acquire_blocking().unwrap();
                    let row = match way {
                        Way::Query => conn.query_one(SQL, &[&x]).unwrap(),
                        Way::Cached => {
                            let stmt = conn.prepare_cached(SQL).unwrap();
                            conn.query_one(&stmt, &[&x]).unwrap()
                        }
                        Way::Typed => conn.query_typed_one(SQL, &[(&x, Type::INT4)]).unwrap(),
                    };
                    assert_eq!(row.get::<_, i32>(0), x + 1);
                    x = x.wrapping_add(1) % 1_000_000;
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
    });
    ops.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn report(adapter: &str, rates: &[[f64; 3]]) {
    for (i, way) in WAYS.iter().enumerate() {
        let per_s = median(rates.iter().map(|r| r[i]).collect());
        let ratio = median(rates.iter().map(|r| r[i] / r[0]).collect());
        println!(
            "{adapter:<14} {:<16} {per_s:>9.0} ops/s  {ratio:.2}x query(&str)",
            format!("{way:?}")
        );
    }
}

fn main() {
    let Ok(url) = std::env::var("NEXUS_POOL_PG_URL") else {
        println!("pg_statements: NEXUS_POOL_PG_URL is not set; skipped");
        return;
    };
    let mut args = std::env::args().skip(1);
    let (mut rounds, mut secs) = (5usize, 2.0f64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            _ => {} // cargo bench passes --bench
        }
    }
    let dur = Duration::from_secs_f64(secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let tokio_pool = {
        let _in_runtime = rt.enter();
        Arc::new(
            TokioPostgresConnectionFactory::new(&url)
                .expect("the URL parses")
                .pool_builder()
                .config(config())
                .build()
                .unwrap(),
        )
    };
    let blocking_pool = PostgresConnectionFactory::new(&url)
        .expect("the URL parses")
        .pool_builder()
        .config(config())
        .build()
        .unwrap();
    // Warm: every connection made, every cache filled.
    for way in WAYS {
        tokio_round(&rt, &tokio_pool, way, Duration::from_millis(200));
        blocking_round(&blocking_pool, way, Duration::from_millis(200));
    }
    let (mut tokio_rates, mut blocking_rates) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut t = [0.0; 3];
        let mut b = [0.0; 3];
        for (i, way) in WAYS.iter().enumerate() {
            t[i] = tokio_round(&rt, &tokio_pool, *way, dur);
            b[i] = blocking_round(&blocking_pool, *way, dur);
        }
        eprintln!("round {round}: tokio-postgres {t:.0?}, postgres {b:.0?}");
        tokio_rates.push(t);
        blocking_rates.push(b);
    }
    println!("{SIZE} connections, {WORKERS} workers, `{SQL}`, {rounds} rounds of {secs} s:");
    report("tokio-postgres", &tokio_rates);
    report("postgres", &blocking_rates);
    rt.block_on(tokio_pool.close());
    blocking_pool.close_blocking();
}
