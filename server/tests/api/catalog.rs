//! The topology catalog on the real stack: clusters, nodes and services created, edited and
//! removed through the API, each change audited and pushed as a `topology_edited` event;
//! refusals (409/404/422/400/403) change nothing; a tuned health check applies at once.

use std::time::{Duration, Instant};

use app::model::identity::{Role, Scope};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{SseClient, SseMessage, TargetServer, TestApp, wait_until};

const SOON: Duration = Duration::from_secs(10);

struct Catalog {
    app: TestApp,
    operator: String,
    reader: String,
    ingest: String,
}

impl Catalog {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let operator = app.token("ops", &[Scope::Operate]).await;
        let reader = app.token("screen", &[Scope::Read]).await;
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        Self { app, operator, reader, ingest }
    }

    /// Sends a request with `token`; returns the status and the JSON body (`Null` if none).
    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.app.http.request(method, self.app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("answer");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// As the operator.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.operator, method, path, body).await
    }

    /// A read that must succeed.
    async fn read(&self, path: &str) -> Value {
        let (status, body) = self.call_as(&self.reader, Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn events(&self) -> SseClient {
        SseClient::connect(&self.app.url("/api/v1/events"), &self.reader, None).await
    }

    /// Registers an instance of `service` on node-a in eu-1; returns its id.
    async fn register(&self, service: &str, version: &str, port: u16) -> String {
        let body = json!({"service": service, "version": version, "cluster": "eu-1", "node": "node-a",
                          "host": "127.0.0.1", "port": port});
        let (status, answer) = self.call_as(&self.ingest, Method::POST, "/api/v1/instances", Some(body)).await;
        assert_eq!(status, 201, "{answer}");
        answer["instance_id"].as_str().expect("id").to_owned()
    }

    async fn deregister(&self, id: &str) {
        let (status, _) = self.call_as(&self.ingest, Method::DELETE, &format!("/api/v1/instances/{id}"), None).await;
        assert_eq!(status, 204);
    }

    /// The catalog's audit rows, oldest first: (actor, target, detail, before, after).
    async fn audit(&self) -> Vec<(String, String, String, Option<Value>, Option<Value>)> {
        sqlx::query_as(
            "SELECT actor_name, target, detail, before, after FROM audit_log WHERE action = 'topology.change' ORDER BY id",
        )
        .fetch_all(&self.app.db)
        .await
        .expect("audit rows")
    }

    /// Everything the catalog stores, as one comparable value.
    async fn stored(&self) -> String {
        sqlx::query_scalar(
            r#"SELECT json_build_object(
                   'clusters', (SELECT json_agg(c ORDER BY c.id) FROM clusters c),
                   'nodes', (SELECT json_agg(n ORDER BY n.id) FROM nodes n),
                   'services', (SELECT json_agg(s ORDER BY s.id) FROM services s),
                   'versions', (SELECT json_agg(v ORDER BY v.id) FROM service_versions v),
                   'instances', (SELECT json_agg(i.id ORDER BY i.id) FROM instances i),
                   'audited', (SELECT count(*) FROM audit_log WHERE action = 'topology.change'),
                   'announced', (SELECT count(*) FROM events WHERE kind = 'topology_edited'))::text"#,
        )
        .fetch_one(&self.app.db)
        .await
        .expect("snapshot")
    }
}

