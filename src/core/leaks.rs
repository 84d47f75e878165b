//! Leak detection: the loans in progress, kept only when `leak_detection_threshold` is set (it
//! costs a lock per acquire and release, which the default configuration does not pay).

use super::sync::{AtomicU64, Mutex, Ordering};
use std::collections::HashMap;
use std::panic::Location;

use super::Millis;

/// Names one loan in the registry; `NONE` when leak detection is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeakId(u64);

impl LeakId {
    pub(crate) const NONE: LeakId = LeakId(0);
}

#[derive(Debug)]
struct Loan {
    lent_at: Millis,
    location: &'static Location<'static>,
    reported: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    loans: Mutex<HashMap<u64, Loan>>,
}

impl Registry {
    pub(crate) fn register(&self, lent_at: Millis, location: &'static Location<'static>) -> LeakId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let loan = Loan {
            lent_at,
            location,
            reported: false,
        };
        self.lock().insert(id, loan);
        LeakId(id)
    }

    pub(crate) fn unregister(&self, id: LeakId) {
        if id != LeakId::NONE {
            self.lock().remove(&id.0);
        }
    }

    /// Loans held at least `threshold` and not yet reported: marks them reported and returns how
    /// long each has been held and where it was acquired.
    pub(crate) fn overdue(
        &self,
        now: Millis,
        threshold: Millis,
    ) -> Vec<(Millis, &'static Location<'static>)> {
        let mut found = Vec::new();
        for loan in self.lock().values_mut() {
            let held = now.saturating_sub(loan.lent_at);
            if !loan.reported && held >= threshold {
                loan.reported = true;
                found.push((held, loan.location));
            }
        }
        found
    }

    fn lock(&self) -> super::sync::MutexGuard<'_, HashMap<u64, Loan>> {
        self.loans.lock().unwrap_or_else(|p| p.into_inner())
    }
}
