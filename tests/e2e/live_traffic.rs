//! Real traffic for browser tests: `opsdeck demo-service` child processes as a service's
//! versions (they register themselves and write their own `http_requests` points through the
//! app's ingest API), the `opsdeck router` in process in front of them, and a steady load of
//! requests through the router.

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opsdeck::{cli::ServeSettings, router::RouterSettings};
use testkit::{TestApp, free_port, opsdeck_binary};

/// One `opsdeck demo-service` child, killed when dropped.
pub struct DemoService {
    pub port: u16,
    _child: tokio::process::Child,
}

impl DemoService {
    /// Starts `service` `version` on a free loopback port, registering with `app` using `token`
    /// (ingest + read scopes), passed in the child's environment as the demo fleet does.
    pub fn start(app: &TestApp, token: &str, service: &str, version: &str) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(opsdeck_binary())
            .args(["--log-format", "json", "demo-service", "--service", service, "--service-version", version])
            .args(["--cluster", "eu-1", "--node", "node-a", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--opsdeck-url", &app.address, "--telemetry-every", "500ms"])
            .env("OPSDECK_TOKEN", token)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the opsdeck binary starts as a demo service");
        Self { port, _child: child }
    }
}

/// `opsdeck router` on its own runtime (as in production, so the test's load can't stall it),
/// following the app's database and writing to its InfluxDB; stopped when dropped.
pub struct RouterHandle {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RouterHandle {
    pub async fn start(app_settings: &ServeSettings) -> Self {
        let settings = RouterSettings::for_tests(app_settings.database.clone(), app_settings.influx.clone());
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the router");
            runtime.block_on(async move {
                let router = opsdeck::router::RouterApp::build(settings).await.expect("the router builds");
                let _ = started_tx.send(router.local_addr());
                let _ = router
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let listen = started.await.expect("the router starts (see the panic above if not)");
        Self { url: format!("http://{listen}"), stop: Some(stop) }
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `per_second` GETs a second with `Host: <host>` through the router until dropped; counts
/// the 2xx answers.
pub struct SteadyLoad {
    pub answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyLoad {
    pub fn start(router: &RouterHandle, host: &str, per_second: u32) -> Self {
        let answered = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let (url, host, counter) = (format!("{}/", router.url), host.to_owned(), answered.clone());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let (request, counter) = (http.get(&url).header("host", &host), counter.clone());
                tokio::spawn(async move {
                    if request.send().await.is_ok_and(|r| r.status().is_success()) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Self { answered, task }
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        self.task.abort();
    }
}
