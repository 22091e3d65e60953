//! The Leptos UI inside axum: server-side rendering of the `app` crate's routes, its server
//! functions, the static bundle, the sign-in gate for pages, and the
//! [`Backend`](app::backend::Backend) the server functions call — over the same service
//! functions and the same [`auth::authorize`] as the JSON API.

mod releases;

use std::sync::Arc;

use app::{
    backend::{Acted, Backend, BackendError, BackendResult, BoxFuture, DialogPreview, SharedBackend},
    model::{
        Readiness,
        audit::{AuditFilter, AuditPage},
        charts::{NodeMetrics, ServiceMetrics, WindowQuery},
        health::{ServiceDetail, TopologyView},
        identity::{
            CreatedToken, CurrentUser, NewToken, NewUser, Scope, TokenSummary, UserSummary, UserUpdate, Username,
        },
        logs::{LogPage, LogQuery},
        releases::{InboxItem, Release, ReleaseAction, ReleaseActionRequest, ReleaseDetail, StartRelease},
        trace::TraceView,
        traffic::TrafficPolicy,
    },
};
use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
};
use http::request::Parts;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::{LeptosRoutes, ResponseOptions, generate_route_list};

use crate::{
    audit,
    auth::{self, Csrf, Principal, RequestContext, sessions},
    http::error::ApiError,
    state::AppState,
};

/// The server's side of what the UI needs.
struct ServerBackend {
    state: AppState,
}

fn refused(error: ApiError) -> BackendError {
    let status = match &error {
        ApiError::BadRequest(_) => 400,
        ApiError::Unauthorized(_) => 401,
        ApiError::Forbidden(_) => 403,
        ApiError::NotFound(_) => 404,
        ApiError::Conflict(_) => 409,
        ApiError::Unprocessable(_) => 422,
        ApiError::TooManyRequests(_) => 429,
        ApiError::Unavailable(_) => 503,
        ApiError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "a page request failed");
            return BackendError { status: 500, message: "an unexpected error; the server log has the cause".into() };
        }
    };
    BackendError { status, message: error.to_string() }
}

/// The request behind the current server function or page render.
fn request_parts() -> BackendResult<Parts> {
    use_context::<Parts>().ok_or_else(|| BackendError { status: 500, message: "no request in context".into() })
}

impl ServerBackend {
    /// The caller, if allowed `scope`; `csrf` is the token a changing form sent.
    async fn allowed(
        &self,
        parts: &Parts,
        scope: Scope,
        csrf: Option<&str>,
    ) -> BackendResult<(Principal, RequestContext)> {
        let csrf = csrf.map_or(Csrf::NotNeeded, |token| Csrf::Submitted(Some(token)));
        let principal = auth::authorize(&self.state, parts, scope, csrf).await.map_err(refused)?;
        Ok((principal, RequestContext::from_parts(parts)))
    }
}

