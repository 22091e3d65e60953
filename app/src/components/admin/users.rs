//! Users: who may sign in, with which role. Add one, change a role, disable or enable an
//! account. Your own row has no controls, so an admin cannot lock themselves out by a slip.

use leptos::ev::SubmitEvent;
use leptos::form::FromFormData;
use leptos::html;
use leptos::prelude::*;

use super::{ListRefused, Outcome, count, role_options};
use crate::api::{AddUser, ChangeUser, list_users};
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::model::identity::{
    MIN_PASSWORD_LENGTH, Role, UserSummary, Username, check_display_name, check_new_password,
};

/// The users panel: the add form, the answer to the last change, and the list (refetched
/// whenever a form's action completes).
#[component]
pub fn UsersPanel(csrf: String, me: String) -> impl IntoView {
    let add = ServerAction::<AddUser>::new();
    let change = ServerAction::<ChangeUser>::new();
    let users = Resource::new(move || (add.version().get(), change.version().get()), |_| list_users());
    let rows = StoredValue::new((csrf.clone(), me));
    view! {
        <section class="panel admin-panel admin-users" aria-labelledby="admin-users-heading">
            <h2 id="admin-users-heading">"Users"</h2>
            <AddUserForm csrf add />
            {move || {
                change
                    .value()
                    .get()
                    .map(|result| match result {
                        Ok(user) => view! { <Outcome ok=true text=describe_change(&user) /> }.into_any(),
                        Err(error) => {
                            view! { <Outcome ok=false text=format!("The change was refused: {}", error.message) /> }
                                .into_any()
                        }
                    })
            }}
            <Transition fallback=|| view! { <p class="muted">"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    let (csrf, me) = rows.get_value();
                    match users.await {
                        Ok(users) => view! { <UsersTable users csrf me change /> }.into_any(),
                        Err(error) => view! { <ListRefused error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

fn describe_change(user: &UserSummary) -> String {
    if user.disabled {
        format!("{} is disabled: they cannot sign in, and their sessions have ended.", user.username)
    } else {
        format!("{} is active with the {} role.", user.username, user.role)
    }
}

/// The rules the server applies, checked here first so a mistake is caught before sending.
fn check_new_user(input: &AddUser) -> Result<(), String> {
    input.username.trim().parse::<Username>()?;
    if !input.display_name.trim().is_empty() {
        check_display_name(&input.display_name)?;
    }
    check_new_password(&input.password)
}

#[component]
fn AddUserForm(csrf: String, add: ServerAction<AddUser>) -> impl IntoView {
    let problem = RwSignal::new(None::<String>);
    let form = NodeRef::<html::Form>::new();
    // Once the server has added the user, clear the form (and the password in it).
    Effect::new(move |_| {
        if matches!(add.value().get(), Some(Ok(_)))
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    // Runs in the capture phase, before the ActionForm sends: a refusal here stops it.
    let check_before_sending = move |ev: SubmitEvent| {
        let verdict = AddUser::from_event(&ev).map(|input| check_new_user(&input));
        if let Ok(Err(message)) = verdict {
            ev.prevent_default();
            problem.set(Some(message));
        } else {
            problem.set(None);
        }
    };
    let feedback = move || {
        if let Some(message) = problem.get() {
            return Some(view! { <Outcome ok=false text=message /> }.into_any());
        }
        add.value().get().map(|result| match result {
            Ok(user) => view! {
                <Outcome ok=true text=format!("Added {} ({}). They can sign in now.", user.username, user.role) />
            }
            .into_any(),
            Err(error) => view! { <Outcome ok=false text=format!("Not added: {}", error.message) /> }.into_any(),
        })
    };
    view! {
        <div class="admin-form-frame" on:submit:capture=check_before_sending>
            <h3 class="admin-form-title">"Add a user"</h3>
            <ActionForm action=add node_ref=form attr:class="admin-form admin-add-user" attr:novalidate=true>
                <input type="hidden" name="csrf" value=csrf />
                <label class="admin-field">
                    <span>"User name"</span>
                    <input
                        name="username"
                        required
                        maxlength="63"
                        autocomplete="off"
                        autocapitalize="none"
                        spellcheck="false"
                        placeholder="erin"
                    />
                </label>
                <label class="admin-field">
                    <span>"Display name"</span>
                    <input name="display_name" maxlength="200" autocomplete="off" placeholder="Erin Example" />
                </label>
                <label class="admin-field">
                    <span>"Role"</span>
                    <select name="role">{role_options(Role::Viewer)}</select>
                </label>
                <label class="admin-field">
                    <span>"Password"</span>
                    <input
                        name="password"
                        type="password"
                        required
                        minlength=MIN_PASSWORD_LENGTH
                        autocomplete="new-password"
                        placeholder=format!("at least {MIN_PASSWORD_LENGTH} characters")
                    />
                </label>
                <button type="submit" class="admin-submit">"Add user"</button>
            </ActionForm>
            <div class="admin-feedback" aria-live="polite">{feedback}</div>
        </div>
    }
    .into_any()
}

#[component]
fn UsersTable(users: Vec<UserSummary>, csrf: String, me: String, change: ServerAction<ChangeUser>) -> impl IntoView {
    let disabled = users.iter().filter(|u| u.disabled).count();
    let summary = match disabled {
        0 => count(users.len(), "user"),
        n => format!("{}, {n} disabled", count(users.len(), "user")),
    };
    let rows = users
        .into_iter()
        .map(|user| {
            let is_me = user.username == me;
            view! { <UserRow user csrf=csrf.clone() is_me change /> }
        })
        .collect_view();
    view! {
        <p class="admin-count">{summary}</p>
        <table class="admin-table admin-users-table">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Display name"</th>
                    <th scope="col" class="admin-fit">"Role"</th>
                    <th scope="col" class="admin-fit">"Created"</th>
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
fn UserRow(user: UserSummary, csrf: String, is_me: bool, change: ServerAction<ChangeUser>) -> impl IntoView {
    let name = user.username.clone();
    let (status, word) = if user.disabled { (Status::Unknown, "disabled") } else { (Status::Healthy, "active") };
    // The forms' children are closures that own what they show: give each its own copies.
    let identify = {
        let (csrf, name) = (csrf.clone(), name.clone());
        move || {
            view! {
                <input type="hidden" name="csrf" value=csrf.clone() />
                <input type="hidden" name="username" value=name.clone() />
            }
        }
    };
    let role = if is_me {
        view! {
            <span class="admin-role">{user.role.as_str()}</span>
            " "
            <span class="muted">"(you)"</span>
        }
        .into_any()
    } else {
        let (identify, label) = (identify.clone(), format!("Role for {name}"));
        view! {
            <ActionForm action=change attr:class="admin-inline-form">
                {identify()}
                <select name="role" aria-label=label>{role_options(user.role)}</select>
                <button type="submit">"Change role"</button>
            </ActionForm>
        }
        .into_any()
    };
    let access = match (is_me, user.disabled) {
        (true, _) => view! { <span class="muted">"your account"</span> }.into_any(),
        (false, true) => {
            let label = format!("Enable {name}");
            view! {
                <ActionForm action=change attr:class="admin-inline-form">
                    {identify()}
                    <input type="hidden" name="disabled" value="false" />
                    <button type="submit">{label}</button>
                </ActionForm>
            }
            .into_any()
        }
        // Destructive: behind a disclosure that says what it does, not where a stray click lands.
        (false, false) => {
            let label = format!("Disable {name}");
            view! {
                <details class="admin-confirm">
                    <summary>"Disable…"</summary>
                    <div class="admin-confirm-body">
                        <p>{format!("{name} can no longer sign in, and their open sessions end at once.")}</p>
                        <ActionForm action=change>
                            {identify()}
                            <input type="hidden" name="disabled" value="true" />
                            <button type="submit" class="admin-danger">{label}</button>
                        </ActionForm>
                    </div>
                </details>
            }
            .into_any()
        }
    };
    view! {
        <tr class="admin-user-row" class:is-disabled=user.disabled data-username=user.username.clone()>
            <th scope="row" class="admin-name">{user.username.clone()}</th>
            <td>{user.display_name}</td>
            <td class="admin-fit">{role}</td>
            <td class="admin-fit">
                <Timestamp at=user.created_at />
            </td>
            <td class="admin-fit">
                <StatusMark status label=word />
            </td>
            <td class="admin-fit">{access}</td>
        </tr>
    }
    .into_any()
}
