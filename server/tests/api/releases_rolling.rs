//! Rolling releases on the demo's real processes (issue #6, point 4): `opsdeck demo` is its own
//! dashboard's deployer, so a rolling release of web v2 starts `opsdeck demo-service` processes
//! node by node, waits for opsdeck's health checks, shares traffic by healthy instance count,
//! stops each old instance, stops at the first new instance that can't become healthy (its port
//! is taken) with a report, rolls back by putting v1 back node by node, completes once it can,
//! and rolls back from completed too — while a steady GET load through the demo's router sees
//! no failed request.

use serde_json::{Value, json};
use testkit::wait_until;

use crate::{
    demo::PATIENCE,
    demo_router::Demo,
    router::{Load, Tally},
};

/// The demo's API as an operator.
struct Operator {
    http: reqwest::Client,
    dashboard: String,
    token: String,
}

impl Operator {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let answer = self
            .http
            .post(format!("{}/api/v1{path}", self.dashboard))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("the dashboard answers");
        (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}/api/v1{path}", self.dashboard))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the dashboard answers");
        answer.json().await.expect("json")
    }

    /// Starts a rolling release of web `version`; returns its id.
    async fn roll_web_to(&self, version: &str, ready_timeout_seconds: u32) -> i64 {
        let revision = self.get("/services/web/traffic").await["revision"].as_i64().expect("a revision");
        let start = json!({"strategy": "rolling", "target_version": version, "expected_revision": revision,
            "rolling": {"ready_timeout_seconds": ready_timeout_seconds}, "reason": "test roll"});
        let (status, release) = self.post("/services/web/releases", &start).await;
        assert_eq!(status, 201, "{release}");
        release["id"].as_i64().expect("a release id")
    }

    /// Waits until release `id` has ended; returns it.
    async fn ended(&self, id: i64) -> Value {
        wait_until("the rolling release to end", PATIENCE * 4, || async {
            let release = self.get(&format!("/releases/{id}")).await["release"].clone();
            (release["finished_at"] != Value::Null).then_some(release)
        })
        .await
    }

    /// Rolls release `id` back; returns the release right after.
    async fn rollback(&self, id: i64) -> Value {
        let revision = self.get("/services/web/traffic").await["revision"].clone();
        let (status, release) = self
            .post(&format!("/releases/{id}/actions"), &json!({"action": "rollback", "expected_revision": revision}))
            .await;
        assert_eq!(status, 200, "{release}");
        release
    }

    async fn weights(&self) -> Vec<(String, u64)> {
        let policy = self.get("/services/web/traffic").await;
        let mut weights: Vec<(String, u64)> = policy["weights"]
            .as_array()
            .expect("weights")
            .iter()
            .map(|w| (w["version"].as_str().unwrap_or("?").to_owned(), w["percent"].as_u64().unwrap_or(0)))
            .collect();
        weights.sort();
        weights
    }
}

/// The process state of each demo instance, by id.
async fn fleet(http: &reqwest::Client, control: &str) -> Vec<(String, String)> {
    let members: Vec<Value> =
        http.get(format!("{control}/fleet")).send().await.expect("control answers").json().await.expect("json");
    let mut states: Vec<(String, String)> = members
        .iter()
        .map(|m| (m["id"].as_str().unwrap_or("?").to_owned(), m["state"].as_str().unwrap_or("?").to_owned()))
        .collect();
    states.sort();
    states
}

async fn expect_fleet(http: &reqwest::Client, control: &str, expected: &[(&str, &str)]) {
    let states = fleet(http, control).await;
    for (id, state) in expected {
        assert!(states.contains(&((*id).to_owned(), (*state).to_owned())), "{id} {state}: {states:?}");
    }
}

