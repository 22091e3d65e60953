//! The audit log as the API and the audit page show it.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::identity::NotOneOf;

/// Everything opsdeck records. Stored as its dotted name; later features add their actions here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum AuditAction {
    #[serde(rename = "auth.login")]
    Login,
    #[serde(rename = "auth.logout")]
    Logout,
    /// A request refused for want of identity, role or scope.
    #[serde(rename = "access.denied")]
    AccessDenied,
    #[serde(rename = "user.create")]
    UserCreate,
    #[serde(rename = "user.update")]
    UserUpdate,
    #[serde(rename = "token.create")]
    TokenCreate,
    #[serde(rename = "token.revoke")]
    TokenRevoke,
    /// A cluster, node or service created, edited or removed through the API.
    #[serde(rename = "topology.change")]
    TopologyChange,
    /// A release started (canary, blue-green, rolling or rollback).
    #[serde(rename = "release.start")]
    ReleaseStart,
    /// An action on a release, by a person or by the analysis worker (automatic rollback).
    #[serde(rename = "release.action")]
    ReleaseAction,
    /// A traffic policy set by hand (`PUT /api/v1/services/{service}/traffic`).
    #[serde(rename = "traffic.change")]
    TrafficChange,
}

impl AuditAction {
    pub const ALL: [AuditAction; 11] = [
        AuditAction::Login,
        AuditAction::Logout,
        AuditAction::AccessDenied,
        AuditAction::UserCreate,
        AuditAction::UserUpdate,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::TopologyChange,
        AuditAction::ReleaseStart,
        AuditAction::ReleaseAction,
        AuditAction::TrafficChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "auth.login",
            AuditAction::Logout => "auth.logout",
            AuditAction::AccessDenied => "access.denied",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserUpdate => "user.update",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::TopologyChange => "topology.change",
            AuditAction::ReleaseStart => "release.start",
            AuditAction::ReleaseAction => "release.action",
            AuditAction::TrafficChange => "traffic.change",
        }
    }
}

impl FromStr for AuditAction {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| NotOneOf {
            given: s.to_owned(),
            allowed: &[
                "auth.login",
                "auth.logout",
                "access.denied",
                "user.create",
                "user.update",
                "token.create",
                "token.revoke",
                "topology.change",
                "release.start",
                "release.action",
                "traffic.change",
            ],
        })
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Success,
    /// Refused: no identity, wrong role or scope, too many attempts.
    Denied,
    /// Tried and failed: a wrong password, an error.
    Failed,
}

impl AuditOutcome {
    pub const ALL: [AuditOutcome; 3] = [AuditOutcome::Success, AuditOutcome::Denied, AuditOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl FromStr for AuditOutcome {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditOutcome::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| NotOneOf { given: s.to_owned(), allowed: &["success", "denied", "failed"] })
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user`, `token`, `anonymous` or `system`.
    pub actor_kind: String,
    pub actor_name: String,
    pub action: String,
    pub target: Option<String>,
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Object>))]
    pub before: Option<serde_json::Value>,
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Object>))]
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
    pub request_id: Option<String>,
    pub source_address: Option<String>,
}

/// Filters for the audit log; every field is optional. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams, utoipa::ToSchema))]
pub struct AuditFilter {
    /// Actor name, exact.
    pub actor: Option<String>,
    /// Action name, e.g. `auth.login`.
    pub action: Option<String>,
    /// `success`, `denied` or `failed`.
    pub outcome: Option<String>,
    /// Only rows at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only rows with an id below this (use `next_before` of the previous page).
    pub before: Option<i64>,
    /// Rows per page, 1–500 (default 100).
    pub limit: Option<i64>,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}
