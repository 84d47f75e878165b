//! Timing an outage: a factory that logs every create, and probes of the server with fresh
//! connects.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nexus_pool::ConnectionFactory;
use nexus_pool::adapters::postgres::{
    PostgresConnection, PostgresConnectionFactory, PostgresError,
};
use postgres::NoTls;

use crate::common::sync::lock;
use crate::common::wait::poll_every;

/// Every create the pool attempted: when it started, and whether it succeeded (`None` while
/// running, or if the pool abandoned it).
#[derive(Default)]
pub struct CreateLog(pub Mutex<Vec<(Instant, Option<bool>)>>);

impl CreateLog {
    /// Creates that failed.
    pub fn failures(&self) -> usize {
        lock(&self.0)
            .iter()
            .filter(|(_, ok)| *ok == Some(false))
            .count()
    }

    /// Creates started outside `from..=to` that failed.
    pub fn failed_outside(&self, from: Instant, to: Instant) -> usize {
        lock(&self.0)
            .iter()
            .filter(|(at, ok)| !(from..=to).contains(at) && *ok == Some(false))
            .count()
    }

    /// Creates started in `from..=to` that did not succeed (failed, or abandoned by the pool).
    pub fn unsuccessful_between(&self, from: Instant, to: Instant) -> usize {
        lock(&self.0)
            .iter()
            .filter(|(at, ok)| (from..=to).contains(at) && *ok != Some(true))
            .count()
    }
}

/// The adapter's factory, counting the creates the pool asks of it.
pub struct Counting {
    pub inner: PostgresConnectionFactory,
    pub log: Arc<CreateLog>,
}

impl ConnectionFactory for Counting {
    type Connection = PostgresConnection;
    type Error = PostgresError;

    async fn create(&self) -> Result<PostgresConnection, PostgresError> {
        let index = {
            let mut log = lock(&self.log.0);
            log.push((Instant::now(), None));
            log.len() - 1
        };
        let result = self.inner.create().await;
        lock(&self.log.0)[index].1 = Some(result.is_ok());
        result
    }

    async fn destroy(&self, conn: PostgresConnection) {
        self.inner.destroy(conn).await;
    }

    async fn validate(&self, conn: &mut PostgresConnection) -> bool {
        self.inner.validate(conn).await
    }
}

/// How often the server is probed with a fresh connect.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Whether a fresh connect succeeds now.
pub fn probe(url: &str) -> bool {
    let mut config: postgres::Config = url.parse().expect("the PostgreSQL URL parses");
    config.connect_timeout(Duration::from_secs(1));
    config.connect(NoTls).is_ok()
}

/// Polls fresh connects until the server accepts one; returns when it did.
pub fn wait_for_server(url: &str, limit: Duration) -> Option<Instant> {
    poll_every(limit, PROBE_EVERY, || probe(url)).then(Instant::now)
}

/// Probes the server from a thread every `PROBE_EVERY`, to time an outage: when each probe
/// ended, and whether it connected.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, bool)>>,
}

impl Prober {
    pub fn start(url: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, url) = (stop.clone(), url.to_owned());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let up = probe(&url);
                    seen.push((Instant::now(), up));
                    std::thread::sleep(PROBE_EVERY);
                }
                seen
            })
        };
        Prober { stop, thread }
    }

    /// When the server was seen back: the first successful probe after a failed one, if a
    /// probe failed.
    pub fn back(self) -> Option<Instant> {
        self.stop.store(true, Ordering::Release);
        let seen = self.thread.join().expect("the prober panicked");
        let down = seen.iter().position(|(_, up)| !up)?;
        seen[down..].iter().find(|(_, up)| *up).map(|(at, _)| *at)
    }
}

/// Makes sure the server is accepting connections again when the test ends, pass or fail.
pub struct ServerComesBack<'a>(pub &'a str);

impl Drop for ServerComesBack<'_> {
    fn drop(&mut self) {
        if wait_for_server(self.0, Duration::from_secs(60)).is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL did not come back after the restart: start it again"
            );
        }
    }
}
