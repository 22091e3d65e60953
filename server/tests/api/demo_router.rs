//! `opsdeck demo` sends its load through its own `opsdeck router` child: every service starts
//! 100 % on v1 with its v2 running beside it at 0 %, and a canary policy moves part of the
//! demo's load to v2 — seen in the router's own `router_requests` points in InfluxDB.

use std::collections::HashMap;

use app::model::{
    identity::{NewToken, Scope},
    traffic::{TrafficChange, VersionWeight},
};
use opsdeck::traffic::store;
use serde_json::{Value, json};
use testkit::{TestEnv, free_port, wait_until};

use crate::demo::{PATIENCE, Process};

/// Requests the router served for web so far, by version.
async fn routed_by_version(influx: &url::Url, database: &str) -> Option<HashMap<String, u64>> {
    let mut url = influx.join("/query").ok()?;
    url.query_pairs_mut()
        .append_pair("db", database)
        .append_pair("q", "SELECT sum(requests) FROM router_requests WHERE service = 'web' GROUP BY version");
    let answer: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let series = answer["results"][0]["series"].as_array().cloned().unwrap_or_default();
    Some(
        series
            .iter()
            .filter_map(|s| Some((s["tags"]["version"].as_str()?.to_owned(), s["values"][0][1].as_u64()?)))
            .collect(),
    )
}

/// A running `opsdeck demo --fleet small` with its router, on free ports and its own databases.
pub(crate) struct Demo {
    pub(crate) process: Process,
    pub(crate) db: sqlx::PgPool,
    influx_url: url::Url,
    influx_database: String,
    pub(crate) dashboard: String,
    pub(crate) control: String,
    /// Where the demo's router takes client traffic (Host: web).
    pub(crate) router: String,
    router_admin: String,
    /// `--service-port-base`: web vN listens on base + N − 1 of its node's address.
    pub(crate) port_base: u16,
}

impl Demo {
    /// Starts the demo and waits until web has the demo's initial policy; returns it too.
    pub(crate) async fn start() -> (Self, app::model::traffic::TrafficPolicy) {
        let env = TestEnv::from_env();
        let database = env.fresh_database().await;
        let influx_database = format!("demo_router_{}", uuid::Uuid::new_v4().simple());
        let (dashboard_port, control_port, router_port, admin_port) =
            (free_port(), free_port(), free_port(), free_port());
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
        let process = Process::spawn(command);
        let (db, policy) = wait_until("the demo's initial traffic policy", PATIENCE, || async {
            let pool = sqlx::PgPool::connect_with(database.connect_options()).await.ok()?;
            let policy = store::load(&pool, "web").await.ok()??;
            (policy.revision > 0).then_some((pool, policy))
        })
        .await;
        let demo = Self {
            process,
            db,
            influx_url: env.influx_url.clone(),
            influx_database,
            dashboard: format!("http://127.0.0.1:{dashboard_port}"),
            control: format!("http://127.0.0.1:{control_port}"),
            router: format!("http://127.0.0.1:{router_port}"),
            router_admin: format!("http://127.0.0.1:{admin_port}"),
            port_base,
        };
        (demo, policy)
    }

    async fn routed(&self) -> Option<HashMap<String, u64>> {
        routed_by_version(&self.influx_url, &self.influx_database).await
    }

    /// A token that may read and operate (release actions).
    pub(crate) async fn operator_token(&self) -> String {
        let (actor, context) = (opsdeck::audit::Actor::system("test"), opsdeck::auth::RequestContext::default());
        let request = NewToken {
            name: "release engineer".into(),
            scopes: vec![Scope::Read, Scope::Operate],
            expires_in_days: None,
        };
        opsdeck::auth::tokens::create(&self.db, &request, &actor, &context).await.expect("a token").secret
    }

    /// Stops the demo (SIGTERM) and checks that it exits cleanly.
    pub(crate) async fn stop(mut self) {
        self.process.sigterm();
        let status = self.process.exit_status().await;
        assert!(status.success(), "exit {status:?}: {}", self.process.output());
    }
}

