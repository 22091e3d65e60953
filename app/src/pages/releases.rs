//! Releases: first what waits for a person (the inbox), then the releases in progress (state,
//! share, step, a live countdown and the last verdict with its numbers), then the history of
//! ended ones with why they ended. Refetched when a release or traffic event arrives.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{get_inbox, get_releases};
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::release_actions::strategy_label;
use crate::components::release_inbox::ReleaseInbox;
use crate::components::release_view::{Countdown, PercentBar, ReleaseStateMark, VerdictLine};
use crate::components::timestamp::Timestamp;
use crate::model::releases::Release;
use crate::pages::topology::LoadError;

#[component]
pub fn ReleasesPage() -> impl IntoView {
    let feed = use_event_feed();
    let data = Resource::new(
        move || feed.changes.get(),
        |_| async move { Ok::<_, crate::api::UiError>((get_inbox().await?, get_releases(None).await?)) },
    );
    let generated_at = RwSignal::new(None);
    view! {
        <Title text="Releases" />
        <section class="page page-releases">
            <header class="page-head">
                <h1>"Releases"</h1>
                <Freshness feed generated_at />
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading releases…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok((inbox, releases)) => {
                            generated_at.set(Some(chrono::Utc::now()));
                            let (active, ended): (Vec<_>, Vec<_>) = releases.into_iter().partition(|r| !r.state.is_terminal());
                            view! {
                                <ReleaseInbox items=inbox />
                                <ActiveReleases releases=active />
                                <ReleaseHistory releases=ended />
                            }
                            .into_any()
                        }
                        Err(error) => view! { <LoadError error what="the releases" /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn from_to(r: &Release) -> String {
    format!("{} → {}", r.stable_version, r.target_version)
}

#[component]
fn ActiveReleases(releases: Vec<Release>) -> impl IntoView {
    if releases.is_empty() {
        return view! {
            <section class="panel"><h2>"In progress"</h2><p class="muted" data-active="0">"No release in progress."</p></section>
        }
        .into_any();
    }
    let rows = releases
        .into_iter()
        .map(|r| {
            let step = match &r.rolling {
                Some(rolling) => format!("{}/{} nodes", rolling.replaced(), rolling.steps.len()),
                None => format!("{}/{}", r.step_index + 1, r.steps.len().max(1)),
            };
            view! {
                <tr data-release=r.id>
                    <th scope="row"><a href=format!("/releases/{}", r.id)>{r.service.clone()}</a></th>
                    <td>{strategy_label(r.strategy)}</td>
                    <td class="mono">{from_to(&r)}</td>
                    <td><ReleaseStateMark state=r.state /></td>
                    <td><PercentBar percent=r.current_percent /></td>
                    <td class="num">{step}</td>
                    <td><Countdown ends_at=r.step_ends_at /></td>
                    <td class="detail"><VerdictLine verdict=r.last_verdict.clone() /></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h2>"In progress"</h2>
            <table class="data-table releases-active">
                <thead><tr>
                    <th scope="col">"Service"</th><th scope="col">"Strategy"</th><th scope="col">"From → to"</th>
                    <th scope="col">"State"</th><th scope="col">"Target share"</th><th scope="col" class="num">"Step"</th>
                    <th scope="col">"Step ends in"</th><th scope="col">"Last verdict"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn ReleaseHistory(mut releases: Vec<Release>) -> impl IntoView {
    if releases.is_empty() {
        return view! { <section class="panel"><h2>"History"</h2><p class="muted">"No release has ended yet."</p></section> }
            .into_any();
    }
    releases.sort_by_key(|r| std::cmp::Reverse(r.finished_at.unwrap_or(r.updated_at)));
    let rows = releases
        .into_iter()
        .map(|r| {
            let ended = r.finished_at.unwrap_or(r.updated_at);
            view! {
                <tr data-release=r.id>
                    <td><Timestamp at=ended /></td>
                    <th scope="row"><a href=format!("/releases/{}", r.id)>{r.service.clone()}</a></th>
                    <td>{strategy_label(r.strategy)}</td>
                    <td class="mono">{from_to(&r)}</td>
                    <td><ReleaseStateMark state=r.state /></td>
                    <td class="detail">{r.status_reason.clone().unwrap_or_else(|| "—".into())}</td>
                    <td>{r.started_by.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel">
            <h2>"History"</h2>
            <table class="data-table releases-history">
                <thead><tr>
                    <th scope="col">"Ended"</th><th scope="col">"Service"</th><th scope="col">"Strategy"</th>
                    <th scope="col">"From → to"</th><th scope="col">"Outcome"</th><th scope="col">"Why"</th>
                    <th scope="col">"Started by"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}
