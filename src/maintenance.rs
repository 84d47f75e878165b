//! The maintenance loop: one small thread per pool that destroys retired connections off the
//! callers' paths, runs the periodic health checks, keeps the coarse clock fresh while the pool
//! is busy, and finishes a close.

use std::sync::Arc;
use std::time::Instant;

use event_listener::Listener;

use crate::ConnectionFactory;
use crate::core::{Shared, TICK};

/// Starts the pool's maintenance thread. It holds the shared state until the pool is closed and
/// every connection is gone, then exits.
///
/// If the thread cannot be started (the process is out of threads) the pool still works:
/// acquirers that need room destroy retired connections themselves.
pub(crate) fn start<F: ConnectionFactory>(shared: Arc<Shared<F>>) {
    let name = format!("{}-maintenance", shared.config.name());
    let _ = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&shared));
}

fn run<F: ConnectionFactory>(shared: &Shared<F>) {
    let interval = shared
        .health
        .as_ref()
        .and(shared.config.health_check_interval());
    let mut next_check = interval.map(|every| Instant::now() + every);
    let mut ticking = true;
    loop {
        let listener = shared.maintenance.listen();
        while futures_lite::future::block_on(shared.destroy_one_retiring()) {}
        if shared.is_closed() {
            if shared.total() == 0 {
                return;
            }
            next_check = None;
        }
        if let (Some(at), Some(every)) = (next_check, interval) {
            if Instant::now() >= at {
                futures_lite::future::block_on(shared.check_idle_health());
                next_check = Some(Instant::now() + every);
                continue;
            }
        }
        if ticking {
            // Refresh the coarse clock; stop after a tick in which nobody read it.
            ticking = shared.clock.tick();
        }
        let until_check = next_check.map(|at| at.saturating_duration_since(Instant::now()));
        let timeout = match (ticking, until_check) {
            (true, Some(d)) => Some(d.min(TICK)),
            (true, None) => Some(TICK),
            (false, d) => d,
        };
        let woken = match timeout {
            Some(d) => listener.wait_timeout(d).is_some(),
            None => {
                listener.wait();
                true
            }
        };
        if woken {
            // By a retired connection, by `close`, or by a reader that restarted the clock.
            ticking = shared.clock.is_ticking();
        }
    }
}
