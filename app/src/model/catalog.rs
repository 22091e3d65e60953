//! The topology catalog: clusters, nodes and services created, edited and removed through the
//! API (`/api/v1/clusters`, `/api/v1/services`), beside those that appear on first registration.
//! The request types check every rule here, so a form can refuse bad input before it sends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::topology::{check_host, check_name};

/// Descriptions are a line or two for people, not documents.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// A health-check path is part of a URL; longer than this is a mistake.
pub const MAX_PATH_CHARS: usize = 1000;

/// Health-check settings a service gets unless told otherwise (the same defaults as the
/// `services` table, which registration relies on).
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/healthz";
pub const DEFAULT_CHECK_INTERVAL_MS: i32 = 5000;
pub const DEFAULT_CHECK_TIMEOUT_MS: i32 = 2000;
pub const DEFAULT_FALL: i32 = 3;
pub const DEFAULT_RISE: i32 = 2;

/// `Some(value)` when the field is present, even as `null` (`Some(None)`), so a PATCH can tell
/// "leave it" (absent) from "clear it" (`null`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A description: at most [`MAX_DESCRIPTION_CHARS`] characters, no control characters (they
/// break logs and tables, and PostgreSQL can't store NUL).
pub fn check_description(value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("description: at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("description: no control characters (NUL, newlines, tabs, escapes)".into());
    }
    Ok(())
}

fn check_optional_description(value: Option<&str>) -> Result<(), String> {
    value.map_or(Ok(()), check_description)
}

/// A node's address: a host name or IP address.
pub fn check_address(value: &str) -> Result<(), String> {
    check_host(value).map_err(|_| format!("address: {value:?} is not a host name or IP address"))
}

/// The path probed on each instance: starts with `/`, no whitespace or control characters.
pub fn check_health_check_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/')
        || value.chars().count() > MAX_PATH_CHARS
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "health_check_path: {value:?} must start with '/', contain no spaces or control characters and be at most {MAX_PATH_CHARS} characters"
        ));
    }
    Ok(())
}

fn check_range(field: &str, value: Option<i32>, low: i32, high: i32) -> Result<(), String> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(format!("{field}: must be between {low} and {high}, not {v}")),
        _ => Ok(()),
    }
}

/// How a service's instances are checked, complete (stored values with a request's changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CheckSettings {
    pub health_check_path: String,
    pub check_interval_ms: i32,
    pub check_timeout_ms: i32,
    pub fall: i32,
    pub rise: i32,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            health_check_path: DEFAULT_HEALTH_CHECK_PATH.into(),
            check_interval_ms: DEFAULT_CHECK_INTERVAL_MS,
            check_timeout_ms: DEFAULT_CHECK_TIMEOUT_MS,
            fall: DEFAULT_FALL,
            rise: DEFAULT_RISE,
        }
    }
}

impl CheckSettings {
    /// Every rule, including the one across fields (a probe must end before the next is due).
    pub fn check(&self) -> Result<(), String> {
        check_health_check_path(&self.health_check_path)?;
        check_range("check_interval_ms", Some(self.check_interval_ms), 500, 3_600_000)?;
        check_range("check_timeout_ms", Some(self.check_timeout_ms), 50, 60_000)?;
        check_range("fall", Some(self.fall), 1, 100)?;
        check_range("rise", Some(self.rise), 1, 100)?;
        if self.check_timeout_ms >= self.check_interval_ms {
            return Err(format!(
                "check_timeout_ms: must be less than check_interval_ms ({} ms), not {} ms",
                self.check_interval_ms, self.check_timeout_ms
            ));
        }
        Ok(())
    }
}

/// `POST /api/v1/clusters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    #[cfg_attr(feature = "ssr", schema(max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<String>,
}

impl NewCluster {
    pub fn check(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        check_optional_description(self.description.as_deref())
    }
}

/// `PATCH /api/v1/clusters/{cluster}`: `null` clears the description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterEdit {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, nullable, max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<Option<String>>,
}