/// Waits for the next `topology_edited` event and checks what it says.
async fn edited(stream: &mut SseClient, object: &str, name: &str, cluster: Option<&str>, edit: &str) -> SseMessage {
    let seen = stream.next_matching(&format!("{object} {name} {edit}"), SOON, |m| m.event == "topology_edited").await;
    let data = seen.json();
    assert_eq!(
        (data["object"].as_str(), data["name"].as_str(), data["cluster"].as_str(), data["edit"].as_str()),
        (Some(object), Some(name), cluster, Some(edit)),
        "{data}"
    );
    seen
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn clusters_are_created_listed_described_and_removed_each_change_audited_and_announced() {
    let catalog = Catalog::new().await;
    let mut stream = catalog.events().await;

    let (status, created) =
        catalog.call(Method::POST, "/api/v1/clusters", Some(json!({"name": "eu-1", "description": "Frankfurt"}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["name"].as_str(), created["description"].as_str()), (Some("eu-1"), Some("Frankfurt")));
    assert_eq!((created["nodes"].as_i64(), created["instances"].as_i64()), (Some(0), Some(0)));
    edited(&mut stream, "cluster", "eu-1", None, "created").await;

    let instance = catalog.register("web", "v1", 9001).await;
    let listed = catalog.read("/api/v1/clusters").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!((listed[0]["nodes"].as_i64(), listed[0]["live_instances"].as_i64()), (Some(1), Some(1)), "{listed}");

    let (status, described) =
        catalog.call(Method::PATCH, "/api/v1/clusters/eu-1", Some(json!({"description": "Frankfurt, rack 4"}))).await;
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["description"], "Frankfurt, rack 4");
    edited(&mut stream, "cluster", "eu-1", None, "updated").await;

    let (status, refused) = catalog.call(Method::DELETE, "/api/v1/clusters/eu-1", None).await;
    assert_eq!(status, 409);
    assert!(
        detail(&refused).contains("1 live instance") && detail(&refused).contains("deregister them first"),
        "{refused}"
    );

    catalog.deregister(&instance).await;
    let (status, _) = catalog.call(Method::DELETE, "/api/v1/clusters/eu-1", None).await;
    assert_eq!(status, 204);
    edited(&mut stream, "cluster", "eu-1", None, "deleted").await;
    assert_eq!(catalog.read("/api/v1/clusters").await, json!([]));
    let nodes_left: i64 = sqlx::query_scalar("SELECT count(*) FROM nodes").fetch_one(&catalog.app.db).await.expect("n");
    assert_eq!(nodes_left, 0, "its nodes went with it");

    let audit = catalog.audit().await;
    let summary: Vec<_> =
        audit.iter().map(|(actor, target, done, ..)| (actor.as_str(), target.as_str(), done.as_str())).collect();
    assert_eq!(
        summary,
        [("ops", "cluster eu-1", "created"), ("ops", "cluster eu-1", "updated"), ("ops", "cluster eu-1", "deleted")]
    );
    let (_, _, _, before, after) = &audit[1];
    assert_eq!(before.as_ref().map(|b| b["description"].clone()), Some(json!("Frankfurt")));
    assert_eq!(after.as_ref().map(|a| a["description"].clone()), Some(json!("Frankfurt, rack 4")));
    assert!(audit[2].4.is_none(), "nothing after a removal");
}

#[tokio::test]
async fn nodes_are_created_edited_and_removed_within_their_cluster() {
    let catalog = Catalog::new().await;
    let mut stream = catalog.events().await;
    let node = json!({"name": "node-b", "address": "10.0.0.7", "description": "spare"});
    let (status, _) = catalog.call(Method::POST, "/api/v1/clusters/eu-1/nodes", Some(node.clone())).await;
    assert_eq!(status, 404, "no such cluster yet");
    catalog.call(Method::POST, "/api/v1/clusters", Some(json!({"name": "eu-1"}))).await;
    edited(&mut stream, "cluster", "eu-1", None, "created").await;

    let (status, created) = catalog.call(Method::POST, "/api/v1/clusters/eu-1/nodes", Some(node.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["cluster"].as_str(), created["address"].as_str()), (Some("eu-1"), Some("10.0.0.7")));
    edited(&mut stream, "node", "node-b", Some("eu-1"), "created").await;
    let (status, _) = catalog.call(Method::POST, "/api/v1/clusters/eu-1/nodes", Some(node)).await;
    assert_eq!(status, 409, "the name is taken in this cluster");

    let (status, changed) = catalog
        .call(
            Method::PATCH,
            "/api/v1/clusters/eu-1/nodes/node-b",
            Some(json!({"address": null, "description": "rack 9"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!((changed["address"].clone(), changed["description"].clone()), (Value::Null, json!("rack 9")));
    edited(&mut stream, "node", "node-b", Some("eu-1"), "updated").await;
    let listed = catalog.read("/api/v1/clusters/eu-1/nodes").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["description"], "rack 9", "{listed}");

    let (status, _) = catalog.call(Method::DELETE, "/api/v1/clusters/eu-1/nodes/node-b", None).await;
    assert_eq!(status, 204);
    edited(&mut stream, "node", "node-b", Some("eu-1"), "deleted").await;
    assert_eq!(catalog.read("/api/v1/clusters/eu-1/nodes").await, json!([]));
    let (status, _) = catalog.call(Method::DELETE, "/api/v1/clusters/eu-1/nodes/node-b", None).await;
    assert_eq!(status, 404, "already gone");

    let targets: Vec<_> =
        catalog.audit().await.into_iter().map(|(_, target, done, ..)| format!("{target} {done}")).collect();
    assert_eq!(
        targets,
        ["cluster eu-1 created", "node eu-1/node-b created", "node eu-1/node-b updated", "node eu-1/node-b deleted"]
    );
    let (_, _, _, before, after) = &catalog.audit().await[2];
    assert_eq!(before.as_ref().map(|b| b["address"].clone()), Some(json!("10.0.0.7")));
    assert_eq!(after.as_ref().map(|a| a["address"].clone()), Some(Value::Null));
}

#[tokio::test]
async fn services_are_created_tuned_and_removed_with_their_versions_and_expired_instances() {
    let catalog = Catalog::new().await;
    let mut stream = catalog.events().await;
    let (status, created) = catalog
        .call(Method::POST, "/api/v1/services", Some(json!({"name": "web", "description": "shop", "fall": 5})))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["fall"].as_i64(), created["rise"].as_i64(), created["check_interval_ms"].as_i64()),
        (Some(5), Some(2), Some(5000)),
        "asked for fall, defaults for the rest"
    );
    assert_eq!(created["health_check_path"], "/healthz");
    edited(&mut stream, "service", "web", None, "created").await;

    let (first, second) = (catalog.register("web", "v1", 9001).await, catalog.register("web", "v2", 9002).await);
    let shown = catalog.read("/api/v1/services/web").await;
    assert_eq!(shown["versions"], json!(["v1", "v2"]));
    assert_eq!((shown["instances"].as_i64(), shown["live_instances"].as_i64()), (Some(2), Some(2)));
    let registered_only = catalog.read("/api/v1/services").await;
    assert_eq!(registered_only.as_array().map(Vec::len), Some(1), "{registered_only}");

    let tune = json!({"check_interval_ms": 10000, "health_check_path": "/ready", "description": null});
    let (status, tuned) = catalog.call(Method::PATCH, "/api/v1/services/web", Some(tune)).await;
    assert_eq!(status, 200, "{tuned}");
    assert_eq!(
        (tuned["check_interval_ms"].as_i64(), tuned["health_check_path"].as_str(), tuned["fall"].as_i64()),
        (Some(10000), Some("/ready"), Some(5)),
        "what was not sent stays"
    );
    assert_eq!(tuned["description"], Value::Null, "null clears");
    edited(&mut stream, "service", "web", None, "updated").await;
    let stored: (i32, String) =
        sqlx::query_as("SELECT check_interval_ms, health_check_path FROM services WHERE name = 'web'")
            .fetch_one(&catalog.app.db)
            .await
            .expect("row");
    assert_eq!(stored, (10000, "/ready".to_owned()));

    let (status, refused) = catalog.call(Method::DELETE, "/api/v1/services/web", None).await;
    assert_eq!(status, 409);
    assert!(
        detail(&refused).contains("2 live instances") && detail(&refused).contains("deregister them first"),
        "{refused}"
    );

    // Expired instances don't hold it back; they go with it.
    catalog.deregister(&first).await;
    sqlx::query("UPDATE instances SET health = 'expired' WHERE id = $1::uuid")
        .bind(&second)
        .execute(&catalog.app.db)
        .await
        .expect("expire");
    let (status, _) = catalog.call(Method::DELETE, "/api/v1/services/web", None).await;
    assert_eq!(status, 204);
    edited(&mut stream, "service", "web", None, "deleted").await;
    let (status, _) = catalog.call_as(&catalog.reader, Method::GET, "/api/v1/services/web", None).await;
    assert_eq!(status, 404);
    let left: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM instances), (SELECT count(*) FROM service_versions)")
            .fetch_one(&catalog.app.db)
            .await
            .expect("counts");
    assert_eq!(left, (0, 0), "its expired instance and versions went with it");

    let audit = catalog.audit().await;
    let done: Vec<_> = audit.iter().map(|(_, target, done, ..)| format!("{target} {done}")).collect();
    assert_eq!(done, ["service web created", "service web updated", "service web deleted"]);
    let (_, _, _, before, after) = &audit[1];
    assert_eq!(before.as_ref().map(|b| b["check_interval_ms"].clone()), Some(json!(5000)));
    assert_eq!(after.as_ref().map(|a| a["check_interval_ms"].clone()), Some(json!(10000)));
}

#[tokio::test]
async fn refused_changes_get_409_404_422_or_400_naming_the_problem_and_change_nothing() {
    let catalog = Catalog::new().await;
    catalog.register("web", "v1", 9001).await;
    let before = catalog.stored().await;
    let long = "x".repeat(501);
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (Method::POST, "/api/v1/clusters", json!({"name": "eu-1"}), 409, "already exists"),
        (Method::POST, "/api/v1/clusters", json!({"name": "EU 1"}), 422, "name:"),
        (Method::POST, "/api/v1/clusters", json!({"name": "eu-2", "colour": "red"}), 422, "colour"),
        (Method::POST, "/api/v1/clusters", json!({"name": "eu-2", "description": long}), 422, "description:"),
        (Method::PATCH, "/api/v1/clusters/nowhere", json!({"description": "x"}), 404, "nowhere"),
        (Method::PATCH, "/api/v1/clusters/eu-1", json!({}), 422, "description:"),
        (Method::PATCH, "/api/v1/clusters/eu-1", json!({"description": "bell\u{7}"}), 422, "description:"),
        (Method::DELETE, "/api/v1/clusters/eu-1", Value::Null, 409, "deregister them first"),
        (Method::DELETE, "/api/v1/clusters/NOPE", Value::Null, 404, "NOPE"),
        (Method::POST, "/api/v1/clusters/nowhere/nodes", json!({"name": "n1"}), 404, "nowhere"),
        (Method::POST, "/api/v1/clusters/eu-1/nodes", json!({"name": "node-a"}), 409, "already has a node"),
        (Method::POST, "/api/v1/clusters/eu-1/nodes", json!({"name": "n1", "address": "a b"}), 422, "address:"),
        (Method::PATCH, "/api/v1/clusters/eu-1/nodes/ghost", json!({"description": "x"}), 404, "ghost"),
        (Method::PATCH, "/api/v1/clusters/eu-1/nodes/node-a", json!({"name": "node-z"}), 422, "name"),
        (Method::DELETE, "/api/v1/clusters/eu-1/nodes/node-a", Value::Null, 409, "1 live instance"),
        (Method::POST, "/api/v1/services", json!({"name": "web"}), 409, "already exists"),
        (Method::POST, "/api/v1/services", json!({"name": "api", "check_interval_ms": 100}), 422, "check_interval_ms:"),
        (Method::POST, "/api/v1/services", json!({"name": "api", "fall": 0}), 422, "fall:"),
        (
            Method::POST,
            "/api/v1/services",
            json!({"name": "api", "health_check_path": "ready"}),
            422,
            "health_check_path:",
        ),
        (Method::PATCH, "/api/v1/services/web", json!({"check_interval_ms": 1000}), 422, "check_timeout_ms:"),
        (Method::PATCH, "/api/v1/services/web", json!({"check_timeout_ms": "fast"}), 422, "check_timeout_ms"),
        (Method::PATCH, "/api/v1/services/web", json!({"rise": 101}), 422, "rise:"),
        (Method::PATCH, "/api/v1/services/web", json!({"description": "a\u{0}b"}), 422, "description:"),
        (Method::PATCH, "/api/v1/services/ghost", json!({"fall": 2}), 404, "ghost"),
        (Method::DELETE, "/api/v1/services/web", Value::Null, 409, "1 live instance"),
        (Method::DELETE, "/api/v1/services/ghost", Value::Null, 404, "ghost"),
    ];
    for (method, path, body, status, mention) in cases {
        let sent = (!body.is_null()).then(|| body.clone());
        let (got, error) = catalog.call(method.clone(), path, sent).await;
        assert_eq!(got, status, "{method} {path} {body}: {error}");
        assert!(detail(&error).contains(mention), "{method} {path} {body}: {mention:?} in {error}");
    }
    for path in ["/api/v1/clusters", "/api/v1/services", "/api/v1/services/web"] {
        let malformed = catalog
            .app
            .http
            .request(if path.ends_with("web") { Method::PATCH } else { Method::POST }, catalog.app.url(path))
            .bearer_auth(&catalog.operator)
            .header("content-type", "application/json")
            .body("{\"description\": ")
            .send()
            .await
            .expect("answer");
        assert_eq!(malformed.status(), 400, "{path}");
    }
    assert_eq!(catalog.stored().await, before, "no refused request changed anything");
}

