//! Browser sessions: sign-in and sign-out forms, the session cookie, and the rows behind it.
//!
//! The cookie holds 256 random bits; PostgreSQL holds only their SHA-256, with an idle and an
//! absolute expiry, so sign-out and revocation work on every replica at once. Each session has
//! its own CSRF token, which every state-changing browser request must present. Failed sign-ins
//! are counted from the audit log, per account and per address, so the limit holds across
//! replicas too; the answer never says whether the account exists.

use std::time::Duration;

use app::model::{
    audit::{AuditAction, AuditOutcome},
    identity::Username,
};
use axum::{
    Form, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::post,
};
use chrono::Utc;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::{RequestContext, extract::SessionUser, password, secret, users};
use crate::{
    audit::{self, Actor, ActorKind, AuditEntry},
    cli::CookieSecure,
    state::AppState,
};

pub const SESSION_COOKIE: &str = "opsdeck_session";
/// Double-submit cookie that protects the sign-in form itself (there is no session yet).
pub const LOGIN_CSRF_COOKIE: &str = app::backend::LOGIN_FORM_COOKIE;

pub fn routes() -> Router<AppState> {
    Router::new().route("/auth/login", post(login)).route("/auth/logout", post(logout))
}

/// The value of a cookie from the request headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    read_cookie(headers, SESSION_COOKIE)
}

/// Builds a `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure when served over TLS.
pub fn set_cookie(name: &'static str, value: String, max_age: Option<Duration>, secure: bool) -> HeaderValue {
    build_cookie(name, value, max_age, secure, true)
}

/// A cookie the page's own script may read (the sign-in form's anti-forgery token, which the
/// hydrated page must render with the same value the server did). Never for sessions.
pub fn readable_cookie(name: &'static str, value: String, max_age: Duration, secure: bool) -> HeaderValue {
    build_cookie(name, value, Some(max_age), secure, false)
}

fn build_cookie(
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
    secure: bool,
    http_only: bool,
) -> HeaderValue {
    let mut cookie =
        Cookie::build((name, value)).path("/").http_only(http_only).same_site(SameSite::Lax).secure(secure);
    cookie = match max_age {
        Some(age) => cookie.max_age(cookie::time::Duration::seconds(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))),
        None => cookie.max_age(cookie::time::Duration::ZERO),
    };
    HeaderValue::from_str(&cookie.build().encoded().to_string()).expect("cookie text is a valid header")
}

/// Whether cookies get `Secure`: by setting, or (auto) when the proxy in front says https.
pub fn secure_cookies(setting: CookieSecure, headers: &HeaderMap) -> bool {
    match setting {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => {
            headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        }
    }
}

/// The signed-in user behind a session cookie, if the session is alive and the user enabled.
pub async fn authenticate(db: &sqlx::PgPool, cookie: &str, idle: Duration) -> Result<Option<SessionUser>, sqlx::Error> {
    let id_hash = secret::sha256(cookie);
    let idle_cutoff = Utc::now() - chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX);
    let row = sqlx::query!(
        r#"SELECT s.user_id, s.csrf_token, s.last_seen_at, u.username, u.display_name, u.role
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.id_hash = $1 AND s.expires_at > now() AND s.last_seen_at > $2 AND u.disabled_at IS NULL"#,
        id_hash,
        idle_cutoff,
    )
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    // Idle expiry needs last_seen_at; writing it at most once a minute keeps reads cheap.
    if row.last_seen_at < Utc::now() - chrono::Duration::minutes(1) {
        sqlx::query!("UPDATE sessions SET last_seen_at = now() WHERE id_hash = $1", id_hash).execute(db).await?;
    }
    Ok(Some(SessionUser {
        user_id: row.user_id,
        username: row.username,
        display_name: row.display_name,
        role: row.role.parse().unwrap_or(app::model::identity::Role::Viewer),
        csrf_token: row.csrf_token,
        session_hash: id_hash,
    }))
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    login_csrf: String,
}

/// Only paths on this site, so a crafted link can't send people elsewhere after sign-in.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local { next } else { "/" }
}

fn back_to_login(error: &str, next: &str) -> Response {
    let query = serde_urlencoded::to_string([("error", error), ("next", safe_next(next))]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match try_login(&state, &context, &headers, form).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "sign-in failed unexpectedly");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed unexpectedly; try again. The x-request-id header finds the cause in the server log.",
            )
                .into_response()
        }
    }
}

