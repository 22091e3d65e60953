//! Release control on the real stack (PostgreSQL, InfluxDB, the app on port 0, real HTTP
//! instances): canary actions move the traffic policy, every disallowed action is refused with
//! what is allowed now, stale revisions get 409 with the present, idempotency keys, roles with
//! their audit rows, the hand-set traffic lock and the preview. Schema phases and rolling without
//! a deployer: `releases_schema.rs`; blue-green: `releases_bluegreen.rs`; analysis with real demo services: `releases_canary.rs`.

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::{TargetServer, TestApp, wait_until};

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The app with an ingest, an operator and a viewer token.
pub(crate) struct Desk {
    pub(crate) app: TestApp,
    pub(crate) ingest: String,
    pub(crate) operator: String,
    pub(crate) viewer: String,
}

impl Desk {
    pub(crate) async fn new() -> Self {
        Self::with(TestApp::spawn().await).await
    }

    pub(crate) async fn with(app: TestApp) -> Self {
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        let operator = app.token("operator-1", &[Scope::Read, Scope::Operate]).await;
        let viewer = app.token("viewer-1", &[Scope::Read]).await;
        Self { app, ingest, operator, viewer }
    }

    /// The service, checked every 500 ms, healthy after one success and down only after many
    /// failures (so smoke tests can make an instance answer badly without losing it).
    pub(crate) async fn service(&self, name: &str) {
        sqlx::query(
            "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ($1, 500, 400, 100, 1)",
        )
        .bind(name)
        .execute(&self.app.db)
        .await
        .expect("create the service");
    }

    /// A real HTTP instance of `service` `version`, registered and healthy.
    pub(crate) async fn instance(&self, service: &str, version: &str) -> TargetServer {
        let target = TargetServer::start().await;
        let body = json!({"service": service, "version": version, "cluster": "eu-1", "node": "node-a",
                          "host": "127.0.0.1", "port": target.port});
        let response =
            self.app.http.post(self.app.url("/api/v1/instances")).bearer_auth(&self.ingest).json(&body).send().await;
        assert_eq!(response.expect("answer").status(), 201);
        let port = target.port;
        wait_until(&format!("{service} {version} on {port} to be healthy"), PATIENCE, || async {
            let health: Option<String> = sqlx::query_scalar("SELECT health FROM instances WHERE port = $1")
                .bind(i32::from(port))
                .fetch_optional(&self.app.db)
                .await
                .expect("query");
            (health.as_deref() == Some("healthy")).then_some(())
        })
        .await;
        target
    }

    /// `web` with v1 (stable, 100 %) and v2, both healthy; returns the policy revision.
    pub(crate) async fn two_versions(&self) -> (TargetServer, TargetServer, i64) {
        self.service("web").await;
        let v1 = self.instance("web", "v1").await;
        let v2 = self.instance("web", "v2").await;
        let policy = self
            .put_traffic(
                &self.operator,
                "web",
                json!({"expected_revision": 0, "weights": [{"version": "v1", "percent": 100}]}),
                None,
            )
            .await;
        assert_eq!(policy.0, 200, "{}", policy.1);
        (v1, v2, policy.1["revision"].as_i64().expect("revision"))
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.app.http.request(method, self.app.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("answer");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, &self.viewer, path, None, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub(crate) async fn put_traffic(&self, token: &str, service: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::PUT, token, &format!("/api/v1/services/{service}/traffic"), Some(body), key).await
    }

    pub(crate) async fn start(&self, service: &str, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            &self.operator,
            &format!("/api/v1/services/{service}/releases"),
            Some(body),
            None,
        )
        .await
    }

    pub(crate) async fn act(&self, token: &str, id: i64, body: Value, key: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::POST, token, &format!("/api/v1/releases/{id}/actions"), Some(body), key).await
    }

    /// Acts as the operator with the current revision; expects success.
    pub(crate) async fn act_now(&self, id: i64, mut body: Value) -> Value {
        let revision = self.get("/api/v1/services/web/traffic").await["revision"].clone();
        body["expected_revision"] = revision;
        let (status, answer) = self.act(&self.operator, id, body.clone(), None).await;
        assert_eq!(status, 200, "{body} → {answer}");
        answer
    }

    pub(crate) async fn weights(&self, service: &str) -> Vec<(String, u64)> {
        let policy = self.get(&format!("/api/v1/services/{service}/traffic")).await;
        weights_of(&policy["weights"])
    }

    pub(crate) async fn audit_rows(&self, action: &str) -> Vec<Value> {
        sqlx::query_scalar::<_, Value>(
            "SELECT json_build_object('actor', actor_name, 'outcome', outcome, 'target', target, 'after', after, 'detail', detail)
             FROM audit_log WHERE action = $1 ORDER BY id",
        )
        .bind(action)
        .fetch_all(&self.app.db)
        .await
        .expect("audit rows")
    }
}

