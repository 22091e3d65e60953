//! `opsdeck demo`: the dashboard plus a fleet of real HTTP services on loopback that register,
//! heartbeat, answer health checks and can be made to fail, so the dashboard shows real changes.
//!
//! Each demo service is its own OS process (`opsdeck demo-service`, [`service`], registering
//! through [`registrar`]), so killing one is a real crash and stopping a node is a real outage.
//! [`plan`] says which instances run where, [`fleet`] starts and supervises them (restarting none
//! by itself: a failure stays visible until someone acts), [`control`] is the small HTTP API
//! people use to break and mend things, and [`command`] runs it all with the dashboard.

pub mod command;
pub mod control;
pub mod fleet;
pub mod mode;
pub mod plan;
pub mod registrar;
pub mod service;

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

pub use command::run;
pub use plan::FleetPlan;

/// Everything `opsdeck demo` needs: the dashboard's own settings plus the fleet's.
#[derive(Debug, Clone, Args)]
pub struct DemoSettings {
    #[command(flatten)]
    pub serve: crate::cli::ServeSettings,

    /// Address of the demo's control API (list the fleet, break and mend instances).
    #[arg(
        long = "control-listen",
        env = "OPSDECK_DEMO_CONTROL_LISTEN",
        default_value = "127.0.0.1:3099",
        help_heading = "Demo"
    )]
    pub control_listen: SocketAddr,

    /// Which fleet to start: `full` (2 clusters × 3 nodes, 18 instances) or `small` (1 cluster × 2 nodes, 2 instances).
    #[arg(long = "fleet", env = "OPSDECK_DEMO_FLEET", value_enum, default_value_t = FleetSize::Full, help_heading = "Demo")]
    pub fleet: FleetSize,

    /// First port of the demo services: service n (web 0, api 1, payments 2), version m (v1 0, v2 1) listens on base + 10·n + m.
    #[arg(long = "service-port-base", env = "OPSDECK_DEMO_SERVICE_PORT_BASE", default_value_t = 8100, value_parser = clap::value_parser!(u16).range(1024..=65000), help_heading = "Demo")]
    pub service_port_base: u16,
}

/// The shape of the demo fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FleetSize {
    /// Two clusters (east, west), three nodes each, web/api/payments in v1 and v2: 18 instances.
    Full,
    /// One cluster, two nodes, one service: quick to start (tests, slow machines).
    Small,
}
