//! Demo services when opsdeck or InfluxDB is away: requests are answered without waiting, log
//! lines and points are buffered within a bound (the oldest dropped and counted, the count
//! reported once opsdeck is back), and points refused with 503 + `Retry-After` all arrive later.

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::Value;
use testkit::{InfluxProcess, TestApp, TestEnv, free_port, wait_until};

use crate::{
    demo::{PATIENCE, Stage},
    demo_traffic::{QUICK_TELEMETRY, search_logs},
};

#[tokio::test]
async fn with_opsdeck_down_a_demo_service_keeps_answering_and_counts_the_log_lines_it_drops() {
    let stage = Stage::new().await;
    let (payments, port) = stage.service_with("payments", &["--telemetry-buffer", "20", "--telemetry-every", "100ms"]);
    stage.registered("payments", port, &payments).await;
    let Stage { app, .. } = stage;
    app.stop().await.expect("opsdeck stops");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let started = tokio::time::Instant::now();
    for _ in 0..40 {
        let answer = http.get(format!("http://127.0.0.1:{port}/checkout")).send().await.expect("an answer");
        assert_eq!(answer.status(), 200);
    }

    // Each request writes two lines into a buffer of 20: most were dropped, counted, not waited on.
    assert!(started.elapsed() < Duration::from_secs(5), "40 requests took {:?}", started.elapsed());
    let hello: Value =
        http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answer").json().await.expect("json");
    let logs = &hello["telemetry"]["logs"];
    assert!(logs["queued"].as_u64().is_some_and(|n| n <= 20), "{hello}");
    assert!(logs["dropped_full"].as_u64().is_some_and(|n| n >= 60), "{hello}");
    assert!(hello["telemetry"]["metrics"]["dropped_full"].as_u64().is_some_and(|n| n >= 20), "{hello}");
    wait_until("the service to say it keeps its lines for later", PATIENCE, || async {
        payments.output().contains("cannot send log lines to opsdeck").then_some(())
    })
    .await;
}

#[tokio::test]
async fn request_points_refused_with_503_while_influxdb_is_down_are_kept_and_all_arrive_once_it_returns() {
    let mut influx = InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| {
        settings.influx.url = url;
        settings.metrics.buffer_points = 100;
    })
    .await;
    let ingest = app.token("demo-fleet", &[Scope::Ingest, Scope::Read]).await;
    let stage = Stage { reader: app.token("reader", &[Scope::Read]).await, app, ingest };
    let (payments, port) = stage.service_with("payments", &QUICK_TELEMETRY);
    stage.registered("payments", port, &payments).await;
    influx.stop();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    for _ in 0..150 {
        let answer = http.get(format!("http://127.0.0.1:{port}/checkout")).send().await.expect("an answer");
        assert_eq!(answer.status(), 200);
    }

    // opsdeck holds 100 points for InfluxDB, then refuses with 503 + Retry-After; the service
    // keeps the rest and retries after the wait.
    wait_until("opsdeck to refuse points with 503", PATIENCE, || async {
        payments.output().contains("cannot send request metrics to opsdeck").then_some(())
    })
    .await;
    let output = payments.output();
    assert!(output.contains("503 Service Unavailable"), "{output}");
    assert!(
        output.contains(r#""retry_in_ms":5000"#) || output.contains(r#""retry_in_ms":1000"#),
        "Retry-After honoured: {output}"
    );
    influx.resume().await;
    let count = || async {
        let results = stage.app.influx.query("SELECT count(status) FROM http_requests").await.ok()?;
        let series = results.into_iter().next()?.series;
        series.first()?.f64_column("count")?.first().copied().flatten()
    };
    wait_until("all 150 points to arrive", Duration::from_secs(60), || async {
        (count().await == Some(150.0)).then_some(())
    })
    .await;
    let hello: Value =
        http.get(format!("http://127.0.0.1:{port}/")).send().await.expect("answer").json().await.expect("json");
    assert_eq!(hello["telemetry"]["metrics"]["dropped_full"], 0, "{hello}");
}

#[tokio::test]
async fn once_opsdeck_is_back_a_service_says_in_its_logs_how_many_lines_and_points_it_dropped() {
    let mut settings = TestEnv::from_env().serve_settings().await;
    settings.http.listen = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
    let app = TestApp::start(settings.clone()).await;
    let ingest = app.token("demo-fleet", &[Scope::Ingest, Scope::Read]).await;
    let stage = Stage { reader: app.token("reader", &[Scope::Read]).await, app, ingest };
    let (payments, port) = stage.service_with("payments", &["--telemetry-buffer", "20", "--telemetry-every", "100ms"]);
    stage.registered("payments", port, &payments).await;
    let Stage { app, ingest, reader } = stage;
    app.stop().await.expect("opsdeck stops");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    for _ in 0..40 {
        let answer = http.get(format!("http://127.0.0.1:{port}/checkout")).send().await.expect("an answer");
        assert_eq!(answer.status(), 200);
    }

    // The same opsdeck (database, address) comes back.
    let stage = Stage { app: TestApp::start(settings).await, ingest, reader };

    let lines = search_logs(&stage, "service=payments&level=warning", "the report of what was dropped", |lines| {
        lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("were dropped")))
    })
    .await;
    let report = lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains("were dropped"))).expect("it");
    let dropped = report["fields"]["dropped_log_lines"].as_u64().expect("a count");
    assert!(dropped >= 60, "40 requests wrote 80 lines into a buffer of 20: {report}");
    assert!(report["fields"]["dropped_request_points"].as_u64().is_some_and(|n| n >= 20), "{report}");
    assert!(
        report["message"].as_str().is_some_and(|m| m.starts_with(&format!("{dropped} log lines and "))),
        "{report}"
    );
}
