//! The HAProxy traffic provider against a real HAProxy 2.6 (started by testkit, its
//! configuration written by the provider): the canary flow the built-in router passes, weights
//! changed without a reload, instances drained before removal under load, new instances added
//! with their version's weight. Upstreams are real HTTP servers registered through the API and
//! health-checked by the app; the provider is applied as the router's watch loop applies it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use app::model::{
    identity::Scope,
    traffic::{TrafficChange, VersionWeight},
};
use opsdeck::traffic::{RoutingTable, TrafficProvider, haproxy::HaproxyProvider, store};
use serde_json::{Value, json};
use testkit::{HaproxyProcess, TestApp, wait_until};
use tokio::net::TcpListener;

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// An upstream that answers `GET /` with its version and counts what it served; `GET /held`
/// answers only once the test releases it (a request kept in flight).
pub(crate) struct VersionServer {
    pub(crate) port: u16,
    pub(crate) served: Arc<AtomicU64>,
    held: Arc<tokio::sync::Semaphore>,
}

impl VersionServer {
    pub(crate) async fn start(version: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = Arc::new(AtomicU64::new(0));
        let held = Arc::new(tokio::sync::Semaphore::new(0));
        let (counter, gate) = (served.clone(), held.clone());
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::get(move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async move { version }
                }),
            )
            .route(
                "/held",
                axum::routing::get(move || async move {
                    let _released = gate.acquire().await;
                    version
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(move |uri: axum::http::Uri| async move { format!("{version} {uri}") });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, served, held }
    }
}

/// The app, a private HAProxy and the provider that drives it.
pub(crate) struct Stage {
    pub(crate) app: TestApp,
    ingest: String,
    pub(crate) haproxy: HaproxyProcess,
    provider: HaproxyProvider,
    pub(crate) client: reqwest::Client,
    /// The app's database and InfluxDB, for an `opsdeck router` process beside it.
    pub(crate) database_url: String,
    pub(crate) influx: (String, String),
}

impl Stage {
    pub(crate) async fn new() -> Self {
        let mut database_url = String::new();
        let mut influx = (String::new(), String::new());
        let app = TestApp::spawn_with(|settings| {
            database_url = settings.database.url.to_string();
            influx = (settings.influx.url.to_string(), settings.influx.database.clone());
        })
        .await;
        let ingest = app.token("fleet", &[Scope::Ingest, Scope::Read]).await;
        let haproxy = HaproxyProcess::start().await;
        let provider = haproxy.provider(Duration::from_secs(60));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        Self { app, ingest, haproxy, provider, client, database_url, influx }
    }

    /// Registers a server of `web` and waits until the app's checker finds it healthy.
    pub(crate) async fn register(&self, version: &str, server: &VersionServer) -> String {
        self.register_in("web", version, server).await
    }

    pub(crate) async fn register_in(&self, service: &str, version: &str, server: &VersionServer) -> String {
        let body = json!({"service": service, "version": version, "cluster": "east", "node": "east-1",
                          "host": "127.0.0.1", "port": server.port, "health_check_path": "/healthz",
                          "ttl_seconds": 3600});
        let response = self.app.http.post(self.app.url("/api/v1/instances")).bearer_auth(&self.ingest).json(&body);
        let response = response.send().await.expect("answer");
        assert_eq!(response.status(), 201);
        let id = response.json::<serde_json::Value>().await.expect("json")["instance_id"]
            .as_str()
            .expect("an instance id")
            .to_owned();
        sqlx::query("UPDATE services SET check_interval_ms = 500, check_timeout_ms = 1000, fall = 2, rise = 1")
            .execute(&self.app.db)
            .await
            .expect("quick checks");
        wait_until(&format!("instance {id} to be healthy"), PATIENCE, || async {
            let health: String = sqlx::query_scalar("SELECT health FROM instances WHERE id::text = $1")
                .bind(&id)
                .fetch_one(&self.app.db)
                .await
                .ok()?;
            (health == "healthy").then_some(())
        })
        .await;
        id
    }

    pub(crate) async fn deregister(&self, id: &str) {
        let response = self.app.http.delete(self.app.url(&format!("/api/v1/instances/{id}"))).bearer_auth(&self.ingest);
        assert_eq!(response.send().await.expect("answer").status(), 204);
    }

    /// Sets web's weights as release control does (through the store, with its revision).
    pub(crate) async fn set_weights(&self, weights: &[(&str, u8)]) {
        let mut tx = self.app.db.begin().await.expect("begin");
        let current = store::load(&mut *tx, "web").await.expect("load").map_or(0, |p| p.revision);
        let change = TrafficChange {
            expected_revision: current,
            weights: weights.iter().map(|(v, p)| VersionWeight { version: (*v).to_owned(), percent: *p }).collect(),
            sticky: Default::default(),
            route: Default::default(),
            reason: Some("haproxy test".to_owned()),
        };
        store::write(&mut tx, "web", &change, "test").await.expect("the policy is written");
        tx.commit().await.expect("commit");
        self.apply().await;
    }

