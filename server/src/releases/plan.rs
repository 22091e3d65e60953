//! What an action does to a release and its traffic, decided without touching anything: the
//! action itself runs it inside its transaction, the confirmation preview shows it.

use app::model::{
    releases::{ReleaseAction, ReleaseState, RollingProgress, RollingStep, RollingStepState, Strategy},
    traffic::VersionWeight,
};
use chrono::{DateTime, Utc};

use super::{
    smoke::SmokeReport,
    store::{InstanceFacts, StoredRelease},
    transitions::{self, To},
};

/// What the action's decision depends on besides the release.
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub instances: &'a [InstanceFacts],
    /// The service's stable version now.
    pub service_stable: Option<&'a str>,
    /// Why a rollback to the release's stable version would break the schema, if it would.
    pub contract_refusal: Option<String>,
    /// The smoke run (for `run_smoke_checks`, once run).
    pub smoke: Option<&'a SmokeReport>,
    /// The service's release in progress, if any (a completed release rolling back becomes
    /// active again, so it must be the only one).
    pub active_release: Option<i64>,
}

/// The outcome of an action.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The release afterwards.
    pub after: StoredRelease,
    /// The new weights (target first), when traffic changes.
    pub weights: Option<Vec<VersionWeight>>,
    /// The version that becomes the service's stable one, when the release ends.
    pub new_stable: Option<String>,
    /// What happened, in words.
    pub summary: String,
}

/// The weights with `percent` on the target and the rest on the stable version; the target
/// comes first, so a sticky user's bucket keeps its version as the target's share grows.
pub fn split(target: &str, stable: &str, percent: u8) -> Vec<VersionWeight> {
    vec![
        VersionWeight { version: target.to_owned(), percent },
        VersionWeight { version: stable.to_owned(), percent: 100 - percent },
    ]
}

fn healthy_of(instances: &[InstanceFacts], version: &str) -> usize {
    instances.iter().filter(|i| i.version == version && i.healthy).count()
}

/// The steps that undo a roll: every node it touched (in reverse order), or, when a rollback
/// itself stopped, the nodes it hadn't restored yet. Each puts the stable version back there
/// and then stops the target.
fn undo_steps(progress: &RollingProgress) -> Vec<RollingStep> {
    let undo = |step: &RollingStep| match progress.rolling_back {
        true => step.state != RollingStepState::Replaced,
        false => step.state != RollingStepState::Waiting,
    };
    let mut steps: Vec<RollingStep> = progress
        .steps
        .iter()
        .filter(|step| undo(step))
        .map(|step| RollingStep {
            node: step.node.clone(),
            replaces: if progress.rolling_back {
                step.replaces.clone()
            } else {
                step.instance.iter().cloned().collect()
            },
            state: RollingStepState::Waiting,
            started_at: None,
            finished_at: None,
            instance: None,
            detail: None,
        })
        .collect();
    if !progress.rolling_back {
        steps.reverse();
    }
    steps
}

