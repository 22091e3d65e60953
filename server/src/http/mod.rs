//! The HTTP surface: merges each feature's routes and wraps them in the tower-http layers every
//! request goes through (request id, tracing, compression, timeout, body limit).

pub mod api;
pub mod error;
pub mod security;

use axum::{Router, extract::MatchedPath, http::Request};
use http::{HeaderName, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::{
    compression::CompressionLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::cli::HttpSettings;
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole app: API, health, UI, with the common layers. Outermost layer first: sensitive
/// headers are masked, a request id is set (or the caller's kept), the span carries it, and it is
/// copied to the response.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let api_fallback = Router::new().fallback(error::api_not_found);
    let layers = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // Every answer at debug: agents and services post every second, so access lines
                // at info would bury everything else (counts and latencies are in /metrics);
                // failures are still logged at error by the layer's on_failure.
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(usize::try_from(settings.body_limit).unwrap_or(usize::MAX)))
        .layer(security::default_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security::default_header(header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .layer(security::default_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security::default_header(header::CONTENT_SECURITY_POLICY, security::DEFAULT_CSP))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout));
    Router::new()
        .merge(api::routes())
        .nest("/api", api_fallback)
        .merge(crate::auth::sessions::routes())
        .merge(crate::ui::routes(&state))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track_request))
        .layer(layers)
        .with_state(state)
}

/// One span per request, named by the route pattern (not the raw path) and the request id.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let path = request.extensions().get::<MatchedPath>().map_or(request.uri().path(), MatchedPath::as_str);
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("http", method = %request.method(), path, request_id)
}
