//! One service in depth, for its page: its instances, health by share, recent state changes
//! (PostgreSQL) and the last hour of probe results per version (InfluxDB).

use app::model::health::{Health, HealthChangeRecord, HealthCounts, ProbeBucket, ServiceDetail, VersionHistory};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::{
    http::error::ApiError,
    influx::{InfluxClient, quote_literal},
};

/// How many recent state changes the page lists.
const RECENT_CHANGES: i64 = 50;

pub async fn load(
    db: &PgPool,
    influx: &InfluxClient,
    service: &str,
    last_event_id: i64,
) -> Result<ServiceDetail, ApiError> {
    app::model::topology::check_name("service", service).map_err(ApiError::NotFound)?;
    let known = sqlx::query_scalar!("SELECT EXISTS (SELECT 1 FROM services WHERE name = $1) AS \"known!\"", service)
        .fetch_one(db)
        .await?;
    if !known {
        return Err(ApiError::NotFound(format!("no service named {service:?}: it appears when an instance registers")));
    }
    let instances = super::registry::list(db, Some(service), None).await?;
    let mut counts = HealthCounts::default();
    instances.iter().for_each(|i| counts.add(i.health));
    let changes = sqlx::query!(
        r#"SELECT h.instance_id, i.host, i.port, v.label AS version, n.name AS node, h.at, h.from_health, h.to_health, h.reason
           FROM instance_health_changes h
           JOIN instances i ON i.id = h.instance_id
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           WHERE s.name = $1
           ORDER BY h.at DESC, h.id DESC
           LIMIT $2"#,
        service,
        RECENT_CHANGES
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| HealthChangeRecord {
        instance_id: r.instance_id.to_string(),
        address: crate::events::address(&r.host, r.port),
        version: r.version,
        node: r.node,
        at: r.at,
        from: app::model::topology::InstanceHealth::parse(&r.from_health),
        to: app::model::topology::InstanceHealth::parse(&r.to_health),
        reason: r.reason,
    })
    .collect();
    let (history, history_error) = match probe_history(influx, service).await {
        Ok(history) => (history, None),
        Err(error) => (Vec::new(), Some(format!("probe history unavailable: {error}"))),
    };
    Ok(ServiceDetail {
        name: service.to_owned(),
        generated_at: Utc::now(),
        last_event_id,
        health: Health::by_share(&counts),
        counts,
        instances,
        changes,
        history,
        history_error,
    })
}

/// The last hour of probes of `service`, per version, in one-minute buckets.
async fn probe_history(
    influx: &InfluxClient,
    service: &str,
) -> Result<Vec<VersionHistory>, crate::influx::InfluxError> {
    let statement = format!(
        "SELECT count(failed) AS probes, sum(failed) AS failed, percentile(latency_ms, 95) AS p95 FROM health_probe \
         WHERE service = {} AND time > now() - 1h GROUP BY time(1m), version fill(null)",
        quote_literal(service)
    );
    let results = influx.query(&statement).await?;
    let mut history: Vec<VersionHistory> = results
        .into_iter()
        .flat_map(|r| r.series)
        .map(|series| {
            let times = series.times_ms();
            let probes = series.f64_column("probes").unwrap_or_default();
            let failed = series.f64_column("failed").unwrap_or_default();
            let p95 = series.f64_column("p95").unwrap_or_default();
            let buckets = times
                .iter()
                .enumerate()
                .map(|(i, ms)| ProbeBucket {
                    at: DateTime::from_timestamp_millis(*ms).unwrap_or_default(),
                    probes: probes.get(i).copied().flatten().unwrap_or(0.0) as u32,
                    failed: failed.get(i).copied().flatten().unwrap_or(0.0) as u32,
                    p95_latency_ms: p95.get(i).copied().flatten(),
                })
                .collect();
            VersionHistory { version: series.tags.get("version").cloned().unwrap_or_default(), buckets }
        })
        .collect();
    history.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(history)
}
