//! `opsdeck demo` sends its load through its own `opsdeck router` child: every service starts
//! 100 % on v1 with its v2 running beside it at 0 %, and a canary policy moves part of the
//! demo's load to v2 — seen in the router's own `router_requests` points in InfluxDB.

use std::collections::HashMap;

use app::model::traffic::{TrafficChange, VersionWeight};
use opsdeck::traffic::store;
use testkit::{TestEnv, free_port, wait_until};

use crate::demo::{PATIENCE, Process};

/// Requests the router served for web so far, by version.
async fn routed_by_version(influx: &url::Url, database: &str) -> Option<HashMap<String, u64>> {
    let mut url = influx.join("/query").ok()?;
    url.query_pairs_mut()
        .append_pair("db", database)
        .append_pair("q", "SELECT count(latency_ms) FROM router_requests WHERE service = 'web' GROUP BY version");
    let answer: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let series = answer["results"][0]["series"].as_array().cloned().unwrap_or_default();
    Some(
        series
            .iter()
            .filter_map(|s| Some((s["tags"]["version"].as_str()?.to_owned(), s["values"][0][1].as_u64()?)))
            .collect(),
    )
}

#[tokio::test]
async fn the_demo_load_reaches_v1_through_the_router_and_a_canary_policy_sends_part_of_it_to_v2() {
    let env = TestEnv::from_env();
    let database = env.fresh_database().await;
    let influx_database = format!("demo_router_{}", uuid::Uuid::new_v4().simple());
    let (dashboard_port, control_port, router_port, admin_port) = (free_port(), free_port(), free_port(), free_port());
    let port_base = free_port().min(60000);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "demo", "--fleet", "small", "--traffic-rps", "10"])
        .args(["--listen", &format!("127.0.0.1:{dashboard_port}")])
        .args(["--control-listen", &format!("127.0.0.1:{control_port}")])
        .args(["--service-port-base", &port_base.to_string()])
        .args(["--router-listen", &format!("127.0.0.1:{router_port}")])
        .args(["--router-admin-listen", &format!("127.0.0.1:{admin_port}")])
        .env("DATABASE_URL", database.to_string())
        .env("OPSDECK_INFLUX_URL", env.influx_url.as_str())
        .env("OPSDECK_INFLUX_DATABASE", &influx_database)
        .env("OPSDECK_SITE_ROOT", &env.site_root);
    let mut demo = Process::spawn(command);
    let db = wait_until("the demo's initial traffic policy", PATIENCE, || async {
        let pool = sqlx::PgPool::connect_with(database.connect_options()).await.ok()?;
        let policy = store::load(&pool, "web").await.ok()??;
        (policy.revision > 0).then_some((pool, policy))
    })
    .await;
    let (db, policy) = db;
    let weights: Vec<(&str, u8)> = policy.weights.iter().map(|w| (w.version.as_str(), w.percent)).collect();
    assert_eq!(weights, [("v1", 100), ("v2", 0)], "web starts all on v1, its v2 at 0 %");

    let first = wait_until("the demo's load to reach web v1 through the router", PATIENCE, || async {
        let routed = routed_by_version(&env.influx_url, &influx_database).await?;
        (routed.get("v1").copied().unwrap_or(0) >= 30).then_some(routed)
    })
    .await;
    assert_eq!(first.get("v2"), None, "at 100/0 the router sends nothing to v2: {first:?}");
    let status: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{admin_port}/status"))
        .await
        .expect("the router's admin listener answers")
        .json()
        .await
        .expect("json");
    assert!(status.to_string().contains("\"web\""), "the router knows web: {status}\n{}", demo.output());

    let mut tx = db.begin().await.expect("begin");
    let change = TrafficChange {
        expected_revision: policy.revision,
        weights: vec![
            VersionWeight { version: "v1".into(), percent: 90 },
            VersionWeight { version: "v2".into(), percent: 10 },
        ],
        sticky: Default::default(),
        route: Default::default(),
        reason: Some("a 10 % canary of web v2".into()),
    };
    store::write(&mut tx, "web", &change, "test").await.expect("the canary policy is written");
    tx.commit().await.expect("commit");
    wait_until("part of the demo's load to reach web v2 through the router", PATIENCE, || async {
        let routed = routed_by_version(&env.influx_url, &influx_database).await?;
        (routed.get("v2").copied().unwrap_or(0) > 0).then_some(())
    })
    .await;

    demo.sigterm();
    let status = demo.exit_status().await;
    assert!(status.success(), "exit {status:?}: {}", demo.output());
}
