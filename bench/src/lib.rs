//! Benchmarks of opsdeck that run the real release binary against real PostgreSQL and InfluxDB
//! and measure what it costs (`scripts/bench` starts the stores and runs them).
//!
//! - [`target`]: an HTTP server that answers health probes for thousands of loopback addresses
//!   and records when each one was probed.
//! - [`procstat`]: CPU time, memory and scheduling figures of a process, from `/proc`.
//! - [`opsdeck`]: starts `opsdeck serve` as a child process, creates tokens, registers instances.
//! - [`report`]: the result table.
//! - [`loadgen`]: a closed-loop HTTP load generator on hyper (the router benchmark).
//! - [`proxies`]: `opsdeck router`, HAProxy, nginx and kill-able upstreams for the router benchmark.

pub mod loadgen;
pub mod opsdeck;
pub mod procstat;
pub mod proxies;
pub mod report;
pub mod target;
