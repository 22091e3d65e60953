//! The day partitions of `log_lines`: created ahead by a worker (and on demand by ingest), and
//! dropped whole once past the retention. Safe on every replica at once: the DDL says
//! `IF NOT EXISTS` / `IF EXISTS` and runs under one transaction-scoped advisory lock, so two
//! replicas creating the same day can't trip over each other's catalog rows.

use std::{collections::BTreeSet, time::Duration};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

/// Partition names are this plus the day as `YYYYMMDD`.
const PREFIX: &str = "log_lines_p";
/// Serialises partition DDL across replicas ("logs" in ASCII).
const DDL_LOCK: i64 = 0x6c6f_6773;
/// How many days after today the worker keeps ready.
const DAYS_AHEAD: u64 = 2;
/// How often the worker looks (partitions are days: hourly is plenty, and start-up runs it too).
const EVERY: Duration = Duration::from_secs(3600);

pub fn partition_name(day: NaiveDate) -> String {
    format!("{PREFIX}{}", day.format("%Y%m%d"))
}

/// The day a partition is for, from its name; `None` for tables that aren't ours.
fn day_of(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(PREFIX)?;
    (digits.len() == 8).then(|| NaiveDate::parse_from_str(digits, "%Y%m%d").ok()).flatten()
}

/// The days that have a partition now.
pub async fn existing(db: &PgPool) -> anyhow::Result<BTreeSet<NaiveDate>> {
    let names = sqlx::query_scalar!(
        r#"SELECT c.relname AS "name!" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'log_lines'::regclass"#
    )
    .fetch_all(db)
    .await
    .context("cannot list the log partitions")?;
    Ok(names.iter().filter_map(|name| day_of(name)).collect())
}

/// Creates the partitions for `days` that don't exist yet.
pub async fn ensure(db: &PgPool, days: &BTreeSet<NaiveDate>) -> anyhow::Result<()> {
    let have = existing(db).await?;
    let missing: Vec<NaiveDate> = days.difference(&have).copied().collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", DDL_LOCK).execute(&mut *tx).await?;
    for day in missing {
        let next = day.succ_opt().context("no day after the end of the calendar")?;
        // Only dates we formatted ourselves go into the statement.
        let statement = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF log_lines FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
            partition_name(day)
        );
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot create the log partition for {day}"))?;
        tracing::info!(%day, "log partition created");
    }
    tx.commit().await?;
    Ok(())
}

/// Today's partition and the next [`DAYS_AHEAD`] days'.
pub async fn ensure_ahead(db: &PgPool, today: NaiveDate) -> anyhow::Result<()> {
    let days = today.iter_days().take(DAYS_AHEAD as usize + 1).collect();
    ensure(db, &days).await
}

/// The earliest time a line may have and still be kept.
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX)
}

/// Drops every partition whose whole day is older than `now - retention`; returns their days.
/// A day partly inside the retention stays, so nothing younger than the retention goes.
pub async fn drop_expired(db: &PgPool, now: DateTime<Utc>, retention: Duration) -> anyhow::Result<Vec<NaiveDate>> {
    let cutoff = cutoff(now, retention);
    let expired: Vec<NaiveDate> = existing(db)
        .await?
        .into_iter()
        .filter(|day| {
            day.succ_opt().and_then(|next| next.and_hms_opt(0, 0, 0)).is_some_and(|end| end.and_utc() <= cutoff)
        })
        .collect();
    if expired.is_empty() {
        return Ok(expired);
    }
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", DDL_LOCK).execute(&mut *tx).await?;
    for day in &expired {
        let statement = format!("DROP TABLE IF EXISTS {}", partition_name(*day));
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot drop the log partition for {day}"))?;
        tracing::info!(%day, "log partition past retention dropped");
    }
    tx.commit().await?;
    Ok(expired)
}

/// The worker: keeps partitions ready ahead and drops expired ones, now and every hour. Errors
/// are logged and retried on the next round (ingest creates a missing day on demand anyway).
#[tracing::instrument(skip_all)]
pub async fn run(db: PgPool, retention: Duration) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Utc::now();
        if let Err(error) = ensure_ahead(&db, now.date_naive()).await {
            tracing::warn!(error = format!("{error:#}"), "cannot create log partitions ahead");
        }
        if let Err(error) = drop_expired(&db, now, retention).await {
            tracing::warn!(error = format!("{error:#}"), "cannot drop expired log partitions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_foreign_tables_are_ignored() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date");
        assert_eq!(partition_name(day), "log_lines_p20261130");
        assert_eq!(day_of(&partition_name(day)), Some(day));
        assert_eq!(day_of("log_lines_p2026113"), None);
        assert_eq!(day_of("log_lines_default"), None);
    }
}