impl ClusterEdit {
    pub fn check(&self) -> Result<(), String> {
        if self.description.is_none() {
            return Err("description: nothing to change; send a description (or null to clear it)".into());
        }
        check_optional_description(self.description.clone().flatten().as_deref())
    }
}

/// `POST /api/v1/clusters/{cluster}/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    #[cfg_attr(feature = "ssr", schema(min_length = 1, max_length = 253, pattern = "^[A-Za-z0-9.:\\[\\]_-]+$"))]
    pub address: Option<String>,
    #[cfg_attr(feature = "ssr", schema(max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<String>,
}

impl NewNode {
    pub fn check(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        self.address.as_deref().map_or(Ok(()), check_address)?;
        check_optional_description(self.description.as_deref())
    }
}

/// `PATCH /api/v1/clusters/{cluster}/nodes/{node}`: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeEdit {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, nullable, min_length = 1, max_length = 253, pattern = "^[A-Za-z0-9.:\\[\\]_-]+$"))]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, nullable, max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<Option<String>>,
}

impl NodeEdit {
    pub fn check(&self) -> Result<(), String> {
        if self.address.is_none() && self.description.is_none() {
            return Err("address, description: nothing to change; send at least one".into());
        }
        self.address.clone().flatten().as_deref().map_or(Ok(()), check_address)?;
        check_optional_description(self.description.clone().flatten().as_deref())
    }
}

/// `POST /api/v1/services`: settings left out get the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewService {
    #[cfg_attr(feature = "ssr", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub name: String,
    #[cfg_attr(feature = "ssr", schema(max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<String>,
    /// Probed on each instance (default `/healthz`).
    #[cfg_attr(feature = "ssr", schema(pattern = "^/[^\\s\\x00-\\x1f\\x7f-\\x9f]*$", max_length = 1000))]
    pub health_check_path: Option<String>,
    /// 500–3,600,000 (default 5000).
    #[cfg_attr(feature = "ssr", schema(minimum = 500, maximum = 3_600_000))]
    pub check_interval_ms: Option<i32>,
    /// 50–60,000 and less than the interval (default 2000).
    #[cfg_attr(feature = "ssr", schema(minimum = 50, maximum = 60_000))]
    pub check_timeout_ms: Option<i32>,
    /// Consecutive failures that mark an instance down, 1–100 (default 3).
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 100))]
    pub fall: Option<i32>,
    /// Consecutive successes that bring it back, 1–100 (default 2).
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 100))]
    pub rise: Option<i32>,
}

impl NewService {
    /// The settings it asks for, with the defaults filled in.
    pub fn settings(&self) -> CheckSettings {
        let defaults = CheckSettings::default();
        CheckSettings {
            health_check_path: self.health_check_path.clone().unwrap_or(defaults.health_check_path),
            check_interval_ms: self.check_interval_ms.unwrap_or(defaults.check_interval_ms),
            check_timeout_ms: self.check_timeout_ms.unwrap_or(defaults.check_timeout_ms),
            fall: self.fall.unwrap_or(defaults.fall),
            rise: self.rise.unwrap_or(defaults.rise),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        check_optional_description(self.description.as_deref())?;
        self.settings().check()
    }
}

/// `PATCH /api/v1/services/{service}`: how people tune health checks. Absent fields stay;
/// `null` clears the description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceEdit {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, nullable, max_length = 500, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"))]
    pub description: Option<Option<String>>,
    #[cfg_attr(feature = "ssr", schema(pattern = "^/[^\\s\\x00-\\x1f\\x7f-\\x9f]*$", max_length = 1000))]
    pub health_check_path: Option<String>,
    #[cfg_attr(feature = "ssr", schema(minimum = 500, maximum = 3_600_000))]
    pub check_interval_ms: Option<i32>,
    #[cfg_attr(feature = "ssr", schema(minimum = 50, maximum = 60_000))]
    pub check_timeout_ms: Option<i32>,
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 100))]
    pub fall: Option<i32>,
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 100))]
    pub rise: Option<i32>,
}

