//! opsdeck: an operations dashboard and release control plane.
//!
//! The binary (`main.rs`) only parses the command line and calls in here. [`startup`] builds the
//! application as a value tests can start on port 0; each feature is a module that owns its
//! routes, its queries and its tests.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod cli;
pub mod db;
pub mod demo;
pub mod events;
pub mod health;
pub mod http;
pub mod influx;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod releases;
pub mod resilience;
pub mod router;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod topology;
pub mod traffic;
pub mod ui;
