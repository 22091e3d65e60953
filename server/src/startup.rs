//! Building and running the application. [`Application::build`] connects, migrates and binds,
//! so tests start the real thing on port 0 and read the port back.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use leptos::config::LeptosOptions;
use tokio::net::TcpListener;

use crate::{cli::ServeSettings, influx::InfluxClient, state::AppState};

/// The name of the browser bundle (`pkg/opsdeck.js`, `.wasm`, `.css`); `.cargo/config.toml`
/// sets the same name for the Leptos build.
pub const BUNDLE_NAME: &str = "opsdeck";

/// How often instances without heartbeats are looked for, and how long an expired instance
/// stays listed (so people see it go) before it is removed.
const EXPIRY_EVERY: Duration = Duration::from_secs(1);
const EXPIRED_GRACE: Duration = Duration::from_secs(300);

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    shutdown_grace: Duration,
    metrics_writers: usize,
}

impl Application {
    /// Checks the settings, connects to PostgreSQL (failing fast if it is unreachable),
    /// applies migrations, prepares InfluxDB (only warning if it is down: readiness reports it)
    /// and binds the listener.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        let influx = InfluxClient::new(settings.influx.to_config()?);
        let leptos = leptos_options(&settings)?;
        let db = crate::db::connect(&settings.database).await?;
        crate::db::migrate(&db).await?;
        if let Err(error) = influx.ensure_database().await {
            tracing::warn!(%error, "InfluxDB is not ready yet; metrics will show as unavailable until it is");
        }
        let listener = TcpListener::bind(settings.http.listen).await.with_context(|| {
            format!("cannot listen on {} (--listen / OPSDECK_LISTEN): is the port taken?", settings.http.listen)
        })?;
        let log_tail = crate::logs::tail::LogTailHub::default();
        let metrics = crate::metrics::Metrics::new(
            settings.metrics.buffer_points as usize,
            vec![Box::new(crate::logs::tail::TailCollector(log_tail.clone()))],
        );
        let state = AppState {
            db,
            influx,
            leptos,
            auth: std::sync::Arc::new(settings.auth.clone()),
            logs: std::sync::Arc::new(settings.logs.clone()),
            round_robin: std::sync::Arc::default(),
            events: crate::events::EventHub::new(metrics.own.workers.event_delivery.clone()),
            metrics,
            log_tail,
            stopping: tokio_util::sync::CancellationToken::new(),
            deployer: match &settings.releases.deployer_url {
                Some(url) => Some(Arc::new(crate::releases::deployer::HttpDeployer::new(url.clone())?)),
                None => None,
            },
        };
        let router = crate::http::router(state.clone(), &settings.http);
        let metrics_writers = settings.metrics.writers as usize;
        Ok(Self { listener, router, state, shutdown_grace: settings.http.shutdown_grace, metrics_writers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// for up to the grace period, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let workers = [
            tokio::spawn(self.state.events.clone().run(self.state.db.clone())),
            tokio::spawn(self.state.log_tail.clone().run(self.state.db.clone())),
            tokio::spawn(crate::topology::registry::run_expiry(self.state.db.clone(), EXPIRY_EVERY, EXPIRED_GRACE)),
            tokio::spawn(crate::topology::checker::run(
                self.state.db.clone(),
                self.state.influx.clone(),
                self.state.events.clone(),
                self.state.metrics.own.workers.checker.clone(),
            )),
            tokio::spawn(crate::logs::partitions::run(self.state.db.clone(), self.state.logs.retention)),
            tokio::spawn(crate::releases::worker::run(crate::releases::Releases::from_state(&self.state))),
        ];
        let flush_metrics = tokio_util::sync::CancellationToken::new();
        let (metrics, grace) = (self.state.metrics.buffer.clone(), self.shutdown_grace);
        let writer = tokio::spawn(crate::metrics::run_writer(
            metrics.clone(),
            self.state.influx.clone(),
            self.metrics_writers,
            flush_metrics.clone(),
        ));
        let outcome = self.serve(shutdown).await;
        workers.iter().for_each(tokio::task::JoinHandle::abort);
        // Requests have finished: the writer flushes what they left, for at most one more grace.
        flush_metrics.cancel();
        if tokio::time::timeout(grace, writer).await.is_err() {
            tracing::error!(points = metrics.status().held, "metrics still buffered at shutdown were not written");
        }
        outcome
    }

    async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let begun = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let begun = begun.clone();
            let stopping = self.state.stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                stopping.cancel();
                begun.notify_one();
            }
        };
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let mut serving =
            std::pin::pin!(axum::serve(self.listener, service).with_graceful_shutdown(signal).into_future());
        tokio::select! {
            outcome = &mut serving => return outcome.context("the HTTP server failed"),
            () = begun.notified() => {}
        }
        match tokio::time::timeout(self.shutdown_grace, serving).await {
            Ok(outcome) => outcome.context("the HTTP server failed while shutting down")?,
            Err(_) => {
                tracing::warn!(grace = ?self.shutdown_grace, "requests still running after the grace period were cut off")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `opsdeck serve`: build, announce the URL, serve until SIGTERM or Ctrl-C.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    let url = format!("http://{}/", application.local_addr());
    tracing::info!(%url, "opsdeck is serving");
    application.run_until_stopped(shutdown_signal()).await
}

/// Completes on SIGTERM (orchestrators) or Ctrl-C (people).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The Leptos options, after checking that the site folder holds a built bundle.
fn leptos_options(settings: &ServeSettings) -> anyhow::Result<LeptosOptions> {
    let root = &settings.http.site_root;
    let script = root.join("pkg").join(format!("{BUNDLE_NAME}.js"));
    if !script.is_file() {
        anyhow::bail!(
            "invalid setting --site-root (OPSDECK_SITE_ROOT): {} has no pkg/{BUNDLE_NAME}.js; \
             build the browser bundle with `cargo xtask site` (scripts/demo does it for you) or point the setting at a built site",
            root.display()
        );
    }
    Ok(LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_root(root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(settings.http.listen)
        .build())
}
