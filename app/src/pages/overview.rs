//! The overview: what needs attention first. For now that is opsdeck's own stores; services,
//! releases and alerts join as their features land.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::readiness::{check_status, use_readiness};
use crate::components::status::StatusMark;
use crate::model::{DependencyCheck, Readiness};

#[component]
pub fn OverviewPage() -> impl IntoView {
    let readiness = use_readiness();
    view! {
        <Title text="Overview" />
        <section class="page page-overview">
            <h1>"Overview"</h1>
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
