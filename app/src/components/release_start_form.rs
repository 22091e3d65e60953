//! The start form's data as typed and its checks: what becomes the API's [`StartRelease`], and
//! the split right after the start that the confirmation shows.

use serde::{Deserialize, Serialize};

use crate::model::releases::{AnalysisConfig, CanaryStep, RollingConfig, SmokeCheck, StartRelease, Strategy};
use crate::model::traffic::{TrafficPolicy, VersionWeight};

/// Step presets offered (the first is the default).
pub const STEP_PRESETS: [&str; 3] = ["1, 5, 25, 50, 100", "10, 50, 100", "5, 10, 20, 40, 60, 80, 100"];

/// The form as typed; [`StartForm::to_request`] turns it into the API's [`StartRelease`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartForm {
    pub strategy: Strategy,
    pub target_version: String,
    pub expected_revision: i64,
    /// Canary shares, comma separated, rising, ending at 100.
    pub steps: String,
    pub hold_seconds: u32,
    pub max_jump: u8,
    /// The canary's largest 5xx share, in percent.
    pub max_error_percent: f64,
    pub max_p99_ratio: f64,
    pub min_samples: u32,
    pub interval_seconds: u32,
    pub breaches_to_rollback: u32,
    /// Blue-green: one smoke check against green directly (empty path: none).
    pub smoke_path: String,
    pub smoke_status: u16,
    /// Rolling: how long each new instance may take to become healthy.
    pub ready_timeout_seconds: u32,
    pub reason: String,
}

impl StartForm {
    pub fn new(target_version: String, expected_revision: i64) -> Self {
        Self {
            strategy: Strategy::Canary,
            target_version,
            expected_revision,
            steps: STEP_PRESETS[0].to_owned(),
            hold_seconds: 60,
            max_jump: 50,
            max_error_percent: 5.0,
            max_p99_ratio: 1.5,
            min_samples: 50,
            interval_seconds: 30,
            breaches_to_rollback: 3,
            smoke_path: "/".to_owned(),
            smoke_status: 200,
            ready_timeout_seconds: RollingConfig::default().ready_timeout_seconds,
            reason: String::new(),
        }
    }

    /// "1, 5, 25, 50, 100" → steps; they must rise and end at 100.
    pub fn parse_steps(&self) -> Result<Vec<CanaryStep>, String> {
        let mut steps = Vec::new();
        for part in self.steps.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let percent: u8 = part
                .trim_end_matches('%')
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| format!("steps: {part:?} is not a share from 1 to 100"))?;
            if steps.last().is_some_and(|s: &CanaryStep| s.percent >= percent) {
                return Err(format!("steps: each step must be larger than the one before ({part} is not)"));
            }
            steps.push(CanaryStep { percent, hold_seconds: self.hold_seconds });
        }
        match steps.last() {
            Some(last) if last.percent == 100 => Ok(steps),
            Some(_) => Err("steps: the last step must be 100 (the canary takes all traffic before promotion)".into()),
            None => Err("steps: at least one, e.g. 1, 5, 25, 50, 100".into()),
        }
    }

    pub fn to_request(&self) -> Result<StartRelease, String> {
        if self.target_version.trim().is_empty() && self.strategy != Strategy::Rollback {
            return Err("target version: pick the version to release".into());
        }
        if !(0.0..=100.0).contains(&self.max_error_percent) {
            return Err("max error rate: a percentage from 0 to 100".into());
        }
        if self.max_p99_ratio < 1.0 {
            return Err("max p99 ratio: 1.0 or more (1.5 = the canary may be 50 % slower)".into());
        }
        if self.interval_seconds == 0 || self.breaches_to_rollback == 0 || self.max_jump == 0 {
            return Err("interval, breaches and max jump: at least 1".into());
        }
        let canary = self.strategy == Strategy::Canary;
        let smoke_path = self.smoke_path.trim();
        let smoke_checks = match (self.strategy, smoke_path) {
            (Strategy::BlueGreen, "") => Vec::new(),
            (Strategy::BlueGreen, path) if !path.starts_with('/') => {
                return Err(format!("smoke check path {path:?}: start with '/', e.g. /healthz"));
            }
            (Strategy::BlueGreen, path) if !(100..=599).contains(&self.smoke_status) => {
                return Err(format!("smoke check on {path}: expected status 100–599, not {}", self.smoke_status));
            }
            (Strategy::BlueGreen, path) => vec![SmokeCheck {
                method: None,
                path: path.to_owned(),
                expect_status: self.smoke_status,
                expect_body_contains: None,
            }],
            _ => Vec::new(),
        };
        let rolling = self.strategy == Strategy::Rolling;
        if rolling && !(10..=3600).contains(&self.ready_timeout_seconds) {
            return Err(format!("ready time: 10–3600 seconds per instance, not {}", self.ready_timeout_seconds));
        }
        let reason = self.reason.trim();
        Ok(StartRelease {
            strategy: self.strategy,
            target_version: self.target_version.trim().to_owned(),
            expected_revision: self.expected_revision,
            steps: if canary { Some(self.parse_steps()?) } else { None },
            max_jump: canary.then_some(self.max_jump.min(100)),
            analysis: canary.then(|| AnalysisConfig {
                interval_seconds: self.interval_seconds,
                max_error_rate: self.max_error_percent / 100.0,
                max_p99_ratio: self.max_p99_ratio,
                min_samples: self.min_samples,
                breaches_to_rollback: self.breaches_to_rollback,
            }),
            smoke_checks,
            schema: None,
            rolling: rolling.then_some(RollingConfig { ready_timeout_seconds: self.ready_timeout_seconds }),
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
        })
    }

    /// The split right after the start, for the confirmation (the server decides in the end).
    pub fn weights_after(&self, policy: &TrafficPolicy, stable: &str) -> Vec<VersionWeight> {
        let first = match self.strategy {
            Strategy::Canary => self.parse_steps().ok().and_then(|s| s.first().map(|s| s.percent)).unwrap_or(0),
            Strategy::BlueGreen | Strategy::Rolling => 0,
            Strategy::Rollback => return policy.weights.clone(),
        };
        if first == 0 {
            return if policy.weights.is_empty() {
                vec![VersionWeight { version: stable.to_owned(), percent: 100 }]
            } else {
                policy.weights.clone()
            };
        }
        vec![
            VersionWeight { version: stable.to_owned(), percent: 100 - first },
            VersionWeight { version: self.target_version.clone(), percent: first },
        ]
    }
}

