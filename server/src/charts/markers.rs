//! Chart markers from PostgreSQL: the health changes of instances in a window (releases will
//! join them). Capped, so a flapping instance can't bloat a chart.

use app::model::{
    charts::{ChartMarker, MarkerKind, TimeWindow},
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
    Ok(oldest_first(changes))
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
