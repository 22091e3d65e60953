//! Traffic policy: the share of a service's requests each version gets, how a user is kept on
//! one version (sticky canary), and which requests belong to the service (routing). Written by
//! release control, read by every data plane (`opsdeck router`, HAProxy).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One version's share of a service's requests, in whole percent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VersionWeight {
    /// The version label, e.g. `v2`.
    pub version: String,
    /// 0–100; the weights of a policy sum to 100.
    pub percent: u8,
}

/// Which requests belong to a service. Neither `host` nor `path_prefix` set: a Host header equal
/// to the service's name, or starting with `<name>.`, routes to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The Host header (without port) this service answers.
    #[serde(default)]
    pub host: Option<String>,
    /// A path prefix such as `/shop`; with `host` too, both must match.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Remove the prefix before the request goes upstream.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// How one user is kept on one version: requests with the same value of this header (or cookie)
/// get the same version while the weights stay the same, and a user already on the canary stays
/// on it as its share grows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A service's traffic policy as stored, with its revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TrafficPolicy {
    pub service: String,
    /// Raised by one on every change; 0 means the service has no policy yet (every healthy
    /// instance of any version shares the traffic).
    pub revision: i64,
    /// Empty: no policy (see `revision`).
    pub weights: Vec<VersionWeight>,
    pub sticky: Sticky,
    pub route: Route,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: String,
}

impl TrafficPolicy {
    /// The policy of a service nobody has set one for.
    pub fn none(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            revision: 0,
            weights: Vec::new(),
            sticky: Sticky::default(),
            route: Route::default(),
            updated_at: None,
            updated_by: "nobody".to_owned(),
        }
    }

    /// The share of `version`, in percent (0 when it has no weight).
    pub fn percent_of(&self, version: &str) -> u8 {
        self.weights.iter().find(|w| w.version == version).map_or(0, |w| w.percent)
    }

    /// Whether `host` (without port) and `path` belong to this service, and how long the
    /// matched prefix is (longer prefixes win when several services match).
    pub fn route_match(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host_ok = match (&self.route.host, host) {
            (Some(wanted), Some(host)) => wanted.eq_ignore_ascii_case(host),
            (Some(_), None) => false,
            (None, _) if self.route.path_prefix.is_some() => true,
            (None, Some(host)) => {
                host.eq_ignore_ascii_case(&self.service)
                    || host.len() > self.service.len()
                        && host[..self.service.len()].eq_ignore_ascii_case(&self.service)
                        && host.as_bytes()[self.service.len()] == b'.'
            }
            (None, None) => false,
        };
        if !host_ok {
            return None;
        }
        match &self.route.path_prefix {
            None => Some(0),
            Some(prefix) => path_has_prefix(path, prefix).then_some(prefix.len()),
        }
    }
}

/// `/shop` matches `/shop`, `/shop/` and `/shop/cart`, not `/shopping`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/') | Some(b'?'))
}

/// A change to a service's policy (`PUT /api/v1/services/{service}/traffic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrafficChange {
    /// The revision the caller saw; a different current revision is refused with 409 and the
    /// current policy (0 when the service had none).
    pub expected_revision: i64,
    pub weights: Vec<VersionWeight>,
    #[serde(default)]
    pub sticky: Sticky,
    #[serde(default)]
    pub route: Route,
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

