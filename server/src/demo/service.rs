//! `opsdeck demo-service`: one demo service as its own OS process. It serves `/healthz`, the
//! work ([`super::work`]: `GET /checkout`, which calls the next service found through discovery,
//! and `GET /`) and the failure switch `GET`/`PUT /demo/mode`; registers itself through opsdeck's
//! JSON API, heartbeats, deregisters on SIGTERM or Ctrl-C, and sends its log lines and request
//! metrics to opsdeck ([`super::telemetry`]).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use app::model::{
    logs::LogLevel,
    topology::{RegisterInstance, Registration},
};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Args;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    downstream::Downstream,
    mode::{Mode, ModeBody, ModeSwitch, parse_mode_body},
    registrar::Registrar,
    telemetry::{Component, Origin, Telemetry, TelemetrySettings},
    work,
};

/// The environment variable that carries the ingest token (never a flag: `ps` shows flags).
pub const TOKEN_ENV: &str = "OPSDECK_TOKEN";
/// The exit status of mode `exit`: not 0, so a supervisor sees a crash, not a clean stop.
pub const CRASH_EXIT_CODE: i32 = 70;
/// What the service registers as its health-check path.
pub const HEALTH_PATH: &str = "/healthz";
/// Most log lines (or points) in one post to opsdeck.
const TELEMETRY_BATCH: usize = 500;
/// How long a stopping service keeps trying to hand over its last logs and points.
const TELEMETRY_GRACE: Duration = Duration::from_secs(2);

/// Settings of one demo service. The ingest token comes from `OPSDECK_TOKEN`.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Service name (e.g. `payments`).
    #[arg(long = "service", env = "OPSDECK_DEMO_SERVICE")]
    pub service: String,

    /// Version label (e.g. `v2`).
    #[arg(long = "service-version", env = "OPSDECK_DEMO_SERVICE_VERSION", default_value = "v1")]
    pub version: String,

    /// Cluster the service says it runs in.
    #[arg(long = "cluster", env = "OPSDECK_DEMO_CLUSTER", default_value = "local")]
    pub cluster: String,

    /// Node the service says it runs on.
    #[arg(long = "node", env = "OPSDECK_DEMO_NODE", default_value = "local-1")]
    pub node: String,

    /// Address to listen on (host:port); this is also the address it registers. Port 0 picks a
    /// free port (then a restart gets a new address).
    #[arg(long = "listen", env = "OPSDECK_DEMO_LISTEN")]
    pub listen: SocketAddr,

    /// Where opsdeck serves its API.
    #[arg(long = "opsdeck-url", env = "OPSDECK_URL", default_value = "http://127.0.0.1:3000")]
    pub opsdeck_url: url::Url,

    /// Seconds without a heartbeat before opsdeck counts the instance as expired (heartbeats go
    /// at a third of it, as opsdeck's answer says).
    #[arg(long = "ttl-seconds", env = "OPSDECK_DEMO_TTL_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub ttl_seconds: u32,

    /// How long answers take in mode `slow` (longer than the checker's 2 s default timeout).
    #[arg(long = "slow-delay", env = "OPSDECK_DEMO_SLOW_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub slow_delay: Duration,

    /// The mode to start in.
    #[arg(long = "mode", env = "OPSDECK_DEMO_MODE", value_enum, default_value_t = Mode::Healthy)]
    pub mode: Mode,

    /// The share of work requests answered with 500 in mode `faulty` (0.0–1.0).
    #[arg(long = "error-share", env = "OPSDECK_DEMO_ERROR_SHARE", default_value_t = 0.5, value_parser = parse_share)]
    pub error_share: f64,

    /// The service this one calls on each `GET /checkout` (its instances found through
    /// opsdeck's discovery, which needs the token to have the *read* scope), e.g. `payments`.
    #[arg(long = "calls")]
    pub calls: Option<String>,

    /// How long a call to the next service may take before it counts as failed (504).
    #[arg(long = "call-timeout", env = "OPSDECK_DEMO_CALL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,

    /// A call that takes longer than this is logged as a warning ("slow").
    #[arg(long = "slow-call", env = "OPSDECK_DEMO_SLOW_CALL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub slow_call: Duration,

    /// How often log lines and request metrics are sent to opsdeck (sooner when 500 are waiting).
    #[arg(long = "telemetry-every", env = "OPSDECK_DEMO_TELEMETRY_EVERY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub telemetry_every: Duration,

    /// Most log lines (and, separately, request points) held while opsdeck can't take them; past
    /// it the oldest are dropped and counted (`GET /` shows the counts).
    #[arg(long = "telemetry-buffer", env = "OPSDECK_DEMO_TELEMETRY_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub telemetry_buffer: u32,

    /// Stop (and deregister) when standard input closes: a supervisor holds the other end, so
    /// the service doesn't outlive it even if the supervisor is killed.
    #[arg(long = "stop-when-stdin-closes", action = clap::ArgAction::SetTrue)]
    pub stop_when_stdin_closes: bool,
}

