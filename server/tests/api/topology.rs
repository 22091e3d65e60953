//! The registry and discovery on the real stack: register → discover → heartbeats stop →
//! expired → removed; round robin over healthy instances only; bad input refused unchanged.

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::{TargetServer, TestApp, wait_until};

struct Agent {
    app: TestApp,
    ingest: String,
    reader: String,
}

impl Agent {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        let reader = app.token("reader", &[Scope::Read]).await;
        Self { app, ingest, reader }
    }

    async fn register(&self, body: Value) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url("/api/v1/instances"))
            .bearer_auth(&self.ingest)
            .json(&body)
            .send()
            .await
            .expect("answer")
    }

    async fn registered(&self, service: &str, version: &str, port: u16) -> String {
        self.register_body(instance(service, version, port)).await
    }

    /// Registers an instance at 127.0.0.1 (where test targets listen).
    async fn registered_at(&self, service: &str, version: &str, port: u16) -> String {
        let mut body = instance(service, version, port);
        body["host"] = json!("127.0.0.1");
        self.register_body(body).await
    }

    async fn register_body(&self, body: Value) -> String {
        let response = self.register(body).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        body["instance_id"].as_str().expect("id").to_owned()
    }

    async fn read(&self, path: &str) -> Value {
        let response = self.app.http.get(self.app.url(path)).bearer_auth(&self.reader).send().await.expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("json")
    }

    async fn instance_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&self.app.db).await.expect("count")
    }

    /// Creates the service to be checked every 500 ms, down after 2 failures, up after 2
    /// successes (call it before registering its instances).
    async fn check_quickly(&self, service: &str) {
        sqlx::query(
            "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ($1, 500, 300, 2, 2)",
        )
        .bind(service)
        .execute(&self.app.db)
        .await
        .expect("settings");
    }

    /// Waits until the instance has `health`; returns the reason stored with it.
    async fn wait_health(&self, id: &str, health: &str) -> String {
        wait_until(&format!("instance {id} to be {health}"), Duration::from_secs(20), || async {
            let (now, reason): (String, Option<String>) =
                sqlx::query_as("SELECT health, health_reason FROM instances WHERE id = $1::uuid")
                    .bind(id)
                    .fetch_one(&self.app.db)
                    .await
                    .ok()?;
            (now == health).then(|| reason.unwrap_or_default())
        })
        .await
    }
}

fn instance(service: &str, version: &str, port: u16) -> Value {
    json!({"service": service, "version": version, "cluster": "eu-1", "node": "node-a", "host": "127.0.0.2", "port": port})
}

#[tokio::test]
async fn a_registration_creates_its_cluster_node_service_and_version_and_is_listed() {
    let agent = Agent::new().await;
    let id = agent.registered("payments", "v2.3.1", 9001).await;
    let listed = agent.read("/api/v1/instances?service=payments").await;
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["cluster"], "eu-1");
    assert_eq!(listed[0]["node"], "node-a");
    assert_eq!(listed[0]["version"], "v2.3.1");
    assert_eq!(listed[0]["health"], "unknown", "not checked yet");
    assert_eq!(listed[0]["ttl_seconds"], 30);
}

#[tokio::test]
async fn metadata_with_extreme_numbers_reads_back_as_it_was_registered() {
    let agent = Agent::new().await;
    let mut body = instance("payments", "v1", 9001);
    body["metadata"] = json!({"largest": f64::MAX, "smallest": -f64::MAX, "tiny": 5e-324, "zone": "a"});
    agent.register_body(body.clone()).await;
    let listed = agent.read("/api/v1/instances").await;
    assert_eq!(listed[0]["metadata"], body["metadata"], "jsonb prints numbers in full; they must read back");
    agent.read("/api/v1/services/payments/health").await;
}

