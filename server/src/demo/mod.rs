//! `opsdeck demo`: the dashboard plus a fleet of real HTTP services on loopback that register,
//! heartbeat, answer health checks and can be made to fail, so the dashboard shows real changes.
//!
//! Each demo service is its own OS process (`opsdeck demo-service`, [`service`], registering
//! through [`registrar`]), so killing one is a real crash and stopping a node is a real outage.
//! [`plan`] says which instances run where, [`fleet`] starts and supervises them (restarting none
//! by itself: a failure stays visible until someone acts), [`control`] is the small HTTP API
//! people use to break and mend things, and [`command`] runs it all with the dashboard.
//!
//! The services do real work ([`work`]: web → api → payments on `GET /checkout`, each callee
//! found through discovery by [`downstream`]), carry a W3C trace across the calls ([`trace`]),
//! and send their log lines and `http_requests` points to opsdeck ([`telemetry`], through the
//! bounded [`outbox`]es); [`traffic`] is the demo's steady load, sent through the `opsdeck router`
//! child that [`router`] starts (every service 100 % on v1, v2 beside it at 0 %).

pub mod command;
pub mod control;
pub mod downstream;
pub mod fleet;
pub mod mode;
pub mod outbox;
pub mod plan;
pub mod registrar;
pub mod router;
pub mod service;
pub mod telemetry;
pub mod trace;
pub mod traffic;
pub mod work;

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

    /// Which fleet to start: `full` (2 clusters × 3 nodes, 18 instances) or `small` (1 cluster × 3 nodes, web v1 ×2 and v2).
    #[arg(long = "fleet", env = "OPSDECK_DEMO_FLEET", value_enum, default_value_t = FleetSize::Full, help_heading = "Demo")]
    pub fleet: FleetSize,

    /// First port of the demo services: service n (web 0, api 1, payments 2), version m (v1 0, v2 1) listens on base + 10·n + m.
    #[arg(long = "service-port-base", env = "OPSDECK_DEMO_SERVICE_PORT_BASE", default_value_t = 8100, value_parser = clap::value_parser!(u16).range(1024..=65000), help_heading = "Demo")]
    pub service_port_base: u16,

    /// Requests per second the demo's load generator sends to each target (`GET /checkout`
    /// through the demo's router, once per web instance, unless `--traffic-target` says
    /// otherwise); 0 turns it off.
    #[arg(long = "traffic-rps", env = "OPSDECK_DEMO_TRAFFIC_RPS", default_value_t = 2.0, value_parser = parse_rps, help_heading = "Demo")]
    pub traffic_rps: f64,

    /// Where the load generator sends its requests (repeatable), instead of through the demo's
    /// router, e.g. straight to one instance: `--traffic-target http://127.0.1.1:8100/checkout`.
    #[arg(long = "traffic-target", env = "OPSDECK_DEMO_TRAFFIC_TARGETS", value_delimiter = ',', help_heading = "Demo")]
    pub traffic_targets: Vec<url::Url>,

    /// Where the demo's `opsdeck router` takes client traffic (Host = service name).
    #[arg(
        long = "router-listen",
        env = "OPSDECK_DEMO_ROUTER_LISTEN",
        default_value = "127.0.0.1:3080",
        help_heading = "Demo"
    )]
    pub router_listen: SocketAddr,

    /// The demo router's admin listener (/healthz, /readyz, /status, /metrics).
    #[arg(
        long = "router-admin-listen",
        env = "OPSDECK_DEMO_ROUTER_ADMIN_LISTEN",
        default_value = "127.0.0.1:3081",
        help_heading = "Demo"
    )]
    pub router_admin_listen: SocketAddr,
}

/// A request rate between 0 (off) and 100 per second.
fn parse_rps(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if (0.0..=100.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is outside 0 (off) to 100 requests per second"))
    }
}

/// The shape of the demo fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FleetSize {
    /// Two clusters (east, west), three nodes each, web/api/payments in v1 and v2: 18 instances.
    Full,
    /// One cluster, three nodes, one service: web v1 on two, web v2 on the third; quick to start (tests, slow machines).
    Small,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traffic_rate_is_a_number_from_zero_to_a_hundred() {
        assert_eq!(parse_rps("0"), Ok(0.0));
        assert_eq!(parse_rps(" 2.5 "), Ok(2.5));
        assert_eq!(parse_rps("100"), Ok(100.0));
        for refused in ["-1", "100.5", "lots", "", "NaN", "inf"] {
            assert!(parse_rps(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
