//! `/api/v1/clusters/{cluster}/nodes`: list, create, edit (address, description), remove.

use app::model::{
    catalog::{NewNode, Node, NodeEdit},
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

/// The nodes of a cluster by name, or the one named.
async fn select(db: &mut PgConnection, cluster: &str, name: Option<&str>) -> Result<Vec<Node>, sqlx::Error> {
    sqlx::query_as!(
        Node,
        r#"SELECT c.name AS cluster, n.name, n.address, n.description, n.created_at, n.last_seen_at,
                  count(i.id) AS "instances!",
                  count(i.id) FILTER (WHERE i.health <> 'expired') AS "live_instances!"
           FROM nodes n
           JOIN clusters c ON c.id = n.cluster_id
           LEFT JOIN instances i ON i.node_id = n.id
           WHERE c.name = $1 AND ($2::TEXT IS NULL OR n.name = $2)
           GROUP BY c.id, n.id
           ORDER BY n.name"#,
        cluster,
        name
    )
    .fetch_all(db)
    .await
}

async fn find(db: &mut PgConnection, cluster: &str, name: &str) -> Result<Node, ApiError> {
    select(db, cluster, Some(name)).await?.pop().ok_or_else(|| not_found(cluster, name))
}

fn not_found(cluster: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!("no node {name:?} in cluster {cluster:?}"))
}

/// The node's id, locked for the rest of the transaction.
async fn lock(db: &mut PgConnection, cluster: &str, name: &str) -> Result<i64, ApiError> {
    sqlx::query_scalar!(
        "SELECT n.id FROM nodes n JOIN clusters c ON c.id = n.cluster_id WHERE c.name = $1 AND n.name = $2 FOR UPDATE OF n",
        cluster,
        name
    )
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(cluster, name))
}

/// The nodes of a cluster, with their instance counts.
#[utoipa::path(get, path = "/clusters/{cluster}/nodes", tag = "topology",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, body = Vec<Node>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "No such cluster", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn list(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(cluster): ApiPath<String>,
) -> Result<Json<Vec<Node>>, ApiError> {
    known("cluster", &cluster)?;
    let mut db = state.db.acquire().await?;
    let exists = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM clusters WHERE name = $1) AS "exists!""#, cluster)
        .fetch_one(&mut *db)
        .await?;
    if !exists {
        return Err(ApiError::NotFound(format!("no cluster {cluster:?}")));
    }
    Ok(Json(select(&mut db, &cluster, None).await?))
}

/// Adds a node to a cluster (registration creates one on first sight too).
#[utoipa::path(post, path = "/clusters/{cluster}/nodes", tag = "topology", request_body = NewNode,
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 201, body = Node), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "No such cluster", body = ErrorBody),
              (status = 409, description = "The cluster already has a node of that name", body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn create(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(cluster): ApiPath<String>,
    ApiJson(request): ApiJson<NewNode>,
) -> Result<(StatusCode, Json<Node>), ApiError> {
    known("cluster", &cluster)?;
    request.check().map_err(ApiError::Unprocessable)?;
    let mut tx = state.db.begin().await?;
    // Key-share lock on the cluster, so it can't be removed under the new node.
    let cluster_id = sqlx::query_scalar!("SELECT id FROM clusters WHERE name = $1 FOR KEY SHARE", cluster)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {cluster:?}")))?;
    let created = sqlx::query_scalar!(
        r#"INSERT INTO nodes (cluster_id, name, address, description) VALUES ($1, $2, $3, $4)
           ON CONFLICT (cluster_id, name) DO NOTHING RETURNING id"#,
        cluster_id,
        request.name,
        request.address,
        request.description,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if created.is_none() {
        return Err(ApiError::Conflict(format!(
            "cluster {cluster} already has a node {}; edit it with PATCH",
            request.name
        )));
    }
    let node = find(&mut tx, &cluster, &request.name).await?;
    let change = Change {
        object: TopologyObject::Node,
        name: &node.name,
        cluster: Some(&cluster),
        edit: Edit::Created,
        before: None,
        after: snapshot(&node),
    };
    commit(tx, &who, change).await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// Sets or clears (`null`) a node's address and description. A registration on the node
/// sets its address again (to the instance's host).
#[utoipa::path(patch, path = "/clusters/{cluster}/nodes/{node}", tag = "topology", request_body = NodeEdit,
    params(("cluster" = String, Path, description = "Cluster name"), ("node" = String, Path, description = "Node name")),
    responses((status = 200, body = Node), (status = 400, description = "Not JSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "A field breaks a rule; the detail names it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn edit(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath((cluster, name)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<NodeEdit>,
) -> Result<Json<Node>, ApiError> {
    known("cluster", &cluster)?;
    known("node", &name)?;
    request.check().map_err(ApiError::Unprocessable)?;
    let mut tx = state.db.begin().await?;
    let id = lock(&mut tx, &cluster, &name).await?;
    let before = find(&mut tx, &cluster, &name).await?;
    sqlx::query!(
        r#"UPDATE nodes SET address = CASE WHEN $2 THEN $3 ELSE address END,
                            description = CASE WHEN $4 THEN $5 ELSE description END
           WHERE id = $1"#,
        id,
        request.address.is_some(),
        request.address.clone().flatten(),
        request.description.is_some(),
        request.description.clone().flatten(),
    )
    .execute(&mut *tx)
    .await?;
    let after = find(&mut tx, &cluster, &name).await?;
    let change = Change {
        object: TopologyObject::Node,
        name: &name,
        cluster: Some(&cluster),
        edit: Edit::Updated,
        before: snapshot(&before),
        after: snapshot(&after),
    };
    commit(tx, &who, change).await?;
    Ok(Json(after))
}

/// Removes a node. Refused while any instance on it is live.
#[utoipa::path(delete, path = "/clusters/{cluster}/nodes/{node}", tag = "topology",
    params(("cluster" = String, Path, description = "Cluster name"), ("node" = String, Path, description = "Node name")),
    responses((status = 204, description = "Removed, with its expired instances"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Live instances still run on it", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub(super) async fn delete(
    who: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath((cluster, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    known("cluster", &cluster)?;
    known("node", &name)?;
    let mut tx = state.db.begin().await?;
    let id = lock(&mut tx, &cluster, &name).await?;
    // Locked, so a heartbeat can't revive one between the count and the removal.
    let healths = sqlx::query_scalar!("SELECT health FROM instances WHERE node_id = $1 FOR UPDATE", id)
        .fetch_all(&mut *tx)
        .await?;
    let live = healths.iter().filter(|h| h.as_str() != InstanceHealth::Expired.as_str()).count();
    if live > 0 {
        return Err(still_running(&format!("node {cluster}/{name}"), live));
    }
    let before = find(&mut tx, &cluster, &name).await?;
    sqlx::query!("DELETE FROM nodes WHERE id = $1", id).execute(&mut *tx).await?;
    let change = Change {
        object: TopologyObject::Node,
        name: &name,
        cluster: Some(&cluster),
        edit: Edit::Deleted,
        before: snapshot(&before),
        after: None,
    };
    commit(tx, &who, change).await?;
    Ok(StatusCode::NO_CONTENT)
}
