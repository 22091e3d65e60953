//! The releases' SQL: the release rows (read whole by id), their history and verdicts, the
//! service's stable version, the instances an action affects, and idempotency keys.

use app::model::{
    releases::{
        AnalysisConfig, CanaryStep, Release, ReleaseHistoryEntry, ReleaseState, RollingProgress, SchemaChange,
        SchemaPhase, SmokeCheck, Strategy, Verdict,
    },
    traffic::VersionWeight,
};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::transitions;

/// A release with what only the server needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRelease {
    pub release: Release,
    pub service_id: i64,
    pub held_since: Option<DateTime<Utc>>,
    pub last_analysis_at: Option<DateTime<Utc>>,
    /// The last smoke run: `None` never run.
    pub smoke_passed: Option<bool>,
    pub finished_by: Option<String>,
}

/// Text column → enum (its serde name).
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// JSON column → value.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, sqlx::Error> {
    serde_json::from_value(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Value → JSON column.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The releases with these ids, in the order given (missing ids are skipped).
pub async fn load_many(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<StoredRelease>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT r.id, r.service_id, s.name AS service, r.strategy, r.state, r.stable_version, r.target_version,
                  r.steps, r.step_index, r.current_percent, r.max_jump, r.step_ends_at, r.held_since, r.analysis,
                  r.last_analysis_at, r.consecutive_breaches, r.last_verdict, r.smoke_checks, r.smoke_passed,
                  r.schema_phase, r.schema_description, r.policy_revision, r.started_by, r.started_at,
                  r.updated_at, r.finished_at, r.finished_by, r.status_reason, r.rolling
           FROM releases r JOIN services s ON s.id = r.service_id
           WHERE r.id = ANY($1)"#,
        ids
    )
    .fetch_all(db)
    .await?;
    let mut loaded = Vec::with_capacity(rows.len());
    for row in rows {
        let strategy: Strategy = parse(&row.strategy)?;
        let state: ReleaseState = parse(&row.state)?;
        let schema = match (row.schema_phase, row.schema_description) {
            (Some(phase), Some(description)) => {
                Some(SchemaChange { phase: parse::<SchemaPhase>(&phase)?, description })
            }
            _ => None,
        };
        let release = Release {
            id: row.id,
            service: row.service,
            strategy,
            state,
            stable_version: row.stable_version,
            target_version: row.target_version,
            steps: from_json::<Vec<CanaryStep>>(row.steps)?,
            step_index: u32::try_from(row.step_index).unwrap_or(0),
            current_percent: u8::try_from(row.current_percent).unwrap_or(0),
            max_jump: u8::try_from(row.max_jump).unwrap_or(50),
            step_ends_at: row.step_ends_at,
            analysis: row.analysis.map(from_json::<AnalysisConfig>).transpose()?,
            consecutive_breaches: u32::try_from(row.consecutive_breaches).unwrap_or(0),
            last_verdict: row.last_verdict.map(from_json::<Verdict>).transpose()?,
            smoke_checks: from_json::<Vec<SmokeCheck>>(row.smoke_checks)?,
            schema,
            rolling: row.rolling.map(from_json::<RollingProgress>).transpose()?,
            policy_revision: row.policy_revision,
            allowed_actions: transitions::allowed(strategy, state).into_iter().map(str::to_owned).collect(),
            started_by: row.started_by,
            started_at: row.started_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
            status_reason: row.status_reason,
        };
        loaded.push(StoredRelease {
            release,
            service_id: row.service_id,
            held_since: row.held_since,
            last_analysis_at: row.last_analysis_at,
            smoke_passed: row.smoke_passed,
            finished_by: row.finished_by,
        });
    }
    loaded.sort_by_key(|r| ids.iter().position(|id| *id == r.release.id));
    Ok(loaded)
}

pub async fn load(db: impl PgExecutor<'_>, id: i64) -> Result<Option<StoredRelease>, sqlx::Error> {
    Ok(load_many(db, &[id]).await?.pop())
}

/// Locks the release row until the transaction ends (actions on one release run one at a time).
pub async fn lock(tx: &mut PgConnection, id: i64) -> Result<Option<StoredRelease>, sqlx::Error> {
    let found =
        sqlx::query_scalar!("SELECT id FROM releases WHERE id = $1 FOR UPDATE", id).fetch_optional(&mut *tx).await?;
    match found {
        Some(id) => load(&mut *tx, id).await,
        None => Ok(None),
    }
}

/// The release of `service_id` in progress, if any.
pub async fn active_of(db: impl PgExecutor<'_>, service_id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM releases WHERE service_id = $1 AND state NOT IN ('completed', 'aborted', 'rolled_back', 'failed')",
        service_id
    )
    .fetch_optional(db)
    .await
}

/// Releases in progress first, then the newest; optionally of one service, or only active ones.
pub async fn list_ids(db: impl PgExecutor<'_>, service: Option<&str>, active: bool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT r.id FROM releases r JOIN services s ON s.id = r.service_id
           WHERE ($1::TEXT IS NULL OR s.name = $1)
             AND (NOT $2 OR r.state NOT IN ('completed', 'aborted', 'rolled_back', 'failed'))
           ORDER BY (r.state IN ('completed', 'aborted', 'rolled_back', 'failed')), r.id DESC
           LIMIT 200"#,
        service,
        active
    )
    .fetch_all(db)
    .await
}