#[tokio::test]
async fn only_operators_may_change_the_catalog_and_their_changes_are_audited_under_their_name() {
    let catalog = Catalog::new().await;
    catalog.call(Method::POST, "/api/v1/services", Some(json!({"name": "web"}))).await;
    let before = catalog.stored().await;
    for token in [&catalog.reader, &catalog.ingest] {
        for (method, path, body) in [
            (Method::POST, "/api/v1/clusters", Some(json!({"name": "eu-9"}))),
            (Method::PATCH, "/api/v1/services/web", Some(json!({"fall": 1}))),
            (Method::DELETE, "/api/v1/services/web", None),
        ] {
            let (status, _) = catalog.call_as(token, method.clone(), path, body).await;
            assert_eq!(status, 403, "{method} {path}");
        }
    }
    let (status, _) = catalog.call_as(&catalog.ingest, Method::GET, "/api/v1/services", None).await;
    assert_eq!(status, 403, "ingest may not read");

    let password = catalog.app.add_user("vera", Role::Viewer).await;
    let (viewer, csrf) = catalog.app.sign_in("vera", &password).await;
    let patch = |client: &reqwest::Client, csrf: &str| {
        client
            .patch(catalog.app.url("/api/v1/services/web"))
            .header("x-csrf-token", csrf)
            .json(&json!({"fall": 1}))
            .send()
    };
    assert_eq!(patch(&viewer, &csrf).await.expect("answer").status(), 403, "a viewer may look, not change");
    assert_eq!(catalog.stored().await, before, "refusals changed nothing");

    let password = catalog.app.add_user("olga", Role::Operator).await;
    let (operator, csrf) = catalog.app.sign_in("olga", &password).await;
    assert_eq!(patch(&operator, &csrf).await.expect("answer").status(), 200);
    let last = catalog.audit().await.pop().expect("a row");
    assert_eq!((last.0.as_str(), last.1.as_str(), last.2.as_str()), ("olga", "service web", "updated"));
}

