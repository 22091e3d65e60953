//! Schema phases and strategies that can't run: a rollback past a completed contract is refused
//! with the reason and the way out, an expand can be rolled back, a rollback release returns to
//! the previous stable version, and rolling without a deployer is refused clearly.

use serde_json::json;

use crate::releases::{Desk, canary, split};
#[tokio::test]
async fn a_rollback_past_a_completed_schema_contract_is_refused_with_the_reason_and_the_way_out() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let mut start = canary(revision);
    start["schema"] = json!({"phase": "contract", "description": "drop column orders.legacy_total"});
    let (_, release) = desk.start("web", start).await;
    let id = release["id"].as_i64().expect("id");
    desk.act_now(id, json!({"action": "promote"})).await;

    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (status, refusal) =
        desk.act(&desk.operator, id, json!({"action": "rollback", "expected_revision": revision}), None).await;
    assert_eq!(status, 409, "{refusal}");
    assert_eq!(
        refusal["error"],
        format!(
            "release #{id} (v2) contracted the schema: drop column orders.legacy_total; v1 expects what it removed — roll forward instead"
        )
    );
    let (status, refusal) =
        desk.start("web", json!({"strategy": "rollback", "target_version": "", "expected_revision": revision})).await;
    assert_eq!(status, 409, "a rollback release is refused too: {refusal}");
    assert!(refusal["error"].as_str().expect("error").contains("contracted the schema"));
    assert_eq!(desk.weights("web").await, split(&[("v2", 100), ("v1", 0)]), "traffic stays on v2");
}

#[tokio::test]
async fn an_expand_release_can_be_rolled_back_after_completion_and_a_rollback_release_returns_to_the_previous_stable() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let mut start = canary(revision);
    start["schema"] = json!({"phase": "expand", "description": "add column orders.total_cents"});
    let (_, release) = desk.start("web", start).await;
    let id = release["id"].as_i64().expect("id");
    desk.act_now(id, json!({"action": "promote"})).await;
    let rolled = desk.act_now(id, json!({"action": "rollback"})).await;
    assert_eq!(rolled["state"], "rolled_back");
    assert_eq!(desk.weights("web").await, split(&[("v2", 0), ("v1", 100)]));

    // Forward again, then a standalone rollback release goes back to v1.
    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (_, again) = desk.start("web", canary(revision)).await;
    desk.act_now(again["id"].as_i64().expect("id"), json!({"action": "promote"})).await;
    let revision = desk.get("/api/v1/services/web/traffic").await["revision"].as_i64().expect("revision");
    let (status, rollback) =
        desk.start("web", json!({"strategy": "rollback", "target_version": "", "expected_revision": revision})).await;
    assert_eq!(status, 201, "{rollback}");
    assert_eq!((rollback["state"].as_str(), rollback["target_version"].as_str()), (Some("completed"), Some("v1")));
    assert_eq!(desk.weights("web").await, split(&[("v1", 100), ("v2", 0)]));
}

#[tokio::test]
async fn a_rolling_release_is_refused_clearly_when_no_deployer_is_configured() {
    let desk = Desk::new().await;
    let (_v1, _v2, revision) = desk.two_versions().await;
    let (status, refusal) =
        desk.start("web", json!({"strategy": "rolling", "target_version": "v2", "expected_revision": revision})).await;
    assert_eq!(status, 422, "{refusal}");
    assert!(
        refusal["detail"]
            .as_str()
            .expect("detail")
            .starts_with("rolling needs a deployer to start and stop instances, and none is configured"),
        "{refusal}"
    );
}
