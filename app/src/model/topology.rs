//! Clusters, nodes, services, versions and instances: what runs where.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name rule for clusters, nodes and services: 1–63 lower-case letters, digits, `.`, `_`,
/// `-`, starting with a letter or digit (safe in URLs, metric tags and log fields). The
/// database checks the same rule.
pub fn check_name(field: &str, value: &str) -> Result<(), String> {
    let valid_start = value.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest =
        value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if value.len() > 63 || !valid_start || !valid_rest {
        return Err(format!(
            "{field}: {value:?} is not a valid name: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A version label such as `v2.3.1` or `2024-06-01+build.7`.
pub fn check_version(value: &str) -> Result<(), String> {
    let valid_start = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if value.len() > 63 || !valid_start || !valid_rest {
        return Err(format!(
            "version: {value:?} is not a valid label: use 1-63 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A host name or IP address an instance listens on.
pub fn check_host(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !valid {
        return Err(format!("host: {value:?} is not a host name or IP address"));
    }
    Ok(())
}

/// Metadata is for a few facts about an instance, not a document store.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// PostgreSQL's JSONB can't hold NUL in any key or string.
fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// The heartbeat TTL when the registrant doesn't choose one.
pub const DEFAULT_TTL_SECONDS: u32 = 30;

/// `POST /api/v1/instances`: an instance announces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterInstance {
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub service: String,
    #[cfg_attr(feature = "ssr", schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$"))]
    pub version: String,
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub cluster: String,
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub node: String,
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 253, pattern = "^[A-Za-z0-9.:\\[\\]_-]+$"))]
    pub host: String,
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 65535))]
    pub port: u16,
    /// Overrides the service's health-check path for this instance (must start with `/`).
    #[cfg_attr(feature = "ssr", schema(pattern = "^/[^\\s]*$", max_length = 1000))]
    pub health_check_path: Option<String>,
    /// Free-form facts about the instance (kept as given).
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds without a heartbeat before the instance counts as expired (1–3600, default 30).
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 3600))]
    pub ttl_seconds: Option<u32>,
}

impl RegisterInstance {
    /// Every rule, with the field named in the message.
    pub fn check(&self) -> Result<(), String> {
        check_name("service", &self.service)?;
        check_version(&self.version)?;
        check_name("cluster", &self.cluster)?;
        check_name("node", &self.node)?;
        check_host(&self.host)?;
        if self.port == 0 {
            return Err("port: must be between 1 and 65535".into());
        }
        if let Some(path) = &self.health_check_path
            && (!path.starts_with('/')
                || path.len() > 1000
                || path.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("health_check_path: {path:?} must start with '/' and contain no spaces"));
        }
        if self.ttl_seconds.is_some_and(|ttl| !(1..=3600).contains(&ttl)) {
            return Err("ttl_seconds: must be between 1 and 3600".into());
        }
        if let Some(metadata) = &self.metadata {
            let value = serde_json::Value::Object(metadata.clone());
            if value.to_string().len() > MAX_METADATA_BYTES {
                return Err(format!("metadata: at most {MAX_METADATA_BYTES} bytes of JSON"));
            }
            if contains_nul(&value) {
                return Err("metadata: text cannot contain the NUL character (\\u0000)".into());
            }
        }
        Ok(())
    }

    pub fn ttl_seconds(&self) -> u32 {
        self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS)
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Registration {
    /// Use it for heartbeats (`PUT /api/v1/instances/{id}/heartbeat`) and deregistration.
    pub instance_id: String,
    pub ttl_seconds: u32,
    /// A heartbeat this often keeps the instance alive with room for a lost one.
    pub heartbeat_every_seconds: u32,
}

/// Health of an instance, as the checker judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum InstanceHealth {
    /// Not checked enough yet.
    Unknown,
    Healthy,
    Unhealthy,
    /// Its heartbeats stopped for longer than its TTL.
    Expired,
}

impl InstanceHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceHealth::Unknown => "unknown",
            InstanceHealth::Healthy => "healthy",
            InstanceHealth::Unhealthy => "unhealthy",
            InstanceHealth::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "healthy" => InstanceHealth::Healthy,
            "unhealthy" => InstanceHealth::Unhealthy,
            "expired" => InstanceHealth::Expired,
            _ => InstanceHealth::Unknown,
        }
    }
}

impl fmt::Display for InstanceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Instance {
    pub id: String,
    pub service: String,
    pub version: String,
    pub cluster: String,
    pub node: String,
    pub host: String,
    pub port: u16,
    pub health: InstanceHealth,
    pub health_reason: Option<String>,
    pub health_changed_at: DateTime<Utc>,
    /// The circuit breaker in front of its health checks.
    pub breaker: super::events::BreakerPosition,
    pub registered_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    pub ttl_seconds: u32,
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub metadata: serde_json::Value,
}

