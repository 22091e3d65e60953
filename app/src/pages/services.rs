//! Services: the list (worst first), and one service in depth — its health first, then its
//! traffic charts and its recent warnings and errors (the numbers and the log lines of the thing
//! that is red, on one screen), then health history from InfluxDB (failed probes and p95 check
//! latency per minute, per version), its instances and its recent state changes with their
//! reasons. Both refetch when the event stream says something changed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{get_service_detail, get_topology};
use crate::components::chart::{ChartSeries, TimeChart, Unit};
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::release_controls::ReleasePanel;
use crate::components::service_logs::ServiceLogs;
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::components::traffic::TrafficPanel;
use crate::model::charts::{ChartMarker, MarkerKind, TimeWindow};
use crate::model::health::{HealthChangeRecord, ProbeBucket, ServiceDetail, ServiceSummary, VersionHistory};
use crate::model::topology::InstanceHealth;
use crate::pages::topology::{LoadError, describe_counts, service_hue};

#[component]
pub fn ServicesPage() -> impl IntoView {
    let feed = use_event_feed();
    let topology = Resource::new(move || feed.changes.get(), |_| get_topology());
    let generated_at = RwSignal::new(None);
    view! {
        <Title text="Services" />
        <section class="page page-services">
            <header class="page-head">
                <h1>"Services"</h1>
                <Freshness feed generated_at />
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading services…"</p> }>
                {move || Suspend::new(async move {
                    match topology.await {
                        Ok(view) => {
                            generated_at.set(Some(view.generated_at));
                            view! { <ServiceTable services=view.services /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="the services" /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Every service, the worst first.
#[component]
pub fn ServiceTable(mut services: Vec<ServiceSummary>) -> impl IntoView {
    if services.is_empty() {
        return view! { <p class="panel empty-state">"No services yet: they appear when their first instance registers."</p> }
            .into_any();
    }
    services.sort_by(|a, b| a.health.cmp(&b.health).then_with(|| a.name.cmp(&b.name)));
    let rows = services
        .into_iter()
        .map(|s| {
            let status: Status = s.health.into();
            let breakers = (s.open_breakers > 0).then(|| format!("⊘ {} open", s.open_breakers));
            view! {
                <tr data-service=s.name.clone()>
                    <th scope="row">
                        <span class="service-band" style=format!("--service-hue: {}", service_hue(&s.name))></span>
                        <a href=format!("/services/{}", s.name)>{s.name.clone()}</a>
                    </th>
                    <td><StatusMark status label=s.health.as_str() /></td>
                    <td class="num">{format!("{}/{}", s.counts.healthy, s.counts.total())}</td>
                    <td>{s.versions.join(", ")}</td>
                    <td class="muted">{s.nodes.join(", ")}</td>
                    <td>{breakers.unwrap_or_else(|| "—".into())}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="panel data-table services-table">
            <thead>
                <tr>
                    <th scope="col">"Service"</th>
                    <th scope="col">"Health"</th>
                    <th scope="col" class="num">"Healthy"</th>
                    <th scope="col">"Versions"</th>
                    <th scope="col">"Nodes"</th>
                    <th scope="col">"Breakers"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

#[component]
pub fn ServicePage() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.with(|p| p.get("name").unwrap_or_default()));
    let feed = use_event_feed();
    let detail = Resource::new(move || (name.get(), feed.changes.get()), |(name, _)| get_service_detail(name));
    let generated_at = RwSignal::new(None);
    view! {
        <Title text=move || format!("Service {}", name.get()) />
        <section class="page page-service">
            <header class="page-head">
                <h1>"Service " <span class="mono">{move || name.get()}</span></h1>
                <Freshness feed generated_at />
            </header>
            // What on-call needs first: its health, then its numbers and its trouble in the logs,
            // then the detail (checks, instances, changes) — one resource, read in two places.
            <Transition fallback=|| view! { <p class="muted">"Loading the service…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => {
                            generated_at.set(Some(detail.generated_at));
                            let status: Status = detail.health.into();
                            view! {
                                <p class="service-summary">
                                    <StatusMark status label=detail.health.as_str() />
                                    " " {describe_counts(&detail.counts)}
                                </p>
                            }
                            .into_any()
                        }
                        Err(error) => view! { <LoadError error what="this service" /> }.into_any(),
                    }
                })}
            </Transition>
            <ReleasePanel service=name feed />
            <TrafficPanel service=name feed />
            <ServiceLogs service=name feed />
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    detail.await.ok().map(|detail| view! { <ServiceBody detail /> })
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ServiceBody(detail: ServiceDetail) -> impl IntoView {
    let instances = detail
        .instances
        .iter()
        .map(|i| {
            let status: Status = i.health.into();
            view! {
                <tr data-instance=i.id.clone() data-health=i.health.as_str()>
                    <td class="mono">{format!("{}:{}", i.host, i.port)}</td>
                    <td>{i.version.clone()}</td>
                    <td><a href=crate::pages::nodes::node_href(&i.cluster, &i.node)>{format!("{}/{}", i.cluster, i.node)}</a></td>
                    <td><StatusMark status label=i.health.as_str() /></td>
                    <td class="detail">{i.health_reason.clone().unwrap_or_else(|| "—".into())}</td>
                    <td>{i.breaker.label()}</td>
                    <td><Timestamp at=i.last_heartbeat_at /></td>
                </tr>
            }
        })
        .collect_view();
    let changes = detail
        .changes
        .iter()
        .map(|c| {
            let (from, to): (Status, Status) = (c.from.into(), c.to.into());
            view! {
                <tr>
                    <td><Timestamp at=c.at /></td>
                    <td class="mono">{c.address.clone()}</td>
                    <td>{c.version.clone()}</td>
                    <td><StatusMark status=from label=c.from.as_str() /> " → " <StatusMark status=to label=c.to.as_str() /></td>
                    <td class="detail">{c.reason.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let history = match (&detail.history_error, detail.history.is_empty()) {
        (Some(error), _) => view! { <p class="notice is-degraded">"▲ " {error.clone()}</p> }.into_any(),
        (None, true) => view! { <p class="muted">"No health checks recorded in the last hour."</p> }.into_any(),
        (None, false) => {
            view! { <ProbeCharts history=detail.history.clone() changes=detail.changes.clone() to=detail.generated_at /> }
                .into_any()
        }
    };
    view! {
        <div class="panel">
            <h2>"Health checks, last hour"</h2>
            {history}
        </div>
        <div class="panel">
            <h2>"Instances"</h2>
            <table class="data-table">
                <thead>
                    <tr>
                        <th scope="col">"Address"</th><th scope="col">"Version"</th><th scope="col">"Node"</th>
                        <th scope="col">"Health"</th><th scope="col">"Last verdict"</th><th scope="col">"Breaker"</th>
                        <th scope="col">"Last heartbeat"</th>
                    </tr>
                </thead>
                <tbody>{instances}</tbody>
            </table>
        </div>
        <div class="panel">
            <h2>"Recent state changes"</h2>
            {if detail.changes.is_empty() {
                view! { <p class="muted">"No state changes recorded."</p> }.into_any()
            } else {
                view! {
                    <table class="data-table">
                        <thead>
                            <tr><th scope="col">"When"</th><th scope="col">"Instance"</th><th scope="col">"Version"</th><th scope="col">"Change"</th><th scope="col">"Reason"</th></tr>
                        </thead>
                        <tbody>{changes}</tbody>
                    </table>
                }
                .into_any()
            }}
        </div>
    }
}

/// The last hour of health checks, per version: the share of failed probes and the p95 check
/// latency, one line per version, with the service's health changes marked. Minutes without
/// probes are gaps, not zeros.
#[component]
fn ProbeCharts(history: Vec<VersionHistory>, changes: Vec<HealthChangeRecord>, to: DateTime<Utc>) -> impl IntoView {
    let window = TimeWindow { from: to - chrono::Duration::hours(1), to, bucket_seconds: 60, preset: None };
    let buckets = window.bucket_starts();
    let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, at)| (at.timestamp_millis(), i)).collect();
    let lay = |value: fn(&ProbeBucket) -> Option<f64>| -> Vec<ChartSeries> {
        history
            .iter()
            .map(|h| {
                let mut values = vec![None; buckets.len()];
                for bucket in &h.buckets {
                    if let Some(&i) = index.get(&bucket.at.timestamp_millis()) {
                        values[i] = value(bucket);
                    }
                }
                ChartSeries { label: h.version.clone(), values }
            })
            .collect()
    };
    let failed = lay(|b| (b.probes > 0).then(|| f64::from(b.failed) / f64::from(b.probes) * 100.0));
    let latency = lay(|b| b.p95_latency_ms);
    let markers: Vec<ChartMarker> = changes
        .iter()
        .rev()
        .map(|c| ChartMarker {
            kind: if c.to == InstanceHealth::Healthy { MarkerKind::HealthUp } else { MarkerKind::HealthDown },
            at: c.at,
            label: format!(
                "{} {} on {}: {} → {} — {}",
                c.address,
                c.version,
                c.node,
                c.from.as_str(),
                c.to.as_str(),
                c.reason
            ),
        })
        .collect();
    let empty = "No health checks in this hour";
    view! {
        <div class="chart-grid-layout">
            <TimeChart title="Failed health checks" unit=Unit::Percent buckets=buckets.clone() bucket_seconds=60 to
                series=failed markers=markers.clone() y_max=100.0 empty_text=empty />
            <TimeChart title="p95 check latency" unit=Unit::Milliseconds buckets bucket_seconds=60 to
                series=latency markers empty_text=empty />
        </div>
    }
}
