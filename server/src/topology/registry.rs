//! The registry: instances register, renew by heartbeat, deregister; clusters, nodes, services
//! and versions appear on first registration. Instances whose heartbeats stop are marked
//! expired after their TTL and removed after a grace period ([`expire`]).

use std::time::Duration;

use app::model::topology::{Instance, InstanceHealth, RegisterInstance, Registration};
use sqlx::PgPool;
use uuid::Uuid;

use app::model::events::EventKind;

use crate::{events, http::error::ApiError};

/// Registers an instance. The address may already be held: by an expired registration, or by
/// the same service and version (a restart that came back before its old lease ran out) — the
/// new registration replaces it. Held by anything else, it is refused (409) with the holder's
/// id, and nothing changes.
#[tracing::instrument(skip_all, fields(service = %request.service, address = %format!("{}:{}", request.host, request.port)))]
pub async fn register(db: &PgPool, request: &RegisterInstance) -> Result<Registration, ApiError> {
    request.check().map_err(ApiError::Unprocessable)?;
    let ttl_seconds = request.ttl_seconds();
    let metadata = serde_json::Value::Object(request.metadata.clone().unwrap_or_default());
    let mut tx = db.begin().await?;
    // ON CONFLICT … DO UPDATE (not DO NOTHING) so the row's id comes back either way.
    let cluster_id = sqlx::query_scalar!(
        "INSERT INTO clusters (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        request.cluster
    )
    .fetch_one(&mut *tx)
    .await?;
    let node_id = sqlx::query_scalar!(
        r#"INSERT INTO nodes (cluster_id, name, address) VALUES ($1, $2, $3)
           ON CONFLICT (cluster_id, name) DO UPDATE SET address = EXCLUDED.address, last_seen_at = now()
           RETURNING id"#,
        cluster_id,
        request.node,
        request.host,
    )
    .fetch_one(&mut *tx)
    .await?;
    let service_id = sqlx::query_scalar!(
        "INSERT INTO services (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        request.service
    )
    .fetch_one(&mut *tx)
    .await?;
    let version_id = sqlx::query_scalar!(
        r#"INSERT INTO service_versions (service_id, label) VALUES ($1, $2)
           ON CONFLICT (service_id, label) DO UPDATE SET label = EXCLUDED.label RETURNING id"#,
        service_id,
        request.version,
    )
    .fetch_one(&mut *tx)
    .await?;
    let holder = sqlx::query!(
        "SELECT id, service_id, version_id, health FROM instances WHERE host = $1 AND port = $2 FOR UPDATE",
        request.host,
        i32::from(request.port)
    )
    .fetch_optional(&mut *tx)
    .await?;
    let mut changes = Vec::new();
    if let Some(holder) = holder {
        let restart = holder.service_id == service_id && holder.version_id == version_id;
        if !restart && holder.health != InstanceHealth::Expired.as_str() {
            return Err(ApiError::Conflict(format!(
                "{}:{} is already registered as instance {} of another service or version; deregister it first",
                request.host, request.port, holder.id
            )));
        }
        let reason = if restart {
            "replaced by a new registration at its address (a restart)"
        } else {
            "expired; its address was registered again"
        };
        if let Some(instance) = events::instance_ref(&mut tx, holder.id).await? {
            changes.push(EventKind::InstanceRemoved { instance, reason: reason.into() });
        }
        sqlx::query!("DELETE FROM instances WHERE id = $1", holder.id).execute(&mut *tx).await?;
    }
    let id = Uuid::new_v4();
    let inserted = sqlx::query!(
        r#"INSERT INTO instances (id, service_id, version_id, node_id, host, port, health_check_path, metadata, ttl_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (host, port) DO NOTHING"#,
        id,
        service_id,
        version_id,
        node_id,
        request.host,
        i32::from(request.port),
        request.health_check_path,
        metadata,
        i32::try_from(ttl_seconds * 1000).unwrap_or(i32::MAX),
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        let holder = sqlx::query_scalar!(
            "SELECT id FROM instances WHERE host = $1 AND port = $2",
            request.host,
            i32::from(request.port)
        )
        .fetch_optional(&mut *tx)
        .await?;
        let holder = holder.map(|id| id.to_string()).unwrap_or_else(|| "another instance".into());
        return Err(ApiError::Conflict(format!(
            "{}:{} is already registered as instance {holder}; heartbeat that instance or deregister it first",
            request.host, request.port
        )));
    }
    if let Some(instance) = events::instance_ref(&mut tx, id).await? {
        changes.push(EventKind::InstanceRegistered { instance });
    }
    events::publish_all(&mut tx, &changes).await?;
    tx.commit().await?;
    Ok(Registration { instance_id: id.to_string(), ttl_seconds, heartbeat_every_seconds: (ttl_seconds / 3).max(1) })
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound(format!("no instance {id:?}: instance ids are UUIDs")))
}

