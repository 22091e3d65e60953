//! The client side of the verbs that act through opsdeck's REST API (`opsdeck release …`,
//! `opsdeck traffic …`): where the server is, the token, and what a failure means — each kind
//! of failure has its own exit code, so scripts can tell "someone changed it first" from
//! "not allowed" from "opsdeck is down".

use std::process::ExitCode;

use app::model::releases::Conflict;
use clap::Args;
use serde::{Serialize, de::DeserializeOwned};

use crate::agent::TOKEN_ENV;

/// Where opsdeck is and who is asking.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The opsdeck server to talk to.
    #[arg(long = "opsdeck-url", env = "OPSDECK_URL", default_value = "http://127.0.0.1:3000", global = true)]
    pub opsdeck_url: url::Url,

    /// An API token (`opsdeck token create …`): `read` to look, `operate` to act.
    #[arg(long = "token", env = TOKEN_ENV, hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// Why a remote verb failed; [`RemoteError::exit_code`] tells scripts which way.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Exit 3.
    #[error("could not reach opsdeck at {url}: {cause} (is it running? check --opsdeck-url / OPSDECK_URL)")]
    Unreachable { url: String, cause: String },
    /// Exit 4.
    #[error("not signed in: {0} (give an API token with --token or OPSDECK_TOKEN)")]
    Unauthorized(String),
    /// Exit 5.
    #[error("not allowed: {0} (acting needs a token with the operate scope)")]
    Forbidden(String),
    /// Exit 6.
    #[error("not found: {0}")]
    NotFound(String),
    /// Exit 7: nothing was changed; the present state is in the error.
    #[error("{}", describe_conflict(.0))]
    Stale(Box<Conflict>),
    /// Exit 8.
    #[error("refused: {0}")]
    Refused(String),
    /// Exit 9.
    #[error("opsdeck failed ({status}): {message}")]
    Server { status: u16, message: String },
    /// Exit 2 (like a usage error): the input could not be used.
    #[error("{0}")]
    Invalid(String),
}

fn describe_conflict(conflict: &Conflict) -> String {
    let policy = &conflict.current_policy;
    let mut text = format!(
        "stale: {} — nothing was changed. Now at revision {}: {}",
        conflict.error,
        policy.revision,
        app::components::release_actions::describe_weights(&policy.weights)
    );
    if let Some(release) = &conflict.current_release {
        text.push_str(&format!(
            "; release #{} is {} at {} %",
            release.id,
            app::components::release_actions::state_mark(release.state).1,
            release.current_percent
        ));
    }
    text.push_str(". Look again and repeat with --expected-revision if it still makes sense.");
    text
}

impl RemoteError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RemoteError::Invalid(_) => 2,
            RemoteError::Unreachable { .. } => 3,
            RemoteError::Unauthorized(_) => 4,
            RemoteError::Forbidden(_) => 5,
            RemoteError::NotFound(_) => 6,
            RemoteError::Stale(_) => 7,
            RemoteError::Refused(_) => 8,
            RemoteError::Server { .. } => 9,
        }
    }
}

/// Runs a verb: its text on stdout, a failure on stderr with its exit code.
pub async fn finish(outcome: Result<String, RemoteError>) -> ExitCode {
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// A JSON client for `/api/v1/…` with the token.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> Result<Self, RemoteError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| RemoteError::Invalid(format!("could not set up the HTTP client: {e}")))?;
        let base = args.opsdeck_url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { http, base, token: args.token.clone().filter(|t| !t.is_empty()) })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}/api/v1{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemoteError> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// A change, with its idempotency key when it has one.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
        idempotency_key: Option<&str>,
    ) -> Result<T, RemoteError> {
        let mut request = self.request(method, path).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, RemoteError> {
        let response = request
            .send()
            .await
            .map_err(|e| RemoteError::Unreachable { url: self.base.clone(), cause: e.without_url().to_string() })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| RemoteError::Unreachable { url: self.base.clone(), cause: e.without_url().to_string() })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| RemoteError::Server {
                status: status.as_u16(),
                message: format!(
                    "an answer this opsdeck command does not understand ({e}); are both the same version?"
                ),
            });
        }
        if status == reqwest::StatusCode::CONFLICT
            && let Ok(conflict) = serde_json::from_slice::<Conflict>(&body)
        {
            return Err(RemoteError::Stale(Box::new(conflict)));
        }
        Err(error_for(status.as_u16(), &body))
    }
}

/// The API's `{ "error": …, "detail": … }` body as a failure of the right kind.
fn error_for(status: u16, body: &[u8]) -> RemoteError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .map(|v| {
            let field = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned);
            match (field("error"), field("detail")) {
                (Some(e), Some(d)) if !d.is_empty() => format!("{e}: {d}"),
                (Some(e), _) => e,
                (None, Some(d)) => d,
                (None, None) => v.to_string(),
            }
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    match status {
        401 => RemoteError::Unauthorized(message),
        403 => RemoteError::Forbidden(message),
        404 => RemoteError::NotFound(message),
        400 | 409 | 422 => RemoteError::Refused(message),
        _ => RemoteError::Server { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_own_exit_code() {
        let body = br#"{"error":"forbidden","detail":"needs operate"}"#;
        assert_eq!(error_for(401, body).exit_code(), 4);
        assert_eq!(error_for(403, body).exit_code(), 5);
        assert_eq!(error_for(404, body).exit_code(), 6);
        assert_eq!(error_for(422, body).exit_code(), 8);
        assert_eq!(error_for(503, body).exit_code(), 9);
        assert!(error_for(403, body).to_string().contains("needs operate"));
    }
}
