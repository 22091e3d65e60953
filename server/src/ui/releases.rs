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

/// Until the release service layer is merged, release calls say so (503) instead of pretending.
fn not_in_this_build() -> BackendError {
    BackendError {
        status: 503,
        message: "release control is not in this build yet (the release service layer has not been merged)".into(),
    }
}

impl ServerBackend {
    pub(super) async fn traffic_policy_for(&self, parts: &Parts, service: &str) -> BackendResult<TrafficPolicy> {
        self.allowed(parts, Scope::Read, None).await?;
        crate::traffic::store::load(&self.state.db, service)
            .await
            .map_err(|e| refused(ApiError::Internal(e.into())))?
            .ok_or_else(|| refused(ApiError::NotFound(format!("no service named {service:?}"))))
    }

    pub(super) async fn releases_for(&self, parts: &Parts, _service: Option<String>) -> BackendResult<Vec<Release>> {
        self.allowed(parts, Scope::Read, None).await?;
        Err(not_in_this_build())
    }

    pub(super) async fn release_detail_for(&self, parts: &Parts, _id: i64) -> BackendResult<ReleaseDetail> {
        self.allowed(parts, Scope::Read, None).await?;
        Err(not_in_this_build())
    }

    pub(super) async fn inbox_for(&self, parts: &Parts) -> BackendResult<Vec<InboxItem>> {
        self.allowed(parts, Scope::Read, None).await?;
        Err(not_in_this_build())
    }

    pub(super) async fn preview_for(
        &self,
        parts: &Parts,
        _id: i64,
        _action: ReleaseAction,
    ) -> BackendResult<DialogPreview> {
        self.allowed(parts, Scope::Read, None).await?;
        Err(not_in_this_build())
    }

    pub(super) async fn act_for(
        &self,
        parts: &Parts,
        csrf: &str,
        _id: i64,
        _request: ReleaseActionRequest,
        _idempotency_key: String,
    ) -> BackendResult<Acted<Release>> {
        self.allowed(parts, Scope::Operate, Some(csrf)).await?;
        Err(not_in_this_build())
    }

    pub(super) async fn start_for(
        &self,
        parts: &Parts,
        csrf: &str,
        _service: String,
        _start: StartRelease,
        _idempotency_key: String,
    ) -> BackendResult<Acted<Release>> {
        self.allowed(parts, Scope::Operate, Some(csrf)).await?;
        Err(not_in_this_build())
    }
}
