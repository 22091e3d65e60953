//! `/api/v1/clusters`: list (with node and instance counts), create, describe, remove.

use app::model::{
    catalog::{Cluster, ClusterEdit, NewCluster},
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

/// Clusters by name, or the one named.
async fn select(db: &mut PgConnection, name: Option<&str>) -> Result<Vec<Cluster>, sqlx::Error> {
    sqlx::query_as!(
        Cluster,
        r#"SELECT c.name, c.description, c.created_at,
                  (SELECT count(*) FROM nodes n WHERE n.cluster_id = c.id) AS "nodes!",
                  count(i.id) AS "instances!",
                  count(i.id) FILTER (WHERE i.health <> 'expired') AS "live_instances!"
           FROM clusters c
           LEFT JOIN nodes n ON n.cluster_id = c.id
           LEFT JOIN instances i ON i.node_id = n.id
           WHERE ($1::TEXT IS NULL OR c.name = $1)
           GROUP BY c.id
           ORDER BY c.name"#,
        name
    )
    .fetch_all(db)
    .await
}

async fn find(db: &mut PgConnection, name: &str) -> Result<Cluster, ApiError> {
    select(db, Some(name)).await?.pop().ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?}")))
}

/// Every cluster, with how many nodes and instances it holds.
#[utoipa::path(get, path = "/clusters", tag = "topology",
    responses((status = 200, body = Vec<Cluster>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn list(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
) -> Result<Json<Vec<Cluster>>, ApiError> {
    let mut db = state.db.acquire().await?;
    Ok(Json(select(&mut db, None).await?))
}

/// Creates an empty cluster (registration creates one on first sight too).
#[utoipa::path(post, path = "/clusters", tag = "topology", request_body = NewCluster,
    responses((status = 201, body = Cluster), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn create(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewCluster>,
) -> Result<(StatusCode, Json<Cluster>), ApiError> {
    request.check().map_err(ApiError::Unprocessable)?;
    let mut tx = state.db.begin().await?;
    let created = sqlx::query_scalar!(
        "INSERT INTO clusters (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
        request.name,
        request.description,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if created.is_none() {
        return Err(ApiError::Conflict(format!("cluster {} already exists; edit it with PATCH", request.name)));
    }
    let cluster = find(&mut tx, &request.name).await?;
    let change = Change {
        object: TopologyObject::Cluster,
        name: &cluster.name,
        cluster: None,
        edit: Edit::Created,
        before: None,
        after: snapshot(&cluster),
    };
    commit(tx, &who, change).await?;
    Ok((StatusCode::CREATED, Json(cluster)))
}

/// Sets or clears (`null`) a cluster's description.
#[utoipa::path(patch, path = "/clusters/{cluster}", tag = "topology", request_body = ClusterEdit,
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, body = Cluster), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn edit(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<ClusterEdit>,
) -> Result<Json<Cluster>, ApiError> {
    known("cluster", &name)?;
    request.check().map_err(ApiError::Unprocessable)?;
    let mut tx = state.db.begin().await?;
    sqlx::query_scalar!("SELECT id FROM clusters WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?}")))?;
    let before = find(&mut tx, &name).await?;
    sqlx::query!("UPDATE clusters SET description = $2 WHERE name = $1", name, request.description.flatten())
        .execute(&mut *tx)
        .await?;
    let after = find(&mut tx, &name).await?;
    let change = Change {
        object: TopologyObject::Cluster,
        name: &name,
        cluster: None,
        edit: Edit::Updated,
        before: snapshot(&before),
        after: snapshot(&after),
    };
    commit(tx, &who, change).await?;
    Ok(Json(after))
}

/// Removes a cluster with its nodes. Refused while any instance in it is live.
#[utoipa::path(delete, path = "/clusters/{cluster}", tag = "topology",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 204, description = "Removed, with its nodes and expired instances"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Live instances still run in it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn delete(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    known("cluster", &name)?;
    let mut tx = state.db.begin().await?;
    let id = sqlx::query_scalar!("SELECT id FROM clusters WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?}")))?;
    // Locked, so a heartbeat can't revive one between the count and the removal.
    let healths = sqlx::query_scalar!(
        "SELECT i.health FROM instances i JOIN nodes n ON n.id = i.node_id WHERE n.cluster_id = $1 FOR UPDATE OF i",
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    let live = healths.iter().filter(|h| h.as_str() != InstanceHealth::Expired.as_str()).count();
    if live > 0 {
        return Err(still_running(&format!("cluster {name}"), live));
    }
    let before = find(&mut tx, &name).await?;
    sqlx::query!("DELETE FROM clusters WHERE id = $1", id).execute(&mut *tx).await?;
    let change = Change {
        object: TopologyObject::Cluster,
        name: &name,
        cluster: None,
        edit: Edit::Deleted,
        before: snapshot(&before),
        after: None,
    };
    commit(tx, &who, change).await?;
    Ok(StatusCode::NO_CONTENT)
}
