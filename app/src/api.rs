//! Server functions: thin adapters from the pages to the server's [`Backend`](crate::backend::Backend).
//! Each one takes the backend from context and calls it; refusals arrive as [`UiError`] with
//! the status and a message for people.

use std::fmt;

use leptos::prelude::*;
use leptos::server_fn::{self, codec::JsonEncoding};
use serde::{Deserialize, Serialize};

use crate::backend::{Acted, DialogPreview};
#[cfg(feature = "ssr")]
use crate::model::identity::{NewToken, NewUser, Role, Scope, UserUpdate, Username};
use crate::model::{
    Readiness,
    audit::{AuditFilter, AuditPage},
    charts::{NodeMetrics, ServiceMetrics, WindowQuery},
    health::{ServiceDetail, TopologyView},
    identity::{CreatedToken, CurrentUser, TokenSummary, UserSummary},
    logs::{LogPage, LogQuery},
    releases::{InboxItem, Release, ReleaseDetail},
    trace::TraceView,
    traffic::TrafficPolicy,
};

/// What a page shows when a server function fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiError {
    /// 401: sign in; 403: not allowed; 0: could not reach the server.
    pub status: u16,
    pub message: String,
}

impl fmt::Display for UiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UiError {}

impl server_fn::error::FromServerFnError for UiError {
    type Encoder = JsonEncoding;
    fn from_server_fn_error(value: server_fn::error::ServerFnErrorErr) -> Self {
        UiError { status: 0, message: format!("the opsdeck server could not be reached ({value})") }
    }
}

#[cfg(feature = "ssr")]
fn backend() -> Result<crate::backend::SharedBackend, UiError> {
    use_context::<crate::backend::SharedBackend>()
        .ok_or_else(|| UiError { status: 500, message: "the server did not provide its backend to the UI".into() })
}

#[cfg(feature = "ssr")]
impl From<crate::backend::BackendError> for UiError {
    fn from(e: crate::backend::BackendError) -> Self {
        #[cfg(feature = "ssr")]
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>()
            && let Ok(status) = http::StatusCode::from_u16(e.status)
        {
            response.set_status(status);
        }
        UiError { status: e.status, message: e.message }
    }
}

/// For data that is one panel of a page (charts): a refusal (4xx) still sets the page's status,
/// but a store being down (5xx) is told inside the panel and the page stays a 200 — the rest of
/// it (instances, changes) is fine.
#[cfg(feature = "ssr")]
fn panel_error(e: crate::backend::BackendError) -> UiError {
    if e.status < 500 { e.into() } else { UiError { status: e.status, message: e.message } }
}

/// The current readiness of opsdeck's stores, checked live on the server (public, like `/readyz`).
#[server(prefix = "/_fn")]
pub async fn get_readiness() -> Result<Readiness, UiError> {
    Ok(backend()?.readiness().await)
}

#[server(prefix = "/_fn")]
pub async fn get_current_user() -> Result<Option<CurrentUser>, UiError> {
    Ok(backend()?.current_user().await?)
}

#[server(prefix = "/_fn")]
pub async fn list_audit(filter: AuditFilter) -> Result<AuditPage, UiError> {
    Ok(backend()?.audit(filter).await?)
}

#[server(prefix = "/_fn")]
pub async fn get_topology() -> Result<TopologyView, UiError> {
    Ok(backend()?.topology().await?)
}

#[server(prefix = "/_fn")]
pub async fn get_service_detail(service: String) -> Result<ServiceDetail, UiError> {
    Ok(backend()?.service_detail(service).await?)
}

/// A page of the log search (the logs page).
#[server(prefix = "/_fn")]
pub async fn get_logs(query: LogQuery) -> Result<LogPage, UiError> {
    Ok(backend()?.logs(query).await?)
}

/// One trace: its lines, spans and hops (the trace page).
#[server(prefix = "/_fn")]
pub async fn get_trace(trace_id: String) -> Result<TraceView, UiError> {
    Ok(backend()?.trace(trace_id).await?)
}

/// The traffic charts of a service (request rate, error rate, latency per version).
/// `window` defaults: a window with no fields set (the last hour) leaves nothing in the
/// url-encoded body, and would otherwise fail to decode after hydration.
#[server(prefix = "/_fn")]
pub async fn get_service_metrics(
    service: String,
    #[server(default)] window: WindowQuery,
) -> Result<ServiceMetrics, UiError> {
    backend()?.service_metrics(service, window).await.map_err(panel_error)
}

/// A node's CPU and memory charts and the instances on it.
#[server(prefix = "/_fn")]
pub async fn get_node_metrics(
    cluster: String,
    node: String,
    #[server(default)] window: WindowQuery,
) -> Result<NodeMetrics, UiError> {
    backend()?.node_metrics(cluster, node, window).await.map_err(panel_error)
}

#[server(prefix = "/_fn")]
pub async fn list_users() -> Result<Vec<UserSummary>, UiError> {
    Ok(backend()?.users().await?)
}

#[server(prefix = "/_fn")]
pub async fn list_tokens() -> Result<Vec<TokenSummary>, UiError> {
    Ok(backend()?.tokens().await?)
}