impl ServiceEdit {
    /// The rules each field can be checked by alone; [`ServiceEdit::apply`] checks the result.
    pub fn check(&self) -> Result<(), String> {
        if *self == Self::default() {
            return Err(
                "description, health_check_path, check_interval_ms, check_timeout_ms, fall, rise: nothing to change; send at least one"
                    .into(),
            );
        }
        check_optional_description(self.description.clone().flatten().as_deref())?;
        self.health_check_path.as_deref().map_or(Ok(()), check_health_check_path)?;
        check_range("check_interval_ms", self.check_interval_ms, 500, 3_600_000)?;
        check_range("check_timeout_ms", self.check_timeout_ms, 50, 60_000)?;
        check_range("fall", self.fall, 1, 100)?;
        check_range("rise", self.rise, 1, 100)
    }

    /// The stored settings with this edit applied, checked as a whole (a shorter interval
    /// must still leave room for the stored timeout).
    pub fn apply(&self, stored: &CheckSettings) -> Result<CheckSettings, String> {
        self.check()?;
        let settings = CheckSettings {
            health_check_path: self.health_check_path.clone().unwrap_or_else(|| stored.health_check_path.clone()),
            check_interval_ms: self.check_interval_ms.unwrap_or(stored.check_interval_ms),
            check_timeout_ms: self.check_timeout_ms.unwrap_or(stored.check_timeout_ms),
            fall: self.fall.unwrap_or(stored.fall),
            rise: self.rise.unwrap_or(stored.rise),
        };
        settings.check()?;
        Ok(settings)
    }
}

/// A cluster as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub nodes: i64,
    /// Every registered instance, expired ones included.
    pub instances: i64,
    /// Instances not expired (these keep it from being removed).
    pub live_instances: i64,
}

/// A node as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Node {
    pub cluster: String,
    pub name: String,
    pub address: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub instances: i64,
    pub live_instances: i64,
}

