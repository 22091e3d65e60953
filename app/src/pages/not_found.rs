//! The page for an address opsdeck doesn't know (HTTP 404).

use leptos::prelude::*;
use leptos_meta::Title;

/// Says what was asked for and where to go instead.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    let path = leptos_router::hooks::use_location().pathname;
    view! {
        <Title text="Not found" />
        <section class="page page-not-found">
            <h1>"Nothing here"</h1>
            <p>"opsdeck has no page at " <code>{move || path.get()}</code> "."</p>
            <p><a href="/">"Go to the overview"</a></p>
        </section>
    }
}
