//! Releases: a change of a service's version carried out by a strategy (canary, blue-green,
//! rolling, rollback), each a state machine whose allowed transitions are listed here, so the
//! server enforces them and the UI shows only the buttons that can work. Automatic canary
//! analysis gives verdicts with their numbers; actions carry an idempotency key and the policy
//! revision the operator saw.
//!
//! REST (server/src/releases/):
//! - `GET  /api/v1/releases?service=&active=` → `Vec<Release>` (in progress first, then newest)
//! - `GET  /api/v1/releases/{id}` → `ReleaseDetail` (release, its verdict history, its actions)
//! - `POST /api/v1/services/{service}/releases` `StartRelease` → 201 `Release` (operate)
//! - `POST /api/v1/releases/{id}/actions` `ReleaseActionRequest` → `Release` (operate);
//!   header `Idempotency-Key` (a repeat with the same key returns the first answer, changes
//!   nothing); a stale `expected_revision` → 409 with body `Conflict` (the current state)
//! - `GET  /api/v1/releases/{id}/preview?action=…&percent=…` → `ActionPreview` (read): what the
//!   action would do, for the confirmation dialog
//! - `GET  /api/v1/services/{service}/traffic` → `app::model::traffic::TrafficPolicy` (read)
//! - `PUT  /api/v1/services/{service}/traffic` `TrafficChange` → `TrafficPolicy` (operate; 409
//!   `Conflict` when stale; refused while a release of the service is in progress)
//! - `GET  /api/v1/inbox` → `Vec<InboxItem>` (read): what waits for a human

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::rolling::{RollingConfig, RollingProgress, RollingStep, RollingStepState};
use super::traffic::{TrafficPolicy, VersionWeight};

/// How a release moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Step by step from a small share to 100 %, with analysis at each step.
    Canary,
    /// The new version beside the old with no traffic; smoke checks; then 100 % at once.
    BlueGreen,
    /// Instances replaced one at a time, each waited for until healthy.
    Rolling,
    /// Back to the last version that was stable, at once.
    Rollback,
}

/// Where a release stands. Terminal states: `Completed`, `Aborted`, `RolledBack`, `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Canary: at a step, waiting for its hold time (and a passing verdict) before the next.
    /// Rolling: replacing instances.
    Progressing,
    /// Stopped by a person (or by analysis short of rollback); resumes only by a person.
    Paused,
    /// Canary at 100 % of its steps, or blue-green switched: waits for a person to promote.
    AwaitingPromotion,
    /// Blue-green: green deployed, no traffic; smoke checks not yet passed.
    Ready,
    /// Blue-green: smoke checks failed; green gets no traffic.
    SmokeFailed,
    /// Blue-green: 100 % on green, blue still running (switch back is one click).
    Switched,
    /// The target version is the stable one now.
    Completed,
    /// Stopped by a person; traffic back on the stable version.
    Aborted,
    /// Traffic back on the stable version after failed analysis (or a rollback release).
    RolledBack,
    /// Rolling: stopped at the first instance that did not become healthy.
    Failed,
}

impl ReleaseState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted | Self::RolledBack | Self::Failed)
    }
}

/// What a person (or the analysis worker, as "system") can ask of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReleaseAction {
    /// Canary: set the canary's share by hand (at most `max_jump` from the current share).
    SetPercent {
        percent: u8,
    },
    /// Canary: go to the next step now.
    NextStep,
    Pause,
    Resume,
    /// Canary or blue-green: make the target the stable version (100 %).
    Promote,
    /// Instant return of all traffic to the stable version.
    Abort,
    /// Blue-green: run the smoke checks against green directly.
    RunSmokeChecks,
    /// Blue-green: 100 % to green (only after the smoke checks passed).
    Switch,
    /// Blue-green: 100 % back to blue while it still runs.
    SwitchBack,
    /// Back to the last stable version (refused past a contract schema phase).
    Rollback,
}

