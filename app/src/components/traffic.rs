//! The pieces the metric pages share: the window in the URL (`?range=6h` or `?from=…&to=…`, so
//! a chart can be linked and works before hydration), the range picker, a refresh tick (every
//! bucket or 10 s, whichever is longer, while the window ends now), and the service page's
//! "Traffic" panel: request rate, error rate and latency p50/p95/p99 per version.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_query_map};

use crate::api::get_service_metrics;
use crate::components::chart::{ChartSeries, TimeChart, Unit};
use crate::components::event_feed::{EventFeed, Freshness};
use crate::model::charts::{RangePreset, ServiceMetrics, VersionMetrics, WindowQuery};
use crate::pages::topology::LoadError;

/// The shortest time between timer refetches.
const MIN_REFRESH: Duration = Duration::from_secs(10);

/// The window the URL asks for (default: the last hour).
pub fn use_window_query() -> Memo<WindowQuery> {
    let query = use_query_map();
    Memo::new(move |_| query.with(|q| WindowQuery { range: q.get("range"), from: q.get("from"), to: q.get("to") }))
}

/// A counter that goes up every bucket (at least every 10 s) while the window is a preset
/// ending now; custom windows are fixed and only refetch on events. Browser only.
pub fn use_refresh_tick(window: Memo<WindowQuery>) -> RwSignal<u64> {
    let tick = RwSignal::new(0_u64);
    Effect::new(move |_| {
        let query = window.get();
        let preset = match (query.from.as_deref(), query.to.as_deref()) {
            (None | Some(""), None | Some("")) => {
                query.range.as_deref().map_or(Some(RangePreset::Hour1), RangePreset::parse)
            }
            _ => None,
        };
        let Some(preset) = preset else { return };
        let period = Duration::from_secs(preset.bucket_seconds() as u64).max(MIN_REFRESH);
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), period) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

/// Preset links and a custom from/to form (UTC), on the current path.
#[component]
pub fn RangePicker(window: Memo<WindowQuery>) -> impl IntoView {
    let location = use_location();
    let path = move || location.pathname.get();
    let presets = RangePreset::ALL
        .into_iter()
        .map(|preset| {
            let active = move || {
                let q = window.get();
                let custom = q.from.as_deref().is_some_and(|f| !f.is_empty());
                !custom && q.range.as_deref().map_or(preset == RangePreset::Hour1, |r| r == preset.as_str())
            };
            view! {
                <a class="range-link" class:is-active=active aria-current=move || active().then_some("true")
                    href=move || format!("{}?range={}", path(), preset.as_str())>
                    {preset.label()}
                </a>
            }
        })
        .collect_view();
    let value = move |which: &'static str| {
        move || {
            let q = window.get();
            let text = if which == "from" { q.from } else { q.to };
            // datetime-local shows minutes, without a zone.
            text.and_then(|t| crate::model::charts::parse_time(which, &t).ok())
                .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default()
        }
    };
    view! {
        <div class="range-picker">
            <nav class="range-presets" aria-label="Time range">{presets}</nav>
            <form class="range-custom" method="get" action=path>
                <label>"from " <input type="datetime-local" name="from" required=true value=value("from") /></label>
                <label>" to " <input type="datetime-local" name="to" required=true value=value("to") /></label>
                <span class="muted">" UTC "</span>
                <button type="submit">"Show"</button>
            </form>
        </div>
    }
}