/// A service with its health-check settings, versions and instance counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Service {
    pub name: String,
    pub description: Option<String>,
    #[serde(flatten)]
    pub settings: CheckSettings,
    /// Version labels seen for it, oldest first.
    pub versions: Vec<String>,
    pub instances: i64,
    pub live_instances: i64,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> NewService {
        NewService {
            name: "web".into(),
            description: Some("the shop front".into()),
            health_check_path: None,
            check_interval_ms: None,
            check_timeout_ms: None,
            fall: None,
            rise: None,
        }
    }

    fn refused(result: Result<impl std::fmt::Debug, String>, field: &str) {
        let error = result.expect_err(field);
        assert!(error.starts_with(field), "{field}: {error}");
    }

    #[test]
    fn a_new_service_gets_the_table_defaults_and_passes() {
        assert!(service().check().is_ok());
        assert_eq!(service().settings(), CheckSettings::default());
        assert!(CheckSettings::default().check().is_ok(), "the defaults obey the rules");
    }

    #[test]
    fn each_bad_service_field_is_named_with_its_rule() {
        let cases: Vec<(NewService, &str)> = vec![
            (NewService { name: "".into(), ..service() }, "name:"),
            (NewService { name: "Web Shop".into(), ..service() }, "name:"),
            (NewService { name: "x".repeat(64), ..service() }, "name:"),
            (NewService { description: Some("x".repeat(501)), ..service() }, "description:"),
            (NewService { description: Some("a\u{0}b".into()), ..service() }, "description:"),
            (NewService { description: Some("line\nbreak".into()), ..service() }, "description:"),
            (NewService { health_check_path: Some("healthz".into()), ..service() }, "health_check_path:"),
            (NewService { health_check_path: Some("/health z".into()), ..service() }, "health_check_path:"),
            (
                NewService { health_check_path: Some(format!("/{}", "x".repeat(1000))), ..service() },
                "health_check_path:",
            ),
            (NewService { check_interval_ms: Some(499), ..service() }, "check_interval_ms:"),
            (NewService { check_interval_ms: Some(3_600_001), ..service() }, "check_interval_ms:"),
            (NewService { check_timeout_ms: Some(49), ..service() }, "check_timeout_ms:"),
            (
                NewService { check_timeout_ms: Some(60_001), check_interval_ms: Some(90_000), ..service() },
                "check_timeout_ms:",
            ),
            (NewService { check_timeout_ms: Some(5000), ..service() }, "check_timeout_ms:"),
            (NewService { fall: Some(0), ..service() }, "fall:"),
            (NewService { rise: Some(101), ..service() }, "rise:"),
        ];
        for (request, field) in cases {
            refused(request.check(), field);
        }
    }

    #[test]
    fn the_bounds_themselves_are_allowed() {
        let edge = NewService {
            description: Some("é".repeat(500)),
            health_check_path: Some(format!("/{}", "x".repeat(999))),
            check_interval_ms: Some(3_600_000),
            check_timeout_ms: Some(60_000),
            fall: Some(100),
            rise: Some(1),
            ..service()
        };
        assert_eq!(edge.check(), Ok(()));
        let fastest = NewService { check_interval_ms: Some(500), check_timeout_ms: Some(50), ..service() };
        assert_eq!(fastest.check(), Ok(()));
    }

    #[test]
    fn a_service_edit_is_checked_against_the_stored_settings() {
        let stored = CheckSettings::default();
        let faster = ServiceEdit { check_interval_ms: Some(500), fall: Some(1), ..ServiceEdit::default() };
        let applied = faster.apply(&stored);
        refused(applied, "check_timeout_ms:"); // the stored 2000 ms timeout no longer fits
        let both = ServiceEdit { check_interval_ms: Some(500), check_timeout_ms: Some(300), ..ServiceEdit::default() };
        let applied = both.apply(&stored).expect("fits");
        assert_eq!((applied.check_interval_ms, applied.check_timeout_ms, applied.fall), (500, 300, DEFAULT_FALL));
        refused(ServiceEdit::default().check(), "description, health_check_path");
        refused(ServiceEdit { rise: Some(0), ..ServiceEdit::default() }.check(), "rise:");
    }

    #[test]
    fn a_patch_tells_absent_from_null() {
        let absent: ServiceEdit = serde_json::from_str(r#"{"fall": 2}"#).expect("parses");
        assert_eq!(absent.description, None);
        let cleared: ServiceEdit = serde_json::from_str(r#"{"description": null}"#).expect("parses");
        assert_eq!(cleared.description, Some(None));
        assert_eq!(cleared.check(), Ok(()));
        let set: ClusterEdit = serde_json::from_str(r#"{"description": "primary"}"#).expect("parses");
        assert_eq!(set.description, Some(Some("primary".into())));
        assert!(serde_json::from_str::<ClusterEdit>(r#"{"name": "other"}"#).is_err(), "unknown fields are refused");
    }

    #[test]
    fn nodes_and_clusters_name_their_bad_fields() {
        refused(NewCluster { name: "../etc".into(), description: None }.check(), "name:");
        refused(NewCluster { name: "eu-1".into(), description: Some("\u{1b}[31m".into()) }.check(), "description:");
        let node = NewNode { name: "node-a".into(), address: Some("10.0.0.7".into()), description: None };
        assert_eq!(node.check(), Ok(()));
        refused(NewNode { address: Some("a host".into()), ..node.clone() }.check(), "address:");
        refused(NewNode { name: "".into(), ..node }.check(), "name:");
        refused(NodeEdit::default().check(), "address, description:");
        refused(NodeEdit { address: Some(Some("".into())), description: None }.check(), "address:");
        assert_eq!(NodeEdit { address: Some(None), description: None }.check(), Ok(()), "null clears the address");
        refused(ClusterEdit::default().check(), "description:");
    }
}
