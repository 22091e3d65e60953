//! Deriving the path of a request from its log lines.
//!
//! Lines that follow the trace contract (`fields.span_id`, `fields.parent_span_id`,
//! `fields.duration_ms`, `fields.peer_service`) give exact spans: one per span id, its parent
//! named by the callee. Lines that carry only a trace id are grouped by service, node and
//! instance, and each such group is taken to be called by the group before it in time — an
//! inference the answer flags (`inferred_parent`). A span's time is from its first line to its
//! last, widened to the `duration_ms` its finishing line reports (the "received" line may be
//! written a moment after the request really began).

use std::collections::HashMap;

use app::model::{
    logs::LogLine,
    trace::{TraceHop, TraceSpan, TraceView},
};
use chrono::{DateTime, Duration, Utc};

/// How a line is grouped into a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SpanKey {
    Id(String),
    Place(Option<String>, Option<String>, Option<String>),
}

/// A span being assembled from its lines.
struct Draft {
    span: TraceSpan,
    parent_span_id: Option<String>,
    /// Outgoing calls its lines report: (peer service, duration in ms).
    calls: Vec<(String, f64)>,
    /// When the finishing line was written and the duration it reports.
    finished: Option<(DateTime<Utc>, f64)>,
}

fn text(line: &LogLine, key: &str) -> Option<String> {
    match line.fields.get(key)? {
        serde_json::Value::String(value) if !value.is_empty() => Some(value.clone()),
        _ => None,
    }
}

fn number(line: &LogLine, key: &str) -> Option<f64> {
    line.fields.get(key)?.as_f64().filter(|value| value.is_finite() && *value >= 0.0)
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().map_or(0.0, |micros| micros as f64 / 1000.0)
}

