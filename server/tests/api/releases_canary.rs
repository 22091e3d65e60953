//! Canary analysis on the real stack: demo services v1 and v2 (real `opsdeck demo-service`
//! processes) send their own `http_requests` to InfluxDB through the app; the controller
//! compares them each interval. A faulty v2 (50 % 500s) is rolled back by itself with the
//! verdict in the audit log; a canary without data is held, not passed.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::wait_until;

use crate::{
    demo::{Process, Stage},
    releases::{Desk, PATIENCE, weights_of},
};

/// `opsdeck demo-service` for `web` `version` on a free port, sending telemetry every 100 ms.
fn demo_service(stage: &Stage, version: &str, mode: &str) -> (Process, u16) {
    let port = testkit::free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "demo-service", "--service", "web", "--service-version", version])
        .args(["--cluster", "east", "--node", &format!("east-{version}"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--opsdeck-url", &stage.app.address, "--telemetry-every", "100ms", "--mode", mode])
        .env("OPSDECK_TOKEN", &stage.ingest);
    (Process::spawn(command), port)
}

/// v1 and v2 of `web` as demo services in the given modes, healthy and registered, with a
/// v1-only policy; and steady load straight to both (as a router would send it), so each
/// writes its own request metrics.
async fn two_demo_versions(v2_mode: &str) -> (Desk, Vec<Process>, tokio::task::JoinHandle<()>) {
    let stage = Stage::new().await;
    let (v1, v1_port) = demo_service(&stage, "v1", "healthy");
    stage.registered("web", v1_port, &v1).await;
    stage.health(v1_port, "healthy").await;
    let (v2, v2_port) = demo_service(&stage, "v2", v2_mode);
    stage.registered("web", v2_port, &v2).await;
    stage.health(v2_port, "healthy").await;
    let desk = Desk::with(stage.app).await;
    let (status, policy) = desk
        .put_traffic(
            &desk.operator,
            "web",
            json!({"expected_revision": 0, "weights": [{"version": "v1", "percent": 100}]}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            for port in [v1_port, v2_port] {
                let _ = client.get(format!("http://127.0.0.1:{port}/")).send().await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (desk, vec![v1, v2], load)
}

#[tokio::test]
async fn a_healthy_canary_advances_a_step_only_after_its_hold_with_a_passing_verdict_and_then_awaits_promotion() {
    let (desk, processes, load) = two_demo_versions("healthy").await;
    let start = json!({"strategy": "canary", "target_version": "v2", "expected_revision": 1,
        "steps": [{"percent": 10, "hold_seconds": 1}, {"percent": 50, "hold_seconds": 1}],
        "analysis": {"interval_seconds": 1, "max_error_rate": 0.1, "max_p99_ratio": 50.0, "min_samples": 5, "breaches_to_rollback": 2}});
    let (status, release) = desk.start("web", start).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");
    let detail = wait_until("the canary to pass its steps", Duration::from_secs(60), || async {
        let detail = desk.get(&format!("/api/v1/releases/{id}")).await;
        (detail["release"]["state"] == "awaiting_promotion").then_some(detail)
    })
    .await;
    load.abort();
    assert_eq!(detail["release"]["current_percent"], 50);
    assert_eq!(weights_of(&detail["policy"]["weights"]), [("v2".into(), 50), ("v1".into(), 50)]);
    // Each step was taken by the controller on a passing verdict.
    let steps: Vec<&Value> =
        detail["history"].as_array().expect("history").iter().filter(|h| h["action"] == "next_step").collect();
    assert_eq!(steps.len(), 2, "{detail}");
    for step in steps {
        assert_eq!(step["actor"], "system release-analysis");
        assert_eq!(step["verdict"]["outcome"], "pass", "{step}");
    }
    drop(processes);
}

#[tokio::test]
async fn a_faulty_v2_started_as_a_canary_is_rolled_back_automatically_with_the_verdict_in_the_audit_log() {
    let (desk, processes, load) = two_demo_versions("faulty").await;

    let start = json!({"strategy": "canary", "target_version": "v2", "expected_revision": 1,
        "steps": [{"percent": 10, "hold_seconds": 600}, {"percent": 100, "hold_seconds": 0}],
        "analysis": {"interval_seconds": 1, "max_error_rate": 0.1, "max_p99_ratio": 50.0, "min_samples": 5, "breaches_to_rollback": 2}});
    let (status, release) = desk.start("web", start).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");

    let ended = wait_until("the faulty canary to be rolled back by itself", Duration::from_secs(60), || async {
        let release = desk.get(&format!("/api/v1/releases/{id}")).await["release"].clone();
        (release["state"] == "rolled_back").then_some(release)
    })
    .await;
    load.abort();
    let reason = ended["status_reason"].as_str().expect("reason");
    assert!(reason.starts_with("rolled back automatically: 2 failing interval(s) in a row; canary 5xx"), "{reason}");
    assert_eq!(
        weights_of(&desk.get("/api/v1/services/web/traffic").await["weights"]),
        [("v2".into(), 0), ("v1".into(), 100)]
    );

    let rows = desk.audit_rows("release.action").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["actor"], "release-analysis");
    assert_eq!(row["after"]["state"], "rolled_back");
    let verdict = &row["after"]["verdict"];
    assert_eq!(verdict["outcome"], "fail", "{row}");
    let canary_rate = verdict["canary_error_rate"].as_f64().expect("canary rate");
    assert!((0.3..=0.7).contains(&canary_rate), "about half of v2's answers fail: {verdict}");
    assert!(verdict["stable_error_rate"].as_f64().expect("stable rate") < 0.05, "{verdict}");
    assert!(verdict["canary_samples"].as_u64().expect("samples") >= 5);
    assert!(row["detail"].as_str().expect("detail").contains("canary 5xx"), "{row}");
    let inbox = desk.get("/api/v1/inbox").await;
    assert!(
        inbox.as_array().expect("inbox").iter().any(|i| i["release_id"] == id && i["state"] == "rolled_back"),
        "{inbox}"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'release_changed' AND payload->>'to' = 'rolled_back'",
    )
    .fetch_one(&desk.app.db)
    .await
    .expect("events");
    assert_eq!(events, 1);
    let failing_verdicts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'verdict_recorded' AND (payload->>'release_id')::bigint = $1 AND payload->>'outcome' = 'fail'",
    )
    .bind(id)
    .fetch_one(&desk.app.db)
    .await
    .expect("events");
    assert!(failing_verdicts >= 2, "every failing interval is announced to the screens: {failing_verdicts}");
    drop(processes);
}

#[tokio::test]
async fn a_canary_without_enough_requests_is_held_at_its_step_and_shows_in_the_inbox() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let start = json!({"strategy": "canary", "target_version": "v2", "expected_revision": revision,
        "steps": [{"percent": 5, "hold_seconds": 1}, {"percent": 50, "hold_seconds": 1}],
        "analysis": {"interval_seconds": 1, "max_error_rate": 0.1, "max_p99_ratio": 2.0, "min_samples": 5, "breaches_to_rollback": 2}});
    let (status, release) = desk.start("web", start).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");

    // Nobody sends requests: each interval is inconclusive and the 1 s hold never runs out.
    let detail: Value = wait_until("three inconclusive verdicts", PATIENCE, || async {
        let detail = desk.get(&format!("/api/v1/releases/{id}")).await;
        (detail["verdicts"].as_array().map_or(0, Vec::len) >= 3).then_some(detail)
    })
    .await;
    for verdict in detail["verdicts"].as_array().expect("verdicts") {
        assert_eq!(verdict["outcome"], "inconclusive", "{verdict}");
        assert!(verdict["summary"].as_str().expect("summary").starts_with("too little data: 0 canary request(s) < 5"));
    }
    let release = &detail["release"];
    assert_eq!(
        (release["state"].as_str(), release["step_index"].as_u64()),
        (Some("progressing"), Some(0)),
        "held: {release}"
    );
    assert_eq!(release["current_percent"], 5);
    let inbox = desk.get("/api/v1/inbox").await;
    let held = inbox.as_array().expect("inbox").iter().find(|i| i["release_id"] == id).cloned();
    assert!(held.as_ref().is_some_and(|i| i["ask"].as_str().unwrap_or("").contains("is held")), "{inbox}");
}
