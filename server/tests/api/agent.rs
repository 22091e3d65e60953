//! `opsdeck agent` as a real process: it checks its node in (creating it), keeps it alive, and
//! when it is killed the health model marks the node down because its agent went silent.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use app::model::identity::Scope;
use serde_json::Value;
use testkit::{TestApp, wait_until};

fn agent(app: &TestApp, token: Option<&str>, node: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "agent", "--cluster", "edge", "--node", node, "--every", "1s"])
        .args(["--address", "127.0.0.1", "--opsdeck-url", &app.address])
        .env_remove("OPSDECK_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("OPSDECK_TOKEN", token);
    }
    command
}

async fn node_view(app: &TestApp, reader: &str, node: &str) -> Option<Value> {
    let view: Value =
        app.http.get(app.url("/api/v1/topology")).bearer_auth(reader).send().await.ok()?.json().await.ok()?;
    view["clusters"]
        .as_array()?
        .iter()
        .flat_map(|c| c["nodes"].as_array().cloned().unwrap_or_default())
        .find(|n| n["name"] == node)
}

#[tokio::test]
async fn an_agent_checks_its_node_in_and_its_silence_marks_the_node_down() {
    let app = TestApp::spawn().await;
    let (ingest, reader) = (app.token("agent", &[Scope::Ingest]).await, app.token("screen", &[Scope::Read]).await);
    let mut process = agent(&app, Some(&ingest), "edge-1").spawn().expect("the agent starts");

    let seen = wait_until("the node to be checked in", Duration::from_secs(20), || async {
        let row: Option<(Option<String>, Option<i32>)> = sqlx::query_as(
            "SELECT n.address, n.agent_every_ms FROM nodes n JOIN clusters c ON c.id = n.cluster_id
             WHERE c.name = 'edge' AND n.name = 'edge-1' AND n.agent_seen_at IS NOT NULL",
        )
        .fetch_optional(&app.db)
        .await
        .ok()?;
        row
    })
    .await;
    assert_eq!(seen, (Some("127.0.0.1".to_owned()), Some(1000)));
    let created: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'topology_edited'")
        .fetch_one(&app.db)
        .await
        .expect("events");
    assert!(created >= 1, "the new node was pushed as an event");
    let alive = node_view(&app, &reader, "edge-1").await.expect("the node is in the topology");
    assert_ne!(alive["health"], "down", "{alive}");

    // Its vital signs arrive in InfluxDB through the metrics endpoint.
    let cpu = wait_until("the node's vital signs in InfluxDB", Duration::from_secs(20), || async {
        let results = app
            .influx
            .query("SELECT last(cpu_percent), last(memory_total_bytes) FROM node WHERE node = 'edge-1' AND cluster = 'edge'")
            .await
            .ok()?;
        let series = results.first()?.series.first()?.clone();
        let cpu = series.f64_column("last")?.first().copied().flatten()?;
        let memory = series.f64_column("last_1")?.first().copied().flatten()?;
        (memory > 0.0).then_some(cpu)
    })
    .await;
    assert!((0.0..=100.0).contains(&cpu), "CPU {cpu} %");

    process.kill().expect("kill the agent");
    let _ = process.wait();
    let down = wait_until("the silent node to be down", Duration::from_secs(20), || async {
        node_view(&app, &reader, "edge-1").await.filter(|n| n["health"] == "down")
    })
    .await;
    let reason = down["down_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("its agent has been silent") && reason.contains("reports every 1 s"), "{down}");
}

#[tokio::test]
async fn an_agent_without_a_token_or_with_a_read_token_stops_at_once_saying_why() {
    let app = TestApp::spawn().await;
    let output = agent(&app, None, "edge-2").output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OPSDECK_TOKEN is not set"), "{stderr}");

    let reader = app.token("screen", &[Scope::Read]).await;
    let output = agent(&app, Some(&reader), "edge-2").output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused the token") && stderr.contains("ingest"), "{stderr}");
}
