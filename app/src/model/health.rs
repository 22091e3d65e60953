//! The health model the pages draw: instance → service (by share of healthy instances) → node
//! → cluster, with one root cause when a node is down, and the list of what needs attention
//! first. The server aggregates it (`GET /api/v1/topology`), so a screen gets the same picture
//! at 20 instances or 2,000.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{events::BreakerPosition, topology::InstanceHealth};

/// The health vocabulary of services, nodes and clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Nothing healthy (for a node: every instance on it down).
    Down,
    /// Some healthy, some not.
    Degraded,
    /// Not checked enough yet, or nothing runs there.
    Unknown,
    Healthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Down => "down",
            Health::Degraded => "degraded",
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
        }
    }

    /// An instance's health in this vocabulary.
    pub fn of_instance(health: InstanceHealth) -> Self {
        match health {
            InstanceHealth::Healthy => Health::Healthy,
            InstanceHealth::Unhealthy | InstanceHealth::Expired => Health::Down,
            InstanceHealth::Unknown => Health::Unknown,
        }
    }

    /// The rule for a group by the share of its healthy members: all healthy → healthy, none
    /// healthy (and some down) → down, a mix → degraded; nothing judged yet → unknown.
    pub fn by_share(counts: &HealthCounts) -> Self {
        if counts.healthy + counts.down() == 0 {
            Health::Unknown
        } else if counts.down() == 0 {
            Health::Healthy
        } else if counts.healthy == 0 {
            Health::Down
        } else {
            Health::Degraded
        }
    }
}

/// How many instances are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthCounts {
    pub healthy: u32,
    pub unhealthy: u32,
    pub unknown: u32,
    pub expired: u32,
}

impl HealthCounts {
    pub fn add(&mut self, health: InstanceHealth) {
        match health {
            InstanceHealth::Healthy => self.healthy += 1,
            InstanceHealth::Unhealthy => self.unhealthy += 1,
            InstanceHealth::Unknown => self.unknown += 1,
            InstanceHealth::Expired => self.expired += 1,
        }
    }

    pub fn total(&self) -> u32 {
        self.healthy + self.unhealthy + self.unknown + self.expired
    }

    /// Unhealthy or expired.
    pub fn down(&self) -> u32 {
        self.unhealthy + self.expired
    }
}

/// One instance as the topology picture shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InstanceCell {
    pub id: String,
    pub port: u16,
    pub health: InstanceHealth,
    pub breaker: BreakerPosition,
    /// Why it is in this state (the checker's last verdict).
    pub reason: Option<String>,
    /// Set when the cause is elsewhere: "down because node east-2 is down".
    pub root_cause: Option<String>,
    pub changed_at: DateTime<Utc>,
}

/// The instances of one service version on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InstanceGroup {
    pub service: String,
    pub version: String,
    pub counts: HealthCounts,
    pub health: Health,
    /// Every instance when the group is small; otherwise only those not healthy (the rest are
    /// counted in `counts`), so a big group stays one line.
    pub cells: Vec<InstanceCell>,
    /// How many healthy instances were folded into `counts` instead of listed.
    pub folded: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeView {
    pub name: String,
    pub address: Option<String>,
    pub health: Health,
    /// Why the node counts as down, when it does.
    pub down_reason: Option<String>,
    pub counts: HealthCounts,
    pub groups: Vec<InstanceGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClusterView {
    pub name: String,
    pub health: Health,
    pub counts: HealthCounts,
    pub nodes: Vec<NodeView>,
}

/// A service across every node it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceSummary {
    pub name: String,
    pub health: Health,
    pub counts: HealthCounts,
    pub versions: Vec<String>,
    /// `cluster/node` of every node it runs on.
    pub nodes: Vec<String>,
    pub open_breakers: u32,
}

/// How urgent an attention item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

/// One thing that needs a person, worded for the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Attention {
    pub severity: Severity,
    /// `service_down`, `node_down`, `service_degraded`, `breaker_open`, `instance_expiring`.
    pub kind: String,
    pub title: String,
    pub detail: String,
    /// Where to look (a page path).
    pub link: String,
    pub since: Option<DateTime<Utc>>,
}

/// `GET /api/v1/topology`: the whole picture, aggregated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TopologyView {
    pub generated_at: DateTime<Utc>,
    /// The newest event included: a client following `/api/v1/events` refreshes after it.
    pub last_event_id: i64,
    pub counts: HealthCounts,
    pub open_breakers: u32,
    pub attention: Vec<Attention>,
    pub services: Vec<ServiceSummary>,
    pub clusters: Vec<ClusterView>,
}

/// One stored health change of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct HealthChangeRecord {
    pub instance_id: String,
    pub address: String,
    pub version: String,
    pub node: String,
    pub at: DateTime<Utc>,
    pub from: InstanceHealth,
    pub to: InstanceHealth,
    pub reason: String,
}

/// Health-check results in one time bucket (from InfluxDB `health_probe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProbeBucket {
    pub at: DateTime<Utc>,
    pub probes: u32,
    pub failed: u32,
    /// `None` when there were no probes in the bucket (shown as a gap, not as zero).
    pub p95_latency_ms: Option<f64>,
}

/// The probe history of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionHistory {
    pub version: String,
    pub buckets: Vec<ProbeBucket>,
}

/// `GET /api/v1/services/{service}/health`: what the service page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceDetail {
    pub name: String,
    pub generated_at: DateTime<Utc>,
    pub last_event_id: i64,
    pub health: Health,
    pub counts: HealthCounts,
    pub instances: Vec<super::topology::Instance>,
    /// Newest first.
    pub changes: Vec<HealthChangeRecord>,
    /// The last hour in one-minute buckets, per version.
    pub history: Vec<VersionHistory>,
    /// Why the history is missing, when InfluxDB could not answer.
    pub history_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(healthy: u32, unhealthy: u32, unknown: u32) -> HealthCounts {
        HealthCounts { healthy, unhealthy, unknown, expired: 0 }
    }

    #[test]
    fn a_group_is_healthy_degraded_or_down_by_its_share_of_healthy_members() {
        assert_eq!(Health::by_share(&counts(3, 0, 0)), Health::Healthy);
        assert_eq!(Health::by_share(&counts(2, 1, 0)), Health::Degraded);
        assert_eq!(Health::by_share(&counts(0, 3, 0)), Health::Down);
        assert_eq!(Health::by_share(&counts(0, 0, 2)), Health::Unknown, "nothing judged yet");
        assert_eq!(Health::by_share(&counts(0, 0, 0)), Health::Unknown, "nothing runs");
        assert_eq!(Health::by_share(&counts(2, 0, 1)), Health::Healthy, "a new instance still being checked");
        assert_eq!(Health::by_share(&HealthCounts { expired: 1, ..counts(1, 0, 0) }), Health::Degraded);
    }
}