fn steps_of(release: &Value) -> Vec<(String, String)> {
    release["rolling"]["steps"]
        .as_array()
        .expect("rolling steps")
        .iter()
        .map(|s| (s["node"].as_str().unwrap_or("?").to_owned(), s["state"].as_str().unwrap_or("?").to_owned()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[tokio::test]
async fn a_rolling_release_replaces_web_node_by_node_stops_at_the_first_that_cant_start_rolls_back_by_redeploying_and_completes_once_it_can()
 {
    let (demo, _) = Demo::start().await;
    let http = reqwest::Client::builder().timeout(PATIENCE).build().expect("client");
    let operator =
        Operator { http: http.clone(), dashboard: demo.dashboard.clone(), token: demo.operator_token().await };
    // web v2 on east-2 will want 127.0.1.2:base+1: taken, so that instance exits at start.
    let taken = tokio::net::TcpListener::bind(("127.0.1.2", demo.port_base + 1)).await.expect("the port is free");
    wait_until("web to answer through the demo's router", PATIENCE, || async {
        let answer = http.get(format!("{}/checkout", demo.router)).header("host", "web").send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    let load = Load::through(&http, &demo.router, "web", 4);

    // First roll: east-1 is replaced, east-2's new instance can't start → failed, with a report.
    let first = operator.roll_web_to("v2", 30).await;
    let failed = operator.ended(first).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(steps_of(&failed), pairs(&[("east-1", "replaced"), ("east-2", "failed")]), "{failed}");
    let report = failed["status_reason"].as_str().unwrap_or_default();
    for part in ["stopped at step 2 of 2 (east-2)", "web v2 on east-2", "Replaced so far: east-1", "v1 still runs on"] {
        assert!(report.contains(part), "{part:?} missing from the report: {report}");
    }
    assert_eq!(
        operator.weights().await,
        [("v1".to_owned(), 33), ("v2".to_owned(), 67)],
        "traffic by healthy instances: v2 on east-1 and east-3, v1 on east-2"
    );
    let touched = [("web-v1@east-1", "stopped"), ("web-v2@east-1", "running"), ("web-v1@east-2", "running")];
    expect_fleet(&http, &demo.control, &touched).await;
    let inbox = operator.get("/inbox").await;
    let waiting = inbox.as_array().expect("inbox").iter().find(|item| item["release_id"] == first).cloned();
    assert!(waiting.is_some_and(|item| item["state"] == "failed"), "the failure waits for a person: {inbox}");
    let audited = sqlx::query_scalar!(
        "SELECT count(*) FROM audit_log WHERE action = 'release.action' AND target = $1 AND detail LIKE 'rolling_failed:%'",
        format!("release {first} (web)")
    )
    .fetch_one(&demo.db)
    .await
    .expect("audit");
    assert_eq!(audited, Some(1), "one audit row for the failure");

    // Roll back: all traffic on v1 at once (it still serves on east-2), then v1 goes back onto
    // the nodes the roll touched, last first.
    let rolling_back = operator.rollback(first).await;
    assert_eq!(rolling_back["state"], "progressing", "{rolling_back}");
    assert_eq!(rolling_back["rolling"]["rolling_back"], true, "{rolling_back}");
    assert_eq!(operator.weights().await, [("v1".to_owned(), 100), ("v2".to_owned(), 0)]);
    let rolled_back = operator.ended(first).await;
    assert_eq!(rolled_back["state"], "rolled_back", "{rolled_back}");
    assert_eq!(steps_of(&rolled_back), pairs(&[("east-2", "replaced"), ("east-1", "replaced")]));
    expect_fleet(&http, &demo.control, &[("web-v1@east-1", "running"), ("web-v2@east-1", "stopped")]).await;

    // Free the port and roll again: both nodes are replaced.
    drop(taken);
    let second = operator.roll_web_to("v2", 60).await;
    let completed = operator.ended(second).await;
    assert_eq!(completed["state"], "completed", "{completed}");
    assert_eq!(steps_of(&completed), pairs(&[("east-1", "replaced"), ("east-2", "replaced")]));
    assert_eq!(operator.weights().await, [("v1".to_owned(), 0), ("v2".to_owned(), 100)]);
    let replaced = [("web-v1@east-1", "stopped"), ("web-v1@east-2", "stopped"), ("web-v2@east-2", "running")];
    expect_fleet(&http, &demo.control, &replaced).await;
    let history = operator.get(&format!("/releases/{second}")).await["history"].clone();
    let actions: Vec<&str> =
        history.as_array().expect("history").iter().rev().filter_map(|h| h["action"].as_str()).collect();
    let node = ["rolling_started", "rolling_healthy", "rolling_replaced"];
    assert_eq!(actions, [&["start"][..], &node, &node, &["rolling_completed"]].concat());

    // The release page draws the nodes: mark and word, what serves there now.
    let page = http
        .get(format!("{}/releases/{second}", demo.dashboard))
        .bearer_auth(&operator.token)
        .send()
        .await
        .expect("the page answers");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"data-node="east-2" data-state="Replaced""#), "no replaced east-2 node in the page");
    assert!(html.contains("Nodes: 2 of 2 node(s) replaced"), "no node count in the page");

    // A completed roll rolls back too: v1 is deployed again on both nodes, v2 stopped there.
    operator.rollback(second).await;
    let undone = operator.ended(second).await;
    assert_eq!(undone["state"], "rolled_back", "{undone}");
    assert_eq!(operator.weights().await, [("v1".to_owned(), 100), ("v2".to_owned(), 0)]);
    let restored = [
        ("web-v1@east-1", "running"),
        ("web-v1@east-2", "running"),
        ("web-v2@east-1", "stopped"),
        ("web-v2@east-2", "stopped"),
        ("web-v2@east-3", "running"),
    ];
    expect_fleet(&http, &demo.control, &restored).await;

    let Tally { ok, failures, versions } = load.finish().await;
    assert!(failures.is_empty(), "{} of {} requests failed during the rolls: {failures:?}", failures.len(), ok);
    assert!(ok >= 100 && versions.contains_key("v1") && versions.contains_key("v2"), "{ok} answered: {versions:?}");
    demo.stop().await;
}