/// The service page's traffic charts, refetched on events and on the refresh tick.
#[component]
pub fn TrafficPanel(service: Memo<String>, feed: EventFeed) -> impl IntoView {
    let window = use_window_query();
    let tick = use_refresh_tick(window);
    let metrics = Resource::new(
        move || (service.get(), window.get(), feed.changes.get(), tick.get()),
        |(service, window, _, _)| get_service_metrics(service, window),
    );
    let generated_at = RwSignal::new(None);
    view! {
        <div class="panel traffic-panel">
            <header class="panel-head">
                <h2>"Traffic"</h2>
                <Freshness feed generated_at />
            </header>
            <RangePicker window />
            <Transition fallback=|| view! { <p class="muted">"Loading the traffic charts…"</p> }>
                {move || Suspend::new(async move {
                    match metrics.await {
                        Ok(metrics) => {
                            generated_at.set(Some(metrics.generated_at));
                            view! { <TrafficCharts metrics /> }.into_any()
                        }
                        Err(error) => view! { <LoadError error what="the traffic charts" /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

/// One version's totals over the window, in words with units.
fn describe_version(version: &VersionMetrics, bucket_seconds: i64) -> String {
    let seconds = bucket_seconds as f64;
    let (mut requests, mut errors) = (0.0, 0.0);
    for (rate, share) in version.request_rate.iter().zip(&version.error_rate) {
        if let (Some(rate), Some(share)) = (rate, share) {
            requests += rate * seconds;
            errors += rate * seconds * share;
        }
    }
    let worst_p99 =
        version.p99_ms.iter().flatten().fold(None, |worst: Option<f64>, v| Some(worst.map_or(*v, |w| w.max(*v))));
    format!(
        "{}: {} requests · {} errors · worst p99 {}",
        version.version,
        version.requests,
        if requests > 0.0 { Unit::Percent.format(errors / requests * 100.0) } else { "—".into() },
        worst_p99.map_or_else(|| "—".to_owned(), |v| Unit::Milliseconds.format(v))
    )
}

#[component]
fn TrafficCharts(metrics: ServiceMetrics) -> impl IntoView {
    let ServiceMetrics { service, window, buckets, versions, has_data, markers, .. } = metrics;
    let per_version = |pick: fn(&VersionMetrics) -> &Vec<Option<f64>>, scale: f64| -> Vec<ChartSeries> {
        versions
            .iter()
            .map(|v| ChartSeries {
                label: v.version.clone(),
                values: pick(v).iter().map(|x| x.map(|x| x * scale)).collect(),
            })
            .collect()
    };
    let rate = per_version(|v| &v.request_rate, 1.0);
    let errors = per_version(|v| &v.error_rate, 100.0);
    let summary = if has_data {
        let lines =
            versions.iter().map(|v| view! { <li>{describe_version(v, window.bucket_seconds)}</li> }).collect_view();
        view! { <ul class="traffic-summary">{lines}</ul> }.into_any()
    } else {
        view! {
            <p class="notice traffic-no-data">
                {format!("◌ No requests recorded for {service} in this window: no data, which is not the same as zero traffic.")}
            </p>
        }
        .into_any()
    };
    let latency: Vec<(String, Vec<ChartSeries>)> = if versions.is_empty() {
        vec![("Latency".to_owned(), Vec::new())]
    } else {
        versions
            .iter()
            .map(|v| {
                let series = [("p50", &v.p50_ms), ("p95", &v.p95_ms), ("p99", &v.p99_ms)]
                    .into_iter()
                    .map(|(label, values)| ChartSeries { label: label.to_owned(), values: values.clone() })
                    .collect();
                (format!("Latency of {}", v.version), series)
            })
            .collect()
    };
    let to = window.to;
    let bucket_seconds = window.bucket_seconds;
    let latency_charts = latency
        .into_iter()
        .map(|(title, series)| {
            view! {
                <TimeChart title unit=Unit::Milliseconds buckets=buckets.clone() bucket_seconds to series
                    markers=markers.clone() empty_text="No requests recorded in this window" />
            }
        })
        .collect_view();
    view! {
        {summary}
        <div class="chart-grid-layout">
            <TimeChart title="Request rate" unit=Unit::RequestsPerSecond buckets=buckets.clone() bucket_seconds to
                series=rate markers=markers.clone() empty_text="No requests recorded in this window" />
            <TimeChart title="Error rate (5xx)" unit=Unit::Percent buckets=buckets.clone() bucket_seconds to
                series=errors markers=markers.clone() empty_text="No requests recorded in this window" />
            {latency_charts}
        </div>
    }
}
