//! The demo fleet on the real stack: `opsdeck demo-service` processes register through the JSON
//! API, turn healthy, fail for real when their mode says so, crash, deregister on SIGTERM and
//! retry a refused (409) registration. The supervisor (`opsdeck demo`) is in `demo_fleet.rs`.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::{TestApp, free_port, wait_until};
use tokio::io::AsyncBufReadExt;

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A running `opsdeck` process whose output lines are collected as they come (a full pipe would
/// stop it), killed if the test ends before it does.
pub(crate) struct Process {
    child: tokio::process::Child,
    /// Held open until [`Process::close_stdin`], as the fleet holds its children's.
    stdin: Option<tokio::process::ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub(crate) fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the opsdeck binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collect = |stream: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
            let lines = lines.clone();
            tokio::spawn(async move {
                let Some(stream) = stream else { return };
                let mut reader = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().expect("lines").push(line);
                }
            })
        };
        collect(child.stdout.take().map(|s| Box::new(s) as _));
        collect(child.stderr.take().map(|s| Box::new(s) as _));
        Self { stdin: child.stdin.take(), child, lines }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub(crate) fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    pub(crate) fn sigterm(&self) {
        let sent = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        assert!(sent.expect("kill runs").success());
    }

    /// Waits for the exit; fails with the process's output if it takes longer than `PATIENCE`.
    pub(crate) async fn exit_status(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.expect("waits"),
            Err(_) => panic!("the process did not exit within {PATIENCE:?}; its output:\n{}", self.output()),
        }
    }
}

/// The app, its tokens, and a way to start demo services against it.
pub(crate) struct Stage {
    pub(crate) app: TestApp,
    /// What the demo gives its fleet: *ingest* (registry, logs, metrics) and *read* (discovery).
    pub(crate) ingest: String,
    pub(crate) reader: String,
}

impl Stage {
    pub(crate) async fn new() -> Self {
        let app = TestApp::spawn().await;
        let ingest = app.token("demo-fleet", &[Scope::Ingest, Scope::Read]).await;
        let reader = app.token("reader", &[Scope::Read]).await;
        Self { app, ingest, reader }
    }

    /// `opsdeck demo-service` for `service` on a free loopback port; the token goes in the
    /// environment, as the fleet passes it.
    fn service(&self, service: &str) -> (Process, u16) {
        self.service_with(service, &[])
    }