impl Backend for ServerBackend {
    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(crate::health::check_readiness(&self.state))
    }

    fn current_user(&self) -> BoxFuture<'_, BackendResult<Option<CurrentUser>>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            Ok(match auth::identify(&self.state, &parts.headers).await {
                Ok(Principal::User(user)) => Some(CurrentUser {
                    username: user.username,
                    display_name: user.display_name,
                    role: user.role,
                    csrf_token: user.csrf_token,
                }),
                _ => None,
            })
        })
    }

    fn audit(&self, filter: AuditFilter) -> BoxFuture<'_, BackendResult<AuditPage>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            audit::list(&self.state.db, &filter).await.map_err(refused)
        })
    }

    fn topology(&self) -> BoxFuture<'_, BackendResult<TopologyView>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            let last_event_id = self.state.events.last_id();
            crate::topology::view::load(&self.state.db, last_event_id).await.map_err(|e| refused(e.into()))
        })
    }

    fn service_detail(&self, service: String) -> BoxFuture<'_, BackendResult<ServiceDetail>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            let (db, influx, last) = (&self.state.db, &self.state.influx, self.state.events.last_id());
            crate::topology::detail::load(db, influx, &service, last).await.map_err(refused)
        })
    }

    fn logs(&self, query: LogQuery) -> BoxFuture<'_, BackendResult<LogPage>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            crate::logs::search_for_page(&self.state.db, query).await.map_err(refused)
        })
    }

    fn trace(&self, trace_id: String) -> BoxFuture<'_, BackendResult<TraceView>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            crate::logs::trace::load(&self.state, &trace_id).await.map_err(refused)
        })
    }

    fn service_metrics(&self, service: String, window: WindowQuery) -> BoxFuture<'_, BackendResult<ServiceMetrics>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            let window = crate::charts::window(&window).map_err(refused)?;
            crate::charts::service_metrics(&self.state.db, &self.state.influx, &service, window).await.map_err(refused)
        })
    }

    fn node_metrics(
        &self,
        cluster: String,
        node: String,
        window: WindowQuery,
    ) -> BoxFuture<'_, BackendResult<NodeMetrics>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Read, None).await?;
            let window = crate::charts::window(&window).map_err(refused)?;
            let (db, influx) = (&self.state.db, &self.state.influx);
            crate::charts::node_metrics(db, influx, &cluster, &node, window).await.map_err(refused)
        })
    }

    fn users(&self) -> BoxFuture<'_, BackendResult<Vec<UserSummary>>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Admin, None).await?;
            auth::users::list(&self.state.db).await.map_err(|e| refused(e.into()))
        })
    }

    fn tokens(&self) -> BoxFuture<'_, BackendResult<Vec<TokenSummary>>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            self.allowed(&parts, Scope::Admin, None).await?;
            auth::tokens::list(&self.state.db).await.map_err(|e| refused(e.into()))
        })
    }

    fn create_user(&self, csrf: String, user: NewUser) -> BoxFuture<'_, BackendResult<UserSummary>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            let (admin, context) = self.allowed(&parts, Scope::Admin, Some(&csrf)).await?;
            auth::users::create(&self.state.db, user, &admin.actor(), &context).await.map_err(refused)
        })
    }

    fn update_user(
        &self,
        csrf: String,
        username: Username,
        change: UserUpdate,
    ) -> BoxFuture<'_, BackendResult<UserSummary>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            let (admin, context) = self.allowed(&parts, Scope::Admin, Some(&csrf)).await?;
            auth::users::update(&self.state.db, &username, change, &admin.actor(), &context).await.map_err(refused)
        })
    }

    fn create_token(&self, csrf: String, token: NewToken) -> BoxFuture<'_, BackendResult<CreatedToken>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            let (admin, context) = self.allowed(&parts, Scope::Admin, Some(&csrf)).await?;
            auth::tokens::create(&self.state.db, &token, &admin.actor(), &context).await.map_err(refused)
        })
    }

    fn revoke_token(&self, csrf: String, id: i64) -> BoxFuture<'_, BackendResult<TokenSummary>> {
        let parts = request_parts();
        Box::pin(async move {
            let parts = parts?;
            let (admin, context) = self.allowed(&parts, Scope::Admin, Some(&csrf)).await?;
            auth::tokens::revoke(&self.state.db, id, &admin.actor(), &context).await.map_err(refused)
        })
    }

    fn releases(&self, service: Option<String>) -> BoxFuture<'_, BackendResult<Vec<Release>>> {
        let parts = request_parts();
        Box::pin(async move { self.releases_for(&parts?, service).await })
    }

    fn release_detail(&self, id: i64) -> BoxFuture<'_, BackendResult<ReleaseDetail>> {
        let parts = request_parts();
        Box::pin(async move { self.release_detail_for(&parts?, id).await })
    }

    fn inbox(&self) -> BoxFuture<'_, BackendResult<Vec<InboxItem>>> {
        let parts = request_parts();
        Box::pin(async move { self.inbox_for(&parts?).await })
    }

    fn traffic_policy(&self, service: String) -> BoxFuture<'_, BackendResult<TrafficPolicy>> {
        let parts = request_parts();
        Box::pin(async move { self.traffic_policy_for(&parts?, &service).await })
    }

    fn new_idempotency_key(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn release_preview(&self, id: i64, action: ReleaseAction) -> BoxFuture<'_, BackendResult<DialogPreview>> {
        let parts = request_parts();
        Box::pin(async move { self.preview_for(&parts?, id, action).await })
    }

    fn act_on_release(
        &self,
        csrf: String,
        id: i64,
        request: ReleaseActionRequest,
        idempotency_key: String,
    ) -> BoxFuture<'_, BackendResult<Acted<Release>>> {
        let parts = request_parts();
        Box::pin(async move { self.act_for(&parts?, &csrf, id, request, idempotency_key).await })
    }

    fn start_release(
        &self,
        csrf: String,
        service: String,
        start: StartRelease,
        idempotency_key: String,
    ) -> BoxFuture<'_, BackendResult<Acted<Release>>> {
        let parts = request_parts();
        Box::pin(async move { self.start_for(&parts?, &csrf, service, start, idempotency_key).await })
    }
}

/// Pages need a signed-in user (or anonymous read switched on); others are sent to sign in and
/// brought back afterwards. Server functions check for themselves.
async fn require_sign_in(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/login" && request.method() == http::Method::GET {
        return with_login_form_token(&state, request, next).await;
    }
    let path = request.uri().path();
    let exempt = path == "/login" || path.starts_with("/_fn/") || request.method() != http::Method::GET;
    if exempt || state.auth.anonymous_read {
        return next.run(request).await;
    }
    match auth::identify(&state, request.headers()).await {
        Ok(Principal::User(_) | Principal::Token(_)) => next.run(request).await,
        Ok(Principal::Anonymous) | Err(_) => {
            let here = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let query = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
            Redirect::to(&format!("/login?{query}")).into_response()
        }
    }
}

/// The sign-in page gets a fresh anti-forgery token: in the request for the render, and in a
/// cookie for the form post to match (double submit: there is no session yet).
async fn with_login_form_token(state: &AppState, mut request: Request, next: Next) -> Response {
    let token = auth::secret::random_secret();
    let secure = sessions::secure_cookies(state.auth.cookie_secure, request.headers());
    request.extensions_mut().insert(app::backend::LoginFormToken(token.clone()));
    let mut response = next.run(request).await;
    let cookie =
        sessions::readable_cookie(app::backend::LOGIN_FORM_COOKIE, token, std::time::Duration::from_secs(3600), secure);
    response.headers_mut().append(http::header::SET_COOKIE, cookie);
    response
}

/// Page routes, server-function routes, and static files from the site folder.
pub fn routes(state: &AppState) -> Router<AppState> {
    let backend: SharedBackend = Arc::new(ServerBackend { state: state.clone() });
    let context = move || {
        provide_context(backend.clone());
        // The page's Content-Security-Policy carries the nonce Leptos put on its inline script.
        if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
            && let Ok(value) = http::HeaderValue::from_str(&crate::http::security::page_csp(nonce.as_inner()))
        {
            response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
        }
    };
    let leptos_options = state.leptos.clone();
    Router::new()
        .leptos_routes_with_context(state, generate_route_list(app::App), context.clone(), move || {
            app::shell(leptos_options.clone())
        })
        .route_layer(middleware::from_fn_with_state(state.clone(), require_sign_in))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, app::shell))
}