/// The version with the largest share now, or (no policy) the first that is not the target.
pub fn stable_version(policy: &TrafficPolicy, versions: &[String], target: &str) -> String {
    policy
        .weights
        .iter()
        .max_by_key(|w| w.percent)
        .map(|w| w.version.clone())
        .or_else(|| versions.iter().find(|v| v.as_str() != target).cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(steps: &str) -> StartForm {
        StartForm { steps: steps.into(), ..StartForm::new("v2".into(), 3) }
    }

    #[test]
    fn the_default_form_makes_a_canary_with_five_steps_and_thresholds() {
        let request = form(STEP_PRESETS[0]).to_request().expect("defaults are valid");
        let steps: Vec<u8> = request.steps.expect("canary").iter().map(|s| s.percent).collect();
        assert_eq!(steps, [1, 5, 25, 50, 100]);
        assert_eq!(request.analysis.expect("canary").max_error_rate, 0.05);
        assert_eq!(request.expected_revision, 3);
    }

    #[test]
    fn steps_that_fall_or_stop_short_of_100_are_refused_with_why() {
        assert!(form("5, 1, 100").to_request().expect_err("refused").contains("larger"));
        assert!(form("1, 5, 50").to_request().expect_err("refused").contains("100"));
        assert!(form("0, 100").to_request().expect_err("refused").contains("1 to 100"));
    }

    #[test]
    fn blue_green_sends_no_steps_and_its_start_gives_green_no_traffic() {
        let f = StartForm { strategy: Strategy::BlueGreen, ..form(STEP_PRESETS[0]) };
        let request = f.to_request().expect("valid");
        assert_eq!(request.steps, None);
        assert_eq!(request.smoke_checks.len(), 1, "the default smoke check: GET / → 200");
        assert_eq!(request.rolling, None);
        let bad = StartForm { smoke_path: "healthz".into(), ..f.clone() };
        assert!(bad.to_request().expect_err("refused").contains("start with '/'"));
        let policy = TrafficPolicy::none("shop");
        assert_eq!(f.weights_after(&policy, "v1"), vec![VersionWeight { version: "v1".into(), percent: 100 }]);
    }

    #[test]
    fn rolling_sends_its_ready_time_and_refuses_one_outside_10_to_3600_seconds() {
        let f = StartForm { strategy: Strategy::Rolling, ready_timeout_seconds: 45, ..form(STEP_PRESETS[0]) };
        let request = f.to_request().expect("valid");
        assert_eq!(request.rolling, Some(RollingConfig { ready_timeout_seconds: 45 }));
        assert_eq!((request.steps, request.analysis), (None, None));
        let bad = StartForm { ready_timeout_seconds: 5, ..f };
        assert!(bad.to_request().expect_err("refused").contains("10–3600"));
    }
}
