//! The overview: what needs attention first — down nodes (one root cause), down and degraded
//! services, open breakers, instances that stopped heartbeating — then a collapsed summary of
//! everything healthy, then opsdeck's own stores. Updated live from the event stream.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::get_topology;
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::readiness::{check_status, use_readiness};
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::model::{
    DependencyCheck, Readiness,
    health::{Health, Severity, TopologyView},
};
use crate::pages::services::ServiceTable;
use crate::pages::topology::{LoadError, describe_counts};

#[component]
pub fn OverviewPage() -> impl IntoView {
    let readiness = use_readiness();
    let feed = use_event_feed();
    let topology = Resource::new(move || feed.changes.get(), |_| get_topology());
    let generated_at = RwSignal::new(None);
    view! {
        <Title text="Overview" />
        <section class="page page-overview">
            <header class="page-head">
                <h1>"Overview"</h1>
                <Freshness feed generated_at />
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading what runs where…"</p> }>
                {move || Suspend::new(async move {
                    match topology.await {
                        Ok(view) => {
                            generated_at.set(Some(view.generated_at));
                            view! { <Attention view /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="the services" /> }.into_any(),
                    }
                })}
            </Transition>
            <Transition fallback=|| view! { <p class="muted">"Checking opsdeck's stores…"</p> }>
                {move || Suspend::new(async move {
                    match readiness.await {
                        Ok(report) => view! { <StoresPanel report /> }.into_any(),
                        Err(error) => view! {
                            <p class="notice is-down" role="alert">
                                "✕ The opsdeck server did not answer: " {error.to_string()}
                                ". This page retries by itself."
                            </p>
                        }
                        .into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// What needs a person, worst first; then the healthy rest, collapsed.
#[component]
fn Attention(view: TopologyView) -> impl IntoView {
    let items = view
        .attention
        .iter()
        .map(|item| {
            let status = match item.severity {
                Severity::Critical => Status::Down,
                Severity::Warning => Status::Degraded,
            };
            view! {
                <li class=format!("attention-item {}", status.class()) data-kind=item.kind.clone()>
                    <a class="attention-title" href=item.link.clone()>
                        <span class="status-glyph" aria-hidden="true">{status.glyph()}</span>
                        " "
                        {item.title.clone()}
                    </a>
                    <p class="attention-detail">{item.detail.clone()}</p>
                    {item.since.map(|at| view! { <p class="attention-since muted">"since " <Timestamp at /></p> })}
                </li>
            }
        })
        .collect_view();
    let healthy: Vec<_> = view.services.iter().filter(|s| s.health == Health::Healthy).cloned().collect();
    let headline = match (view.attention.len(), view.services.len()) {
        (_, 0) => "No services registered yet.".to_string(),
        (0, n) => format!("● Nothing needs attention: all {n} services are healthy."),
        (1, _) => "1 thing needs attention.".to_string(),
        (n, _) => format!("{n} things need attention, worst first."),
    };
    view! {
        <div class="panel attention-panel">
            <h2>"Needs attention"</h2>
            <p class="attention-headline" class:is-calm=view.attention.is_empty()>{headline}</p>
            {(!view.attention.is_empty()).then(|| view! { <ul class="attention-list">{items}</ul> })}
        </div>
        {(!healthy.is_empty()).then(|| {
            let count = healthy.len();
            view! {
                <details class="panel healthy-summary">
                    <summary>{format!("● {count} healthy service{} · {}", if count == 1 { "" } else { "s" }, describe_counts(&view.counts))}</summary>
                    <ServiceTable services=healthy />
                </details>
            }
        })}
    }
}

/// The stores opsdeck depends on, failing ones first.
#[component]
fn StoresPanel(report: Readiness) -> impl IntoView {
    let mut checks = report.checks.clone();
    checks.sort_by_key(|c| c.ok);
    let headline = if report.ready {
        "All of opsdeck's stores are ready.".to_string()
    } else {
        let names: Vec<_> = report.failing().map(|c| c.dependency.label()).collect();
        format!("Needs attention: {} unavailable.", names.join(" and "))
    };
    view! {
        <div class="panel stores-panel">
            <h2>"opsdeck's stores"</h2>
            <p class="stores-headline" class:is-down=!report.ready>{headline}</p>
            <table class="stores-table">
                <thead>
                    <tr><th scope="col">"Store"</th><th scope="col">"State"</th><th scope="col" class="num">"Check took"</th><th scope="col">"Detail"</th></tr>
                </thead>
                <tbody>{checks.into_iter().map(|check| view! { <StoreRow check /> }).collect_view()}</tbody>
            </table>
        </div>
    }
}

#[component]
fn StoreRow(check: DependencyCheck) -> impl IntoView {
    let word = if check.ok { "ready" } else { "unavailable" };
    view! {
        <tr class="store-row" data-dependency=format!("{:?}", check.dependency).to_lowercase()>
            <th scope="row">{check.dependency.label()}</th>
            <td><StatusMark status=check_status(&check) label=word /></td>
            <td class="num">{format!("{:.1} ms", check.latency_ms)}</td>
            <td class="detail">{check.error.unwrap_or_else(|| "—".to_string())}</td>
        </tr>
    }
}
