//! The registry and discovery on the real stack: register → discover → heartbeats stop →
//! expired → removed; round robin over healthy instances only; bad input refused unchanged.

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::{TestApp, wait_until};

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
        let response = self.register(instance(service, version, port)).await;
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

    /// Stands in for the health checker (next to come): marks an instance's health directly.
    async fn set_health(&self, id: &str, health: &str) {
        sqlx::query("UPDATE instances SET health = $2 WHERE id = $1::uuid")
            .bind(id)
            .bind(health)
            .execute(&self.app.db)
            .await
            .expect("set");
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
async fn discovery_round_robins_over_healthy_instances_only() {
    let agent = Agent::new().await;
    let a = agent.registered("web", "v1", 9001).await;
    let b = agent.registered("web", "v1", 9002).await;
    let c = agent.registered("web", "v2", 9003).await;
    let down = agent.registered("web", "v1", 9004).await;
    for id in [&a, &b, &c] {
        agent.set_health(id, "healthy").await;
    }
    agent.set_health(&down, "unhealthy").await;

    let mut firsts = Vec::new();
    for _ in 0..6 {
        let found = agent.read("/api/v1/discovery/web").await;
        let endpoints = found["endpoints"].as_array().expect("endpoints");
        assert_eq!(endpoints.len(), 3, "the unhealthy one is left out");
        assert!(endpoints.iter().all(|e| e["instance_id"] != down.as_str()));
        firsts.push(endpoints[0]["address"].as_str().expect("address").to_owned());
    }
    assert_eq!(
        firsts[0..3].iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "each call starts with another: {firsts:?}"
    );
    assert_eq!(firsts[0], firsts[3], "and the rotation wraps");

    let v2 = agent.read("/api/v1/discovery/web?version=v2").await;
    assert_eq!(v2["endpoints"].as_array().map(Vec::len), Some(1));
    assert_eq!(v2["endpoints"][0]["address"], "127.0.0.2:9003");

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
    assert_eq!(health_of(live.clone()).await.as_deref(), Some("unknown"), "the live one is untouched");

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
    assert_eq!(health_of(silent.clone()).await.as_deref(), Some("unknown"));

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
        (instance("web", "v1", 9001), 409, "already registered"),
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
