//! `opsdeck demo-service`: one demo service as its own OS process. It serves `/healthz`, `/` (a
//! small JSON answer) and the failure switch `GET`/`PUT /demo/mode`; registers itself through
//! opsdeck's JSON API, heartbeats, and deregisters on SIGTERM or Ctrl-C. Later issues add
//! traffic, metrics and logs here.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use app::model::topology::{RegisterInstance, Registration};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Args;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::{
    mode::{Mode, ModeBody, ModeSwitch, parse_mode_body},
    registrar::Registrar,
};

/// The environment variable that carries the ingest token (never a flag: `ps` shows flags).
pub const TOKEN_ENV: &str = "OPSDECK_TOKEN";
/// The exit status of mode `exit`: not 0, so a supervisor sees a crash, not a clean stop.
pub const CRASH_EXIT_CODE: i32 = 70;
/// What the service registers as its health-check path.
pub const HEALTH_PATH: &str = "/healthz";

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

struct ServiceState {
    identity: Identity,
    mode: ModeSwitch,
    slow_delay: Duration,
    registration: watch::Receiver<Option<Registration>>,
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
    let registrar = Registrar::new(&args.opsdeck_url, token, request)?;
    let (registration_tx, registration) = watch::channel(None);
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
        registration: registration.clone(),
    });

    // Serve before registering, so the first health check finds the service answering.
    let (stop_serving, serving_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                let _ = serving_stopped.await;
            })
            .into_future()
            .in_current_span(),
    );
    tracing::info!(mode = %args.mode, "demo service listening");

    let outcome = tokio::select! {
        // Returns only on a failure retrying can't fix (a refused token, a refused setting).
        failed = registrar.keep_registered(registration_tx) => failed,
        () = stop_requested(args.stop_when_stdin_closes) => Ok(()),
    };
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
    outcome
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
    Router::new()
        .route(HEALTH_PATH, get(healthz))
        .route("/", get(hello))
        .route("/demo/mode", get(get_mode).put(put_mode))
        .with_state(state)
}

/// Answers as the current mode says; `None` means "go ahead" (after the delay, if slow).
async fn failure(state: &ServiceState) -> Option<Response> {
    match state.mode.get() {
        Mode::Healthy => None,
        Mode::Slow => {
            tokio::time::sleep(state.slow_delay).await;
            None
        }
        Mode::Error => Some(
            (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose: demo mode is 'error' (PUT /demo/mode to change it)")
                .into_response(),
        ),
        Mode::Exit => Some((StatusCode::SERVICE_UNAVAILABLE, "exiting: demo mode is 'exit'").into_response()),
    }
}

async fn healthz(State(state): State<Arc<ServiceState>>) -> Response {
    match failure(&state).await {
        Some(failed) => failed,
        None => (StatusCode::OK, "ok").into_response(),
    }
}

/// A small JSON answer saying which instance answered (what traffic will see later).
async fn hello(State(state): State<Arc<ServiceState>>) -> Response {
    if let Some(failed) = failure(&state).await {
        return failed;
    }
    let instance_id = state.registration.borrow().as_ref().map(|r| r.instance_id.clone());
    Json(serde_json::json!({
        "service": state.identity.service,
        "version": state.identity.version,
        "cluster": state.identity.cluster,
        "node": state.identity.node,
        "address": state.identity.address,
        "instance_id": instance_id,
        "mode": state.mode.get(),
    }))
    .into_response()
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
    if mode == Mode::Exit {
        crash_soon();
    }
    Json(ModeBody { mode }).into_response()
}

/// Exits without deregistering or finishing requests, like a crash. The short pause lets the
/// answer to `PUT /demo/mode` reach the caller first, so it can tell "done" from "broken".
fn crash_soon() {
    tracing::warn!(exit_code = CRASH_EXIT_CODE, "exiting now without deregistering (demo mode 'exit')");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::process::exit(CRASH_EXIT_CODE);
    });
}

/// Completes on SIGTERM or Ctrl-C, or when standard input closes if `watch_stdin`.
pub(crate) async fn stop_requested(watch_stdin: bool) {
    let stdin_closed = async {
        if watch_stdin {
            stdin_closed().await;
            tracing::info!("standard input closed (the supervisor stopped or is gone); deregistering");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = crate::startup::shutdown_signal() => tracing::info!("stop signal received; deregistering"),
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