/// Writes every changeable field of `stored` back.
pub async fn update(tx: &mut PgConnection, stored: &StoredRelease) -> Result<(), sqlx::Error> {
    let r = &stored.release;
    sqlx::query!(
        r#"UPDATE releases SET state = $2, step_index = $3, current_percent = $4, step_ends_at = $5, held_since = $6,
                  last_analysis_at = $7, consecutive_breaches = $8, last_verdict = $9, smoke_passed = $10,
                  policy_revision = $11, updated_at = now(), finished_at = $12, finished_by = $13, status_reason = $14,
                  rolling = $15
           WHERE id = $1"#,
        r.id,
        transitions::name(r.state),
        i32::try_from(r.step_index).unwrap_or(i32::MAX),
        i16::from(r.current_percent),
        r.step_ends_at,
        stored.held_since,
        stored.last_analysis_at,
        i32::try_from(r.consecutive_breaches).unwrap_or(i32::MAX),
        r.last_verdict.as_ref().map(to_json).transpose()?,
        stored.smoke_passed,
        r.policy_revision,
        r.finished_at,
        stored.finished_by,
        r.status_reason,
        r.rolling.as_ref().map(to_json).transpose()?,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A new release row; returns its id. The unique index refuses a second active release.
pub async fn insert(tx: &mut PgConnection, stored: &StoredRelease) -> Result<i64, sqlx::Error> {
    let r = &stored.release;
    sqlx::query_scalar!(
        r#"INSERT INTO releases (service_id, strategy, state, stable_version, target_version, steps, step_index,
                                 current_percent, max_jump, step_ends_at, analysis, last_analysis_at, smoke_checks,
                                 schema_phase, schema_description, policy_revision, started_by, finished_at,
                                 finished_by, status_reason, rolling)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
           RETURNING id"#,
        stored.service_id,
        transitions::name(r.strategy),
        transitions::name(r.state),
        r.stable_version,
        r.target_version,
        to_json(&r.steps)?,
        i32::try_from(r.step_index).unwrap_or(0),
        i16::from(r.current_percent),
        i16::from(r.max_jump),
        r.step_ends_at,
        r.analysis.as_ref().map(to_json).transpose()?,
        stored.last_analysis_at,
        to_json(&r.smoke_checks)?,
        r.schema.as_ref().map(|s| transitions::name(s.phase)),
        r.schema.as_ref().map(|s| s.description.clone()),
        r.policy_revision,
        r.started_by,
        r.finished_at,
        stored.finished_by,
        r.status_reason,
        r.rolling.as_ref().map(to_json).transpose()?,
    )
    .fetch_one(&mut *tx)
    .await
}

/// One history row.
pub async fn record_action(
    tx: &mut PgConnection,
    release_id: i64,
    entry: &ReleaseHistoryEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO release_actions (release_id, actor, action, from_state, to_state, weights_before, weights_after,
                                        verdict, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
        release_id,
        entry.actor,
        entry.action,
        transitions::name(entry.from_state),
        transitions::name(entry.to_state),
        to_json(&entry.weights_before)?,
        to_json(&entry.weights_after)?,
        entry.verdict.as_ref().map(to_json).transpose()?,
        entry.reason,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Newest first.
pub async fn history(db: impl PgExecutor<'_>, release_id: i64) -> Result<Vec<ReleaseHistoryEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT at, actor, action, from_state, to_state, weights_before, weights_after, verdict, reason
           FROM release_actions WHERE release_id = $1 ORDER BY id DESC LIMIT 500"#,
        release_id
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            let to_state: ReleaseState = parse(&row.to_state)?;
            Ok(ReleaseHistoryEntry {
                at: row.at,
                actor: row.actor,
                action: row.action,
                from_state: row.from_state.as_deref().map(parse).transpose()?.unwrap_or(to_state),
                to_state,
                weights_before: from_json::<Vec<VersionWeight>>(row.weights_before)?,
                weights_after: from_json::<Vec<VersionWeight>>(row.weights_after)?,
                verdict: row.verdict.map(from_json).transpose()?,
                reason: row.reason,
            })
        })
        .collect()
}

pub async fn record_verdict(tx: &mut PgConnection, release_id: i64, verdict: &Verdict) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO release_verdicts (release_id, at, outcome, verdict) VALUES ($1, $2, $3, $4)",
        release_id,
        verdict.at,
        transitions::name(verdict.outcome),
        to_json(verdict)?,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Newest first.
pub async fn verdicts(db: impl PgExecutor<'_>, release_id: i64) -> Result<Vec<Verdict>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        "SELECT verdict FROM release_verdicts WHERE release_id = $1 ORDER BY id DESC LIMIT 200",
        release_id
    )
    .fetch_all(db)
    .await?;
    rows.into_iter().map(from_json).collect()
}