/// Who this instance is, as it answers on `/`.
#[derive(Debug, Clone, serde::Serialize)]
struct Identity {
    service: String,
    version: String,
    cluster: String,
    node: String,
    address: String,
}

/// What the request handlers share.
pub(crate) struct ServiceState {
    identity: Identity,
    pub(crate) mode: ModeSwitch,
    pub(crate) slow_delay: Duration,
    /// The share of work requests that fail in mode `faulty`.
    pub(crate) error_share: f64,
    pub(crate) slow_call: Duration,
    registration: watch::Receiver<Option<Registration>>,
    pub(crate) telemetry: Arc<Telemetry>,
    /// The service called on `GET /checkout`, and the client that calls it.
    pub(crate) downstream: Option<(String, Downstream)>,
}

impl ServiceState {
    /// Who this instance is, as `GET /` and `GET /checkout` answer.
    pub(crate) fn who_am_i(&self) -> serde_json::Value {
        let instance_id = self.registration.borrow().as_ref().map(|r| r.instance_id.clone());
        json!({
            "service": self.identity.service,
            "version": self.identity.version,
            "cluster": self.identity.cluster,
            "node": self.identity.node,
            "address": self.identity.address,
            "instance_id": instance_id,
            "mode": self.mode.get(),
            "calls": self.downstream.as_ref().map(|(callee, _)| callee),
        })
    }

    fn lifecycle(&self, level: LogLevel, message: impl Into<String>, fields: serde_json::Value) {
        self.telemetry.log(level, Component::Lifecycle, None, message, fields);
    }
}

/// Runs the service until SIGTERM/Ctrl-C (or stdin closing, if asked), then deregisters.
pub async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let span = tracing::info_span!("demo_service", service = %args.service, version = %args.version,
        cluster = %args.cluster, node = %args.node, address = tracing::field::Empty);
    serve(args).instrument(span).await
}

