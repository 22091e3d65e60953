//! Rolling releases: the stable version is replaced one node at a time. For each node, in order,
//! the controller asks the [`Deployer`] to start the target version there, waits for opsdeck's
//! own health checks to see it healthy (failing the release at once if its process ends, or when
//! the ready time is over), gives the versions their share by healthy instance count, and only
//! then stops the stable instance on that node (it deregisters, so routers drop it before it
//! stops answering). The first failure stops the release in `failed` with a report of what was
//! replaced and what still serves; the traffic stays where it was.
//!
//! Each step is one tick of the release controller and one transaction through
//! [`Releases::carry_out`] (history, audit and event like every action), with the deployer's
//! call made before it: a controller that dies between the two repeats an idempotent call.

use app::model::releases::{ReleaseState, RollingConfig, RollingProgress, RollingStep, RollingStepState};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{
    deployer::{Deployer, Placement},
    error::ReleaseError,
    plan::{Plan, split},
    service::{Releases, Transition, Who},
    store::{self, InstanceFacts, StoredRelease},
};
use crate::traffic;

/// The steps of a new rolling release: one per node that runs `stable`, in node order.
pub fn progress(instances: &[InstanceFacts], stable: &str, config: RollingConfig) -> Result<RollingProgress, String> {
    let mut steps: Vec<RollingStep> = Vec::new();
    let mut running: Vec<&InstanceFacts> = instances.iter().filter(|i| i.version == stable).collect();
    running.sort_by(|a, b| (&a.node, &a.host, a.port).cmp(&(&b.node, &b.host, b.port)));
    for instance in running {
        let address = format!("{}:{}", instance.host, instance.port);
        match steps.last_mut() {
            Some(step) if step.node == instance.node => step.replaces.push(address),
            _ => steps.push(RollingStep {
                node: instance.node.clone(),
                replaces: vec![address],
                state: RollingStepState::Waiting,
                started_at: None,
                finished_at: None,
                instance: None,
                detail: None,
            }),
        }
    }
    if steps.is_empty() {
        return Err(format!(
            "{stable} has no running instance to replace; a rolling release replaces running instances"
        ));
    }
    Ok(RollingProgress { ready_timeout_seconds: config.ready_timeout_seconds, steps, rolling_back: false })
}

/// The target's share by healthy instances, counting the stable ones on `leaving` as gone.
pub fn share(instances: &[InstanceFacts], target: &str, stable: &str, leaving: &str) -> u8 {
    let new = instances.iter().filter(|i| i.healthy && i.version == target).count();
    let old = instances.iter().filter(|i| i.healthy && i.version == stable && i.node != leaving).count();
    match (new, old) {
        (0, _) => 0,
        (_, 0) => 100,
        (new, old) => u8::try_from((new * 100 + (new + old) / 2) / (new + old)).unwrap_or(100),
    }
}

/// What the controller found for the current step.
enum Found {
    /// The deployer started the new instance.
    Started,
    /// The new instance is healthy at this address: give it its share, stop the old one.
    Healthy(String),
    /// The old instance on the node stopped.
    Stopped,
    /// Every node runs the target.
    AllReplaced,
    /// The step failed, in words.
    Failed(String),
}

