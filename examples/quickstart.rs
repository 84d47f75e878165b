//! Quick start: pool real TCP connections to an echo server this example starts on 127.0.0.1,
//! and use the one pool from blocking threads and async tasks at the same time.
//!
//! Run it with `cargo run --example quickstart`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nexus_pool::{ConnectionFactory, ConnectionPool, ConnectionPoolConfig};

/// Opens TCP connections to the echo server; a connection is healthy if it still echoes.
struct EchoFactory {
    addr: SocketAddr,
}

impl ConnectionFactory for EchoFactory {
    type Connection = BufReader<TcpStream>;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Self::Connection, Self::Error> {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_nodelay(true)?;
        Ok(BufReader::new(stream))
    }

    async fn validate(&self, conn: &mut Self::Connection) -> bool {
        echo(conn, "ping").is_ok_and(|reply| reply == "ping")
    }
}

/// One round trip: send a line, read it back.
fn echo(conn: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<String> {
    conn.get_mut().write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    conn.read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}

/// A line echo server on an ephemeral port; one thread per client.
fn start_echo_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(&stream);
                let mut writer = &stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if writer.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    Ok(addr)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_echo_server()?;
    let config = ConnectionPoolConfig::builder()
        .name("echo")
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .build()?;
    let pool = ConnectionPool::new(EchoFactory { addr }, config);

    std::thread::scope(|s| {
        // Blocking threads, as in a thread-pool server.
        for t in 0..4 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..50 {
                    pool.with_connection_blocking(|conn| {
                        let msg = format!("thread {t} request {i}");
                        let reply = echo(conn, &msg)?;
                        assert_eq!(reply, msg);
                        Ok::<_, Error>(())
                    })
                    .expect("blocking request");
                }
            });
        }
        // Async tasks on an executor, sharing the same pool and the same FIFO queue.
        s.spawn(|| {
            let ex = smol::LocalExecutor::new();
            let tasks: Vec<_> = (0..4)
                .map(|t| {
                    let pool = &pool;
                    ex.spawn(async move {
                        for i in 0..50 {
                            let mut conn = pool.acquire().await?;
                            let msg = format!("task {t} request {i}");
                            let reply = echo(&mut conn, &msg)?;
                            assert_eq!(reply, msg);
                            smol::future::yield_now().await;
                        }
                        Ok::<_, Error>(())
                    })
                })
                .collect();
            smol::block_on(ex.run(async {
                for task in tasks {
                    task.await.expect("async request");
                }
            }));
        });
    });

    let m = pool.current_metrics();
    println!(
        "served 400 echo round trips: total {} / max {}, idle {}, active {}, waiting {}, average wait of acquires that waited {:?}",
        m.total, m.max, m.idle, m.active, m.waiting, m.acquire_time
    );
    pool.close_blocking();
    println!("closed: {} connections left", pool.current_metrics().total);
    Ok(())
}

/// Errors from the pool or the socket, for the example's closures.
type Error = Box<dyn std::error::Error + Send + Sync>;
