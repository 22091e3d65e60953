//! `/traces/{trace_id}`: the path a request took across services and nodes — a waterfall of
//! its spans (service@node, indented by call depth, bars on one time axis), the hops with the
//! time between them — and every line of the trace in time order.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{UiError, get_trace};
use crate::components::log_line::LogLineRow;
use crate::model::trace::{TraceHop, TraceSpan, TraceView};

#[component]
pub fn TracePage() -> impl IntoView {
    let params = use_params_map();
    let trace_id = Memo::new(move |_| params.with(|p| p.get("trace_id").unwrap_or_default()));
    let trace = Resource::new(move || trace_id.get(), get_trace);
    view! {
        <Title text="Trace" />
        <section class="page page-trace">
            <h1>"Trace " <code class="trace-id">{move || trace_id.get()}</code></h1>
            <Transition fallback=|| view! { <p class="muted">"Loading the trace…"</p> }>
                {move || Suspend::new(async move {
                    match trace.await {
                        Ok(trace) => view! { <TraceDetail trace /> }.into_any(),
                        Err(error) => view! { <TraceError error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

fn millis(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    (to - from).num_microseconds().map_or(0.0, |micros| micros as f64 / 1000.0)
}

#[component]
fn TraceDetail(trace: TraceView) -> impl IntoView {
    let total_ms = millis(trace.start, trace.end);
    let services: std::collections::BTreeSet<String> = trace.spans.iter().filter_map(|s| s.service.clone()).collect();
    let summary = format!(
        "{:.1} ms across {} service{} · {} span{} · {} line{} · began {} UTC",
        total_ms,
        services.len(),
        if services.len() == 1 { "" } else { "s" },
        trace.spans.len(),
        if trace.spans.len() == 1 { "" } else { "s" },
        trace.lines.len(),
        if trace.lines.len() == 1 { "" } else { "s" },
        trace.start.format("%Y-%m-%d %H:%M:%S%.3f"),
    );
    let scale = total_ms.max(0.001);
    let spans = trace
        .spans
        .iter()
        .enumerate()
        .map(|(index, span)| view! { <SpanRow index span=span.clone() trace_start=trace.start scale /> })
        .collect_view();
    let hops = trace.hops.iter().map(|hop| view! { <HopRow hop=hop.clone() /> }).collect_view();
    let no_hops = trace.hops.is_empty();
    let start = trace.start;
    let lines = trace
        .lines
        .into_iter()
        .map(|line| {
            let offset = millis(start, line.time);
            view! { <LogLineRow line offset_ms=offset /> }
        })
        .collect_view();
    view! {
        <p class="trace-summary">{summary}</p>
        {trace.truncated.then(|| view! { <p class="notice is-degraded" role="status">"▲ This trace has more lines than one view holds; the first 5,000 are shown."</p> })}
        <div class="panel trace-waterfall" role="table" aria-label="Spans on a time axis">
            <div class="trace-axis" role="row" aria-hidden="true">
                <span>"0 ms"</span>
                <span>{format!("{:.1} ms", total_ms / 2.0)}</span>
                <span>{format!("{total_ms:.1} ms")}</span>
            </div>
            {spans}
        </div>
        <h2>"Path"</h2>
        {if no_hops {
            view! { <p class="muted">"One place only: the lines don't show a call to another service."</p> }.into_any()
        } else {
            view! { <ol class="panel trace-hops">{hops}</ol> }.into_any()
        }}
        <h2>"Lines, in time order"</h2>
        <ol class="panel log-lines trace-lines">{lines}</ol>
    }
    .into_any()
}

#[component]
fn SpanRow(index: usize, span: TraceSpan, trace_start: chrono::DateTime<chrono::Utc>, scale: f64) -> impl IntoView {
    let left = millis(trace_start, span.start) / scale * 100.0;
    let width = (span.duration_ms / scale * 100.0).max(0.4);
    let status = span.status.map(|s| s.to_string());
    let failed = span.status.is_some_and(|s| s >= 500 || s == 0);
    let request = [span.method.clone(), span.path.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let title = format!(
        "{}{} · {:.1} ms · {} line{}{}",
        span.label(),
        span.instance.as_deref().map(|i| format!(" ({i})")).unwrap_or_default(),
        span.duration_ms,
        span.lines,
        if span.lines == 1 { "" } else { "s" },
        if span.inferred_parent { " · caller inferred from time order" } else { "" },
    );
    view! {
        <div class="trace-span" role="row" data-span=index data-service=span.service.clone() data-depth=span.depth title=title>
            <span class="trace-span-label" role="cell" style=format!("padding-left: {}rem", span.depth as f64 * 1.0)>
                {span.label()}
                {(!request.is_empty()).then(|| view! { <span class="trace-span-request">{request}</span> })}
            </span>
            <span class="trace-span-track" role="cell">
                <span class="trace-span-bar" class:is-failed=failed style=format!("left: {left:.3}%; width: {width:.3}%")></span>
            </span>
            <span class="trace-span-time" role="cell">
                {format!("{:.1} ms", span.duration_ms)}
                {status.map(|s| view! { <span class="trace-span-status" class:is-failed=failed>{if failed { format!(" ✕ {s}") } else { format!(" {s}") }}</span> })}
            </span>
        </div>
    }
}

#[component]
fn HopRow(hop: TraceHop) -> impl IntoView {
    let overhead = hop.overhead_ms.map(|ms| format!(" · {ms:.1} ms on the way (network, queueing)"));
    let path = format!("{} → {}", hop.from_label, hop.to_label);
    view! {
        <li class="trace-hop" data-from=hop.from_label data-to=hop.to_label>
            <span class="trace-hop-path">{path}</span>
            <span class="trace-hop-times">
                {format!("after {:.1} ms · took {:.1} ms", hop.after_ms, hop.callee_ms)}
                {overhead}
            </span>
        </li>
    }
}

#[component]
fn TraceError(error: UiError) -> impl IntoView {
    match error.status {
        401 => view! {
            <div class="panel logs-refusal">
                <p>"Sign in to see traces."</p>
                <a href="/login?next=%2Flogs">"Sign in"</a>
            </div>
        }
        .into_any(),
        404 => view! { <p class="notice is-unknown" role="alert">"◌ " {error.message}</p> }.into_any(),
        400 => view! { <p class="notice is-down" role="alert">"✕ Not a trace id: " {error.message}</p> }.into_any(),
        _ => view! { <p class="notice is-down" role="alert">"✕ The trace could not be loaded: " {error.message}</p> }
            .into_any(),
    }
}
