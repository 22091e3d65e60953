//! The router's request metrics are summed per instance and status class over one interval
//! (count, attempts, latency sum/max and a latency histogram for p50/p99), then written as one
//! `router_requests` point each — not a point per request. At tens of thousands of requests a
//! second a point per request cost the router more CPU than the proxying itself and loaded
//! InfluxDB; Envoy and linkerd report the same way (counters and histograms per interval).
//!
//! Two histograms, written here rather than taken from a crate (fixed arrays, no allocation on
//! the request path; `hdrhistogram` would add a dependency for precision nobody reads): fine
//! quarter-octave buckets (≤ 12.5 % error) give the window's own p50/p99, and fixed cumulative
//! buckets ([`BOUNDS_MS`], Prometheus' `le` semantics) are written as fields, so a quantile over
//! several instances or routers is computed from summed buckets — quantiles can't be averaged.

use std::time::Duration;

/// Latencies up to 15 µs exactly, then four buckets per doubling up to 2^36 µs (~19 h).
const BUCKETS: usize = 16 + 33 * 4;

/// The upper bounds (ms) of the written buckets; each field `le_<bound>ms` counts the requests
/// that took at most that long (`requests` is the +Inf bucket).
pub const BOUNDS_MS: [f64; 13] = [0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0];

/// The field names of [`BOUNDS_MS`], in order.
pub const BOUND_FIELDS: [&str; 13] = [
    "le_0_5ms",
    "le_1ms",
    "le_2_5ms",
    "le_5ms",
    "le_10ms",
    "le_25ms",
    "le_50ms",
    "le_100ms",
    "le_250ms",
    "le_500ms",
    "le_1000ms",
    "le_2500ms",
    "le_10000ms",
];

/// [`BOUNDS_MS`] in µs, for the request path.
const BOUNDS_US: [u64; 13] = {
    let mut us = [0; 13];
    let mut i = 0;
    while i < us.len() {
        us[i] = (BOUNDS_MS[i] * 1000.0) as u64;
        i += 1;
    }
    us
};

/// One status class of one instance over one interval.
#[derive(Debug, Clone)]
pub struct ClassWindow {
    pub requests: u64,
    pub attempts: u64,
    pub latency_us_sum: u64,
    pub latency_us_max: u64,
    buckets: [u32; BUCKETS],
    /// Requests within each of [`BOUNDS_MS`] (not cumulative here; see [`ClassWindow::at_most`]).
    written: [u64; 13],
}

impl Default for ClassWindow {
    fn default() -> Self {
        Self { requests: 0, attempts: 0, latency_us_sum: 0, latency_us_max: 0, buckets: [0; BUCKETS], written: [0; 13] }
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
        if let Some(first) = BOUNDS_US.iter().position(|bound| us <= *bound) {
            self.written[first] += 1;
        }
    }

    /// Cumulative counts: requests that took at most each of [`BOUNDS_MS`].
    pub fn at_most(&self) -> [u64; 13] {
        let mut total = 0;
        self.written.map(|n| {
            total += n;
            total
        })
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
        // 1–100 ms and 900 ms: 1 within 1 ms, 2 within 2.5, 5 within 5 … 100 within 100 and
        // 250 and 500, all 101 within 1 s.
        assert_eq!(window.at_most(), [0, 1, 2, 5, 10, 25, 50, 100, 100, 100, 101, 101, 101]);
        assert_eq!(BOUND_FIELDS.len(), BOUNDS_MS.len());
        for (field, bound) in BOUND_FIELDS.iter().zip(BOUNDS_MS) {
            assert_eq!(*field, format!("le_{}ms", bound.to_string().replace('.', "_")), "{field} names {bound} ms");
        }
    }
}
