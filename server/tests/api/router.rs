//! `opsdeck router` on the real stack: the app (registry, health checker, PostgreSQL, InfluxDB),
//! real HTTP servers on loopback registered through the API as upstreams, and the router started
//! in-process on port 0. This file holds the fixture and the per-request behaviour (trace
//! context, prefix strip, forwarded headers, 404/503 bodies, sticky canary, atomic flips);
//! `router_load.rs` the acceptance runs under load, `router_outage.rs` the PostgreSQL outage,
//! `router_client.rs` the steady load and its tally.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use app::model::{
    identity::Scope,
    traffic::{Route, Sticky, TrafficChange, TrafficPolicy, VersionWeight},
};
use opsdeck::{cli::ServeSettings, router::RouterSettings};
use serde_json::{Value, json};
use testkit::{TestApp, TestEnv, wait_until};

pub(crate) use crate::router_client::{Load, Tally};

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A router running on its own runtime (as in production, so the test's load can't stall it).
pub(crate) struct RouterHandle {
    pub(crate) url: String,
    pub(crate) admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RouterHandle {
    pub(crate) async fn start(settings: RouterSettings) -> Self {
        let (started_tx, started) = tokio::sync::oneshot::channel::<(SocketAddr, SocketAddr)>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the router");
            runtime.block_on(async move {
                let router = opsdeck::router::RouterApp::build(settings).await.expect("the router builds");
                let _ = started_tx.send((router.local_addr(), router.admin_addr()));
                let _ = router
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (listen, admin) = started.await.expect("the router starts (see the panic above if not)");
        Self { url: format!("http://{listen}"), admin: format!("http://{admin}"), stop: Some(stop) }
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A real HTTP server standing in for one instance of a version: answers every path with what
/// it received (version, path, query, the headers the router sets) as JSON, with the status a
/// `status=NNN` query asks for (200 otherwise).
pub(crate) struct Echo {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub(crate) async fn start(version: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let version = version.to_owned();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let version = version.clone();
            async move {
                let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let status = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("status="))
                    .and_then(|code| axum::http::StatusCode::from_bytes(code.as_bytes()).ok())
                    .unwrap_or(axum::http::StatusCode::OK);
                let body = axum::Json(json!({
                    "version": version,
                    "port": port,
                    "path": request.uri().path(),
                    "query": request.uri().query(),
                    "traceparent": header("traceparent"),
                    "x_forwarded_for": header("x-forwarded-for"),
                    "x_forwarded_proto": header("x-forwarded-proto"),
                    "x_forwarded_host": header("x-forwarded-host"),
                    "host": header("host"),
                    "proxy_authorization": header("proxy-authorization"),
                    "x_drop_me": header("x-drop-me"),
                }));
                (status, body)
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, task }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The app, an ingest token, and one router following the app's database.
pub(crate) struct Stage {
    pub(crate) app: TestApp,
    ingest: String,
    pub(crate) router: RouterHandle,
    pub(crate) http: reqwest::Client,
}

impl Stage {
    pub(crate) async fn new() -> Self {
        Self::on(TestEnv::from_env()).await
    }

    /// The app on `env`'s servers (a private PostgreSQL for the outage test).
    pub(crate) async fn on(env: TestEnv) -> Self {
        let settings = env.serve_settings().await;
        let app = TestApp::start(settings.clone()).await;
        let ingest = app.token("fleet", &[Scope::Ingest, Scope::Read]).await;
        let router = RouterHandle::start(router_settings(&settings)).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Self { app, ingest, router, http }
    }

    /// Registers an instance at 127.0.0.1:`port` (TTL one hour: no heartbeats needed) and makes
    /// its service's health checks quick; returns the instance id.
    pub(crate) async fn register(&self, service: &str, version: &str, port: u16) -> String {
        let body = json!({
            "service": service, "version": version, "cluster": "east", "node": format!("east-{port}"),
            "host": "127.0.0.1", "port": port, "ttl_seconds": 3600,
        });
        let response = self
            .app
            .http
            .post(self.app.url("/api/v1/instances"))
            .bearer_auth(&self.ingest)
            .json(&body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 201, "registration of {service} {version} on {port}");
        let answer: Value = response.json().await.expect("json");
        sqlx::query(
            "UPDATE services SET check_interval_ms = 500, check_timeout_ms = 1000, fall = 2, rise = 1 WHERE name = $1",
        )
        .bind(service)
        .execute(&self.app.db)
        .await
        .expect("quick checks");
        answer["instance_id"].as_str().expect("an id").to_owned()
    }

    /// Starts an echo server per version and registers it; returns them (keep them alive).
    pub(crate) async fn echoes(&self, service: &str, versions: &[&str]) -> Vec<Echo> {
        let mut echoes = Vec::new();
        for version in versions {
            let echo = Echo::start(version).await;
            self.register(service, version, echo.port).await;
            echoes.push(echo);
        }
        self.wait_in_rotation(service, versions.len()).await;
        echoes
    }

    /// Sets the service's policy (whatever its revision) and waits until the router has it.
    pub(crate) async fn set_policy(&self, service: &str, weights: &[(&str, u8)], sticky: Sticky, route: Route) -> i64 {
        let mut tx = self.app.db.begin().await.expect("begin");
        let current =
            opsdeck::traffic::store::load(&mut *tx, service).await.expect("load").expect("the service exists");
        let change = TrafficChange {
            expected_revision: current.revision,
            weights: weights.iter().map(|(v, p)| VersionWeight { version: (*v).to_owned(), percent: *p }).collect(),
            sticky,
            route,
            reason: Some("test".to_owned()),
        };
        let policy: TrafficPolicy = opsdeck::traffic::store::write(&mut tx, service, &change, "user test")
            .await
            .expect("the policy is written");
        tx.commit().await.expect("commit");
        self.wait_revision(service, policy.revision).await;
        policy.revision
    }

    pub(crate) async fn admin(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.router.admin)).send().await.expect("the admin answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn service_status(&self, service: &str) -> Option<Value> {
        let (_, status) = self.admin("/status").await;
        status["services"].as_array()?.iter().find(|s| s["service"] == service).cloned()
    }

    pub(crate) async fn wait_in_rotation(&self, service: &str, count: usize) {
        wait_until(&format!("{count} instance(s) of {service} in the router's rotation"), PATIENCE, || async {
            let status = self.service_status(service).await?;
            let in_rotation = status["upstreams"].as_array()?.iter().filter(|u| u["in_rotation"] == true).count();
            (in_rotation == count).then_some(())
        })
        .await;
    }

    pub(crate) async fn wait_revision(&self, service: &str, revision: i64) {
        wait_until(&format!("the router to apply {service} revision {revision}"), PATIENCE, || async {
            (self.service_status(service).await?["revision"] == revision).then_some(())
        })
        .await;
    }

    /// One request through the router with this Host header.
    pub(crate) async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.router.url))
            .header("host", host)
            .send()
            .await
            .expect("the router answers")
    }
}

pub(crate) fn router_settings(settings: &ServeSettings) -> RouterSettings {
    RouterSettings::for_tests(settings.database.clone(), settings.influx.clone())
}

fn weights_of(pairs: &[&str]) -> BTreeSet<String> {
    pairs.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_request_without_traceparent_gets_one_and_one_with_it_keeps_its_trace_under_the_routers_span() {
    let stage = Stage::new().await;
    let _echo = stage.echoes("web", &["v1"]).await;

    let fresh: Value = stage.get("web", "/a").await.json().await.expect("json");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let passed: Value = stage
        .http
        .get(format!("{}/b", stage.router.url))
        .header("host", "web")
        .header("traceparent", incoming)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");

    let fresh = fresh["traceparent"].as_str().expect("the router added a traceparent");
    let parts: Vec<&str> = fresh.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[1].len(), parts[2].len()), (4, "00", 32, 16), "{fresh}");
    let passed = passed["traceparent"].as_str().expect("passed on");
    assert!(passed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {passed}");
    assert!(!passed.contains("00f067aa0ba902b7"), "the router's own span is the parent, not the caller's: {passed}");
}

#[tokio::test]
async fn a_prefix_route_strips_its_prefix_sets_forwarded_headers_and_drops_hop_by_hop_ones() {
    let stage = Stage::new().await;
    let _echo = stage.echoes("shop", &["v1"]).await;
    let route = Route { host: None, path_prefix: Some("/shop".to_owned()), strip_prefix: true };
    stage.set_policy("shop", &[("v1", 100)], Sticky::default(), route).await;

    let answer: Value = stage
        .http
        .get(format!("{}/shop/cart/items?page=2", stage.router.url))
        .header("host", "store.example.org")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");

    assert_eq!(answer["path"], "/cart/items");
    assert_eq!(answer["query"], "page=2");
    assert_eq!(answer["x_forwarded_for"], "127.0.0.1");
    assert_eq!(answer["x_forwarded_proto"], "http");
    assert_eq!(answer["x_forwarded_host"], "store.example.org");
    assert_eq!(answer["proxy_authorization"], Value::Null, "hop-by-hop headers stay with the router");
    assert_eq!(answer["x_drop_me"], Value::Null, "headers named in Connection are hop-by-hop too");
    let bare: Value = stage.get("anything", "/shop").await.json().await.expect("json");
    assert_eq!(bare["path"], "/", "the bare prefix becomes the root");
}

#[tokio::test]
async fn an_unknown_route_gets_a_404_naming_the_host_path_and_the_routable_services() {
    let stage = Stage::new().await;
    let _echo = stage.echoes("web", &["v1"]).await;

    let response = stage.get("nowhere.example.org", "/x").await;

    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "no service routes this request");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("nowhere.example.org") && detail.contains("/x") && detail.contains("web"), "{detail}");
    assert_eq!(body["services"][0]["service"], "web");
}

