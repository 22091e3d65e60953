//! Topology and service discovery: the registry of where every instance lives right now, and
//! the JSON API around it (`/api/v1/instances`, `/api/v1/discovery/{service}`), plus the
//! catalog of clusters, nodes and services (`catalog`).

pub mod agents;
mod attention;
pub mod catalog;
pub mod checker;
pub mod detail;
pub mod discovery;
mod natural;
pub mod registry;
mod verdicts;
pub mod view;

use app::model::{
    health::{ServiceDetail, TopologyView},
    topology::{Discovery, Instance, RegisterInstance, Registration},
};
use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Ingest, Read},
    http::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody},
    state::AppState,
};

pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_instances, register_instance))
        .routes(routes!(deregister_instance))
        .routes(routes!(heartbeat))
        .routes(routes!(discover))
        .routes(routes!(topology))
        .routes(routes!(service_health))
        .merge(catalog::routes())
        .merge(agents::routes())
}

/// The whole picture, aggregated: clusters → nodes → service versions → instances, health by
/// share of healthy instances, one root cause per down node, and what needs attention first.
#[utoipa::path(get, path = "/topology", tag = "topology",
    responses((status = 200, body = TopologyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn topology(_reader: Authorized<Read>, State(state): State<AppState>) -> Result<Json<TopologyView>, ApiError> {
    Ok(Json(view::load(&state.db, state.events.last_id()).await?))
}

/// One service in depth: instances, health, recent changes and the last hour of probe results.
#[utoipa::path(get, path = "/services/{service}/health", tag = "topology",
    params(("service" = String, Path, description = "Service name")),
    responses((status = 200, body = ServiceDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn service_health(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<ServiceDetail>, ApiError> {
    Ok(Json(detail::load(&state.db, &state.influx, &service, state.events.last_id()).await?))
}

/// Registers an instance (and its cluster, node, service and version on first sight).
#[utoipa::path(post, path = "/instances", tag = "topology", request_body = RegisterInstance,
    responses((status = 201, body = Registration), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The address is already registered", body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = [])))]
async fn register_instance(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterInstance>,
) -> Result<(StatusCode, Json<Registration>), ApiError> {
    Ok((StatusCode::CREATED, Json(registry::register(&state.db, &request).await?)))
}

/// Renews an instance's lease.
#[utoipa::path(put, path = "/instances/{id}/heartbeat", tag = "topology", params(("id" = String, Path, description = "Instance id")),
    responses((status = 204, description = "Renewed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "Unknown, or expired and removed: register again", body = ErrorBody)),
    security(("bearer" = [])))]
async fn heartbeat(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    registry::heartbeat(&state.db, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an instance now (a clean shutdown).
#[utoipa::path(delete, path = "/instances/{id}", tag = "topology", params(("id" = String, Path, description = "Instance id")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn deregister_instance(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    registry::deregister(&state.db, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct InstanceFilter {
    /// Only this service.
    service: Option<String>,
    /// Only this cluster.
    cluster: Option<String>,
}

/// Every registered instance with its health.
#[utoipa::path(get, path = "/instances", tag = "topology", params(InstanceFilter),
    responses((status = 200, body = Vec<Instance>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn list_instances(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    let clean = |value: Option<String>| value.filter(|v| !v.contains('\0'));
    Ok(Json(registry::list(&state.db, clean(filter.service).as_deref(), clean(filter.cluster).as_deref()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct DiscoveryFilter {
    /// Only endpoints of this version.
    version: Option<String>,
    /// The `index` of the answer you have: with `wait`, the call blocks until the set differs.
    index: Option<String>,
    /// How long to block for a change when `index` is given (e.g. `30s`; at most 5 min; default 60 s).
    wait: Option<String>,
}

/// The longest a discovery watch blocks.
const MAX_WATCH: std::time::Duration = std::time::Duration::from_secs(300);
const DEFAULT_WATCH: std::time::Duration = std::time::Duration::from_secs(60);

/// The healthy endpoints of a service, rotated by one on each call (round robin). With `index`
/// (from a previous answer) it is a watch: it answers as soon as the set changes, or with the
/// same set when `wait` runs out.
#[utoipa::path(get, path = "/discovery/{service}", tag = "topology",
    params(("service" = String, Path, description = "Service name"), DiscoveryFilter),
    responses((status = 200, body = Discovery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, description = "No such service", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn discover(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(filter): ApiQuery<DiscoveryFilter>,
) -> Result<Json<Discovery>, ApiError> {
    app::model::topology::check_name("service", &service).map_err(ApiError::NotFound)?;
    let version = filter.version.filter(|v| app::model::topology::check_version(v).is_ok());
    let Some(index) = filter.index else {
        return Ok(Json(discovery::discover(&state.db, &state.round_robin, &service, version.as_deref()).await?));
    };
    let wait = match filter.wait.as_deref() {
        None => DEFAULT_WATCH,
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| ApiError::BadRequest(format!("wait: {text:?} is not a duration such as 30s ({e})")))?
            .min(MAX_WATCH),
    };
    let found = discovery::watch(&state, &service, version.as_deref(), &index, wait);
    Ok(Json(found.await?))
}
