//! Node agents check in: `PUT /api/v1/nodes/{cluster}/{node}/agent` (ingest scope) creates the
//! cluster and node on first sight and records when the agent was last heard from and how often
//! it promised to report. The health model ([`super::view`]) counts a node whose agent has been
//! silent for [`AGENT_SILENT_AFTER_INTERVALS`] intervals as down — one root cause for its
//! instances.

use app::model::{
    events::{Edit, EventKind, TopologyObject},
    topology::{AGENT_SILENT_AFTER_INTERVALS, AgentCheckIn, check_name},
};
use axum::{extract::State, http::StatusCode};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Ingest},
    events,
    http::error::{ApiError, ApiJson, ApiPath, ErrorBody},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(check_in))
}

/// A node agent reports in (every `report_every_seconds`). The first check-in, and the first
/// after a silence long enough to mark the node down, are pushed as events.
#[utoipa::path(put, path = "/nodes/{cluster}/{node}/agent", tag = "topology", request_body = AgentCheckIn,
    params(("cluster" = String, Path, description = "Cluster name"), ("node" = String, Path, description = "Node name")),
    responses((status = 204, description = "Recorded"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, description = "A field breaks a rule", body = ErrorBody)),
    security(("bearer" = [])))]
async fn check_in(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    ApiPath((cluster, node)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<AgentCheckIn>,
) -> Result<StatusCode, ApiError> {
    check_name("cluster", &cluster).map_err(ApiError::Unprocessable)?;
    check_name("node", &node).map_err(ApiError::Unprocessable)?;
    request.check().map_err(ApiError::Unprocessable)?;
    record(&state.db, &cluster, &node, &request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upserts the node and its agent's last check-in; publishes an event when the node was new or
/// its agent is back from a silence.
pub async fn record(db: &PgPool, cluster: &str, node: &str, request: &AgentCheckIn) -> Result<(), ApiError> {
    let every_ms = i32::try_from(u64::from(request.report_every_seconds) * 1000).unwrap_or(i32::MAX);
    let mut tx = db.begin().await?;
    let cluster_id = sqlx::query_scalar!(
        "INSERT INTO clusters (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        cluster
    )
    .fetch_one(&mut *tx)
    .await?;
    let before = sqlx::query!(
        "SELECT agent_seen_at, agent_every_ms FROM nodes WHERE cluster_id = $1 AND name = $2 FOR UPDATE",
        cluster_id,
        node
    )
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query!(
        r#"INSERT INTO nodes (cluster_id, name, address, agent_seen_at, agent_every_ms)
           VALUES ($1, $2, $3, now(), $4)
           ON CONFLICT (cluster_id, name) DO UPDATE SET
               address = COALESCE(EXCLUDED.address, nodes.address), agent_seen_at = now(),
               agent_every_ms = EXCLUDED.agent_every_ms, last_seen_at = now()"#,
        cluster_id,
        node,
        request.address,
        every_ms,
    )
    .execute(&mut *tx)
    .await?;
    let now = chrono::Utc::now();
    let edit = match before {
        None => Some(Edit::Created),
        Some(row) => match (row.agent_seen_at, row.agent_every_ms) {
            (Some(seen), Some(every)) if (now - seen).num_milliseconds() <= silent_after_ms(every) => None,
            // First check-in of an agent on a known node, or back from a silence.
            _ => Some(Edit::Updated),
        },
    };
    if let Some(edit) = edit {
        let kind = EventKind::TopologyEdited {
            object: TopologyObject::Node,
            name: node.to_owned(),
            cluster: Some(cluster.to_owned()),
            edit,
        };
        events::publish(&mut tx, &kind).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How long an agent reporting every `every_ms` may be silent before its node counts as down.
pub fn silent_after_ms(every_ms: i32) -> i64 {
    i64::from(every_ms) * i64::from(AGENT_SILENT_AFTER_INTERVALS)
}