/// One healthy place to send a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Endpoint {
    pub instance_id: String,
    /// `host:port`.
    pub address: String,
    pub version: String,
    pub node: String,
    pub cluster: String,
}

/// `GET /api/v1/discovery/{service}`: the healthy endpoints, rotated by one on every call so
/// that clients taking the first one spread their load round-robin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Discovery {
    pub service: String,
    pub endpoints: Vec<Endpoint>,
    /// Identifies this set of endpoints (not their order): pass it back as `index` with `wait`
    /// to block until the set differs (like Consul's blocking queries). The same on every replica.
    pub index: String,
}

/// `PUT /api/v1/nodes/{cluster}/{node}/agent`: a node agent checks in (and so creates the
/// cluster and node on first sight). Its silence for three report intervals marks the node down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentCheckIn {
    /// The node's address, as the agent sees it.
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 253, pattern = "^[A-Za-z0-9.:\\[\\]_-]+$"))]
    pub address: Option<String>,
    /// How often the agent reports (1–3600 s).
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 3600))]
    pub report_every_seconds: u32,
}

impl AgentCheckIn {
    pub fn check(&self) -> Result<(), String> {
        if let Some(address) = &self.address {
            check_host(address).map_err(|e| e.replacen("host:", "address:", 1))?;
        }
        if !(1..=3600).contains(&self.report_every_seconds) {
            return Err("report_every_seconds: must be between 1 and 3600".into());
        }
        Ok(())
    }
}

/// How many report intervals of silence make an agent's node count as down.
pub const AGENT_SILENT_AFTER_INTERVALS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> RegisterInstance {
        RegisterInstance {
            service: "payments".into(),
            version: "v2.3.1".into(),
            cluster: "eu-1".into(),
            node: "node-a".into(),
            host: "127.0.0.2".into(),
            port: 8080,
            health_check_path: None,
            metadata: None,
            ttl_seconds: None,
        }
    }

    #[test]
    fn a_plain_registration_passes_and_defaults_the_ttl() {
        assert_eq!(registration().check(), Ok(()));
        assert_eq!(registration().ttl_seconds(), DEFAULT_TTL_SECONDS);
    }

    #[test]
    fn each_bad_field_is_named_in_the_refusal() {
        let cases: Vec<(RegisterInstance, &str)> = vec![
            (RegisterInstance { service: "".into(), ..registration() }, "service:"),
            (RegisterInstance { service: "x".repeat(64), ..registration() }, "service:"),
            (RegisterInstance { cluster: "EU 1".into(), ..registration() }, "cluster:"),
            (RegisterInstance { node: "../etc".into(), ..registration() }, "node:"),
            (RegisterInstance { version: "".into(), ..registration() }, "version:"),
            (RegisterInstance { host: "a host".into(), ..registration() }, "host:"),
            (RegisterInstance { port: 0, ..registration() }, "port:"),
            (RegisterInstance { ttl_seconds: Some(0), ..registration() }, "ttl_seconds:"),
            (RegisterInstance { ttl_seconds: Some(86_400), ..registration() }, "ttl_seconds:"),
            (RegisterInstance { health_check_path: Some("healthz".into()), ..registration() }, "health_check_path:"),
            (
                RegisterInstance {
                    metadata: serde_json::json!({"a": {"b\u{0}": 1}}).as_object().cloned(),
                    ..registration()
                },
                "metadata:",
            ),
            (
                RegisterInstance {
                    metadata: serde_json::json!({"big": "x".repeat(20_000)}).as_object().cloned(),
                    ..registration()
                },
                "metadata:",
            ),
        ];
        for (request, field) in cases {
            let error = request.check().expect_err(field);
            assert!(error.starts_with(field), "{error}");
        }
    }
}

#[cfg(test)]
mod metadata_numbers {
    /// PostgreSQL's `jsonb` prints every number in full decimal (no exponent), so the largest
    /// finite floats come back as 309-digit integers; they must still read back as numbers, or
    /// one registration breaks every instance listing (schemathesis found this as a 500).
    #[test]
    fn the_largest_floats_read_back_after_jsonb_writes_them_out_in_full() {
        for value in [f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, 1.0e308] {
            let full_decimal = format!("{value:.0}");
            let text = if value.abs() < 1.0 { format!("{value:.330}") } else { full_decimal };
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.as_f64(), Some(value), "{text}");
        }
    }
}
