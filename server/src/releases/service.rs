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
    releases::{CanaryStep, Conflict, Release, ReleaseAction, ReleaseActionRequest, ReleaseHistoryEntry},
    traffic::{TrafficChange, TrafficPolicy},
};
use chrono::Utc;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

pub use super::deployer::Deployer;
use super::{
    error::ReleaseError,
    keys::{self, KeyState},
    plan::{self, Facts, Plan},
    schema, smoke,
    store::{self, StoredRelease},
    transitions,
};
use crate::{
    audit::{self, Actor, ActorKind, AuditEntry},
    auth::RequestContext,
    events,
    influx::InfluxClient,
    traffic,
};

/// A decided change of a release, ready to be recorded by [`Releases::carry_out`].
pub(super) struct Transition {
    /// The action's name in history, audit and events (`pause`, `rolling_replaced`, …).
    pub action: &'static str,
    /// The action as the audit row shows it.
    pub detail: serde_json::Value,
    pub plan: Plan,
    pub reason: Option<String>,
    /// Overrides the plan's status reason (an automatic rollback says why).
    pub status_reason: Option<String>,
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

    /// The rolling controller (it starts and stops instances through the deployer).
    pub fn rolling() -> Self {
        Self { actor: Actor::system("release-rolling"), context: RequestContext::default() }
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

pub(super) fn check_steps(steps: &[CanaryStep]) -> Result<(), String> {
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
pub(super) fn fingerprint(route: &str, body: &impl Serialize) -> Vec<u8> {
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
    /// Starts and stops instances for rolling releases (`--deployer-url`); without one they
    /// are refused.
    pub deployer: Option<Arc<dyn Deployer>>,
}

impl Releases {
    pub fn new(db: PgPool, influx: InfluxClient) -> Self {
        Self { db, influx, deployer: None }
    }

    pub fn from_state(state: &crate::state::AppState) -> Self {
        Self { deployer: state.deployer.clone(), ..Self::new(state.db.clone(), state.influx.clone()) }
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
    pub(super) async fn claim<T: DeserializeOwned>(
        tx: &mut PgConnection,
        who: &Who,
        key: Option<&str>,
        hash: &[u8],
    ) -> Result<Option<T>, ReleaseError> {
        let Some(key) = key else { return Ok(None) };
        if key.is_empty() || key.len() > 200 {
            return Err(ReleaseError::Invalid("Idempotency-Key: give 1–200 characters, new for each action".into()));
        }
        match keys::claim_key(tx, &who.label(), key, hash).await? {
            KeyState::Fresh => Ok(None),
            KeyState::Answered { body, .. } => {
                Ok(Some(store::from_json(body).map_err(|e| ReleaseError::Internal(anyhow::Error::new(e)))?))
            }
            KeyState::Mismatch => Err(ReleaseError::KeyReused(format!(
                "Idempotency-Key {key:?} was already used for a different request; send a new key for a new action"
            ))),
        }
    }

    pub(super) async fn answer(
        tx: &mut PgConnection,
        who: &Who,
        key: Option<&str>,
        status: u16,
        body: &impl Serialize,
    ) -> Result<(), ReleaseError> {
        if let Some(key) = key {
            let body = store::to_json(body)?;
            keys::store_answer(tx, &who.label(), key, status, &body).await?;
        }
        Ok(())
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
        let active_release = store::active_of(&mut *tx, stored.service_id).await?;
        let facts = Facts {
            now: Utc::now(),
            instances: &instances,
            service_stable: service_stable.as_deref(),
            contract_refusal,
            smoke,
            active_release,
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
        let (planned, _) = Self::decide(tx, &stored, action, smoke).await?;
        let plan = match planned {
            Ok(plan) => plan,
            Err(refusal) => {
                return Err(Self::conflict(tx, refusal, &stored.release.service, Some(stored.release.id)).await?);
            }
        };
        let transition = Transition { action: action.name(), detail: json!(action), plan, reason, status_reason };
        self.carry_out(tx, who, stored, policy, transition).await
    }

    /// Records a decided transition inside `tx`: the traffic change (if any), the release row,
    /// its history row, ONE audit row and the events. Actions and the rolling controller's
    /// steps both end here.
    pub(super) async fn carry_out(
        &self,
        tx: &mut PgConnection,
        who: &Who,
        stored: StoredRelease,
        policy: TrafficPolicy,
        transition: Transition,
    ) -> Result<Release, ReleaseError> {
        let Transition { action, detail, plan, reason, status_reason } = transition;
        let id = stored.release.id;
        let service = stored.release.service.clone();
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
        let summary = format!("{action}: {}{}", plan.summary, verdict_text.unwrap_or_default());
        store::record_action(
            tx,
            id,
            &ReleaseHistoryEntry {
                at: Utc::now(),
                actor: who.label(),
                action: action.to_owned(),
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
                    "action": detail, "state": stored.release.state, "percent": stored.release.current_percent,
                    "revision": policy.revision, "weights": policy.weights,
                })),
                Some(json!({
                    "action": detail, "state": release.state, "percent": release.current_percent,
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
}
