//! Topology and service discovery: the registry of where every instance lives right now, and
//! the JSON API around it (`/api/v1/instances`, `/api/v1/discovery/{service}`), plus the
//! catalog of clusters, nodes and services (`catalog`).

pub mod catalog;
pub mod checker;
pub mod discovery;
pub mod registry;

use app::model::topology::{Discovery, Instance, RegisterInstance, Registration};
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
        .merge(catalog::routes())
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
}

/// The healthy endpoints of a service, rotated by one on each call (round robin).
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
    Ok(Json(discovery::discover(&state.db, &state.round_robin, &service, version.as_deref()).await?))
}