#[tokio::test]
async fn a_tuned_interval_and_fall_reach_the_health_checker_within_about_a_second() {
    let catalog = Catalog::new().await;
    // Checked once an hour: after its first probe, nothing would notice it stop for an hour.
    let slow = json!({"name": "pay", "check_interval_ms": 3_600_000, "check_timeout_ms": 2000, "fall": 3, "rise": 1});
    let (status, created) = catalog.call(Method::POST, "/api/v1/services", Some(slow)).await;
    assert_eq!(status, 201, "{created}");
    let mut target = TargetServer::start().await;
    let id = catalog.register("pay", "v1", target.port).await;
    let health = || async {
        sqlx::query_as::<_, (String, Option<String>)>("SELECT health, health_reason FROM instances WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&catalog.app.db)
            .await
            .ok()
    };
    wait_until("the first probe to find it healthy", SOON, || async { health().await.filter(|(h, _)| h == "healthy") })
        .await;

    target.stop().await;
    let tune = json!({"check_interval_ms": 500, "check_timeout_ms": 300, "fall": 1});
    let (status, tuned) = catalog.call(Method::PATCH, "/api/v1/services/pay", Some(tune)).await;
    assert_eq!(status, 200, "{tuned}");
    let tuned_at = Instant::now();
    let (_, reason) = wait_until("the stopped target to be marked unhealthy", SOON, || async {
        health().await.filter(|(h, _)| h == "unhealthy")
    })
    .await;
    // Re-read within 1 s of the event, probed within the new 500 ms interval, down after one
    // failure; the margin is for a busy machine, and far below the old hour.
    assert!(tuned_at.elapsed() < Duration::from_secs(4), "took {:?}", tuned_at.elapsed());
    assert!(reason.is_some_and(|r| r.contains("cannot connect")));
}

#[tokio::test]
async fn the_catalog_routes_are_in_the_openapi_document() {
    let catalog = Catalog::new().await;
    let document: Value = catalog.app.get("/api/openapi.json").await.json().await.expect("json");
    for (path, methods) in [
        ("/api/v1/clusters", &["get", "post"][..]),
        ("/api/v1/clusters/{cluster}", &["patch", "delete"]),
        ("/api/v1/clusters/{cluster}/nodes", &["get", "post"]),
        ("/api/v1/clusters/{cluster}/nodes/{node}", &["patch", "delete"]),
        ("/api/v1/services", &["get", "post"]),
        ("/api/v1/services/{service}", &["get", "patch", "delete"]),
    ] {
        for method in methods {
            assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
        }
    }
}
