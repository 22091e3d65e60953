//! Calls from one demo service to another: the callee's instances come from opsdeck's discovery
//! API (`GET /api/v1/discovery/{service}`, healthy instances only), cached for a moment and
//! taken in turn (round robin); a call that cannot connect is retried on another instance after
//! a jittered, doubling wait, with the set looked up again. A call that reached the callee (any
//! answer, or a timeout while it worked) is not retried: it may have done its work already.

use std::{
    collections::HashMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use app::model::topology::{Discovery, Endpoint};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use super::trace::{TRACEPARENT, TraceContext};
use crate::resilience::Backoff;

/// How long a discovered set is used before it is looked up again.
const CACHE_FOR: Duration = Duration::from_secs(2);
/// Tries per call (the first plus retries on other instances), only on connect failures.
const MAX_ATTEMPTS: u32 = 3;
/// Waits between those tries.
const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
/// How long a connection may take before the instance counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The client of the services this one calls.
pub struct Downstream {
    http: reqwest::Client,
    discovery_url: url::Url,
    token: String,
    cache: Mutex<HashMap<String, (Instant, Vec<Endpoint>)>>,
    turn: AtomicUsize,
}

/// One try of a call, on one instance.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub endpoint: Endpoint,
    pub took: Duration,
    /// Why it failed, if it did (it is then retried on another instance if attempts remain).
    pub failure: Option<String>,
}

/// The callee's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// The body, as JSON when it is JSON, else as a string.
    pub body: Value,
    pub endpoint: Endpoint,
}

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// Discovery failed or found no healthy instance.
    NoInstance(String),
    /// No instance could be connected to, after every try.
    Unreachable(String),
    /// An instance took the call but didn't answer in time.
    TimedOut(String),
    /// Something else went wrong on the way (a broken answer).
    Broken(String),
}

impl CallFailure {
    /// How the caller answers its own client when a call it needed failed this way.
    pub fn status(&self) -> StatusCode {
        match self {
            CallFailure::NoInstance(_) => StatusCode::SERVICE_UNAVAILABLE,
            CallFailure::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            CallFailure::Unreachable(_) | CallFailure::Broken(_) => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            CallFailure::NoInstance(r)
            | CallFailure::Unreachable(r)
            | CallFailure::TimedOut(r)
            | CallFailure::Broken(r) => r,
        }
    }
}

/// A finished call: every try, and how it ended.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: String,
    pub path: String,
    pub attempts: Vec<Attempt>,
    pub took: Duration,
    pub result: Result<Answer, CallFailure>,
}

impl Downstream {
    /// A client that finds instances through `opsdeck_url` with `token` (which needs the *read*
    /// scope for discovery) and gives each call `timeout`.
    pub fn new(opsdeck_url: &url::Url, token: String, timeout: Duration) -> anyhow::Result<Self> {
        let discovery_url = opsdeck_url
            .join("/api/v1/discovery/")
            .with_context(|| format!("--opsdeck-url {opsdeck_url} cannot be joined with /api/v1/discovery/"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self { http, discovery_url, token, cache: Mutex::new(HashMap::new()), turn: AtomicUsize::new(0) })
    }

    /// `GET path` on an instance of `service`, carrying `trace` on.
    pub async fn call(&self, service: &str, path: &str, trace: &TraceContext) -> Call {
        let started = Instant::now();
        let mut attempts: Vec<Attempt> = Vec::new();
        let result = loop {
            let attempt_number = attempts.len() as u32;
            let fresh = attempt_number > 0;
            let endpoints = match self.endpoints(service, fresh).await {
                Ok(endpoints) => endpoints,
                Err(failure) => break Err(failure),
            };
            let endpoint = self.pick(&endpoints, &attempts);
            let tried = Instant::now();
            let sent = self
                .http
                .get(format!("http://{}{path}", endpoint.address))
                .header(TRACEPARENT, trace.outgoing_header())
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => read_answer(response, endpoint.clone()).await,
                Err(error) if error.is_connect() => Err(CallFailure::Unreachable(format!(
                    "cannot connect to {service} at {} ({})",
                    endpoint.address,
                    root_cause(&error)
                ))),
                Err(error) if error.is_timeout() => Err(CallFailure::TimedOut(format!(
                    "{service} at {} did not answer within {} ms",
                    endpoint.address,
                    tried.elapsed().as_millis()
                ))),
                Err(error) => Err(CallFailure::Broken(format!(
                    "calling {service} at {} failed: {}",
                    endpoint.address,
                    root_cause(&error)
                ))),
            };
            attempts.push(Attempt {
                endpoint,
                took: tried.elapsed(),
                failure: outcome.as_ref().err().map(|f| f.reason().to_owned()),
            });
            match outcome {
                Err(CallFailure::Unreachable(reason)) if attempt_number + 1 < MAX_ATTEMPTS => {
                    // That instance may be gone: look the set up again before the next try.
                    self.forget(service);
                    tracing::debug!(%reason, "retrying on another instance");
                    tokio::time::sleep(RETRY.delay(attempt_number)).await;
                }
                Err(CallFailure::Unreachable(reason)) => {
                    break Err(CallFailure::Unreachable(format!("{reason}; gave up after {MAX_ATTEMPTS} tries")));
                }
                other => break other,
            }
        };
        Call { service: service.to_owned(), path: path.to_owned(), attempts, took: started.elapsed(), result }
    }

