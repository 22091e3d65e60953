//! The inbox: what waits for a person (a paused release, one awaiting promotion, failed smoke
//! checks, a held step, a rollback that happened) — the ask, since when, and a link to act.

use leptos::prelude::*;

use crate::components::release_view::ReleaseStateMark;
use crate::components::timestamp::Timestamp;
use crate::model::releases::InboxItem;

#[component]
pub fn ReleaseInbox(items: Vec<InboxItem>) -> impl IntoView {
    if items.is_empty() {
        return view! { <p class="release-inbox is-empty muted" data-inbox="0">"● Nothing waits for a person."</p> }
            .into_any();
    }
    let count = items.len();
    let rows = items
        .into_iter()
        .map(|item| {
            view! {
                <li class="release-inbox-item" data-release=item.release_id>
                    <ReleaseStateMark state=item.state />
                    " " <strong>{item.service.clone()}</strong> ": " {item.ask.clone()}
                    " · since " <Timestamp at=item.since />
                    " · " <a href=format!("/releases/{}", item.release_id)>"open release"</a>
                    " · " <a href=format!("/services/{}", item.service)>"service controls"</a>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="panel release-inbox" data-inbox=count aria-label="Waiting for a person">
            <h2>{format!("Waiting for a person ({count})")}</h2>
            <ul>{rows}</ul>
        </section>
    }
    .into_any()
}
