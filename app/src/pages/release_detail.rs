//! One release in depth (`/releases/:id`): where it stands, its steps as a timeline, every
//! analysis verdict with its numbers, and every action (who, what, weights before → after, the
//! verdict at that moment). Refetched on release and traffic events.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::get_release_detail;
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::release_actions::{describe_weights, strategy_label};
use crate::components::release_view::{Countdown, PercentBar, ReleaseStateMark, RollingNodes, SplitBar, VerdictLine};
use crate::components::timestamp::Timestamp;
use crate::model::releases::{Release, ReleaseDetail};
use crate::pages::topology::LoadError;

#[component]
pub fn ReleaseDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|id| id.parse::<i64>().ok())));
    let feed = use_event_feed();
    let detail = Resource::new(
        move || (id.get(), feed.changes.get()),
        |(id, _)| async move {
            match id {
                Some(id) => get_release_detail(id).await,
                None => Err(crate::api::UiError { status: 404, message: "a release id is a number".into() }),
            }
        },
    );
    let generated_at = RwSignal::new(None);
    view! {
        <Title text=move || format!("Release {}", id.get().map(|i| i.to_string()).unwrap_or_default()) />
        <section class="page page-release">
            <header class="page-head">
                <h1>"Release " {move || id.get().map(|i| format!("#{i}"))}</h1>
                <Freshness feed generated_at />
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading the release…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => {
                            generated_at.set(Some(chrono::Utc::now()));
                            view! { <ReleaseBody detail /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="the release" /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ReleaseBody(detail: ReleaseDetail) -> impl IntoView {
    let ReleaseDetail { release: r, policy, verdicts, history } = detail;
    let summary = view! {
        <div class="panel release-summary" data-release=r.id data-state=format!("{:?}", r.state)>
            <p>
                <a href=format!("/services/{}", r.service)>{r.service.clone()}</a> " · "
                {strategy_label(r.strategy)} " · " <span class="mono">{format!("{} → {}", r.stable_version, r.target_version)}</span>
                " · " <ReleaseStateMark state=r.state /> " · " <PercentBar percent=r.current_percent />
                " · step ends in " <Countdown ends_at=r.step_ends_at />
            </p>
            <p class="muted">"Started by " {r.started_by.clone()} " " <Timestamp at=r.started_at /></p>
            {r.status_reason.clone().map(|why| view! { <p class="notice">{why}</p> })}
            <h3>"Traffic now (revision " {policy.revision} ")"</h3>
            <SplitBar weights=policy.weights.clone() />
            <p><VerdictLine verdict=r.last_verdict.clone() /></p>
        </div>
    };
    let rolling = r.rolling.clone().map(|progress| {
        let title = format!("Nodes: {}", progress.count_text());
        view! { <div class="panel"><h2>{title}</h2><RollingNodes progress /></div> }
    });
    view! {
        {summary}
        {rolling}
        <StepsTimeline release=r.clone() />
        <VerdictTable verdicts />
        <ActionHistory history />
    }
}

/// The steps in order: done, current (with its countdown), to come.
#[component]
fn StepsTimeline(release: Release) -> impl IntoView {
    if release.steps.is_empty() {
        return ().into_any();
    }
    let current = release.step_index as usize;
    let items = release
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (class, word) = match i.cmp(&current) {
                std::cmp::Ordering::Less => ("is-done", "● done"),
                std::cmp::Ordering::Equal => ("is-current", "▶ now"),
                std::cmp::Ordering::Greater => ("is-next", "◌ to come"),
            };
            view! {
                <li class=format!("release-step {class}")>
                    <span class="release-step-percent num">{format!("{} %", step.percent)}</span>
                    <span class="muted">{format!(" hold {} s · ", step.hold_seconds)}</span>
                    <span>{word}</span>
                </li>
            }
        })
        .collect_view();
    view! { <div class="panel"><h2>"Steps"</h2><ol class="release-steps">{items}</ol></div> }.into_any()
}

#[component]
fn VerdictTable(verdicts: Vec<crate::model::releases::Verdict>) -> impl IntoView {
    if verdicts.is_empty() {
        return view! { <div class="panel"><h2>"Verdicts"</h2><p class="muted">"No analysis interval has ended yet."</p></div> }
            .into_any();
    }
    let rows = verdicts
        .into_iter()
        .map(|v| {
            let summary = v.summary.clone();
            view! { <tr><td><VerdictLine verdict=Some(v) /></td><td class="detail">{summary}</td></tr> }
        })
        .collect_view();
    view! {
        <div class="panel">
            <h2>"Verdicts (newest first)"</h2>
            <table class="data-table release-verdicts">
                <thead><tr><th scope="col">"Outcome and numbers"</th><th scope="col">"Why"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn ActionHistory(history: Vec<crate::model::releases::ReleaseHistoryEntry>) -> impl IntoView {
    if history.is_empty() {
        return view! { <div class="panel"><h2>"Actions"</h2><p class="muted">"No action recorded."</p></div> }
            .into_any();
    }
    let rows = history
        .into_iter()
        .map(|h| {
            view! {
                <tr>
                    <td><Timestamp at=h.at /></td>
                    <td>{h.actor.clone()}</td>
                    <td class="mono">{h.action.clone()}</td>
                    <td><ReleaseStateMark state=h.from_state /> " → " <ReleaseStateMark state=h.to_state /></td>
                    <td>{format!("{} → {}", describe_weights(&h.weights_before), describe_weights(&h.weights_after))}</td>
                    <td><VerdictLine verdict=h.verdict.clone() /></td>
                    <td class="detail">{h.reason.clone().unwrap_or_else(|| "—".into())}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="panel">
            <h2>"Actions"</h2>
            <table class="data-table release-actions">
                <thead><tr>
                    <th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"Action"</th><th scope="col">"State"</th>
                    <th scope="col">"Weights before → after"</th><th scope="col">"Verdict then"</th><th scope="col">"Reason"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
