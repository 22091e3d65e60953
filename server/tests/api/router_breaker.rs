//! The router's passive breaker and a faulty version: HTTP 5xx answers never eject a version's
//! last instance in rotation (that would move its share to the other versions behind the
//! operator's back, and leave canary analysis without data); its errors reach the clients at
//! the version's share, where canary analysis sees them.

use app::model::traffic::{Route, Sticky};
use serde_json::Value;

use crate::router::Stage;

#[tokio::test]
async fn a_versions_only_instance_answering_500_keeps_its_share_and_its_breaker_stays_closed() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["v1", "v2"]).await;
    let revision = stage.set_policy("web", &[("v2", 100), ("v1", 0)], Sticky::default(), Route::default()).await;
    stage.wait_revision("web", revision).await;
    stage.wait_in_rotation("web", 2).await;

    for _ in 0..10 {
        let answer = stage.get("web", "/checkout?status=500").await;
        assert_eq!(answer.status().as_u16(), 500, "the version's own answer reaches the client");
        let body: Value = answer.json().await.expect("the echo's json");
        assert_eq!(body["version"], "v2", "no fallback to v1: {body}");
    }

    let status = stage.service_status("web").await.expect("web in /status");
    let upstreams = status["upstreams"].as_array().expect("upstreams");
    let v2 = upstreams.iter().find(|u| u["version"] == "v2").expect("v2's instance");
    assert_eq!(v2["breaker"], "closed", "{status}");
}
