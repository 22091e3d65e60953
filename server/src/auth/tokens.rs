//! API tokens: random, shown once, stored as a hash, scoped, expiring, revocable.

use app::model::{
    audit::{AuditAction, AuditOutcome},
    identity::{CreatedToken, NewToken, Scope, TokenSummary},
};
use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    Admin, Authorized,
    extract::{Refusal, TokenHolder},
    secret,
};
use crate::{
    audit::{self, Actor, ActorKind, AuditEntry},
    http::error::{ApiError, ApiJson, ApiPath, ErrorBody},
    state::AppState,
};

/// Characters of the token kept in the clear to tell tokens apart (`odk_` + 6).
const SHOWN_PREFIX: usize = 10;

fn parse_scopes(stored: &[String]) -> Vec<Scope> {
    stored.iter().filter_map(|s| s.parse().ok()).collect()
}

/// Checks a presented token. Unknown, revoked and expired tokens are refused with the reason
/// (revealing that a token was revoked helps its owner and tells an attacker nothing new).
pub async fn authenticate(db: &sqlx::PgPool, presented: &str) -> Result<TokenHolder, Refusal> {
    let row = sqlx::query!(
        r#"SELECT id, name, scopes, expires_at, revoked_at, (expires_at IS NOT NULL AND expires_at <= now()) AS "expired!"
           FROM api_tokens WHERE secret_hash = $1"#,
        secret::sha256(presented),
    )
    .fetch_optional(db)
    .await
    .map_err(|error| {
        tracing::error!(%error, "could not look up an API token");
        Refusal { actor: Actor::anonymous(), detail: "the token could not be checked; try again".into() }
    })?;
    let Some(row) = row else {
        return Err(Refusal { actor: Actor::anonymous(), detail: "unknown API token".into() });
    };
    let actor = Actor { kind: ActorKind::Token, id: Some(row.id), name: row.name.clone() };
    if let Some(at) = row.revoked_at {
        return Err(Refusal { actor, detail: format!("API token {:?} was revoked at {at}", row.name) });
    }
    if row.expired {
        let at = row.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        return Err(Refusal { actor, detail: format!("API token {:?} expired at {at}", row.name) });
    }
    // At most one write a minute per token, not one per request.
    let touched = sqlx::query!(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        row.id
    )
    .execute(db)
    .await;
    if let Err(error) = touched {
        tracing::warn!(%error, "could not record when an API token was last used");
    }
    Ok(TokenHolder { id: row.id, name: row.name, scopes: parse_scopes(&row.scopes) })
}

/// Creates a token and returns its secret (the only time it exists outside the caller).
pub async fn create(
    db: &sqlx::PgPool,
    request: &NewToken,
    actor: &Actor,
    context: &super::RequestContext,
) -> Result<CreatedToken, ApiError> {
    request.check().map_err(ApiError::Unprocessable)?;
    let secret = format!("{}{}", secret::TOKEN_PREFIX, secret::random_secret());
    let scopes: Vec<String> = request.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    let expires_at = request.expires_in_days.map(|days| Utc::now() + chrono::Duration::days(i64::from(days)));
    let created_by = (actor.kind == ActorKind::User).then_some(actor.id).flatten();
    let mut tx = db.begin().await?;
    let id = sqlx::query_scalar!(
        r#"INSERT INTO api_tokens (name, prefix, secret_hash, scopes, created_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"#,
        request.name.trim(),
        &secret[..SHOWN_PREFIX],
        secret::sha256(&secret),
        &scopes,
        created_by,
        expires_at,
    )
    .fetch_one(&mut *tx)
    .await?;
    let token =
        find(&mut *tx, id).await?.ok_or_else(|| anyhow::anyhow!("token {id} vanished inside its transaction"))?;
    let entry = AuditEntry::new(actor.clone(), AuditAction::TokenCreate, AuditOutcome::Success)
        .target(format!("token {} ({})", token.name, token.id))
        .change(None, Some(serde_json::to_value(&token).unwrap_or_default()));
    audit::record(&mut *tx, &entry, context).await?;
    tx.commit().await?;
    Ok(CreatedToken { token, secret })
}

/// A token row as selected for listing.
struct TokenRow {
    id: i64,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenSummary {
    fn from(r: TokenRow) -> Self {
        TokenSummary {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: parse_scopes(&r.scopes),
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

async fn find(db: impl sqlx::PgExecutor<'_>, id: i64) -> Result<Option<TokenSummary>, sqlx::Error> {
    let row = sqlx::query_as!(
        TokenRow,
        r#"SELECT t.id, t.name, t.prefix, t.scopes, u.username AS "created_by?", t.created_at, t.expires_at,
                  t.last_used_at, t.revoked_at
           FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by WHERE t.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(TokenSummary::from))
}

/// Every token, newest first.
pub async fn list(db: &sqlx::PgPool) -> Result<Vec<TokenSummary>, sqlx::Error> {
    let rows = sqlx::query_as!(
        TokenRow,
        r#"SELECT t.id, t.name, t.prefix, t.scopes, u.username AS "created_by?", t.created_at, t.expires_at,
                  t.last_used_at, t.revoked_at
           FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by ORDER BY t.id DESC"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(TokenSummary::from).collect())
}

/// Revokes a token; revoking a revoked token changes nothing and says so.
pub async fn revoke(
    db: &sqlx::PgPool,
    id: i64,
    actor: &Actor,
    context: &super::RequestContext,
) -> Result<TokenSummary, ApiError> {
    let mut tx = db.begin().await?;
    let before = find(&mut *tx, id).await?.ok_or_else(|| ApiError::NotFound(format!("no API token with id {id}")))?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let revoked_at: DateTime<Utc> = sqlx::query_scalar!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 RETURNING revoked_at AS \"revoked_at!\"",
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    let after = TokenSummary { revoked_at: Some(revoked_at), ..before.clone() };
    let entry = AuditEntry::new(actor.clone(), AuditAction::TokenRevoke, AuditOutcome::Success)
        .target(format!("token {} ({})", before.name, before.id))
        .change(serde_json::to_value(&before).ok(), serde_json::to_value(&after).ok());
    audit::record(&mut *tx, &entry, context).await?;
    tx.commit().await?;
    Ok(after)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

/// All API tokens (never their secrets).
#[utoipa::path(get, path = "/tokens", tag = "access",
    responses((status = 200, body = Vec<TokenSummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn list_tokens(
    _admin: Authorized<Admin>,
    State(state): State<AppState>,
) -> Result<Json<Vec<TokenSummary>>, ApiError> {
    Ok(Json(list(&state.db).await?))
}

/// Creates a token; the response is the only time its secret is shown.
#[utoipa::path(post, path = "/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, description = "The body is not valid JSON", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, description = "A field breaks a rule", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn create_token(
    admin: Authorized<Admin>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let created = create(&state.db, &request, &admin.principal.actor(), &admin.context).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token at once, on every replica.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "access", params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = TokenSummary), (status = 400, description = "The id is not a number", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn revoke_token(
    admin: Authorized<Admin>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenSummary>, ApiError> {
    Ok(Json(revoke(&state.db, id, &admin.principal.actor(), &admin.context).await?))
}
