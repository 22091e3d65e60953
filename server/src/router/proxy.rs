//! Forwarding one request: route it to a service, pick its version (weights, sticky canary), pick
//! an instance (round robin, breaker), send it with timeouts, and retry on another instance when
//! that is safe — connect failures for any method, 502/503/504 and other failures for idempotent
//! ones — with full-jitter backoff inside the attempt and time budget.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::Method,
    response::Response,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    headers,
    pool::{LiveTable, Pick, random_bucket, sticky_bucket},
    report::{Forwarded, Reporter},
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

pub type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// Everything a request handler needs.
pub struct Proxy {
    pub table: Arc<LiveTable>,
    pub client: UpstreamClient,
    pub settings: ProxySettings,
    pub report: Arc<Reporter>,
}

/// A pooled HTTP/1.1 client for the instances, with the connect timeout.
pub fn upstream_client(settings: &ProxySettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE: repeating them is safe by definition.
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// An attempt's answer: a response, or why there was none.
enum Attempt {
    Answered(Response),
    Failed { connect: bool, timed_out: bool, reason: String },
}

/// The handler behind every path of the router's listener.
pub async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
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
    let body = if axum::body::HttpBody::size_hint(&body).exact() == Some(0) {
        Bytes::new()
    } else {
        match axum::body::to_bytes(body, proxy.settings.body_limit).await {
            Ok(body) => body,
            Err(error) => return headers::too_large(proxy.settings.body_limit, &error.to_string()),
        }
    };
    let (trace, _malformed) = TraceContext::for_incoming(parts.headers.get(headers::TRACEPARENT).map(|v| v.as_bytes()));
    let target_path = headers::upstream_path_and_query(&parts.uri, &service.routes.policy.route);
    let base_headers = headers::outgoing(std::mem::take(&mut parts.headers), client, &trace);
    let method = &parts.method;
    let deadline = started + proxy.settings.request_timeout;

    let mut tried: Vec<Uuid> = Vec::with_capacity(2);
    let mut last: Option<(Pick, Attempt)> = None;
    while (tried.len() as u32) < proxy.settings.max_attempts.max(1) {
        let Some(pick) = service.pick(version, &tried) else { break };
        if !tried.is_empty() {
            let wait = proxy.settings.backoff.delay(tried.len() as u32 - 1);
            if Instant::now() + wait >= deadline {
                break;
            }
            proxy.report.retried(name);
            tokio::time::sleep(wait).await;
        }
        if pick.fell_back {
            proxy.report.fell_back(name, version.unwrap_or(""), &pick.target.upstream.version);
        }
        tried.push(pick.target.upstream.id);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outgoing = headers::build_request(method, &pick.target, &target_path, &base_headers, body.clone());
        let attempt = send(&proxy.client, outgoing, proxy.settings.attempt_timeout.min(remaining)).await;
        let (success, retry) = match &attempt {
            Attempt::Answered(response) => {
                let status = response.status().as_u16();
                (status < 500, idempotent(method) && matches!(status, 502..=504))
            }
            Attempt::Failed { connect, .. } => (false, *connect || idempotent(method)),
        };
        if pick.target.record(success) {
            proxy.report.breaker_opened(name, &pick.target.upstream);
        }
        last = Some((pick, attempt));
        if !retry || Instant::now() >= deadline {
            break;
        }
    }
    let attempts = tried.len() as u32;
    let (response, upstream) = match last {
        None => {
            proxy.report.no_upstream(name);
            (headers::no_upstream(name, &service.describe()), None)
        }
        Some((pick, Attempt::Answered(response))) => (headers::clean_response(response), Some(pick)),
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
    response: &Response,
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

async fn send(client: &UpstreamClient, request: http::Request<Full<Bytes>>, timeout: Duration) -> Attempt {
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Attempt::Answered(response.map(Body::new)),
        Ok(Err(error)) => {
            let connect = error.is_connect();
            Attempt::Failed { connect, timed_out: false, reason: error_chain(&error) }
        }
        Err(_) => Attempt::Failed {
            connect: false,
            timed_out: true,
            reason: format!("no response within {}", humantime::format_duration(timeout)),
        },
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
