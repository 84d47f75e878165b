//! A thread-per-connection HTTP server in front of PostgreSQL, on the blocking `postgres`
//! adapter: `cargo run --example thread_server --features postgres`.
//!
//! It serves `GET /count` (one query per request, on a pooled connection) on a loopback port,
//! sends itself 400 requests from 16 client threads, prints what the pool saw, and stops. The
//! database is `NEXUS_POOL_PG_URL`, or `postgres://postgres@127.0.0.1:5432/test`.

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nexus_pool::adapters::postgres::PostgresConnectionFactory;
use nexus_pool::{ConnectionPool, ConnectionPoolConfig, PoolError};

type Pool = ConnectionPool<PostgresConnectionFactory>;

const CLIENTS: usize = 16;
const REQUESTS_EACH: usize = 25;

fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("NEXUS_POOL_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let config = ConnectionPoolConfig::builder()
        .name("thread-server")
        .min_connections(2)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .build()?;
    let pool = ConnectionPool::new(PostgresConnectionFactory::new(&url)?, config);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = thread::spawn({
        let pool = pool.clone();
        let stop = stop.clone();
        move || serve(listener, pool, stop)
    });
    println!("serving on http://{addr}/count");

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || (0..REQUESTS_EACH).map(|_| get(addr)).collect::<Vec<_>>()))
        .collect();
    let mut ok = 0;
    for client in clients {
        for status in client.join().expect("client thread") {
            if status.as_deref().ok() == Some("200") {
                ok += 1;
            }
        }
    }
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(addr); // wake the accept loop
    server.join().expect("server thread")?;

    let m = pool.current_metrics();
    let s = pool.statistics();
    println!(
        "{ok} of {} requests answered 200 in {took:.2?} ({:.0} req/s)",
        CLIENTS * REQUESTS_EACH,
        (ok as f64) / took.as_secs_f64()
    );
    println!("pool: {m:?}");
    println!(
        "created {}, timed out {}, wait p99 {:?}",
        s.created, s.timed_out, s.acquire_wait.p99
    );
    pool.close_blocking();
    Ok(())
}

/// Accepts connections until `stop`, each on a thread of its own.
fn serve(listener: TcpListener, pool: Pool, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut handlers = Vec::new();
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let pool = pool.clone();
        handlers.push(thread::spawn(move || {
            if let Err(err) = handle(stream?, &pool) {
                eprintln!("request failed: {err}");
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for handler in handlers {
        let _ = handler.join();
    }
    Ok(())
}

/// Answers one request with the number of sessions the server has open.
fn handle(mut stream: TcpStream, pool: &Pool) -> std::io::Result<()> {
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let (status, body) = match pool.acquire_blocking() {
        Ok(mut client) => match client.query_one("SELECT count(*) FROM pg_stat_activity", &[]) {
            Ok(row) => ("200 OK", format!("{}\n", row.get::<_, i64>(0))),
            Err(err) => ("500 Internal Server Error", format!("{err}\n")),
        },
        // A timeout says how busy the pool was; 503 tells the client to come back later.
        Err(err @ PoolError::Timeout(_)) => ("503 Service Unavailable", format!("{err}\n")),
        Err(err) => ("500 Internal Server Error", format!("{err}\n")),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// One request from a client: the response's status code.
fn get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"GET /count HTTP/1.1\r\nhost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}