/// A plan for `found` at step `index` (ignored for `AllReplaced`). Rolling forward the steps
/// put the target on each node; rolling back they put the stable version back.
fn decide(stored: &StoredRelease, index: usize, found: Found, instances: &[InstanceFacts], now: DateTime<Utc>) -> Plan {
    let release = &stored.release;
    let (target, stable) = (release.target_version.as_str(), release.stable_version.as_str());
    let mut after = stored.clone();
    let progress = after.release.rolling.get_or_insert_with(|| RollingProgress {
        ready_timeout_seconds: 0,
        steps: vec![],
        rolling_back: false,
    });
    let back = progress.rolling_back;
    // The version each step starts, and the one it stops.
    let (new, old) = if back { (stable, target) } else { (target, stable) };
    let (total, label) = (progress.steps.len(), if back { "rollback step" } else { "step" });
    let node = progress.steps.get(index).map(|s| s.node.clone()).unwrap_or_default();
    // The target's share after this step: by healthy instances rolling forward; rolling back,
    // none as soon as the stable version serves anywhere.
    let target_percent = |leaving: &str| match back {
        false => share(instances, target, stable, leaving),
        true if instances.iter().any(|i| i.healthy && i.version == stable) => 0,
        true => release.current_percent,
    };
    let mut weights = None;
    let mut new_stable = None;
    let summary = match found {
        Found::Started => {
            let step = &mut progress.steps[index];
            step.state = RollingStepState::Starting;
            step.started_at = Some(now);
            format!(
                "{label} {} of {total}: started {new} on {node}; waiting up to {} s for it to be healthy",
                index + 1,
                progress.ready_timeout_seconds
            )
        }
        Found::Healthy(address) => {
            let step = &mut progress.steps[index];
            step.state = RollingStepState::Draining;
            step.instance = Some(address.clone());
            let percent = target_percent(&node);
            after.release.current_percent = percent;
            weights = Some(split(target, stable, percent));
            format!(
                "{label} {} of {total}: {new} on {node} ({address}) is healthy; {target} {percent} %, {stable} {} %; stopping {old} there",
                index + 1,
                100 - percent
            )
        }
        Found::Stopped => {
            let step = &mut progress.steps[index];
            step.state = RollingStepState::Replaced;
            step.finished_at = Some(now);
            let percent = target_percent(&node);
            after.release.current_percent = percent;
            weights = Some(split(target, stable, percent));
            format!("{label} {} of {total}: {old} on {node} stopped; {target} {percent} %", index + 1)
        }
        Found::AllReplaced if back => {
            let nodes: Vec<&str> = progress.steps.iter().map(|s| s.node.as_str()).collect();
            after.release.state = ReleaseState::RolledBack;
            after.release.current_percent = 0;
            after.release.finished_at = Some(now);
            after.release.status_reason = Some(format!("rolled back: {stable} runs again on {}", nodes.join(", ")));
            weights = Some(split(target, stable, 0));
            new_stable = Some(stable.to_owned());
            format!("rolled back: {stable} back on {total} node(s), 100 %")
        }
        Found::AllReplaced => {
            after.release.state = ReleaseState::Completed;
            after.release.current_percent = 100;
            after.release.finished_at = Some(now);
            after.release.status_reason = Some(format!("all {total} node(s) run {target}: the stable version now"));
            weights = Some(split(target, stable, 100));
            new_stable = Some(target.to_owned());
            format!("all {total} node(s) replaced: {target} 100 %, the stable version now")
        }
        Found::Failed(why) => {
            let step = &mut progress.steps[index];
            step.state = RollingStepState::Failed;
            step.finished_at = Some(now);
            step.detail = Some(why.clone());
            let done: Vec<&str> = progress
                .steps
                .iter()
                .filter(|s| s.state == RollingStepState::Replaced)
                .map(|s| s.node.as_str())
                .collect();
            let still: Vec<&str> =
                progress.steps[index..].iter().flat_map(|s| s.replaces.iter().map(String::as_str)).collect();
            let report = format!(
                "{} at {label} {} of {total} ({node}): {why}. {} so far: {}. {old} still runs on {}; traffic left as it was ({target} {} %)",
                if back { "the rollback stopped" } else { "stopped" },
                index + 1,
                if back { "Restored" } else { "Replaced" },
                if done.is_empty() { "none".to_owned() } else { done.join(", ") },
                if still.is_empty() { "no address recorded".to_owned() } else { still.join(", ") },
                release.current_percent
            );
            after.release.state = ReleaseState::Failed;
            after.release.finished_at = Some(now);
            after.release.status_reason = Some(report.clone());
            report
        }
    };
    after.release.allowed_actions =
        super::transitions::allowed(release.strategy, after.release.state).into_iter().map(str::to_owned).collect();
    Plan { after, weights, new_stable, summary }
}

