//! The admin page: who may sign in (users and roles) and what may call the API (tokens).
//! Admins get the controls; anyone else is told why not and who they are signed in as. The
//! server decides either way: every server function behind these panels checks the role.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::admin::{AdminRefusal, TokensPanel, UsersPanel};
use crate::components::user_menu::use_current_user;
use crate::model::identity::Scope;

#[component]
pub fn AdminPage() -> impl IntoView {
    let current = use_current_user();
    view! {
        <Title text="Admin" />
        <section class="page page-admin">
            <h1>"Users and API tokens"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Checking who you are…"</p> }>
                {move || Suspend::new(async move {
                    match current.await {
                        Ok(Some(user)) if user.role.grants(Scope::Admin) => {
                            view! {
                                <UsersPanel csrf=user.csrf_token.clone() me=user.username.clone() />
                                <TokensPanel csrf=user.csrf_token />
                            }
                                .into_any()
                        }
                        Ok(Some(user)) => view! { <AdminRefusal username=user.username role=user.role /> }.into_any(),
                        Ok(None) => {
                            view! {
                                <div class="panel admin-refusal">
                                    <p>"Sign in as an admin to manage users and API tokens."</p>
                                    <a href="/login?next=%2Fadmin">"Sign in"</a>
                                </div>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <p class="notice is-down" role="alert">
                                    "✕ Could not tell who you are: " {error.message}
                                </p>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
    .into_any()
}
