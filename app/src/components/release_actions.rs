//! Release vocabulary for people: each state as glyph + word (never colour alone), each action
//! as a button that says what it will do ("Send 25 % to v2"), and the action names of the API
//! parsed back into [`ReleaseAction`] for forms.

use crate::components::status::Status;
use crate::model::releases::{Release, ReleaseAction, ReleaseState, Strategy, VerdictOutcome};
use crate::model::traffic::VersionWeight;

/// The glyph-and-colour family of a state and its word.
pub fn state_mark(state: ReleaseState) -> (Status, &'static str) {
    match state {
        ReleaseState::Progressing => (Status::Healthy, "progressing"),
        ReleaseState::Paused => (Status::Degraded, "paused"),
        ReleaseState::AwaitingPromotion => (Status::Degraded, "awaiting promotion"),
        ReleaseState::Ready => (Status::Unknown, "ready (no traffic)"),
        ReleaseState::SmokeFailed => (Status::Down, "smoke checks failed"),
        ReleaseState::Switched => (Status::Healthy, "switched"),
        ReleaseState::Completed => (Status::Healthy, "completed"),
        ReleaseState::Aborted => (Status::Degraded, "aborted"),
        ReleaseState::RolledBack => (Status::Down, "rolled back"),
        ReleaseState::Failed => (Status::Down, "failed"),
    }
}

pub fn strategy_label(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Canary => "canary",
        Strategy::BlueGreen => "blue-green",
        Strategy::Rolling => "rolling",
        Strategy::Rollback => "rollback",
    }
}

pub fn verdict_mark(outcome: VerdictOutcome) -> (Status, &'static str) {
    match outcome {
        VerdictOutcome::Pass => (Status::Healthy, "pass"),
        VerdictOutcome::Fail => (Status::Down, "fail"),
        VerdictOutcome::Inconclusive => (Status::Unknown, "too little data"),
    }
}

/// An API action name (`set_percent`, `promote`, …) as an action; `set_percent` needs `percent`.
pub fn parse_action(name: &str, percent: Option<u8>) -> Result<ReleaseAction, String> {
    Ok(match name {
        "set_percent" => match percent {
            Some(percent) if percent <= 100 => ReleaseAction::SetPercent { percent },
            Some(percent) => return Err(format!("percent: 0 to 100, not {percent}")),
            None => return Err("set_percent needs a percent (0 to 100)".into()),
        },
        "next_step" => ReleaseAction::NextStep,
        "pause" => ReleaseAction::Pause,
        "resume" => ReleaseAction::Resume,
        "promote" => ReleaseAction::Promote,
        "abort" => ReleaseAction::Abort,
        "run_smoke_checks" => ReleaseAction::RunSmokeChecks,
        "switch" => ReleaseAction::Switch,
        "switch_back" => ReleaseAction::SwitchBack,
        "rollback" => ReleaseAction::Rollback,
        other => {
            return Err(format!(
                "unknown action {other:?}: one of set_percent, next_step, pause, resume, promote, abort, \
                 run_smoke_checks, switch, switch_back, rollback"
            ));
        }
    })
}

/// What the button says: the effect, not the verb alone.
pub fn action_label(action: &ReleaseAction, release: &Release) -> String {
    let (target, stable) = (&release.target_version, &release.stable_version);
    match action {
        ReleaseAction::SetPercent { percent } => format!("Send {percent} % to {target}"),
        ReleaseAction::NextStep => match release.steps.get(release.step_index as usize + 1) {
            Some(step) => format!("Next step: {} % to {target}", step.percent),
            None => "Next step".to_owned(),
        },
        ReleaseAction::Pause => "Pause (hold the current split)".to_owned(),
        ReleaseAction::Resume => "Resume the steps".to_owned(),
        ReleaseAction::Promote => format!("Promote {target} to 100 %"),
        ReleaseAction::Abort => format!("Abort: all traffic back to {stable}"),
        ReleaseAction::RunSmokeChecks => format!("Run smoke checks against {target}"),
        ReleaseAction::Switch => format!("Switch 100 % to {target}"),
        ReleaseAction::SwitchBack => format!("Switch back to {stable}"),
        ReleaseAction::Rollback => format!("Roll back to {stable}"),
    }
}

