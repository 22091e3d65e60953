//! Aggregated logs: services and agents send NDJSON batches to `POST /api/v1/logs` (ingest
//! scope); people and tools search them with `GET /api/v1/logs` (read scope). Lines live in
//! PostgreSQL, in day partitions of `log_lines` that a worker creates ahead and drops whole
//! past the retention (`--log-retention`).

pub mod ingest;
pub mod partitions;
pub mod search;
pub mod tail;
pub mod trace;

use app::model::logs::{LineError, LogLevel, LogLineIn, LogPage, LogsAccepted, LogsRejected};
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Ingest, Read},
    http::error::{ApiError, ApiQuery, ErrorBody},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_logs, ingest_logs)).merge(tail::routes()).merge(trace::routes())
}

/// How many bad lines a refusal lists (the detail gives the full count).
const LISTED_ERRORS: usize = 100;
/// How far back a search looks when `since` is not given.
const DEFAULT_SPAN: chrono::Duration = chrono::Duration::hours(1);
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Stores a batch of log lines: NDJSON, one JSON object per line —
/// `{"time": RFC 3339, "level": "debug|info|warning|error|fatal", "message": "…", "cluster"?,
/// "node"?, "service"?, "instance"?, "component"?, "trace_id"?, "fields"?: {…}}`.
/// All or nothing: one bad line refuses the batch (422, every bad line named) and nothing is
/// stored; a 200 means every line is committed. At most 10,000 lines of 16 KiB each, times no
/// older than the retention and at most 1 h ahead.
#[utoipa::path(post, path = "/logs", tag = "logs",
    request_body(description = "NDJSON: one `LogLineIn` object per line. `application/json` with a single object is a batch of one.",
        content((String = "application/x-ndjson"), (LogLineIn = "application/json"))),
    responses((status = 200, description = "Every line is committed", body = LogsAccepted),
              (status = 400, description = "Not NDJSON", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, description = "The body is over the request size limit", body = ErrorBody),
              (status = 422, description = "Some lines are bad; nothing was stored", body = LogsRejected)),
    security(("bearer" = [])))]
async fn ingest_logs(
    _agent: Authorized<Ingest>,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_content_type(&headers)?;
    let batch = match ingest::parse(&body, Utc::now(), state.logs.retention) {
        Ok(batch) => batch,
        Err(errors) => return Ok(rejected(errors)),
    };
    let accepted = ingest::store(&state.db, &batch).await?;
    Ok(Json(LogsAccepted { accepted }).into_response())
}

/// NDJSON is the format; `application/json` is read the same way (a single object is a batch of
/// one line), and a missing type is taken as NDJSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json" => Ok(()),
        other => Err(ApiError::BadRequest(format!(
            "content-type {other:?}: send log lines as application/x-ndjson, one JSON object per line"
        ))),
    }
}

fn rejected(errors: Vec<LineError>) -> Response {
    let count = errors.len();
    let detail = if count == 1 {
        "1 line is invalid; nothing was stored: fix or drop it and send the batch again".to_owned()
    } else {
        format!("{count} lines are invalid; nothing was stored: fix or drop them and send the batch again")
    };
    let lines = errors.into_iter().take(LISTED_ERRORS).collect();
    let body = LogsRejected { error: "unprocessable".to_owned(), detail, lines };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct SearchParams {
    /// Oldest time (RFC 3339); default one hour ago.
    since: Option<DateTime<Utc>>,
    /// Newest time, exclusive (RFC 3339); default none.
    until: Option<DateTime<Utc>>,
    /// Minimum level: `warning` finds warning, error and fatal. Default debug (all).
    level: Option<LogLevel>,
    cluster: Option<String>,
    node: Option<String>,
    service: Option<String>,
    instance: Option<String>,
    trace_id: Option<String>,
    /// Full text over the message: words (all must appear), "a phrase", `or`, `-word`.
    q: Option<String>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
    /// Lines per page, 1–1000; default 100.
    limit: Option<u32>,
}

/// Searches log lines, newest first, a page at a time; the first page also counts the matching
/// lines by level.
#[utoipa::path(get, path = "/logs", tag = "logs", params(SearchParams),
    responses((status = 200, body = LogPage), (status = 400, description = "A parameter is wrong; the detail names it", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn search_logs(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<LogPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    let filter = search::Filter {
        since: params.since.unwrap_or_else(|| Utc::now() - DEFAULT_SPAN),
        until: params.until,
        level: params.level.unwrap_or(LogLevel::Debug),
        cluster: text_param("cluster", params.cluster)?,
        node: text_param("node", params.node)?,
        service: text_param("service", params.service)?,
        instance: text_param("instance", params.instance)?,
        trace_id: text_param("trace_id", params.trace_id)?,
        q: text_param("q", params.q)?.filter(|q| !q.trim().is_empty()),
    };
    Ok(Json(run_search(&state.db, filter, params.before.as_deref(), limit).await?))
}

/// The logs page's search: the same as the API's, with the range relative to now.
pub async fn search_for_page(db: &sqlx::PgPool, query: app::model::logs::LogQuery) -> Result<LogPage, ApiError> {
    let filter = search::Filter {
        since: Utc::now() - query.range.duration(),
        until: None,
        level: query.level.unwrap_or(LogLevel::Debug),
        cluster: text_param("cluster", query.cluster)?,
        node: text_param("node", query.node)?,
        service: text_param("service", query.service)?,
        instance: text_param("instance", query.instance)?,
        trace_id: text_param("trace_id", query.trace_id)?,
        q: text_param("q", query.q)?.filter(|q| !q.trim().is_empty()),
    };
    run_search(db, filter, query.before.as_deref(), DEFAULT_LIMIT).await
}

/// Checks the page size, cursor and range, then reads a page (and the counts on the first).
async fn run_search(
    db: &sqlx::PgPool,
    filter: search::Filter,
    before: Option<&str>,
    limit: u32,
) -> Result<LogPage, ApiError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit: {limit} is not between 1 and {MAX_LIMIT}")));
    }
    let before = match before {
        None => None,
        Some(text) => Some(search::Cursor::decode(text).ok_or_else(|| {
            ApiError::BadRequest("before: not a cursor; pass the `next` value of a previous page".to_owned())
        })?),
    };
    if filter.until.is_some_and(|until| until <= filter.since) {
        return Err(ApiError::BadRequest("until: must be later than since".to_owned()));
    }
    let (lines, next) = search::page(db, &filter, before, limit).await?;
    let counts = if before.is_none() { Some(search::counts(db, &filter).await?) } else { None };
    Ok(LogPage { lines, next: next.map(|c| c.encode()), counts, since: filter.since, until: filter.until })
}

/// A text filter: empty means "not given"; a NUL can't be in any stored value (and PostgreSQL
/// refuses it in a parameter), so it is refused here rather than failing in the query.
pub(crate) fn text_param(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if value.contains('\0') => Err(ApiError::BadRequest(format!("{name}: contains a NUL character"))),
        Some(value) if value.is_empty() => Ok(None),
        other => Ok(other),
    }
}
