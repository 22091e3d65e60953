//! Services: the list (worst first), and one service in depth — its instances, versions,
//! health history from InfluxDB (failed probes and p95 check latency per minute, per version)
//! and its recent state changes with their reasons. Both refetch when the event stream says
//! something changed.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{get_service_detail, get_topology};
use crate::components::event_feed::{Freshness, use_event_feed};
use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::components::traffic::TrafficPanel;
use crate::model::health::{ProbeBucket, ServiceDetail, ServiceSummary, VersionHistory};
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
            <Transition fallback=|| view! { <p class="muted">"Loading the service…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => {
                            generated_at.set(Some(detail.generated_at));
                            view! { <ServiceBody detail /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="this service" /> }.into_any(),
                    }
                })}
            </Transition>
            <TrafficPanel service=name feed />
        </section>
    }
}

#[component]
fn ServiceBody(detail: ServiceDetail) -> impl IntoView {
    let status: Status = detail.health.into();
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
            detail.history.iter().cloned().map(|history| view! { <ProbeChart history /> }).collect_view().into_any()
        }
    };
    view! {
        <p class="service-summary">
            <StatusMark status label=detail.health.as_str() />
            " " {describe_counts(&detail.counts)}
        </p>
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

const CHART_W: f64 = 720.0;
const CHART_H: f64 = 140.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 56.0;
const PAD_T: f64 = 10.0;
const PAD_B: f64 = 24.0;

/// One version's last hour: failed probes as bars (right axis, % of probes) and p95 check
/// latency as a line (left axis, ms). Minutes without probes are gaps, not zeros; every bucket
/// has a hover title with its numbers.
#[component]
fn ProbeChart(history: VersionHistory) -> impl IntoView {
    let buckets = history.buckets;
    let (Some(first), Some(last)) = (buckets.first().map(|b| b.at), buckets.last().map(|b| b.at)) else {
        return view! { <p class="muted">{format!("{}: no probes", history.version)}</p> }.into_any();
    };
    let span = ((last - first).num_seconds().max(60)) as f64;
    let plot_w = CHART_W - PAD_L - PAD_R;
    let plot_h = CHART_H - PAD_T - PAD_B;
    let x = |b: &ProbeBucket| PAD_L + ((b.at - first).num_seconds() as f64 / span) * plot_w;
    let max_latency = buckets.iter().filter_map(|b| b.p95_latency_ms).fold(1.0_f64, f64::max) * 1.1;
    let bar_w = (plot_w / buckets.len().max(1) as f64).clamp(2.0, 14.0) - 1.0;
    let bars = buckets
        .iter()
        .map(|b| {
            let share = if b.probes == 0 { None } else { Some(f64::from(b.failed) / f64::from(b.probes)) };
            let title = match (share, b.p95_latency_ms) {
                (None, _) => format!("{} UTC: no probes", b.at.format("%H:%M")),
                (Some(s), latency) => format!(
                    "{} UTC: {} probes, {} failed ({:.0} %), p95 {}",
                    b.at.format("%H:%M"),
                    b.probes,
                    b.failed,
                    s * 100.0,
                    latency.map(|l| format!("{l:.1} ms")).unwrap_or_else(|| "—".into())
                ),
            };
            let height = share.map_or(0.0, |s| (s * plot_h).max(if s > 0.0 { 2.0 } else { 0.0 }));
            let bx = x(b) - bar_w / 2.0;
            view! {
                <g class="chart-bucket">
                    <rect class="chart-hover" x=bx y=PAD_T width=bar_w.max(1.0) height=plot_h><title>{title}</title></rect>
                    {(height > 0.0).then(|| view! { <rect class="chart-failed" x=bx y=PAD_T + plot_h - height width=bar_w.max(1.0) height=height /> })}
                </g>
            }
        })
        .collect_view();
    // The latency line, broken where minutes have no probes.
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    for b in &buckets {
        match b.p95_latency_ms {
            Some(latency) => {
                let y = PAD_T + plot_h - (latency / max_latency) * plot_h;
                if let Some(segment) = segments.last_mut() {
                    segment.push(format!("{:.1},{:.1}", x(b), y));
                }
            }
            None => segments.push(Vec::new()),
        }
    }
    let lines = segments
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|points| view! { <polyline class="chart-latency" points=points.join(" ") /> })
        .collect_view();
    let bottom = PAD_T + plot_h;
    view! {
        <figure class="chart">
            <figcaption>
                <strong>{history.version.clone()}</strong>
                " — "
                <span class="legend-latency">"── p95 check latency (ms, left)"</span>
                " · "
                <span class="legend-failed">"▮ failed probes (% of probes, right)"</span>
            </figcaption>
            <svg viewBox=format!("0 0 {CHART_W} {CHART_H}") class="chart-svg" role="img"
                aria-label=format!("Health checks of {} over the last hour", history.version)>
                <line class="chart-axis" x1=PAD_L y1=bottom x2=CHART_W - PAD_R y2=bottom />
                <line class="chart-axis" x1=PAD_L y1=PAD_T x2=PAD_L y2=bottom />
                <line class="chart-axis" x1=CHART_W - PAD_R y1=PAD_T x2=CHART_W - PAD_R y2=bottom />
                <text class="chart-tick" x=PAD_L - 4.0 y=PAD_T + 8.0 text-anchor="end">{format!("{max_latency:.0} ms")}</text>
                <text class="chart-tick" x=PAD_L - 4.0 y=bottom text-anchor="end">"0 ms"</text>
                <text class="chart-tick" x=CHART_W - PAD_R + 4.0 y=PAD_T + 8.0>"100 %"</text>
                <text class="chart-tick" x=CHART_W - PAD_R + 4.0 y=bottom>"0 %"</text>
                <text class="chart-tick" x=PAD_L y=CHART_H - 6.0>{format!("{} UTC", first.format("%H:%M"))}</text>
                <text class="chart-tick" x=CHART_W - PAD_R y=CHART_H - 6.0 text-anchor="end">{format!("{} UTC", last.format("%H:%M"))}</text>
                {bars}
                {lines}
            </svg>
        </figure>
    }
    .into_any()
}