/// From the add-user form (works before hydration: plain form fields).
#[server(prefix = "/_fn")]
pub async fn add_user(
    csrf: String,
    username: String,
    display_name: String,
    role: String,
    password: String,
) -> Result<UserSummary, UiError> {
    let invalid = |message: String| UiError { status: 422, message };
    let username: Username = username.trim().parse().map_err(invalid)?;
    let role: Role = role.parse().map_err(|e: crate::model::identity::NotOneOf| invalid(e.to_string()))?;
    let display_name = if display_name.trim().is_empty() { username.to_string() } else { display_name };
    Ok(backend()?.create_user(csrf, NewUser { username, display_name, role, password }).await?)
}

/// Changes one user's role or disabled state.
#[server(prefix = "/_fn")]
pub async fn change_user(
    csrf: String,
    username: String,
    role: Option<String>,
    disabled: Option<bool>,
) -> Result<UserSummary, UiError> {
    let invalid = |message: String| UiError { status: 422, message };
    let username: Username = username.parse().map_err(invalid)?;
    let role = match role.filter(|r| !r.is_empty()) {
        Some(r) => Some(r.parse::<Role>().map_err(|e| invalid(e.to_string()))?),
        None => None,
    };
    Ok(backend()?.update_user(csrf, username, UserUpdate { role, disabled, ..Default::default() }).await?)
}

/// From the create-token form: one checkbox per scope (present when ticked), expiry in days
/// (empty = never).
#[server(prefix = "/_fn")]
pub async fn add_token(
    csrf: String,
    name: String,
    scope_ingest: Option<String>,
    scope_read: Option<String>,
    scope_operate: Option<String>,
    scope_admin: Option<String>,
    expires_in_days: String,
) -> Result<CreatedToken, UiError> {
    let invalid = |message: String| UiError { status: 422, message };
    let ticked = [
        (Scope::Ingest, scope_ingest),
        (Scope::Read, scope_read),
        (Scope::Operate, scope_operate),
        (Scope::Admin, scope_admin),
    ];
    let scopes: Vec<Scope> = ticked.into_iter().filter(|(_, box_)| box_.is_some()).map(|(scope, _)| scope).collect();
    let expires_in_days = match expires_in_days.trim() {
        "" => None,
        days => Some(
            days.parse::<u32>()
                .map_err(|_| invalid("expires_in_days: a whole number of days, or empty for never".into()))?,
        ),
    };
    Ok(backend()?.create_token(csrf, NewToken { name, scopes, expires_in_days }).await?)
}

#[server(prefix = "/_fn")]
pub async fn revoke_token(csrf: String, id: i64) -> Result<TokenSummary, UiError> {
    Ok(backend()?.revoke_token(csrf, id).await?)
}

/// Releases, in progress first (the releases page; `service` narrows it for the service page).
#[server(prefix = "/_fn")]
pub async fn get_releases(service: Option<String>) -> Result<Vec<Release>, UiError> {
    Ok(backend()?.releases(service.filter(|s| !s.is_empty())).await?)
}

#[server(prefix = "/_fn")]
pub async fn get_release_detail(id: i64) -> Result<ReleaseDetail, UiError> {
    Ok(backend()?.release_detail(id).await?)
}

#[server(prefix = "/_fn")]
pub async fn get_inbox() -> Result<Vec<InboxItem>, UiError> {
    Ok(backend()?.inbox().await?)
}

#[server(prefix = "/_fn")]
pub async fn get_traffic_policy(service: String) -> Result<TrafficPolicy, UiError> {
    Ok(backend()?.traffic_policy(service).await?)
}

/// The confirmation dialog's preview of `action` (`set_percent` with `percent`), with the key
/// its confirm will carry.
#[server(prefix = "/_fn")]
pub async fn get_release_preview(id: i64, action: String, percent: Option<u8>) -> Result<DialogPreview, UiError> {
    let action = crate::components::release_actions::parse_action(&action, percent)
        .map_err(|message| UiError { status: 422, message })?;
    Ok(backend()?.release_preview(id, action).await?)
}

/// The dialog's confirm: the action, the revision its preview was computed at, and the
/// preview's idempotency key. A stale revision comes back as [`Acted::Stale`] with the present.
#[server(prefix = "/_fn")]
pub async fn act_on_release(
    csrf: String,
    release_id: i64,
    action: String,
    percent: Option<u8>,
    expected_revision: i64,
    idempotency_key: String,
    reason: Option<String>,
) -> Result<Acted<Release>, UiError> {
    let action = crate::components::release_actions::parse_action(&action, percent)
        .map_err(|message| UiError { status: 422, message })?;
    let reason = reason.filter(|r| !r.trim().is_empty());
    let request = crate::model::releases::ReleaseActionRequest { action, expected_revision, reason };
    Ok(backend()?.act_on_release(csrf, release_id, request, idempotency_key).await?)
}

/// A fresh idempotency key for the start dialog's one confirm.
#[server(prefix = "/_fn")]
pub async fn get_idempotency_key() -> Result<String, UiError> {
    Ok(backend()?.new_idempotency_key())
}

/// The service page's "start release" form, after its confirmation.
#[server(prefix = "/_fn")]
pub async fn start_release(
    csrf: String,
    service: String,
    form: crate::components::release_start::StartForm,
    idempotency_key: String,
) -> Result<Acted<Release>, UiError> {
    let start = form.to_request().map_err(|message| UiError { status: 422, message })?;
    Ok(backend()?.start_release(csrf, service, start, idempotency_key).await?)
}
