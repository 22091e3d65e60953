//! The topology catalog: clusters, nodes and services created, edited and removed through the
//! API (`/api/v1/clusters`, `/api/v1/clusters/{cluster}/nodes`, `/api/v1/services`), beside
//! those that appear on first registration. Reads need *read*; changes need *operate*.
//!
//! Each change is one transaction: the change, its audit row (`topology.change`, before →
//! after) and a `topology_edited` event, published last as [`events::publish`] requires. The
//! event is what makes the health checker re-read its targets, so tuned checks apply within
//! about a second. Removing something that still has live instances is refused (409); expired
//! instances go with it.

mod clusters;
mod nodes;
mod services;

use app::model::{
    audit::{AuditAction, AuditOutcome},
    events::{Edit, EventKind, TopologyObject},
    topology::check_name,
};
use sqlx::{Postgres, Transaction};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    audit::{self, AuditEntry},
    auth::{Authorized, Operate},
    events,
    http::error::ApiError,
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clusters::list, clusters::create))
        .routes(routes!(clusters::edit, clusters::delete))
        .routes(routes!(nodes::list, nodes::create))
        .routes(routes!(nodes::edit, nodes::delete))
        .routes(routes!(services::list, services::create))
        .routes(routes!(services::show, services::edit, services::delete))
}

/// A name in the path that breaks the name rule can't name anything stored: 404 like any
/// unknown name, not 400.
fn known(field: &str, name: &str) -> Result<(), ApiError> {
    check_name(field, name).map_err(ApiError::NotFound)
}

/// One change to the catalog, as audited and announced.
struct Change<'a> {
    object: TopologyObject,
    name: &'a str,
    /// The cluster a node belongs to.
    cluster: Option<&'a str>,
    edit: Edit,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
}

/// Finishes a change made in `tx`: the audit row, then the event (last: it takes the events
/// lock), then commit. Nothing of it is stored if any step fails.
async fn commit(
    mut tx: Transaction<'_, Postgres>,
    who: &Authorized<Operate>,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let target = match (change.object, change.cluster) {
        (TopologyObject::Cluster, _) => format!("cluster {}", change.name),
        (TopologyObject::Node, cluster) => format!("node {}/{}", cluster.unwrap_or("?"), change.name),
        (TopologyObject::Service, _) => format!("service {}", change.name),
    };
    let done = match change.edit {
        Edit::Created => "created",
        Edit::Updated => "updated",
        Edit::Deleted => "deleted",
    };
    let entry = AuditEntry::new(who.principal.actor(), AuditAction::TopologyChange, AuditOutcome::Success)
        .target(target)
        .detail(done)
        .change(change.before, change.after);
    audit::record(&mut *tx, &entry, &who.context).await?;
    let event = EventKind::TopologyEdited {
        object: change.object,
        name: change.name.to_owned(),
        cluster: change.cluster.map(str::to_owned),
        edit: change.edit,
    };
    events::publish(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// What a catalog object looked like, for the audit log.
fn snapshot(value: &impl serde::Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// The refusal for removing something instances still run in.
fn still_running(what: &str, live: usize) -> ApiError {
    let instances = if live == 1 { "1 live instance".to_owned() } else { format!("{live} live instances") };
    ApiError::Conflict(format!(
        "{what} still has {instances}; deregister them first (DELETE /api/v1/instances/{{id}}) or let them expire, then remove it"
    ))
}
