//! Checks, while guards are held, that no connection is lent twice and how many are lent at once.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::factory::{Script, ScriptedConn};
use super::sync::lock;

#[derive(Debug, Default)]
pub struct Tracker {
    in_use: Mutex<HashSet<usize>>,
    holding: AtomicUsize,
    /// The most connections held at once.
    pub max_holding: AtomicUsize,
}

impl Tracker {
    /// A holder got `conn`: nobody else may hold it.
    #[track_caller]
    pub fn enter(&self, conn: &ScriptedConn) {
        let held = self.holding.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_holding.fetch_max(held, Ordering::SeqCst);
        assert!(
            lock(&self.in_use).insert(conn.id),
            "connection #{} lent to two holders at once",
            conn.id
        );
    }

    /// The holder of `conn` is done with it.
    pub fn leave(&self, conn: &ScriptedConn) {
        lock(&self.in_use).remove(&conn.id);
        self.holding.fetch_sub(1, Ordering::SeqCst);
    }

    /// Asserts that the bound `max` held: no more than `max` connections existed at once, were
    /// made in all, or were held at once.
    #[track_caller]
    pub fn assert_within(&self, script: &Script, max: usize) {
        assert!(
            script.peak() <= max,
            "peak of {} live connections",
            script.peak()
        );
        assert!(
            script.created() <= max,
            "{} connections created",
            script.created()
        );
        let held = self.max_holding.load(Ordering::SeqCst);
        assert!(held <= max, "{held} connections held at once");
    }
}