    /// What the watch loop does on every change: load the table, apply it.
    pub(crate) async fn apply(&self) {
        let table = RoutingTable::load(&self.app.db).await.expect("the routing table loads");
        self.provider.apply(Arc::new(table)).await.expect("HAProxy takes the table");
    }

    /// `total` requests for web through HAProxy, 8 at a time; counts the answers by body.
    pub(crate) async fn spread(&self, total: usize) -> HashMap<String, usize> {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url) = (self.client.clone(), self.haproxy.url());
            workers.spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..total / 8 {
                    let response = client.get(&url).header("host", "web").send().await.expect("HAProxy answers");
                    assert_eq!(response.status(), 200, "a request through HAProxy failed");
                    answers.push(response.text().await.expect("a body"));
                }
                answers
            });
        }
        let mut counts = HashMap::new();
        while let Some(answers) = workers.join_next().await {
            for answer in answers.expect("a worker") {
                *counts.entry(answer).or_insert(0) += 1;
            }
        }
        counts
    }

    pub(crate) async fn worker_pid(&self) -> String {
        let info = self.haproxy.runtime().send("show info").await.expect("show info");
        info.lines().find(|l| l.starts_with("Pid: ")).expect("a Pid line").to_owned()
    }

    /// web's servers in HAProxy: name → user weight.
    pub(crate) async fn servers(&self) -> HashMap<String, u16> {
        let servers = self.haproxy.runtime().servers_state().await.expect("show servers state");
        servers.into_iter().filter(|s| s.backend == "opsdeck_web").map(|s| (s.server, s.weight)).collect()
    }
}

fn share(counts: &HashMap<String, usize>, version: &str) -> f64 {
    let total: usize = counts.values().sum();
    100.0 * *counts.get(version).unwrap_or(&0) as f64 / total as f64
}

