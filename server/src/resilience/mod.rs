//! Resilience primitives shared by the health checker and the data plane: retries with
//! exponentially growing, jittered waits ([`backoff`]) and the circuit breaker ([`breaker`]).
//! Both take the current time as an argument or sleep on tokio's clock, so tests run them on a
//! paused clock (`tokio::time::pause`) instead of waiting.

pub mod backoff;
pub mod breaker;

pub use backoff::{Backoff, retry};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Rejected};
