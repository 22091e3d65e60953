//! opsdeck's own metrics at `GET /metrics`, in the OpenMetrics text format (which Prometheus
//! scrapes natively; it is the Prometheus text format plus `# EOF`), so opsdeck can be watched
//! by what people already run. Public like `/healthz`: it holds counts per route pattern and
//! the ingest buffer's fill, nothing about users or data.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client) with the registry in the
//! application state rather than a global recorder.

use std::{fmt::Write as _, sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Buffer, workers::WorkerMetrics};
use crate::state::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route pattern (`/api/v1/instances/{id}`), never the raw path, so the label set stays small.
    route: String,
    /// `2xx`, `4xx`, …
    status: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The registry and the request instruments; cheap to clone.
#[derive(Debug, Clone)]
pub struct OwnMetrics {
    registry: Arc<Registry>,
    /// The background workers' instruments (they hold clones).
    pub workers: WorkerMetrics,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl OwnMetrics {
    pub fn new(buffer: Arc<Buffer>, collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut registry = Registry::with_prefix("opsdeck");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern and status class",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer (until the response head), by route pattern and status class",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register_collector(Box::new(BufferCollector(buffer)));
        collectors.into_iter().for_each(|collector| registry.register_collector(collector));
        let workers = WorkerMetrics::new(&mut registry);
        Self { registry: Arc::new(registry), workers, requests, latency }
    }

    fn observe(&self, labels: RequestLabels, started: Instant) {
        self.latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The ingest buffer, read at scrape time.
#[derive(Debug)]
struct BufferCollector(Arc<Buffer>);

impl Collector for BufferCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        let gauges = [
            ("metrics_buffer_points", "Points held for InfluxDB", status.held as u64),
            (
                "metrics_buffer_capacity_points",
                "Most points the buffer holds (--metrics-buffer-points)",
                status.capacity as u64,
            ),
            ("metrics_writer_failing", "1 while writes to InfluxDB fail", u64::from(status.failing_for.is_some())),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            ("metrics_points_written", "Points written to InfluxDB", status.written),
            (
                "metrics_points_dropped",
                "Acknowledged points InfluxDB refused for good (a 4xx about the data; logged)",
                status.refused_by_influx,
            ),
            (
                "metrics_requests_refused_full",
                "Ingest requests refused with 503 because the buffer was full",
                status.requests_refused_full,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

/// Counts and times every request by route pattern (a `route_layer`-style middleware: it runs
/// after routing, so the pattern is known; unrouted requests count as `unmatched`).
pub async fn track_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    let mut status = String::with_capacity(3);
    let _ = write!(status, "{}xx", response.status().as_u16() / 100);
    state.metrics.own.observe(RequestLabels { method, route, status }, started);
    response
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(own_metrics))
}

/// opsdeck's own metrics in the OpenMetrics text format, for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn own_metrics(State(state): State<AppState>) -> Response {
    match state.metrics.own.encode() {
        Ok(text) => {
            let kind = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
            ([(header::CONTENT_TYPE, kind)], text).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "could not encode opsdeck's own metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
