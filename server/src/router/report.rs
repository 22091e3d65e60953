//! What the router says about the requests it forwards: a `router_requests` point per request to
//! InfluxDB (same tags and fields as the services' `http_requests`, plus `attempts`), counters at
//! `/metrics`, and optionally an access-log line to opsdeck's `POST /api/v1/logs`.
//!
//! Nothing here waits on the request path: points go into the bounded [`Buffer`] that
//! `opsdeck serve` also uses (a full buffer drops the point and counts it) and log lines into the
//! demo services' [`Outbox`] (drops the oldest when full).

use std::{
    fmt::Write as _,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::Utc;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde_json::json;

use crate::{
    demo::{outbox::Outbox, telemetry::status_class},
    influx::escape_into,
    metrics::Buffer,
    router::pool::Target,
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
    pub upstream: Option<&'a Target>,
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
        let version = request.upstream.map_or("", |t| t.upstream.version.as_str());
        let class = status_class(request.status);
        match request.upstream {
            // The instance's counters are resolved once (per status class) and kept with it.
            Some(target) => target
                .report
                .get_or_init(|| TargetReport::new(request.service, &target.upstream))
                .counter(class, || self.requests_counter(request.service, version, class))
                .inc(),
            None => self.requests_counter(request.service, version, class).inc(),
        };
        if let (Some(buffer), Some(target)) = (&self.points, request.upstream) {
            let cached = target.report.get_or_init(|| TargetReport::new(request.service, &target.upstream));
            match cached.line(request) {
                Some(line) => {
                    if buffer.push_all(vec![line]).is_err() {
                        self.points_dropped.inc();
                    }
                }
                None => tracing::debug!(
                    instance = %target.upstream.id,
                    "a request point could not be encoded (a tag with a newline or a trailing backslash); left out"
                ),
            }
        }
        if let Some(outbox) = &self.access_log {
            outbox.push(access_line(request, version).to_string());
        }
    }

    fn requests_counter(&self, service: &str, version: &str, class: &str) -> Counter {
        self.requests
            .get_or_create(&RequestLabels {
                service: service.to_owned(),
                version: version.to_owned(),
                status_class: class.to_owned(),
            })
            .clone()
    }
}

/// What every request to one instance reports alike, worked out on its first request and kept
/// with the instance (across table reloads): the escaped tag text of its `router_requests` line
/// and its request counters. Saves the per-request tag strings, sort and escaping.
#[derive(Debug, Default)]
pub struct TargetReport {
    /// `router_requests,cluster=…,instance=…` — tags sort by key, `method` comes next.
    head: String,
    /// `,node=…,service=…` — then `status_class`.
    middle: String,
    /// `,version=…`.
    tail: String,
    /// A tag value InfluxDB can't take (newline, trailing backslash): no points for this instance.
    unencodable: bool,
    /// By status class: 2xx, 3xx, 4xx, 5xx.
    counters: [OnceLock<Counter>; 4],
}

const TAG_SPECIALS: &[char] = &[',', '=', ' '];

impl TargetReport {
    fn new(service: &str, upstream: &Upstream) -> Self {
        let instance = upstream.id.to_string();
        // Empty values are left out, as `influx::Point` does.
        let tag = |out: &mut String, key: &str, value: &str| {
            if value.is_empty() {
                return;
            }
            out.push(',');
            out.push_str(key);
            out.push('=');
            escape_into(out, value, TAG_SPECIALS);
        };
        let mut head = String::from(ROUTER_REQUESTS);
        tag(&mut head, "cluster", &upstream.cluster);
        tag(&mut head, "instance", &instance);
        let mut middle = String::new();
        tag(&mut middle, "node", &upstream.node);
        tag(&mut middle, "service", service);
        let mut tail = String::new();
        tag(&mut tail, "version", &upstream.version);
        let unencodable = [upstream.cluster.as_str(), &instance, &upstream.node, service, &upstream.version]
            .iter()
            .any(|value| value.contains(['\n', '\r']) || value.ends_with('\\'));
        Self { head, middle, tail, unencodable, counters: Default::default() }
    }

    fn counter(&self, class: &str, resolve: impl FnOnce() -> Counter) -> &Counter {
        let slot = match class {
            "2xx" => 0,
            "3xx" => 1,
            "4xx" => 2,
            _ => 3,
        };
        self.counters[slot].get_or_init(resolve)
    }

    /// The request's line, newline included — the same text `influx::Point` encodes (tags sorted
    /// by key, fields `latency_ms`, `status`, `attempts`, nanosecond timestamp).
    fn line(&self, request: &Forwarded<'_>) -> Option<String> {
        if self.unencodable {
            return None;
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut line = String::with_capacity(self.head.len() + self.middle.len() + self.tail.len() + 96);
        line.push_str(&self.head);
        if !request.method.is_empty() {
            line.push_str(",method=");
            escape_into(&mut line, request.method, TAG_SPECIALS);
        }
        line.push_str(&self.middle);
        line.push_str(",status_class=");
        line.push_str(status_class(request.status));
        line.push_str(&self.tail);
        let latency_ms = request.latency.as_micros() as f64 / 1000.0;
        let _ = writeln!(
            line,
            " latency_ms={latency_ms},status={}i,attempts={}i {nanos}",
            request.status, request.attempts
        );
        Some(line)
    }
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
    if let Some(upstream) = request.upstream.map(|t| &t.upstream) {
        line["instance"] = json!(upstream.id.to_string());
        line["cluster"] = json!(upstream.cluster);
        line["node"] = json!(upstream.node);
    }
    line
}

#[cfg(test)]
mod tests {
    use app::model::topology::InstanceHealth;
    use uuid::Uuid;

    use super::*;
    use crate::influx::Point;

    fn forwarded<'a>(upstream: Option<&'a Target>, method: &'a str) -> Forwarded<'a> {
        Forwarded {
            service: "web shop",
            upstream,
            method,
            path: "/",
            status: 503,
            latency: Duration::from_micros(12_345),
            attempts: 2,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    }

    #[test]
    fn the_cached_line_is_the_text_influx_point_encodes() {
        let upstream = Upstream {
            id: Uuid::from_u128(7),
            version: "v2=canary".to_owned(),
            cluster: "east,1".to_owned(),
            node: String::new(),
            host: "127.0.0.1".to_owned(),
            port: 8080,
            health: InstanceHealth::Healthy,
        };
        let report = TargetReport::new("web shop", &upstream);
        let request = forwarded(None, "GET");
        let line = report.line(&request).expect("an encodable line");
        let (text, nanos) = line.trim_end().rsplit_once(' ').expect("a timestamp");
        let expected = Point::new(ROUTER_REQUESTS)
            .tag("instance", upstream.id.to_string())
            .tag("service", "web shop")
            .tag("version", "v2=canary")
            .tag("cluster", "east,1")
            .tag("node", "")
            .tag("method", "GET")
            .tag("status_class", "5xx")
            .field("latency_ms", 12.345)
            .field("status", 503_i64)
            .field("attempts", 2_i64)
            .timestamp_ns(nanos.parse().expect("nanoseconds"))
            .to_line()
            .expect("a valid point");
        assert_eq!(format!("{text} {nanos}"), expected);
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn an_instance_with_a_newline_in_a_tag_gets_no_points() {
        let upstream = Upstream {
            id: Uuid::from_u128(8),
            version: "v1".to_owned(),
            cluster: "east\nwest".to_owned(),
            node: "n1".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 8080,
            health: InstanceHealth::Healthy,
        };
        assert_eq!(TargetReport::new("web", &upstream).line(&forwarded(None, "GET")), None);
    }
}
