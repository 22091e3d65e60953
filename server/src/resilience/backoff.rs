//! Exponential backoff with "full jitter": the n-th wait is a uniformly random duration between
//! zero and `min(cap, base × 2ⁿ)`. Randomising the whole wait (not just adding a little) is what
//! spreads out many clients that failed at the same moment, so they don't retry in lockstep.

use std::{future::Future, time::Duration};

/// How long to wait before each retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The longest the wait before retry number `attempt` (0-based) may be.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2_u32.saturating_pow(attempt.min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry `attempt`, for a uniform random `unit` in [0, 1).
    pub fn delay_for(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait before retry `attempt`, with fresh randomness.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_for(attempt, fastrand::f64())
    }
}

/// Runs `operation` up to `attempts` times, waiting [`Backoff::delay`] between tries (on
/// tokio's clock), and returns the first success or the last error.
pub async fn retry<T, E, F, Fut>(backoff: Backoff, attempts: u32, mut operation: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) if attempt + 1 >= attempts.max(1) => return Err(error),
            Err(_) => {
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

    #[test]
    fn ceilings_double_until_the_cap() {
        let ceilings: Vec<_> = (0..7).map(|n| BACKOFF.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_secs(2), "no overflow on absurd attempts");
    }

    #[test]
    fn waits_are_spread_over_the_whole_range() {
        assert_eq!(BACKOFF.delay_for(3, 0.0), Duration::ZERO);
        assert_eq!(BACKOFF.delay_for(3, 0.5), Duration::from_millis(400));
        let waits: Vec<_> = (0..1000).map(|_| BACKOFF.delay(3)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(800)));
        let below_half = waits.iter().filter(|w| **w < Duration::from_millis(400)).count();
        assert!((350..650).contains(&below_half), "roughly uniform: {below_half}/1000 below the middle");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_between_tries_and_stops_at_the_first_success() {
        let started = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let result: Result<&str, &str> = retry(BACKOFF, 5, |attempt| {
            seen.push(attempt);
            async move { if attempt < 3 { Err("not yet") } else { Ok("done") } }
        })
        .await;
        assert_eq!(result, Ok("done"));
        assert_eq!(seen, [0, 1, 2, 3]);
        // Three waits, each at most its ceiling: 100 + 200 + 400 ms.
        assert!(started.elapsed() <= Duration::from_millis(700), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_with_the_last_error() {
        let result: Result<(), u32> = retry(BACKOFF, 3, |attempt| async move { Err(attempt) }).await;
        assert_eq!(result, Err(2));
    }
}
