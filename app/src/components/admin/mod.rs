//! The admin page's panels: users and their roles, API tokens and their scopes. Every form is
//! an `<ActionForm>` (a plain post, so it works before hydration) carrying the session's CSRF
//! token; the server checks the role on every call, these panels only present its answers.

mod tokens;
mod users;

pub use tokens::TokensPanel;
pub use users::UsersPanel;

use leptos::prelude::*;

use crate::api::UiError;
use crate::model::identity::Role;

/// What a non-admin sees instead of the controls: why, and who they are signed in as.
#[component]
pub fn AdminRefusal(username: String, role: Role) -> impl IntoView {
    view! {
        <div class="panel admin-refusal" role="status">
            <p class="admin-refusal-headline">
                "You need the admin role for this page — you are signed in as " <strong>{username}</strong> " ("
                {role.as_str()} ")."
            </p>
            <p class="muted">
                "An admin can change your role. The " <a href="/audit">"audit log"</a> " and the "
                <a href="/">"overview"</a> " are open to you."
            </p>
        </div>
    }
    .into_any()
}

/// Why a list could not be shown, in words; the server decided.
#[component]
fn ListRefused(error: UiError) -> impl IntoView {
    match error.status {
        401 => view! {
            <p class="notice is-down" role="alert">
                "✕ Your session has ended. " <a href="/login?next=%2Fadmin">"Sign in again"</a>
                " to manage users and tokens."
            </p>
        }
        .into_any(),
        403 => {
            view! { <p class="notice is-down" role="alert">"✕ You need the admin role for this: " {error.message}</p> }
                .into_any()
        }
        _ => view! { <p class="notice is-down" role="alert">"✕ This list could not be loaded: " {error.message}</p> }
            .into_any(),
    }
}

/// The answer to the last form sent: what happened (●), or why not (✕).
#[component]
fn Outcome(ok: bool, #[prop(into)] text: String) -> impl IntoView {
    if ok {
        view! { <p class="notice admin-done" role="status">"● " {text}</p> }.into_any()
    } else {
        view! { <p class="notice is-down" role="alert">"✕ " {text}</p> }.into_any()
    }
}

/// "1 user", "3 users".
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// `<option>`s for every role, `selected` marked.
fn role_options(selected: Role) -> impl IntoView {
    Role::ALL
        .into_iter()
        .map(|role| view! { <option value=role.as_str() selected=role == selected>{role.as_str()}</option> })
        .collect_view()
}
