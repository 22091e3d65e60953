//! The trace view's data: `GET /api/v1/traces/{trace_id}` answers every stored line that
//! carries the trace id, oldest first, and the path the request took ([`path`]).

pub mod path;

use app::model::{logs::LogLine, trace::TraceView};
use axum::{Json, extract::State};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Read},
    http::error::{ApiError, ApiPath, ErrorBody},
    logs::search::Row,
    state::AppState,
};

/// Most lines one trace answer holds.
pub const MAX_LINES: usize = 5000;
/// Longest trace id ingest accepts.
const MAX_TRACE_CHARS: usize = 128;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_trace))
}

/// Checks a trace id as ingest would have accepted it: 1–128 characters, no spaces or control
/// characters. The message says what is wrong.
pub fn check_trace_id(trace_id: &str) -> Result<(), String> {
    if trace_id.is_empty() || trace_id.chars().count() > MAX_TRACE_CHARS {
        return Err(format!("trace id: must be 1–{MAX_TRACE_CHARS} characters (e.g. 32 hex digits)"));
    }
    if trace_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("trace id: contains a space or control character; pass the id as logged".to_owned());
    }
    Ok(())
}

/// A trace: every line with this trace id, oldest first (at most 5,000), the spans the lines
/// describe (one per `fields.span_id`, else one per service@node@instance) and the hops between
/// them, with the time each took.
#[utoipa::path(get, path = "/traces/{trace_id}", tag = "logs",
    params(("trace_id" = String, Path, description = "The trace id as logged (W3C: 32 hex digits)")),
    responses((status = 200, body = TraceView),
              (status = 400, description = "Not a trace id", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "No stored line carries this trace id", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn get_trace(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(trace_id): ApiPath<String>,
) -> Result<Json<TraceView>, ApiError> {
    Ok(Json(load(&state, &trace_id).await?))
}

/// The trace view for an id, or the API error that explains why there is none (shared by the
/// API and the page).
pub async fn load(state: &AppState, trace_id: &str) -> Result<TraceView, ApiError> {
    check_trace_id(trace_id).map_err(ApiError::BadRequest)?;
    let (lines, truncated) = lines(&state.db, trace_id).await?;
    if lines.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no stored log line carries trace id {trace_id:?}; check the id, or its lines are older than the log retention ({})",
            humantime::format_duration(state.logs.retention)
        )));
    }
    Ok(path::derive(trace_id, lines, truncated))
}

/// The trace's lines, oldest first, and whether there were more than [`MAX_LINES`].
#[tracing::instrument(skip(db))]
async fn lines(db: &PgPool, trace_id: &str) -> sqlx::Result<(Vec<LogLine>, bool)> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id AS "id!", at, received_at, level, message, cluster, node, service, instance, component,
                  trace_id, fields
           FROM log_lines
           WHERE trace_id = $1
           ORDER BY at, id
           LIMIT $2"#,
        trace_id,
        MAX_LINES as i64 + 1,
    )
    .fetch_all(db)
    .await?;
    let truncated = rows.len() > MAX_LINES;
    Ok((rows.into_iter().take(MAX_LINES).map(LogLine::from).collect(), truncated))
}