/// A service as release control sees it.
#[derive(Debug, Clone)]
pub struct ServiceFacts {
    pub id: i64,
    /// Set by the last release that ended; `None` before any.
    pub stable_version: Option<String>,
    pub versions: Vec<String>,
    /// Versions with live (not expired) instances.
    pub running_versions: Vec<String>,
}

pub async fn service(db: &mut PgConnection, name: &str) -> Result<Option<ServiceFacts>, sqlx::Error> {
    let Some(row) =
        sqlx::query!("SELECT id, stable_version FROM services WHERE name = $1", name).fetch_optional(&mut *db).await?
    else {
        return Ok(None);
    };
    let versions = sqlx::query_scalar!("SELECT label FROM service_versions WHERE service_id = $1 ORDER BY id", row.id)
        .fetch_all(&mut *db)
        .await?;
    let running_versions = sqlx::query_scalar!(
        r#"SELECT DISTINCT v.label FROM instances i JOIN service_versions v ON v.id = i.version_id
           WHERE i.service_id = $1 AND i.health <> 'expired' ORDER BY v.label"#,
        row.id
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(Some(ServiceFacts { id: row.id, stable_version: row.stable_version, versions, running_versions }))
}

pub async fn set_stable_version(tx: &mut PgConnection, service_id: i64, version: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE services SET stable_version = $2 WHERE id = $1", service_id, version)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A live instance of the service, with what a preview and the smoke checks need.
#[derive(Debug, Clone)]
pub struct InstanceFacts {
    pub id: Uuid,
    pub version: String,
    pub host: String,
    pub port: i32,
    pub node: String,
    pub healthy: bool,
    /// `unknown`, `healthy` or `unhealthy`, and why (the last check's error).
    pub health: String,
    pub health_reason: Option<String>,
    pub breaker_open: bool,
}

pub async fn instances(db: impl PgExecutor<'_>, service_id: i64) -> Result<Vec<InstanceFacts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT i.id, v.label AS version, i.host, i.port, n.name AS node, i.health, i.health_reason, i.breaker
           FROM instances i JOIN service_versions v ON v.id = i.version_id JOIN nodes n ON n.id = i.node_id
           WHERE i.service_id = $1 AND i.health <> 'expired' ORDER BY v.label, i.host, i.port"#,
        service_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| InstanceFacts {
            id: r.id,
            version: r.version,
            host: r.host,
            port: r.port,
            node: r.node,
            healthy: r.health == "healthy",
            health: r.health,
            health_reason: r.health_reason,
            breaker_open: r.breaker == "open",
        })
        .collect())
}

/// A completed release that contracted the schema after `version` was last made stable (its
/// id, target version and description): rolling back to `version` would break.
pub async fn contract_after(
    db: impl PgExecutor<'_>,
    service_id: i64,
    version: &str,
) -> Result<Option<(i64, String, String)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, target_version, schema_description AS "description!" FROM releases
           WHERE service_id = $1 AND state = 'completed' AND schema_phase = 'contract' AND target_version <> $2
             AND id > COALESCE((SELECT max(id) FROM releases
                                WHERE service_id = $1 AND state = 'completed' AND target_version = $2), 0)
           ORDER BY id DESC LIMIT 1"#,
        service_id,
        version
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.target_version, r.description)))
}

/// The version that was stable before the current stable one: what a rollback release returns to.
pub async fn previous_stable(
    db: impl PgExecutor<'_>,
    service_id: i64,
    current: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT stable_version FROM releases
           WHERE service_id = $1 AND state = 'completed' AND target_version = $2 AND stable_version <> $2
           ORDER BY id DESC LIMIT 1"#,
        service_id,
        current
    )
    .fetch_optional(db)
    .await
}

/// Active canaries the analysis worker looks after.
pub async fn analysed_ids(db: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id FROM releases
           WHERE strategy = 'canary' AND state IN ('progressing', 'paused', 'awaiting_promotion')
           ORDER BY id"#
    )
    .fetch_all(db)
    .await
}

/// Rolling releases the controller moves on (paused ones wait for a person).
pub async fn rolling_ids(db: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM releases WHERE strategy = 'rolling' AND state = 'progressing' ORDER BY id")
        .fetch_all(db)
        .await
}

/// Releases waiting for a person: paused, awaiting promotion, smoke failed, held for want of
/// data for longer than one interval, or rolled back automatically or failed within a day.
pub async fn inbox_ids(db: impl PgExecutor<'_>) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT id FROM releases
           WHERE state IN ('paused', 'awaiting_promotion', 'smoke_failed')
              OR (state = 'progressing' AND held_since IS NOT NULL
                  AND held_since < now() - make_interval(secs => COALESCE((analysis->>'interval_seconds')::float8, 60)))
              OR (state = 'rolled_back' AND finished_by LIKE 'system %' AND finished_at > now() - interval '1 day')
              OR (state = 'failed' AND finished_at > now() - interval '1 day')
           ORDER BY updated_at DESC LIMIT 200"#
    )
    .fetch_all(db)
    .await
}
