//! Enforcement in one place: who is asking ([`Principal`]), and whether they may
//! ([`authorize`]). REST handlers state what they need in their signature
//! (`Authorized<Operate>`); server functions call [`authorize`] with the same rules. Every
//! refusal is written to the audit log.

use std::{marker::PhantomData, net::SocketAddr};

use app::model::{
    audit::{AuditAction, AuditOutcome},
    identity::{Role, Scope, Whoami},
};
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri};
use http::{HeaderMap, header, request::Parts};

use super::{sessions, tokens};
use crate::{
    audit::{self, Actor, ActorKind, AuditEntry},
    http::{REQUEST_ID, error::ApiError},
    state::AppState,
};

/// A person signed in through the browser.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub csrf_token: String,
    pub session_hash: Vec<u8>,
}

/// A service, agent, script or wall screen holding an API token.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    User(SessionUser),
    Token(TokenHolder),
    Anonymous,
}

impl Principal {
    /// Whether this principal's role or scopes allow `needed`.
    pub fn may(&self, needed: Scope) -> bool {
        match self {
            Principal::User(user) => user.role.grants(needed),
            Principal::Token(token) => token.scopes.iter().any(|s| s.covers(needed)),
            Principal::Anonymous => false,
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Principal::User(u) => Actor { kind: ActorKind::User, id: Some(u.user_id), name: u.username.clone() },
            Principal::Token(t) => Actor { kind: ActorKind::Token, id: Some(t.id), name: t.name.clone() },
            Principal::Anonymous => Actor::anonymous(),
        }
    }

    pub fn whoami(&self) -> Whoami {
        match self {
            Principal::User(u) => Whoami {
                kind: "user".into(),
                name: u.username.clone(),
                role: Some(u.role),
                scopes: Scope::ALL.into_iter().filter(|s| u.role.grants(*s)).collect(),
            },
            Principal::Token(t) => {
                Whoami { kind: "token".into(), name: t.name.clone(), role: None, scopes: t.scopes.clone() }
            }
            Principal::Anonymous => {
                Whoami { kind: "anonymous".into(), name: "anonymous".into(), role: None, scopes: vec![] }
            }
        }
    }

