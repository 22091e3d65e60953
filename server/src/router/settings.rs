//! The `opsdeck router` command line: listeners, PostgreSQL and InfluxDB (the same flags as
//! `serve`), access logs, the provider, and the data plane's timeouts and retry budget.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

use super::proxy::ProxySettings;
use crate::{
    cli::{DatabaseSettings, InfluxSettings},
    resilience::{Backoff, BreakerConfig},
};

/// Which data plane applies the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The built-in reverse proxy.
    Router,
    /// A running HAProxy, through its runtime API (--haproxy-socket).
    Haproxy,
}

#[derive(Debug, Clone, Args)]
pub struct RouterSettings {
    /// Address client traffic comes to (host:port); port 0 picks a free port.
    #[arg(long = "listen", env = "OPSDECK_ROUTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of /healthz, /readyz, /status and /metrics.
    #[arg(long = "admin-listen", env = "OPSDECK_ROUTER_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub influx: InfluxSettings,

    /// opsdeck's base URL, to send access-log lines to POST /api/v1/logs (with --ingest-token).
    #[arg(long = "opsdeck-url", env = "OPSDECK_URL")]
    pub opsdeck_url: Option<url::Url>,

    /// An API token with the ingest scope, for the access logs.
    #[arg(long = "ingest-token", env = "OPSDECK_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// The data plane: the built-in router, or HAProxy driven through its runtime API.
    #[arg(long = "provider", env = "OPSDECK_ROUTER_PROVIDER", value_enum, default_value_t = ProviderKind::Router)]
    pub provider: ProviderKind,

    /// The HAProxy provider's flags (--haproxy-socket, --haproxy-backend-prefix, --haproxy-config …).
    #[command(flatten)]
    pub haproxy: crate::traffic::haproxy::HaproxyArgs,

    /// Longest wait for a TCP connection to an instance.
    #[arg(long = "connect-timeout", env = "OPSDECK_ROUTER_CONNECT_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Longest wait for one instance's response head.
    #[arg(long = "attempt-timeout", env = "OPSDECK_ROUTER_ATTEMPT_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub attempt_timeout: Duration,

    /// Longest wait for a response head, all attempts and retry waits included.
    #[arg(long = "request-timeout", env = "OPSDECK_ROUTER_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Most attempts per request, each on a different instance.
    #[arg(long = "max-attempts", env = "OPSDECK_ROUTER_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub max_attempts: u32,

    /// Ceiling of the first retry wait (full jitter; doubles per retry up to --retry-cap).
    #[arg(long = "retry-base", env = "OPSDECK_ROUTER_RETRY_BASE", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,

    /// Longest retry wait.
    #[arg(long = "retry-cap", env = "OPSDECK_ROUTER_RETRY_CAP", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub retry_cap: Duration,

    /// Largest request body held for replay, in bytes; larger bodies get 413.
    #[arg(long = "body-limit", env = "OPSDECK_ROUTER_BODY_LIMIT", default_value_t = 8 * 1024 * 1024)]
    pub body_limit: usize,

    /// Consecutive failures (connect error or 5xx) that open an instance's breaker.
    #[arg(long = "breaker-failures", env = "OPSDECK_ROUTER_BREAKER_FAILURES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_failures: u32,

    /// How long an open breaker keeps its instance out before one trial request.
    #[arg(long = "breaker-open-for", env = "OPSDECK_ROUTER_BREAKER_OPEN_FOR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub breaker_open_for: Duration,

    /// A full reload of the routing table this often, besides the pushed changes.
    #[arg(long = "full-reload-every", env = "OPSDECK_ROUTER_FULL_RELOAD_EVERY", default_value = "10s", value_parser = humantime::parse_duration)]
    pub full_reload_every: Duration,

    /// Stop (gracefully) when standard input closes too: a supervisor holds the other end, so
    /// the router can't outlive it even if it is SIGKILLed (`opsdeck demo` uses this).
    #[arg(long = "stop-when-stdin-closes", action = clap::ArgAction::SetTrue)]
    pub stop_when_stdin_closes: bool,
}

impl RouterSettings {
    pub(super) fn proxy(&self) -> ProxySettings {
        ProxySettings {
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.attempt_timeout,
            request_timeout: self.request_timeout,
            max_attempts: self.max_attempts,
            backoff: Backoff::new(self.retry_base, self.retry_cap),
            body_limit: self.body_limit,
        }
    }

    pub(super) fn breaker(&self) -> BreakerConfig {
        BreakerConfig { failure_threshold: self.breaker_failures, open_for: self.breaker_open_for }
    }

    /// Settings for a test or a benchmark: both listeners on free loopback ports.
    pub fn for_tests(database: DatabaseSettings, influx: InfluxSettings) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            admin_listen: "127.0.0.1:0".parse().expect("a valid address"),
            database,
            influx,
            opsdeck_url: None,
            ingest_token: None,
            provider: ProviderKind::Router,
            haproxy: crate::traffic::haproxy::HaproxyArgs::default(),
            connect_timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            retry_base: Duration::from_millis(5),
            retry_cap: Duration::from_millis(100),
            body_limit: 8 * 1024 * 1024,
            breaker_failures: 3,
            breaker_open_for: Duration::from_secs(5),
            full_reload_every: Duration::from_secs(10),
            stop_when_stdin_closes: false,
        }
    }
}
