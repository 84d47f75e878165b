//! Assertions on a pool over the scripted factory: its metrics while nothing works on it, and
//! destroys awaited until the pool's counts have caught up.

use super::wait::wait_until;
use super::{Pool, Script};

/// Waits until the factory has destroyed `n` connections in all and the pool has stopped
/// counting them: the pool frees a place only after the factory's `destroy` has returned, so the
/// factory's count alone does not say the pool's `total` has caught up.
#[track_caller]
pub fn wait_destroyed(pool: &Pool, counts: &Script, n: usize) {
    wait_until(&format!("{n} connection(s) are destroyed"), || {
        counts.destroyed() >= n && pool.current_metrics().total == counts.live()
    });
    assert_eq!(
        counts.destroyed(),
        n,
        "more connections destroyed than expected"
    );
}

/// Asserts the metrics snapshot of a quiet pool (no thread working on it).
#[track_caller]
pub fn assert_metrics(pool: &Pool, total: usize, idle: usize, waiting: usize) {
    let m = pool.current_metrics();
    assert_eq!(
        (m.total, m.idle, m.active, m.waiting),
        (total, idle, total - idle, waiting),
        "metrics (total, idle, active, waiting) in {m:?}"
    );
    assert_eq!(
        m.idle + m.active,
        m.total,
        "idle + active == total in {m:?}"
    );
    assert!(m.total <= m.max, "total <= max in {m:?}");
}