async fn serve(args: ServiceArgs) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "{TOKEN_ENV} is not set: give the demo service an ingest token in the environment (not on the \
             command line, where `ps` shows it); `opsdeck token create --name demo --scope ingest` makes one"
        )
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("cannot listen on {} (--listen): is the port taken, or the address not on this machine?", args.listen)
    })?;
    let address = listener.local_addr().context("the listener has no address")?;
    tracing::Span::current().record("address", tracing::field::display(address));
    let request = registration_request(&args, address);
    request.check().map_err(|rule| anyhow::anyhow!("invalid demo service setting: {rule}"))?;
    if let Some(callee) = &args.calls {
        app::model::topology::check_name("service", callee)
            .map_err(|rule| anyhow::anyhow!("invalid --calls: {rule}"))?;
    }
    let registrar = Registrar::new(&args.opsdeck_url, token.clone(), request)?;
    let (registration_tx, registration) = watch::channel(None);
    let origin = Origin {
        service: args.service.clone(),
        version: args.version.clone(),
        cluster: args.cluster.clone(),
        node: args.node.clone(),
    };
    let telemetry_settings = TelemetrySettings {
        opsdeck_url: args.opsdeck_url.clone(),
        token: token.clone(),
        buffer: args.telemetry_buffer as usize,
        batch: TELEMETRY_BATCH,
        every: args.telemetry_every,
    };
    let telemetry = Arc::new(Telemetry::new(origin, registration.clone(), &telemetry_settings)?);
    let downstream = match &args.calls {
        Some(callee) => Some((callee.clone(), Downstream::new(&args.opsdeck_url, token, args.call_timeout)?)),
        None => None,
    };
    let state = Arc::new(ServiceState {
        identity: Identity {
            service: args.service.clone(),
            version: args.version.clone(),
            cluster: args.cluster.clone(),
            node: args.node.clone(),
            address: address.to_string(),
        },
        mode: ModeSwitch::new(args.mode),
        slow_delay: args.slow_delay,
        error_share: args.error_share,
        slow_call: args.slow_call,
        registration: registration.clone(),
        telemetry: telemetry.clone(),
        downstream,
    });
    let telemetry_stop = CancellationToken::new();
    let telemetry_task = tokio::spawn({
        let (telemetry, stop) = (telemetry.clone(), telemetry_stop.clone());
        async move { telemetry.run(stop, TELEMETRY_GRACE).await }.in_current_span()
    });
    tokio::spawn(announce_registrations(state.clone(), registration.clone()).in_current_span());

    // Serve before registering, so the first health check finds the service answering.
    let (stop_serving, serving_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = serving_stopped.await;
            })
            .into_future()
            .in_current_span(),
    );
    tracing::info!(mode = %args.mode, "demo service listening");
    state.lifecycle(
        LogLevel::Info,
        format!(
            "{} {} started on {address} (mode {}{})",
            args.service,
            args.version,
            args.mode,
            args.calls.as_ref().map(|c| format!(", calls {c}")).unwrap_or_default()
        ),
        json!({ "address": address.to_string(), "mode": args.mode, "calls": args.calls }),
    );

    let outcome = tokio::select! {
        // Returns only on a failure retrying can't fix (a refused token, a refused setting).
        failed = registrar.keep_registered(registration_tx) => failed,
        () = stop_requested(args.stop_when_stdin_closes) => Ok(()),
    };
    match &outcome {
        Ok(()) => {
            state.lifecycle(LogLevel::Info, "stopping: deregistering, then finishing requests in flight", json!({}))
        }
        Err(error) => state.lifecycle(LogLevel::Fatal, format!("stopping: {error:#}"), json!({})),
    }
    // Deregister before the listener closes, so the checker and discovery drop the instance
    // before it stops answering.
    let current = registration.borrow().clone();
    if let Some(registration) = current {
        match registrar.deregister(&registration.instance_id).await {
            Ok(()) => tracing::info!(instance_id = %registration.instance_id, "deregistered"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not deregister"),
        }
    }
    let _ = stop_serving.send(());
    // A request in mode `slow` may still be waiting out its delay.
    match tokio::time::timeout(args.slow_delay + Duration::from_secs(1), server).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP server failed while stopping"),
        Err(_) => tracing::warn!("requests still running at shutdown were cut off"),
        _ => {}
    }
    tracing::info!("demo service stopped");
    state.lifecycle(LogLevel::Info, "stopped", json!({}));
    telemetry_stop.cancel();
    let _ = telemetry_task.await;
    outcome
}

/// Writes a line each time the instance is (re-)registered, naming its id.
async fn announce_registrations(state: Arc<ServiceState>, mut registration: watch::Receiver<Option<Registration>>) {
    while registration.changed().await.is_ok() {
        let current = registration.borrow_and_update().clone();
        if let Some(registered) = current {
            state.lifecycle(
                LogLevel::Info,
                format!("registered with opsdeck as instance {}", registered.instance_id),
                json!({ "instance_id": registered.instance_id }),
            );
        }
    }
}

/// What the service registers: its own identity at the address it actually listens on.
fn registration_request(args: &ServiceArgs, address: SocketAddr) -> RegisterInstance {
    RegisterInstance {
        service: args.service.clone(),
        version: args.version.clone(),
        cluster: args.cluster.clone(),
        node: args.node.clone(),
        host: address.ip().to_string(),
        port: address.port(),
        health_check_path: Some(HEALTH_PATH.into()),
        metadata: Some(serde_json::Map::from_iter([
            ("demo".to_owned(), serde_json::Value::Bool(true)),
            ("pid".to_owned(), serde_json::Value::from(std::process::id())),
        ])),
        ttl_seconds: Some(args.ttl_seconds),
    }
}

