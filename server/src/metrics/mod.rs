//! Metrics ingest: `POST /api/v1/metrics` takes InfluxDB line protocol from services and
//! agents, checks every line, adds the registry's tags, and holds the points in a bounded buffer
//! that a writer task empties into InfluxDB in batches (see `docs/architecture.md`, "Metrics
//! ingest").
//!
//! Batch policy: a request is taken whole or not at all. One bad line refuses the request (422,
//! every bad line listed with its number and reason); a request that doesn't fit in the buffer
//! is refused (503 + `Retry-After`). So a 202 means every point of the request is held and will
//! be written, and anything else means none was kept and the sender should retry or fix it.

mod buffer;
mod prometheus;
mod registry_tags;
pub mod workers;

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use buffer::{Buffer, BufferStatus, Full, run_writer, run_writer_lingering};

/// How long a request waits for room in a full buffer while InfluxDB is merely slower than the
/// senders (not failing), before it is refused with 503: backpressure instead of a refusal that
/// costs the sender a whole `Retry-After` second.
const FULL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
pub use prometheus::{OwnMetrics, track_request};
pub use registry_tags::{InstanceTags, TagCache};

use crate::{
    auth::{Authorized, Ingest},
    http::error::{ApiError, ApiQuery, ErrorBody},
    influx::{FieldValue, InfluxApi, LineError, Precision, parse_lines},
    state::AppState,
};

/// Shared by every request: the ingest buffer, the registry tag cache and opsdeck's own metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub buffer: Arc<Buffer>,
    pub tags: Arc<TagCache>,
    pub own: OwnMetrics,
}

impl Metrics {
    /// `collectors`: other features' gauges and counters for `/metrics`, read at scrape time.
    pub fn new(buffer_points: usize, collectors: Vec<Box<dyn prometheus_client::collector::Collector>>) -> Self {
        let buffer = Arc::new(Buffer::new(buffer_points));
        Self { own: OwnMetrics::new(buffer.clone(), collectors), buffer, tags: Arc::default() }
    }
}

/// Ingest, under `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// `/metrics` (opsdeck's own, for Prometheus), at the root beside `/healthz`.
pub fn root_routes() -> OpenApiRouter<AppState> {
    prometheus::routes()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct IngestParams {
    /// The unit of the timestamps in the body: ns (default), us, ms or s.
    #[param(inline)]
    precision: Option<Precision>,
}

/// A request's points are held and will be written.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// How many points the request carried (all of them are held).
    pub points: usize,
}

/// A refused batch: every bad line with its number (from 1) and the reason.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BadLines {
    /// `unprocessable`.
    pub error: String,
    pub detail: String,
    pub lines: Vec<LineError>,
}

/// Why a request was not taken.
#[derive(Debug)]
enum IngestError {
    /// 422: some lines are not valid; none of the request was kept.
    BadLines {
        total: usize,
        errors: Vec<LineError>,
    },
    /// 503 + `Retry-After`: the buffer can't hold the request; none of it was kept.
    Full(Full),
    Api(ApiError),
}

impl From<ApiError> for IngestError {
    fn from(error: ApiError) -> Self {
        IngestError::Api(error)
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        match self {
            IngestError::BadLines { total, errors } => {
                let shown: Vec<String> =
                    errors.iter().take(5).map(|e| format!("line {}: {}", e.line, e.reason)).collect();
                let more = if errors.len() > 5 { format!("; and {} more", errors.len() - 5) } else { String::new() };
                let detail = format!(
                    "{} of {total} points are not valid line protocol, so none of the request was kept: {}{more}",
                    errors.len(),
                    shown.join("; ")
                );
                let body = BadLines { error: "unprocessable".into(), detail, lines: errors };
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
            IngestError::Full(full) => {
                let (why, retry_after) = match &full.writer_error {
                    Some(error) => (format!("InfluxDB is unreachable ({error})"), "5"),
                    None => ("InfluxDB is not keeping up".to_string(), "1"),
                };
                let detail = format!(
                    "the metrics buffer is full ({} of {} points held, this request has {}) because {why}; \
                     none of this request was kept: retry after {retry_after} s",
                    full.held, full.capacity, full.wanted
                );
                let body = ErrorBody { error: "unavailable".into(), detail };
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
                response
            }
            IngestError::Api(error) => error.into_response(),
        }
    }
}

/// Takes InfluxDB line protocol. All or nothing: 202 means every point is held for InfluxDB;
/// 422 lists every bad line; 503 means the buffer is full — at once while InfluxDB is down, or
/// after waiting up to 2 s for room while it is only slow — retry after `Retry-After` seconds. Points without a timestamp get the time they were received. Points with
/// an `instance` tag (a registered instance id) get the missing `cluster`, `node`, `service` and
/// `version` tags from the registry.
#[utoipa::path(post, path = "/metrics", tag = "metrics", params(IngestParams),
    request_body(content = String, content_type = "text/plain", description = "InfluxDB line protocol, one point per line"),
    responses((status = 202, description = "Every point is held and will be written", body = Accepted),
              (status = 400, description = "Not UTF-8, or a bad precision", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, description = "Bad lines, each with its number and reason; nothing kept", body = BadLines),
              (status = 503, description = "The buffer is full; nothing kept; see Retry-After", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(bytes = body.len(), points))]
async fn ingest(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<IngestParams>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), IngestError> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body is not UTF-8 (at byte {}); send line protocol as text", e.valid_up_to()))
    })?;
    let received_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let (parsed, mut errors) = parse_lines(text, params.precision.unwrap_or_default());
    let total = parsed.len() + errors.len();
    tracing::Span::current().record("points", total);
    let v1 = state.influx.config().api == InfluxApi::V1;
    let mut numbers = Vec::with_capacity(parsed.len());
    let mut points = Vec::with_capacity(parsed.len());
    for (line, point) in parsed {
        if v1 && let Some((key, _)) = point.fields().iter().find(|(_, v)| matches!(v, FieldValue::UInteger(_))) {
            errors.push(LineError {
                line,
                reason: format!(
                    "field {key:?}: unsigned integers (3u) need InfluxDB 2.x or later and opsdeck writes to \
                     InfluxDB 1.x (--influx-api v1); send it as an integer (3i)"
                ),
            });
            continue;
        }
        let point = if point.timestamp_ns_opt().is_none() { point.timestamp_ns(received_ns) } else { point };
        numbers.push(line);
        points.push(point);
    }
    state.metrics.tags.enrich(&state.db, &mut points).await.map_err(|error| {
        tracing::warn!(%error, "cannot read the registry to tag metrics");
        ApiError::Unavailable("cannot read the registry (PostgreSQL) to tag the points; retry shortly".into())
    })?;
    let mut lines = Vec::with_capacity(points.len());
    for (line, point) in numbers.into_iter().zip(&points) {
        let mut encoded = String::new();
        match point.encode_into(&mut encoded) {
            Ok(()) => lines.push(encoded),
            Err(error) => errors.push(LineError { line, reason: error.to_string() }),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(IngestError::BadLines { total, errors });
    }
    let count = lines.len();
    state.metrics.buffer.push_all_within(lines, FULL_PATIENCE).await.map_err(IngestError::Full)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { points: count })))
}
