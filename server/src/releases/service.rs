//! The one way to act on releases and traffic: the REST handlers, the UI's server functions and
//! the analysis worker all call [`Releases`]. Each action is one transaction: the release row
//! (locked), the traffic policy through `traffic::store::write` (optimistic lock on its
//! revision), a history row, ONE audit row with the verdict numbers of the moment, and the
//! `ReleaseChanged`/`TrafficChanged` events published last before commit. An idempotency key
//! is claimed in the same transaction, so a repeat returns the first answer and changes nothing.

use std::sync::Arc;

use app::model::{
    audit::{AuditAction, AuditOutcome},
    events::EventKind,
    releases::{
        CanaryStep, Conflict, Release, ReleaseAction, ReleaseActionRequest, ReleaseHistoryEntry, ReleaseState,
        StartRelease, Strategy,
    },
    traffic::{TrafficChange, TrafficPolicy},
};
use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use super::{
    analysis,
    error::ReleaseError,
    plan::{self, Facts, Plan},
    schema, smoke,
    store::{self, KeyState, StoredRelease},
    transitions,
};
use crate::{
    audit::{self, Actor, ActorKind, AuditEntry},
    auth::RequestContext,
    events,
    influx::InfluxClient,
    traffic,
};

/// Replaces instances one at a time for rolling releases (the demo supervisor, later an
/// orchestrator). None is configured yet, so rolling releases are refused with a clear reason.
#[async_trait::async_trait]
pub trait Deployer: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Who acts, and from where (for the audit log).
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: Actor,
    pub context: RequestContext,
}

impl Who {
    /// The analysis worker.
    pub fn system() -> Self {
        Self { actor: Actor::system("release-analysis"), context: RequestContext::default() }
    }

    /// `user alice`, `token ci`, `system release-analysis`: in history rows and `updated_by`.
    pub fn label(&self) -> String {
        let kind = match self.actor.kind {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        };
        format!("{kind} {}", self.actor.name)
    }
}

/// The default canary steps: 1 → 5 → 25 → 50 → 100 %, 60 s each.
pub fn default_steps() -> Vec<CanaryStep> {
    [1, 5, 25, 50, 100].into_iter().map(|percent| CanaryStep { percent, hold_seconds: 60 }).collect()
}

fn check_steps(steps: &[CanaryStep]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > 20 {
        return Err("steps: give 1–20 steps".to_owned());
    }
    let mut last = 0;
    for (n, step) in steps.iter().enumerate() {
        if step.percent == 0 || step.percent > 100 || step.percent <= last {
            return Err(format!(
                "steps[{n}].percent {}: each step's share must be 1–100 and larger than the one before",
                step.percent
            ));
        }
        if step.hold_seconds > 86_400 {
            return Err(format!("steps[{n}].hold_seconds {}: at most 86400 (a day)", step.hold_seconds));
        }
        last = step.percent;
    }
    Ok(())
}

/// A request's fingerprint for its idempotency key: the route and the body.
fn fingerprint(route: &str, body: &impl Serialize) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(route.as_bytes());
    hash.update(b"\n");
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hash.finalize().to_vec()
}

/// Release control over one database and InfluxDB.
#[derive(Clone)]
pub struct Releases {
    pub db: PgPool,
    pub influx: InfluxClient,
    pub deployer: Option<Arc<dyn Deployer>>,
}

impl Releases {
    pub fn new(db: PgPool, influx: InfluxClient) -> Self {
        Self { db, influx, deployer: None }
    }

    pub fn from_state(state: &crate::state::AppState) -> Self {
        Self::new(state.db.clone(), state.influx.clone())
    }

