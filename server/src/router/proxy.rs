//! Forwarding one request: route it to a service, pick its version (weights, sticky canary), pick
//! an instance (round robin, breaker), send it with timeouts, and retry on another instance when
//! that is safe — connect failures for any method, 502/503/504 and other failures for idempotent
//! ones — with full-jitter backoff inside the attempt and time budget.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    headers::{self, Client},
    pool::{LiveTable, Pick, random_bucket, sticky_bucket},
    report::{Forwarded, Reporter},
    upstream::{self, SendError, UpstreamBody},
};
use crate::{demo::trace::TraceContext, resilience::Backoff};

/// Limits and timeouts of the data plane.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub connect_timeout: Duration,
    /// Until an instance's response head arrives, per attempt.
    pub attempt_timeout: Duration,
    /// Until the response head, all attempts and waits included.
    pub request_timeout: Duration,
    /// Most tries on distinct instances.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Request bodies are held (for replay on retry) up to this size; larger ones get 413.
    pub body_limit: usize,
}

/// What the router answers with: an instance's body streamed through, or its own (JSON) answer.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Everything a request handler needs.
pub struct Proxy {
    pub table: Arc<LiveTable>,
    pub settings: ProxySettings,
    pub report: Arc<Reporter>,
}

/// Most attempts a request makes (`--max-attempts` takes 1..=10), so the instances it tried are
/// listed on the stack.
const MOST_ATTEMPTS: usize = 10;

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE: repeating them is safe by definition.
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// An attempt's answer: a response, or why there was none.
enum Attempt {
    Answered(Response<UpstreamBody>),
    Failed { connect: bool, timed_out: bool, reason: String },
}

/// The handler behind every path of the router's listener.
pub async fn forward(proxy: &Proxy, client: &Client, request: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let snapshot = proxy.table.load();
    let (mut parts, body) = request.into_parts();
    let host = headers::host(&parts);
    let path = parts.uri.path();
    let Some(service) = snapshot.route(host.as_deref(), path) else {
        proxy.report.unrouted();
        return headers::not_found(host.as_deref(), path, &snapshot.table);
    };
    let name = service.routes.policy.service.as_str();
    let bucket = headers::sticky_value(&parts.headers, &service.routes.policy.sticky)
        .map_or_else(random_bucket, |value| sticky_bucket(&value));
    let version = service.version_for(bucket);
    // A request without a body (most GETs) skips collecting one.
    let body = if body.is_end_stream() {
        Bytes::new()
    } else {
        match Limited::new(body, proxy.settings.body_limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) => return headers::too_large(proxy.settings.body_limit, &error.to_string()),
        }
    };
    let (trace, _malformed) = TraceContext::for_incoming(parts.headers.get(headers::TRACEPARENT).map(|v| v.as_bytes()));
    let target_path = headers::upstream_path_and_query(&parts.uri, &service.routes.policy.route);
    let outgoing = headers::Outgoing::new(std::mem::take(&mut parts.headers), client, &trace);
    let method = &parts.method;
    let deadline = started + proxy.settings.request_timeout;

    let most = (proxy.settings.max_attempts.max(1) as usize).min(MOST_ATTEMPTS);
    let mut tried = [Uuid::nil(); MOST_ATTEMPTS];
    let mut attempts = 0;
    let mut last: Option<(Pick, Attempt)> = None;
    while attempts < most {
        let Some(pick) = service.pick(version, &tried[..attempts]) else { break };
        if attempts > 0 {
            let wait = proxy.settings.backoff.delay(attempts as u32 - 1);
            if Instant::now() + wait >= deadline {
                break;
            }
            proxy.report.retried(name);
            tokio::time::sleep(wait).await;
        }
        if pick.fell_back {
            proxy.report.fell_back(name, version.unwrap_or(""), &pick.target.upstream.version);
        }
        tried[attempts] = pick.target.upstream.id;
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request =
            headers::build_request(method, &target_path, outgoing.headers(&pick.target.authority), body.clone());
        let attempt = send(&pick, request, &proxy.settings, remaining).await;
        let (success, retry, answered) = match &attempt {
            Attempt::Answered(response) => {
                let status = response.status().as_u16();
                (status < 500, idempotent(method) && matches!(status, 502..=504), true)
            }
            Attempt::Failed { connect, .. } => (false, *connect || idempotent(method), false),
        };
        // A 5xx answer counts against the breaker unless it is its version's last instance in
        // rotation (see `ServicePool::has_other_admitted`).
        let counted = success || !answered || service.has_other_admitted(&pick.target);
        if counted && pick.target.record(success) {
            proxy.report.breaker_opened(name, &pick.target.upstream);
        }
        last = Some((pick, attempt));
        if !retry || Instant::now() >= deadline {
            break;
        }
    }
    let attempts = attempts as u32;
    let (response, upstream) = match last {
        None => {
            proxy.report.no_upstream(name);
            (headers::no_upstream(name, &service.describe()), None)
        }
        Some((pick, Attempt::Answered(response))) => (headers::clean_response(response.map(Either::Left)), Some(pick)),
        Some((pick, Attempt::Failed { timed_out, reason, .. })) => {
            (headers::upstream_failed(name, attempts, timed_out, &reason), Some(pick))
        }
    };
    report(&proxy.report, name, upstream.as_ref(), method, path, &response, started, attempts, &trace);
    response
}

#[allow(clippy::too_many_arguments)]
fn report(
    reporter: &Reporter,
    service: &str,
    pick: Option<&Pick>,
    method: &Method,
    path: &str,
    response: &Response<ProxyBody>,
    started: Instant,
    attempts: u32,
    trace: &TraceContext,
) {
    reporter.forwarded(&Forwarded {
        service,
        upstream: pick.map(|p| &*p.target),
        method: method.as_str(),
        path,
        status: response.status().as_u16(),
        latency: started.elapsed(),
        attempts,
        trace_id: &trace.trace_id,
    });
}

/// One attempt on `pick`'s instance, within the attempt timeout and what is left of the budget.
async fn send(pick: &Pick, request: Request<Full<Bytes>>, settings: &ProxySettings, remaining: Duration) -> Attempt {
    let timeout = settings.attempt_timeout.min(remaining);
    match tokio::time::timeout(timeout, upstream::send(&pick.target, request, settings.connect_timeout)).await {
        Ok(Ok(response)) => Attempt::Answered(response),
        Ok(Err(error)) => Attempt::Failed {
            connect: matches!(error, SendError::Connect(_)),
            timed_out: false,
            reason: error.to_string(),
        },
        Err(_) => Attempt::Failed {
            connect: false,
            timed_out: true,
            reason: format!("no response within {}", humantime::format_duration(timeout)),
        },
    }
}
