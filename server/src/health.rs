//! opsdeck's own health: `/healthz` (the process answers) and `/readyz` (PostgreSQL and InfluxDB
//! answer too; 503 naming the one that doesn't).

use std::time::{Duration, Instant};

use app::model::{Dependency, DependencyCheck, Readiness};
use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

/// A dependency that hasn't answered by then counts as unavailable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// Alive: the process serves HTTP. Says nothing about dependencies, on purpose (an orchestrator
/// restarts on this one, and restarting won't fix a database outage).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process serves HTTP")))]
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

/// Ready: 200 with every check, or 503 with the failing ones named in `error`.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "PostgreSQL and InfluxDB answer and metrics ingest keeps up", body = Readiness),
    (status = 503, description = "A store does not answer, or metrics are degraded; `error` names it", body = Readiness),
))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let report = check_readiness(&state).await;
    if report.ready {
        (StatusCode::OK, Json(serde_json::to_value(&report).unwrap_or_default()))
    } else {
        let failing: Vec<_> = report.failing().map(|c| c.dependency.label()).collect();
        let mut body = serde_json::to_value(&report).unwrap_or_default();
        body["error"] = format!("unavailable: {}", failing.join(", ")).into();
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// Checks PostgreSQL and InfluxDB at the same time.
#[tracing::instrument(skip_all)]
pub async fn check_readiness(state: &AppState) -> Readiness {
    let checked_at = chrono::Utc::now();
    let (postgres, influx) = tokio::join!(
        timed(Dependency::Postgres, crate::db::ping(&state.db)),
        timed(Dependency::Influxdb, state.influx.ping()),
    );
    Readiness::from_checks(checked_at, vec![postgres, influx, metrics_check(state)])
}

/// Metrics ingest, from the buffer's own state (no I/O): degraded while the writer fails or the
/// buffer is above 80 %.
fn metrics_check(state: &AppState) -> DependencyCheck {
    let error = state.metrics.buffer.status().degraded();
    if let Some(error) = &error {
        tracing::warn!(error, "metrics degraded");
    }
    DependencyCheck { dependency: Dependency::Metrics, ok: error.is_none(), latency_ms: 0.0, error }
}

async fn timed<E: std::fmt::Display>(
    dependency: Dependency,
    check: impl std::future::Future<Output = Result<(), E>>,
) -> DependencyCheck {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    if let Some(error) = &error {
        tracing::warn!(dependency = dependency.label(), error, "dependency unavailable");
    }
    DependencyCheck { dependency, ok: error.is_none(), latency_ms, error }
}
