//! What a demo service tells opsdeck about its work: log lines (NDJSON to `POST /api/v1/logs`)
//! and one `http_requests` point per handled request (line protocol to `POST /api/v1/metrics`),
//! each through its own bounded [`Outbox`], so neither ever holds up a request.
//!
//! Every line carries the instance's context (cluster, node, service, instance id, component)
//! and, when it is about a request, the trace id plus `span_id`/`parent_span_id` in `fields` — the
//! contract the logs and trace views read (see `docs/architecture.md`, "Demo").

use std::{sync::Arc, time::Duration};

use app::model::{logs::LogLevel, topology::Registration};
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    outbox::{Outbox, OutboxConfig, OutboxStats},
    trace::TraceContext,
};
use crate::influx::Point;

/// The measurement of request metrics (shared with the router and the charts).
pub const HTTP_REQUESTS: &str = "http_requests";
/// How often dropped lines are looked for, to report them once opsdeck takes lines again.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(5);

/// How the service's telemetry is sent.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub opsdeck_url: url::Url,
    pub token: String,
    /// Most log lines (and, separately, points) held while opsdeck can't take them.
    pub buffer: usize,
    /// Most lines per post.
    pub batch: usize,
    /// How often a partial batch is sent.
    pub every: Duration,
}

/// Who is writing: the context every log line and point carries.
#[derive(Debug, Clone)]
pub struct Origin {
    pub service: String,
    pub version: String,
    pub cluster: String,
    pub node: String,
}

/// The part of the service a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The server side of a request.
    Http,
    /// An outgoing call to another service.
    Client,
    /// Start-up, shutdown, registration, mode changes.
    Lifecycle,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Http => "http",
            Component::Client => "client",
            Component::Lifecycle => "lifecycle",
        }
    }
}

/// The log and metric writers of one demo service.
pub struct Telemetry {
    origin: Origin,
    registration: watch::Receiver<Option<Registration>>,
    logs: Arc<Outbox>,
    metrics: Arc<Outbox>,
    /// The outboxes' bound, for messages.
    buffer: usize,
    /// Log lines acknowledged when [`Telemetry::report_drops`] last looked.
    logs_sent_seen: std::sync::atomic::AtomicU64,
}

/// How much each outbox has sent, queued and dropped (shown on the service's `GET /`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct TelemetryStats {
    pub logs: OutboxStats,
    pub metrics: OutboxStats,
}

