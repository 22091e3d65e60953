//! Chart markers from PostgreSQL: the health changes of instances in a window, and a service's
//! release changes (start, each step or percentage change, switch, rollback, end) from the
//! `release_changed` events the release service layer publishes. Capped, so a flapping instance
//! can't bloat a chart.

use app::components::release_actions;
use app::model::{
    charts::{ChartMarker, MarkerKind, TimeWindow},
    events::EventKind,
    topology::InstanceHealth,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// At most this many markers per chart (the newest are kept).
const MAX_MARKERS: i64 = 200;

struct Change {
    at: DateTime<Utc>,
    from_health: String,
    to_health: String,
    reason: String,
    service: String,
    version: String,
    cluster: String,
    node: String,
    host: String,
    port: i32,
}

impl Change {
    fn into_marker(self) -> ChartMarker {
        let to = InstanceHealth::parse(&self.to_health);
        let kind = if to == InstanceHealth::Healthy { MarkerKind::HealthUp } else { MarkerKind::HealthDown };
        let label = format!(
            "{} {} on {}/{} ({}): {} → {} — {}",
            self.service,
            self.version,
            self.cluster,
            self.node,
            crate::events::address(&self.host, self.port),
            self.from_health,
            self.to_health,
            self.reason
        );
        ChartMarker { kind, at: self.at, label }
    }
}

fn oldest_first(mut changes: Vec<Change>) -> Vec<ChartMarker> {
    changes.reverse();
    changes.into_iter().map(Change::into_marker).collect()
}

pub async fn for_service(db: &PgPool, service: &str, window: &TimeWindow) -> sqlx::Result<Vec<ChartMarker>> {
    let changes = sqlx::query_as!(
        Change,
        r#"SELECT h.at, h.from_health, h.to_health, h.reason, s.name AS service, v.label AS version,
                  c.name AS cluster, n.name AS node, i.host, i.port
           FROM instance_health_changes h
           JOIN instances i ON i.id = h.instance_id
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE s.name = $1 AND h.at >= $2 AND h.at < $3
           ORDER BY h.at DESC, h.id DESC
           LIMIT $4"#,
        service,
        window.from,
        window.to,
        MAX_MARKERS
    )
    .fetch_all(db)
    .await?;
    let mut markers = oldest_first(changes);
    markers.extend(releases_of_service(db, service, window).await?);
    markers.sort_by_key(|m| m.at);
    Ok(markers)
}

/// The service's release changes in the window, oldest first, with what and why as hover text.
async fn releases_of_service(db: &PgPool, service: &str, window: &TimeWindow) -> sqlx::Result<Vec<ChartMarker>> {
    let rows = sqlx::query!(
        r#"SELECT at, payload FROM events
           WHERE kind = 'release_changed' AND payload->>'service' = $1 AND at >= $2 AND at < $3
           ORDER BY at DESC, id DESC
           LIMIT $4"#,
        service,
        window.from,
        window.to,
        MAX_MARKERS
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().rev().filter_map(|row| release_marker(row.at, row.payload)).collect())
}

fn release_marker(at: DateTime<Utc>, payload: serde_json::Value) -> Option<ChartMarker> {
    let EventKind::ReleaseChanged { release_id, strategy, from, to, percent, actor, summary, .. } =
        serde_json::from_value(payload).ok()?
    else {
        return None;
    };
    let strategy = release_actions::strategy_label(strategy);
    let state = |s| release_actions::state_mark(s).1;
    let change = match from {
        None => format!("started ({})", state(to)),
        Some(from) if from == to => state(to).to_owned(),
        Some(from) => format!("{} → {}", state(from), state(to)),
    };
    let label = format!("release #{release_id} ({strategy}) {change} at {percent} % by {actor} — {summary}");
    Some(ChartMarker { kind: MarkerKind::Release, at, label })
}

pub async fn for_node(db: &PgPool, cluster: &str, node: &str, window: &TimeWindow) -> sqlx::Result<Vec<ChartMarker>> {
    let changes = sqlx::query_as!(
        Change,
        r#"SELECT h.at, h.from_health, h.to_health, h.reason, s.name AS service, v.label AS version,
                  c.name AS cluster, n.name AS node, i.host, i.port
           FROM instance_health_changes h
           JOIN instances i ON i.id = h.instance_id
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE c.name = $1 AND n.name = $2 AND h.at >= $3 AND h.at < $4
           ORDER BY h.at DESC, h.id DESC
           LIMIT $5"#,
        cluster,
        node,
        window.from,
        window.to,
        MAX_MARKERS
    )
    .fetch_all(db)
    .await?;
    Ok(oldest_first(changes))
}
