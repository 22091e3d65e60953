//! People: created by an admin (or `opsdeck user add`), with a role, a display name and an
//! argon2id password hash. Disabling a user or changing their password ends their sessions.

use app::model::{
    audit::{AuditAction, AuditOutcome},
    identity::{NewUser, Role, UserSummary, UserUpdate, Username, check_display_name, check_new_password},
};
use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Admin, Authorized, RequestContext, password};
use crate::{
    audit::{self, Actor, AuditEntry},
    http::error::{ApiError, ApiJson, ApiPath, ErrorBody},
    state::AppState,
};

/// A user as stored, for sign-in.
pub struct StoredUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
}

fn role(stored: &str) -> Role {
    // The CHECK constraint admits only the three names; anything else would be a schema bug,
    // and the least privilege is the safe reading of it.
    stored.parse().unwrap_or(Role::Viewer)
}

pub async fn find_for_sign_in(db: &sqlx::PgPool, username: &str) -> Result<Option<StoredUser>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT id, username, display_name, role, password_hash, disabled_at FROM users WHERE username = $1",
        username
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| StoredUser {
        id: r.id,
        username: r.username,
        display_name: r.display_name,
        role: role(&r.role),
        password_hash: r.password_hash,
        disabled: r.disabled_at.is_some(),
    }))
}

async fn summary(db: impl sqlx::PgExecutor<'_>, username: &str) -> Result<Option<UserSummary>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT username, display_name, role, created_at, disabled_at IS NOT NULL AS "disabled!" FROM users WHERE username = $1"#,
        username
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| UserSummary {
        username: r.username,
        display_name: r.display_name,
        role: role(&r.role),
        created_at: r.created_at,
        disabled: r.disabled,
    }))
}

pub async fn list(db: &sqlx::PgPool) -> Result<Vec<UserSummary>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT username, display_name, role, created_at, disabled_at IS NOT NULL AS "disabled!" FROM users ORDER BY username"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| UserSummary {
            username: r.username,
            display_name: r.display_name,
            role: role(&r.role),
            created_at: r.created_at,
            disabled: r.disabled,
        })
        .collect())
}

/// Creates a user; a taken name is a 409.
pub async fn create(
    db: &sqlx::PgPool,
    request: NewUser,
    actor: &Actor,
    context: &RequestContext,
) -> Result<UserSummary, ApiError> {
    check_display_name(&request.display_name).map_err(ApiError::Unprocessable)?;
    check_new_password(&request.password).map_err(|e| ApiError::Unprocessable(format!("password: {e}")))?;
    let hash = password::hash(request.password).await?;
    let mut tx = db.begin().await?;
    let inserted = sqlx::query!(
        "INSERT INTO users (username, display_name, role, password_hash) VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING",
        request.username.as_str(),
        request.display_name.trim(),
        request.role.as_str(),
        hash,
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!("a user named {} already exists", request.username)));
    }
    let created = summary(&mut *tx, request.username.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {} vanished inside its transaction", request.username))?;
    let entry = AuditEntry::new(actor.clone(), AuditAction::UserCreate, AuditOutcome::Success)
        .target(format!("user {}", created.username))
        .change(None, serde_json::to_value(&created).ok());
    audit::record(&mut *tx, &entry, context).await?;
    tx.commit().await?;
    Ok(created)
}

/// Applies an update; the audit row holds before and after (never the password).
pub async fn update(
    db: &sqlx::PgPool,
    username: &Username,
    change: UserUpdate,
    actor: &Actor,
    context: &RequestContext,
) -> Result<UserSummary, ApiError> {
    if let Some(name) = &change.display_name {
        check_display_name(name).map_err(ApiError::Unprocessable)?;
    }
    let hash = match change.password {
        Some(new) => {
            check_new_password(&new).map_err(|e| ApiError::Unprocessable(format!("password: {e}")))?;
            Some(password::hash(new).await?)
        }
        None => None,
    };
    let mut tx = db.begin().await?;
    let before = summary(&mut *tx, username.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user named {username}")))?;
    sqlx::query!(
        r#"UPDATE users SET
               display_name = COALESCE($2, display_name),
               role = COALESCE($3, role),
               password_hash = COALESCE($4, password_hash),
               disabled_at = CASE WHEN $5::BOOLEAN IS NULL THEN disabled_at
                                  WHEN $5 THEN COALESCE(disabled_at, now())
                                  ELSE NULL END
           WHERE username = $1"#,
        username.as_str(),
        change.display_name.as_deref().map(str::trim),
        change.role.map(Role::as_str),
        hash,
        change.disabled,
    )
    .execute(&mut *tx)
    .await?;
    let ends_sessions = change.disabled == Some(true) || hash.is_some();
    if ends_sessions {
        sqlx::query!(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            username.as_str()
        )
        .execute(&mut *tx)
        .await?;
    }
    let after =
        summary(&mut *tx, username.as_str()).await?.ok_or_else(|| anyhow::anyhow!("user {username} vanished"))?;
    let mut after_json = serde_json::to_value(&after).unwrap_or_default();
    if hash.is_some() {
        after_json["password"] = "changed".into();
    }
    let entry = AuditEntry::new(actor.clone(), AuditAction::UserUpdate, AuditOutcome::Success)
        .target(format!("user {username}"))
        .change(serde_json::to_value(&before).ok(), Some(after_json));
    audit::record(&mut *tx, &entry, context).await?;
    tx.commit().await?;
    Ok(after)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user)).routes(routes!(update_user))
}

/// All users.
#[utoipa::path(get, path = "/users", tag = "access",
    responses((status = 200, body = Vec<UserSummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn list_users(
    _admin: Authorized<Admin>,
    State(state): State<AppState>,
) -> Result<Json<Vec<UserSummary>>, ApiError> {
    Ok(Json(list(&state.db).await?))
}

/// Creates a user.
#[utoipa::path(post, path = "/users", tag = "access", request_body = NewUser,
    responses((status = 201, body = UserSummary), (status = 400, description = "The body is not valid JSON", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody),
              (status = 422, description = "A field breaks a rule", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn create_user(
    admin: Authorized<Admin>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserSummary>), ApiError> {
    let created = create(&state.db, request, &admin.principal.actor(), &admin.context).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Changes a user's display name, role, password or disabled state.
#[utoipa::path(patch, path = "/users/{username}", tag = "access", request_body = UserUpdate,
    params(("username" = String, Path, description = "User name")),
    responses((status = 200, body = UserSummary), (status = 400, description = "The body is not valid JSON", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
async fn update_user(
    admin: Authorized<Admin>,
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
    ApiJson(change): ApiJson<UserUpdate>,
) -> Result<Json<UserSummary>, ApiError> {
    let username: Username = username.parse().map_err(|_| ApiError::NotFound(format!("no user named {username:?}")))?;
    Ok(Json(update(&state.db, &username, change, &admin.principal.actor(), &admin.context).await?))
}
