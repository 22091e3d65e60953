//! `opsdeck release …` and `opsdeck traffic …`: the real binary against the real app (port 0,
//! fresh database, real HTTP instances), checking what it prints and its exit codes.

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::json;
use testkit::{TargetServer, TestApp, wait_until};

const PATIENCE: Duration = Duration::from_secs(30);

/// What one run of the command left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn opsdeck(app: &TestApp, token: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"))
        .args(args)
        .env("OPSDECK_URL", &app.address)
        .env("OPSDECK_TOKEN", token)
        .env("OPSDECK_LOG_FORMAT", "pretty")
        .output()
        .await
        .expect("the opsdeck binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `web` with a healthy v1 and v2 instance; returns the instances (they serve while held).
pub(crate) async fn web_with_two_versions(app: &TestApp) -> (TargetServer, TargetServer) {
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('web', 500, 400, 100, 1)",
    )
    .execute(&app.db)
    .await
    .expect("create the service");
    let ingest = app.token("agent", &[Scope::Ingest]).await;
    let mut instances = Vec::new();
    for version in ["v1", "v2"] {
        let target = TargetServer::start().await;
        let body = json!({"service": "web", "version": version, "cluster": "eu-1", "node": "node-a",
                          "host": "127.0.0.1", "port": target.port});
        let response = app.http.post(app.url("/api/v1/instances")).bearer_auth(&ingest).json(&body).send().await;
        assert_eq!(response.expect("answer").status(), 201);
        let port = i32::from(target.port);
        wait_until(&format!("web {version} to be healthy"), PATIENCE, || async {
            let health: Option<String> = sqlx::query_scalar("SELECT health FROM instances WHERE port = $1")
                .bind(port)
                .fetch_optional(&app.db)
                .await
                .expect("query");
            (health.as_deref() == Some("healthy")).then_some(())
        })
        .await;
        instances.push(target);
    }
    let v2 = instances.pop().expect("two");
    (instances.pop().expect("two"), v2)
}

#[tokio::test]
async fn the_cli_sets_traffic_starts_a_canary_moves_it_and_shows_it() {
    let app = TestApp::spawn().await;
    let _instances = web_with_two_versions(&app).await;
    let operator = app.token("release-bot", &[Scope::Read, Scope::Operate]).await;

    let set = opsdeck(&app, &operator, &["traffic", "set", "web", "v1=100", "--reason", "baseline"]).await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert!(set.stdout.contains("web revision 1: v1 100 %"), "{}", set.stdout);

    let start = opsdeck(&app, &operator, &["release", "start", "web", "--to", "v2", "--steps", "10,50,100"]).await;
    assert_eq!(start.code, 0, "{}", start.stderr);
    assert!(start.stdout.contains("started release #"), "{}", start.stdout);
    assert!(start.stdout.contains("canary v1 → v2"), "{}", start.stdout);
    let id = start.stdout.split('#').nth(1).and_then(|rest| rest.split_whitespace().next()).expect("an id").to_owned();

    let moved = opsdeck(&app, &operator, &["release", "act", &id, "set-percent", "--percent", "30"]).await;
    assert_eq!(moved.code, 0, "{}", moved.stderr);
    assert!(moved.stdout.contains("set_percent done") && moved.stdout.contains("at 30 %"), "{}", moved.stdout);

    let shown = opsdeck(&app, &operator, &["traffic", "show", "web"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("v1 70 %") && shown.stdout.contains("v2 30 %"), "{}", shown.stdout);

    let list = opsdeck(&app, &operator, &["release", "list", "--active"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains(&format!("#{id}")) && list.stdout.contains("30%"), "{}", list.stdout);

    let detail = opsdeck(&app, &operator, &["release", "show", &id]).await;
    assert_eq!(detail.code, 0, "{}", detail.stderr);
    assert!(
        detail.stdout.contains("token release-bot set_percent: v2 10 % · v1 90 % → v2 30 % · v1 70 %"),
        "{}",
        detail.stdout
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_stale_revision_exits_7_and_prints_the_present_without_changing_anything() {
    let app = TestApp::spawn().await;
    let _instances = web_with_two_versions(&app).await;
    let operator = app.token("release-bot", &[Scope::Read, Scope::Operate]).await;
    assert_eq!(opsdeck(&app, &operator, &["traffic", "set", "web", "v1=100"]).await.code, 0);
    let start = opsdeck(&app, &operator, &["release", "start", "web", "--to", "v2"]).await;
    assert_eq!(start.code, 0, "{}", start.stderr);
    let id = start.stdout.split('#').nth(1).and_then(|rest| rest.split_whitespace().next()).expect("an id").to_owned();

    let stale = opsdeck(&app, &operator, &["release", "act", &id, "abort", "--expected-revision", "1"]).await;

    assert_eq!(stale.code, 7, "stdout {} stderr {}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("nothing was changed") && stale.stderr.contains("revision 2"), "{}", stale.stderr);
    let shown = opsdeck(&app, &operator, &["traffic", "show", "web"]).await;
    assert!(shown.stdout.contains("v2 1 %"), "the canary still runs: {}", shown.stdout);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_rolling_start_without_a_deployer_exits_8_refused_saying_what_is_missing() {
    let app = TestApp::spawn().await;
    let _instances = web_with_two_versions(&app).await;
    let operator = app.token("release-bot", &[Scope::Read, Scope::Operate]).await;
    assert_eq!(opsdeck(&app, &operator, &["traffic", "set", "web", "v1=100"]).await.code, 0);
    let args = ["release", "start", "web", "--strategy", "rolling", "--to", "v3", "--ready-timeout", "45s"];

    let refused = opsdeck(&app, &operator, &args).await;

    assert_eq!(refused.code, 8, "stdout {} stderr {}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("--deployer-url"), "{}", refused.stderr);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_viewer_token_exits_5_a_missing_token_4_and_an_unreachable_server_3() {
    let app = TestApp::spawn().await;
    let _instances = web_with_two_versions(&app).await;
    let viewer = app.token("dashboard", &[Scope::Read]).await;

    let refused = opsdeck(&app, &viewer, &["traffic", "set", "web", "v1=100"]).await;
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(refused.stderr.contains("not allowed"), "{}", refused.stderr);

    let anonymous = opsdeck(&app, "", &["release", "list"]).await;
    assert_eq!(anonymous.code, 4, "{}", anonymous.stderr);

    let bad_weights = opsdeck(&app, &viewer, &["traffic", "set", "web", "v1=90"]).await;
    assert_eq!(bad_weights.code, 2, "checked before sending: {}", bad_weights.stderr);
    assert!(bad_weights.stderr.contains("sum to 90"), "{}", bad_weights.stderr);

    let address = app.address.clone();
    app.stop().await.expect("clean stop");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"))
        .args(["release", "list", "--opsdeck-url", &address, "--token", "x"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", String::from_utf8_lossy(&output.stderr));
}
