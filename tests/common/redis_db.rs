//! Helpers for the tests against Redis: a client for one database, an unpooled connection to
//! watch and disturb the pool's connections, and key prefixes deleted when the test ends.

use redis::{Commands, Connection};

use super::servers::unique;

/// `url` with its database set to `db`.
pub fn client(url: &str, db: i64) -> redis::Client {
    let info = redis::Client::open(url).expect("the Redis URL parses");
    let info = info.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_db(db);
    redis::Client::open(info.set_redis_settings(settings)).unwrap()
}

/// A blocking connection outside the pool, to watch and disturb the pool's connections.
pub fn admin(url: &str, db: i64) -> Connection {
    client(url, db).get_connection().expect("admin connection")
}

/// Closes the server's connection `id`.
pub fn kill(admin: &mut Connection, id: i64) {
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(admin)
        .unwrap();
    assert_eq!(killed, 1);
}

/// Deletes the test's keys when it ends, passing or failing.
pub struct Cleanup {
    url: String,
    db: i64,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut conn) = client(&self.url, self.db).get_connection() {
            let keys: Vec<String> = conn.keys(format!("{}*", self.prefix)).unwrap_or_default();
            for key in keys {
                let _: Result<(), _> = conn.del(key);
            }
        }
    }
}

/// A key prefix of the test's own in database `db`, and what deletes its keys at the end.
pub fn prefix(url: &str, db: i64, test: &str) -> (String, Cleanup) {
    let prefix = format!("{}:", unique(&format!("nexus_pool_test_{test}")));
    let cleanup = Cleanup {
        url: url.to_owned(),
        db,
        prefix: prefix.clone(),
    };
    (prefix, cleanup)
}
