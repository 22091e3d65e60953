//! `/healthz`, `/readyz` and graceful shutdown.

use std::time::Duration;

use testkit::{InfluxProcess, TestApp, wait_until};

#[tokio::test]
async fn healthz_answers_alive() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "alive");
}

#[tokio::test]
async fn readyz_is_200_with_every_store_checked_when_both_answer() {
    let app = TestApp::spawn().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["ready"], true);
    let names: Vec<_> = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["dependency"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["postgres", "influxdb", "metrics"]);
}

#[tokio::test]
async fn stopping_influxdb_turns_readyz_to_503_naming_it_and_it_recovers() {
    let mut influx = InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| settings.influx.url = url).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    influx.stop();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unavailable: InfluxDB");
    let influx_check = body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["dependency"] == "influxdb"))
        .expect("influx check")
        .clone();
    assert_eq!(influx_check["ok"], false);
    assert!(influx_check["error"].as_str().is_some_and(|e| e.contains("did not answer")), "{influx_check}");
    let postgres_check = body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["dependency"] == "postgres"))
        .expect("pg check")
        .clone();
    assert_eq!(postgres_check["ok"], true, "only the store that is down is named");

    influx.resume().await;
    wait_until("readyz to recover", Duration::from_secs(10), || async {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_postgres_makes_readyz_503_naming_it() {
    let app = TestApp::spawn().await;
    // Closing the pool is what an outage looks like to the handler: no connection to be had.
    app.db.close().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unavailable: PostgreSQL");
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    // An InfluxDB that accepts connections but never answers keeps /readyz busy for its whole
    // check timeout: a request that is surely in flight when shutdown begins.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", black_hole.local_addr().expect("addr")).parse().expect("url");
    let mut app = TestApp::spawn_with(|settings| settings.influx.url = url).await;
    let request = tokio::spawn(app.http.get(app.url("/readyz")).send());

    let _held_open = accept_ping(&black_hole).await;
    app.begin_shutdown();

    let response = request.await.expect("task").expect("the in-flight request is answered, not cut");
    assert_eq!(response.status(), 503);
    app.finished().await.expect("the server stops cleanly");
}

/// Accepts connections until one carries the readiness check's `GET /ping` (start-up sent a
/// `CREATE DATABASE` to the same address first), and returns it unanswered.
async fn accept_ping(listener: &tokio::net::TcpListener) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncReadExt;
    let mut held = Vec::new();
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = [0_u8; 16];
        let read = stream.read(&mut head).await.unwrap_or(0);
        let is_ping = head[..read].starts_with(b"GET /ping");
        held.push(stream);
        if is_ping {
            return held;
        }
    }
}

#[tokio::test]
async fn unknown_api_routes_answer_json_404() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("/api/v1/nothing-here")));
}