/// Actions that take traffic away from what is running: styled as dangerous.
pub fn is_dangerous(action: &ReleaseAction) -> bool {
    matches!(action, ReleaseAction::Abort | ReleaseAction::Rollback | ReleaseAction::Switch | ReleaseAction::SwitchBack)
}

/// "v1 90 % · v2 10 %", or "no policy: every healthy instance shares" when empty.
pub fn describe_weights(weights: &[VersionWeight]) -> String {
    if weights.is_empty() {
        return "no policy: every healthy instance of any version shares the traffic".to_owned();
    }
    weights.iter().map(|w| format!("{} {} %", w.version, w.percent)).collect::<Vec<_>>().join(" · ")
}

/// A share 0–1 as "2.4 %", or "—" when unknown (no requests is not zero errors).
/// A verdict's numbers in one line: "5xx canary 48.2 % vs stable 0.1 % (max 5.0 %) · p99 canary
/// 120 ms vs stable 80 ms (max ×1.50) · n = 310 (stable 2900)" — the release views and the CLI.
pub fn verdict_numbers(v: &crate::model::releases::Verdict) -> String {
    format!(
        "5xx canary {} vs stable {} (max {}) · p99 canary {} vs stable {} (max ×{:.2}) · n = {} (stable {})",
        percent_text(v.canary_error_rate),
        percent_text(v.stable_error_rate),
        percent_text(Some(v.max_error_rate)),
        ms_text(v.canary_p99_ms),
        ms_text(v.stable_p99_ms),
        v.max_p99_ratio,
        v.canary_samples,
        v.stable_samples,
    )
}

pub fn percent_text(share: Option<f64>) -> String {
    share.map_or_else(|| "—".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

pub fn ms_text(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms:.0} ms"))
}

/// "4:05" to the end of a step; "due" once passed.
pub fn countdown_text(seconds_left: i64) -> String {
    if seconds_left <= 0 {
        return "due".to_owned();
    }
    let (h, m, s) = (seconds_left / 3600, seconds_left % 3600 / 60, seconds_left % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_parses_back_to_its_action() {
        let all = [
            ReleaseAction::SetPercent { percent: 25 },
            ReleaseAction::NextStep,
            ReleaseAction::Pause,
            ReleaseAction::Resume,
            ReleaseAction::Promote,
            ReleaseAction::Abort,
            ReleaseAction::RunSmokeChecks,
            ReleaseAction::Switch,
            ReleaseAction::SwitchBack,
            ReleaseAction::Rollback,
        ];
        for action in all {
            assert_eq!(parse_action(action.name(), Some(25)), Ok(action.clone()));
        }
    }

    #[test]
    fn set_percent_without_a_percent_or_above_100_is_refused_with_the_range() {
        assert!(parse_action("set_percent", None).expect_err("refused").contains("0 to 100"));
        assert!(parse_action("set_percent", Some(101)).expect_err("refused").contains("0 to 100"));
        assert!(parse_action("launch", None).expect_err("refused").contains("set_percent"));
    }

    #[test]
    fn countdowns_read_as_minutes_and_seconds_and_say_due_when_passed() {
        assert_eq!(countdown_text(245), "4:05");
        assert_eq!(countdown_text(3725), "1:02:05");
        assert_eq!(countdown_text(0), "due");
    }

    #[test]
    fn unknown_rates_are_a_dash_not_zero() {
        assert_eq!(percent_text(None), "—");
        assert_eq!(percent_text(Some(0.0)), "0.0 %");
        assert_eq!(ms_text(Some(182.4)), "182 ms");
    }

    #[test]
    fn no_weights_is_described_as_no_policy_not_as_an_empty_split() {
        assert!(describe_weights(&[]).starts_with("no policy"));
        let split =
            [VersionWeight { version: "v1".into(), percent: 90 }, VersionWeight { version: "v2".into(), percent: 10 }];
        assert_eq!(describe_weights(&split), "v1 90 % · v2 10 %");
    }
}
