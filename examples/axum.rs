//! An axum service on the `tokio-postgres` adapter, whose handlers take a pooled connection
//! through an extractor: `cargo run --example axum --features tokio-postgres`.
//!
//! The extractor acquires an owned connection (`acquire_owned`), so it is `'static` and moves
//! into the handler like any other extracted value; a pool timeout becomes `503 Service
//! Unavailable` with the pool's one-line explanation. The example serves on a loopback port,
//! sends itself 400 requests from 16 client tasks, prints what the pool saw, and stops. The
//! database is `NEXUS_POOL_PG_URL`, or `postgres://postgres@127.0.0.1:5432/test`.

use std::error::Error;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use nexus_pool::adapters::tokio_postgres::TokioPostgresConnectionFactory;
use nexus_pool::{ConnectionPool, OwnedPooledConnection, PoolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Pool = ConnectionPool<TokioPostgresConnectionFactory>;

const CLIENTS: usize = 16;
const REQUESTS_EACH: usize = 25;

/// A pooled connection, extracted from the request's state; back to the pool when the handler
/// is done with it.
struct Db(OwnedPooledConnection<TokioPostgresConnectionFactory>);

impl FromRequestParts<Pool> for Db {
    type Rejection = (StatusCode, String);

    async fn from_request_parts(_: &mut Parts, pool: &Pool) -> Result<Self, Self::Rejection> {
        match pool.acquire_owned().await {
            Ok(conn) => Ok(Db(conn)),
            Err(err @ PoolError::Timeout(_)) => {
                Err((StatusCode::SERVICE_UNAVAILABLE, err.to_string()))
            }
            Err(err) => Err((StatusCode::INTERNAL_SERVER_ERROR, err.to_string())),
        }
    }
}

/// The number of sessions the server has open, read on a pooled connection.
async fn sessions(Db(client): Db) -> Result<String, (StatusCode, String)> {
    let row = client
        .query_one("SELECT count(*) FROM pg_stat_activity", &[])
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(format!("{}\n", row.get::<_, i64>(0)))
}

/// The pool's own view, for a health endpoint.
async fn metrics(State(pool): State<Pool>) -> String {
    format!("{:?}\n", pool.current_metrics())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("NEXUS_POOL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = TokioPostgresConnectionFactory::new(&url)?
        .pool_builder()
        .name("axum-example")
        .min_connections(2)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .build()?;

    let app = Router::new()
        .route("/sessions", get(sessions))
        .route("/metrics", get(metrics))
        .with_state(pool.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("serving on http://{addr}/sessions");

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..REQUESTS_EACH {
                    if request(addr, "/sessions")
                        .await
                        .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
                    {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for client in clients {
        ok += client.await?;
    }
    let took = started.elapsed();
    let metrics = request(addr, "/metrics").await?;
    let _ = stop.send(());
    server.await??;

    println!(
        "{ok} of {} requests answered 200 in {took:.2?} ({:.0} req/s)",
        CLIENTS * REQUESTS_EACH,
        ok as f64 / took.as_secs_f64()
    );
    println!(
        "GET /metrics: {}",
        metrics.lines().last().unwrap_or_default()
    );
    let s = pool.statistics();
    println!(
        "created {}, timed out {}, wait p99 {:?}",
        s.created, s.timed_out, s.acquire_wait.p99
    );
    pool.close().await;
    Ok(())
}

/// One HTTP/1.1 request; the whole response.
async fn request(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
