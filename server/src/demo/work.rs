//! The work a demo service does for its callers: `GET /checkout` (calls the next service in the
//! chain, if it has one, and answers with the whole path) and `GET /` (who answered), wrapped in
//! [`traced`], which gives every request its span in the trace, writes the "received" and
//! "finished" log lines and records its `http_requests` point.

use std::{sync::Arc, time::Duration};

use app::model::logs::LogLevel;
use axum::{
    Extension, Json,
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    downstream::{Call, CallFailure},
    mode::Mode,
    service::ServiceState,
    telemetry::Component,
    trace::{TRACEPARENT, TraceContext},
};

/// The response header that tells a caller (and `curl -i`) which trace its request is in.
pub const TRACE_ID_HEADER: &str = "x-trace-id";
/// Where the work is: the path every demo service serves and calls on the next one.
pub const CHECKOUT_PATH: &str = "/checkout";

/// Why a request failed, handed from the handler to [`traced`] for the "finished" line.
#[derive(Debug, Clone)]
struct FailureReason(String);

/// Wraps each work request: its span in the trace, the "received" and "finished" lines, and its
/// point. If the caller goes away first, the request is recorded as 499 (closed by the client).
pub(crate) async fn traced(State(state): State<Arc<ServiceState>>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(TRACEPARENT).map(HeaderValue::as_bytes);
    let (trace, malformed) = TraceContext::for_incoming(header);
    let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
    let telemetry = &state.telemetry;
    if let Some(why) = malformed {
        let message = format!("{why}; this request starts a new trace");
        telemetry.log(LogLevel::Warning, Component::Http, Some(&trace), message, json!({}));
    }
    telemetry.log(
        LogLevel::Info,
        Component::Http,
        Some(&trace),
        format!("{method} {path} received"),
        json!({ "method": method, "path": path }),
    );
    request.extensions_mut().insert(trace.clone());
    let mut unfinished = Unfinished { state: state.clone(), trace, method, path, started: Instant::now(), done: false };
    let mut response = next.run(request).await;
    unfinished.done = true;
    let reason = response.extensions().get::<FailureReason>().map(|r| r.0.clone());
    unfinished.finish(response.status().as_u16(), reason.as_deref());
    if let Ok(value) = HeaderValue::from_str(&unfinished.trace.trace_id) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

/// A request between "received" and "finished"; dropped unfinished when the caller gives up.
struct Unfinished {
    state: Arc<ServiceState>,
    trace: TraceContext,
    method: String,
    path: String,
    started: Instant,
    done: bool,
}

impl Unfinished {
    fn finish(&self, status: u16, reason: Option<&str>) {
        let took = self.started.elapsed();
        let duration_ms = millis(took);
        let level = match status {
            500.. => LogLevel::Error,
            400.. => LogLevel::Warning,
            _ => LogLevel::Info,
        };
        let (method, path) = (&self.method, &self.path);
        let mut message = format!("{method} {path} {status} in {duration_ms:.1} ms");
        let mut fields = json!({ "method": method, "path": path, "status": status, "duration_ms": duration_ms });
        if let Some(reason) = reason {
            message = format!("{message}: {reason}");
            fields["error"] = json!(reason);
        }
        self.state.telemetry.log(level, Component::Http, Some(&self.trace), message, fields);
        self.state.telemetry.request_point(method, status, took);
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.done {
            self.finish(499, Some("the caller closed the connection before the answer"));
        }
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64 / 100.0).round() / 10.0
}

/// A failed answer: JSON `{error, detail, trace_id}` plus the reason for the "finished" line.
fn failed(status: StatusCode, error: &str, detail: String, trace: &TraceContext, extra: Option<Value>) -> Response {
    let mut body = json!({ "error": error, "detail": detail, "trace_id": trace.trace_id });
    if let Some(extra) = extra {
        body["downstream"] = extra;
    }
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(FailureReason(detail));
    response
}

/// Applies the failure switch to a work request: `None` means go ahead (after the delay, if slow).
async fn switched_failure(state: &ServiceState, trace: &TraceContext) -> Option<Response> {
    match state.mode.get() {
        Mode::Healthy => None,
        Mode::Slow => {
            let delay = state.slow_delay;
            state.telemetry.log(
                LogLevel::Warning,
                Component::Http,
                Some(trace),
                format!("answering slowly on purpose: demo mode is 'slow' ({} ms)", delay.as_millis()),
                json!({ "mode": "slow", "delay_ms": delay.as_millis() as u64 }),
            );
            tokio::time::sleep(delay).await;
            None
        }
        Mode::Faulty if fastrand::f64() >= state.error_share => None,
        mode @ (Mode::Error | Mode::Exit | Mode::Faulty) => {
            let detail = format!("failing on purpose: demo mode is '{mode}' (PUT /demo/mode to change it)");
            Some(failed(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail, trace, None))
        }
    }
}

/// `GET /`: which instance answered (after the failure switch, like any work), and how its
/// logs and metrics are getting to opsdeck (sent, queued, dropped).
pub(crate) async fn hello(
    State(state): State<Arc<ServiceState>>,
    Extension(trace): Extension<TraceContext>,
) -> Response {
    if let Some(failed) = switched_failure(&state, &trace).await {
        return failed;
    }
    let mut answer = state.who_am_i();
    answer["telemetry"] = json!(state.telemetry.stats());
    Json(answer).into_response()
}

/// `GET /checkout`: the demo's work. Calls the next service (if any) with the trace and answers
/// with the path the request took, or fails as the switch or the callee says.
pub(crate) async fn checkout(
    State(state): State<Arc<ServiceState>>,
    Extension(trace): Extension<TraceContext>,
) -> Response {
    if let Some(failed) = switched_failure(&state, &trace).await {
        return failed;
    }
    let mut answer = state.who_am_i();
    answer["trace_id"] = json!(trace.trace_id);
    let Some((callee, client)) = &state.downstream else {
        return Json(answer).into_response();
    };
    let call = client.call(callee, CHECKOUT_PATH, &trace).await;
    log_call(&state, &trace, &call);
    match call.result {
        Ok(reply) if reply.status.is_success() => {
            answer["downstream"] = reply.body;
            Json(answer).into_response()
        }
        Ok(reply) => {
            let why = reply
                .body
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| reply.body.to_string());
            let detail = format!("{callee} answered {} ({why})", reply.status.as_u16());
            failed(StatusCode::BAD_GATEWAY, "bad_gateway", detail, &trace, Some(reply.body))
        }
        Err(failure) => {
            let error = match failure {
                CallFailure::NoInstance(_) => "unavailable",
                CallFailure::TimedOut(_) => "gateway_timeout",
                CallFailure::Unreachable(_) | CallFailure::Broken(_) => "bad_gateway",
            };
            failed(failure.status(), error, failure.reason().to_owned(), &trace, None)
        }
    }
}