#[tokio::test]
async fn the_demo_load_reaches_v1_through_the_router_and_a_canary_policy_sends_part_of_it_to_v2() {
    let (demo, policy) = Demo::start().await;
    let weights: Vec<(&str, u8)> = policy.weights.iter().map(|w| (w.version.as_str(), w.percent)).collect();
    assert_eq!(weights, [("v1", 100), ("v2", 0)], "web starts all on v1, its v2 at 0 %");

    let first = wait_until("the demo's load to reach web v1 through the router", PATIENCE, || async {
        let routed = demo.routed().await?;
        (routed.get("v1").copied().unwrap_or(0) >= 30).then_some(routed)
    })
    .await;
    assert_eq!(first.get("v2"), None, "at 100/0 the router sends nothing to v2: {first:?}");
    let status: serde_json::Value = reqwest::get(format!("{}/status", demo.router_admin))
        .await
        .expect("the router's admin listener answers")
        .json()
        .await
        .expect("json");
    assert!(status.to_string().contains("\"web\""), "the router knows web: {status}\n{}", demo.process.output());

    let mut tx = demo.db.begin().await.expect("begin");
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
        let routed = demo.routed().await?;
        (routed.get("v2").copied().unwrap_or(0) > 0).then_some(())
    })
    .await;

    demo.stop().await;
}

#[tokio::test]
async fn a_canary_of_the_demos_faulty_v2_fails_analysis_and_rolls_back_by_itself() {
    let (demo, policy) = Demo::start().await;
    let token = demo.operator_token().await;
    let http = reqwest::Client::builder().timeout(PATIENCE).build().expect("client");
    wait_until("the demo's load to reach web v1 through the router", PATIENCE, || async {
        (demo.routed().await?.get("v1").copied().unwrap_or(0) >= 30).then_some(())
    })
    .await;

    let faulty = http
        .put(format!("{}/instances/web-v2@east-3/mode", demo.control))
        .body(r#"{"mode":"faulty"}"#)
        .send()
        .await
        .expect("the control API answers");
    assert_eq!(faulty.status(), 200);
    let start = json!({"strategy": "canary", "target_version": "v2", "expected_revision": policy.revision,
        "steps": [{"percent": 50, "hold_seconds": 600}, {"percent": 100, "hold_seconds": 0}],
        "analysis": {"interval_seconds": 1, "max_error_rate": 0.1, "max_p99_ratio": 50.0, "min_samples": 5,
                     "breaches_to_rollback": 2}});
    let started = http
        .post(format!("{}/api/v1/services/web/releases", demo.dashboard))
        .bearer_auth(&token)
        .json(&start)
        .send()
        .await
        .expect("the dashboard answers");
    assert_eq!(started.status(), 201);
    let id = started.json::<Value>().await.expect("json")["id"].as_i64().expect("a release id");

    let ended = wait_until("the faulty canary to be rolled back by itself", PATIENCE * 2, || async {
        let answer =
            http.get(format!("{}/api/v1/releases/{id}", demo.dashboard)).bearer_auth(&token).send().await.ok()?;
        let release = answer.json::<Value>().await.ok()?["release"].clone();
        (release["state"] == "rolled_back").then_some(release)
    })
    .await;
    let reason = ended["status_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("rolled back automatically"), "{ended}");
    let routed = demo.routed().await.expect("router_requests");
    assert!(routed.get("v2").copied().unwrap_or(0) > 0, "the canary got part of the demo's load: {routed:?}");
    let after = store::load(&demo.db, "web").await.expect("load").expect("web");
    assert_eq!(after.percent_of("v1"), 100, "web is back on v1: {after:?}");

    demo.stop().await;
}

#[tokio::test]
async fn the_demos_router_stops_when_the_demo_is_killed_instead_of_outliving_it() {
    let (demo, _) = Demo::start().await;
    let healthz = format!("{}/healthz", demo.router_admin);
    wait_until("the demo's router to answer", PATIENCE, || async {
        reqwest::get(&healthz).await.ok()?.status().is_success().then_some(())
    })
    .await;

    let killed = std::process::Command::new("kill").args(["-KILL", &demo.process.pid().to_string()]).status();
    assert!(killed.expect("kill runs").success());

    wait_until("the demo's router to stop with the demo", PATIENCE, || async {
        reqwest::get(&healthz).await.is_err().then_some(())
    })
    .await;
}
