//! The router's request metrics are summed per instance and status class over one interval
//! (count, attempts, latency sum/max and a latency histogram for p50/p99), then written as one
//! `router_requests` point each — not a point per request. At tens of thousands of requests a
//! second a point per request cost the router more CPU than the proxying itself and loaded
//! InfluxDB; Envoy and linkerd report the same way (counters and histograms per interval).
//!
//! The histogram is written here, not taken from a crate: it is a fixed array of quarter-octave
//! buckets (≤ 12.5 % error, no allocation on the request path), which is all a p99 on a
//! dashboard needs; `hdrhistogram` would add a dependency for precision nobody reads.

use std::time::Duration;

/// Latencies up to 15 µs exactly, then four buckets per doubling up to 2^36 µs (~19 h).
const BUCKETS: usize = 16 + 33 * 4;

/// One status class of one instance over one interval.
#[derive(Debug, Clone)]
pub struct ClassWindow {
    pub requests: u64,
    pub attempts: u64,
    pub latency_us_sum: u64,
    pub latency_us_max: u64,
    buckets: [u32; BUCKETS],
}

impl Default for ClassWindow {
    fn default() -> Self {
        Self { requests: 0, attempts: 0, latency_us_sum: 0, latency_us_max: 0, buckets: [0; BUCKETS] }
    }
}

/// The bucket of a latency in µs.
fn bucket(us: u64) -> usize {
    if us < 16 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // ≥ 4
    let quarter = ((us >> (octave - 2)) & 3) as usize;
    (16 + (octave - 4) * 4 + quarter).min(BUCKETS - 1)
}

/// The middle of a bucket's range, in µs.
fn middle(index: usize) -> f64 {
    if index < 16 {
        return index as f64;
    }
    let (octave, quarter) = ((index - 16) / 4 + 4, ((index - 16) % 4) as u64);
    let low = (4 + quarter) << (octave - 2);
    let width = 1u64 << (octave - 2);
    low as f64 + width as f64 / 2.0
}

impl ClassWindow {
    pub fn record(&mut self, latency: Duration, attempts: u32) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.requests += 1;
        self.attempts += u64::from(attempts);
        self.latency_us_sum = self.latency_us_sum.saturating_add(us);
        self.latency_us_max = self.latency_us_max.max(us);
        self.buckets[bucket(us)] += 1;
    }

    /// The latency at quantile `q` (0–1) in ms, within the bucket's precision; never more than
    /// the largest seen.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let rank = ((q * self.requests as f64).ceil() as u64).clamp(1, self.requests.max(1));
        if rank >= self.requests {
            // The last one is the largest, known exactly.
            return self.latency_us_max as f64 / 1000.0;
        }
        let mut seen = 0u64;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return middle(index).min(self.latency_us_max as f64) / 1000.0;
            }
        }
        self.latency_us_max as f64 / 1000.0
    }
}

/// Every status class of one instance: 2xx, 3xx, 4xx, 5xx (1xx counts as 2xx: never seen).
#[derive(Debug, Default)]
pub struct Windows(pub [ClassWindow; 4]);

/// The slot of a status class in [`Windows`].
pub fn slot(class: &str) -> usize {
    match class {
        "3xx" => 1,
        "4xx" => 2,
        "5xx" => 3,
        _ => 0,
    }
}

/// The class name of a slot.
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_rise_with_latency_and_their_middles_stay_within_an_eighth() {
        let mut last = 0;
        for us in (0..2_000_000u64).step_by(7) {
            let index = bucket(us);
            assert!(index >= last, "{us} µs fell back to bucket {index}");
            last = index;
            if us >= 16 {
                let error = (middle(index) - us as f64).abs() / us as f64;
                assert!(error <= 0.125, "{us} µs: bucket middle {} is {error:.3} off", middle(index));
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1, "anything longer lands in the last bucket");
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_never_exceed_the_largest_latency() {
        let mut window = ClassWindow::default();
        for ms in 1..=100u64 {
            window.record(Duration::from_millis(ms), 1);
        }
        window.record(Duration::from_millis(900), 3);
        assert_eq!((window.requests, window.attempts), (101, 103));
        let p50 = window.quantile_ms(0.5);
        let p99 = window.quantile_ms(0.99);
        assert!((44.0..=57.0).contains(&p50), "p50 {p50}");
        assert!((87.0..=113.0).contains(&p99), "p99 {p99}");
        assert_eq!(window.quantile_ms(1.0), 900.0, "the top is the largest seen");
        assert_eq!(ClassWindow::default().quantile_ms(0.99), 0.0);
    }
}
