//! The assignment latency histogram: how long work waited in the pending
//! index before the scheduler handed it to an agent. Lock-free (atomics),
//! rendered by `GET /metrics` as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds. Work that no agent can take may wait for hours,
/// so the buckets reach far past the sub-second pickups of an idle farm.
pub const BUCKETS: [f64; 17] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound (not cumulative; summed on read).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A consistent-enough copy for rendering: cumulative bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn observe(&self, wait: Duration) {
        let secs = wait.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        // Read the count last so that it is never below the bucket sums.
        let count = self.count.load(Ordering::Relaxed).max(running);
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        HistogramSnapshot { cumulative, count, sum_seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(70));
        h.observe(Duration::from_secs(20_000));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (0.005, 1));
        assert_eq!(s.cumulative[4], (0.1, 2));
        assert_eq!(s.cumulative.last(), Some(&(14400.0, 2)), "beyond the last bound only +Inf counts it");
        assert!((s.sum_seconds - 20_000.073).abs() < 1e-6);
    }
}