impl Telemetry {
    pub fn new(
        origin: Origin,
        registration: watch::Receiver<Option<Registration>>,
        settings: &TelemetrySettings,
    ) -> anyhow::Result<Self> {
        let endpoint = |path: &str| -> anyhow::Result<String> {
            Ok(settings
                .opsdeck_url
                .join(path)
                .map_err(|e| {
                    anyhow::anyhow!("--opsdeck-url {} cannot be joined with {path}: {e}", settings.opsdeck_url)
                })?
                .to_string())
        };
        let config = |what, url, content_type| OutboxConfig {
            what,
            url,
            content_type,
            token: settings.token.clone(),
            capacity: settings.buffer,
            batch: settings.batch,
            every: settings.every,
        };
        Ok(Self {
            origin,
            registration,
            logs: Outbox::new(config("log lines", endpoint("/api/v1/logs")?, "application/x-ndjson")),
            metrics: Outbox::new(config("request metrics", endpoint("/api/v1/metrics?precision=ns")?, "text/plain")),
            buffer: settings.buffer,
            logs_sent_seen: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Sends both outboxes until `stop` is cancelled, then flushes them for up to `grace`.
    pub async fn run(&self, stop: CancellationToken, grace: Duration) {
        let Some(http) = sender() else { return };
        tokio::join!(
            self.logs.clone().run(http.clone(), stop.clone().cancelled_owned(), grace),
            self.metrics.clone().run(http, stop.clone().cancelled_owned(), grace),
            self.report_drops(stop),
        );
    }

    /// Once opsdeck takes log lines again after some were dropped, says so in a warning line,
    /// so the gap in the logs explains itself.
    async fn report_drops(&self, stop: CancellationToken) {
        let (mut logs_reported, mut metrics_reported) = (0, 0);
        let mut checks = tokio::time::interval(DROP_REPORT_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = checks.tick() => {}
            }
            let TelemetryStats { logs, metrics } = self.stats();
            let dropped_more = logs.dropped_full > logs_reported || metrics.dropped_full > metrics_reported;
            if !self.logs_flowing(logs.sent) || !dropped_more {
                continue;
            }
            let (lines, points) = (logs.dropped_full - logs_reported, metrics.dropped_full - metrics_reported);
            self.log(
                LogLevel::Warning,
                Component::Lifecycle,
                None,
                format!(
                    "{lines} log lines and {points} request points were dropped (oldest first) while opsdeck \
                     could not take them; the buffers hold {} each",
                    self.buffer
                ),
                json!({ "dropped_log_lines": lines, "dropped_request_points": points }),
            );
            (logs_reported, metrics_reported) = (logs.dropped_full, metrics.dropped_full);
        }
    }

    /// Whether opsdeck has acknowledged log lines since the last time this was asked.
    fn logs_flowing(&self, sent: u64) -> bool {
        self.logs_sent_seen.swap(sent, std::sync::atomic::Ordering::Relaxed) < sent
    }

    /// Sends what is queued now, for at most `grace` (before a deliberate crash).
    pub async fn flush(&self, grace: Duration) {
        let Some(http) = sender() else { return };
        tokio::join!(self.logs.flush(&http, grace), self.metrics.flush(&http, grace));
    }

    pub fn stats(&self) -> TelemetryStats {
        TelemetryStats { logs: self.logs.stats(), metrics: self.metrics.stats() }
    }

    /// The registry's id for this instance, once registered.
    pub fn instance_id(&self) -> Option<String> {
        self.registration.borrow().as_ref().map(|r| r.instance_id.clone())
    }

    /// Writes a log line to opsdeck (and warnings and errors to the service's own output too).
    /// `fields` must be a JSON object (anything else is ignored); a request's span ids are added.
    pub fn log(
        &self,
        level: LogLevel,
        component: Component,
        trace: Option<&TraceContext>,
        message: impl Into<String>,
        fields: Value,
    ) {
        let message = message.into();
        let mut fields = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some(trace) = trace {
            fields.insert("span_id".into(), json!(trace.span_id));
            if let Some(parent) = &trace.parent_span_id {
                fields.insert("parent_span_id".into(), json!(parent));
            }
        }
        let trace_id = trace.map(|t| t.trace_id.as_str());
        // The service's own output (the demo's terminal) gets start-up, shutdown and mode lines
        // at their level; request lines go there only at debug level, or a failing service would
        // flood the terminal with what opsdeck's log search shows better.
        let level_here = if component == Component::Lifecycle { level } else { LogLevel::Debug };
        match level_here {
            LogLevel::Error | LogLevel::Fatal => {
                tracing::error!(component = component.as_str(), trace_id, fields = %serde_json::Value::Object(fields.clone()), "{message}")
            }
            LogLevel::Warning => {
                tracing::warn!(component = component.as_str(), trace_id, fields = %serde_json::Value::Object(fields.clone()), "{message}")
            }
            LogLevel::Info | LogLevel::Debug => {
                tracing::debug!(component = component.as_str(), trace_id, "{message}")
            }
        }
        let mut line = json!({
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            "level": level.as_str(),
            "message": message,
            "cluster": self.origin.cluster,
            "node": self.origin.node,
            "service": self.origin.service,
            "component": component.as_str(),
            "fields": fields,
        });
        if let Some(instance) = self.instance_id() {
            line["instance"] = json!(instance);
        }
        if let Some(trace_id) = trace_id {
            line["trace_id"] = json!(trace_id);
        }
        self.logs.push(line.to_string());
    }

    /// Records one handled request as an `http_requests` point: tags instance, service, version,
    /// cluster, node, method, status class; fields latency_ms and status.
    pub fn request_point(&self, method: &str, status: u16, latency: Duration) {
        let point = request_point(&self.origin, self.instance_id().as_deref(), method, status, latency);
        match point.to_line() {
            Ok(line) => self.metrics.push(line),
            // Only a hostile method name could get here (axum accepts extension methods).
            Err(error) => tracing::debug!(%error, "a request point could not be encoded; left out"),
        }
    }
}

/// The HTTP client the outboxes post with.
fn sender() -> Option<reqwest::Client> {
    match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(http) => Some(http),
        Err(error) => {
            tracing::error!(%error, "cannot build an HTTP client; no logs or metrics will reach opsdeck");
            None
        }
    }
}

/// `2xx`, `3xx`, `4xx` or `5xx`; anything else (0: no answer) counts as `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        // An informational (1xx) answer is never a request's final one; counted with success.
        100..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn request_point(origin: &Origin, instance: Option<&str>, method: &str, status: u16, latency: Duration) -> Point {
    let mut point = Point::new(HTTP_REQUESTS);
    if let Some(instance) = instance {
        point.push_tag("instance", instance);
    }
    point
        .tag("service", origin.service.as_str())
        .tag("version", origin.version.as_str())
        .tag("cluster", origin.cluster.as_str())
        .tag("node", origin.node.as_str())
        .tag("method", method)
        .tag("status_class", status_class(status))
        .field("latency_ms", latency.as_micros() as f64 / 1000.0)
        .field("status", i64::from(status))
        .timestamp(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_the_contract_and_no_answer_is_a_server_error() {
        let classes: Vec<_> = [200, 204, 302, 404, 499, 500, 503, 0].into_iter().map(status_class).collect();
        assert_eq!(classes, ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx"]);
    }

    #[test]
    fn a_request_point_carries_the_contract_tags_and_fields() {
        let origin =
            Origin { service: "web".into(), version: "v2".into(), cluster: "east".into(), node: "east-1".into() };
        let line = request_point(&origin, Some("7d0c2b1e"), "GET", 503, Duration::from_micros(12_300))
            .to_line()
            .expect("encodes");
        let (head, _timestamp) = line.rsplit_once(' ').expect("has a timestamp");
        assert_eq!(
            head,
            "http_requests,cluster=east,instance=7d0c2b1e,method=GET,node=east-1,service=web,status_class=5xx,version=v2 \
             latency_ms=12.3,status=503i"
        );
    }
}
