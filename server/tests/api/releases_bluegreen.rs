//! Blue-green on the real stack: green (v2) beside blue (v1) with no traffic; smoke checks go
//! to each healthy green instance directly; a failure keeps green dark and refuses the switch;
//! a pass allows it; switch moves 100 % at once, switch back returns it while blue is healthy.

use serde_json::{Value, json};
use testkit::wait_until;

use crate::releases::{Desk, PATIENCE, weights_of};

fn blue_green(revision: i64) -> Value {
    json!({"strategy": "blue_green", "target_version": "v2", "expected_revision": revision,
           "smoke_checks": [{"path": "/healthz", "expect_status": 200, "expect_body_contains": "says hello"}]})
}

#[tokio::test]
async fn blue_green_smoke_checks_gate_the_switch_and_switch_and_switch_back_move_all_traffic_at_once() {
    let desk = Desk::new().await;
    let (mut blue, green, revision) = desk.two_versions().await;
    let (status, release) = desk.start("web", blue_green(revision)).await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_i64().expect("id");
    assert_eq!(release["state"], "ready");
    assert_eq!(
        weights_of(&desk.get("/api/v1/services/web/traffic").await["weights"]),
        [("v2".into(), 0), ("v1".into(), 100)]
    );

    // Before any smoke run the switch is refused.
    let revision = release["policy_revision"].as_i64().expect("revision");
    let (status, refusal) =
        desk.act(&desk.operator, id, json!({"action": "switch", "expected_revision": revision}), None).await;
    assert_eq!(status, 409);
    assert!(refusal["error"].as_str().expect("error").contains("run_smoke_checks first"), "{refusal}");

    // Green answers 503: the smoke checks fail and say where.
    green.answer(503);
    let failed = desk.act_now(id, json!({"action": "run_smoke_checks"})).await;
    assert_eq!(failed["state"], "smoke_failed");
    let reason = failed["status_reason"].as_str().expect("reason");
    assert!(reason.contains(&format!("127.0.0.1:{}/healthz: status 503, expected 200", green.port)), "{reason}");
    assert_eq!(failed["allowed_actions"], json!(["run_smoke_checks", "abort", "rollback"]));
    let inbox = desk.get("/api/v1/inbox").await;
    assert!(
        inbox.as_array().expect("inbox").iter().any(|i| i["release_id"] == id && i["state"] == "smoke_failed"),
        "{inbox}"
    );

    // Mended: they pass, and the switch moves everything to green at once.
    green.answer(200);
    let passed = desk.act_now(id, json!({"action": "run_smoke_checks"})).await;
    assert_eq!(passed["state"], "ready", "{passed}");
    let switched = desk.act_now(id, json!({"action": "switch"})).await;
    assert_eq!(switched["state"], "switched");
    assert_eq!(
        weights_of(&desk.get("/api/v1/services/web/traffic").await["weights"]),
        [("v2".into(), 100), ("v1".into(), 0)]
    );

    let back = desk.act_now(id, json!({"action": "switch_back"})).await;
    assert_eq!(back["state"], "ready");
    assert_eq!(
        weights_of(&desk.get("/api/v1/services/web/traffic").await["weights"]),
        [("v2".into(), 0), ("v1".into(), 100)]
    );

    // Switch again; with blue gone, switching back is refused (nothing would take the traffic).
    desk.act_now(id, json!({"action": "switch"})).await;
    blue.stop().await;
    sqlx::query("UPDATE services SET fall = 1 WHERE name = 'web'").execute(&desk.app.db).await.expect("quick fall");
    wait_until("blue to be marked down", PATIENCE, || async {
        let health: String = sqlx::query_scalar("SELECT health FROM instances WHERE port = $1")
            .bind(i32::from(blue.port))
            .fetch_one(&desk.app.db)
            .await
            .expect("health");
        (health == "unhealthy").then_some(())
    })
    .await;
    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (status, refusal) =
        desk.act(&desk.operator, id, json!({"action": "switch_back", "expected_revision": revision}), None).await;
    assert_eq!(status, 409, "{refusal}");
    assert!(refusal["error"].as_str().expect("error").contains("v1 (blue) has no healthy instance left"), "{refusal}");
    let done = desk.act_now(id, json!({"action": "promote"})).await;
    assert_eq!(done["state"], "completed");
}