/// The history/audit name of a controller step.
fn action_name(found: &Found) -> &'static str {
    match found {
        Found::Started => "rolling_started",
        Found::Healthy(_) => "rolling_healthy",
        Found::Stopped => "rolling_replaced",
        Found::AllReplaced => "rolling_completed",
        Found::Failed(_) => "rolling_failed",
    }
}

/// One round over the progressing rolling releases.
pub async fn tick(releases: &Releases) -> Result<(), ReleaseError> {
    let ids = store::rolling_ids(&releases.db).await?;
    let Some(deployer) = releases.deployer.clone() else {
        if !ids.is_empty() {
            tracing::warn!(releases = ?ids, "rolling releases wait: this serve has no --deployer-url");
        }
        return Ok(());
    };
    for id in ids {
        if let Err(error) = releases.roll(id, deployer.as_ref()).await {
            tracing::warn!(release = id, %error, "a rolling step could not be carried out; trying again");
        }
    }
    Ok(())
}

impl Releases {
    /// Moves one rolling release on by one step, if its current step can move.
    async fn roll(&self, id: i64, deployer: &dyn Deployer) -> Result<(), ReleaseError> {
        let Some(stored) = store::load(&self.db, id).await? else { return Ok(()) };
        let release = &stored.release;
        let Some(progress) = release.rolling.clone() else { return Ok(()) };
        let Some((index, step)) = progress.current() else {
            return self.record_roll(id, &progress, 0, Found::AllReplaced).await;
        };
        let placement = |version: &str| Placement {
            service: release.service.clone(),
            version: version.to_owned(),
            node: step.node.clone(),
        };
        // Rolling back, the steps start the stable version and stop the target.
        let (new, old) = match progress.rolling_back {
            false => (placement(&release.target_version), placement(&release.stable_version)),
            true => (placement(&release.stable_version), placement(&release.target_version)),
        };
        let found = match step.state {
            RollingStepState::Waiting => match deployer.start(&new).await {
                Ok(()) => Found::Started,
                Err(error) => Found::Failed(format!("{} could not start {new}: {error:#}", deployer.name())),
            },
            RollingStepState::Starting => {
                let instances = store::instances(&self.db, stored.service_id).await?;
                let fresh = instances.iter().find(|i| i.version == new.version && i.node == new.node);
                match fresh.filter(|i| i.healthy) {
                    Some(healthy) => Found::Healthy(format!("{}:{}", healthy.host, healthy.port)),
                    None => {
                        let waited = step.started_at.map_or(0, |at| (Utc::now() - at).num_seconds());
                        let health = match fresh {
                            Some(i) => format!(
                                "it registered as {}:{} and is {}{}",
                                i.host,
                                i.port,
                                i.health,
                                i.health_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                            ),
                            None => "it never registered".to_owned(),
                        };
                        match deployer.status(&new).await {
                            Ok(status) if !status.running => Found::Failed(format!(
                                "{new} stopped before it became healthy ({}); {health}",
                                status.detail.as_deref().unwrap_or("no detail from the deployer")
                            )),
                            _ if waited >= i64::from(progress.ready_timeout_seconds) => Found::Failed(format!(
                                "{new} was not healthy {} s after it was started; {health}",
                                progress.ready_timeout_seconds
                            )),
                            _ => return Ok(()),
                        }
                    }
                }
            }
            RollingStepState::Draining => match deployer.stop(&old).await {
                Ok(()) => Found::Stopped,
                Err(error) => {
                    Found::Failed(format!("{new} is healthy, but {} could not stop {old}: {error:#}", deployer.name()))
                }
            },
            RollingStepState::Replaced | RollingStepState::Failed => return Ok(()),
        };
        self.record_roll(id, &progress, index, found).await
    }