#[tokio::test]
async fn the_same_canary_flow_passes_with_the_haproxy_provider() {
    let stage = Stage::new().await;
    let (v1, v2) = (VersionServer::start("v1").await, VersionServer::start("v2").await);
    stage.register("v1", &v1).await;
    stage.register("v2", &v2).await;
    let operator = stage.app.token("operator", &[Scope::Read, Scope::Operate]).await;
    let call = |method: reqwest::Method, path: &str, body: Value| {
        let request = stage.app.http.request(method, stage.app.url(path)).bearer_auth(&operator).json(&body);
        async move {
            let response = request.send().await.expect("the app answers");
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let revision = || async {
        let (_, policy) = call(reqwest::Method::GET, "/api/v1/services/web/traffic", Value::Null).await;
        policy["revision"].as_i64().expect("a revision")
    };

    let stable = json!({"expected_revision": 0, "weights": [{"version": "v1", "percent": 100}]});
    assert_eq!(call(reqwest::Method::PUT, "/api/v1/services/web/traffic", stable).await.0, 200);
    stage.apply().await;
    let pid_with_web = stage.worker_pid().await;
    assert_eq!(stage.spread(400).await, HashMap::from([("v1".to_owned(), 400)]), "100/0 sends everything to v1");

    // The release buttons, through the API: a canary at 10 %, the next step (100 %), abort.
    let start = json!({"strategy": "canary", "target_version": "v2", "expected_revision": revision().await,
        "steps": [{"percent": 10, "hold_seconds": 600}, {"percent": 100, "hold_seconds": 600}]});
    let (status, release) = call(reqwest::Method::POST, "/api/v1/services/web/releases", start).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("a release id");
    let act = |action: &'static str| {
        let (stage, call, revision) = (&stage, &call, &revision);
        async move {
            let body = json!({"action": action, "expected_revision": revision().await});
            let (status, answer) = call(reqwest::Method::POST, &format!("/api/v1/releases/{id}/actions"), body).await;
            assert_eq!(status, 200, "{action}: {answer}");
            stage.apply().await;
        }
    };
    stage.apply().await;
    let canary = stage.spread(2_400).await;
    let at_v2 = share(&canary, "v2");
    assert!((8.0..=12.0).contains(&at_v2), "a 10 % canary got {at_v2:.2} % of 2,400 requests: {canary:?}");

    act("next_step").await;
    assert_eq!(
        stage.spread(400).await,
        HashMap::from([("v2".to_owned(), 400)]),
        "the 100 % step sends everything to v2"
    );

    act("abort").await;
    assert_eq!(
        stage.spread(400).await,
        HashMap::from([("v1".to_owned(), 400)]),
        "the abort sends everything back to v1"
    );

    assert_eq!(stage.worker_pid().await, pid_with_web, "weight changes went through the runtime API, without a reload");
    let before = stage.servers().await;
    stage.apply().await;
    assert_eq!(stage.servers().await, before, "applying the same table again changes nothing");
}

#[tokio::test]
async fn a_deregistered_instance_drains_and_leaves_haproxy_without_a_failed_request() {
    let stage = Stage::new().await;
    let (a, b) = (VersionServer::start("v1").await, VersionServer::start("v1").await);
    stage.register("v1", &a).await;
    let leaving = stage.register("v1", &b).await;
    stage.set_weights(&[("v1", 100)]).await;
    assert_eq!(stage.servers().await.len(), 2);

    // Steady load from 4 clients until told to stop, counting failures.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url) = (stage.client.clone(), stage.haproxy.url());
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = client.get(&url).header("host", "web").send().await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !response.is_ok_and(|r| r.status() == 200) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    wait_until("load to reach both servers", PATIENCE, || async {
        (a.served.load(Ordering::Relaxed) > 50 && b.served.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await;

    stage.deregister(&leaving).await;
    // The watch loop re-applies on every change and periodically; the server drains, then goes.
    wait_until("the deregistered instance to leave HAProxy", PATIENCE, || async {
        stage.apply().await;
        (!stage.servers().await.contains_key(&leaving)).then_some(())
    })
    .await;
    let served_by_b = b.served.load(Ordering::Relaxed);
    let sent_after = sent.load(Ordering::Relaxed) + 200;
    wait_until("200 more requests after the removal", PATIENCE, || async {
        (sent.load(Ordering::Relaxed) > sent_after).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}

    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {} requests some failed", sent.load(Ordering::Relaxed));
    assert_eq!(b.served.load(Ordering::Relaxed), served_by_b, "the removed instance got requests after removal");
    assert_eq!(stage.servers().await.len(), 1);
}

#[tokio::test]
async fn a_new_instance_joins_haproxy_with_its_versions_weight() {
    let stage = Stage::new().await;
    let (a, b) = (VersionServer::start("v1").await, VersionServer::start("v1").await);
    let canary = VersionServer::start("v2").await;
    let first = stage.register("v1", &a).await;
    stage.register("v2", &canary).await;
    stage.set_weights(&[("v1", 90), ("v2", 10)]).await;

    let second = stage.register("v1", &b).await;
    stage.apply().await;

    let servers = stage.servers().await;
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert_eq!(servers[&first], servers[&second], "v1's two instances weigh the same");
    let counts = stage.spread(800).await;
    assert!(b.served.load(Ordering::Relaxed) > 250, "the new instance serves its part: {counts:?}");
    let at_v2 = share(&counts, "v2");
    assert!((8.0..=12.0).contains(&at_v2), "the canary keeps 10 % with a third instance: {at_v2:.2} %");
}

#[tokio::test]
async fn a_departed_instance_with_a_request_in_flight_drains_and_is_deleted_only_when_it_ends() {
    let stage = Stage::new().await;
    let (a, b) = (VersionServer::start("v1").await, VersionServer::start("v1").await);
    stage.register("v1", &a).await;
    let leaving = stage.register("v1", &b).await;
    stage.set_weights(&[("v1", 100)]).await;
    // Round robin puts one of two held requests on each server.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let request = stage.client.get(format!("{}/held", stage.haproxy.url())).header("host", "web").send();
            tokio::spawn(request)
        })
        .collect();
    wait_until("a request held on the leaving server", PATIENCE, || async {
        let sessions = stage.haproxy.runtime().current_sessions().await.ok()?;
        (sessions.get(&("opsdeck_web".to_owned(), leaving.clone())) == Some(&1)).then_some(())
    })
    .await;

    stage.deregister(&leaving).await;
    stage.apply().await;
    let state = stage.haproxy.runtime().servers_state().await.expect("show servers state");
    let draining = state.iter().find(|s| s.server == leaving).expect("still there while its request runs");
    assert!(draining.draining(), "it drains: no new requests ({draining:?})");
    assert_eq!(stage.spread(40).await, HashMap::from([("v1".to_owned(), 40)]));
    assert_eq!(b.served.load(Ordering::Relaxed), 0, "the draining server got no new requests");

    a.held.add_permits(1);
    b.held.add_permits(1);
    for request in held {
        let answer = request.await.expect("the request task").expect("HAProxy answers the held request");
        assert_eq!(answer.status(), 200, "the request in flight finished normally");
    }
    wait_until("the drained server to be deleted once its request ended", PATIENCE, || async {
        stage.apply().await;
        (!stage.servers().await.contains_key(&leaving)).then_some(())
    })
    .await;
}