#[tokio::test]
async fn discovery_round_robins_over_healthy_instances_only() {
    let agent = Agent::new().await;
    agent.check_quickly("web").await;
    let targets = [TargetServer::start().await, TargetServer::start().await, TargetServer::start().await];
    for (target, version) in targets.iter().zip(["v1", "v1", "v2"]) {
        agent.registered_at("web", version, target.port).await;
    }
    let dead = TargetServer::start().await;
    let down = agent.registered_at("web", "v1", dead.port).await;
    drop(dead);

    // The checker finds three healthy and one that refuses connections.
    let endpoints = |found: &Value| found["endpoints"].as_array().cloned().unwrap_or_default();
    wait_until("three healthy endpoints", Duration::from_secs(20), || async {
        (endpoints(&agent.read("/api/v1/discovery/web").await).len() == 3).then_some(())
    })
    .await;
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let found = endpoints(&agent.read("/api/v1/discovery/web").await);
        assert_eq!(found.len(), 3, "the unhealthy one is left out");
        assert!(found.iter().all(|e| e["instance_id"] != down.as_str()));
        firsts.push(found[0]["address"].as_str().expect("address").to_owned());
    }
    assert_eq!(
        firsts[0..3].iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "each call starts with another: {firsts:?}"
    );
    assert_eq!(firsts[0], firsts[3], "and the rotation wraps");

    let v2 = agent.read("/api/v1/discovery/web?version=v2").await;
    assert_eq!(v2["endpoints"].as_array().map(Vec::len), Some(1));
    assert_eq!(v2["endpoints"][0]["address"], format!("127.0.0.1:{}", targets[2].port));

    let unknown = agent
        .app
        .http
        .get(agent.app.url("/api/v1/discovery/nothing"))
        .bearer_auth(&agent.reader)
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_checker_marks_a_failing_target_down_with_its_reason_and_back_up_when_it_recovers() {
    let agent = Agent::new().await;
    agent.check_quickly("api").await;
    let mut target = TargetServer::start().await;
    let id = agent.registered_at("api", "v1", target.port).await;
    agent.wait_health(&id, "healthy").await;

    target.answer(503);
    let reason = agent.wait_health(&id, "unhealthy").await;
    assert!(reason.contains("HTTP 503") && reason.contains("target says hello"), "{reason}");

    target.answer(200);
    agent.wait_health(&id, "healthy").await;

    target.stop().await;
    let reason = agent.wait_health(&id, "unhealthy").await;
    assert!(reason.contains("cannot connect"), "{reason}");
    target.restart().await;
    agent.wait_health(&id, "healthy").await;

    let changes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT from_health, to_health, reason FROM instance_health_changes WHERE instance_id = $1::uuid ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&agent.app.db)
    .await
    .expect("history");
    let path: Vec<_> = changes.iter().map(|(from, to, _)| format!("{from}→{to}")).collect();
    assert_eq!(
        path,
        ["unknown→healthy", "healthy→unhealthy", "unhealthy→healthy", "healthy→unhealthy", "unhealthy→healthy"]
    );

    // Every probe went to InfluxDB as well.
    wait_until("probe results in InfluxDB", Duration::from_secs(10), || async {
        let results = agent
            .app
            .influx
            .query(&format!("SELECT count(ok) FROM health_probe WHERE instance = '{id}'"))
            .await
            .ok()?;
        let count = results.first()?.series.first()?.f64_column("count")?.first().copied().flatten()?;
        (count >= 5.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_instance_whose_heartbeats_stop_expires_and_is_removed_while_a_live_one_stays() {
    let agent = Agent::new().await;
    let silent = agent.registered("api", "v1", 9001).await;
    let live = agent.registered("api", "v1", 9002).await;
    // Age the silent one's last heartbeat past its 30 s TTL (instead of waiting 30 s).
    sqlx::query("UPDATE instances SET last_heartbeat_at = now() - interval '31 seconds' WHERE id = $1::uuid")
        .bind(&silent)
        .execute(&agent.app.db)
        .await
        .expect("age");
    let health_of = |id: String| {
        let agent = &agent;
        async move {
            let list = agent.read("/api/v1/instances").await;
            list.as_array()
                .and_then(|l| l.iter().find(|i| i["id"] == id.as_str()))
                .map(|i| i["health"].as_str().unwrap_or_default().to_owned())
        }
    };
    wait_until("the expiry pass to mark it", Duration::from_secs(10), || async {
        (health_of(silent.clone()).await.as_deref() == Some("expired")).then_some(())
    })
    .await;
    assert_ne!(health_of(live.clone()).await.as_deref(), Some("expired"), "the live one is not expired");

    // A heartbeat brings an expired (not yet removed) instance back.
    let renewed = agent
        .app
        .http
        .put(agent.app.url(&format!("/api/v1/instances/{silent}/heartbeat")))
        .bearer_auth(&agent.ingest)
        .send()
        .await
        .expect("answer");
    assert_eq!(renewed.status(), 204);
    assert_ne!(health_of(silent.clone()).await.as_deref(), Some("expired"), "back from expired");

    // Silent again, and expired for longer than the grace period: removed.
    sqlx::query("UPDATE instances SET health = 'expired', health_changed_at = now() - interval '301 seconds' WHERE id = $1::uuid")
        .bind(&silent)
        .execute(&agent.app.db)
        .await
        .expect("age");
    wait_until("the expiry pass to remove it", Duration::from_secs(10), || async {
        health_of(silent.clone()).await.is_none().then_some(())
    })
    .await;
    let gone = agent
        .app
        .http
        .put(agent.app.url(&format!("/api/v1/instances/{silent}/heartbeat")))
        .bearer_auth(&agent.ingest)
        .send()
        .await
        .expect("answer");
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("register again")), "{body}");
}

#[tokio::test]
async fn deregistration_removes_at_once() {
    let agent = Agent::new().await;
    let id = agent.registered("api", "v1", 9001).await;
    let url = agent.app.url(&format!("/api/v1/instances/{id}"));
    assert_eq!(agent.app.http.delete(&url).bearer_auth(&agent.ingest).send().await.expect("answer").status(), 204);
    assert_eq!(agent.app.http.delete(&url).bearer_auth(&agent.ingest).send().await.expect("answer").status(), 404);
    assert_eq!(agent.instance_count().await, 0);
}

#[tokio::test]
async fn bad_registrations_get_4xx_naming_the_field_and_change_nothing() {
    let agent = Agent::new().await;
    agent.registered("web", "v1", 9001).await;
    let before = agent.instance_count().await;
    let with = |field: &str, value: Value| {
        let mut body = instance("web", "v1", 9100);
        body[field] = value;
        body
    };
    let cases = [
        (with("port", json!(70000)), 422, "port"),
        (with("port", json!(0)), 422, "port"),
        (with("service", json!("")), 422, "service"),
        (with("node", json!("x".repeat(200))), 422, "node"),
        (with("ttl_seconds", json!(0)), 422, "ttl_seconds"),
        (with("unexpected", json!(true)), 422, "unexpected"),
        (instance("api", "v1", 9001), 409, "already registered"),
    ];
    for (body, status, mention) in cases {
        let response = agent.register(body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.expect("a JSON error");
        assert!(error["detail"].as_str().is_some_and(|d| d.contains(mention)), "{mention}: {error}");
    }
    let malformed = agent
        .app
        .http
        .post(agent.app.url("/api/v1/instances"))
        .bearer_auth(&agent.ingest)
        .header("content-type", "application/json")
        .body("{\"service\": ")
        .send()
        .await
        .expect("answer");
    assert_eq!(malformed.status(), 400);
    assert_eq!(agent.instance_count().await, before, "no refused request changed anything");
}

#[tokio::test]
async fn only_ingest_may_register_and_ingest_may_not_list() {
    let agent = Agent::new().await;
    let as_reader = agent
        .app
        .http
        .post(agent.app.url("/api/v1/instances"))
        .bearer_auth(&agent.reader)
        .json(&instance("web", "v1", 9001))
        .send()
        .await
        .expect("answer");
    assert_eq!(as_reader.status(), 403);
    let listing =
        agent.app.http.get(agent.app.url("/api/v1/instances")).bearer_auth(&agent.ingest).send().await.expect("answer");
    assert_eq!(listing.status(), 403);
}

#[tokio::test]
async fn a_restart_registering_the_same_address_again_replaces_the_old_registration() {
    let agent = Agent::new().await;
    let before = agent.registered("web", "v1", 9001).await;
    let after = agent.registered("web", "v1", 9001).await;
    assert_ne!(before, after, "a new lease");
    let listed = agent.read("/api/v1/instances").await;
    let ids: Vec<_> = listed.as_array().expect("list").iter().map(|i| i["id"].as_str().unwrap_or_default()).collect();
    assert_eq!(ids, [after.as_str()], "the old one is gone");
    let history: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM events ORDER BY id").fetch_all(&agent.app.db).await.expect("events");
    assert_eq!(history, ["instance_registered", "instance_removed", "instance_registered"]);
}

#[tokio::test]
async fn a_discovery_watch_returns_as_soon_as_the_healthy_set_changes_and_otherwise_when_its_wait_runs_out() {
    let agent = Agent::new().await;
    agent.check_quickly("web").await;
    let mut target = TargetServer::start().await;
    let id = agent.registered_at("web", "v1", target.port).await;
    agent.wait_health(&id, "healthy").await;
    let current = agent.read("/api/v1/discovery/web").await;
    let index = current["index"].as_str().expect("an index").to_owned();
    assert_eq!(current["endpoints"].as_array().map(Vec::len), Some(1));

    // Nothing changes: the watch answers the same set when its wait runs out.
    let unchanged = agent.read(&format!("/api/v1/discovery/web?index={index}&wait=1s")).await;
    assert_eq!(unchanged["index"], index.as_str());

    // The instance goes down while a watch is waiting: it answers with the new set.
    let watch = {
        let (http, url, reader) = (
            agent.app.http.clone(),
            agent.app.url(&format!("/api/v1/discovery/web?index={index}&wait=60s")),
            agent.reader.clone(),
        );
        tokio::spawn(
            async move { http.get(url).bearer_auth(reader).send().await.expect("answer").json::<Value>().await },
        )
    };
    target.stop().await;
    let changed = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("the watch answers on the change, well before its 60 s wait")
        .expect("task")
        .expect("json");
    assert_ne!(changed["index"], index.as_str());
    assert_eq!(changed["endpoints"].as_array().map(Vec::len), Some(0), "{changed}");

    let bad = agent
        .app
        .http
        .get(agent.app.url("/api/v1/discovery/web?index=x&wait=soon"))
        .bearer_auth(&agent.reader)
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn when_every_instance_on_a_node_fails_the_topology_names_the_node_as_the_one_root_cause() {
    let agent = Agent::new().await;
    agent.check_quickly("web").await;
    agent.check_quickly("api").await;
    let mut targets = [TargetServer::start().await, TargetServer::start().await, TargetServer::start().await];
    let mut ids = Vec::new();
    for (target, (service, node)) in targets.iter().zip([("web", "node-a"), ("api", "node-a"), ("web", "node-b")]) {
        let mut body = instance(service, "v1", target.port);
        body["host"] = json!("127.0.0.1");
        body["node"] = json!(node);
        ids.push(agent.register_body(body).await);
    }
    for id in &ids {
        agent.wait_health(id, "healthy").await;
    }
    // node-a "loses power": both of its instances stop answering.
    targets[0].stop().await;
    targets[1].stop().await;
    agent.wait_health(&ids[0], "unhealthy").await;
    agent.wait_health(&ids[1], "unhealthy").await;

    let view = agent.read("/api/v1/topology").await;
    let node_a = &view["clusters"][0]["nodes"][0];
    assert_eq!(node_a["name"], "node-a");
    assert_eq!(node_a["health"], "down");
    for group in node_a["groups"].as_array().expect("groups") {
        assert_eq!(group["cells"][0]["root_cause"], "down because node eu-1/node-a is down", "{group}");
    }
    assert_eq!(view["clusters"][0]["nodes"][1]["health"], "healthy");
    assert_eq!(view["clusters"][0]["health"], "degraded");
    let attention = view["attention"].as_array().expect("attention");
    assert_eq!(attention[0]["kind"], "node_down", "one root cause first: {attention:#?}");
    assert_eq!(attention.iter().filter(|a| a["kind"] == "node_down").count(), 1);
    let api = attention.iter().find(|a| a["title"] == "Service api is down").expect("api is down");
    assert!(api["detail"].as_str().is_some_and(|d| d.contains("because node eu-1/node-a is down")), "{api}");
    let web = view["services"].as_array().expect("services").iter().find(|s| s["name"] == "web").expect("web");
    assert_eq!(web["health"], "degraded");

    // The service page's data: instances, the state changes with reasons.
    let detail = agent.read("/api/v1/services/web/health").await;
    assert_eq!(detail["health"], "degraded");
    assert_eq!(detail["instances"].as_array().map(Vec::len), Some(2));
    let changes = detail["changes"].as_array().expect("changes");
    assert_eq!(changes[0]["to"], "unhealthy", "newest first");
    assert!(changes[0]["reason"].as_str().is_some_and(|r| r.contains("cannot connect")));
}
