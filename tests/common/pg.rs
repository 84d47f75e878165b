//! Helpers for the tests against PostgreSQL: the blocking adapter's factory with an
//! `application_name` to find its sessions by, and an unpooled session for the test's own checks.

use postgres::{Client, NoTls};

/// A factory whose sessions carry `app` as their `application_name`.
#[cfg(feature = "postgres")]
pub fn factory(url: &str, app: &str) -> nexus_pool::adapters::postgres::PostgresConnectionFactory {
    let mut factory = nexus_pool::adapters::postgres::PostgresConnectionFactory::new(url)
        .expect("the PostgreSQL URL parses");
    factory.config_mut().application_name(app);
    factory
}

/// An unpooled session for the test's own checks.
pub fn admin(url: &str) -> Client {
    Client::connect(url, NoTls).expect("admin connection")
}

/// The server process behind a session.
pub fn backend_pid(conn: &mut Client) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .expect("pid")
        .get(0)
}
