//! Chart queries on the real stack: request points written through `POST /api/v1/metrics`
//! (ingest token) are read back by `GET /api/v1/metrics/services/{service}` as rate, error rate
//! and percentiles per version; empty buckets are null, not zero; node vitals round-trip; bad
//! windows are 400s naming the parameter; unknown services and nodes are 404s; health changes
//! come back as markers.

use std::time::Duration;

use app::model::identity::Scope;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use testkit::{TestApp, free_port, wait_until};

struct Charts {
    app: TestApp,
    ingest: String,
    read: String,
}

impl Charts {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        let read = app.token("viewer", &[Scope::Read]).await;
        Self { app, ingest, read }
    }

    /// Registers an instance (which creates its service, cluster and node) and returns its id.
    async fn register(&self, service: &str, version: &str, cluster: &str, node: &str) -> String {
        let body = json!({"service": service, "version": version, "cluster": cluster, "node": node,
                          "host": "127.0.0.1", "port": free_port(), "health_check_path": "/"});
        let response =
            self.app.http.post(self.app.url("/api/v1/instances")).bearer_auth(&self.ingest).json(&body).send().await;
        let response = response.expect("answer");
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned()
    }

    async fn write(&self, lines: &str) {
        let response = self
            .app
            .http
            .post(self.app.url("/api/v1/metrics?precision=ms"))
            .bearer_auth(&self.ingest)
            .body(lines.to_owned())
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.app.http.get(self.app.url(path)).bearer_auth(&self.read).send().await.expect("answer");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A whole minute a few minutes ago, so its buckets are complete and inside the window.
fn minute_ago(minutes: i64) -> DateTime<Utc> {
    (Utc::now() - TimeDelta::minutes(minutes)).duration_trunc(TimeDelta::minutes(1)).expect("truncate")
}

fn request_line(instance: &str, at: DateTime<Utc>, status: u16, latency_ms: f64) -> String {
    // A timeout or refused connection (status 0) counts as 5xx.
    let class = if status == 0 { "5xx".to_owned() } else { format!("{}xx", status / 100) };
    format!(
        "http_requests,instance={instance},method=GET,status_class={class} latency_ms={latency_ms},status={status}i {}\n",
        at.timestamp_millis()
    )
}

fn bucket_of(body: &Value, at: DateTime<Utc>) -> usize {
    let wanted = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    body["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .position(|b| {
            DateTime::parse_from_rfc3339(b.as_str().expect("time"))
                .expect("time")
                .with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                == wanted
        })
        .unwrap_or_else(|| panic!("no bucket at {wanted} in {}", body["buckets"]))
}

fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).replace('+', "%2B"),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).replace('+', "%2B")
    )
}

