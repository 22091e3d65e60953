//! The JSON API's error type: each variant is documented by the status it returns, and every
//! body has the same shape, `{ "error": <kind>, "detail": <what to do> }`. Unexpected errors are
//! logged with their cause chain and shown to clients only as an opaque 500.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, OriginalUri,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable kind: `unauthorized`, `forbidden`, `not_found`, …
    pub error: String,
    /// What went wrong and what to do, for people.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request can't be understood; the detail says which part and why.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no identity, or a token that is unknown, revoked or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: identified, but the role or scope does not allow this (or the CSRF token is wrong).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state (e.g. the name is taken).
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed, but a value breaks a rule; the detail names the field and the rule.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: too many attempts; try again later.
    #[error("{0}")]
    TooManyRequests(String),
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::TooManyRequests(_) => "too_many_requests",
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
        let body = ErrorBody { error: self.kind().to_owned(), detail };
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"opsdeck\""));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(error).context("a database query failed"))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// `Path` whose rejections use the API's error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Json` whose rejections use the API's error body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query` whose rejections use the API's error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Unknown routes under `/api` answer in JSON, not with an HTML page.
pub async fn api_not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(format!("no API route {method} {}; the API lives under /api/v1", uri.path()))
}