    /// A 409 answer showing the present: the policy and the release in question (or the one in
    /// progress).
    pub(super) async fn conflict(
        db: &mut PgConnection,
        error: String,
        service: &str,
        release_id: Option<i64>,
    ) -> Result<ReleaseError, ReleaseError> {
        let current_policy =
            traffic::store::load(&mut *db, service).await?.unwrap_or_else(|| TrafficPolicy::none(service));
        let release_id = match release_id {
            Some(id) => Some(id),
            None => match store::service(&mut *db, service).await? {
                Some(facts) => store::active_of(&mut *db, facts.id).await?,
                None => None,
            },
        };
        let current_release = match release_id {
            Some(id) => store::load(&mut *db, id).await?.map(|r| r.release),
            None => None,
        };
        Ok(ReleaseError::Refused(Box::new(Conflict { error, current_policy, current_release })))
    }

    /// Claims the key (if any); a repeat's stored answer comes back as `Some`.
    async fn claim<T: DeserializeOwned>(
        tx: &mut PgConnection,
        who: &Who,
        key: Option<&str>,
        hash: &[u8],
    ) -> Result<Option<T>, ReleaseError> {
        let Some(key) = key else { return Ok(None) };
        if key.is_empty() || key.len() > 200 {
            return Err(ReleaseError::Invalid("Idempotency-Key: give 1–200 characters, new for each action".into()));
        }
        match store::claim_key(tx, &who.label(), key, hash).await? {
            KeyState::Fresh => Ok(None),
            KeyState::Answered { body, .. } => {
                Ok(Some(store::from_json(body).map_err(|e| ReleaseError::Internal(anyhow::Error::new(e)))?))
            }
            KeyState::Mismatch => Err(ReleaseError::KeyReused(format!(
                "Idempotency-Key {key:?} was already used for a different request; send a new key for a new action"
            ))),
        }
    }

