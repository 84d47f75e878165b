//! Ready-made factories and health checks for real backends, each behind its own Cargo feature.
//!
//! | Module | Feature | Client crate | Connection the pool lends |
//! |---|---|---|---|
//! | `postgres` | `postgres` | `postgres` (blocking) | `PostgresConnection` (derefs to `postgres::Client`) |
//! | `tokio_postgres` | `tokio-postgres` | `tokio-postgres` (async) | `TokioPostgresConnection` |
//! | `redis` | `redis` | `redis` (blocking) | `redis::Connection` |
//! | `redis_async` | `redis-async` | `redis` (async, tokio I/O) | `RedisAsyncConnection` |
//! | `mysql` | `mysql` | `mysql` (blocking) | `mysql::Conn` |
//! | `mysql_async` | `mysql-async` | `mysql_async` (async, tokio I/O) | `MysqlAsyncConnection` |
//! | `sqlite` | `rusqlite` | `rusqlite` (bundled SQLite) | `rusqlite::Connection` |
//! | `diesel` | `diesel-postgres`, `diesel-mysql`, `diesel-sqlite` | `diesel` (blocking) | `PgConnection`, `MysqlConnection`, `SqliteConnection` |
//!
//! Each adapter has a factory built from a connection string (or the client's own config type),
//! whose `validate` is a cheap liveness check, and a health check whose `is_healthy` is a real
//! round trip and whose `reset` returns a used session to a clean state before it is lent again.
//! Each factory supplies that health check
//! ([`ConnectionFactory::default_health_check`](crate::ConnectionFactory::default_health_check)),
//! so every way of building a pool from it (`ConnectionPool::new`, `ConnectionPool::builder`, the
//! factory's `pool_builder()`) resets a used connection before lending it again: a connection its
//! last user left inside a transaction is never lent as it is. Opting out takes an explicit
//! [`without_health_check()`](crate::ConnectionPoolBuilder::without_health_check).
//!
//! # What the pool runs, and when
//!
//! * `create` on the pool's maintenance loop, when a caller waits for a connection (or fewer than
//!   `min_connections` are idle) and there is room (`max_connections`).
//! * `validate` on checkout, per [`CheckoutValidation`](crate::CheckoutValidation) (by default
//!   when the connection sat idle for 500 ms or more). `false` destroys it and the acquire goes on.
//! * `reset` (health check) on every reuse, before the connection is lent; `false` destroys it.
//! * `is_healthy` (health check) on idle connections every `health_check_interval`, from the
//!   pool's maintenance loop.
//! * `destroy` on the maintenance loop, for broken, expired, unhealthy and closed connections.
//!
//! All of these are `async fn`s. `validate` and `reset` run in the acquiring caller (the blocking
//! facade drives them on the calling thread, the async facade on the caller's executor), the
//! others on the maintenance loop (a worker thread of the pool's own with a tiny `block_on`, or
//! the executor a spawned maintenance future runs on): so a factory must not assume any
//! particular runtime is running around it.
//!
//! # Writing a factory for a backend we do not ship
//!
//! Three decisions make a good factory:
//!
//! 1. **Where does the I/O run?** A blocking client (a plain socket, `postgres`, `rusqlite`, sync
//!    `redis`) does its work directly inside the `async fn` body: the call blocks whoever drives
//!    the future, which is what a blocking caller wants. Bound every blocking call with a socket
//!    timeout: the pool cannot interrupt a blocked thread. Inside a callback,
//!    [`callback_deadline`](crate::callback_deadline) says when the pool stops waiting; give the
//!    call the time left. (The `postgres` client takes no socket timeout, so its adapter runs
//!    `create` and `destroy`, which the maintenance loop calls, on a helper thread the pool's
//!    timeouts can abandon, and pings with a timeout before each reset.) An async client that
//!    needs a runtime (anything built on tokio) must not rely on the caller having one: own a
//!    runtime (or take a handle to one, like `tokio::runtime::Handle`) and run the connection's
//!    I/O there, as the `tokio-postgres` adapter does. Then `acquire_blocking()` from a plain
//!    thread works too.
//! 2. **What is cheap enough for `validate`?** It runs on the acquiring caller's path. A local
//!    flag (is the socket closed?) is free; one round trip (`PING`, an empty query) is the usual
//!    choice, and is what HikariCP does; never anything that scans data.
//! 3. **What state can a user leave behind?** An open transaction, session variables, temporary
//!    objects, a selected database, a subscription. `reset` undoes all of it or returns `false`;
//!    a connection whose state is unknown must be destroyed, never lent.
//!
//! And one habit for callers: after an error that means the session is gone (the server closed
//! it, the network dropped), call [`PooledConnection::mark_broken`](crate::PooledConnection::mark_broken)
//! so it is destroyed at once instead of failing the next `reset`.
//!
//! ## Example: a line-based TCP protocol
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//! use nexus_pool::{ConnectionFactory, ConnectionHealthCheck, ConnectionPool, ConnectionPoolConfig};
//!
//! /// One connection: a socket with a reader over it.
//! struct LineConn {
//!     reader: BufReader<TcpStream>,
//! }
//!
//! impl LineConn {
//!     fn request(&mut self, line: &str) -> std::io::Result<String> {
//!         let stream = self.reader.get_mut();
//!         stream.write_all(line.as_bytes())?;
//!         stream.write_all(b"\n")?;
//!         let mut reply = String::new();
//!         if self.reader.read_line(&mut reply)? == 0 {
//!             return Err(std::io::ErrorKind::UnexpectedEof.into());
//!         }
//!         Ok(reply.trim_end().to_owned())
//!     }
//! }
//!
//! struct LineFactory {
//!     addr: String,
//!     timeout: Duration,
//! }
//!
//! impl ConnectionFactory for LineFactory {
//!     type Connection = LineConn;
//!     type Error = std::io::Error;
//!
//!     // Blocking I/O inside the async body, every call bounded by a socket timeout.
//!     async fn create(&self) -> std::io::Result<LineConn> {
//!         let stream = TcpStream::connect(&self.addr)?;
//!         stream.set_read_timeout(Some(self.timeout))?;
//!         stream.set_write_timeout(Some(self.timeout))?;
//!         Ok(LineConn { reader: BufReader::new(stream) })
//!     }
//!
//!     // Cheap: one round trip, only for connections idle for a while.
//!     async fn validate(&self, conn: &mut LineConn) -> bool {
//!         conn.request("PING").is_ok_and(|r| r == "PING")
//!     }
//! }
//!
//! struct LineHealth;
//!
//! impl ConnectionHealthCheck<LineConn> for LineHealth {
//!     async fn is_healthy(&self, conn: &mut LineConn) -> bool {
//!         conn.request("PING").is_ok_and(|r| r == "PING")
//!     }
//!
//!     // Undo what a user may have left: here the server would forget per-session state on
//!     // RESET; a reply we do not expect means the state is unknown, so destroy it.
//!     async fn reset(&self, conn: &mut LineConn) -> bool {
//!         conn.request("RESET").is_ok_and(|r| r == "RESET")
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # #[cfg(feature = "blocking")] {
//! // A toy echo server standing in for the backend.
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?.to_string();
//! std::thread::spawn(move || {
//!     for stream in listener.incoming().flatten() {
//!         std::thread::spawn(move || {
//!             let mut writer = stream.try_clone().unwrap();
//!             for line in BufReader::new(stream).lines().map_while(Result::ok) {
//!                 if writeln!(writer, "{line}").is_err() { break; }
//!             }
//!         });
//!     }
//! });
//!
//! let factory = LineFactory { addr, timeout: Duration::from_secs(5) };
//! let pool = ConnectionPool::builder(factory)
//!     .config(ConnectionPoolConfig::builder().max_connections(4).build()?)
//!     .health_check(LineHealth)
//!     .build()?;
//!
//! let mut conn = pool.acquire_blocking()?;
//! match conn.request("hello") {
//!     Ok(reply) => assert_eq!(reply, "hello"),
//!     Err(e) => {
//!         conn.mark_broken(); // the session is gone: never reuse it
//!         return Err(e.into());
//!     }
//! }
//! drop(conn);
//! pool.close_blocking();
//! # }
//! # Ok(())
//! # }
//! ```

#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
mod pg_common;

#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
mod pg_statements;
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
mod pg_wire;

#[cfg(any(
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "diesel-postgres",
        feature = "diesel-mysql",
        feature = "diesel-sqlite"
    )))
)]
pub mod diesel;
#[cfg(any(
    feature = "postgres",
    feature = "mysql",
    feature = "diesel-postgres",
    feature = "diesel-mysql",
    feature = "diesel-sqlite"
))]
mod helper_thread;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "mysql-async")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql-async")))]
pub mod mysql_async;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "redis-async")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-async")))]
pub mod redis_async;
#[cfg(any(
    feature = "tokio-postgres",
    feature = "redis-async",
    feature = "mysql-async"
))]
mod runtime;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod settings;
#[cfg(feature = "rusqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "rusqlite")))]
pub mod sqlite;
#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub mod tokio_postgres;