impl ReleaseAction {
    /// The action's name as in the API (`set_percent`, …) and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SetPercent { .. } => "set_percent",
            Self::NextStep => "next_step",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::RunSmokeChecks => "run_smoke_checks",
            Self::Switch => "switch",
            Self::SwitchBack => "switch_back",
            Self::Rollback => "rollback",
        }
    }
}

/// One canary step: the canary's share and how long it is held (with passing analysis) before
/// the next step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    pub percent: u8,
    pub hold_seconds: u32,
}

/// Thresholds for automatic canary analysis, compared each `interval_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    pub interval_seconds: u32,
    /// The canary fails when its 5xx share exceeds this (0.05 = 5 %) …
    pub max_error_rate: f64,
    /// … or its p99 exceeds the stable p99 by more than this factor (1.5 = +50 %).
    pub max_p99_ratio: f64,
    /// Fewer canary requests than this in an interval: no verdict, the step is held.
    pub min_samples: u32,
    /// Consecutive failing intervals that roll the release back by themselves.
    pub breaches_to_rollback: u32,
}

/// A smoke check run against green directly (not through the router) before a switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// `GET` when absent.
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    pub expect_status: u16,
    /// The body must contain this text, when given.
    #[serde(default)]
    pub expect_body_contains: Option<String>,
}

/// A declared schema change: `expand` (additive; the old version still works) or `contract`
/// (removes what the old version needs — no rollback past it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SchemaPhase {
    Expand,
    Contract,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SchemaChange {
    pub phase: SchemaPhase,
    /// What changes, e.g. "drop column orders.legacy_total".
    pub description: String,
}

