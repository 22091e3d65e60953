//! Who is signed in, with a sign-out button (a form post carrying the session's CSRF token).

use leptos::prelude::*;

use crate::api::get_current_user;
use crate::model::identity::CurrentUser;

/// The signed-in user, shared by the header and pages that put the CSRF token in forms.
pub type CurrentUserResource = Resource<Result<Option<CurrentUser>, crate::api::UiError>>;

pub fn provide_current_user() -> CurrentUserResource {
    let resource = Resource::new(|| (), |_| get_current_user());
    provide_context(resource);
    resource
}

pub fn use_current_user() -> CurrentUserResource {
    expect_context::<CurrentUserResource>()
}

#[component]
pub fn UserMenu() -> impl IntoView {
    let user = use_current_user();
    view! {
        <div class="user-menu">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match user.await {
                        Ok(Some(user)) => view! {
                            <span class="user-name" title=format!("Signed in as {}", user.username)>
                                {user.display_name.clone()}
                                <span class="user-role">{user.role.as_str()}</span>
                            </span>
                            <form method="post" action="/auth/logout" class="user-sign-out">
                                <input type="hidden" name="csrf" value=user.csrf_token.clone() />
                                <button type="submit">"Sign out"</button>
                            </form>
                        }
                        .into_any(),
                        _ => view! { <a class="user-sign-in" href="/login">"Sign in"</a> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
