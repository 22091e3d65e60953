//! The router's admin listener: `/healthz` (the process answers), `/readyz` (PostgreSQL
//! reachable and a policy in effect; otherwise 503 saying which policy is served since when and
//! why), `/status` (per service: revision, weights, upstreams with breaker state, rotation and
//! idle connections), `/metrics` (OpenMetrics text, from `prometheus-client`).

use std::{fmt::Write as _, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{pool::LiveTable, report::Reporter};
use crate::{metrics::Buffer, traffic::watch::WatchStatus};

pub struct Admin {
    pub status: Arc<WatchStatus>,
    pub table: Arc<LiveTable>,
    pub report: Arc<Reporter>,
    pub points: Arc<Buffer>,
}

pub fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let report = admin.status.report();
    let code = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(report)).into_response()
}

async fn status(State(admin): State<Arc<Admin>>) -> Json<serde_json::Value> {
    let snapshot = admin.table.load();
    let mut names: Vec<&String> = snapshot.table.services.keys().collect();
    names.sort();
    let services: Vec<serde_json::Value> = names
        .into_iter()
        .filter_map(|name| snapshot.services.get(name))
        .map(|pool| {
            let in_rotation: std::collections::HashMap<_, _> = pool
                .versions
                .values()
                .flat_map(|v| v.targets.iter())
                .map(|t| (t.upstream.id, (t.breaker_state(), t.connections.idle_count())))
                .collect();
            let upstreams: Vec<serde_json::Value> = pool
                .routes
                .upstreams
                .iter()
                .map(|u| {
                    let (breaker, idle) = in_rotation.get(&u.id).copied().unzip();
                    json!({
                        "id": u.id,
                        "version": u.version,
                        "address": u.address(),
                        "node": u.node,
                        "cluster": u.cluster,
                        "health": u.health.as_str(),
                        "breaker": breaker.unwrap_or("closed"),
                        "in_rotation": breaker.is_some_and(|b| b != "open"),
                        "idle_connections": idle.unwrap_or(0),
                    })
                })
                .collect();
            json!({
                "service": pool.routes.policy.service,
                "revision": pool.routes.policy.revision,
                "weights": pool.routes.policy.weights,
                "sticky": pool.routes.policy.sticky,
                "route": pool.routes.policy.route,
                "upstreams": upstreams,
            })
        })
        .collect();
    Json(json!({ "watch": admin.status.report(), "services": services }))
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode_registry(&mut body, &admin.report.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics failed: {error}")).into_response();
    }
    let report = admin.status.report();
    let points = admin.points.status();
    let _ = write!(
        body,
        "# HELP opsdeck_router_ready Whether PostgreSQL is reachable and a policy is in effect.\n\
         # TYPE opsdeck_router_ready gauge\nopsdeck_router_ready {}\n\
         # HELP opsdeck_router_policy_age_seconds Age of the routing table in effect.\n\
         # TYPE opsdeck_router_policy_age_seconds gauge\nopsdeck_router_policy_age_seconds {}\n\
         # HELP opsdeck_router_points_buffered Request points waiting for InfluxDB.\n\
         # TYPE opsdeck_router_points_buffered gauge\nopsdeck_router_points_buffered {}\n",
        u8::from(report.ready),
        report.policy_age_seconds.unwrap_or(f64::NAN),
        points.held,
    );
    body.push_str("# EOF\n");
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
