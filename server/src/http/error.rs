//! The JSON API's error type: each variant is documented by the status it returns, and every
//! body has the same shape, `{ "error": <kind>, "detail": <what to do> }`. Unexpected errors are
//! logged with their cause chain and shown to clients only as an opaque 500.

use axum::{
    Json,
    extract::OriginalUri,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request can't be understood; the detail says which part and why.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 503: a dependency is down; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; details go to the log, not to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match &self {
            ApiError::Internal(error) => {
                // The request id in the span ties this log line to the response header.
                tracing::error!(error = format!("{error:#}"), "request failed");
                "an unexpected error; the x-request-id header of this response finds it in the server log".to_string()
            }
            other => other.to_string(),
        };
        (self.status(), Json(serde_json::json!({ "error": self.kind(), "detail": detail }))).into_response()
    }
}

/// Unknown routes under `/api` answer in JSON, not with an HTML page.
pub async fn api_not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no API route {method} {}; the API lives under /api/v1", uri.path()))
}
