//! A trace: every stored log line that carries one trace id, and the path the request took
//! across services and nodes, derived from those lines (`GET /api/v1/traces/{trace_id}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::logs::LogLine;

/// Everything known about one trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TraceView {
    pub trace_id: String,
    /// The earliest moment of the trace (the first line, or a span that began earlier by its
    /// reported duration).
    pub start: DateTime<Utc>,
    /// The latest moment of the trace.
    pub end: DateTime<Utc>,
    /// The spans, ordered by when they began: one per `fields.span_id`, or, for lines without
    /// span ids, one per service@node@instance.
    pub spans: Vec<TraceSpan>,
    /// Every caller → callee step, in the order the callees began.
    pub hops: Vec<TraceHop>,
    /// Every line, oldest first.
    pub lines: Vec<LogLine>,
    /// True when the trace has more lines than one answer holds (the first ones are shown).
    pub truncated: bool,
}

/// Work one service instance did for the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TraceSpan {
    /// `fields.span_id` of its lines; absent for lines that carry only a trace id.
    pub span_id: Option<String>,
    /// The span that called this one (`fields.parent_span_id`); for spans without ids, the
    /// previous span in time (an inference, flagged by `inferred_parent`).
    pub parent_span: Option<usize>,
    pub inferred_parent: bool,
    pub service: Option<String>,
    pub node: Option<String>,
    pub cluster: Option<String>,
    pub instance: Option<String>,
    pub component: Option<String>,
    /// How deep in the call tree (0 = where the request entered).
    pub depth: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The duration the span reported (`fields.duration_ms`), else first to last line.
    pub duration_ms: f64,
    /// The request as the finishing line reports it.
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    /// How many lines the span wrote.
    pub lines: usize,
}

impl TraceSpan {
    /// `service@node`, with `?` for what the lines did not say.
    pub fn label(&self) -> String {
        format!("{}@{}", self.service.as_deref().unwrap_or("?"), self.node.as_deref().unwrap_or("?"))
    }
}

/// One step of the path: a caller span handed the request to a callee span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TraceHop {
    /// Index into `spans`.
    pub from: usize,
    /// Index into `spans`.
    pub to: usize,
    /// `service@node` of each side.
    pub from_label: String,
    pub to_label: String,
    /// Time from the caller's start to the callee's start.
    pub after_ms: f64,
    /// The callee's own duration.
    pub callee_ms: f64,
    /// The caller's view of the call (its `client` line's `duration_ms` to this service)
    /// minus the callee's own duration: network and queueing. Absent when not reported.
    pub overhead_ms: Option<f64>,
}
