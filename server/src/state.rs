//! The application state every handler and server function receives.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::PgPool;

use crate::{cli::AuthSettings, influx::InfluxClient};

/// Shared handles; cheap to clone (each part is reference-counted inside).
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: PgPool,
    pub influx: InfluxClient,
    pub leptos: LeptosOptions,
    pub auth: std::sync::Arc<AuthSettings>,
    pub logs: std::sync::Arc<crate::cli::LogSettings>,
    pub round_robin: std::sync::Arc<crate::topology::discovery::RoundRobin>,
    /// Committed events, fanned out in this process (fed by PostgreSQL NOTIFY).
    pub events: crate::events::EventHub,
    /// Live log tails: one subscription per distinct filter, fed by PostgreSQL NOTIFY.
    pub log_tail: crate::logs::tail::LogTailHub,
    /// Metrics ingest: the bounded buffer for InfluxDB and the registry tag cache.
    pub metrics: crate::metrics::Metrics,
    /// Cancelled when shutdown begins: endless responses (event streams, discovery watches)
    /// end then, so the grace period isn't spent waiting for them.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Starts and stops instances for rolling releases (`--deployer-url`), when configured.
    pub deployer: Option<std::sync::Arc<dyn crate::releases::deployer::Deployer>>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
