//! The JSON API under `/api/v1`, and its OpenAPI document (generated from the handlers with
//! utoipa) at `/api/openapi.json`: one contract for tests and users.

use axum::{Json, Router, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opsdeck",
        description = "Operations dashboard and release control plane. Authenticate with `Authorization: Bearer <token>` \
                       (tokens from `opsdeck token create` or the admin page); browser sessions also work and must send \
                       `x-csrf-token` on changes. Errors are `{\"error\": kind, \"detail\": text}`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "opsdeck's own liveness and readiness"),
        (name = "access", description = "Who you are; users and API tokens"),
        (name = "audit", description = "The append-only record of every action and refusal"),
        (name = "topology", description = "Service discovery: registration, heartbeats, healthy endpoints"),
        (name = "events", description = "Live changes as Server-Sent Events"),
        (name = "metrics", description = "Metrics ingest (InfluxDB line protocol) and chart queries"),
        (name = "logs", description = "Log lines: NDJSON ingest and search"),
        (name = "releases", description = "Releases (canary, blue-green, rolling, rollback), traffic policies, the inbox"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::sessions::SESSION_COOKIE))),
        );
    }
}

/// Every documented route, and the document itself.
pub fn routes() -> Router<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(crate::auth::api_routes())
        .merge(crate::audit::routes())
        .merge(crate::topology::api_routes())
        .merge(crate::events::routes())
        .merge(crate::metrics::routes())
        .merge(crate::charts::routes())
        .merge(crate::logs::routes())
        .merge(crate::releases::routes());
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::health::routes())
        .merge(crate::metrics::root_routes())
        .nest("/api/v1", v1)
        .split_for_parts();
    let document = std::sync::Arc::new(openapi);
    router.route("/api/openapi.json", get(move || std::future::ready(Json(document.as_ref().clone()))))
}