/// Renews an instance's lease. An expired one comes back as `unknown` until checked again.
pub async fn heartbeat(db: &PgPool, id: &str) -> Result<(), ApiError> {
    let id = parse_id(id)?;
    let mut tx = db.begin().await?;
    let previous = sqlx::query_scalar!(
        r#"WITH old AS (SELECT id, health FROM instances WHERE id = $1 FOR UPDATE)
           UPDATE instances i SET last_heartbeat_at = now(),
               health = CASE WHEN old.health = 'expired' THEN 'unknown' ELSE old.health END,
               health_changed_at = CASE WHEN old.health = 'expired' THEN now() ELSE i.health_changed_at END,
               health_reason = CASE WHEN old.health = 'expired' THEN 'heartbeats resumed; waiting for health checks' ELSE i.health_reason END
           FROM old WHERE i.id = old.id
           RETURNING old.health"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(previous) = previous else {
        return Err(ApiError::NotFound(format!(
            "no instance {id}: it was deregistered or expired and removed; register again"
        )));
    };
    if previous == InstanceHealth::Expired.as_str()
        && let Some(instance) = events::instance_ref(&mut tx, id).await?
    {
        let kind = EventKind::HealthChanged {
            instance,
            from: InstanceHealth::Expired,
            to: InstanceHealth::Unknown,
            reason: "heartbeats resumed; waiting for health checks".into(),
        };
        events::publish(&mut tx, &kind).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes an instance now.
pub async fn deregister(db: &PgPool, id: &str) -> Result<(), ApiError> {
    let id = parse_id(id)?;
    let mut tx = db.begin().await?;
    let Some(instance) = events::instance_ref(&mut tx, id).await? else {
        return Err(ApiError::NotFound(format!("no instance {id}")));
    };
    sqlx::query!("DELETE FROM instances WHERE id = $1", id).execute(&mut *tx).await?;
    events::publish(&mut tx, &EventKind::InstanceDeregistered { instance }).await?;
    tx.commit().await?;
    Ok(())
}

/// Instances, optionally of one service and/or cluster, by service, cluster, node, address.
pub async fn list(db: &PgPool, service: Option<&str>, cluster: Option<&str>) -> Result<Vec<Instance>, ApiError> {
    let rows = sqlx::query!(
        r#"SELECT i.id, s.name AS service, v.label AS version, c.name AS cluster, n.name AS node, i.host, i.port,
                  i.health, i.health_reason, i.health_changed_at, i.breaker, i.registered_at, i.last_heartbeat_at, i.ttl_ms, i.metadata
           FROM instances i
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE ($1::TEXT IS NULL OR s.name = $1) AND ($2::TEXT IS NULL OR c.name = $2)
           ORDER BY s.name, c.name, n.name, i.host, i.port"#,
        service,
        cluster,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Instance {
            id: r.id.to_string(),
            service: r.service,
            version: r.version,
            cluster: r.cluster,
            node: r.node,
            host: r.host,
            port: u16::try_from(r.port).unwrap_or_default(),
            health: InstanceHealth::parse(&r.health),
            health_reason: r.health_reason,
            health_changed_at: r.health_changed_at,
            breaker: app::model::events::BreakerPosition::parse(&r.breaker),
            registered_at: r.registered_at,
            last_heartbeat_at: r.last_heartbeat_at,
            ttl_seconds: u32::try_from(r.ttl_ms / 1000).unwrap_or_default(),
            metadata: r.metadata,
        })
        .collect())
}

/// What one expiry pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub marked: u64,
    pub removed: u64,
}

/// Marks instances whose last heartbeat is older than their TTL as expired, and removes those
/// expired for longer than `grace`. An instance still heartbeating is never touched. Running it
/// on several replicas at once is harmless: both statements are idempotent.
pub async fn expire(db: &PgPool, grace: Duration) -> Result<Expired, sqlx::Error> {
    let mut tx = db.begin().await?;
    let marked = sqlx::query!(
        r#"UPDATE instances SET health = 'expired', health_changed_at = now(),
               health_reason = 'no heartbeat for ' || (ttl_ms / 1000) || ' s (its TTL)'
           WHERE health <> 'expired' AND last_heartbeat_at < now() - make_interval(secs => ttl_ms / 1000.0)
           RETURNING id, health_reason AS "reason!""#
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut changes = Vec::new();
    for row in &marked {
        if let Some(instance) = events::instance_ref(&mut tx, row.id).await? {
            changes.push(EventKind::InstanceExpired { instance, reason: row.reason.clone() });
        }
    }
    let doomed = sqlx::query_scalar!(
        r#"SELECT id FROM instances WHERE health = 'expired' AND health_changed_at < now() - make_interval(secs => $1)
           FOR UPDATE SKIP LOCKED"#,
        grace.as_secs_f64()
    )
    .fetch_all(&mut *tx)
    .await?;
    let reason = format!("expired for more than {} s", grace.as_secs());
    for id in &doomed {
        if let Some(instance) = events::instance_ref(&mut tx, *id).await? {
            changes.push(EventKind::InstanceRemoved { instance, reason: reason.clone() });
        }
    }
    sqlx::query!("DELETE FROM instances WHERE id = ANY($1)", &doomed).execute(&mut *tx).await?;
    events::publish_all(&mut tx, &changes).await?;
    tx.commit().await?;
    Ok(Expired { marked: marked.len() as u64, removed: doomed.len() as u64 })
}

/// Runs [`expire`] every `every` until the process stops.
pub async fn run_expiry(db: PgPool, every: Duration, grace: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match expire(&db, grace).await {
            Ok(Expired { marked: 0, removed: 0 }) => {}
            Ok(done) => tracing::info!(expired = done.marked, removed = done.removed, "instances expired"),
            Err(error) => tracing::warn!(%error, "the expiry pass failed; retrying on the next tick"),
        }
    }
}