    pub(crate) fn service_with(&self, service: &str, extra: &[&str]) -> (Process, u16) {
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
        command
            .args(["--log-format", "json", "demo-service", "--service", service, "--service-version", "v1"])
            .args(["--cluster", "east", "--node", "east-1", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--opsdeck-url", &self.app.address, "--slow-delay", "3s"])
            .args(extra)
            .env("OPSDECK_TOKEN", &self.ingest);
        (Process::spawn(command), port)
    }

    async fn instances(&self) -> Vec<Value> {
        let response = self
            .app
            .http
            .get(self.app.url("/api/v1/instances"))
            .bearer_auth(&self.reader)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub(crate) async fn instance_at(&self, port: u16) -> Option<Value> {
        self.instances().await.into_iter().find(|i| i["port"] == port)
    }

    /// Waits for the instance at `port` to be registered, then makes its service's checks quick
    /// (the service row exists from the first registration; the checker re-reads it every second).
    pub(crate) async fn registered(&self, service: &str, port: u16, process: &Process) -> Value {
        let instance = wait_until(&format!("{service} on port {port} to register"), PATIENCE, || async {
            let found = self.instance_at(port).await;
            if found.is_none() && process.output().contains("\"level\":\"ERROR\"") {
                panic!("the service failed:\n{}", process.output());
            }
            found
        })
        .await;
        check_quickly(&self.app.db, service).await;
        instance
    }

    /// Waits until the instance at `port` has `health`; returns its reason.
    pub(crate) async fn health(&self, port: u16, health: &str) -> String {
        wait_until(&format!("the instance on port {port} to be {health}"), PATIENCE, || async {
            let instance = self.instance_at(port).await?;
            (instance["health"] == health).then(|| instance["health_reason"].as_str().unwrap_or_default().to_owned())
        })
        .await
    }
}

async fn check_quickly(db: &sqlx::PgPool, service: &str) {
    sqlx::query(
        "UPDATE services SET check_interval_ms = 500, check_timeout_ms = 1000, fall = 2, rise = 1 WHERE name = $1",
    )
    .bind(service)
    .execute(db)
    .await
    .expect("set quick checks");
}

/// The health of the (single) instance on a node of the small fleet, if it is registered.
pub(crate) async fn node_health(db: &sqlx::PgPool, node: &str) -> Option<String> {
    sqlx::query_scalar("SELECT i.health FROM instances i JOIN nodes n ON n.id = i.node_id WHERE n.name = $1")
        .bind(node)
        .fetch_optional(db)
        .await
        .expect("query")
}

pub(crate) async fn node_becomes(db: &sqlx::PgPool, node: &str, health: &str) {
    wait_until(&format!("the instance on {node} to be {health}"), PATIENCE, || async {
        (node_health(db, node).await.as_deref() == Some(health)).then_some(())
    })
    .await;
}

pub(crate) async fn set_mode(port: u16, mode: &str) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/demo/mode"))
        .body(json!({ "mode": mode }).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the demo service answers")
}

#[tokio::test]
async fn a_demo_service_registers_itself_and_becomes_healthy() {
    let stage = Stage::new().await;
    let (service, port) = stage.service("web");

    let instance = stage.registered("web", port, &service).await;
    stage.health(port, "healthy").await;

    assert_eq!((instance["service"].as_str(), instance["version"].as_str()), (Some("web"), Some("v1")));
    assert_eq!((instance["cluster"].as_str(), instance["node"].as_str()), (Some("east"), Some("east-1")));
    assert_eq!(instance["host"], "127.0.0.1");
    let hello: Value =
        reqwest::get(format!("http://127.0.0.1:{port}/")).await.expect("answer").json().await.expect("json");
    assert_eq!(hello["instance_id"], instance["id"], "the service knows the id it registered under");
    assert_eq!(hello["mode"], "healthy");
}

#[tokio::test]
async fn mode_error_makes_the_instance_unhealthy_with_an_http_503_reason_and_healthy_mends_it() {
    let stage = Stage::new().await;
    let (service, port) = stage.service("api");
    stage.registered("api", port, &service).await;
    stage.health(port, "healthy").await;

    let answer = set_mode(port, "error").await;
    assert_eq!(answer.status(), 200);
    let reason = stage.health(port, "unhealthy").await;
    assert!(reason.contains("HTTP 503") && reason.contains("demo mode is 'error'"), "{reason}");

    assert_eq!(set_mode(port, "healthy").await.status(), 200);
    stage.health(port, "healthy").await;
}

#[tokio::test]
async fn mode_slow_answers_after_the_check_timeout_so_the_instance_goes_unhealthy() {
    let stage = Stage::new().await;
    let (service, port) = stage.service("search");
    stage.registered("search", port, &service).await;
    stage.health(port, "healthy").await;

    assert_eq!(set_mode(port, "slow").await.status(), 200);

    let reason = stage.health(port, "unhealthy").await;
    assert!(reason.contains("no answer within 1000 ms"), "{reason}");
}

#[tokio::test]
async fn mode_exit_ends_the_process_like_a_crash_and_the_instance_goes_unhealthy_but_stays_registered() {
    let stage = Stage::new().await;
    let (mut service, port) = stage.service("payments");
    stage.registered("payments", port, &service).await;
    stage.health(port, "healthy").await;

    let answer = set_mode(port, "exit").await;
    assert_eq!(answer.status(), 200, "the switch answers before the process goes");
    let status = service.exit_status().await;

    assert_eq!(status.code(), Some(opsdeck::demo::service::CRASH_EXIT_CODE), "{}", service.output());
    let reason = stage.health(port, "unhealthy").await;
    assert!(reason.contains("cannot connect"), "{reason}");
    assert!(!service.output().contains("deregistered"), "a crash doesn't deregister");
}

#[tokio::test]
async fn sigterm_deregisters_the_instance_and_exits_cleanly() {
    let stage = Stage::new().await;
    let (mut service, port) = stage.service("web");
    stage.registered("web", port, &service).await;

    service.sigterm();
    let status = service.exit_status().await;

    assert!(status.success(), "exit {status:?}: {}", service.output());
    assert!(stage.instance_at(port).await.is_none(), "deregistered before exiting");
}

#[tokio::test]
async fn a_service_the_registry_forgot_registers_again_at_its_next_heartbeat() {
    let stage = Stage::new().await;
    // A 3 s TTL asks for a heartbeat every second.
    let (service, port) = stage.service_with("web", &["--ttl-seconds", "3"]);
    let first = stage.registered("web", port, &service).await;
    let first = first["id"].as_str().expect("id").to_owned();

    let deleted =
        stage.app.http.delete(stage.app.url(&format!("/api/v1/instances/{first}"))).bearer_auth(&stage.ingest).send();
    assert_eq!(deleted.await.expect("answer").status(), 204);

    let again = wait_until("the service to register again", PATIENCE, || async {
        stage.instance_at(port).await.filter(|i| i["id"] != first.as_str())
    })
    .await;
    assert_eq!(again["ttl_seconds"], 3);
    assert!(service.output().contains("registering again"), "{}", service.output());
}

#[tokio::test]
async fn a_demo_service_told_to_follow_its_stdin_deregisters_and_exits_when_it_closes() {
    let stage = Stage::new().await;
    let (mut service, port) = stage.service_with("web", &["--stop-when-stdin-closes"]);
    stage.registered("web", port, &service).await;

    service.close_stdin();
    let status = service.exit_status().await;

    assert!(status.success(), "exit {status:?}: {}", service.output());
    assert!(stage.instance_at(port).await.is_none(), "deregistered before exiting");
}

#[tokio::test]
async fn a_refused_registration_409_is_logged_and_retried_until_the_address_is_free() {
    let stage = Stage::new().await;
    let port = free_port();
    // Another service holds the address (a different service and version, alive: a 409 both
    // before and after the registry learns to replace restarts).
    let holder: Value = stage
        .app
        .http
        .post(stage.app.url("/api/v1/instances"))
        .bearer_auth(&stage.ingest)
        .json(&json!({"service": "squatter", "version": "v9", "cluster": "east", "node": "east-1",
                      "host": "127.0.0.1", "port": port}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let holder = holder["instance_id"].as_str().expect("registered").to_owned();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "demo-service", "--service", "web", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--opsdeck-url", &stage.app.address])
        .env("OPSDECK_TOKEN", &stage.ingest);
    let service = Process::spawn(command);

    wait_until("the 409 to be logged with a retry", PATIENCE, || async {
        let output = service.output();
        (output.contains("already registered as instance") && output.contains("retry_in_ms")).then_some(())
    })
    .await;
    let deleted =
        stage.app.http.delete(stage.app.url(&format!("/api/v1/instances/{holder}"))).bearer_auth(&stage.ingest).send();
    assert_eq!(deleted.await.expect("answer").status(), 204);

    let instance = stage.registered("web", port, &service).await;
    assert_eq!(instance["service"], "web");
}

#[tokio::test]
async fn a_demo_service_without_a_token_stops_at_once_saying_where_the_token_goes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"))
        .args(["demo-service", "--service", "web", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("OPSDECK_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OPSDECK_TOKEN") && stderr.contains("--scope ingest"), "{stderr}");
}
