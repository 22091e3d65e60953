//! PostgreSQL stopped under load (issue #6): the router keeps serving its last known policy with
//! zero failed requests, its `/readyz` says so (503, which policy, since when, why), and it
//! follows changes again once PostgreSQL is back. The app runs on a private PostgreSQL
//! ([`testkit::PostgresProcess`]) so the test can stop it.

use app::model::traffic::{Route, Sticky};
use serde_json::Value;
use testkit::{PostgresProcess, TestEnv, wait_until};

use crate::router::{Load, PATIENCE, Stage};

#[tokio::test]
async fn with_postgresql_stopped_the_router_keeps_serving_its_last_policy_without_failures_and_readyz_says_so() {
    let mut postgres = PostgresProcess::start();
    let env = TestEnv { admin_database_url: postgres.admin_url(), ..TestEnv::from_env() };
    let stage = Stage::on(env).await;
    let _echoes = stage.echoes("web", &["v1", "v2"]).await;
    let revision = stage.set_policy("web", &[("v2", 100), ("v1", 0)], Sticky::default(), Route::default()).await;
    let (status, ready) = stage.admin("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let load = Load::start(&stage, "web", 4);

    postgres.stop();
    let outage: Value = wait_until("the router's /readyz to report the outage", PATIENCE, || async {
        let (status, body) = stage.admin("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    for _ in 0..200 {
        let answer: Value = stage.get("web", "/").await.json().await.expect("the last policy still serves");
        assert_eq!(answer["version"], "v2", "the last known policy (v2 100 %) is still in effect");
    }
    let during = load.finish().await;

    assert!(during.failures.is_empty(), "zero failed requests: {:?}", during.failures);
    assert_eq!(during.versions.keys().collect::<Vec<_>>(), ["v2"], "{:?}", during.versions);
    let message = outage["message"].as_str().expect("a message");
    assert!(
        message.starts_with(&format!("serving last known policy (revision web r{revision})"))
            && message.contains("PostgreSQL unreachable"),
        "{message}"
    );
    assert!(outage["failing_since"].is_string(), "{outage}");

    postgres.resume();
    wait_until("the router to be ready again", PATIENCE, || async {
        (stage.admin("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let back = stage.set_policy("web", &[("v1", 100), ("v2", 0)], Sticky::default(), Route::default()).await;
    assert_eq!(back, revision + 1, "changes reach the router again after the outage");
}
