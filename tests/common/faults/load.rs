//! Load for the fault tests. Workers that loop: acquire, `SELECT $1::int4` with a value of their
//! own, check the answer, with a journal of when each success and each error happened. And timed
//! acquirers, which record how long each acquire took and how it ended.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nexus_pool::adapters::postgres::PostgresConnection;
use nexus_pool::adapters::postgres::{PostgresConnectionFactory, connection_lost};
use nexus_pool::{ConnectionFactory, ConnectionPool, CreateError, PoolError};

use super::join_within;
use crate::common::sync::lock;
use crate::common::wait::eventually;

/// What the workers saw, with when.
#[derive(Default)]
pub struct Journal {
    /// Per worker, when each checked query succeeded.
    pub successes: Vec<Mutex<Vec<Instant>>>,
    /// Every error a worker saw: when, what, and whether `connection_lost` said so.
    pub errors: Mutex<Vec<(Instant, String, bool)>>,
    /// Answers that were not the value asked for: must stay empty.
    pub wrong: Mutex<Vec<String>>,
}

impl Journal {
    pub fn successes_after(&self, worker: usize, t: Instant) -> usize {
        lock(&self.successes[worker])
            .iter()
            .filter(|s| **s > t)
            .count()
    }

    /// Whether every worker has at least `n` successes after `t`.
    pub fn all_after(&self, t: Instant, n: usize) -> bool {
        (0..self.successes.len()).all(|w| self.successes_after(w, t) >= n)
    }

    pub fn errors(&self) -> Vec<(Instant, String, bool)> {
        lock(&self.errors).clone()
    }
}

/// Worker threads that loop: acquire, `SELECT $1::int4` with a value of their own, check the
/// answer; plus a sampler that records the largest `total` the pool reports.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub journal: Arc<Journal>,
    peak_total: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start<F>(pool: &ConnectionPool<F>, workers: usize) -> Load
    where
        F: ConnectionFactory<Connection = PostgresConnection>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let journal = Arc::new(Journal {
            successes: (0..workers).map(|_| Mutex::default()).collect(),
            ..Journal::default()
        });
        let peak_total = Arc::new(AtomicUsize::new(0));
        let mut threads: Vec<JoinHandle<()>> = (0..workers)
            .map(|id| {
                let (pool, stop, journal) = (pool.clone(), stop.clone(), journal.clone());
                std::thread::spawn(move || work(&pool, id, &stop, &journal))
            })
            .collect();
        threads.push({
            let (pool, stop, peak) = (pool.clone(), stop.clone(), peak_total.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    peak.fetch_max(pool.current_metrics().total, Ordering::AcqRel);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        });
        Load {
            stop,
            journal,
            peak_total,
            threads,
        }
    }

    /// Stops the workers (each finishes its current acquire and query) and returns the journal
    /// and the peak `total` seen.
    pub fn stop(self) -> (Arc<Journal>, usize) {
        self.stop.store(true, Ordering::Release);
        join_within(self.threads, Duration::from_secs(30), "a worker");
        (self.journal, self.peak_total.load(Ordering::Acquire))
    }
}

fn work<F>(pool: &ConnectionPool<F>, id: usize, stop: &AtomicBool, journal: &Journal)
where
    F: ConnectionFactory<Connection = PostgresConnection>,
{
    let base = i32::try_from(id).expect("few workers") * 10_000_000;
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let value = base + n;
        let mut conn = match pool.acquire_blocking() {
            Ok(conn) => conn,
            Err(e) => {
                lock(&journal.errors).push((Instant::now(), format!("acquire: {e}"), false));
                continue;
            }
        };
        match conn.query_one("SELECT $1::int4", &[&value]) {
            Ok(row) => match row.try_get::<_, i32>(0) {
                Ok(got) if got == value => lock(&journal.successes[id]).push(Instant::now()),
                other => lock(&journal.wrong).push(format!("asked {value}, got {other:?}")),
            },
            Err(e) => {
                let lost = connection_lost(&e);
                if lost {
                    conn.mark_broken();
                }
                lock(&journal.errors).push((Instant::now(), format!("query: {e}"), lost));
            }
        }
    }
}

/// One timed acquire.
#[derive(Debug)]
pub struct Attempt {
    pub took: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Got a connection and a query on it worked.
    Served,
    /// Got a connection, but a query on it failed: a dead connection was lent.
    LentDead(String),
    /// Timed out; `create_timed_out` if the last create had hit `create_timeout`.
    TimedOut {
        create_timed_out: bool,
    },
    Other(String),
}

/// Runs `threads` acquirers on `pool` until `enough` holds for what they did or `limit` passes;
/// each acquire is timed, and each connection got runs one query.
pub fn acquirers(
    pool: &ConnectionPool<PostgresConnectionFactory>,
    threads: usize,
    limit: Duration,
    enough: impl Fn(&[Attempt]) -> bool,
) -> Vec<Attempt> {
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (pool, stop, log) = (pool.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let started = Instant::now();
                    let got = pool.acquire_blocking();
                    let took = started.elapsed();
                    let outcome = match got {
                        Ok(mut conn) => match conn.query_one("SELECT 1", &[]) {
                            Ok(_) => Outcome::Served,
                            Err(e) => {
                                conn.mark_broken();
                                Outcome::LentDead(e.to_string())
                            }
                        },
                        Err(PoolError::Timeout(t)) => Outcome::TimedOut {
                            create_timed_out: matches!(
                                t.last_create_error,
                                Some(CreateError::TimedOut(_))
                            ),
                        },
                        Err(e) => Outcome::Other(e.to_string()),
                    };
                    lock(&log).push(Attempt { took, outcome });
                }
            })
        })
        .collect();
    let _ = eventually(limit, || enough(&lock(&log)));
    stop.store(true, Ordering::Release);
    // Each finishes its acquire (bounded by `acquire_timeout`) and its query.
    let bound = pool.config().acquire_timeout() + Duration::from_secs(5);
    join_within(handles, bound, "an acquirer");
    Arc::try_unwrap(log)
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_default()
}

pub fn served(log: &[Attempt]) -> usize {
    log.iter().filter(|a| a.outcome == Outcome::Served).count()
}
