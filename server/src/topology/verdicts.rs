//! Storing the health checker's verdicts: a writer task takes health and breaker changes from
//! the probe loop and stores whatever has queued up in one transaction, publishing an event per
//! change, so a mass change (start-up, a partition) never stalls probing.

use app::model::{
    events::{BreakerPosition, EventKind},
    topology::InstanceHealth,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::events;

/// A change the checker decided, to be stored and published.
#[derive(Debug)]
pub(super) enum Verdict {
    Health { id: Uuid, from: InstanceHealth, to: InstanceHealth, reason: String, successes: i32, failures: i32 },
    Breaker { id: Uuid, from: BreakerPosition, to: BreakerPosition },
}

/// Verdicts stored per transaction at most; a burst is written in a few transactions instead
/// of one each.
const VERDICTS_PER_TRANSACTION: usize = 500;

/// Stores verdicts in order, batching whatever has queued up, until the checker stops. A batch
/// that fails is logged and dropped: the next target reload resets the checker's view of those
/// instances to what is stored, and the next probes judge them again.
pub(super) async fn store_verdicts(db: PgPool, mut pending: tokio::sync::mpsc::UnboundedReceiver<Verdict>) {
    let mut batch = Vec::with_capacity(VERDICTS_PER_TRANSACTION);
    while pending.recv_many(&mut batch, VERDICTS_PER_TRANSACTION).await > 0 {
        match store(&db, &batch).await {
            Ok(()) => {
                for verdict in &batch {
                    match verdict {
                        Verdict::Health { id, from, to, reason, .. } => {
                            tracing::info!(%id, from = from.as_str(), to = to.as_str(), reason, "instance health changed");
                        }
                        Verdict::Breaker { id, from, to } => {
                            tracing::info!(%id, from = from.as_str(), to = to.as_str(), "health-check breaker moved");
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, verdicts = batch.len(), "could not store health verdicts; they will be judged again")
            }
        }
        batch.clear();
    }
}

/// One transaction: every row change first, then the events (see [`events::publish`]).
async fn store(db: &PgPool, batch: &[Verdict]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut published = Vec::with_capacity(batch.len());
    for verdict in batch {
        match verdict {
            Verdict::Health { id, from, to, reason, successes, failures } => {
                if record_change(&mut tx, *id, *from, *to, reason, *successes, *failures).await?
                    && let Some(instance) = events::instance_ref(&mut tx, *id).await?
                {
                    let reason = events::headline(reason);
                    published.push(EventKind::HealthChanged { instance, from: *from, to: *to, reason });
                }
            }
            Verdict::Breaker { id, from, to } => {
                sqlx::query!("UPDATE instances SET breaker = $2 WHERE id = $1", id, to.as_str())
                    .execute(&mut *tx)
                    .await?;
                if let Some(instance) = events::instance_ref(&mut tx, *id).await? {
                    published.push(EventKind::BreakerChanged { instance, from: *from, to: *to });
                }
            }
        }
    }
    events::publish_all(&mut tx, &published).await?;
    tx.commit().await
}

/// Stores a health change; `false` if the row had moved on (nothing stored).
async fn record_change(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    from: InstanceHealth,
    to: InstanceHealth,
    reason: &str,
    successes: i32,
    failures: i32,
) -> Result<bool, sqlx::Error> {
    // Only if the row still is what we judged from: an expiry or a re-registration in between wins.
    let updated = sqlx::query!(
        r#"UPDATE instances SET health = $2, health_reason = $3, health_changed_at = now(),
               consecutive_successes = $4, consecutive_failures = $5
           WHERE id = $1 AND health = $6"#,
        id,
        to.as_str(),
        reason,
        successes,
        failures,
        from.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO instance_health_changes (instance_id, from_health, to_health, reason) VALUES ($1, $2, $3, $4)",
        id,
        from.as_str(),
        to.as_str(),
        reason
    )
    .execute(&mut *tx)
    .await?;
    Ok(true)
}
