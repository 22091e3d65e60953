//! `opsdeck router`: the data plane. A reverse proxy in front of the registered instances that
//! routes by Host and path prefix, shares requests between versions by the traffic policy
//! (sticky by header or cookie), balances round robin over healthy instances with a passive
//! breaker each, retries safely, and reports every request (InfluxDB `router_requests` per second,
//! `/metrics`, access logs). Its table follows PostgreSQL through [`crate::traffic::watch`] and
//! outlives PostgreSQL outages. [`RouterApp::build`] binds both listeners so tests run it on port 0.

mod admin;
mod aggregate;
mod headers;
pub mod pool;
mod proxy;
pub mod report;
mod serve;
mod settings;
mod upstream;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use settings::{ProviderKind, RouterSettings};

use crate::{
    demo::outbox::{Outbox, OutboxConfig},
    influx::InfluxClient,
    metrics::Buffer,
    traffic::watch::{WatchSettings, WatchStatus, watch},
};
use pool::LiveTable;
use proxy::Proxy;
use report::Reporter;

/// Most request points held for InfluxDB; beyond it points are dropped and counted.
const POINT_BUFFER: usize = 100_000;

/// How long the point writer lets a short batch fill before sending it: one InfluxDB write per
/// request burst instead of one per handful of requests (each costs the router CPU).
const POINT_LINGER: Duration = Duration::from_millis(100);

/// The interval request metrics are summed over: one `router_requests` point per instance and
/// status class each (see `aggregate.rs`).
const POINT_INTERVAL: Duration = Duration::from_secs(1);

/// A bound, not yet serving router.
pub struct RouterApp {
    listener: TcpListener,
    admin_listener: TcpListener,
    proxy: Arc<Proxy>,
    admin: Arc<admin::Admin>,
    db: sqlx::PgPool,
    influx: InfluxClient,
    points: Arc<Buffer>,
    access_log: Option<Arc<Outbox>>,
    watch: WatchSettings,
    /// `--provider haproxy`: the watch loop drives this HAProxy first, then the built-in table
    /// (which keeps `/status` and the built-in listener on the same policy).
    haproxy: Option<Arc<crate::traffic::haproxy::HaproxyProvider>>,
}

impl RouterApp {
    /// Checks the settings and binds both listeners. PostgreSQL is connected lazily: a router
    /// started while it is down serves nothing until it comes, and says so on `/readyz`.
    pub async fn build(settings: RouterSettings) -> anyhow::Result<Self> {
        let haproxy = match settings.provider {
            ProviderKind::Router => None,
            ProviderKind::Haproxy => Some(Arc::new(settings.haproxy.provider()?)),
        };
        let influx = InfluxClient::new(settings.influx.to_config()?);
        let db = PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(settings.database.acquire_timeout)
            .connect_lazy_with(settings.database.url.connect_options());
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen): is the port taken?", settings.listen))?;
        let admin_listener = TcpListener::bind(settings.admin_listen).await.with_context(|| {
            format!("cannot listen on {} (--admin-listen): is the port taken?", settings.admin_listen)
        })?;
        let access_log = match (&settings.opsdeck_url, &settings.ingest_token) {
            (Some(url), Some(token)) => Some(Outbox::new(OutboxConfig {
                what: "access log lines",
                url: url.join("/api/v1/logs").context("--opsdeck-url can't take the path /api/v1/logs")?.to_string(),
                content_type: "application/x-ndjson",
                token: token.clone(),
                capacity: 50_000,
                batch: 1000,
                every: Duration::from_millis(500),
            })),
            (None, None) => None,
            _ => anyhow::bail!("--opsdeck-url and --ingest-token go together: give both for access logs, or neither"),
        };
        let points = Arc::new(Buffer::new(POINT_BUFFER));
        let reporter = Arc::new(Reporter::new(Some(points.clone()), access_log.clone()));
        let table = Arc::new(LiveTable::new(settings.breaker()));
        let proxy_settings = settings.proxy();
        let proxy = Arc::new(Proxy { table: table.clone(), settings: proxy_settings, report: reporter.clone() });
        let admin = Arc::new(admin::Admin {
            status: Arc::new(WatchStatus::default()),
            table,
            report: reporter,
            points: points.clone(),
        });
        Ok(Self {
            listener,
            admin_listener,
            proxy,
            admin,
            db,
            influx,
            points,
            access_log,
            watch: WatchSettings { full_reload_every: settings.full_reload_every },
            haproxy,
        })
    }

    /// Where client traffic goes.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/healthz`, `/readyz`, `/status` and `/metrics` answer.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener.local_addr().expect("a bound listener has an address")
    }

    /// The policy watcher's status (what `/readyz` reports).
    pub fn status(&self) -> Arc<WatchStatus> {
        self.admin.status.clone()
    }

    /// Serves until `shutdown` completes, then finishes requests in flight and flushes metrics.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let provider: Arc<dyn crate::traffic::TrafficProvider> = match &self.haproxy {
            None => self.proxy.table.clone(),
            Some(haproxy) => {
                Arc::new(crate::traffic::haproxy::Tee { first: haproxy.clone(), then: self.proxy.table.clone() })
            }
        };
        let watcher =
            tokio::spawn(watch(self.db.clone(), provider, self.admin.status.clone(), self.watch, stop.clone()));
        let flush = CancellationToken::new();
        let writer = tokio::spawn(crate::metrics::run_writer_lingering(
            self.points.clone(),
            self.influx.clone(),
            2,
            POINT_LINGER,
            flush.clone(),
        ));
        let windows = tokio::spawn({
            let (report, stop) = (self.proxy.report.clone(), stop.clone());
            async move {
                let mut every = tokio::time::interval(POINT_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await;
                loop {
                    tokio::select! {
                        _ = every.tick() => report.flush(),
                        () = stop.cancelled() => break,
                    }
                }
            }
        });
        let logs = self.access_log.clone().map(|outbox| {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
            tokio::spawn(outbox.run(http, stop.clone().cancelled_owned(), Duration::from_secs(3)))
        });
        let admin_app = admin::routes(self.admin.clone());
        let signal = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                tracing::info!("router shutting down: no new connections, finishing requests in flight");
                stop.cancel();
            }
        };
        let admin_stop = stop.clone();
        let admin_server = tokio::spawn(async move {
            axum::serve(self.admin_listener, admin_app).with_graceful_shutdown(admin_stop.cancelled_owned()).await
        });
        serve::serve(self.listener, self.proxy.clone(), signal).await;
        let _ = admin_server.await;
        let _ = watcher.await;
        let _ = windows.await;
        // The requests since the last interval, then everything still buffered.
        self.proxy.report.flush();
        flush.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        if let Some(logs) = logs {
            let _ = tokio::time::timeout(Duration::from_secs(5), logs).await;
        }
        Ok(())
    }
}

/// `opsdeck router`: build, announce, serve until SIGTERM or Ctrl-C.
pub async fn run(settings: RouterSettings) -> anyhow::Result<()> {
    let watch_stdin = settings.stop_when_stdin_closes;
    let app = RouterApp::build(settings).await?;
    tracing::info!(listen = %app.local_addr(), admin = %app.admin_addr(), "opsdeck router is serving");
    app.run_until_stopped(crate::demo::service::stop_requested(watch_stdin)).await
}