/// Builds the trace view from its lines (oldest first).
pub fn derive(trace_id: &str, lines: Vec<LogLine>, truncated: bool) -> TraceView {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut by_key: HashMap<SpanKey, usize> = HashMap::new();
    for line in &lines {
        let key = match text(line, "span_id") {
            Some(id) => SpanKey::Id(id),
            None => SpanKey::Place(line.service.clone(), line.node.clone(), line.instance.clone()),
        };
        let index = *by_key.entry(key.clone()).or_insert_with(|| {
            drafts.push(Draft {
                span: TraceSpan {
                    span_id: match &key {
                        SpanKey::Id(id) => Some(id.clone()),
                        SpanKey::Place(..) => None,
                    },
                    parent_span: None,
                    inferred_parent: false,
                    service: None,
                    node: None,
                    cluster: None,
                    instance: None,
                    component: None,
                    depth: 0,
                    start: line.time,
                    end: line.time,
                    duration_ms: 0.0,
                    method: None,
                    path: None,
                    status: None,
                    lines: 0,
                },
                parent_span_id: None,
                calls: Vec::new(),
                finished: None,
            });
            drafts.len() - 1
        });
        let draft = &mut drafts[index];
        let span = &mut draft.span;
        span.lines += 1;
        span.start = span.start.min(line.time);
        span.end = span.end.max(line.time);
        for (slot, value) in [
            (&mut span.service, &line.service),
            (&mut span.node, &line.node),
            (&mut span.cluster, &line.cluster),
            (&mut span.instance, &line.instance),
            (&mut span.component, &line.component),
        ] {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
        if draft.parent_span_id.is_none() {
            draft.parent_span_id = text(line, "parent_span_id");
        }
        let Some(duration) = number(line, "duration_ms") else { continue };
        match text(line, "peer_service") {
            Some(peer) => draft.calls.push((peer, duration)),
            None => {
                draft.finished = Some((line.time, duration));
                span.method = span.method.take().or_else(|| text(line, "method"));
                span.path = span.path.take().or_else(|| text(line, "path"));
                span.status = span.status.or_else(|| line.fields.get("status").and_then(serde_json::Value::as_i64));
            }
        }
    }
    for draft in &mut drafts {
        let span = &mut draft.span;
        match draft.finished {
            Some((at, duration)) => {
                let began = at - Duration::microseconds((duration * 1000.0) as i64);
                span.start = span.start.min(began);
                span.end = span.end.max(at);
                span.duration_ms = duration.max(millis(span.start, span.end));
            }
            None => span.duration_ms = millis(span.start, span.end),
        }
    }
    // Spans in the order they began (first appearance breaks ties).
    drafts.sort_by_key(|draft| draft.span.start);
    let by_span_id: HashMap<String, usize> =
        drafts.iter().enumerate().filter_map(|(i, d)| Some((d.span.span_id.clone()?, i))).collect();
    let parents: Vec<(Option<usize>, bool)> = drafts
        .iter()
        .enumerate()
        .map(|(index, draft)| match (&draft.span.span_id, &draft.parent_span_id) {
            (Some(_), Some(parent)) => (by_span_id.get(parent).copied().filter(|p| *p != index), false),
            (Some(_), None) => (None, false),
            (None, _) => (index.checked_sub(1), index > 0),
        })
        .collect();
    for (index, (parent, inferred)) in parents.iter().enumerate() {
        drafts[index].span.parent_span = *parent;
        drafts[index].span.inferred_parent = *inferred;
        drafts[index].span.depth = depth(&parents, index);
    }
    let hops = drafts
        .iter()
        .enumerate()
        .filter_map(|(to, callee)| {
            let from = callee.span.parent_span?;
            let caller = &drafts[from];
            let call = caller.calls.iter().find(|(peer, _)| Some(peer) == callee.span.service.as_ref());
            Some(TraceHop {
                from,
                to,
                from_label: caller.span.label(),
                to_label: callee.span.label(),
                after_ms: millis(caller.span.start, callee.span.start),
                callee_ms: callee.span.duration_ms,
                overhead_ms: call.map(|(_, call_ms)| call_ms - callee.span.duration_ms),
            })
        })
        .collect();
    let spans: Vec<TraceSpan> = drafts.into_iter().map(|draft| draft.span).collect();
    let start = spans.iter().map(|s| s.start).min().unwrap_or_else(Utc::now);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(start);
    TraceView { trace_id: trace_id.to_owned(), start, end, spans, hops, lines, truncated }
}

/// Steps up to the root (bounded, so a cycle of parent ids can't loop).
fn depth(parents: &[(Option<usize>, bool)], index: usize) -> usize {
    let mut depth = 0;
    let mut at = index;
    while let Some(parent) = parents[at].0 {
        depth += 1;
        at = parent;
        if depth > parents.len() {
            break;
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::logs::LogLevel;
    use serde_json::json;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_000_000_000 + ms).expect("a time")
    }

    fn line(ms: i64, service: &str, node: &str, message: &str, fields: serde_json::Value) -> LogLine {
        LogLine {
            id: ms,
            time: at(ms),
            received_at: at(ms),
            level: LogLevel::Info,
            message: message.to_owned(),
            cluster: Some("eu".to_owned()),
            node: Some(node.to_owned()),
            service: Some(service.to_owned()),
            instance: None,
            component: Some("http".to_owned()),
            trace_id: Some("t".to_owned()),
            fields,
        }
    }

    #[test]
    fn contract_lines_give_spans_parents_and_hops_with_their_times() {
        let lines = vec![
            line(0, "web", "n1", "GET / received", json!({"span_id": "a"})),
            line(2, "api", "n2", "GET /items received", json!({"span_id": "b", "parent_span_id": "a"})),
            line(
                12,
                "api",
                "n2",
                "GET /items 200 in 10 ms",
                json!({"span_id": "b", "parent_span_id": "a", "duration_ms": 10.0, "method": "GET", "path": "/items", "status": 200}),
            ),
            line(13, "web", "n1", "call api 200", json!({"span_id": "a", "duration_ms": 12.5, "peer_service": "api"})),
            line(15, "web", "n1", "GET / 200 in 15 ms", json!({"span_id": "a", "duration_ms": 15.0, "status": 200})),
        ];
        let view = derive("t", lines, false);
        assert_eq!(view.spans.len(), 2);
        let (web, api) = (&view.spans[0], &view.spans[1]);
        assert_eq!((web.label().as_str(), web.depth, web.parent_span), ("web@n1", 0, None));
        assert_eq!(
            (api.label().as_str(), api.depth, api.parent_span, api.inferred_parent),
            ("api@n2", 1, Some(0), false)
        );
        assert_eq!((api.duration_ms, api.status, api.path.as_deref()), (10.0, Some(200), Some("/items")));
        assert_eq!(view.hops.len(), 1);
        let hop = &view.hops[0];
        assert_eq!((hop.from, hop.to, hop.after_ms, hop.callee_ms), (0, 1, 2.0, 10.0));
        assert_eq!(hop.overhead_ms, Some(2.5));
        assert_eq!((view.start, view.end), (at(0), at(15)));
    }

    #[test]
    fn lines_with_only_a_trace_id_become_a_chain_of_places_in_time_order() {
        let lines = vec![
            line(0, "web", "n1", "start", json!({})),
            line(5, "api", "n2", "work", json!({})),
            line(9, "db", "n3", "query", json!({})),
            line(20, "web", "n1", "done", json!({})),
        ];
        let view = derive("t", lines, false);
        let labels: Vec<String> = view.spans.iter().map(TraceSpan::label).collect();
        assert_eq!(labels, ["web@n1", "api@n2", "db@n3"]);
        assert_eq!(view.spans[0].duration_ms, 20.0, "first to last line");
        assert!(view.spans[1].inferred_parent);
        let hops: Vec<(usize, usize, f64)> = view.hops.iter().map(|h| (h.from, h.to, h.after_ms)).collect();
        assert_eq!(hops, [(0, 1, 5.0), (1, 2, 4.0)]);
    }

    #[test]
    fn a_reported_duration_moves_the_start_back_before_the_first_line() {
        let lines = vec![line(100, "web", "n1", "GET / 200 in 40 ms", json!({"span_id": "a", "duration_ms": 40}))];
        let view = derive("t", lines, false);
        assert_eq!((view.spans[0].start, view.spans[0].duration_ms), (at(60), 40.0));
    }
}