#[tokio::test]
async fn a_service_whose_instances_are_all_down_gets_a_503_saying_so() {
    let stage = Stage::new().await;
    let echo = stage.echoes("web", &["v1"]).await;
    drop(echo);
    wait_until("the checker to mark the only instance down", PATIENCE, || async {
        let status = stage.service_status("web").await?;
        (status["upstreams"][0]["health"] == "unhealthy").then_some(())
    })
    .await;

    let response = stage.get("web", "/").await;

    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "no healthy upstream");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("web") && detail.contains("v1: 0 of 1 healthy"), "{detail}");
}

#[tokio::test]
async fn the_same_sticky_header_value_gets_the_same_version_across_1000_requests() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["v1", "v2"]).await;
    let sticky = Sticky { header: Some("x-user".to_owned()), cookie: None };
    stage.set_policy("web", &[("v2", 50), ("v1", 50)], sticky, Route::default()).await;

    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in 0..1000 {
        let user = format!("user-{}", i % 20);
        let answer: Value = stage
            .http
            .get(format!("{}/", stage.router.url))
            .header("host", "web")
            .header("x-user", &user)
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        seen.entry(user).or_default().insert(answer["version"].as_str().expect("version").to_owned());
    }

    assert!(seen.values().all(|versions| versions.len() == 1), "each user stays on one version: {seen:?}");
    let versions: BTreeSet<&String> = seen.values().flatten().collect();
    assert_eq!(versions.len(), 2, "20 users spread over both versions: {seen:?}");
}

#[tokio::test]
async fn a_policy_flip_under_load_never_sends_a_request_to_a_version_outside_the_old_and_new_weights() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["v1", "v2", "v3"]).await;
    stage.set_policy("web", &[("v1", 100)], Sticky::default(), Route::default()).await;

    let load = Load::start(&stage, "web", 4);
    for round in 0..6 {
        let weights: &[(&str, u8)] = if round % 2 == 0 { &[("v2", 100)] } else { &[("v1", 100)] };
        stage.set_policy("web", weights, Sticky::default(), Route::default()).await;
    }
    let tally = load.finish().await;

    assert!(tally.failures.is_empty(), "no failed requests: {:?}", tally.failures);
    let versions: BTreeSet<String> = tally.versions.keys().cloned().collect();
    assert!(versions.is_subset(&weights_of(&["v1", "v2"])), "v3 never had weight: {:?}", tally.versions);
    assert!(tally.ok > 0);
}
