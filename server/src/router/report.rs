//! What the router says about the requests it forwards: a `router_requests` point per request to
//! InfluxDB (same tags and fields as the services' `http_requests`, plus `attempts`), counters at
//! `/metrics`, and optionally an access-log line to opsdeck's `POST /api/v1/logs`.
//!
//! Nothing here waits on the request path: points go into the bounded [`Buffer`] that
//! `opsdeck serve` also uses (a full buffer drops the point and counts it) and log lines into the
//! demo services' [`Outbox`] (drops the oldest when full).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde_json::json;

use crate::{
    demo::{outbox::Outbox, telemetry::status_class},
    influx::Point,
    metrics::Buffer,
    traffic::Upstream,
};

/// The InfluxDB measurement the router writes (services write `http_requests`; never both for
/// one request, so the two never double count).
pub const ROUTER_REQUESTS: &str = "router_requests";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    version: String,
    status_class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// One forwarded (or refused) request, as reported.
pub struct Forwarded<'a> {
    pub service: &'a str,
    pub upstream: Option<&'a Upstream>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub attempts: u32,
    pub trace_id: &'a str,
}

/// The router's instruments and outlets; one per router.
pub struct Reporter {
    pub registry: Registry,
    requests: Family<RequestLabels, Counter>,
    retries: Family<ServiceLabel, Counter>,
    fallbacks: Family<ServiceLabel, Counter>,
    no_upstream: Family<ServiceLabel, Counter>,
    breakers_opened: Family<ServiceLabel, Counter>,
    unrouted: Counter,
    points_dropped: Counter,
    points: Option<Arc<Buffer>>,
    access_log: Option<Arc<Outbox>>,
}

impl Reporter {
    pub fn new(points: Option<Arc<Buffer>>, access_log: Option<Arc<Outbox>>) -> Self {
        let mut registry = Registry::with_prefix("opsdeck_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let retries = Family::<ServiceLabel, Counter>::default();
        let fallbacks = Family::<ServiceLabel, Counter>::default();
        let no_upstream = Family::<ServiceLabel, Counter>::default();
        let breakers_opened = Family::<ServiceLabel, Counter>::default();
        let unrouted = Counter::default();
        let points_dropped = Counter::default();
        registry.register("requests", "Requests answered, by service, version and status class", requests.clone());
        registry.register("retries", "Attempts made again on another instance", retries.clone());
        registry.register(
            "version_fallbacks",
            "Requests whose version had no instance to take them, served by another weighted version",
            fallbacks.clone(),
        );
        registry.register("no_upstream", "Requests answered 503: no healthy instance", no_upstream.clone());
        registry.register(
            "breakers_opened",
            "Times an instance's passive circuit breaker opened (connect errors or 5xx in a row)",
            breakers_opened.clone(),
        );
        registry.register("unrouted", "Requests no service's route matched (404)", unrouted.clone());
        registry.register(
            "points_dropped",
            "Request points not sent to InfluxDB because the buffer was full",
            points_dropped.clone(),
        );
        Self {
            registry,
            requests,
            retries,
            fallbacks,
            no_upstream,
            breakers_opened,
            unrouted,
            points_dropped,
            points,
            access_log,
        }
    }

    pub fn retried(&self, service: &str) {
        self.retries.get_or_create(&ServiceLabel { service: service.to_owned() }).inc();
    }

    pub fn fell_back(&self, service: &str, wanted: &str, got: &str) {
        tracing::info!(service, wanted, got, "version without an instance to take the call; served by another");
        self.fallbacks.get_or_create(&ServiceLabel { service: service.to_owned() }).inc();
    }

    pub fn breaker_opened(&self, service: &str, upstream: &Upstream) {
        tracing::warn!(service, instance = %upstream.id, address = %upstream.address(), "circuit breaker opened: the instance is out of rotation until a trial call succeeds");
        self.breakers_opened.get_or_create(&ServiceLabel { service: service.to_owned() }).inc();
    }

    pub fn no_upstream(&self, service: &str) {
        self.no_upstream.get_or_create(&ServiceLabel { service: service.to_owned() }).inc();
    }

    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// Counts, writes the point and the access-log line. Never waits.
    pub fn forwarded(&self, request: &Forwarded<'_>) {
        let version = request.upstream.map_or("", |u| u.version.as_str());
        self.requests
            .get_or_create(&RequestLabels {
                service: request.service.to_owned(),
                version: version.to_owned(),
                status_class: status_class(request.status).to_owned(),
            })
            .inc();
        if let (Some(buffer), Some(upstream)) = (&self.points, request.upstream) {
            match point(request, upstream).to_line() {
                Ok(mut line) => {
                    line.push('\n');
                    if buffer.push_all(vec![line]).is_err() {
                        self.points_dropped.inc();
                    }
                }
                Err(error) => tracing::debug!(%error, "a request point could not be encoded; left out"),
            }
        }
        if let Some(outbox) = &self.access_log {
            outbox.push(access_line(request, version).to_string());
        }
    }
}

fn point(request: &Forwarded<'_>, upstream: &Upstream) -> Point {
    Point::new(ROUTER_REQUESTS)
        .tag("instance", upstream.id.to_string())
        .tag("service", request.service)
        .tag("version", upstream.version.as_str())
        .tag("cluster", upstream.cluster.as_str())
        .tag("node", upstream.node.as_str())
        .tag("method", request.method)
        .tag("status_class", status_class(request.status))
        .field("latency_ms", request.latency.as_micros() as f64 / 1000.0)
        .field("status", i64::from(request.status))
        .field("attempts", i64::from(request.attempts))
        .timestamp(Utc::now())
}

fn access_line(request: &Forwarded<'_>, version: &str) -> serde_json::Value {
    let level = if request.status >= 500 { "warning" } else { "info" };
    let mut line = json!({
        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "message": format!("{} {} → {}", request.method, request.path, request.status),
        "service": request.service,
        "component": "router",
        "trace_id": request.trace_id,
        "fields": {
            "version": version,
            "method": request.method,
            "path": request.path,
            "status": request.status,
            "latency_ms": request.latency.as_micros() as f64 / 1000.0,
            "attempts": request.attempts,
        },
    });
    if let Some(upstream) = request.upstream {
        line["instance"] = json!(upstream.id.to_string());
        line["cluster"] = json!(upstream.cluster);
        line["node"] = json!(upstream.node);
    }
    line
}