    async fn answer(
        tx: &mut PgConnection,
        who: &Who,
        key: Option<&str>,
        status: u16,
        body: &impl Serialize,
    ) -> Result<(), ReleaseError> {
        if let Some(key) = key {
            let body = store::to_json(body)?;
            store::store_answer(tx, &who.label(), key, status, &body).await?;
        }
        Ok(())
    }

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
        if request.strategy == Strategy::Rolling && self.deployer.is_none() {
            return Err(ReleaseError::Invalid(
                "rolling needs a deployer; none configured — use canary or blue_green to move traffic between running versions".into(),
            ));
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
        if !facts.versions.contains(&target) {
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
        let summary = format!(
            "{} release of {service} started: {target} {percent} %, {stable} {} %",
            transitions::name(request.strategy),
            100 - percent
        );
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

    /// `POST /releases/{id}/actions`.
    #[tracing::instrument(skip_all, fields(release = id, action = request.action.name()))]
    pub async fn act(
        &self,
        who: &Who,
        id: i64,
        request: &ReleaseActionRequest,
        key: Option<&str>,
    ) -> Result<Release, ReleaseError> {
        let not_found = || ReleaseError::NotFound(format!("no release #{id}"));
        // Smoke checks talk to the instances, so they run before the transaction (only when the
        // state allows them; the transaction checks again).
        let smoke = match request.action {
            ReleaseAction::RunSmokeChecks => {
                let stored = store::load(&self.db, id).await?.ok_or_else(not_found)?;
                let release = &stored.release;
                if transitions::next(release.strategy, release.state, "run_smoke_checks").is_ok() {
                    let instances = store::instances(&self.db, stored.service_id).await?;
                    let green: Vec<_> =
                        instances.iter().filter(|i| i.version == release.target_version && i.healthy).collect();
                    (!green.is_empty()).then_some(smoke::run(&release.smoke_checks, &green).await)
                } else {
                    None
                }
            }
            _ => None,
        };
        let mut tx = self.db.begin().await?;
        let hash = fingerprint(&format!("POST /releases/{id}/actions"), request);
        if let Some(repeat) = Self::claim::<Release>(&mut tx, who, key, &hash).await? {
            return Ok(repeat);
        }
        let stored = store::lock(&mut tx, id).await?.ok_or_else(not_found)?;
        let service = stored.release.service.clone();
        let policy = traffic::store::load(&mut *tx, &service).await?.unwrap_or_else(|| TrafficPolicy::none(&service));
        if policy.revision != request.expected_revision {
            let message = format!(
                "the traffic policy of {service} is at revision {} now, not {}: someone acted first — reload, look again and decide",
                policy.revision, request.expected_revision
            );
            return Err(Self::conflict(&mut tx, message, &service, Some(id)).await?);
        }
        let release = self
            .apply(&mut tx, who, stored, policy, &request.action, smoke.as_ref(), request.reason.clone(), None)
            .await?;
        Self::answer(&mut tx, who, key, 200, &release).await?;
        tx.commit().await?;
        Ok(release)
    }

    /// The facts an action on `stored` depends on.
    pub(super) async fn decide(
        tx: &mut PgConnection,
        stored: &StoredRelease,
        action: &ReleaseAction,
        smoke: Option<&smoke::SmokeReport>,
    ) -> Result<(Result<Plan, String>, Vec<store::InstanceFacts>), ReleaseError> {
        let instances = store::instances(&mut *tx, stored.service_id).await?;
        let service_stable = store::service(&mut *tx, &stored.release.service).await?.and_then(|s| s.stable_version);
        let contract_refusal = match action {
            ReleaseAction::Rollback => {
                schema::rollback_refusal(&mut *tx, stored.service_id, &stored.release.stable_version).await?
            }
            _ => None,
        };
        let facts = Facts {
            now: Utc::now(),
            instances: &instances,
            service_stable: service_stable.as_deref(),
            contract_refusal,
            smoke,
        };
        let planned = plan::plan(stored, action, &facts);
        Ok((planned, instances))
    }

    /// Carries out `action` on the locked release inside `tx`. `status_reason` overrides the
    /// plan's (an automatic rollback says why).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply(
        &self,
        tx: &mut PgConnection,
        who: &Who,
        stored: StoredRelease,
        policy: TrafficPolicy,
        action: &ReleaseAction,
        smoke: Option<&smoke::SmokeReport>,
        reason: Option<String>,
        status_reason: Option<String>,
    ) -> Result<Release, ReleaseError> {
        let id = stored.release.id;
        let service = stored.release.service.clone();
        let (planned, _) = Self::decide(tx, &stored, action, smoke).await?;
        let plan = match planned {
            Ok(plan) => plan,
            Err(refusal) => return Err(Self::conflict(tx, refusal, &service, Some(id)).await?),
        };
        let mut after = plan.after;
        let mut new_revision = policy.revision;
        if let Some(weights) = &plan.weights {
            let change = TrafficChange {
                expected_revision: policy.revision,
                weights: weights.clone(),
                sticky: policy.sticky.clone(),
                route: policy.route.clone(),
                reason: reason.clone(),
            };
            let written = traffic::store::write(tx, &service, &change, &format!("release {id} by {}", who.label()))
                .await
                .map_err(|e| ReleaseError::from_write(e, Some(stored.release.clone())))?;
            new_revision = written.revision;
        }
        after.release.policy_revision = new_revision;
        if after.release.finished_at.is_some() {
            after.finished_by = Some(who.label());
        }
        if let Some(status) = status_reason {
            after.release.status_reason = Some(status);
        }
        if let Some(stable) = &plan.new_stable {
            store::set_stable_version(tx, stored.service_id, stable).await?;
        }
        store::update(tx, &after).await?;
        let release = store::load(&mut *tx, id).await?.ok_or_else(|| anyhow::anyhow!("release {id} vanished"))?.release;
        let verdict = release.last_verdict.clone();
        let weights_after = plan.weights.clone().unwrap_or_else(|| policy.weights.clone());
        let verdict_text =
            verdict.as_ref().map(|v| format!("; verdict {}: {}", transitions::name(v.outcome), v.summary));
        let summary = format!("{}: {}{}", action.name(), plan.summary, verdict_text.unwrap_or_default());
        store::record_action(
            tx,
            id,
            &ReleaseHistoryEntry {
                at: Utc::now(),
                actor: who.label(),
                action: action.name().to_owned(),
                from_state: stored.release.state,
                to_state: release.state,
                weights_before: policy.weights.clone(),
                weights_after: weights_after.clone(),
                verdict: verdict.clone(),
                reason: reason.clone(),
            },
        )
        .await?;
        let entry = AuditEntry::new(who.actor.clone(), AuditAction::ReleaseAction, AuditOutcome::Success)
            .target(format!("release {id} ({service})"))
            .change(
                Some(json!({
                    "action": action, "state": stored.release.state, "percent": stored.release.current_percent,
                    "revision": policy.revision, "weights": policy.weights,
                })),
                Some(json!({
                    "action": action, "state": release.state, "percent": release.current_percent,
                    "revision": new_revision, "weights": weights_after, "verdict": verdict,
                })),
            )
            .reason(reason)
            .detail(summary.clone());
        audit::record(&mut *tx, &entry, &who.context).await?;
        let mut kinds = vec![EventKind::ReleaseChanged {
            release_id: id,
            service: service.clone(),
            strategy: release.strategy,
            from: Some(stored.release.state),
            to: release.state,
            percent: release.current_percent,
            actor: who.label(),
            summary,
        }];
        if plan.weights.is_some() {
            kinds.push(EventKind::TrafficChanged {
                service,
                revision: new_revision,
                weights: weights_after,
                actor: who.label(),
            });
        }
        events::publish_all(tx, &kinds).await?;
        Ok(release)
    }

    /// `PUT /services/{service}/traffic`: a policy set by hand, refused while a release of the
    /// service is in progress (its actions move the traffic then).
    #[tracing::instrument(skip_all, fields(service))]
    pub async fn set_traffic(
        &self,
        who: &Who,
        service: &str,
        change: &TrafficChange,
        key: Option<&str>,
    ) -> Result<TrafficPolicy, ReleaseError> {
        change.check().map_err(ReleaseError::Invalid)?;
        let mut tx = self.db.begin().await?;
        let hash = fingerprint(&format!("PUT /services/{service}/traffic"), change);
        if let Some(repeat) = Self::claim::<TrafficPolicy>(&mut tx, who, key, &hash).await? {
            return Ok(repeat);
        }
        let facts = store::service(&mut tx, service)
            .await?
            .ok_or_else(|| ReleaseError::NotFound(format!("no service named {service:?}")))?;
        sqlx::query!("SELECT id FROM services WHERE id = $1 FOR UPDATE", facts.id).fetch_one(&mut *tx).await?;
        if let Some(active) = store::active_of(&mut *tx, facts.id).await? {
            let message = format!(
                "release #{active} of {service} is in progress: its traffic changes through the release's actions (or abort it first)"
            );
            return Err(Self::conflict(&mut tx, message, service, Some(active)).await?);
        }
        let before = traffic::store::load(&mut *tx, service).await?.unwrap_or_else(|| TrafficPolicy::none(service));
        let policy = traffic::store::write(&mut tx, service, change, &who.label())
            .await
            .map_err(|e| ReleaseError::from_write(e, None))?;
        let entry = AuditEntry::new(who.actor.clone(), AuditAction::TrafficChange, AuditOutcome::Success)
            .target(format!("service {service}"))
            .change(
                Some(json!({ "revision": before.revision, "weights": before.weights })),
                Some(json!({ "revision": policy.revision, "weights": policy.weights, "sticky": policy.sticky, "route": policy.route })),
            )
            .reason(change.reason.clone())
            .detail(format!("traffic of {service} set by hand to revision {}", policy.revision));
        audit::record(&mut *tx, &entry, &who.context).await?;
        events::publish(
            &mut tx,
            &EventKind::TrafficChanged {
                service: service.to_owned(),
                revision: policy.revision,
                weights: policy.weights.clone(),
                actor: who.label(),
            },
        )
        .await?;
        Self::answer(&mut tx, who, key, 200, &policy).await?;
        tx.commit().await?;
        Ok(policy)
    }
}
