//! The pool's statistics since it was built: counters by cause and three latency distributions,
//! in fixed memory whatever the traffic.
//!
//! A distribution is a log-linear histogram: 8 buckets per power of two of nanoseconds, so a
//! reported percentile is within 12.5% of the true value (the maximum is exact). Each recording
//! is three relaxed atomic adds, and a `fetch_max` only for a new maximum.

// Plain std atomics even under loom: the statistics take no part in the pool's synchronization,
// and a record's steps depend on the measured time (a new maximum or not), which would make
// loom's exploration non-deterministic.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::DestroyReason;
use crate::snapshot::{DestroyedCounts, Distribution, PoolStatistics};

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUB;

pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let v = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        // A read first: a new maximum is rare, and a read-modify-write on every record would
        // bounce the line between cores on the contended path.
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// The mean of what was recorded, from two loads (cheap enough for `current_metrics`).
    pub(crate) fn mean(&self) -> Duration {
        match self.count.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.sum.load(Ordering::Relaxed) / n),
        }
    }

    pub(crate) fn snapshot(&self) -> Distribution {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max.load(Ordering::Relaxed);
        let at = |q: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            // The rank of the q-quantile, 1-based.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(upper_bound(i).min(max));
                }
            }
            Duration::from_nanos(max)
        };
        let mean = match count {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.sum.load(Ordering::Relaxed) / n),
        };
        Distribution {
            count,
            mean,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: Duration::from_nanos(max),
        }
    }
}

/// The bucket of a value: 8 linear sub-buckets per power of two.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let base = 1u64 << exp;
    let width = 1u64 << (exp - SUB_BITS);
    (base + (sub + 1) * width).saturating_sub(1)
}

/// Counters and distributions.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) created: AtomicU64,
    pub(crate) create_failures: AtomicU64,
    destroyed: [AtomicU64; DestroyReason::COUNT],
    /// Every release, when statistics are detailed.
    pub(crate) released: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) health_checks: AtomicU64,
    pub(crate) health_check_failures: AtomicU64,
    pub(crate) leaks_reported: AtomicU64,
    pub(crate) wait: Histogram,
    pub(crate) hold: Histogram,
    pub(crate) create: Histogram,
}

impl Stats {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn destroyed(&self, reason: DestroyReason) {
        Self::count(&self.destroyed[reason.index()]);
    }

    pub(crate) fn snapshot(&self, detailed: bool) -> PoolStatistics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let d = |r: DestroyReason| get(&self.destroyed[r.index()]);
        PoolStatistics {
            created: get(&self.created),
            create_failures: get(&self.create_failures),
            destroyed: DestroyedCounts {
                broken: d(DestroyReason::Broken),
                panicked: d(DestroyReason::Panicked),
                idle_timeout: d(DestroyReason::IdleTimeout),
                expired: d(DestroyReason::Expired),
                failed_validation: d(DestroyReason::FailedValidation),
                unhealthy: d(DestroyReason::Unhealthy),
                evicted: d(DestroyReason::Evicted),
                resized: d(DestroyReason::Resized),
                closed: d(DestroyReason::Closed),
            },
            // Every recorded wait is one acquire.
            acquired: get(&self.wait.count),
            released: detailed.then(|| get(&self.released)),
            timed_out: get(&self.timed_out),
            health_checks: get(&self.health_checks),
            health_check_failures: get(&self.health_check_failures),
            leaks_reported: get(&self.leaks_reported),
            acquire_wait: self.wait.snapshot(),
            hold_time: detailed.then(|| self.hold.snapshot()),
            create_time: self.create.snapshot(),
            detailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            10_u64.pow(12),
            u64::MAX / 2,
        ] {
            let i = index(v);
            assert!(upper_bound(i) >= v, "{v} above its bucket {i}");
            if i > 0 {
                assert!(upper_bound(i - 1) < v, "{v} also fits bucket {}", i - 1);
            }
            assert!(upper_bound(i) - v <= v / 8 + 1, "bucket of {v} too wide");
        }
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let d = h.snapshot();
        assert_eq!(d.count, 100);
        assert_eq!(d.max, Duration::from_millis(100));
        let close = |got: Duration, want_ms: u64| {
            let want = Duration::from_millis(want_ms);
            got >= want && got <= want + want / 8
        };
        assert!(close(d.p50, 50), "p50 {:?}", d.p50);
        assert!(close(d.p90, 90), "p90 {:?}", d.p90);
        assert!(close(d.p99, 99), "p99 {:?}", d.p99);
    }
}
