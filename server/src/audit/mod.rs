//! The audit log: every action and every refusal is recorded here, in one place, and served
//! back by `GET /api/v1/audit` and the audit page. The table is append-only in the database
//! itself (see the identity migration), not just by convention here.

use app::model::audit::{AuditAction, AuditFilter, AuditOutcome, AuditPage, AuditRecord};
use axum::Json;
use sqlx::PgExecutor;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{Authorized, Read, RequestContext},
    http::error::{ApiError, ApiQuery},
    state::AppState,
};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<i64>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Token,
    Anonymous,
    System,
}

impl ActorKind {
    fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }
}

impl Actor {
    pub fn anonymous() -> Self {
        Self { kind: ActorKind::Anonymous, id: None, name: "anonymous".into() }
    }

    /// The command line and background work.
    pub fn system(name: &str) -> Self {
        Self { kind: ActorKind::System, id: None, name: name.into() }
    }
}

/// One thing that happened (or was refused).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: AuditAction,
    pub target: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: Actor, action: AuditAction, outcome: AuditOutcome) -> Self {
        Self { actor, action, target: None, before: None, after: None, reason: None, outcome, detail: None }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn change(mut self, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }

    pub fn reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason.filter(|r| !r.trim().is_empty());
        self
    }
}

/// PostgreSQL text can't hold NUL; what a caller typed (a user name at sign-in, a path) must
/// still be recorded, so NUL becomes U+FFFD rather than failing the entry.
fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{FFFD}"))
}

/// Appends one entry. Pass a transaction to make the entry part of the action it records.
#[tracing::instrument(skip_all, fields(action = %entry.action, outcome = entry.outcome.as_str()))]
pub async fn record(db: impl PgExecutor<'_>, entry: &AuditEntry, context: &RequestContext) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"INSERT INTO audit_log (actor_kind, actor_id, actor_name, action, target, before, after, reason,
                                  outcome, detail, request_id, source_address)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           RETURNING id"#,
        entry.actor.kind.as_str(),
        entry.actor.id,
        entry.actor.name.replace('\0', "\u{FFFD}"),
        entry.action.as_str(),
        storable(&entry.target),
        entry.before,
        entry.after,
        storable(&entry.reason),
        entry.outcome.as_str(),
        storable(&entry.detail),
        storable(&context.request_id),
        context.source_address,
    )
    .fetch_one(db)
    .await
}

/// Records a refusal; a failure to record is logged, never turned into a different answer.
pub async fn record_refusal(db: impl PgExecutor<'_>, entry: &AuditEntry, context: &RequestContext) {
    if let Err(error) = record(db, entry, context).await {
        tracing::error!(%error, "could not record a refusal in the audit log");
    }
}

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 500;

/// Newest first, filtered, one page at a time (keyset pagination on the id).
pub async fn list(db: impl PgExecutor<'_>, filter: &AuditFilter) -> Result<AuditPage, ApiError> {
    if filter.actor.as_ref().is_some_and(|a| a.contains('\0')) {
        return Err(ApiError::BadRequest("actor: a name cannot contain a NUL character".into()));
    }
    if let Some(action) = &filter.action {
        action.parse::<AuditAction>().map_err(|e| ApiError::BadRequest(format!("action: {e}")))?;
    }
    if let Some(outcome) = &filter.outcome {
        outcome.parse::<AuditOutcome>().map_err(|e| ApiError::BadRequest(format!("outcome: {e}")))?;
    }
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    let rows = sqlx::query!(
        r#"SELECT id, at, actor_kind, actor_name, action, target, before, after, reason, outcome, detail,
                  request_id, source_address
           FROM audit_log
           WHERE ($1::TEXT IS NULL OR actor_name = $1)
             AND ($2::TEXT IS NULL OR action = $2)
             AND ($3::TEXT IS NULL OR outcome = $3)
             AND ($4::TIMESTAMPTZ IS NULL OR at >= $4)
             AND ($5::TIMESTAMPTZ IS NULL OR at < $5)
             AND ($6::BIGINT IS NULL OR id < $6)
           ORDER BY id DESC
           LIMIT $7"#,
        filter.actor,
        filter.action,
        filter.outcome,
        filter.since,
        filter.until,
        filter.before,
        limit + 1,
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() as i64 > limit;
    let records: Vec<AuditRecord> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AuditRecord {
            id: r.id,
            at: r.at,
            actor_kind: r.actor_kind,
            actor_name: r.actor_name,
            action: r.action,
            target: r.target,
            before: r.before,
            after: r.after,
            reason: r.reason,
            outcome: r.outcome.parse().unwrap_or(AuditOutcome::Failed),
            detail: r.detail,
            request_id: r.request_id,
            source_address: r.source_address,
        })
        .collect();
    let next_before = if more { records.last().map(|r| r.id) } else { None };
    Ok(AuditPage { records, next_before })
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// The audit log, newest first, with filters and cursor pagination.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditFilter),
    responses(
        (status = 200, description = "One page of audit records", body = AuditPage),
        (status = 400, description = "A filter value is invalid", body = crate::http::error::ErrorBody),
        (status = 401, description = "No identity", body = crate::http::error::ErrorBody),
        (status = 403, description = "The token lacks the read scope", body = crate::http::error::ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_audit(
    _reader: Authorized<Read>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
    state: axum::extract::State<AppState>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(list(&state.db, &filter).await?))
}