/// The client side of a call: a warning for each try that is retried, then one line for how it
/// ended (error when it failed, warning when it was slow).
fn log_call(state: &ServiceState, trace: &TraceContext, call: &Call) {
    let telemetry = &state.telemetry;
    let (peer, path) = (&call.service, &call.path);
    let tries = call.attempts.len();
    for (number, attempt) in call.attempts.iter().enumerate() {
        let (Some(failure), true) = (&attempt.failure, number + 1 < tries) else { continue };
        telemetry.log(
            LogLevel::Warning,
            Component::Client,
            Some(trace),
            format!("GET {peer} {path} try {} failed ({failure}); retrying on another instance", number + 1),
            json!({ "peer_service": peer, "peer_address": attempt.endpoint.address, "attempt": number + 1,
                    "duration_ms": millis(attempt.took), "error": failure }),
        );
    }
    let duration_ms = millis(call.took);
    let mut fields = json!({ "peer_service": peer, "method": "GET", "path": path, "duration_ms": duration_ms,
                             "attempts": tries });
    let (level, message) = match &call.result {
        Ok(reply) => {
            let status = reply.status.as_u16();
            fields["status"] = json!(status);
            fields["peer_instance"] = json!(reply.endpoint.instance_id);
            fields["peer_address"] = json!(reply.endpoint.address);
            let message = format!("GET {peer} {path} {status} in {duration_ms:.1} ms");
            if reply.status.is_server_error() {
                let why = reply.body.get("detail").and_then(Value::as_str).unwrap_or("no detail");
                fields["error"] = json!(why);
                (LogLevel::Error, format!("{message}: {peer} failed ({why})"))
            } else if call.took > state.slow_call {
                (LogLevel::Warning, format!("{message}: slow (over {} ms)", state.slow_call.as_millis()))
            } else {
                (LogLevel::Info, message)
            }
        }
        Err(failure) => {
            fields["status"] = json!(0);
            fields["error"] = json!(failure.reason());
            (LogLevel::Error, format!("GET {peer} {path} failed after {duration_ms:.1} ms: {}", failure.reason()))
        }
    };
    telemetry.log(level, Component::Client, Some(trace), message, fields);
}
