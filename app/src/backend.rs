//! What the UI needs from the server, as a trait: the server implements it over its service
//! layer and provides it as Leptos context, so this crate never touches SQL or HTTP clients.

use std::{future::Future, pin::Pin, sync::Arc};

use crate::model::{
    Readiness,
    audit::{AuditFilter, AuditPage},
    charts::{NodeMetrics, ServiceMetrics, WindowQuery},
    health::{ServiceDetail, TopologyView},
    identity::{CreatedToken, CurrentUser, NewToken, NewUser, TokenSummary, UserSummary, UserUpdate, Username},
    logs::{LogPage, LogQuery},
    releases::{ActionPreview, Conflict, InboxItem, Release, ReleaseActionRequest, ReleaseDetail, StartRelease},
    trace::TraceView,
    traffic::TrafficPolicy,
};

/// A refusal or failure, already worded for the person in front of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    /// The HTTP status it corresponds to (401, 403, 404, 409, 422, 500…).
    pub status: u16,
    pub message: String,
}

pub type BackendResult<T> = Result<T, BackendError>;

/// A boxed future, because trait objects can't have `async fn` methods yet.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The server-side operations behind the pages' server functions.
pub trait Backend: Send + Sync + 'static {
    /// Checks every dependency now (the same report `/readyz` returns).
    fn readiness(&self) -> BoxFuture<'_, Readiness>;

    /// The signed-in user of this request, if any.
    fn current_user(&self) -> BoxFuture<'_, BackendResult<Option<CurrentUser>>>;

    /// The audit log (needs read).
    fn audit(&self, filter: AuditFilter) -> BoxFuture<'_, BackendResult<AuditPage>>;

    /// The aggregated topology and health model (needs read).
    fn topology(&self) -> BoxFuture<'_, BackendResult<TopologyView>>;

    /// One service in depth (needs read).
    fn service_detail(&self, service: String) -> BoxFuture<'_, BackendResult<ServiceDetail>>;

    /// A page of log lines, newest first, with counts by level on the first page (needs read).
    fn logs(&self, query: LogQuery) -> BoxFuture<'_, BackendResult<LogPage>>;

    /// Every line of a trace and the path it took (needs read).
    fn trace(&self, trace_id: String) -> BoxFuture<'_, BackendResult<TraceView>>;

    /// A service's request metrics per version over a window (needs read).
    fn service_metrics(&self, service: String, window: WindowQuery) -> BoxFuture<'_, BackendResult<ServiceMetrics>>;

    /// A node's CPU and memory over a window, and its instances (needs read).
    fn node_metrics(
        &self,
        cluster: String,
        node: String,
        window: WindowQuery,
    ) -> BoxFuture<'_, BackendResult<NodeMetrics>>;

    /// Users and tokens (need admin).
    fn users(&self) -> BoxFuture<'_, BackendResult<Vec<UserSummary>>>;
    fn tokens(&self) -> BoxFuture<'_, BackendResult<Vec<TokenSummary>>>;

    /// Changes (need admin and this session's CSRF token).
    fn create_user(&self, csrf: String, user: NewUser) -> BoxFuture<'_, BackendResult<UserSummary>>;
    fn update_user(
        &self,
        csrf: String,
        username: Username,
        change: UserUpdate,
    ) -> BoxFuture<'_, BackendResult<UserSummary>>;
    fn create_token(&self, csrf: String, token: NewToken) -> BoxFuture<'_, BackendResult<CreatedToken>>;
    fn revoke_token(&self, csrf: String, id: i64) -> BoxFuture<'_, BackendResult<TokenSummary>>;

    /// Releases, in progress first, then newest (needs read); `service` narrows to one.
    fn releases(&self, service: Option<String>) -> BoxFuture<'_, BackendResult<Vec<Release>>>;

    /// One release with its verdicts and actions (needs read).
    fn release_detail(&self, id: i64) -> BoxFuture<'_, BackendResult<ReleaseDetail>>;

    /// What waits for a person (needs read).
    fn inbox(&self) -> BoxFuture<'_, BackendResult<Vec<InboxItem>>>;

    /// A service's traffic policy (needs read).
    fn traffic_policy(&self, service: String) -> BoxFuture<'_, BackendResult<TrafficPolicy>>;

    /// A fresh idempotency key for one confirmation (a UUID).
    fn new_idempotency_key(&self) -> String;

    /// What an action would do, for the confirmation dialog (needs read).
    fn release_preview(
        &self,
        id: i64,
        action: crate::model::releases::ReleaseAction,
    ) -> BoxFuture<'_, BackendResult<DialogPreview>>;

    /// Acts on a release (needs operate and this session's CSRF token); a stale revision is an
    /// [`Acted::Stale`], not an error, so the page can show the present and ask again.
    fn act_on_release(
        &self,
        csrf: String,
        id: i64,
        request: ReleaseActionRequest,
        idempotency_key: String,
    ) -> BoxFuture<'_, BackendResult<Acted<Release>>>;

    /// Starts a release of `service` (needs operate and the CSRF token).
    fn start_release(
        &self,
        csrf: String,
        service: String,
        start: StartRelease,
        idempotency_key: String,
    ) -> BoxFuture<'_, BackendResult<Acted<Release>>>;
}

/// A preview for the confirmation dialog, with a fresh idempotency key for the one confirm it
/// leads to (made on the server, so the dialog works the same before and after hydration, and a
/// double click or a resent form carries the same key and acts once).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DialogPreview {
    pub preview: ActionPreview,
    pub idempotency_key: String,
}

/// The answer to a change made with the revision the person saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Acted<T> {
    /// Done (or already done with this idempotency key).
    Applied { value: T },
    /// Someone changed the policy first: nothing was done; here is the present (HTTP 409).
    Stale { conflict: Box<Conflict> },
}

/// The handle stored in Leptos context.
pub type SharedBackend = Arc<dyn Backend>;

/// The sign-in form's anti-forgery token for this request. The server puts it in the request's
/// extensions (and the same value in the `opsdeck_login_csrf` cookie) before the page renders,
/// so the form needs no server round trip and the hydrated page reads the same value back.
#[derive(Debug, Clone)]
pub struct LoginFormToken(pub String);

/// The cookie that carries [`LoginFormToken`] (readable by the page, so not HttpOnly).
pub const LOGIN_FORM_COOKIE: &str = "opsdeck_login_csrf";