#[tokio::test]
async fn requests_written_through_the_metrics_api_come_back_as_rate_error_rate_and_percentiles_per_version() {
    let charts = Charts::new().await;
    let v1 = charts.register("web", "v1", "east", "east-1").await;
    let v2 = charts.register("web", "v2", "east", "east-2").await;
    let t0 = minute_ago(10);
    // v1: ten requests in the first 30 s bucket, 10..100 ms, two of them 5xx (one a timeout,
    // status 0); then nothing for 30 s; then two 200s.
    let mut lines = String::new();
    for i in 0..10 {
        let status = match i {
            3 => 503,
            7 => 0,
            _ => 200,
        };
        lines.push_str(&request_line(&v1, t0 + TimeDelta::seconds(i + 1), status, 10.0 * (i + 1) as f64));
    }
    lines.push_str(&request_line(&v1, t0 + TimeDelta::seconds(61), 200, 5.0));
    lines.push_str(&request_line(&v1, t0 + TimeDelta::seconds(62), 204, 7.0));
    lines.push_str(&request_line(&v2, t0 + TimeDelta::seconds(2), 200, 3.0));
    charts.write(&lines).await;

    let path =
        format!("/api/v1/metrics/services/web?{}", window(t0 - TimeDelta::minutes(30), t0 + TimeDelta::minutes(5)));
    let body = wait_until("13 requests in the chart", Duration::from_secs(20), || async {
        let body = charts.ok(&path).await;
        let total: u64 = body["versions"].as_array()?.iter().filter_map(|v| v["requests"].as_u64()).sum();
        (total == 13).then_some(body)
    })
    .await;
    assert_eq!(body["window"]["bucket_seconds"], 30, "35 min → 30 s buckets");
    assert_eq!(body["has_data"], true);
    let versions = body["versions"].as_array().expect("versions");
    assert_eq!(versions.iter().map(|v| v["version"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["v1", "v2"]);
    let web_v1 = &versions[0];
    let (first, gap, second) = (
        bucket_of(&body, t0),
        bucket_of(&body, t0 + TimeDelta::seconds(30)),
        bucket_of(&body, t0 + TimeDelta::seconds(60)),
    );
    let close = |value: &Value, expected: f64| (value.as_f64().expect("a number") - expected).abs() < 1e-9;
    assert!(close(&web_v1["request_rate"][first], 10.0 / 30.0), "{}", web_v1["request_rate"][first]);
    assert!(close(&web_v1["error_rate"][first], 0.2), "{}", web_v1["error_rate"][first]);
    assert!(close(&web_v1["p50_ms"][first], 50.0), "{}", web_v1["p50_ms"][first]);
    assert!(close(&web_v1["p95_ms"][first], 100.0));
    assert!(close(&web_v1["p99_ms"][first], 100.0));
    // The bucket in between had no request: missing, not zero.
    for series in ["request_rate", "error_rate", "p50_ms", "p99_ms"] {
        assert_eq!(web_v1[series][gap], Value::Null, "{series} of an empty bucket");
    }
    // Only 2xx: an error rate of zero, not missing.
    assert!(close(&web_v1["error_rate"][second], 0.0), "{}", web_v1["error_rate"][second]);
    assert!(close(&web_v1["request_rate"][second], 2.0 / 30.0));
    // The earliest bucket of the window had nothing at all.
    assert_eq!(web_v1["request_rate"][0], Value::Null);
    assert_eq!(versions[1]["requests"], 1);
}

#[tokio::test]
async fn a_window_without_requests_says_there_is_no_data_instead_of_zeros() {
    let charts = Charts::new().await;
    charts.register("quiet", "v1", "east", "east-1").await;
    let body = charts.ok("/api/v1/metrics/services/quiet?range=15m").await;
    assert_eq!(body["has_data"], false);
    assert_eq!(body["versions"], json!([]));
    assert_eq!(body["window"]["bucket_seconds"], 15);
    let buckets = body["buckets"].as_array().expect("buckets").len();
    assert!((60..=61).contains(&buckets), "{buckets} buckets of 15 s in 15 min");
}

#[tokio::test]
async fn node_cpu_and_memory_written_by_an_agent_come_back_per_bucket_with_the_instances_on_the_node() {
    let charts = Charts::new().await;
    let instance = charts.register("web", "v1", "east", "east-1").await;
    let t0 = minute_ago(5);
    let lines: String = [(t0, 40.0, 60.0), (t0 + TimeDelta::seconds(10), 50.0, 62.0)]
        .iter()
        .map(|(at, cpu, memory)| {
            format!(
                "node,cluster=east,node=east-1 cpu_percent={cpu},memory_used_percent={memory},memory_used_bytes=1i {}\n",
                at.timestamp_millis()
            )
        })
        .collect();
    charts.write(&lines).await;
    let body = wait_until("the node's vitals", Duration::from_secs(20), || async {
        let body = charts.ok("/api/v1/metrics/nodes/east/east-1?range=1h").await;
        (body["has_data"] == true).then_some(body)
    })
    .await;
    let bucket = bucket_of(&body, t0);
    assert_eq!(body["cpu_percent"][bucket], 45.0, "the mean of the minute");
    assert_eq!(body["memory_percent"][bucket], 61.0);
    assert_eq!(body["cpu_percent"][bucket + 1], Value::Null, "no report: missing");
    assert_eq!(body["instances"][0]["id"], instance);
}

#[tokio::test]
async fn bad_windows_are_refused_with_400_naming_the_parameter() {
    let charts = Charts::new().await;
    charts.register("web", "v1", "east", "east-1").await;
    let now = Utc::now();
    let cases = [
        ("range=2h".to_owned(), "range"),
        ("range=1h&from=2026-01-01T00:00:00Z".to_owned(), "range"),
        ("from=2026-01-01T00:00:00Z".to_owned(), "to"),
        ("to=2026-01-01T00:00:00Z".to_owned(), "from"),
        ("from=yesterday&to=2026-01-01T00:00:00Z".to_owned(), "from"),
        (window(now - TimeDelta::hours(1), now - TimeDelta::hours(2)), "to"),
        (window(now - TimeDelta::days(8), now), "to"),
        (window(now, now + TimeDelta::days(1)), "to"),
    ];
    for (query, parameter) in cases {
        for path in ["/api/v1/metrics/services/web", "/api/v1/metrics/nodes/east/east-1"] {
            let (status, body) = charts.get(&format!("{path}?{query}")).await;
            assert_eq!(status, 400, "{query}: {body}");
            let detail = body["detail"].as_str().expect("detail");
            assert!(detail.starts_with(&format!("{parameter}:")), "{query}: {detail}");
        }
    }
}

#[tokio::test]
async fn unknown_services_and_nodes_are_404_and_an_ingest_token_cannot_read_charts() {
    let charts = Charts::new().await;
    charts.register("web", "v1", "east", "east-1").await;
    for path in [
        "/api/v1/metrics/services/nope",
        "/api/v1/metrics/services/NOT%20A%20NAME",
        "/api/v1/metrics/nodes/east/east-9",
        "/api/v1/metrics/nodes/west/east-1",
    ] {
        let (status, body) = charts.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let response = charts
        .app
        .http
        .get(charts.app.url("/api/v1/metrics/services/web"))
        .bearer_auth(&charts.ingest)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_health_change_in_the_window_comes_back_as_a_marker_with_its_reason() {
    let charts = Charts::new().await;
    let instance = charts.register("web", "v1", "east", "east-1").await;
    let at = Utc::now() - TimeDelta::minutes(3);
    sqlx::query(
        "INSERT INTO instance_health_changes (instance_id, at, from_health, to_health, reason) \
         VALUES ($1::uuid, $2, 'healthy', 'unhealthy', 'HTTP 503: planted by the test')",
    )
    .bind(&instance)
    .bind(at)
    .execute(&charts.app.db)
    .await
    .expect("a health change");
    for path in ["/api/v1/metrics/services/web?range=15m", "/api/v1/metrics/nodes/east/east-1?range=15m"] {
        let body = charts.ok(path).await;
        let markers = body["markers"].as_array().expect("markers");
        let planted = markers.iter().find(|m| m["label"].as_str().is_some_and(|l| l.contains("planted by the test")));
        let planted = planted.unwrap_or_else(|| panic!("{path}: {markers:?}"));
        assert_eq!(planted["kind"], "health_down");
        assert!(planted["label"].as_str().expect("label").contains("web v1 on east/east-1"), "{planted}");
    }
    // Outside the window: not there.
    let old = charts
        .ok(&format!("/api/v1/metrics/services/web?{}", window(at - TimeDelta::hours(2), at - TimeDelta::hours(1))))
        .await;
    assert!(
        old["markers"]
            .as_array()
            .expect("markers")
            .iter()
            .all(|m| !m["label"].as_str().unwrap_or("").contains("planted"))
    );
}

#[tokio::test]
async fn with_influxdb_down_the_service_page_is_still_a_200_and_its_traffic_panel_says_why() {
    let mut influx = testkit::InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| settings.influx.url = url).await;
    let ingest = app.token("agent", &[Scope::Ingest]).await;
    let body = json!({"service": "web", "version": "v1", "cluster": "c", "node": "n", "host": "127.0.0.1", "port": free_port()});
    let registered = app.http.post(app.url("/api/v1/instances")).bearer_auth(&ingest).json(&body).send().await;
    assert_eq!(registered.expect("answer").status(), 201);
    let password = app.add_user("vera", app::model::identity::Role::Viewer).await;
    let (viewer, _) = app.sign_in("vera", &password).await;
    influx.stop();

    let page = viewer.get(app.url("/services/web")).send().await.expect("answer");
    assert_eq!(page.status(), 200, "one panel's store being down doesn't fail the page");
    let html = page.text().await.expect("html");
    assert!(html.contains("the traffic charts could not be loaded"), "the panel says so");
    assert!(html.contains("127.0.0.1"), "the instances still show");

    let api = viewer.get(app.url("/api/v1/metrics/services/web")).send().await.expect("answer");
    assert_eq!(api.status(), 503, "the API still says what happened");
}
