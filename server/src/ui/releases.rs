//! The release pages' side of the [`Backend`](app::backend::Backend): the traffic policy, and
//! releases through the SAME service-layer functions the REST handlers call (one service layer
//! for buttons and API).

use app::{
    backend::{Acted, BackendError, BackendResult, DialogPreview},
    model::{
        identity::Scope,
        releases::{InboxItem, Release, ReleaseAction, ReleaseActionRequest, ReleaseDetail, StartRelease},
        traffic::TrafficPolicy,
    },
};
use http::request::Parts;

use super::{ServerBackend, refused};
use crate::http::error::ApiError;
use crate::releases::{ReleaseError, Releases, Who};

/// A release refusal as the page shows it (the 409 ones carry the present in [`Acted::Stale`]
/// where the caller can show it).
fn release_refused(error: ReleaseError) -> BackendError {
    match error {
        ReleaseError::NotFound(detail) => refused(ApiError::NotFound(detail)),
        ReleaseError::Invalid(detail) | ReleaseError::KeyReused(detail) => refused(ApiError::Unprocessable(detail)),
        ReleaseError::Refused(conflict) => BackendError { status: 409, message: conflict.error },
        ReleaseError::Internal(cause) => refused(ApiError::Internal(cause)),
    }
}

/// An action's answer: applied, or (409) not done with the present state to show.
fn acted(outcome: Result<Release, ReleaseError>) -> BackendResult<Acted<Release>> {
    match outcome {
        Ok(value) => Ok(Acted::Applied { value }),
        Err(ReleaseError::Refused(conflict)) => Ok(Acted::Stale { conflict }),
        Err(other) => Err(release_refused(other)),
    }
}

impl ServerBackend {
    fn releases_service(&self) -> Releases {
        Releases::from_state(&self.state)
    }

    pub(super) async fn traffic_policy_for(&self, parts: &Parts, service: &str) -> BackendResult<TrafficPolicy> {
        self.allowed(parts, Scope::Read, None).await?;
        self.releases_service().traffic(service).await.map_err(release_refused)
    }

    pub(super) async fn releases_for(&self, parts: &Parts, service: Option<String>) -> BackendResult<Vec<Release>> {
        self.allowed(parts, Scope::Read, None).await?;
        self.releases_service().list(service.as_deref(), false).await.map_err(release_refused)
    }

    pub(super) async fn release_detail_for(&self, parts: &Parts, id: i64) -> BackendResult<ReleaseDetail> {
        self.allowed(parts, Scope::Read, None).await?;
        self.releases_service().detail(id).await.map_err(release_refused)
    }

    pub(super) async fn inbox_for(&self, parts: &Parts) -> BackendResult<Vec<InboxItem>> {
        self.allowed(parts, Scope::Read, None).await?;
        self.releases_service().inbox().await.map_err(release_refused)
    }

    pub(super) async fn preview_for(
        &self,
        parts: &Parts,
        id: i64,
        action: ReleaseAction,
    ) -> BackendResult<DialogPreview> {
        self.allowed(parts, Scope::Read, None).await?;
        let preview = self.releases_service().preview(id, action).await.map_err(release_refused)?;
        Ok(DialogPreview { preview, idempotency_key: uuid::Uuid::new_v4().to_string() })
    }

    pub(super) async fn act_for(
        &self,
        parts: &Parts,
        csrf: &str,
        id: i64,
        request: ReleaseActionRequest,
        idempotency_key: String,
    ) -> BackendResult<Acted<Release>> {
        let (principal, context) = self.allowed(parts, Scope::Operate, Some(csrf)).await?;
        let who = Who { actor: principal.actor(), context };
        acted(self.releases_service().act(&who, id, &request, Some(&idempotency_key)).await)
    }

    pub(super) async fn start_for(
        &self,
        parts: &Parts,
        csrf: &str,
        service: String,
        start: StartRelease,
        idempotency_key: String,
    ) -> BackendResult<Acted<Release>> {
        let (principal, context) = self.allowed(parts, Scope::Operate, Some(csrf)).await?;
        let who = Who { actor: principal.actor(), context };
        acted(self.releases_service().start(&who, &service, &start, Some(&idempotency_key)).await)
    }
}
