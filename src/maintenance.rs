//! The maintenance loop: one small thread per pool that destroys retired connections off the
//! callers' paths and finishes a close.

use std::sync::Arc;

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
    let mut ticking = true;
    loop {
        let listener = shared.maintenance.listen();
        while futures_lite::future::block_on(shared.destroy_one_retiring()) {}
        if shared.is_closed() && shared.total() == 0 {
            return;
        }
        if ticking {
            // Refresh the coarse clock; stop after a tick in which nobody read it.
            ticking = shared.clock.tick();
            if listener.wait_timeout(TICK).is_none() {
                continue;
            }
        } else {
            listener.wait();
        }
        // Woken: by a retired connection, by `close`, or by a reader that restarted the clock.
        ticking = shared.clock.is_ticking();
    }
}
