//! The release and traffic REST API (the contract atop `app::model::releases`), documented with
//! utoipa. Handlers only translate: every action goes through [`Releases`].

use app::model::{
    releases::{
        ActionPreview, Conflict, InboxItem, Release, ReleaseAction, ReleaseActionRequest, ReleaseDetail, StartRelease,
    },
    traffic::{TrafficChange, TrafficPolicy},
};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::ReleaseError,
    service::{Releases, Who},
};
use crate::{
    auth::{Authorized, Operate, Read},
    http::error::{ApiJson, ApiPath, ApiQuery, ErrorBody},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_releases))
        .routes(routes!(get_release))
        .routes(routes!(start_release))
        .routes(routes!(act_on_release))
        .routes(routes!(preview_action))
        .routes(routes!(get_traffic, put_traffic))
        .routes(routes!(get_inbox))
}

/// The `Idempotency-Key` header.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ReleaseError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ReleaseError::Invalid("Idempotency-Key: use visible ASCII characters (a UUID is a good key)".into())
            })
        })
        .transpose()
}

/// PostgreSQL text can't hold NUL: a request with one anywhere is refused as it arrives.
fn refuse_nul(value: &impl serde::Serialize) -> Result<(), ReleaseError> {
    match serde_json::to_string(value) {
        Ok(text) if !text.contains("\\u0000") => Ok(()),
        _ => Err(ReleaseError::Invalid("text can't contain NUL characters (\\u0000); remove them".into())),
    }
}

/// A service name from the path (never a NUL: no service has one).
fn service_name(service: &str) -> Result<&str, ReleaseError> {
    if service.contains('\0') {
        return Err(ReleaseError::NotFound(format!("no service named {service:?}")));
    }
    Ok(service)
}

fn who<P: crate::auth::Permission>(authorized: Authorized<P>) -> Who {
    Who { actor: authorized.principal.actor(), context: authorized.context }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this service's releases.
    service: Option<String>,
    /// Only releases in progress.
    active: Option<bool>,
}