pub(crate) fn weights_of(weights: &Value) -> Vec<(String, u64)> {
    weights
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| (w["version"].as_str().expect("version").to_owned(), w["percent"].as_u64().expect("percent")))
        .collect()
}

pub(crate) fn split(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(v, p)| ((*v).to_owned(), *p)).collect()
}

pub(crate) fn canary(revision: i64) -> Value {
    json!({"strategy": "canary", "target_version": "v2", "expected_revision": revision,
           "steps": [{"percent": 1, "hold_seconds": 3600}, {"percent": 10, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 0}],
           "max_jump": 20})
}

#[tokio::test]
async fn a_canary_moves_the_policy_step_by_step_refuses_what_its_state_does_not_allow_and_promotes_to_stable() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;

    let (status, release) = desk.start("web", canary(revision)).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");
    assert_eq!(release["state"], "progressing");
    assert_eq!(release["stable_version"], "v1");
    assert_eq!(release["current_percent"], 1);
    assert_eq!(
        release["allowed_actions"],
        json!(["set_percent", "next_step", "pause", "promote", "abort", "rollback"])
    );
    assert_eq!(desk.weights("web").await, split(&[("v2", 1), ("v1", 99)]));

    let next = desk.act_now(id, json!({"action": "next_step"})).await;
    assert_eq!((next["step_index"].as_u64(), next["current_percent"].as_u64()), (Some(1), Some(10)));
    assert_eq!(desk.weights("web").await, split(&[("v2", 10), ("v1", 90)]));

    // A jump above max_jump is refused, saying why; a smaller one is applied.
    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (status, refusal) = desk
        .act(&desk.operator, id, json!({"action": "set_percent", "percent": 50, "expected_revision": revision}), None)
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert!(refusal["error"].as_str().expect("error").contains("at most 20 at once"), "{refusal}");
    assert_eq!(refusal["current_release"]["current_percent"], 10);
    desk.act_now(id, json!({"action": "set_percent", "percent": 25})).await;
    assert_eq!(desk.weights("web").await, split(&[("v2", 25), ("v1", 75)]));

    let paused = desk.act_now(id, json!({"action": "pause"})).await;
    assert_eq!(paused["state"], "paused");
    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (status, refusal) =
        desk.act(&desk.operator, id, json!({"action": "next_step", "expected_revision": revision}), None).await;
    assert_eq!(status, 409);
    assert_eq!(
        refusal["error"],
        "next_step is not possible for a canary release that is paused; allowed now: set_percent, resume, promote, abort, rollback"
    );
    assert_eq!(desk.act_now(id, json!({"action": "resume"})).await["state"], "progressing");

    let done = desk.act_now(id, json!({"action": "promote"})).await;
    assert_eq!(done["state"], "completed");
    assert!(done["finished_at"].is_string());
    assert_eq!(desk.weights("web").await, split(&[("v2", 100), ("v1", 0)]));
    let stable: Option<String> = sqlx::query_scalar("SELECT stable_version FROM services WHERE name = 'web'")
        .fetch_one(&desk.app.db)
        .await
        .expect("stable");
    assert_eq!(stable.as_deref(), Some("v2"));

    let detail = desk.get(&format!("/api/v1/releases/{id}")).await;
    let actions: Vec<&str> =
        detail["history"].as_array().expect("history").iter().map(|h| h["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["promote", "resume", "pause", "set_percent", "next_step", "start"]);
    assert_eq!(
        detail["history"][0]["weights_before"],
        json!([{"version": "v2", "percent": 25}, {"version": "v1", "percent": 75}])
    );
}

#[tokio::test]
async fn two_operators_acting_on_the_same_stale_revision_100_times_in_parallel_exactly_one_wins_each_time() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let second = desk.app.token("operator-2", &[Scope::Read, Scope::Operate]).await;
    let (status, release) = desk.start("web", canary(revision)).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");

    for round in 0..100_u64 {
        let seen = desk.get("/api/v1/services/web/traffic").await;
        let revision = seen["revision"].as_i64().expect("revision");
        let current =
            desk.get(&format!("/api/v1/releases/{id}")).await["release"]["current_percent"].as_u64().expect("percent");
        // Each operator moves the canary somewhere else, on the same revision.
        let (a, b) = if current >= 10 { (current - 5, current - 9) } else { (current + 5, current + 9) };
        let first = desk.act(
            &desk.operator,
            id,
            json!({"action": "set_percent", "percent": a, "expected_revision": revision}),
            None,
        );
        let other =
            desk.act(&second, id, json!({"action": "set_percent", "percent": b, "expected_revision": revision}), None);
        let ((s1, r1), (s2, r2)) = tokio::join!(first, other);
        let mut statuses = [s1, s2];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {r1} / {r2}");
        let (winner, loser, percent) = if s1 == 200 { (r1, r2, a) } else { (r2, r1, b) };
        // The loser sees the present: the winner's policy and release.
        assert_eq!(loser["current_policy"]["revision"], revision + 1, "round {round}: {loser}");
        assert_eq!(loser["current_release"]["current_percent"], percent, "round {round}");
        // No lost update: exactly one change, the winner's.
        let now = desk.get("/api/v1/services/web/traffic").await;
        assert_eq!(now["revision"], revision + 1, "round {round}");
        assert_eq!(weights_of(&now["weights"]), split(&[("v2", percent), ("v1", 100 - percent)]), "round {round}");
        assert_eq!(winner["policy_revision"], revision + 1);
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM release_actions WHERE release_id = $1 AND action = 'set_percent'")
            .bind(id)
            .fetch_one(&desk.app.db)
            .await
            .expect("count");
    assert_eq!(applied, 100);
}

#[tokio::test]
async fn a_viewers_release_action_gets_403_and_an_audit_row_and_an_operators_is_applied_and_audited_once() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let (_, release) = desk.start("web", canary(revision)).await;
    let id = release["id"].as_i64().expect("id");
    let revision = release["policy_revision"].as_i64().expect("revision");

    let (status, refusal) =
        desk.act(&desk.viewer, id, json!({"action": "abort", "expected_revision": revision}), None).await;
    assert_eq!(status, 403, "{refusal}");
    let denied = desk.audit_rows("access.denied").await;
    assert!(
        denied.iter().any(|r| r["actor"] == "viewer-1" && r["target"] == format!("POST /api/v1/releases/{id}/actions")),
        "{denied:?}"
    );
    assert_eq!(desk.weights("web").await, split(&[("v2", 1), ("v1", 99)]), "nothing changed");
    assert!(desk.audit_rows("release.action").await.is_empty());

    let (status, aborted) = desk
        .act(
            &desk.operator,
            id,
            json!({"action": "abort", "expected_revision": revision, "reason": "looks wrong"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{aborted}");
    assert_eq!(aborted["state"], "aborted");
    assert_eq!(desk.weights("web").await, split(&[("v2", 0), ("v1", 100)]));
    let rows = desk.audit_rows("release.action").await;
    assert_eq!(rows.len(), 1, "one audit row per action: {rows:?}");
    assert_eq!(rows[0]["actor"], "operator-1");
    assert_eq!(rows[0]["outcome"], "success");
    assert_eq!(rows[0]["after"]["state"], "aborted");
    assert_eq!(
        rows[0]["after"]["weights"],
        json!([{"version": "v2", "percent": 0}, {"version": "v1", "percent": 100}])
    );
    assert!(
        rows[0]["after"].as_object().expect("after").contains_key("verdict"),
        "the verdict of the moment is recorded"
    );
}

#[tokio::test]
async fn an_idempotency_key_repeat_returns_the_first_answer_and_changes_nothing_and_another_body_gets_422() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let (_, release) = desk.start("web", canary(revision)).await;
    let id = release["id"].as_i64().expect("id");
    let revision = release["policy_revision"].as_i64().expect("revision");
    let body = json!({"action": "set_percent", "percent": 5, "expected_revision": revision});

    let (status, first) = desk.act(&desk.operator, id, body.clone(), Some("key-1")).await;
    assert_eq!(status, 200, "{first}");
    let (status, repeat) = desk.act(&desk.operator, id, body.clone(), Some("key-1")).await;
    assert_eq!(status, 200, "a repeat is not a stale revision: {repeat}");
    assert_eq!(repeat, first);
    let policy = desk.get("/api/v1/services/web/traffic").await;
    assert_eq!(policy["revision"], revision + 1, "the repeat changed nothing");
    let actions: i64 = sqlx::query_scalar("SELECT count(*) FROM release_actions WHERE release_id = $1")
        .bind(id)
        .fetch_one(&desk.app.db)
        .await
        .expect("count");
    assert_eq!(actions, 2, "start and one set_percent");
    assert_eq!(desk.audit_rows("release.action").await.len(), 1);

    let other = json!({"action": "set_percent", "percent": 7, "expected_revision": revision + 1});
    let (status, refusal) = desk.act(&desk.operator, id, other, Some("key-1")).await;
    assert_eq!(status, 422, "{refusal}");
    assert!(refusal["detail"].as_str().expect("detail").contains("different request"), "{refusal}");
}

#[tokio::test]
async fn setting_traffic_by_hand_is_refused_while_a_release_is_in_progress_and_a_stale_revision_gets_the_current_policy()
 {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let (status, stale) = desk
        .put_traffic(
            &desk.operator,
            "web",
            json!({"expected_revision": revision - 1, "weights": [{"version": "v2", "percent": 100}]}),
            None,
        )
        .await;
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["current_policy"]["revision"], revision);

    let (_, release) = desk.start("web", canary(revision)).await;
    let revision = release["policy_revision"].as_i64().expect("revision");
    let (status, refusal) = desk
        .put_traffic(
            &desk.operator,
            "web",
            json!({"expected_revision": revision, "weights": [{"version": "v2", "percent": 100}]}),
            None,
        )
        .await;
    assert_eq!(status, 409, "{refusal}");
    assert!(refusal["error"].as_str().expect("error").contains("is in progress"), "{refusal}");
    assert_eq!(refusal["current_release"]["id"], release["id"]);
    let (status, _) = desk.start("web", canary(revision)).await;
    assert_eq!(status, 409, "one release in progress per service");
}

#[tokio::test]
async fn the_preview_shows_the_weights_after_the_receiving_instances_and_a_refusal_without_changing_anything() {
    let desk = Desk::new().await;
    let (v1, v2, revision) = desk.two_versions().await;
    let (_, release) = desk.start("web", canary(revision)).await;
    let id = release["id"].as_i64().expect("id");
    let preview = desk.get(&format!("/api/v1/releases/{id}/preview?action=set_percent&percent=20")).await;
    assert_eq!(preview["refusal"], Value::Null, "{preview}");
    assert_eq!(preview["weights_before"], json!([{"version": "v2", "percent": 1}, {"version": "v1", "percent": 99}]));
    assert_eq!(preview["weights_after"], json!([{"version": "v2", "percent": 20}, {"version": "v1", "percent": 80}]));
    let mut receiving: Vec<String> = preview["receiving_instances"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["address"].as_str().unwrap_or("").to_owned())
        .collect();
    receiving.sort();
    let mut expected = vec![format!("127.0.0.1:{}", v1.port), format!("127.0.0.1:{}", v2.port)];
    expected.sort();
    assert_eq!(receiving, expected);
    assert_eq!(preview["revision"], release["policy_revision"]);
    assert_eq!(preview["open_breakers"], json!([]));
    sqlx::query("UPDATE instances SET breaker = 'open' WHERE port = $1")
        .bind(i32::from(v2.port))
        .execute(&desk.app.db)
        .await
        .expect("open v2's breaker");
    let preview = desk.get(&format!("/api/v1/releases/{id}/preview?action=abort")).await;
    assert_eq!(preview["open_breakers"][0]["address"], format!("127.0.0.1:{}", v2.port), "{preview}");
    assert_eq!(preview["weights_after"], json!([{"version": "v2", "percent": 0}, {"version": "v1", "percent": 100}]));
    assert_eq!(preview["receiving_instances"].as_array().map(Vec::len), Some(1), "only v1 gets traffic after an abort");
    let refused = desk.get(&format!("/api/v1/releases/{id}/preview?action=switch")).await;
    assert!(refused["refusal"].as_str().expect("refusal").starts_with("switch is not possible"), "{refused}");
    assert_eq!(desk.weights("web").await, split(&[("v2", 1), ("v1", 99)]), "a preview changes nothing");
}
