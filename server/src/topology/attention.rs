//! What needs a person, per service: down or degraded (naming the down nodes that explain it),
//! open health-check breakers and stopped heartbeats that no down node explains. Gathered while
//! [`super::view::build`] walks the topology.

use std::collections::BTreeSet;

use app::model::health::{Attention, Health, HealthCounts, Severity};
use chrono::{DateTime, Utc};

#[derive(Default)]
pub(super) struct ServiceAccumulator<'a> {
    pub(super) counts: HealthCounts,
    pub(super) versions: BTreeSet<&'a str>,
    pub(super) nodes: BTreeSet<String>,
    pub(super) open_breakers: u32,
    /// Open breakers and expired instances not on a down node (those are its root cause).
    pub(super) unexplained_breakers: u32,
    pub(super) unexplained_expired: u32,
    /// Down instances not explained by a down node.
    pub(super) own_failures: u32,
    /// Down nodes that explain some of its down instances.
    pub(super) down_nodes: BTreeSet<String>,
    pub(super) down_since: Option<DateTime<Utc>>,
}

impl ServiceAccumulator<'_> {
    pub(super) fn attention(&self, name: &str, health: Health, out: &mut Vec<Attention>) {
        let link = format!("/services/{name}");
        let because = if self.down_nodes.is_empty() {
            String::new()
        } else {
            let nodes: Vec<_> = self.down_nodes.iter().map(String::as_str).collect();
            format!(" — because node {} {} down", nodes.join(", "), if nodes.len() == 1 { "is" } else { "are" })
        };
        let live = self.counts.total();
        match health {
            Health::Down => out.push(Attention {
                severity: Severity::Critical,
                kind: "service_down".into(),
                title: format!("Service {name} is down"),
                detail: format!("None of its {live} instances passes its health checks{because}."),
                link: link.clone(),
                since: self.down_since,
            }),
            Health::Degraded => out.push(Attention {
                severity: Severity::Warning,
                kind: "service_degraded".into(),
                title: format!("Service {name} is degraded"),
                detail: format!(
                    "{} of {live} instances healthy; {} down{because}.",
                    self.counts.healthy,
                    self.counts.down()
                ),
                link: link.clone(),
                since: self.down_since,
            }),
            Health::Healthy | Health::Unknown => {}
        }
        if self.unexplained_breakers > 0 {
            let count = self.unexplained_breakers;
            out.push(Attention {
                severity: Severity::Warning,
                kind: "breaker_open".into(),
                title: format!("{count} health-check breaker{} open on {name}", if count == 1 { "" } else { "s" }),
                detail: "Checks of those instances are paused; one trial probe per interval decides when they close."
                    .into(),
                link: link.clone(),
                since: None,
            });
        }
        if self.unexplained_expired > 0 {
            let count = self.unexplained_expired;
            out.push(Attention {
                severity: Severity::Warning,
                kind: "instance_expiring".into(),
                title: format!("{count} instance{} of {name} stopped heartbeating", if count == 1 { "" } else { "s" }),
                detail: "Marked expired after their TTL; removed after the grace period unless they heartbeat again."
                    .into(),
                link,
                since: None,
            });
        }
    }
}