    /// The next instance in turn, preferring one not tried yet in this call.
    fn pick(&self, endpoints: &[Endpoint], attempts: &[Attempt]) -> Endpoint {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let rotation = (0..endpoints.len()).map(|offset| &endpoints[(turn + offset) % endpoints.len()]);
        let tried = |e: &Endpoint| attempts.iter().any(|a| a.endpoint.address == e.address);
        let mut rotation = rotation.peekable();
        let first = rotation.peek().copied();
        rotation.find(|e| !tried(e)).or(first).cloned().unwrap_or_else(|| endpoints[0].clone())
    }

    fn forget(&self, service: &str) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(service);
    }

    /// The healthy instances of `service`, from the cache unless `fresh` or it is older than [`CACHE_FOR`].
    async fn endpoints(&self, service: &str, fresh: bool) -> Result<Vec<Endpoint>, CallFailure> {
        if !fresh {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, endpoints)) = cache.get(service)
                && at.elapsed() < CACHE_FOR
                && !endpoints.is_empty()
            {
                return Ok(endpoints.clone());
            }
        }
        let url = self
            .discovery_url
            .join(service)
            .map_err(|e| CallFailure::NoInstance(format!("{service:?} cannot be part of a discovery URL ({e})")))?;
        let response = self.http.get(url.clone()).bearer_auth(&self.token).send().await.map_err(|error| {
            CallFailure::NoInstance(format!(
                "cannot look up {service} at opsdeck's discovery ({url}): {}",
                root_cause(&error)
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            let detail: String = response.text().await.unwrap_or_default().chars().take(300).collect();
            return Err(CallFailure::NoInstance(format!(
                "opsdeck's discovery answered {status} for {service}: {detail}"
            )));
        }
        let found: Discovery = response.json().await.map_err(|e| {
            CallFailure::NoInstance(format!("opsdeck's discovery answer for {service} is unreadable: {e}"))
        })?;
        // Discovery rotates the list on every call; a stable order keeps our own turn-taking
        // from cancelling that rotation out (always landing on the same instance).
        let mut found = found;
        found.endpoints.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        if found.endpoints.is_empty() {
            return Err(CallFailure::NoInstance(format!(
                "no healthy instance of {service} (opsdeck's discovery found none)"
            )));
        }
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.to_owned(), (Instant::now(), found.endpoints.clone()));
        Ok(found.endpoints)
    }
}

async fn read_answer(response: reqwest::Response, endpoint: Endpoint) -> Result<Answer, CallFailure> {
    let status = response.status();
    let text = response.text().await.map_err(|error| {
        if error.is_timeout() {
            CallFailure::TimedOut(format!("{} started answering but did not finish in time", endpoint.address))
        } else {
            CallFailure::Broken(format!("the answer of {} broke off: {}", endpoint.address, root_cause(&error)))
        }
    })?;
    let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.chars().take(500).collect()));
    Ok(Answer { status, body, endpoint })
}

/// The innermost cause of a reqwest error ("Connection refused (os error 111)"), which says more
/// than reqwest's own "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