/// `POST /api/v1/services/{service}/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRelease {
    pub strategy: Strategy,
    /// The version to release (for `rollback`: ignored, the last stable version is used).
    pub target_version: String,
    /// The traffic policy revision the operator saw.
    pub expected_revision: i64,
    /// Canary steps; default 1 → 5 → 25 → 50 → 100 % with 60 s holds.
    #[serde(default)]
    pub steps: Option<Vec<CanaryStep>>,
    /// The largest change of the canary's share a single `set_percent` may make (default 50).
    #[serde(default)]
    pub max_jump: Option<u8>,
    #[serde(default)]
    pub analysis: Option<AnalysisConfig>,
    #[serde(default)]
    pub smoke_checks: Vec<SmokeCheck>,
    #[serde(default)]
    pub schema: Option<SchemaChange>,
    /// Rolling: how long each new instance may take to become healthy (default 120 s).
    #[serde(default)]
    pub rolling: Option<RollingConfig>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/releases/{id}/actions`. Read through [`RawActionRequest`]: serde can't combine
/// `deny_unknown_fields` with `flatten` (it would refuse `action` itself, or let any field
/// through), so unknown fields are refused there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(try_from = "RawActionRequest")]
pub struct ReleaseActionRequest {
    #[serde(flatten)]
    pub action: ReleaseAction,
    /// The traffic policy revision the operator saw.
    pub expected_revision: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The wire form of [`ReleaseActionRequest`], strict about its fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActionRequest {
    action: String,
    #[serde(default)]
    percent: Option<u8>,
    expected_revision: i64,
    #[serde(default)]
    reason: Option<String>,
}

impl TryFrom<RawActionRequest> for ReleaseActionRequest {
    type Error = String;

    fn try_from(raw: RawActionRequest) -> Result<Self, Self::Error> {
        let mut action = serde_json::Map::new();
        action.insert("action".into(), serde_json::Value::String(raw.action));
        if let Some(percent) = raw.percent {
            action.insert("percent".into(), percent.into());
        }
        let action = serde_json::from_value(serde_json::Value::Object(action)).map_err(|e| e.to_string())?;
        Ok(Self { action, expected_revision: raw.expected_revision, reason: raw.reason })
    }
}

/// One analysis interval's outcome, with the numbers it was decided on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Verdict {
    pub at: DateTime<Utc>,
    pub outcome: VerdictOutcome,
    pub canary_error_rate: Option<f64>,
    pub stable_error_rate: Option<f64>,
    pub max_error_rate: f64,
    pub canary_p99_ms: Option<f64>,
    pub stable_p99_ms: Option<f64>,
    pub max_p99_ratio: f64,
    /// Canary requests in the interval.
    pub canary_samples: u64,
    pub stable_samples: u64,
    /// Why, in words: "canary 5xx 48.2 % > 5.0 % (n = 310)".
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VerdictOutcome {
    Pass,
    Fail,
    /// Too little data: the step is held, neither passed nor failed.
    Inconclusive,
}

/// A release as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Release {
    pub id: i64,
    pub service: String,
    pub strategy: Strategy,
    pub state: ReleaseState,
    /// The version that was stable when the release started.
    pub stable_version: String,
    pub target_version: String,
    pub steps: Vec<CanaryStep>,
    /// Index into `steps` (canary).
    pub step_index: u32,
    /// The target version's current share.
    pub current_percent: u8,
    pub max_jump: u8,
    /// When the current step's hold ends (canary, progressing).
    pub step_ends_at: Option<DateTime<Utc>>,
    pub analysis: Option<AnalysisConfig>,
    pub consecutive_breaches: u32,
    pub last_verdict: Option<Verdict>,
    pub smoke_checks: Vec<SmokeCheck>,
    pub schema: Option<SchemaChange>,
    /// Rolling: the instances replaced so far and the one in progress.
    #[serde(default)]
    pub rolling: Option<RollingProgress>,
    /// The traffic policy revision after the release's last change.
    pub policy_revision: i64,
    /// Actions possible now (buttons the UI shows).
    pub allowed_actions: Vec<String>,
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it ended or waits (e.g. "rolled back: 3 failing intervals; canary 5xx 48 % > 5 %").
    pub status_reason: Option<String>,
}

/// One recorded action on a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReleaseHistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub from_state: ReleaseState,
    pub to_state: ReleaseState,
    pub weights_before: Vec<VersionWeight>,
    pub weights_after: Vec<VersionWeight>,
    pub verdict: Option<Verdict>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ReleaseDetail {
    pub release: Release,
    pub policy: TrafficPolicy,
    /// Newest first.
    pub verdicts: Vec<Verdict>,
    pub history: Vec<ReleaseHistoryEntry>,
}

/// What an action would do, shown before it is confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ActionPreview {
    pub action: ReleaseAction,
    /// Refused as it stands (state, max jump, schema contract…): why; the dialog shows this
    /// instead of a confirm button.
    pub refusal: Option<String>,
    pub weights_before: Vec<VersionWeight>,
    pub weights_after: Vec<VersionWeight>,
    /// The instances that will get traffic afterwards (`version @ host:port`, healthy ones).
    pub receiving_instances: Vec<PreviewInstance>,
    /// The latest canary-vs-stable comparison (live, not stored).
    pub verdict: Option<Verdict>,
    /// Instances whose circuit breaker is open right now (`version @ host:port`).
    pub open_breakers: Vec<PreviewInstance>,
    /// The policy revision the preview was computed at; confirm with it.
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PreviewInstance {
    pub id: String,
    pub version: String,
    pub address: String,
    pub node: String,
}

/// A 409 answer: the action was based on an old revision; here is the present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Conflict {
    pub error: String,
    pub current_policy: TrafficPolicy,
    pub current_release: Option<Release>,
}

/// Something waiting for a person: a paused release, one awaiting promotion, failed smoke
/// checks, a held step (too little data), a rollback that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InboxItem {
    pub release_id: i64,
    pub service: String,
    pub state: ReleaseState,
    /// What the person is asked to do, in words.
    pub ask: String,
    pub since: DateTime<Utc>,
}
