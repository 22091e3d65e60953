//! The circuit breaker: after `failure_threshold` consecutive failures it opens and refuses
//! calls at once (a dead target then costs nothing); after `open_for` it lets one trial call
//! through (half-open); that trial's success closes it, its failure opens it again.
//!
//! ```text
//!  Closed ──N failures──▶ Open ──open_for elapsed──▶ HalfOpen ──trial ok──▶ Closed
//!                           ▲                            │
//!                           └────────trial fails─────────┘
//! ```
//!
//! Written here rather than taken from a crate: the breakers on crates.io wrap a future and own
//! the clock, while the health checker and the router need to report the state, share it per
//! target, and drive it on tokio's (pausable) clock.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a trial call.
    pub open_for: Duration,
}

/// The state, for decisions and for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is allowed; `in_flight` while it runs.
    HalfOpen {
        in_flight: bool,
    },
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// A call was refused because the breaker is open (or its one trial is already running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When a trial call will be allowed; `None` while a trial is in flight.
    pub retry_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: BreakerState::Closed { consecutive_failures: 0 } }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Asks to make a call at `now`. Moves Open → HalfOpen when the open time has passed.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Rejected> {
        match self.state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { in_flight: true };
                Ok(())
            }
            BreakerState::Open { until } => Err(Rejected { retry_at: Some(until) }),
            BreakerState::HalfOpen { in_flight: false } => {
                self.state = BreakerState::HalfOpen { in_flight: true };
                Ok(())
            }
            BreakerState::HalfOpen { in_flight: true } => Err(Rejected { retry_at: None }),
        }
    }

    /// The call succeeded: the breaker closes and forgets past failures.
    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed { consecutive_failures: 0 };
    }

    /// Opens at `now` whatever the count: to restore an open breaker another process saw.
    pub fn trip(&mut self, now: Instant) {
        self.state = BreakerState::Open { until: now + self.config.open_for };
    }

    /// The call failed at `now`: count it, or (re)open.
    pub fn record_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { consecutive_failures }
                if consecutive_failures + 1 < self.config.failure_threshold =>
            {
                BreakerState::Closed { consecutive_failures: consecutive_failures + 1 }
            }
            _ => BreakerState::Open { until: now + self.config.open_for },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(10) };

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_and_refuses_at_once() {
        let mut breaker = CircuitBreaker::new(CONFIG);
        for _ in 0..2 {
            assert!(breaker.try_acquire(Instant::now()).is_ok());
            breaker.record_failure(Instant::now());
        }
        assert_eq!(breaker.state(), BreakerState::Closed { consecutive_failures: 2 });
        breaker.record_failure(Instant::now());
        assert_eq!(breaker.state().name(), "open");
        let refused = breaker.try_acquire(Instant::now()).expect_err("open");
        assert_eq!(refused.retry_at, Some(Instant::now() + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_the_open_time_with_a_single_trial() {
        let mut breaker = CircuitBreaker::new(CONFIG);
        for _ in 0..3 {
            breaker.record_failure(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(breaker.try_acquire(Instant::now()).is_err(), "still open after 9 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(breaker.try_acquire(Instant::now()).is_ok(), "the trial goes through at 10 s");
        assert_eq!(breaker.state(), BreakerState::HalfOpen { in_flight: true });
        assert_eq!(breaker.try_acquire(Instant::now()), Err(Rejected { retry_at: None }), "only one trial at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_good_trial_closes_and_a_bad_one_reopens() {
        let mut breaker = CircuitBreaker::new(CONFIG);
        for _ in 0..3 {
            breaker.record_failure(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.try_acquire(Instant::now()).expect("trial");
        breaker.record_failure(Instant::now());
        assert_eq!(breaker.state(), BreakerState::Open { until: Instant::now() + Duration::from_secs(10) });

        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.try_acquire(Instant::now()).expect("second trial");
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed { consecutive_failures: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_failure_count() {
        let mut breaker = CircuitBreaker::new(CONFIG);
        breaker.record_failure(Instant::now());
        breaker.record_failure(Instant::now());
        breaker.record_success();
        breaker.record_failure(Instant::now());
        assert_eq!(breaker.state(), BreakerState::Closed { consecutive_failures: 1 });
    }
}
