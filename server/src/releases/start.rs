//! Starting a release: the checks, the first traffic change, the release row, its history,
//! audit row and events — one transaction, like every action (see `service.rs`).

use app::model::{
    audit::{AuditAction, AuditOutcome},
    events::EventKind,
    releases::{Release, ReleaseHistoryEntry, ReleaseState, StartRelease, Strategy},
    traffic::{TrafficChange, TrafficPolicy},
};
use chrono::Utc;
use serde_json::json;

use super::{
    analysis,
    error::ReleaseError,
    plan, rolling, schema,
    service::{Releases, Who, check_steps, default_steps, fingerprint},
    smoke,
    store::{self, StoredRelease},
    transitions,
};
use crate::{
    audit::{self, AuditEntry},
    events, traffic,
};

impl Releases {
    /// `POST /services/{service}/releases`.
    #[tracing::instrument(skip_all, fields(service, strategy = ?request.strategy))]
    pub async fn start(
        &self,
        who: &Who,
        service: &str,
        request: &StartRelease,
        key: Option<&str>,
    ) -> Result<Release, ReleaseError> {
        let steps = request.steps.clone().unwrap_or_else(default_steps);
        check_steps(&steps).map_err(ReleaseError::Invalid)?;
        let max_jump = request.max_jump.unwrap_or(50);
        if !(1..=100).contains(&max_jump) {
            return Err(ReleaseError::Invalid(format!("max_jump {max_jump}: give 1–100 percentage points")));
        }
        let analysis_config = request.analysis.clone().unwrap_or_else(analysis::default_config);
        analysis::check_config(&analysis_config).map_err(ReleaseError::Invalid)?;
        smoke::check_config(&request.smoke_checks).map_err(ReleaseError::Invalid)?;
        if request.strategy == Strategy::BlueGreen && request.smoke_checks.is_empty() {
            return Err(ReleaseError::Invalid("smoke_checks: a blue-green release needs at least one check".into()));
        }
        if let Some(schema) = &request.schema
            && (schema.description.trim().is_empty() || schema.description.len() > 500)
        {
            return Err(ReleaseError::Invalid("schema.description: say what changes, in 1–500 characters".into()));
        }
        let rolling_config = request.rolling.clone().unwrap_or_default();
        if request.strategy == Strategy::Rolling {
            if self.deployer.is_none() {
                return Err(ReleaseError::Invalid(
                    "rolling needs a deployer to start and stop instances, and none is configured (opsdeck serve --deployer-url); use canary or blue_green to move traffic between running versions".into(),
                ));
            }
            if !(10..=3600).contains(&rolling_config.ready_timeout_seconds) {
                return Err(ReleaseError::Invalid(format!(
                    "rolling.ready_timeout_seconds {}: give 10–3600 seconds",
                    rolling_config.ready_timeout_seconds
                )));
            }
            app::model::topology::check_version(&request.target_version).map_err(ReleaseError::Invalid)?;
        }

        let mut tx = self.db.begin().await?;
        let hash = fingerprint(&format!("POST /services/{service}/releases"), request);
        if let Some(repeat) = Self::claim::<Release>(&mut tx, who, key, &hash).await? {
            return Ok(repeat);
        }
        let facts = store::service(&mut tx, service)
            .await?
            .ok_or_else(|| ReleaseError::NotFound(format!("no service named {service:?}")))?;
        // Starts of one service run one at a time.
        sqlx::query!("SELECT id FROM services WHERE id = $1 FOR UPDATE", facts.id).fetch_one(&mut *tx).await?;
        if let Some(active) = store::active_of(&mut *tx, facts.id).await? {
            let message =
                format!("release #{active} of {service} is in progress; finish or abort it before starting another");
            return Err(Self::conflict(&mut tx, message, service, Some(active)).await?);
        }
        let policy = traffic::store::load(&mut *tx, service).await?.unwrap_or_else(|| TrafficPolicy::none(service));
        if policy.revision != request.expected_revision {
            let message = format!(
                "the traffic policy of {service} is at revision {} now, not {}: reload, look again and decide",
                policy.revision, request.expected_revision
            );
            return Err(Self::conflict(&mut tx, message, service, None).await?);
        }
        let stable = match &facts.stable_version {
            Some(stable) => stable.clone(),
            None => policy
                .weights
                .iter()
                .find(|w| w.percent == 100)
                .map(|w| w.version.clone())
                .or_else(|| (facts.running_versions.len() == 1).then(|| facts.running_versions[0].clone()))
                .ok_or_else(|| {
                    ReleaseError::Invalid(format!(
                        "no stable version of {service} is known: give it a traffic policy with 100 % on one version first"
                    ))
                })?,
        };
        let target = match request.strategy {
            Strategy::Rollback => store::previous_stable(&mut *tx, facts.id, &stable).await?.ok_or_else(|| {
                ReleaseError::Invalid(format!("{service} has no earlier stable version than {stable} to roll back to"))
            })?,
            _ => request.target_version.clone(),
        };
        if target == stable {
            return Err(ReleaseError::Invalid(format!("{target} is already the stable version of {service}")));
        }
        // A rolling release deploys its version; the others move traffic to running ones.
        if request.strategy != Strategy::Rolling && !facts.versions.contains(&target) {
            return Err(ReleaseError::Invalid(format!(
                "{service} has no version {target:?} (known: {}); register an instance of it first",
                facts.versions.join(", ")
            )));
        }
        if request.strategy == Strategy::Rollback
            && let Some(refusal) = schema::rollback_refusal(&mut *tx, facts.id, &target).await?
        {
            return Err(Self::conflict(&mut tx, refusal, service, None).await?);
        }
        let instances = store::instances(&mut *tx, facts.id).await?;
        let now = Utc::now();
        let (state, percent) = match request.strategy {
            Strategy::Canary => (ReleaseState::Progressing, steps[0].percent),
            Strategy::BlueGreen => (ReleaseState::Ready, 0),
            Strategy::Rolling => (ReleaseState::Progressing, 0),
            Strategy::Rollback => (ReleaseState::Completed, 100),
        };
        if percent > 0 && !instances.iter().any(|i| i.version == target && i.healthy) {
            return Err(ReleaseError::Invalid(format!(
                "{target} has no healthy instance of {service} to send {percent} % to; start one and wait for its health checks"
            )));
        }
        let rolling = match request.strategy {
            Strategy::Rolling => {
                Some(rolling::progress(&instances, &stable, rolling_config).map_err(ReleaseError::Invalid)?)
            }
            _ => None,
        };
        let canary = request.strategy == Strategy::Canary;
        let finished = state.is_terminal();
        let mut stored = StoredRelease {
            release: Release {
                id: 0,
                service: service.to_owned(),
                strategy: request.strategy,
                state,
                stable_version: stable.clone(),
                target_version: target.clone(),
                steps: if canary { steps.clone() } else { Vec::new() },
                step_index: 0,
                current_percent: percent,
                max_jump,
                step_ends_at: canary.then(|| now + chrono::Duration::seconds(i64::from(steps[0].hold_seconds))),
                analysis: canary.then_some(analysis_config),
                consecutive_breaches: 0,
                last_verdict: None,
                smoke_checks: request.smoke_checks.clone(),
                schema: request.schema.clone(),
                rolling,
                policy_revision: policy.revision,
                allowed_actions: Vec::new(),
                started_by: who.label(),
                started_at: now,
                updated_at: now,
                finished_at: finished.then_some(now),
                status_reason: finished.then(|| format!("rolled back to {target}, the version stable before {stable}")),
            },
            service_id: facts.id,
            held_since: None,
            last_analysis_at: canary.then_some(now),
            smoke_passed: None,
            finished_by: finished.then(|| who.label()),
        };
        let weights = plan::split(&target, &stable, percent);
        let change = TrafficChange {
            expected_revision: policy.revision,
            weights: weights.clone(),
            sticky: policy.sticky.clone(),
            route: policy.route.clone(),
            reason: request.reason.clone(),
        };
        let new_policy = traffic::store::write(&mut tx, service, &change, &format!("release by {}", who.label()))
            .await
            .map_err(|e| ReleaseError::from_write(e, None))?;
        stored.release.policy_revision = new_policy.revision;
        let id = store::insert(&mut tx, &stored).await?;
        if finished {
            store::set_stable_version(&mut tx, facts.id, &target).await?;
        }
        let release = store::load(&mut *tx, id).await?.ok_or_else(|| anyhow::anyhow!("release {id} vanished"))?.release;
        let summary = match &release.rolling {
            Some(rolling) => format!(
                "rolling release of {service} started: {target} replaces {stable} on {} node(s) ({}), one at a time",
                rolling.steps.len(),
                rolling.steps.iter().map(|s| s.node.as_str()).collect::<Vec<_>>().join(", ")
            ),
            None => format!(
                "{} release of {service} started: {target} {percent} %, {stable} {} %",
                transitions::name(request.strategy),
                100 - percent
            ),
        };
        store::record_action(
            &mut tx,
            id,
            &ReleaseHistoryEntry {
                at: now,
                actor: who.label(),
                action: "start".into(),
                from_state: state,
                to_state: state,
                weights_before: policy.weights.clone(),
                weights_after: weights.clone(),
                verdict: None,
                reason: request.reason.clone(),
            },
        )
        .await?;
        let entry = AuditEntry::new(who.actor.clone(), AuditAction::ReleaseStart, AuditOutcome::Success)
            .target(format!("release {id} ({service})"))
            .change(
                Some(json!({ "revision": policy.revision, "weights": policy.weights })),
                Some(json!({ "release": release, "revision": new_policy.revision, "weights": weights })),
            )
            .reason(request.reason.clone())
            .detail(summary.clone());
        audit::record(&mut *tx, &entry, &who.context).await?;
        events::publish_all(
            &mut tx,
            &[
                EventKind::ReleaseChanged {
                    release_id: id,
                    service: service.to_owned(),
                    strategy: request.strategy,
                    from: None,
                    to: state,
                    percent,
                    actor: who.label(),
                    summary,
                },
                EventKind::TrafficChanged {
                    service: service.to_owned(),
                    revision: new_policy.revision,
                    weights,
                    actor: who.label(),
                },
            ],
        )
        .await?;
        Self::answer(&mut tx, who, key, 201, &release).await?;
        tx.commit().await?;
        Ok(release)
    }
}
