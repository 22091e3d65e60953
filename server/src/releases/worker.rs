//! The release controller: every interval it asks InfluxDB how each active canary compares with
//! its stable version, stores the verdict, holds a step that has too little data, advances a
//! step whose hold is over with a passing verdict, and rolls a canary back by itself after
//! `breaches_to_rollback` failing intervals in a row (as the system actor, with the verdict in
//! the audit row and a `ReleaseChanged` event). Rolling releases move on in the same loop
//! ([`super::rolling`]).
//!
//! Each verdict is announced (`VerdictRecorded`), so release pages show its numbers at once.
//!
//! One `serve` replica runs it at a time: like the health checker it holds a PostgreSQL
//! advisory lock on its own connection, and the others stand by to take over.

use std::time::Duration;

use app::model::{
    events::EventKind,
    releases::{ReleaseAction, ReleaseState, Verdict, VerdictOutcome},
};
use chrono::Utc;

use super::{
    analysis,
    error::ReleaseError,
    service::{Releases, Who},
    store,
};
use crate::traffic;

/// The leader lock (per database), next to the health checker's.
const LEADER_LOCK: i64 = 0x6f70_7364_6563_6b02;
/// How often due analyses and steps are looked for.
const TICK: Duration = Duration::from_millis(250);
/// How often idempotency keys older than [`super::keys::KEEP`] are forgotten.
const FORGET_KEYS_EVERY: Duration = Duration::from_secs(600);

/// Runs forever, leading when it holds the lock.
pub async fn run(releases: Releases) {
    crate::leader::lead(&releases.db.clone(), LEADER_LOCK, "the release controller", || async {
        let mut keys_forgotten = tokio::time::Instant::now();
        loop {
            if let Err(error) = tick(&releases).await {
                tracing::warn!(error = %error, "a release controller round failed; trying again");
            }
            if let Err(error) = super::rolling::tick(&releases).await {
                tracing::warn!(error = %error, "a rolling release round failed; trying again");
            }
            if keys_forgotten.elapsed() >= FORGET_KEYS_EVERY {
                keys_forgotten = tokio::time::Instant::now();
                if let Err(error) = super::keys::forget_old(&releases.db).await {
                    tracing::warn!(%error, "old idempotency keys could not be removed; trying later");
                }
            }
            tokio::time::sleep(TICK).await;
        }
    })
    .await;
}

/// One round over the active canaries.
pub async fn tick(releases: &Releases) -> Result<(), ReleaseError> {
    for id in store::analysed_ids(&releases.db).await? {
        let Some(stored) = store::load(&releases.db, id).await? else { continue };
        let release = &stored.release;
        let Some(config) = &release.analysis else { continue };
        let due = stored
            .last_analysis_at
            .is_none_or(|at| Utc::now() - at >= chrono::Duration::seconds(i64::from(config.interval_seconds)));
        if due {
            match analysis::compare(
                &releases.influx,
                &release.service,
                &release.target_version,
                &release.stable_version,
                config,
            )
            .await
            {
                Ok(verdict) => releases.record_verdict(id, verdict).await?,
                Err(error) => {
                    tracing::warn!(release = id, %error, "canary analysis could not read InfluxDB; no verdict this interval")
                }
            }
        }
        releases.advance_if_due(id).await?;
    }
    Ok(())
}

impl Releases {
    /// Stores one interval's verdict and its consequences: a held step, a reset or counted
    /// breach, and the automatic rollback after too many.
    #[tracing::instrument(skip_all, fields(release = id, outcome = ?verdict.outcome))]
    pub async fn record_verdict(&self, id: i64, verdict: Verdict) -> Result<(), ReleaseError> {
        let mut tx = self.db.begin().await?;
        let Some(stored) = store::lock(&mut tx, id).await? else { return Ok(()) };
        let analysed = matches!(
            stored.release.state,
            ReleaseState::Progressing | ReleaseState::Paused | ReleaseState::AwaitingPromotion
        );
        let Some(config) = stored.release.analysis.clone().filter(|_| analysed) else { return Ok(()) };
        store::record_verdict(&mut tx, id, &verdict).await?;
        let mut after = stored.clone();
        after.last_analysis_at = Some(verdict.at);
        after.release.last_verdict = Some(verdict.clone());
        match verdict.outcome {
            VerdictOutcome::Pass => {
                after.release.consecutive_breaches = 0;
                after.held_since = None;
            }
            VerdictOutcome::Fail => {
                after.release.consecutive_breaches += 1;
                after.held_since = None;
            }
            VerdictOutcome::Inconclusive => {
                // Held: the hold time doesn't count down without data.
                after.held_since = after.held_since.or(Some(verdict.at));
                if after.release.state == ReleaseState::Progressing {
                    let interval = chrono::Duration::seconds(i64::from(config.interval_seconds));
                    after.release.step_ends_at = after.release.step_ends_at.map(|ends| ends + interval);
                }
            }
        }
        store::update(&mut tx, &after).await?;
        let recorded = EventKind::VerdictRecorded {
            release_id: id,
            service: after.release.service.clone(),
            outcome: verdict.outcome,
            summary: verdict.summary.clone(),
        };
        crate::events::publish(&mut tx, &recorded).await?;
        if verdict.outcome == VerdictOutcome::Fail && after.release.consecutive_breaches >= config.breaches_to_rollback
        {
            let why = format!(
                "rolled back automatically: {} failing interval(s) in a row; {}",
                after.release.consecutive_breaches, verdict.summary
            );
            let service = after.release.service.clone();
            let policy = traffic::store::load(&mut *tx, &service)
                .await?
                .unwrap_or_else(|| app::model::traffic::TrafficPolicy::none(&service));
            let stored = store::load(&mut *tx, id).await?.ok_or_else(|| anyhow::anyhow!("release {id} vanished"))?;
            let outcome = self
                .apply(
                    &mut tx,
                    &Who::system(),
                    stored,
                    policy,
                    &ReleaseAction::Rollback,
                    None,
                    Some(why.clone()),
                    Some(why),
                )
                .await;
            if let Err(ReleaseError::Refused(conflict)) = &outcome {
                tracing::error!(release = id, refusal = %conflict.error, "the automatic rollback was refused; a person must act");
                tx.commit().await?;
                return Ok(());
            }
            outcome?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves a progressing canary to its next step when the hold is over and the last verdict
    /// passed (a held or failing step waits).
    pub async fn advance_if_due(&self, id: i64) -> Result<(), ReleaseError> {
        let mut tx = self.db.begin().await?;
        let Some(stored) = store::lock(&mut tx, id).await? else { return Ok(()) };
        let release = &stored.release;
        let hold_over = release.step_ends_at.is_some_and(|ends| ends <= Utc::now());
        let passing = release.analysis.is_none()
            || release.last_verdict.as_ref().is_some_and(|v| v.outcome == VerdictOutcome::Pass);
        if release.state != ReleaseState::Progressing || !hold_over || !passing {
            return Ok(());
        }
        let service = release.service.clone();
        let policy = traffic::store::load(&mut *tx, &service)
            .await?
            .unwrap_or_else(|| app::model::traffic::TrafficPolicy::none(&service));
        let reason = Some("hold time over with a passing verdict".to_owned());
        match self.apply(&mut tx, &Who::system(), stored, policy, &ReleaseAction::NextStep, None, reason, None).await {
            Ok(_) => tx.commit().await?,
            Err(ReleaseError::Refused(conflict)) => {
                tracing::warn!(release = id, refusal = %conflict.error, "the next step was refused; holding");
            }
            Err(other) => return Err(other),
        }
        Ok(())
    }
}