impl TrafficChange {
    /// Checks the change on its own: weights present, unique, summing to 100; names well formed.
    pub fn check(&self) -> Result<(), String> {
        check_weights(&self.weights)?;
        if let Some(header) = &self.sticky.header
            && (header.is_empty()
                || header.len() > 64
                || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(format!("sticky.header {header:?}: use 1–64 letters, digits and '-'"));
        }
        if let Some(cookie) = &self.sticky.cookie
            && (cookie.is_empty()
                || cookie.len() > 64
                || !cookie.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return Err(format!("sticky.cookie {cookie:?}: use 1–64 letters, digits and '-', '_', '.'"));
        }
        if let Some(host) = &self.route.host
            && (host.is_empty() || host.len() > 253 || host.contains(['/', ' ', ':']))
        {
            return Err(format!("route.host {host:?}: give a host name without scheme, port or path"));
        }
        if let Some(prefix) = &self.route.path_prefix
            && (!prefix.starts_with('/') || prefix.contains(['?', '#', ' ']))
        {
            return Err(format!("route.path_prefix {prefix:?}: start with '/', without query or spaces"));
        }
        if self.route.strip_prefix && self.route.path_prefix.is_none() {
            return Err("route.strip_prefix needs route.path_prefix".to_owned());
        }
        Ok(())
    }
}

/// Weights are valid when each version appears once and they sum to 100.
pub fn check_weights(weights: &[VersionWeight]) -> Result<(), String> {
    if weights.is_empty() {
        return Err("weights: give at least one version (their percentages sum to 100)".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    for weight in weights {
        if !seen.insert(weight.version.as_str()) {
            return Err(format!("weights: version {:?} appears twice", weight.version));
        }
        if weight.percent > 100 {
            return Err(format!("weights: {} has {} %, more than 100", weight.version, weight.percent));
        }
    }
    let total: u32 = weights.iter().map(|w| u32::from(w.percent)).sum();
    if total != 100 {
        return Err(format!("weights: the percentages sum to {total}, not 100"));
    }
    Ok(())
}

/// The version a request falls into, for a `bucket` in 0..10 000 (uniformly random, or a hash
/// of the sticky value). Versions are taken in the order given, each covering its share of the
/// buckets, so a user's bucket keeps its version while the earlier shares stay the same.
pub fn version_for_bucket(weights: &[VersionWeight], bucket: u32) -> Option<&str> {
    let mut upper = 0_u32;
    for weight in weights {
        upper += u32::from(weight.percent) * 100;
        if bucket < upper {
            return Some(&weight.version);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u8)]) -> Vec<VersionWeight> {
        pairs.iter().map(|(v, p)| VersionWeight { version: (*v).to_owned(), percent: *p }).collect()
    }

    #[test]
    fn weights_must_sum_to_100_with_each_version_once() {
        assert!(check_weights(&weights(&[("v1", 90), ("v2", 10)])).is_ok());
        assert!(check_weights(&weights(&[("v1", 90), ("v2", 11)])).expect_err("refused").contains("101"));
        assert!(check_weights(&weights(&[("v1", 50), ("v1", 50)])).expect_err("refused").contains("twice"));
        assert!(check_weights(&[]).is_err());
    }

    #[test]
    fn buckets_split_by_percent_in_order() {
        let w = weights(&[("v2", 10), ("v1", 90)]);
        assert_eq!(version_for_bucket(&w, 0), Some("v2"));
        assert_eq!(version_for_bucket(&w, 999), Some("v2"));
        assert_eq!(version_for_bucket(&w, 1000), Some("v1"));
        assert_eq!(version_for_bucket(&w, 9999), Some("v1"));
        assert_eq!(version_for_bucket(&weights(&[("v1", 0), ("v2", 100)]), 0), Some("v2"));
    }

    #[test]
    fn routes_match_by_service_name_host_or_configured_prefix() {
        let mut policy = TrafficPolicy::none("web");
        assert_eq!(policy.route_match(Some("web"), "/"), Some(0));
        assert_eq!(policy.route_match(Some("web.example.org"), "/"), Some(0));
        assert_eq!(policy.route_match(Some("webshop"), "/"), None);
        policy.route.path_prefix = Some("/shop".to_owned());
        assert_eq!(policy.route_match(Some("anything"), "/shop/cart"), Some(5));
        assert_eq!(policy.route_match(None, "/shop"), Some(5));
        assert_eq!(policy.route_match(Some("anything"), "/shopping"), None);
        policy.route.host = Some("shop.example.org".to_owned());
        assert_eq!(policy.route_match(Some("other"), "/shop"), None);
    }
}
