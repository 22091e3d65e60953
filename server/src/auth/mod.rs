//! Identity and access: users and roles, browser sessions with CSRF protection, scoped API
//! tokens, and the one place that decides who may do what ([`extract::authorize`]).

pub mod cli;
mod extract;
pub mod password;
pub mod secret;
pub mod sessions;
pub mod tokens;
pub mod users;

use app::model::identity::Whoami;
use axum::Json;
pub use extract::{
    Admin, Authorized, Csrf, Ingest, Operate, Permission, Principal, Read, RequestContext, SessionUser, TokenHolder,
    authorize, identify,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{http::error::ErrorBody, state::AppState};

/// The JSON API of this feature (mounted under `/api/v1`).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me)).merge(users::routes()).merge(tokens::routes())
}

/// Who the caller is: user or token, with role and scopes.
#[utoipa::path(get, path = "/me", tag = "access",
    responses((status = 200, body = Whoami), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn me(caller: Authorized<Read>) -> Json<Whoami> {
    Json(caller.principal.whoami())
}
