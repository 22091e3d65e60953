//! Sign-in: a plain form that posts to `/auth/login`, so it works before (and without) the wasm.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::backend::LOGIN_FORM_COOKIE;
use crate::components::theme::{cookie_in, page_cookies};

/// The form's anti-forgery token: from the request on the server (set there just before this
/// render), from the cookie it came with in the browser — the same value either way.
fn form_token() -> String {
    #[cfg(feature = "ssr")]
    if let Some(token) = use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::backend::LoginFormToken>().cloned())
    {
        return token.0;
    }
    cookie_in(&page_cookies(), LOGIN_FORM_COOKIE).unwrap_or_default().to_owned()
}

/// What the sign-in handler's `?error=` means, in words.
fn explain(error: &str) -> &'static str {
    match error {
        "invalid" => "Wrong user name or password.",
        "rate_limited" => "Too many failed sign-ins for this account or address. Wait a few minutes and try again.",
        "form_expired" => "The sign-in form had expired. Please try again.",
        _ => "Sign-in failed. Please try again.",
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.with(|q| q.get("next").unwrap_or_else(|| "/".into()));
    let error = move || query.with(|q| q.get("error"));
    let signed_out = move || query.with(|q| q.get("signed_out").is_some());
    let token = form_token();
    view! {
        <Title text="Sign in" />
        <section class="page page-login">
            <form class="panel login-form" method="post" action="/auth/login">
                <h1>"Sign in to opsdeck"</h1>
                {move || error().map(|e| view! { <p class="notice is-down" role="alert">"✕ " {explain(&e)}</p> })}
                {move || signed_out().then(|| view! { <p class="notice" role="status">"You have signed out."</p> })}
                <input type="hidden" name="login_csrf" value=token />
                <input type="hidden" name="next" value=next />
                <label class="field">
                    <span>"User name"</span>
                    <input name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus />
                </label>
                <label class="field">
                    <span>"Password"</span>
                    <input name="password" type="password" autocomplete="current-password" required />
                </label>
                <button type="submit" class="button-primary">"Sign in"</button>
            </form>
        </section>
    }
}