/// Decides `action` on `stored`, or says why it can't run now.
pub fn plan(stored: &StoredRelease, action: &ReleaseAction, facts: &Facts) -> Result<Plan, String> {
    let release = &stored.release;
    let to = transitions::next(release.strategy, release.state, action.name())?;
    let mut after = stored.clone();
    let (target, stable) = (release.target_version.as_str(), release.stable_version.as_str());
    let mut weights = None;
    let mut new_stable = None;
    let mut finish = |after: &mut StoredRelease, state: ReleaseState, percent: u8, stable_now: &str, why: String| {
        after.release.state = state;
        after.release.current_percent = percent;
        after.release.step_ends_at = None;
        after.release.finished_at = Some(facts.now);
        after.release.status_reason = Some(why);
        after.held_since = None;
        new_stable = Some(stable_now.to_owned());
    };
    let hold_of = |index: u32| release.steps.get(index as usize).map_or(0, |s| i64::from(s.hold_seconds));
    let summary = match (action, to) {
        (ReleaseAction::SetPercent { percent }, To::ByPercent { below_100 }) => {
            let percent = *percent;
            if percent > 100 {
                return Err(format!("set_percent: {percent} % is more than 100 %"));
            }
            let jump = percent.abs_diff(release.current_percent);
            if jump > release.max_jump {
                return Err(format!(
                    "set_percent: {} % → {percent} % is a jump of {jump} points; this release allows at most {} at once (max_jump) — go in smaller steps",
                    release.current_percent, release.max_jump
                ));
            }
            if percent > 0 && healthy_of(facts.instances, target) == 0 {
                return Err(format!("set_percent: {target} has no healthy instance to send {percent} % to"));
            }
            after.release.current_percent = percent;
            after.release.state = if percent == 100 { ReleaseState::AwaitingPromotion } else { below_100 };
            // The step is the last one at or below the new share; its hold starts again.
            let reached = release.steps.iter().filter(|s| s.percent <= percent).count();
            after.release.step_index = u32::try_from(reached.saturating_sub(1)).unwrap_or(0);
            after.release.step_ends_at = (after.release.state == ReleaseState::Progressing)
                .then(|| facts.now + chrono::Duration::seconds(hold_of(after.release.step_index)));
            weights = Some(split(target, stable, percent));
            format!("{target} set by hand from {} % to {percent} %", release.current_percent)
        }
        (ReleaseAction::NextStep, To::ByStep) => {
            let next = release.step_index + 1;
            match release.steps.get(next as usize) {
                Some(step) => {
                    after.release.step_index = next;
                    after.release.current_percent = step.percent;
                    after.release.state =
                        if step.percent == 100 { ReleaseState::AwaitingPromotion } else { ReleaseState::Progressing };
                    after.release.step_ends_at = (after.release.state == ReleaseState::Progressing)
                        .then(|| facts.now + chrono::Duration::seconds(i64::from(step.hold_seconds)));
                    after.held_since = None;
                    weights = Some(split(target, stable, step.percent));
                    format!(
                        "{target} to step {} of {}: {} % → {} %",
                        next + 1,
                        release.steps.len(),
                        release.current_percent,
                        step.percent
                    )
                }
                None => {
                    after.release.state = ReleaseState::AwaitingPromotion;
                    after.release.step_ends_at = None;
                    format!("{target} passed its last step at {} %: awaiting promotion", release.current_percent)
                }
            }
        }
        (ReleaseAction::Pause, To::State(state)) => {
            after.release.state = state;
            after.release.step_ends_at = None;
            format!("paused at {} % of {target}", release.current_percent)
        }
        (ReleaseAction::Resume, To::State(state)) => {
            after.release.state = state;
            match &mut after.release.rolling {
                // The instance being started gets its whole ready time again.
                Some(progress) => {
                    for step in progress.steps.iter_mut().filter(|s| s.state == RollingStepState::Starting) {
                        step.started_at = Some(facts.now);
                    }
                }
                None => {
                    after.release.step_ends_at =
                        Some(facts.now + chrono::Duration::seconds(hold_of(release.step_index)));
                }
            }
            format!("resumed at {} % of {target}", release.current_percent)
        }
        (ReleaseAction::Promote, To::State(state)) => {
            if healthy_of(facts.instances, target) == 0 {
                return Err(format!("promote: {target} has no healthy instance to take all the traffic"));
            }
            weights = Some(split(target, stable, 100));
            finish(&mut after, state, 100, target, format!("promoted: {target} is the stable version"));
            format!("{target} promoted: 100 %, the stable version now")
        }
        (ReleaseAction::Abort, To::State(state)) => {
            weights = Some(split(target, stable, 0));
            finish(&mut after, state, 0, stable, format!("aborted: all traffic back on {stable}"));
            format!("aborted: {target} {} % → 0 %, all traffic back on {stable}", release.current_percent)
        }
        (ReleaseAction::Rollback, To::State(state)) => {
            if let Some(refusal) = &facts.contract_refusal {
                return Err(refusal.clone());
            }
            if release.state == ReleaseState::Completed && facts.service_stable != Some(target) {
                return Err(format!(
                    "rollback: {} is no longer the stable version of {} ({} is); start a rollback release instead",
                    target,
                    release.service,
                    facts.service_stable.unwrap_or("none known")
                ));
            }
            if healthy_of(facts.instances, stable) == 0 {
                let redeploy = if release.strategy == Strategy::Rolling {
                    format!("; start a rolling release of {stable} to deploy it again")
                } else {
                    String::new()
                };
                return Err(format!(
                    "rollback: {stable} has no healthy instance left to take the traffic back{redeploy}"
                ));
            }
            weights = Some(split(target, stable, 0));
            finish(&mut after, state, 0, stable, format!("rolled back to {stable}"));
            format!("rolled back: {target} {} % → 0 %, all traffic back on {stable}", release.current_percent)
        }
        (ReleaseAction::Rollback, To::RollingBack) => {
            if let Some(refusal) = &facts.contract_refusal {
                return Err(refusal.clone());
            }
            if release.state == ReleaseState::Completed && facts.service_stable != Some(target) {
                return Err(format!(
                    "rollback: {target} is no longer the stable version of {} ({} is); start a rolling release instead",
                    release.service,
                    facts.service_stable.unwrap_or("none known")
                ));
            }
            if let Some(other) = facts.active_release.filter(|other| *other != release.id) {
                return Err(format!(
                    "rollback: release #{other} of {} is in progress; finish or abort it first",
                    release.service
                ));
            }
            let Some(progress) = &release.rolling else {
                return Err("rollback: this rolling release has no progress recorded".to_owned());
            };
            if progress.rolling_back && release.state == ReleaseState::Progressing {
                return Err(format!("rollback: {} is already rolling back; wait for it, or pause it", release.service));
            }
            let steps = undo_steps(progress);
            let stable_serves = healthy_of(facts.instances, stable) > 0;
            if steps.is_empty() {
                if !stable_serves {
                    return Err(format!("rollback: {stable} has no healthy instance left to take the traffic back"));
                }
                weights = Some(split(target, stable, 0));
                finish(&mut after, ReleaseState::RolledBack, 0, stable, format!("rolled back to {stable}"));
                format!("rolled back before any node was replaced: all traffic back on {stable}")
            } else {
                let nodes: Vec<&str> = steps.iter().map(|s| s.node.as_str()).collect();
                let nodes = nodes.join(", ");
                if stable_serves {
                    weights = Some(split(target, stable, 0));
                    after.release.current_percent = 0;
                }
                after.release.state = ReleaseState::Progressing;
                after.release.finished_at = None;
                after.finished_by = None;
                after.release.status_reason =
                    Some(format!("rolling back: {stable} goes back onto {nodes}, one node at a time"));
                after.release.rolling = Some(RollingProgress {
                    ready_timeout_seconds: progress.ready_timeout_seconds,
                    steps,
                    rolling_back: true,
                });
                let traffic = if stable_serves {
                    format!("all traffic on {stable} now")
                } else {
                    format!("traffic stays until {stable} is healthy again")
                };
                format!("rolling back: {traffic}; {stable} goes back onto {nodes} node by node")
            }
        }
        (ReleaseAction::RunSmokeChecks, To::BySmokeOutcome) => {
            let green = healthy_of(facts.instances, target);
            if green == 0 {
                return Err(format!("run_smoke_checks: {target} (green) has no healthy instance to check"));
            }
            match facts.smoke {
                Some(report) => {
                    after.smoke_passed = Some(report.passed);
                    after.release.state = if report.passed { ReleaseState::Ready } else { ReleaseState::SmokeFailed };
                    after.release.status_reason = Some(report.summary.clone());
                    report.summary.clone()
                }
                None => format!(
                    "runs {} smoke check(s) against each of {green} healthy {target} instance(s), directly",
                    release.smoke_checks.len()
                ),
            }
        }
        (ReleaseAction::Switch, To::State(state)) => {
            if stored.smoke_passed != Some(true) {
                let last = match stored.smoke_passed {
                    None => "they have not run yet",
                    Some(_) => "the last run failed",
                };
                return Err(format!("switch needs passing smoke checks ({last}): run_smoke_checks first"));
            }
            if healthy_of(facts.instances, target) == 0 {
                return Err(format!("switch: {target} (green) has no healthy instance to take the traffic"));
            }
            after.release.state = state;
            after.release.current_percent = 100;
            weights = Some(split(target, stable, 100));
            format!("switched: 100 % to {target} (green), {stable} (blue) still running")
        }
        (ReleaseAction::SwitchBack, To::State(state)) => {
            if healthy_of(facts.instances, stable) == 0 {
                return Err(format!(
                    "switch_back: {stable} (blue) has no healthy instance left; it can't take the traffic back"
                ));
            }
            after.release.state = state;
            after.release.current_percent = 0;
            weights = Some(split(target, stable, 0));
            format!("switched back: 100 % to {stable} (blue)")
        }
        (action, to) => return Err(format!("{} has no effect defined for {to:?}", action.name())),
    };
    after.release.allowed_actions =
        transitions::allowed(release.strategy, after.release.state).into_iter().map(str::to_owned).collect();
    Ok(Plan { after, weights, new_stable, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(node: &str, state: RollingStepState, instance: Option<&str>) -> RollingStep {
        RollingStep {
            node: node.into(),
            replaces: vec![format!("{node}:old")],
            state,
            started_at: None,
            finished_at: None,
            instance: instance.map(str::to_owned),
            detail: None,
        }
    }

    #[test]
    fn undoing_a_roll_revisits_the_touched_nodes_last_first_and_a_stopped_rollback_resumes_where_it_stopped() {
        use RollingStepState::*;
        let forward = RollingProgress {
            ready_timeout_seconds: 60,
            steps: vec![
                step("east-1", Replaced, Some("east-1:new")),
                step("east-2", Failed, None),
                step("east-3", Waiting, None),
            ],
            rolling_back: false,
        };
        let undo = undo_steps(&forward);
        let nodes: Vec<_> = undo.iter().map(|s| (s.node.as_str(), s.replaces.clone(), s.state)).collect();
        assert_eq!(nodes, [("east-2", vec![], Waiting), ("east-1", vec!["east-1:new".to_owned()], Waiting)]);

        let stopped_rollback = RollingProgress {
            rolling_back: true,
            steps: vec![step("east-2", Replaced, None), step("east-1", Failed, None), step("east-0", Waiting, None)],
            ..forward
        };
        let again: Vec<_> = undo_steps(&stopped_rollback).into_iter().map(|s| (s.node, s.replaces)).collect();
        assert_eq!(
            again,
            [
                ("east-1".to_owned(), vec!["east-1:old".to_owned()]),
                ("east-0".to_owned(), vec!["east-0:old".to_owned()])
            ]
        );
    }
}
