//! Live events: what `GET /api/v1/events` streams (Server-Sent Events) and what pages react to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::topology::InstanceHealth;

/// Which instance an event is about, with enough context to show it without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct InstanceRef {
    pub id: String,
    pub service: String,
    pub version: String,
    pub cluster: String,
    pub node: String,
    /// `host:port`.
    pub address: String,
}

/// The state of the circuit breaker in front of an instance's health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakerPosition {
    /// Checks run normally.
    Closed,
    /// Too many failures in a row: checks are skipped until a trial is due.
    Open,
    /// One trial check decides whether it closes again.
    HalfOpen,
}

impl BreakerPosition {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerPosition::Closed => "closed",
            BreakerPosition::Open => "open",
            BreakerPosition::HalfOpen => "half_open",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "open" => BreakerPosition::Open,
            "half_open" => BreakerPosition::HalfOpen,
            _ => BreakerPosition::Closed,
        }
    }

    /// How people read it.
    pub fn label(self) -> &'static str {
        match self {
            BreakerPosition::Closed => "breaker closed",
            BreakerPosition::Open => "breaker open",
            BreakerPosition::HalfOpen => "breaker half-open",
        }
    }
}

/// What kind of topology object an edit was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TopologyObject {
    Cluster,
    Node,
    Service,
}

/// What happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    Created,
    Updated,
    Deleted,
}

/// What happened. The SSE `event:` field is the `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A new registration (or a restart that replaced the old one).
    InstanceRegistered { instance: InstanceRef },
    /// The instance said goodbye.
    InstanceDeregistered { instance: InstanceRef },
    /// Its heartbeats stopped for longer than its TTL.
    InstanceExpired { instance: InstanceRef, reason: String },
    /// Expired for longer than the grace period, or replaced by a new registration.
    InstanceRemoved { instance: InstanceRef, reason: String },
    /// The health checker (or a heartbeat after expiry) changed its health.
    HealthChanged { instance: InstanceRef, from: InstanceHealth, to: InstanceHealth, reason: String },
    /// The circuit breaker in front of its checks moved.
    BreakerChanged { instance: InstanceRef, from: BreakerPosition, to: BreakerPosition },
    /// A cluster, node or service was created, edited or removed through the API.
    TopologyEdited { object: TopologyObject, name: String, cluster: Option<String>, edit: Edit },
    /// A service's traffic policy changed (by a release or by hand): the new weights.
    TrafficChanged { service: String, revision: i64, weights: Vec<crate::model::traffic::VersionWeight>, actor: String },
    /// A release started, moved to another state or step, or ended; `summary` says what and
    /// why in words (with verdict numbers for analysis-driven changes).
    ReleaseChanged {
        release_id: i64,
        service: String,
        strategy: crate::model::releases::Strategy,
        from: Option<crate::model::releases::ReleaseState>,
        to: crate::model::releases::ReleaseState,
        percent: u8,
        actor: String,
        summary: String,
    },
    /// A canary analysis interval ended with this verdict (no state change by itself; pages
    /// showing the release refresh its numbers). Not a chart marker.
    VerdictRecorded {
        release_id: i64,
        service: String,
        outcome: crate::model::releases::VerdictOutcome,
        summary: String,
    },
}

impl EventKind {
    /// The `type` tag, also the SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::InstanceRegistered { .. } => "instance_registered",
            EventKind::InstanceDeregistered { .. } => "instance_deregistered",
            EventKind::InstanceExpired { .. } => "instance_expired",
            EventKind::InstanceRemoved { .. } => "instance_removed",
            EventKind::HealthChanged { .. } => "health_changed",
            EventKind::BreakerChanged { .. } => "breaker_changed",
            EventKind::TopologyEdited { .. } => "topology_edited",
            EventKind::TrafficChanged { .. } => "traffic_changed",
            EventKind::ReleaseChanged { .. } => "release_changed",
            EventKind::VerdictRecorded { .. } => "verdict_recorded",
        }
    }

    /// The instance it is about, if any.
    pub fn instance(&self) -> Option<&InstanceRef> {
        match self {
            EventKind::InstanceRegistered { instance }
            | EventKind::InstanceDeregistered { instance }
            | EventKind::InstanceExpired { instance, .. }
            | EventKind::InstanceRemoved { instance, .. }
            | EventKind::HealthChanged { instance, .. }
            | EventKind::BreakerChanged { instance, .. } => Some(instance),
            EventKind::TopologyEdited { .. }
            | EventKind::TrafficChanged { .. }
            | EventKind::ReleaseChanged { .. }
            | EventKind::VerdictRecorded { .. } => None,
        }
    }

    /// Whether it may change the healthy endpoints of `service` (what a discovery watch waits for).
    pub fn may_change_endpoints_of(&self, service: &str) -> bool {
        match self {
            EventKind::BreakerChanged { .. } => false,
            EventKind::TopologyEdited { object: TopologyObject::Service, name, .. } => name == service,
            EventKind::TopologyEdited { .. } => true,
            other => other.instance().is_some_and(|i| i.service == service),
        }
    }
}

/// One stored event: its id (the SSE `id:`, for `Last-Event-ID`), when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The `heartbeat` event sent every few seconds, so clients know the stream is alive and how
/// fresh their view is even when nothing changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StreamHeartbeat {
    pub at: DateTime<Utc>,
    /// The newest event id this server has seen.
    pub last_event_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(service: &str) -> InstanceRef {
        InstanceRef {
            id: "i".into(),
            service: service.into(),
            version: "v1".into(),
            cluster: "c".into(),
            node: "n".into(),
            address: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn events_serialise_with_a_type_tag_beside_id_and_time() {
        let event = Event {
            id: 7,
            at: DateTime::UNIX_EPOCH,
            kind: EventKind::InstanceExpired { instance: instance("web"), reason: "no heartbeat".into() },
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(json["type"], "instance_expired");
        assert_eq!(json["id"], 7);
        assert_eq!(json["instance"]["service"], "web");
        assert_eq!(serde_json::from_value::<Event>(json).expect("round trip"), event);
    }

    #[test]
    fn a_watch_wakes_for_its_own_service_only() {
        let registered = EventKind::InstanceRegistered { instance: instance("web") };
        assert!(registered.may_change_endpoints_of("web"));
        assert!(!registered.may_change_endpoints_of("api"));
        let breaker = EventKind::BreakerChanged {
            instance: instance("web"),
            from: BreakerPosition::Closed,
            to: BreakerPosition::Open,
        };
        assert!(!breaker.may_change_endpoints_of("web"), "breakers don't change the healthy set");
    }
}