async fn try_login(
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    form: LoginForm,
) -> anyhow::Result<Response> {
    let expected = read_cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !secret::same_secret(&expected, &form.login_csrf) {
        return Ok(back_to_login("form_expired", &form.next));
    }
    let typed: String = form.username.trim().to_lowercase().chars().take(100).collect();
    let target = format!("user {typed}");
    let attempt = |outcome, detail: &str| {
        AuditEntry::new(Actor::anonymous(), AuditAction::Login, outcome)
            .target(target.clone())
            .detail(detail.to_owned())
    };

    let since =
        Utc::now() - chrono::Duration::from_std(state.auth.login_failure_window).unwrap_or(chrono::Duration::zero());
    let recent = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE target = $1) AS "by_account!", count(*) FILTER (WHERE source_address = $2) AS "by_address!"
           FROM audit_log WHERE action = 'auth.login' AND outcome <> 'success' AND at > $3"#,
        target,
        context.source_address,
        since,
    )
    .fetch_one(&state.db)
    .await?;
    if recent.by_account >= state.auth.login_failures_per_account
        || recent.by_address >= state.auth.login_failures_per_address
    {
        audit::record(
            &state.db,
            &attempt(AuditOutcome::Denied, "too many failed sign-ins; refused without checking the password"),
            context,
        )
        .await?;
        return Ok(back_to_login("rate_limited", &form.next));
    }

    let user = match typed.parse::<Username>() {
        Ok(name) => users::find_for_sign_in(&state.db, name.as_str()).await?,
        Err(_) => None,
    };
    let stored_hash = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
    // The same work and the same answer whether the account is missing, disabled or the
    // password wrong, so the answer reveals nothing.
    let valid = password::verify(form.password, stored_hash).await;
    let Some(user) = user.filter(|_| valid) else {
        audit::record(&state.db, &attempt(AuditOutcome::Failed, "wrong user name or password"), context).await?;
        return Ok(back_to_login("invalid", &form.next));
    };

    let session = secret::random_secret();
    let csrf = secret::random_secret();
    let lifetime = state.auth.session_lifetime;
    let expires_at = Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(7));
    let user_agent: Option<String> =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(300).collect());
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at, source_address, user_agent) VALUES ($1, $2, $3, $4, $5, $6)",
        secret::sha256(&session),
        user.id,
        csrf,
        expires_at,
        context.source_address,
        user_agent,
    )
    .execute(&mut *tx)
    .await?;
    let actor = Actor { kind: ActorKind::User, id: Some(user.id), name: user.username.clone() };
    let entry =
        AuditEntry::new(actor, AuditAction::Login, AuditOutcome::Success).target(format!("user {}", user.username));
    audit::record(&mut *tx, &entry, context).await?;
    tx.commit().await?;

    let secure = secure_cookies(state.auth.cookie_secure, headers);
    let mut response = Redirect::to(safe_next(&form.next)).into_response();
    let cookies = response.headers_mut();
    cookies.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, session, Some(lifetime), secure));
    cookies.append(header::SET_COOKIE, set_cookie(LOGIN_CSRF_COOKIE, String::new(), None, secure));
    Ok(response)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

#[tracing::instrument(skip_all)]
async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let user = match cookie_value(&headers) {
        Some(cookie) => authenticate(&state.db, &cookie, state.auth.session_idle).await.ok().flatten(),
        None => None,
    };
    let Some(user) = user else {
        return Redirect::to("/login").into_response();
    };
    let actor = Actor { kind: ActorKind::User, id: Some(user.user_id), name: user.username.clone() };
    if !secret::same_secret(&form.csrf, &user.csrf_token) {
        let entry = AuditEntry::new(actor, AuditAction::AccessDenied, AuditOutcome::Denied)
            .target("POST /auth/logout")
            .detail("sign-out form without this session's CSRF token");
        audit::record_refusal(&state.db, &entry, &context).await;
        return refusal_page(
            StatusCode::FORBIDDEN,
            "This form did not come from your opsdeck page",
            "The request lacked the page's security token, so nothing was changed. Go back, reload the page and try again.",
        );
    }
    let ended = async {
        let mut tx = state.db.begin().await?;
        sqlx::query!("DELETE FROM sessions WHERE id_hash = $1", user.session_hash).execute(&mut *tx).await?;
        let entry = AuditEntry::new(actor, AuditAction::Logout, AuditOutcome::Success)
            .target(format!("user {}", user.username));
        audit::record(&mut *tx, &entry, &context).await?;
        tx.commit().await
    };
    if let Err(error) = ended.await {
        tracing::error!(%error, "sign-out failed");
        return refusal_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-out failed",
            "The session could not be ended; try again.",
        );
    }
    let secure = secure_cookies(state.auth.cookie_secure, &headers);
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, String::new(), None, secure));
    response
}

/// A plain page for refusals of browser forms (the API answers JSON instead).
pub fn refusal_page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · opsdeck</title>\
         <link rel=\"stylesheet\" href=\"/pkg/opsdeck.css\"></head><body><div class=\"app\" data-theme=\"dark\">\
         <main class=\"app-main\"><section class=\"page\"><h1>✕ {title}</h1><p>{message}</p><p><a href=\"/\">Back to opsdeck</a></p>\
         </section></main></div></body></html>",
        title = escape(title),
        message = escape(message)
    );
    (status, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/audit?actor=x"), "/audit?actor=x");
        for outside in ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", ""] {
            assert_eq!(safe_next(outside), "/", "{outside}");
        }
    }
}