    /// Records a step in one transaction, if the release is still progressing as it was seen
    /// (a pause or abort in the meantime wins; the deployer's work stays, unused).
    async fn record_roll(
        &self,
        id: i64,
        seen: &RollingProgress,
        index: usize,
        found: Found,
    ) -> Result<(), ReleaseError> {
        let mut tx = self.db.begin().await?;
        let Some(stored) = store::lock(&mut tx, id).await? else { return Ok(()) };
        if stored.release.state != ReleaseState::Progressing || stored.release.rolling.as_ref() != Some(seen) {
            tracing::info!(release = id, "the rolling release changed meanwhile; this step is not recorded");
            return Ok(());
        }
        let service = stored.release.service.clone();
        let instances = store::instances(&mut *tx, stored.service_id).await?;
        let policy = traffic::store::load(&mut *tx, &service)
            .await?
            .unwrap_or_else(|| app::model::traffic::TrafficPolicy::none(&service));
        let action = action_name(&found);
        let failed = matches!(found, Found::Failed(_));
        let plan = decide(&stored, index, found, &instances, Utc::now());
        let detail = json!({ "action": action, "step": index + 1, "node": seen.steps.get(index).map(|s| &s.node) });
        let transition = Transition { action, detail, plan, reason: None, status_reason: None };
        let release = self.carry_out(&mut tx, &Who::rolling(), stored, policy, transition).await?;
        tx.commit().await?;
        if failed {
            tracing::error!(
                release = id,
                report = release.status_reason.as_deref().unwrap_or(""),
                "a rolling release failed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(version: &str, node: &str, port: i32, healthy: bool) -> InstanceFacts {
        InstanceFacts {
            id: uuid::Uuid::new_v4(),
            version: version.into(),
            host: "127.0.0.1".into(),
            port,
            node: node.into(),
            healthy,
            health: if healthy { "healthy" } else { "unhealthy" }.into(),
            health_reason: None,
            breaker_open: false,
        }
    }

    #[test]
    fn a_roll_has_one_step_per_node_of_the_stable_version_in_node_order() {
        let instances = [
            instance("v1", "east-2", 8100, true),
            instance("v2", "east-3", 8101, true),
            instance("v1", "east-1", 8100, false),
            instance("v1", "east-2", 8102, true),
        ];
        let progress = progress(&instances, "v1", RollingConfig::default()).expect("v1 runs");
        let nodes: Vec<_> = progress.steps.iter().map(|s| (s.node.as_str(), s.replaces.len())).collect();
        assert_eq!(nodes, [("east-1", 1), ("east-2", 2)]);
        assert!(progress.steps.iter().all(|s| s.state == RollingStepState::Waiting));
        assert_eq!(progress.current().map(|(i, _)| i), Some(0));
        let refusal = super::progress(&instances, "v9", RollingConfig::default()).expect_err("v9 runs nowhere");
        assert!(refusal.contains("v9 has no running instance"), "{refusal}");
    }

    #[test]
    fn the_share_follows_healthy_instances_with_the_leaving_node_counted_out() {
        let mut instances = vec![
            instance("v1", "east-1", 8100, true),
            instance("v1", "east-2", 8100, true),
            instance("v2", "east-3", 8101, false),
        ];
        assert_eq!(share(&instances, "v2", "v1", "east-1"), 0, "no healthy target: nothing moves");
        instances.push(instance("v2", "east-1", 8101, true));
        assert_eq!(share(&instances, "v2", "v1", "east-1"), 50, "1 new vs 1 old left");
        instances[2].healthy = true;
        assert_eq!(share(&instances, "v2", "v1", "east-1"), 67, "2 new vs 1 old, rounded");
        assert_eq!(share(&instances, "v2", "v1", "east-9"), 50, "nothing leaves: 2 vs 2");
        instances[1].healthy = false;
        assert_eq!(share(&instances, "v2", "v1", "east-1"), 100, "no old one left healthy");
    }
}
