//! Release markers on a service's charts: a canary's start and each share change come back as
//! `release` markers with what happened, by whom, in the hover text.

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::TestApp;

use crate::release_cli::web_with_two_versions;

async fn send(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = app
        .http
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .expect("answer");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::test]
async fn a_canary_start_and_its_share_change_are_release_markers_on_the_service_charts() {
    let app = TestApp::spawn().await;
    let _instances = web_with_two_versions(&app).await;
    let operator = app.token("alice-cli", &[Scope::Read, Scope::Operate]).await;
    let put = reqwest::Method::PUT;
    send(
        &app,
        &operator,
        put,
        "/api/v1/services/web/traffic",
        json!({"expected_revision": 0, "weights": [{"version": "v1", "percent": 100}]}),
    )
    .await;
    let post = reqwest::Method::POST;
    let release = send(
        &app,
        &operator,
        post.clone(),
        "/api/v1/services/web/releases",
        json!({"strategy": "canary", "target_version": "v2", "expected_revision": 1}),
    )
    .await;
    let id = release["id"].as_i64().expect("id");
    send(
        &app,
        &operator,
        post,
        &format!("/api/v1/releases/{id}/actions"),
        json!({"action": "set_percent", "percent": 20, "expected_revision": release["policy_revision"]}),
    )
    .await;

    let response =
        app.http.get(app.url("/api/v1/metrics/services/web")).bearer_auth(&operator).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let labels: Vec<String> = body["markers"]
        .as_array()
        .expect("markers")
        .iter()
        .filter(|m| m["kind"] == "release")
        .map(|m| m["label"].as_str().unwrap_or_default().to_owned())
        .collect();

    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels[0].starts_with(&format!("release #{id} (canary) started")), "{labels:?}");
    assert!(labels[1].contains("at 20 %") && labels[1].contains("alice-cli"), "{labels:?}");
    app.stop().await.expect("clean stop");
}
