//! Test helpers shared by the crates' integration tests and the end-to-end tests: a fresh
//! PostgreSQL database and InfluxDB database per test, the real application on port 0, a
//! private InfluxDB or PostgreSQL process a test may stop, a private HAProxy, and a headless
//! Chromium.
//!
//! The servers come from `scripts/test`, which exports `OPSDECK_TEST_DATABASE_URL`,
//! `OPSDECK_TEST_INFLUX_URL` and `OPSDECK_SITE_ROOT`.

mod app;
mod binary;
mod browser;
mod haproxy;
mod influx_process;
mod postgres_process;
mod sse;
mod target;
mod wait;

pub use app::{TestApp, TestEnv, hidden_field};
pub use binary::opsdeck_binary;
pub use browser::Browser;
pub use haproxy::HaproxyProcess;
pub use influx_process::InfluxProcess;
pub use postgres_process::PostgresProcess;
pub use sse::{SseClient, SseMessage};
pub use target::TargetServer;
pub use wait::{free_port, wait_until};
