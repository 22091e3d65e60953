//! `/api/v1/services`: list and show (health-check settings, versions, instance counts),
//! create, tune (the checker applies new settings within about a second), remove.

use app::model::{
    catalog::{CheckSettings, NewService, Service, ServiceEdit},
    events::{Edit, TopologyObject},
    topology::InstanceHealth,
};
use axum::{Json, extract::State, http::StatusCode};
use sqlx::PgConnection;

use super::{Change, commit, known, snapshot, still_running};
use crate::{
    auth::{Authorized, Operate, Read},
    http::error::{ApiError, ApiJson, ApiPath, ErrorBody},
    state::AppState,
};

/// Services by name, or the one named.
async fn select(db: &mut PgConnection, name: Option<&str>) -> Result<Vec<Service>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT s.name, s.description, s.health_check_path, s.check_interval_ms, s.check_timeout_ms, s.fall, s.rise,
                  s.created_at,
                  COALESCE((SELECT array_agg(v.label ORDER BY v.created_at, v.id) FROM service_versions v
                            WHERE v.service_id = s.id), '{}') AS "versions!",
                  (SELECT count(*) FROM instances i WHERE i.service_id = s.id) AS "instances!",
                  (SELECT count(*) FROM instances i WHERE i.service_id = s.id AND i.health <> 'expired') AS "live_instances!"
           FROM services s
           WHERE ($1::TEXT IS NULL OR s.name = $1)
           ORDER BY s.name"#,
        name
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Service {
            name: r.name,
            description: r.description,
            settings: CheckSettings {
                health_check_path: r.health_check_path,
                check_interval_ms: r.check_interval_ms,
                check_timeout_ms: r.check_timeout_ms,
                fall: r.fall,
                rise: r.rise,
            },
            versions: r.versions,
            instances: r.instances,
            live_instances: r.live_instances,
            created_at: r.created_at,
        })
        .collect())
}

async fn find(db: &mut PgConnection, name: &str) -> Result<Service, ApiError> {
    select(db, Some(name)).await?.pop().ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no service {name:?}"))
}

/// The service's id, locked for the rest of the transaction.
async fn lock(db: &mut PgConnection, name: &str) -> Result<i64, ApiError> {
    sqlx::query_scalar!("SELECT id FROM services WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| not_found(name))
}

/// Every service with its health-check settings, versions and instance counts.
#[utoipa::path(get, path = "/services", tag = "topology",
    responses((status = 200, body = Vec<Service>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn list(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
) -> Result<Json<Vec<Service>>, ApiError> {
    let mut db = state.db.acquire().await?;
    Ok(Json(select(&mut db, None).await?))
}

/// One service.
#[utoipa::path(get, path = "/services/{service}", tag = "topology",
    params(("service" = String, Path, description = "Service name")),
    responses((status = 200, body = Service), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn show(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Service>, ApiError> {
    known("service", &name)?;
    let mut db = state.db.acquire().await?;
    Ok(Json(find(&mut db, &name).await?))
}

/// Creates a service with its health-check settings (defaults for those left out), e.g. before
/// its first instance registers.
#[utoipa::path(post, path = "/services", tag = "topology", request_body = NewService,
    responses((status = 201, body = Service), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn create(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewService>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    request.check().map_err(ApiError::Unprocessable)?;
    let settings = request.settings();
    let mut tx = state.db.begin().await?;
    let created = sqlx::query_scalar!(
        r#"INSERT INTO services (name, description, health_check_path, check_interval_ms, check_timeout_ms, fall, rise)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (name) DO NOTHING RETURNING id"#,
        request.name,
        request.description,
        settings.health_check_path,
        settings.check_interval_ms,
        settings.check_timeout_ms,
        settings.fall,
        settings.rise,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if created.is_none() {
        return Err(ApiError::Conflict(format!("service {} already exists; tune it with PATCH", request.name)));
    }
    let service = find(&mut tx, &request.name).await?;
    let change = Change {
        object: TopologyObject::Service,
        name: &service.name,
        cluster: None,
        edit: Edit::Created,
        before: None,
        after: snapshot(&service),
    };
    commit(tx, &who, change).await?;
    Ok((StatusCode::CREATED, Json(service)))
}

/// Tunes a service's health checks or sets its description (`null` clears it). The result is
/// checked as a whole: a shorter interval must still leave room for the timeout.
#[utoipa::path(patch, path = "/services/{service}", tag = "topology", request_body = ServiceEdit,
    params(("service" = String, Path, description = "Service name")),
    responses((status = 200, body = Service), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn edit(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<ServiceEdit>,
) -> Result<Json<Service>, ApiError> {
    known("service", &name)?;
    request.check().map_err(ApiError::Unprocessable)?;
    let mut tx = state.db.begin().await?;
    let id = lock(&mut tx, &name).await?;
    let before = find(&mut tx, &name).await?;
    let settings = request.apply(&before.settings).map_err(ApiError::Unprocessable)?;
    sqlx::query!(
        r#"UPDATE services SET health_check_path = $2, check_interval_ms = $3, check_timeout_ms = $4, fall = $5, rise = $6,
                               description = CASE WHEN $7 THEN $8 ELSE description END
           WHERE id = $1"#,
        id,
        settings.health_check_path,
        settings.check_interval_ms,
        settings.check_timeout_ms,
        settings.fall,
        settings.rise,
        request.description.is_some(),
        request.description.clone().flatten(),
    )
    .execute(&mut *tx)
    .await?;
    let after = find(&mut tx, &name).await?;
    let change = Change {
        object: TopologyObject::Service,
        name: &name,
        cluster: None,
        edit: Edit::Updated,
        before: snapshot(&before),
        after: snapshot(&after),
    };
    commit(tx, &who, change).await?;
    Ok(Json(after))
}

/// Removes a service with its versions. Refused while any of its instances is live.
#[utoipa::path(delete, path = "/services/{service}", tag = "topology",
    params(("service" = String, Path, description = "Service name")),
    responses((status = 204, description = "Removed, with its versions and expired instances"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Live instances of it still run", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn delete(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    known("service", &name)?;
    let mut tx = state.db.begin().await?;
    let id = lock(&mut tx, &name).await?;
    // Locked, so a heartbeat can't revive one between the count and the removal.
    let healths = sqlx::query_scalar!("SELECT health FROM instances WHERE service_id = $1 FOR UPDATE", id)
        .fetch_all(&mut *tx)
        .await?;
    let live = healths.iter().filter(|h| h.as_str() != InstanceHealth::Expired.as_str()).count();
    if live > 0 {
        return Err(still_running(&format!("service {name}"), live));
    }
    let before = find(&mut tx, &name).await?;
    sqlx::query!("DELETE FROM services WHERE id = $1", id).execute(&mut *tx).await?;
    let change = Change {
        object: TopologyObject::Service,
        name: &name,
        cluster: None,
        edit: Edit::Deleted,
        before: snapshot(&before),
        after: None,
    };
    commit(tx, &who, change).await?;
    Ok(StatusCode::NO_CONTENT)
}
