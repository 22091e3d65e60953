//! Rolling releases' part of the release contract: the settings a start takes and the progress
//! a release shows, one step per node (see `server/src/releases/rolling.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Settings of a rolling release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollingConfig {
    /// A new instance not healthy this long after it was started fails the release (10–3600).
    pub ready_timeout_seconds: u32,
}

impl Default for RollingConfig {
    fn default() -> Self {
        Self { ready_timeout_seconds: 120 }
    }
}

/// Where a rolling release stands: one step per node that ran the stable version when it
/// started, replaced in order, one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RollingProgress {
    pub ready_timeout_seconds: u32,
    pub steps: Vec<RollingStep>,
    /// A rollback in progress: the steps put the stable version back on the nodes the release
    /// touched (start it, wait until healthy, stop the target there).
    #[serde(default)]
    pub rolling_back: bool,
}

impl RollingProgress {
    /// The step being worked on (the first not replaced), if any.
    pub fn current(&self) -> Option<(usize, &RollingStep)> {
        self.steps.iter().enumerate().find(|(_, step)| step.state != RollingStepState::Replaced)
    }

    pub fn replaced(&self) -> usize {
        self.steps.iter().filter(|step| step.state == RollingStepState::Replaced).count()
    }

    /// "2 of 3 node(s) replaced" or, rolling back, "1 of 2 node(s) restored".
    pub fn count_text(&self) -> String {
        let done = if self.rolling_back { "restored" } else { "replaced" };
        format!("{} of {} node(s) {done}", self.replaced(), self.steps.len())
    }
}

/// Replacing the stable version's instance(s) on one node by the target version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RollingStep {
    pub node: String,
    /// The stable instances it replaces (`host:port`).
    pub replaces: Vec<String>,
    pub state: RollingStepState,
    /// When the new instance was asked for.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The new instance (`host:port`), once it was healthy.
    pub instance: Option<String>,
    /// What happened, in words (the failure report on a failed step).
    pub detail: Option<String>,
}

impl RollingStep {
    /// One line: "east-1: replaced — 127.0.1.1:8101 serves (was 127.0.1.1:8100)".
    pub fn text(&self) -> String {
        let was = self.replaces.join(", ");
        match self.state {
            RollingStepState::Waiting => format!("{}: waiting — {was} serves", self.node),
            RollingStepState::Starting => format!("{}: starting the new instance — {was} still serves", self.node),
            RollingStepState::Draining => format!(
                "{}: {} healthy, stopping {was}",
                self.node,
                self.instance.as_deref().unwrap_or("the new instance")
            ),
            RollingStepState::Replaced => format!(
                "{}: replaced — {} serves (was {was})",
                self.node,
                self.instance.as_deref().unwrap_or("the new instance")
            ),
            RollingStepState::Failed => {
                format!("{}: failed — {}", self.node, self.detail.as_deref().unwrap_or("no detail"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RollingStepState {
    /// Not started yet.
    Waiting,
    /// The new instance was started; waiting for it to be healthy.
    Starting,
    /// The new instance is healthy and has its share; the old one is being stopped.
    Draining,
    /// The old instance stopped; the new one serves.
    Replaced,
    /// The new instance did not become healthy (or could not be started, or the old one
    /// could not be stopped): the release stopped here.
    Failed,
}
