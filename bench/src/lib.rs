//! Benchmarks of opsdeck that run the real release binary against real PostgreSQL and InfluxDB
//! and measure what it costs (`scripts/bench` starts the stores and runs them).
//!
//! - [`target`]: an HTTP server that answers health probes for thousands of loopback addresses
//!   and records when each one was probed.
//! - [`procstat`]: CPU time, memory and scheduling figures of a process, from `/proc`.
//! - [`opsdeck`]: starts `opsdeck serve` as a child process, creates tokens, registers instances.
//! - [`report`]: the result table.

pub mod opsdeck;
pub mod procstat;
pub mod report;
pub mod target;
