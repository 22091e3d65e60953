//! Metric charts: `GET /api/v1/metrics/services/{service}` (request rate, error rate and latency
//! percentiles per version, from `http_requests`) and `GET /api/v1/metrics/nodes/{cluster}/{node}`
//! (CPU and memory, from the agent's `node`), per time bucket, with event markers from
//! PostgreSQL. The service page and the node page read the same functions through the UI
//! backend.
//!
//! A bucket without samples is `null`, never 0; a window without any data says so
//! (`has_data: false`); a bucket with requests and no errors has an error rate of 0.

mod markers;
mod series;

use app::model::charts::{NodeMetrics, ServiceMetrics, TimeWindow, WindowQuery};
use axum::{Json, extract::State};
use chrono::Utc;
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Read},
    http::error::{ApiError, ApiPath, ApiQuery, ErrorBody},
    influx::InfluxClient,
    state::AppState,
};

/// Under `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(service_metrics_handler)).routes(routes!(node_metrics_handler))
}

/// Checks the window parameters; a refusal is a 400 naming the parameter.
pub fn window(query: &WindowQuery) -> Result<TimeWindow, ApiError> {
    query.resolve(Utc::now()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Request rate, error rate (share of 5xx) and latency p50/p95/p99 per version of `service`,
/// per bucket of `window`, and its instances' health changes as markers.
#[tracing::instrument(skip_all, fields(service))]
pub async fn service_metrics(
    db: &PgPool,
    influx: &InfluxClient,
    service: &str,
    window: TimeWindow,
) -> Result<ServiceMetrics, ApiError> {
    app::model::topology::check_name("service", service).map_err(ApiError::NotFound)?;
    let known = sqlx::query_scalar!("SELECT EXISTS (SELECT 1 FROM services WHERE name = $1) AS \"known!\"", service)
        .fetch_one(db)
        .await?;
    if !known {
        return Err(ApiError::NotFound(format!(
            "no service named {service:?}: it appears when an instance registers (GET /api/v1/services lists them)"
        )));
    }
    let buckets = window.bucket_starts();
    let versions = series::service(influx, service, &window, &buckets).await.map_err(unavailable)?;
    let markers = markers::for_service(db, service, &window).await?;
    Ok(ServiceMetrics {
        service: service.to_owned(),
        has_data: versions.iter().any(|v| v.requests > 0),
        window,
        buckets,
        versions,
        markers,
        generated_at: Utc::now(),
    })
}

/// CPU and memory of one node per bucket of `window`, the health changes of its instances,
/// and the instances on it now.
#[tracing::instrument(skip_all, fields(cluster, node))]
pub async fn node_metrics(
    db: &PgPool,
    influx: &InfluxClient,
    cluster: &str,
    node: &str,
    window: TimeWindow,
) -> Result<NodeMetrics, ApiError> {
    app::model::topology::check_name("cluster", cluster).map_err(ApiError::NotFound)?;
    app::model::topology::check_name("node", node).map_err(ApiError::NotFound)?;
    let known = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM nodes n JOIN clusters c ON c.id = n.cluster_id
                          WHERE c.name = $1 AND n.name = $2) AS "known!""#,
        cluster,
        node
    )
    .fetch_one(db)
    .await?;
    if !known {
        return Err(ApiError::NotFound(format!(
            "no node {cluster}/{node}: nodes appear when an agent or an instance on them registers"
        )));
    }
    let buckets = window.bucket_starts();
    let (cpu_percent, memory_percent) =
        series::node(influx, cluster, node, &window, &buckets).await.map_err(unavailable)?;
    let markers = markers::for_node(db, cluster, node, &window).await?;
    let mut instances = crate::topology::registry::list(db, None, Some(cluster)).await?;
    instances.retain(|i| i.node == node);
    Ok(NodeMetrics {
        cluster: cluster.to_owned(),
        node: node.to_owned(),
        has_data: cpu_percent.iter().chain(&memory_percent).any(Option::is_some),
        window,
        buckets,
        cpu_percent,
        memory_percent,
        markers,
        instances,
        generated_at: Utc::now(),
    })
}

fn unavailable(error: crate::influx::InfluxError) -> ApiError {
    tracing::warn!(%error, "a chart query failed");
    ApiError::Unavailable(format!("InfluxDB could not answer the chart query ({error}); retry shortly"))
}

/// Request rate (req/s), error rate (share of 5xx, 0–1) and latency p50/p95/p99 (ms) per
/// version of a service, per time bucket, from the `http_requests` measurement. Buckets without
/// requests are `null`; `has_data` is false when the window holds no request at all. Markers
/// are the health changes of the service's instances in the window.
#[utoipa::path(get, path = "/metrics/services/{service}", tag = "metrics",
    params(("service" = String, Path, description = "Service name"), WindowQuery),
    responses((status = 200, body = ServiceMetrics),
              (status = 400, description = "A window parameter is wrong; the detail names it", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "No such service", body = ErrorBody),
              (status = 503, description = "InfluxDB did not answer", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn service_metrics_handler(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<WindowQuery>,
) -> Result<Json<ServiceMetrics>, ApiError> {
    let window = window(&query)?;
    Ok(Json(service_metrics(&state.db, &state.influx, &service, window).await?))
}

/// CPU (percent busy) and memory (percent used) of a node per time bucket — the means of what
/// its agent reported (`node` measurement). Buckets without reports are `null`.
#[utoipa::path(get, path = "/metrics/nodes/{cluster}/{node}", tag = "metrics",
    params(("cluster" = String, Path, description = "Cluster name"), ("node" = String, Path, description = "Node name"), WindowQuery),
    responses((status = 200, body = NodeMetrics),
              (status = 400, description = "A window parameter is wrong; the detail names it", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "No such node", body = ErrorBody),
              (status = 503, description = "InfluxDB did not answer", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn node_metrics_handler(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath((cluster, node)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<WindowQuery>,
) -> Result<Json<NodeMetrics>, ApiError> {
    let window = window(&query)?;
    Ok(Json(node_metrics(&state.db, &state.influx, &cluster, &node, window).await?))
}
