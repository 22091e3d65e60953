//! One log line as the logs page, the live tail and the trace view show it: time, level as
//! glyph + word + colour (never colour alone), where it came from, the message and its fields
//! as text (Leptos escapes text, so HTML in a message stays inert), and a link to its trace.

use leptos::prelude::*;

use crate::model::logs::{LogLevel, LogLine};
use crate::pages::audit::percent_encode;

/// The glyph beside each level's word.
pub fn level_glyph(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "·",
        LogLevel::Info => "●",
        LogLevel::Warning => "▲",
        LogLevel::Error => "✕",
        LogLevel::Fatal => "■",
    }
}

#[component]
pub fn LevelBadge(level: LogLevel) -> impl IntoView {
    view! {
        <span class=format!("log-level is-{}", level.as_str())>
            <span aria-hidden="true">{level_glyph(level)}</span>
            " "
            {level.as_str()}
        </span>
    }
}

/// The trace page of an id.
pub fn trace_href(trace_id: &str) -> String {
    format!("/traces/{}", percent_encode(trace_id))
}

/// `service@node`, with what the line leaves out skipped.
fn place(line: &LogLine) -> String {
    match (&line.service, &line.node) {
        (Some(service), Some(node)) => format!("{service}@{node}"),
        (Some(one), None) | (None, Some(one)) => one.clone(),
        (None, None) => "—".to_owned(),
    }
}

/// One line as a list item. `received_ms` (browser clock, ms since the epoch) is set on lines
/// that arrived live, as `data-received-at`.
#[component]
pub fn LogLineRow(
    line: LogLine,
    #[prop(optional)] received_ms: Option<i64>,
    #[prop(optional)] offset_ms: Option<f64>,
) -> impl IntoView {
    let time = line.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let stamp = match offset_ms {
        Some(offset) => format!("+{offset:.1} ms"),
        None => time.clone(),
    };
    let fields = line.fields.as_object().filter(|fields| !fields.is_empty()).map(|_| line.fields.to_string());
    let trace = line.trace_id.clone().map(|trace_id| {
        view! {
            <a class="log-trace" href=trace_href(&trace_id) title="Open the trace">
                "trace "
                {trace_id.chars().take(8).collect::<String>()}
                "…"
            </a>
        }
    });
    let context = [line.cluster.clone(), line.instance.clone(), line.component.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    view! {
        <li
            class=format!("log-line is-{}", line.level.as_str())
            data-line-id=line.id
            data-level=line.level.as_str()
            data-received-at=received_ms
        >
            <time class="log-time" datetime=line.time.to_rfc3339() title=format!("{time} UTC")>
                {stamp}
            </time>
            <LevelBadge level=line.level />
            <span class="log-place" title=context>{place(&line)}</span>
            <span class="log-message">{line.message}</span>
            {trace}
            {fields.map(|fields| view! { <code class="log-fields">{fields}</code> })}
        </li>
    }
}
