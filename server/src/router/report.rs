//! What the router says about the requests it forwards: a `router_requests` point per instance
//! and status class each interval to InfluxDB (requests, attempts, latency sum/max/p50/p99; see
//! [`super::aggregate`] for why not one per request), counters at `/metrics`, and optionally an
//! access-log line per request to opsdeck's `POST /api/v1/logs`.
//!
//! Nothing here waits on the request path: a request is added to its instance's window under a
//! short lock; [`Reporter::flush`] turns the windows into lines for the bounded [`Buffer`] that
//! `opsdeck serve` also uses (a full buffer drops points and counts them); log lines go into the
//! demo services' [`Outbox`] (drops the oldest when full).

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::Utc;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde_json::json;

use super::aggregate::{BOUND_FIELDS, CLASSES, ClassWindow, Windows, slot};
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
    /// Every instance's report, for [`Reporter::flush`] (dropped once its instance is gone
    /// and its last window written).
    reports: Mutex<Vec<Arc<TargetReport>>>,
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
            reports: Mutex::default(),
        }
    }

    /// The report kept with `target`, made (and registered for flushing) on its first request.
    fn report_of<'t>(&self, service: &str, target: &'t Target) -> &'t Arc<TargetReport> {
        target.report.get_or_init(|| {
            let report = Arc::new(TargetReport::new(service, &target.upstream));
            self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(report.clone());
            report
        })
    }

    /// Writes every instance's window since the last flush as `router_requests` points (one per
    /// status class seen) into the buffer, and forgets instances that left the table.
    pub fn flush(&self) {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let reports: Vec<Arc<TargetReport>> = {
            let mut reports = self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let all = reports.clone();
            // Held only here and in the list: its instance left the table. This flush is its last.
            reports.retain(|report| Arc::strong_count(report) > 2);
            all
        };
        let mut lines = Vec::new();
        for report in &reports {
            lines.extend(report.take_lines(nanos));
        }
        if let (Some(buffer), false) = (&self.points, lines.is_empty()) {
            let count = lines.len() as u64;
            if buffer.push_all(lines).is_err() {
                self.points_dropped.inc_by(count);
            }
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
            Some(target) => {
                let report = self.report_of(request.service, target);
                report.counter(class, || self.requests_counter(request.service, version, class)).inc();
                if self.points.is_some() {
                    report.record(class, request.latency, request.attempts);
                }
            }
            None => {
                self.requests_counter(request.service, version, class).inc();
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

/// What one instance reports, kept with the instance (across table reloads): the escaped tag
/// text of its `router_requests` lines, its request counters and the current window.
#[derive(Debug, Default)]
pub struct TargetReport {
    /// `router_requests,cluster=…,instance=…` — tags sort by key.
    head: String,
    /// `,node=…,service=…` — then `status_class`.
    middle: String,
    /// `,version=…`.
    tail: String,
    /// A tag value InfluxDB can't take (newline, trailing backslash): no points for this instance.
    unencodable: bool,
    /// By status class: 2xx, 3xx, 4xx, 5xx.
    counters: [OnceLock<Counter>; 4],
    /// Requests since the last flush.
    window: Mutex<Windows>,
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
        Self { head, middle, tail, unencodable, counters: Default::default(), window: Mutex::default() }
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

    fn record(&self, class: &str, latency: Duration, attempts: u32) {
        let mut windows = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        windows.0[slot(class)].record(latency, attempts);
    }

    /// The window's lines (newline included; tags sorted by key as `influx::Point` does; fields
    /// `requests`, `attempts`, `latency_ms_sum`, `latency_ms_max`, `latency_ms_p50`,
    /// `latency_ms_p99` and the cumulative buckets `le_0_5ms` … `le_10000ms`), and a fresh window.
    fn take_lines(&self, nanos: u128) -> Vec<String> {
        let windows = std::mem::take(&mut *self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if self.unencodable {
            return Vec::new();
        }
        windows
            .0
            .iter()
            .zip(CLASSES)
            .filter(|(window, _)| window.requests > 0)
            .map(|(window, class)| self.line(class, window, nanos))
            .collect()
    }

    fn line(&self, class: &str, w: &ClassWindow, nanos: u128) -> String {
        let mut line = String::with_capacity(self.head.len() + self.middle.len() + self.tail.len() + 400);
        line.push_str(&self.head);
        line.push_str(&self.middle);
        line.push_str(",status_class=");
        line.push_str(class);
        line.push_str(&self.tail);
        let _ = write!(
            line,
            " requests={}i,attempts={}i,latency_ms_sum={},latency_ms_max={},latency_ms_p50={},latency_ms_p99={}",
            w.requests,
            w.attempts,
            w.latency_us_sum as f64 / 1000.0,
            w.latency_us_max as f64 / 1000.0,
            w.quantile_ms(0.5),
            w.quantile_ms(0.99),
        );
        for (field, count) in BOUND_FIELDS.iter().zip(w.at_most()) {
            let _ = write!(line, ",{field}={count}i");
        }
        let _ = writeln!(line, " {nanos}");
        line
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

    fn upstream(cluster: &str) -> Upstream {
        Upstream {
            id: Uuid::from_u128(7),
            version: "v2=canary".to_owned(),
            cluster: cluster.to_owned(),
            node: String::new(),
            host: "127.0.0.1".to_owned(),
            port: 8080,
            health: InstanceHealth::Healthy,
        }
    }

    #[test]
    fn a_window_becomes_one_line_per_status_class_seen_in_the_text_influx_point_encodes() {
        let upstream = upstream("east,1");
        let report = TargetReport::new("web shop", &upstream);
        report.record("5xx", Duration::from_micros(12_345), 2);
        report.record("5xx", Duration::from_micros(12_345), 2);
        report.record("2xx", Duration::from_micros(800), 1);

        let lines = report.take_lines(1_700_000_000_000_000_000);

        assert_eq!(lines.len(), 2, "{lines:?}");
        let expected = Point::new(ROUTER_REQUESTS)
            .tag("instance", upstream.id.to_string())
            .tag("service", "web shop")
            .tag("version", "v2=canary")
            .tag("cluster", "east,1")
            .tag("node", "")
            .tag("status_class", "5xx")
            .field("requests", 2_i64)
            .field("attempts", 4_i64)
            .field("latency_ms_sum", 24.69)
            .field("latency_ms_max", 12.345)
            .field("latency_ms_p50", 12.345)
            .field("latency_ms_p99", 12.345);
        let expected = BOUND_FIELDS
            .iter()
            .zip([0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2])
            .fold(expected, |point, (field, count)| point.field(*field, count as i64))
            .timestamp_ns(1_700_000_000_000_000_000)
            .to_line()
            .expect("a valid point");
        assert_eq!(lines[1], format!("{expected}\n"));
        assert!(lines[0].contains("status_class=2xx,") && lines[0].contains(" requests=1i,"), "{}", lines[0]);
        assert!(report.take_lines(1).is_empty(), "the window starts afresh after a flush");
    }

    #[test]
    fn an_instance_with_a_newline_in_a_tag_gets_no_points() {
        let report = TargetReport::new("web", &upstream("east\nwest"));
        report.record("2xx", Duration::from_millis(1), 1);
        assert_eq!(report.take_lines(1), Vec::<String>::new());
    }
}