fn router(state: Arc<ServiceState>) -> Router {
    // The work routes are traced, logged and measured; health checks and the switch are not
    // (they would drown the request metrics in probes).
    let work = Router::new()
        .route("/", get(work::hello))
        .route(work::CHECKOUT_PATH, get(work::checkout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), work::traced));
    Router::new()
        .route(HEALTH_PATH, get(healthz))
        .route("/demo/mode", get(get_mode).put(put_mode))
        .merge(work)
        .with_state(state)
}

/// A share between 0 and 1, e.g. `0.5`.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share: give a number from 0.0 to 1.0, e.g. 0.5")),
    }
}

/// The health check, as the current mode says: 503 in `error` and `exit`, late in `slow`
/// (`faulty` passes: only its work requests fail).
async fn healthz(State(state): State<Arc<ServiceState>>) -> Response {
    match state.mode.get() {
        Mode::Healthy | Mode::Faulty => (StatusCode::OK, "ok").into_response(),
        Mode::Slow => {
            tokio::time::sleep(state.slow_delay).await;
            (StatusCode::OK, "ok").into_response()
        }
        Mode::Error => {
            (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose: demo mode is 'error' (PUT /demo/mode to change it)")
                .into_response()
        }
        Mode::Exit => (StatusCode::SERVICE_UNAVAILABLE, "exiting: demo mode is 'exit'").into_response(),
    }
}

async fn get_mode(State(state): State<Arc<ServiceState>>) -> Json<ModeBody> {
    Json(ModeBody { mode: state.mode.get() })
}

async fn put_mode(State(state): State<Arc<ServiceState>>, body: axum::body::Bytes) -> Response {
    let mode = match parse_mode_body(&body) {
        Ok(ModeBody { mode }) => mode,
        Err(refusal) => return (StatusCode::UNPROCESSABLE_ENTITY, refusal).into_response(),
    };
    let before = state.mode.get();
    state.mode.set(mode);
    tracing::warn!(from = %before, to = %mode, "demo mode changed");
    let level = if mode == Mode::Healthy { LogLevel::Info } else { LogLevel::Warning };
    state.lifecycle(level, format!("demo mode changed from {before} to {mode}"), json!({ "from": before, "to": mode }));
    if mode == Mode::Exit {
        crash_soon(state.telemetry.clone());
    }
    Json(ModeBody { mode }).into_response()
}

/// Exits without deregistering or finishing requests, like a crash. The short pause lets the
/// answer to `PUT /demo/mode` reach the caller first, so it can tell "done" from "broken"; the
/// log lines queued by then get up to half a second to reach opsdeck.
fn crash_soon(telemetry: Arc<Telemetry>) {
    tracing::warn!(exit_code = CRASH_EXIT_CODE, "exiting now without deregistering (demo mode 'exit')");
    let message = format!("exiting now with status {CRASH_EXIT_CODE}, without deregistering (demo mode 'exit')");
    telemetry.log(LogLevel::Fatal, Component::Lifecycle, None, message, json!({ "exit_code": CRASH_EXIT_CODE }));
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        telemetry.flush(Duration::from_millis(500)).await;
        std::process::exit(CRASH_EXIT_CODE);
    });
}

/// Completes on SIGTERM or Ctrl-C, or when standard input closes if `watch_stdin`.
pub(crate) async fn stop_requested(watch_stdin: bool) {
    let stdin_closed = async {
        if watch_stdin {
            stdin_closed().await;
            tracing::info!("standard input closed (the supervisor stopped or is gone); stopping");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = crate::startup::shutdown_signal() => tracing::info!("stop signal received; stopping"),
        () = stdin_closed => {}
    }
}

/// Completes when standard input reaches its end. Read on a plain thread rather than with
/// `tokio::io::stdin`, whose blocking read would keep the runtime from shutting down.
async fn stdin_closed() {
    let (closed_tx, closed) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buffer = [0_u8; 256];
        while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });
    let _ = closed.await;
}
