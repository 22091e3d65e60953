//! The Leptos UI inside axum: server-side rendering of the `app` crate's routes, its server
//! functions, the static bundle under `/pkg`, and the [`Backend`](app::backend::Backend) the
//! server functions call.

use std::sync::Arc;

use app::{
    backend::{Backend, BoxFuture, SharedBackend},
    model::Readiness,
};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};

use crate::state::AppState;

/// The server's side of what the UI needs.
struct ServerBackend {
    state: AppState,
}

impl Backend for ServerBackend {
    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(crate::health::check_readiness(&self.state))
    }
}

/// Page routes, server-function routes, and static files from the site folder.
pub fn routes(state: &AppState) -> Router<AppState> {
    let backend: SharedBackend = Arc::new(ServerBackend { state: state.clone() });
    let context = move || provide_context(backend.clone());
    let leptos_options = state.leptos.clone();
    Router::new()
        .leptos_routes_with_context(state, generate_route_list(app::App), context.clone(), move || {
            app::shell(leptos_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(context, app::shell))
}
