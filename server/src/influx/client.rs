//! HTTP side of the InfluxDB client: batched writes, InfluxQL queries, ping.

use std::{fmt, time::Duration};

use clap::ValueEnum;

use super::line_protocol::{LineProtocolError, Point};
use super::query::{QueryResponse, QueryResult};

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InfluxApi {
    /// `/write?db=…` — InfluxDB 1.x.
    V1,
    /// `/api/v2/write?org=…&bucket=…` with a token — InfluxDB 2.x and 3.x.
    V2,
}

/// How to authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum InfluxAuth {
    None,
    /// v1 user and password, sent as HTTP Basic auth (what 1.x accepts besides `u`/`p`).
    Basic {
        username: String,
        password: String,
    },
    /// v2 token: `Authorization: Token …`.
    Token(String),
}

impl fmt::Debug for InfluxAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfluxAuth::None => write!(f, "None"),
            InfluxAuth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            InfluxAuth::Token(_) => write!(f, "Token(***)"),
        }
    }
}

/// Where and how to reach InfluxDB.
#[derive(Debug, Clone)]
pub struct InfluxConfig {
    pub url: url::Url,
    pub api: InfluxApi,
    /// Database (v1), bucket (v2).
    pub database: String,
    pub org: Option<String>,
    pub auth: InfluxAuth,
    pub timeout: Duration,
    pub batch_size: usize,
}

/// What went wrong talking to InfluxDB; server errors keep the server's own message.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error(transparent)]
    Encode(#[from] LineProtocolError),
    #[error("InfluxDB at {url} did not answer: {reason}")]
    Transport { url: String, reason: String },
    #[error("InfluxDB answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("InfluxDB could not run {statement:?}: {message}")]
    Query { statement: String, message: String },
    #[error("InfluxDB sent an answer opsdeck could not read: {0}")]
    Decode(String),
}

/// A cheap-to-clone client; one per process.
#[derive(Clone)]
pub struct InfluxClient {
    http: reqwest::Client,
    config: std::sync::Arc<InfluxConfig>,
}

impl fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxClient").field("config", &self.config).finish()
    }
}

impl InfluxClient {
    pub fn new(config: InfluxConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("opsdeck/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with only timeouts and a user agent always builds");
        Self { http, config: std::sync::Arc::new(config) }
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.config
    }

    /// Writes points in batches of `batch_size`. Every point is encoded before anything is
    /// sent, so a bad point fails the call without a partial write.
    #[tracing::instrument(skip_all, fields(points = points.len()))]
    pub async fn write(&self, points: &[Point]) -> Result<(), InfluxError> {
        let mut batches = Vec::with_capacity(points.len().div_ceil(self.config.batch_size.max(1)));
        for chunk in points.chunks(self.config.batch_size.max(1)) {
            batches.push(super::line_protocol::encode_all(chunk)?);
        }
        for body in batches {
            self.write_lines(body).await?;
        }
        Ok(())
    }

    /// Sends already-encoded line protocol (one point per line) in one request.
    pub async fn write_lines(&self, body: String) -> Result<(), InfluxError> {
        if body.is_empty() {
            return Ok(());
        }
        let (path, params): (&str, Vec<(&str, &str)>) = match self.config.api {
            InfluxApi::V1 => ("write", vec![("db", self.config.database.as_str()), ("precision", "ns")]),
            InfluxApi::V2 => {
                let mut params = vec![("bucket", self.config.database.as_str()), ("precision", "ns")];
                if let Some(org) = &self.config.org {
                    params.push(("org", org.as_str()));
                }
                ("api/v2/write", params)
            }
        };
        let request = self
            .authorised(self.http.post(self.endpoint(path)))
            .query(&params)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        self.send(request).await.map(|_| ())
    }

    /// Runs InfluxQL statements (separated by `;`) and returns one result per statement. A
    /// statement that failed is an error naming it.
    #[tracing::instrument(skip_all, fields(statement = %statement))]
    pub async fn query(&self, statement: &str) -> Result<Vec<QueryResult>, InfluxError> {
        let request = self
            .authorised(self.http.post(self.endpoint("query")))
            .query(&[("db", self.config.database.as_str()), ("epoch", "ms")])
            .form(&[("q", statement)]);
        let body = self.send(request).await.map_err(|error| match error {
            // A 400 is InfluxDB refusing the statement: say which one.
            InfluxError::Server { status: 400, message } => {
                InfluxError::Query { statement: statement.to_owned(), message }
            }
            other => other,
        })?;
        let response: QueryResponse =
            serde_json::from_str(&body).map_err(|e| InfluxError::Decode(format!("{e}: {body:.200}")))?;
        if let Some(message) = response.error {
            return Err(InfluxError::Query { statement: statement.to_owned(), message });
        }
        if let Some(failed) = response.results.iter().find_map(|r| r.error.clone()) {
            return Err(InfluxError::Query { statement: statement.to_owned(), message: failed });
        }
        Ok(response.results)
    }

    /// Creates the configured database if it is missing (v1 only; v2 buckets are made by the
    /// operator, with the token's rights).
    pub async fn ensure_database(&self) -> Result<(), InfluxError> {
        if self.config.api == InfluxApi::V1 {
            self.query(&format!("CREATE DATABASE {}", super::query::quote_identifier(&self.config.database))).await?;
        }
        Ok(())
    }

    /// Is InfluxDB up? `/ping` exists on 1.x, 2.x and 3.x.
    pub async fn ping(&self) -> Result<(), InfluxError> {
        self.send(self.authorised(self.http.get(self.endpoint("ping")))).await.map(|_| ())
    }

    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.config.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{path}"));
        url
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.auth {
            InfluxAuth::None => request,
            InfluxAuth::Basic { username, password } => request.basic_auth(username, Some(password)),
            InfluxAuth::Token(token) => request.header(reqwest::header::AUTHORIZATION, format!("Token {token}")),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, InfluxError> {
        let url = self.config.url.to_string();
        let response = request.send().await.map_err(|e| transport_error(&url, &e, self.config.timeout))?;
        let status = response.status();
        let header_error = response.headers().get("x-influxdb-error").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.text().await.map_err(|e| transport_error(&url, &e, self.config.timeout))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(InfluxError::Server { status: status.as_u16(), message: server_message(header_error, &body) })
    }
}

/// Names the real cause ("Connection refused", a timeout) rather than reqwest's outer wrapper.
fn transport_error(url: &str, error: &reqwest::Error, timeout: Duration) -> InfluxError {
    let reason = if error.is_timeout() {
        format!("no answer within {} s", timeout.as_secs_f64())
    } else {
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        cause.to_string()
    };
    InfluxError::Transport { url: url.to_owned(), reason }
}

/// InfluxDB puts its message in `{"error": …}` (1.x), `{"message": …}` (2.x/3.x) or a header.
fn server_message(header: Option<String>, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        message: Option<String>,
    }
    serde_json::from_str::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error.or(b.message))
        .or(header)
        .unwrap_or_else(|| body.trim().chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::server_message;

    #[test]
    fn the_servers_own_words_are_kept() {
        assert_eq!(server_message(None, r#"{"error":"database not found: \"x\""}"#), "database not found: \"x\"");
        assert_eq!(
            server_message(None, r#"{"code":"unauthorized","message":"unauthorized access"}"#),
            "unauthorized access"
        );
        assert_eq!(server_message(Some("from header".into()), "not json"), "from header");
        assert_eq!(server_message(None, " plain text \n"), "plain text");
    }
}
