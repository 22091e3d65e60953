//! Why a release request was not carried out, and the answer each reason gets.

use app::model::releases::Conflict;
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{http::error::ApiError, traffic::store::WriteError};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// 404: no such release or service.
    #[error("{0}")]
    NotFound(String),
    /// 422: the request breaks a rule on its own (bad steps, unknown version, no deployer…).
    #[error("{0}")]
    Invalid(String),
    /// 409 with a `Conflict` body: not possible in the present state (stale revision, a state
    /// that doesn't allow the action, another release in progress, a schema contract).
    #[error("{}", .0.error)]
    Refused(Box<Conflict>),
    /// 422: the idempotency key was used for a different request.
    #[error("{0}")]
    KeyReused(String),
    /// 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ReleaseError {
    fn from(error: sqlx::Error) -> Self {
        ReleaseError::Internal(anyhow::Error::new(error).context("a release query failed"))
    }
}

impl ReleaseError {
    /// A traffic write error (a stale one carries the current policy, completed by the caller).
    pub fn from_write(error: WriteError, current_release: Option<app::model::releases::Release>) -> Self {
        match error {
            WriteError::Stale { current, .. } => ReleaseError::Refused(Box::new(Conflict {
                error: format!(
                    "the traffic policy of {} is at revision {} now, not the one you saw: reload, look again and decide",
                    current.service, current.revision
                ),
                current_policy: *current,
                current_release,
            })),
            WriteError::UnknownService(name) => ReleaseError::NotFound(format!("no service named {name:?}")),
            WriteError::Invalid(message) => ReleaseError::Invalid(message),
            WriteError::Database(error) => error.into(),
        }
    }
}

impl IntoResponse for ReleaseError {
    fn into_response(self) -> Response {
        match self {
            ReleaseError::NotFound(detail) => ApiError::NotFound(detail).into_response(),
            ReleaseError::Invalid(detail) | ReleaseError::KeyReused(detail) => {
                ApiError::Unprocessable(detail).into_response()
            }
            ReleaseError::Refused(conflict) => (StatusCode::CONFLICT, Json(*conflict)).into_response(),
            ReleaseError::Internal(error) => ApiError::Internal(error).into_response(),
        }
    }
}