    /// "alice (viewer)", "token ci-bot (ingest)".
    fn describe(&self) -> String {
        match self {
            Principal::User(u) => format!("{} ({})", u.username, u.role),
            Principal::Token(t) => {
                let scopes: Vec<_> = t.scopes.iter().map(|s| s.as_str()).collect();
                format!("token {} ({})", t.name, scopes.join(", "))
            }
            Principal::Anonymous => "anonymous".into(),
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub source_address: Option<String>,
}

impl RequestContext {
    pub fn from_parts(parts: &Parts) -> Self {
        Self {
            request_id: parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned),
            source_address: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        }
    }

    /// The command line: no request, no address.
    pub fn command_line() -> Self {
        Self { request_id: None, source_address: Some("command line".into()) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

/// Whether the request must prove it came from opsdeck's own page.
#[derive(Debug, Clone, Copy)]
pub enum Csrf<'a> {
    /// Reading: a forged request can't see the answer.
    NotNeeded,
    /// Changing something: a browser session must present its CSRF token.
    Submitted(Option<&'a str>),
}

/// The single decision: identifies the caller, checks CSRF for browser sessions, checks the
/// role or scope, and records any refusal. 401 without (valid) identity, 403 with the wrong one.
pub async fn authorize(state: &AppState, parts: &Parts, needed: Scope, csrf: Csrf<'_>) -> Result<Principal, ApiError> {
    let context = RequestContext::from_parts(parts);
    // Inside a nested router `uri` lost its prefix; the original is what the caller sent.
    let path = parts.extensions.get::<OriginalUri>().map_or(parts.uri.path(), |OriginalUri(uri)| uri.path());
    let target = format!("{} {path}", parts.method);
    let refuse = |actor: Actor, detail: String| {
        AuditEntry::new(actor, AuditAction::AccessDenied, AuditOutcome::Denied).target(target.clone()).detail(detail)
    };

    let principal = match identify(state, &parts.headers).await {
        Ok(principal) => principal,
        Err(refusal) => {
            audit::record_refusal(&state.db, &refuse(refusal.actor, refusal.detail.clone()), &context).await;
            return Err(ApiError::Unauthorized(refusal.detail));
        }
    };

    if let (Principal::User(user), Csrf::Submitted(token)) = (&principal, csrf)
        && !token.is_some_and(|t| super::secret::same_secret(t, &user.csrf_token))
    {
        let detail = "the request lacks this session's CSRF token (x-csrf-token header or csrf form field); reload the page and try again";
        audit::record_refusal(&state.db, &refuse(principal.actor(), detail.into()), &context).await;
        return Err(ApiError::Forbidden(detail.into()));
    }

    let anonymous_may_read =
        matches!(principal, Principal::Anonymous) && needed == Scope::Read && state.auth.anonymous_read;
    if principal.may(needed) || anonymous_may_read {
        return Ok(principal);
    }
    let (detail, error) = match &principal {
        Principal::Anonymous => {
            let detail = "sign in, or send an API token as `Authorization: Bearer <token>`".to_string();
            (detail.clone(), ApiError::Unauthorized(detail))
        }
        other => {
            let detail = format!("{} may not do this: it needs the {} scope", other.describe(), needed);
            (detail.clone(), ApiError::Forbidden(detail))
        }
    };
    audit::record_refusal(&state.db, &refuse(principal.actor(), detail), &context).await;
    Err(error)
}

/// Why a presented credential was not accepted.
pub struct Refusal {
    pub actor: Actor,
    pub detail: String,
}

/// A bearer token if one is sent (an invalid one is refused, never ignored), else the session
/// cookie, else anonymous.
pub async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Principal, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return Err(Refusal {
                actor: Actor::anonymous(),
                detail: "the Authorization header must be `Bearer <token>`".into(),
            });
        };
        return match tokens::authenticate(&state.db, secret).await {
            Ok(holder) => Ok(Principal::Token(holder)),
            Err(refusal) => Err(refusal),
        };
    }
    match sessions::cookie_value(headers) {
        Some(cookie) => match sessions::authenticate(&state.db, &cookie, state.auth.session_idle).await {
            Ok(Some(user)) => Ok(Principal::User(user)),
            Ok(None) => Ok(Principal::Anonymous),
            Err(error) => {
                tracing::error!(%error, "could not look up a session");
                Err(Refusal { actor: Actor::anonymous(), detail: "the session could not be checked; try again".into() })
            }
        },
        None => Ok(Principal::Anonymous),
    }
}

/// What a handler needs, as a type: `Authorized<Operate>` in a signature means the handler
/// only runs for callers allowed to operate.
pub trait Permission: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// Read everything.
pub struct Read;
/// Act on releases and traffic.
pub struct Operate;
/// Manage users, tokens and settings.
pub struct Admin;
/// Register, heartbeat, send logs and metrics.
pub struct Ingest;

impl Permission for Read {
    const SCOPE: Scope = Scope::Read;
}
impl Permission for Operate {
    const SCOPE: Scope = Scope::Operate;
}
impl Permission for Admin {
    const SCOPE: Scope = Scope::Admin;
}
impl Permission for Ingest {
    const SCOPE: Scope = Scope::Ingest;
}

/// The extractor: the caller, proven to hold `P`.
pub struct Authorized<P: Permission> {
    pub principal: Principal,
    pub context: RequestContext,
    permission: PhantomData<P>,
}

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let csrf = if parts.method.is_safe() {
            Csrf::NotNeeded
        } else {
            Csrf::Submitted(parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
        };
        let principal = authorize(state, parts, P::SCOPE, csrf).await?;
        Ok(Self { principal, context: RequestContext::from_parts(parts), permission: PhantomData })
    }
}
