//! Types shared by the server (JSON API, server functions) and the browser. Validation lives
//! here too, so forms check input in the browser with the same rules the server applies.

pub mod audit;
pub mod catalog;
pub mod charts;
pub mod events;
pub mod health;
pub mod identity;
pub mod logs;
pub mod releases;
pub mod rolling;
pub mod topology;
pub mod trace;
pub mod traffic;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A backing store opsdeck depends on to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    Postgres,
    Influxdb,
    /// Metrics ingest: not a store, but the buffer and writer in front of InfluxDB; not ok
    /// ("metrics degraded") while writes fail or the buffer is above 80 %.
    Metrics,
}

impl Dependency {
    /// The name people know the store by.
    pub fn label(self) -> &'static str {
        match self {
            Dependency::Postgres => "PostgreSQL",
            Dependency::Influxdb => "InfluxDB",
            Dependency::Metrics => "metrics ingest",
        }
    }

    /// The word for this dependency when its check fails.
    pub fn failure_word(self) -> &'static str {
        match self {
            Dependency::Metrics => "degraded",
            Dependency::Postgres | Dependency::Influxdb => "unavailable",
        }
    }
}

/// The outcome of checking one dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DependencyCheck {
    pub dependency: Dependency,
    pub ok: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// What went wrong, in the words of the failing component, when `ok` is false.
    pub error: Option<String>,
}

/// Whether opsdeck can serve: every dependency checked at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Readiness {
    pub ready: bool,
    pub checked_at: DateTime<Utc>,
    pub checks: Vec<DependencyCheck>,
}

impl Readiness {
    /// Builds a readiness report; ready only if every check passed.
    pub fn from_checks(checked_at: DateTime<Utc>, checks: Vec<DependencyCheck>) -> Self {
        let ready = checks.iter().all(|c| c.ok);
        Self { ready, checked_at, checks }
    }

    /// The dependencies that failed, for messages such as "InfluxDB unavailable".
    pub fn failing(&self) -> impl Iterator<Item = &DependencyCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dependency: Dependency, ok: bool) -> DependencyCheck {
        DependencyCheck { dependency, ok, latency_ms: 1.0, error: (!ok).then(|| "down".into()) }
    }

    #[test]
    fn readiness_is_ready_only_when_every_check_passes() {
        let now = Utc::now();
        let all_ok =
            Readiness::from_checks(now, vec![check(Dependency::Postgres, true), check(Dependency::Influxdb, true)]);
        assert!(all_ok.ready);
        let one_down =
            Readiness::from_checks(now, vec![check(Dependency::Postgres, true), check(Dependency::Influxdb, false)]);
        assert!(!one_down.ready);
        assert_eq!(one_down.failing().map(|c| c.dependency).collect::<Vec<_>>(), vec![Dependency::Influxdb]);
    }
}
