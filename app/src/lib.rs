//! opsdeck's user interface: the app shell, its pages and components, the model types the
//! browser and the server share, and the server functions the pages call.
//!
//! Compiled twice: with `ssr` into the server (rendering and server functions) and with
//! `hydrate` into the wasm bundle. Server functions are thin adapters over [`backend::Backend`],
//! which the server implements and provides as context; no SQL or HTTP client lives here.

// Leptos' typed views nest deeply; the topology page's type needs more than the default 128.
#![recursion_limit = "256"]

pub mod api;
pub mod backend;
pub mod components;
pub mod model;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    ParamSegment, StaticSegment,
    components::{Route, Router, Routes},
};

use crate::components::shell::Shell;
use crate::pages::{
    admin::AdminPage,
    audit::AuditPage,
    login::LoginPage,
    logs::LogsPage,
    nodes::NodePage,
    not_found::NotFound,
    overview::OverviewPage,
    release_detail::ReleaseDetailPage,
    releases::ReleasesPage,
    services::{ServicePage, ServicesPage},
    topology::TopologyPage,
    trace::TracePage,
};

/// The HTML document around the app: rendered once per request on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="dark light" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The root component: stylesheet, router and the shell every page sits in.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="opsdeck" href="/pkg/opsdeck.css" />
        <Title formatter=|page: String| format!("{page} · opsdeck") />
        <Router>
            <Shell>
                <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=OverviewPage />
                    <Route path=StaticSegment("login") view=LoginPage />
                    <Route path=StaticSegment("topology") view=TopologyPage />
                    <Route path=StaticSegment("services") view=ServicesPage />
                    <Route path=(StaticSegment("services"), ParamSegment("name")) view=ServicePage />
                    <Route path=StaticSegment("releases") view=ReleasesPage />
                    <Route path=(StaticSegment("releases"), ParamSegment("id")) view=ReleaseDetailPage />
                    <Route path=StaticSegment("logs") view=LogsPage />
                    <Route path=(StaticSegment("traces"), ParamSegment("trace_id")) view=TracePage />
                    <Route path=(StaticSegment("nodes"), ParamSegment("cluster"), ParamSegment("node")) view=NodePage />
                    <Route path=StaticSegment("audit") view=AuditPage />
                    <Route path=StaticSegment("admin") view=AdminPage />
                </Routes>
            </Shell>
        </Router>
    }
}
