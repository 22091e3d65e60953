//! API tokens: what may call opsdeck's API (agents, scripts, wall screens), with which scopes,
//! until when. Create one (its secret is shown once, here), or revoke one.

use chrono::{DateTime, Utc};
use leptos::ev::SubmitEvent;
use leptos::form::FromFormData;
use leptos::html;
use leptos::prelude::*;

use super::{ListRefused, Outcome, count};
use crate::api::{AddToken, RevokeToken, list_tokens};
use crate::components::live::use_clock;
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::model::identity::{CreatedToken, NewToken, Scope, TokenSummary};

/// The tokens panel: the create form, the new secret (once), and the list (refetched whenever
/// a form's action completes).
#[component]
pub fn TokensPanel(csrf: String) -> impl IntoView {
    let add = ServerAction::<AddToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (add.version().get(), revoke.version().get()), |_| list_tokens());
    let rows = StoredValue::new(csrf.clone());
    view! {
        <section class="panel admin-panel admin-tokens" aria-labelledby="admin-tokens-heading">
            <h2 id="admin-tokens-heading">"API tokens"</h2>
            <CreateTokenForm csrf add />
            {move || {
                revoke
                    .value()
                    .get()
                    .map(|result| match result {
                        Ok(token) => {
                            view! {
                                <Outcome ok=true text=format!("Revoked {}: it gets 401 from now on.", token.name) />
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! { <Outcome ok=false text=format!("Not revoked: {}", error.message) /> }.into_any()
                        }
                    })
            }}
            <Transition fallback=|| view! { <p class="muted">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    let csrf = rows.get_value();
                    match tokens.await {
                        Ok(tokens) => view! { <TokensTable tokens csrf revoke /> }.into_any(),
                        Err(error) => view! { <ListRefused error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

/// What each scope allows, next to its checkbox.
fn scope_hint(scope: Scope) -> &'static str {
    match scope {
        Scope::Ingest => "register instances; send heartbeats, logs, metrics",
        Scope::Read => "read everything",
        Scope::Operate => "act on releases and traffic; includes read",
        Scope::Admin => "manage users, tokens, settings; includes all",
    }
}

/// The token the form asks for, checked by the same rules the server applies.
fn requested_token(input: &AddToken) -> Result<NewToken, String> {
    let ticked = [
        (Scope::Ingest, &input.scope_ingest),
        (Scope::Read, &input.scope_read),
        (Scope::Operate, &input.scope_operate),
        (Scope::Admin, &input.scope_admin),
    ];
    let scopes = ticked.into_iter().filter(|(_, ticked)| ticked.is_some()).map(|(scope, _)| scope).collect();
    let expires_in_days = match input.expires_in_days.trim() {
        "" => None,
        days => Some(
            days.parse::<u32>()
                .map_err(|_| "expires in days: a whole number of days, or empty for never".to_string())?,
        ),
    };
    let token = NewToken { name: input.name.clone(), scopes, expires_in_days };
    token.check()?;
    Ok(token)
}

#[component]
fn CreateTokenForm(csrf: String, add: ServerAction<AddToken>) -> impl IntoView {
    let problem = RwSignal::new(None::<String>);
    let form = NodeRef::<html::Form>::new();
    // The secret comes back in the server function's answer, which only the hydrated page can
    // show: before that the button waits rather than create a token nobody can ever use.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    Effect::new(move |_| {
        if matches!(add.value().get(), Some(Ok(_)))
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    let check_before_sending = move |ev: SubmitEvent| {
        let verdict = AddToken::from_event(&ev).map(|input| requested_token(&input));
        if let Ok(Err(message)) = verdict {
            ev.prevent_default();
            problem.set(Some(message));
        } else {
            problem.set(None);
        }
    };
    let scopes = Scope::ALL
        .into_iter()
        .map(|scope| {
            view! {
                <label class="admin-check">
                    <input type="checkbox" name=format!("scope_{scope}") />
                    <span class="admin-check-name">{scope.as_str()}</span>
                    <span class="admin-check-hint muted">{scope_hint(scope)}</span>
                </label>
            }
        })
        .collect_view();
    let feedback = move || {
        if let Some(message) = problem.get() {
            return Some(view! { <Outcome ok=false text=message /> }.into_any());
        }
        add.value().get().map(|result| match result {
            Ok(created) => view! { <SecretOnce created add /> }.into_any(),
            Err(error) => view! { <Outcome ok=false text=format!("Not created: {}", error.message) /> }.into_any(),
        })
    };
    view! {
        <div class="admin-form-frame" on:submit:capture=check_before_sending>
            <h3 class="admin-form-title">"Create a token"</h3>
            <ActionForm action=add node_ref=form attr:class="admin-form admin-create-token" attr:novalidate=true>
                <input type="hidden" name="csrf" value=csrf />
                <label class="admin-field">
                    <span>"Name"</span>
                    <input name="name" required maxlength="100" autocomplete="off" placeholder="wall-screen-3" />
                </label>
                <label class="admin-field admin-field-short">
                    <span>"Expires in days"</span>
                    <input name="expires_in_days" type="number" min="1" max="3650" inputmode="numeric" placeholder="never" />
                </label>
                <fieldset class="admin-scopes-field">
                    <legend>"Scopes"</legend>
                    {scopes}
                </fieldset>
                <button type="submit" class="admin-submit" disabled=move || !hydrated.get()>
                    "Create token"
                </button>
            </ActionForm>
            <div class="admin-feedback" aria-live="polite">{feedback}</div>
        </div>
    }
    .into_any()
}

/// The new token's secret, shown this once, with how to use it.
#[component]
fn SecretOnce(created: CreatedToken, add: ServerAction<AddToken>) -> impl IntoView {
    let CreatedToken { token, secret } = created;
    view! {
        <div class="admin-secret" role="status">
            <p class="admin-secret-title">
                "● Created token " <strong>{token.name.clone()}</strong> ". "
                <strong class="admin-secret-warning">"Copy it now: it is not shown again."</strong>
            </p>
            <code class="admin-secret-value">{secret.clone()}</code>
            <p class="admin-secret-usage-label">"Send it with every request as a header:"</p>
            <code class="admin-secret-usage">{format!("Authorization: Bearer {secret}")}</code>
            <button type="button" class="admin-secret-done" on:click=move |_| add.value().set(None)>
                "I have stored it — hide"
            </button>
        </div>
    }
    .into_any()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    fn of(token: &TokenSummary, now: DateTime<Utc>) -> Self {
        if token.revoked_at.is_some() {
            TokenState::Revoked
        } else if token.expires_at.is_some_and(|at| at <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }

    fn mark(self) -> (Status, &'static str) {
        match self {
            TokenState::Active => (Status::Healthy, "active"),
            TokenState::Expired => (Status::Unknown, "expired"),
            TokenState::Revoked => (Status::Unknown, "revoked"),
        }
    }
}

#[component]
fn TokensTable(tokens: Vec<TokenSummary>, csrf: String, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    if tokens.is_empty() {
        return view! { <p class="admin-count">"No API tokens yet."</p> }.into_any();
    }
    let now = use_clock().0.get_untracked();
    let active = tokens.iter().filter(|t| TokenState::of(t, now) == TokenState::Active).count();
    let summary = format!("{}, {active} active", count(tokens.len(), "token"));
    let rows = tokens
        .into_iter()
        .map(|token| {
            let state = TokenState::of(&token, now);
            view! { <TokenRow token state csrf=csrf.clone() revoke /> }
        })
        .collect_view();
    view! {
        <p class="admin-count">{summary}</p>
        <table class="admin-table admin-tokens-table">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col" class="admin-fit">"Prefix"</th>
                    <th scope="col">"Scopes"</th>
                    <th scope="col">"Created by"</th>
                    <th scope="col" class="admin-fit">"Created"</th>
                    <th scope="col" class="admin-fit">"Expires"</th>
                    <th scope="col" class="admin-fit">"Last used"</th>
                    <th scope="col" class="admin-fit">"State"</th>
                    <th scope="col" class="admin-fit">"Access"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn TokenRow(token: TokenSummary, state: TokenState, csrf: String, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    let (status, word) = state.mark();
    let maybe_time = |at: Option<DateTime<Utc>>, none: &'static str| match at {
        Some(at) => view! { <Timestamp at /> }.into_any(),
        None => view! { <span class="muted">{none}</span> }.into_any(),
    };
    let scopes = token.scopes.iter().map(|s| view! { <li class="admin-scope">{s.as_str()}</li> }).collect_view();
    let access = if state == TokenState::Active {
        let (id, label) = (token.id.to_string(), format!("Revoke {}", token.name));
        // Destructive: behind a disclosure that says what it does, not where a stray click lands.
        view! {
            <details class="admin-confirm">
                <summary>"Revoke…"</summary>
                <div class="admin-confirm-body">
                    <p>{format!("Anything sending {} gets 401 from now on. This cannot be undone.", token.name)}</p>
                    <ActionForm action=revoke>
                        <input type="hidden" name="csrf" value=csrf />
                        <input type="hidden" name="id" value=id />
                        <button type="submit" class="admin-danger">{label}</button>
                    </ActionForm>
                </div>
            </details>
        }
        .into_any()
    } else {
        view! { <span class="muted">"—"</span> }.into_any()
    };
    view! {
        <tr
            class="admin-token-row"
            class:is-revoked=state == TokenState::Revoked
            class:is-expired=state == TokenState::Expired
            data-token=token.name.clone()
        >
            <th scope="row" class="admin-name">{token.name.clone()}</th>
            <td class="admin-fit">
                <code>{token.prefix}</code>
            </td>
            <td>
                <ul class="admin-scopes">{scopes}</ul>
            </td>
            <td>{token.created_by.unwrap_or_else(|| "—".into())}</td>
            <td class="admin-fit">
                <Timestamp at=token.created_at />
            </td>
            <td class="admin-fit">{maybe_time(token.expires_at, "never")}</td>
            <td class="admin-fit">{maybe_time(token.last_used_at, "never")}</td>
            <td class="admin-fit">
                <StatusMark status label=word />
            </td>
            <td class="admin-fit">{access}</td>
        </tr>
    }
    .into_any()
}