/// Releases, in progress first, then the newest (at most 200).
#[utoipa::path(get, path = "/releases", tag = "releases", params(ListQuery),
    responses(
        (status = 200, description = "Releases", body = Vec<Release>),
        (status = 400, description = "A filter is malformed", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No read scope", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn list_releases(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Release>>, ReleaseError> {
    let service = query.service.filter(|s| !s.contains('\0'));
    Ok(Json(Releases::from_state(&state).list(service.as_deref(), query.active.unwrap_or(false)).await?))
}

/// A release with its verdicts and history (newest first) and the service's policy.
#[utoipa::path(get, path = "/releases/{id}", tag = "releases", params(("id" = i64, Path, description = "Release id")),
    responses(
        (status = 200, description = "The release", body = ReleaseDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No read scope", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn get_release(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ReleaseDetail>, ReleaseError> {
    Ok(Json(Releases::from_state(&state).detail(id).await?))
}

/// Starts a release of the service (one at a time per service). Send `Idempotency-Key`.
#[utoipa::path(post, path = "/services/{service}/releases", tag = "releases", request_body = StartRelease,
    params(("service" = String, Path, description = "Service name"),
           ("Idempotency-Key" = Option<String>, Header, description = "A new key per action; a repeat returns the first answer")),
    responses(
        (status = 201, description = "Started", body = Release),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No operate scope (refusal audited)", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "Stale revision, another release in progress, or a schema contract in the way", body = Conflict),
        (status = 422, description = "A value breaks a rule (steps, version, thresholds, key reused)", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn start_release(
    operator: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<StartRelease>,
) -> Result<(StatusCode, Json<Release>), ReleaseError> {
    let key = idempotency_key(&headers)?;
    refuse_nul(&request)?;
    let service = service_name(&service)?;
    let release = Releases::from_state(&state).start(&who(operator), service, &request, key.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(release)))
}

/// Acts on a release (`action`: set_percent, next_step, pause, resume, promote, abort,
/// run_smoke_checks, switch, switch_back, rollback). Send `Idempotency-Key`.
#[utoipa::path(post, path = "/releases/{id}/actions", tag = "releases", request_body = ReleaseActionRequest,
    params(("id" = i64, Path, description = "Release id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A new key per action; a repeat returns the first answer")),
    responses(
        (status = 200, description = "Done", body = Release),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No operate scope (refusal audited)", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Stale revision or not allowed now: the current state", body = Conflict),
        (status = 422, description = "A value breaks a rule, or the key was used for another request", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn act_on_release(
    operator: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ReleaseActionRequest>,
) -> Result<Json<Release>, ReleaseError> {
    let key = idempotency_key(&headers)?;
    refuse_nul(&request)?;
    Ok(Json(Releases::from_state(&state).act(&who(operator), id, &request, key.as_deref()).await?))
}

/// An action's name, for previews.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    SetPercent,
    NextStep,
    Pause,
    Resume,
    Promote,
    Abort,
    RunSmokeChecks,
    Switch,
    SwitchBack,
    Rollback,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
    #[param(inline)]
    action: ActionName,
    /// For `set_percent`.
    percent: Option<u8>,
}

/// What an action would do now: weights before → after, the instances that will get traffic,
/// the live verdict, open breakers, and a refusal reason if it can't be done.
#[utoipa::path(get, path = "/releases/{id}/preview", tag = "releases",
    params(("id" = i64, Path, description = "Release id"), PreviewQuery),
    responses(
        (status = 200, description = "The preview", body = ActionPreview),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No read scope", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 422, description = "set_percent without percent", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn preview_action(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Json<ActionPreview>, ReleaseError> {
    let action = match query.action {
        ActionName::SetPercent => ReleaseAction::SetPercent {
            percent: query.percent.ok_or_else(|| {
                ReleaseError::Invalid("percent: set_percent needs the share to preview, e.g. percent=25".into())
            })?,
        },
        ActionName::NextStep => ReleaseAction::NextStep,
        ActionName::Pause => ReleaseAction::Pause,
        ActionName::Resume => ReleaseAction::Resume,
        ActionName::Promote => ReleaseAction::Promote,
        ActionName::Abort => ReleaseAction::Abort,
        ActionName::RunSmokeChecks => ReleaseAction::RunSmokeChecks,
        ActionName::Switch => ReleaseAction::Switch,
        ActionName::SwitchBack => ReleaseAction::SwitchBack,
        ActionName::Rollback => ReleaseAction::Rollback,
    };
    Ok(Json(Releases::from_state(&state).preview(id, action).await?))
}

/// The service's traffic policy (revision 0 and no weights: none set).
#[utoipa::path(get, path = "/services/{service}/traffic", tag = "releases",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "The policy", body = TrafficPolicy),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No read scope", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn get_traffic(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<TrafficPolicy>, ReleaseError> {
    Ok(Json(Releases::from_state(&state).traffic(service_name(&service)?).await?))
}

/// Sets the traffic policy by hand (refused while a release of the service is in progress).
/// Send `Idempotency-Key`.
#[utoipa::path(put, path = "/services/{service}/traffic", tag = "releases", request_body = TrafficChange,
    params(("service" = String, Path, description = "Service name"),
           ("Idempotency-Key" = Option<String>, Header, description = "A new key per change; a repeat returns the first answer")),
    responses(
        (status = 200, description = "The new policy", body = TrafficPolicy),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No operate scope (refusal audited)", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "Stale revision, or a release is in progress", body = Conflict),
        (status = 422, description = "Invalid weights, sticky or route, or the key was used for another request", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn put_traffic(
    operator: Authorized<Operate>,
    State(state): State<AppState>,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(change): ApiJson<TrafficChange>,
) -> Result<Json<TrafficPolicy>, ReleaseError> {
    let key = idempotency_key(&headers)?;
    refuse_nul(&change)?;
    let service = service_name(&service)?;
    Ok(Json(Releases::from_state(&state).set_traffic(&who(operator), service, &change, key.as_deref()).await?))
}

/// What waits for a person: paused, awaiting promotion, smoke failed, held for data, recent
/// automatic rollbacks.
#[utoipa::path(get, path = "/inbox", tag = "releases",
    responses(
        (status = 200, description = "The inbox, newest first", body = Vec<InboxItem>),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "No read scope", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = [])))]
async fn get_inbox(
    _reader: Authorized<Read>,
    State(state): State<AppState>,
) -> Result<Json<Vec<InboxItem>>, ReleaseError> {
    Ok(Json(Releases::from_state(&state).inbox().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_request_reads_its_tagged_action_beside_the_revision() {
        let request: ReleaseActionRequest =
            serde_json::from_str(r#"{"action":"set_percent","percent":25,"expected_revision":3,"reason":"ok"}"#)
                .expect("parses");
        assert_eq!(request.action, ReleaseAction::SetPercent { percent: 25 });
        assert_eq!(request.expected_revision, 3);
        let pause: ReleaseActionRequest =
            serde_json::from_str(r#"{"action":"pause","expected_revision":1}"#).expect("parses");
        assert_eq!(pause.action, ReleaseAction::Pause);
        assert!(serde_json::from_str::<ReleaseActionRequest>(r#"{"action":"fly","expected_revision":1}"#).is_err());
        let extra = r#"{"action":"pause","expected_revision":1,"colour":"red"}"#;
        assert!(serde_json::from_str::<ReleaseActionRequest>(extra).is_err(), "unknown fields are refused");
        let nul: ReleaseActionRequest =
            serde_json::from_str(r#"{"action":"pause","expected_revision":1,"reason":"a\u0000b"}"#).expect("parses");
        assert!(matches!(refuse_nul(&nul), Err(ReleaseError::Invalid(_))));
        assert!(refuse_nul(&pause).is_ok());
    }
}
