//! Metrics ingest on the real stack: line protocol in through `POST /api/v1/metrics`, read back
//! from the real InfluxDB with InfluxQL; bad lines refused whole; registry tags added; InfluxDB
//! stopped → acknowledged until the buffer is full, then 503, and every acknowledged point
//! arrives once it returns.

use std::time::Duration;

use app::model::identity::Scope;
use opsdeck::influx::{Point, Series, quote_identifier};
use serde_json::{Value, json};
use testkit::{InfluxProcess, TestApp, wait_until};

struct Sender {
    app: TestApp,
    ingest: String,
}

impl Sender {
    async fn new(app: TestApp) -> Self {
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        Self { app, ingest }
    }

    async fn post(&self, query: &str, body: impl Into<String>) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url(&format!("/api/v1/metrics{query}")))
            .bearer_auth(&self.ingest)
            .header("content-type", "text/plain")
            .body(body.into())
            .send()
            .await
            .expect("answer")
    }

    async fn accepted(&self, query: &str, body: impl Into<String>) -> u64 {
        let response = self.post(query, body).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        assert_eq!(status, 202, "{answer}");
        answer["points"].as_u64().expect("points")
    }

    /// Every series of `measurement`, grouped by all tags, once at least `rows` rows are there.
    async fn series(&self, measurement: &str, rows: usize) -> Vec<Series> {
        let statement = format!("SELECT * FROM {} GROUP BY *", quote_identifier(measurement));
        wait_until(&format!("{rows} rows of {measurement}"), Duration::from_secs(20), || async {
            let results = self.app.influx.query(&statement).await.ok()?;
            let series = results.into_iter().next()?.series;
            (series.iter().map(|s| s.values.len()).sum::<usize>() >= rows).then_some(series)
        })
        .await
    }

    async fn count(&self, measurement: &str) -> u64 {
        let statement = format!("SELECT count(v) FROM {}", quote_identifier(measurement));
        let results = self.app.influx.query(&statement).await.expect("query");
        let series = results.into_iter().next().map(|r| r.series).unwrap_or_default();
        series.first().and_then(|s| s.f64_column("count")).and_then(|c| c[0]).map_or(0, |n| n as u64)
    }

    async fn readiness(&self) -> Value {
        self.app.get("/readyz").await.json().await.expect("json")
    }
}

fn metrics_check(report: &Value) -> Value {
    report["checks"].as_array().and_then(|c| c.iter().find(|c| c["dependency"] == "metrics")).cloned().expect("check")
}

#[tokio::test]
async fn a_point_written_through_opsdeck_is_read_back_from_influxdb() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let body = "requests,service=web,version=v2 count=7i,p99=182.5,ok=true,note=\"fine\" 1700000000000\n";
    assert_eq!(sender.accepted("?precision=ms", body).await, 1);

    let series = sender.series("requests", 1).await;
    assert_eq!(series.len(), 1);
    let series = &series[0];
    assert_eq!(series.tags["service"], "web");
    assert_eq!(series.tags["version"], "v2");
    assert_eq!(series.times_ms(), vec![1_700_000_000_000]);
    assert_eq!(series.f64_column("count"), Some(vec![Some(7.0)]));
    assert_eq!(series.f64_column("p99"), Some(vec![Some(182.5)]));
    assert_eq!(series.str_column("note"), Some(vec![Some("fine")]));
    assert_eq!(series.values[0][series.column("ok").expect("ok")], Value::Bool(true));
}

#[tokio::test]
async fn a_point_without_a_timestamp_gets_the_time_it_was_received() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let before = chrono::Utc::now().timestamp_millis();
    sender.accepted("", "untimed v=1i").await;
    let after = chrono::Utc::now().timestamp_millis();
    let time = sender.series("untimed", 1).await[0].times_ms()[0];
    assert!((before..=after).contains(&time), "{before} ≤ {time} ≤ {after}");
}

#[tokio::test]
async fn escaping_edge_cases_round_trip_through_opsdeck_into_influxdb() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let hostile = "x\" evil=1,injected=2 3";
    let cases = [
        Point::new("cpu load,x=1").tag("host name", "a,b=c d").field("f=g h,i", 1_i64),
        Point::new("esc").tag("path", r"\\server\share").tag("odd", r"a\,b").field("v", 2_i64),
        Point::new("esc").tag("t", hostile).field("s", "say \"hi\"\nC:\\path\\ ,=' end\\").field("v", 3_i64),
    ];
    let body: String = cases
        .iter()
        .enumerate()
        .map(|(i, p)| p.clone().timestamp_ns(1_000 + i as i64).to_line().expect("encodes") + "\n")
        .collect();
    assert_eq!(sender.accepted("", body).await, 3);

    let load = sender.series("cpu load,x=1", 1).await;
    assert_eq!(load[0].tags["host name"], "a,b=c d");
    assert!(load[0].column("f=g h,i").is_some(), "{:?}", load[0].columns);
    let esc = sender.series("esc", 2).await;
    let by_tag = |key: &str| esc.iter().find(|s| s.tags.get(key).is_some_and(|v| !v.is_empty())).expect(key);
    assert_eq!(by_tag("path").tags["path"], r"\\server\share");
    assert_eq!(by_tag("odd").tags["odd"], r"a\,b");
    let injected = by_tag("t");
    assert_eq!(injected.tags["t"], hostile);
    assert_eq!(injected.str_column("s"), Some(vec![Some("say \"hi\"\nC:\\path\\ ,=' end\\")]));
    assert!(injected.column("evil").is_none() && injected.column("injected").is_none(), "{:?}", injected.columns);
}

#[tokio::test]
async fn each_bad_line_is_named_with_its_reason_and_nothing_of_the_batch_is_written() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let body = [
        "refused v=1i 1",       // 1: fine, but its batch is refused
        "refused,t=a=b v=1i 2", // 2: unescaped = in a tag value
        "refused v=abc 3",      // 3: not a number
        "refused v=\"open 4",   // 4: no closing quote (runs to the end: lines 5 and 6 go with it)
        "refused v=1i",
        "refused v=5u 6",
    ]
    .join("\n");
    let response = sender.post("", body).await;
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["error"], "unprocessable");
    let lines: Vec<(u64, String)> = answer["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["line"].as_u64().expect("n"), l["reason"].as_str().expect("reason").to_owned()))
        .collect();
    assert_eq!(lines.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![2, 3, 4], "{answer}");
    assert!(lines[0].1.contains("unescaped '='"), "{lines:?}");
    assert!(lines[1].1.contains("\"abc\" is not a number"), "{lines:?}");
    assert!(lines[2].1.contains("no closing double quote"), "{lines:?}");
    assert!(answer["detail"].as_str().expect("detail").contains("none of the request was kept"), "{answer}");

    // InfluxDB 1.x can't store unsigned integers: refused at the door with the way out.
    let response = sender.post("", "refused v=1i 1\nrefused v=5u 2").await;
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["lines"][0]["line"], 2);
    assert!(answer["lines"][0]["reason"].as_str().expect("reason").contains("send it as an integer"), "{answer}");

    let response = sender.post("?precision=h", "m v=1").await;
    assert_eq!(response.status(), 400, "an unknown precision is refused");

    let buffer = sender.app.state.metrics.buffer.status();
    assert_eq!((buffer.held, buffer.written), (0, 0), "nothing of a refused batch was kept");
    sender.accepted("", "marker v=1i").await;
    sender.series("marker", 1).await;
    assert_eq!(sender.count("refused").await, 0, "nor written");
}

#[tokio::test]
async fn points_naming_a_registered_instance_get_its_cluster_node_service_and_version() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let registered = sender
        .app
        .http
        .post(sender.app.url("/api/v1/instances"))
        .bearer_auth(&sender.ingest)
        .json(&json!({"service": "payments", "version": "v2.3.1", "cluster": "eu-1", "node": "node-a",
                      "host": "127.0.0.2", "port": 9555}))
        .send()
        .await
        .expect("answer");
    assert_eq!(registered.status(), 201);
    let id = registered.json::<Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned();

    let body = format!(
        "tagged,instance={id} v=1i 1\ntagged,instance={id},service=own v=2i 2\nuntagged,instance=nobody v=3i 3"
    );
    assert_eq!(sender.accepted("", body).await, 3);

    let tagged = sender.series("tagged", 2).await;
    let first = tagged.iter().find(|s| s.f64_column("v") == Some(vec![Some(1.0)])).expect("first point");
    assert_eq!(first.tags["instance"], id);
    assert_eq!(first.tags["cluster"], "eu-1");
    assert_eq!(first.tags["node"], "node-a");
    assert_eq!(first.tags["service"], "payments");
    assert_eq!(first.tags["version"], "v2.3.1");
    let second = tagged.iter().find(|s| s.f64_column("v") == Some(vec![Some(2.0)])).expect("second point");
    assert_eq!(second.tags["service"], "own", "a tag the sender gave wins");
    assert_eq!(second.tags["cluster"], "eu-1");
    let untagged = sender.series("untagged", 1).await;
    assert_eq!(untagged[0].tags.len(), 1, "an unknown instance adds nothing: {:?}", untagged[0].tags);
}

#[tokio::test]
async fn with_influxdb_down_points_are_acknowledged_until_the_buffer_is_full_and_all_arrive_after_it_returns() {
    let mut influx = InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| {
        settings.influx.url = url;
        settings.metrics.buffer_points = 10;
    })
    .await;
    let sender = Sender::new(app).await;
    let three = |from: i64| (from..from + 3).map(|t| format!("outage v={t}i {t}\n")).collect::<String>();

    influx.stop();
    assert_eq!(sender.accepted("", three(1)).await, 3);
    let report = wait_until("readiness to say metrics degraded", Duration::from_secs(10), || async {
        let report = sender.readiness().await;
        (metrics_check(&report)["ok"] == false).then_some(report)
    })
    .await;
    assert_eq!(report["ready"], false);
    let error = metrics_check(&report)["error"].as_str().expect("error").to_owned();
    assert!(error.starts_with("metrics degraded: writes to InfluxDB failing"), "{error}");

    assert_eq!(sender.accepted("", three(4)).await, 3);
    assert_eq!(sender.accepted("", three(7)).await, 3);
    let refused = sender.post("", three(10)).await;
    assert_eq!(refused.status(), 503, "9 held + 3 > 10");
    assert_eq!(refused.headers()["retry-after"], "5");
    let answer: Value = refused.json().await.expect("json");
    assert_eq!(answer["error"], "unavailable");
    let detail = answer["detail"].as_str().expect("detail");
    assert!(detail.contains("buffer is full") && detail.contains("InfluxDB is unreachable"), "{detail}");
    assert_eq!(sender.accepted("", "outage v=10i 10").await, 1, "one more point still fits");

    influx.resume().await;
    wait_until("every acknowledged point to arrive", Duration::from_secs(30), || async {
        (sender.count("outage").await == 10).then_some(())
    })
    .await;
    let times: Vec<i64> =
        sender.series("outage", 10).await[0].values.iter().filter_map(|row| row[0].as_i64()).collect();
    assert_eq!(times.len(), 10, "ten distinct points, none twice");
    wait_until("metrics to be ready again", Duration::from_secs(10), || async {
        (metrics_check(&sender.readiness().await)["ok"] == true).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ingest_needs_an_ingest_token() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let reader = sender.app.token("reader", &[Scope::Read]).await;
    let url = sender.app.url("/api/v1/metrics");
    let as_reader = sender.app.http.post(&url).bearer_auth(reader).body("m v=1").send().await.expect("answer");
    assert_eq!(as_reader.status(), 403);
    let anonymous = sender.app.http.post(&url).body("m v=1").send().await.expect("answer");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_graceful_shutdown_flushes_the_points_still_buffered() {
    let mut influx = InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| settings.influx.url = url).await;
    // A client of the test's own: the app's pools its connections on the app's runtime, which
    // is gone once it has stopped ("runtime dropped the dispatch task").
    let influx_client = opsdeck::influx::InfluxClient::new(app.influx.config().clone());
    let mut sender = Sender::new(app).await;
    influx.stop();
    assert_eq!(sender.accepted("", "flushed v=1i 1\nflushed v=2i 2\nflushed v=3i 3").await, 3);

    sender.app.begin_shutdown();
    influx.resume().await;
    let Sender { app, .. } = sender;
    app.finished().await.expect("a clean stop");

    let results = influx_client.query("SELECT count(v) FROM flushed").await.expect("query");
    let count = results[0].series.first().and_then(|s| s.f64_column("count")).and_then(|c| c[0]);
    assert_eq!(count, Some(3.0), "written before the process ended");
}

/// Checks every line of an OpenMetrics/Prometheus text exposition and returns the samples.
fn parse_exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(["HELP ", "TYPE ", "UNIT "].iter().any(|kind| comment.starts_with(kind)), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels close: {line}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn own_metrics_are_served_in_the_prometheus_text_format_and_move() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let scrape = || async {
        let response = sender.app.get("/metrics").await;
        assert_eq!(response.status(), 200, "public, like /healthz");
        let kind = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        parse_exposition(&response.text().await.expect("text"))
    };
    let healthz = r#"opsdeck_http_requests_total{method="GET",route="/healthz",status="2xx"}"#;
    let before = scrape().await;
    assert_eq!(before["opsdeck_metrics_buffer_capacity_points"], 100_000.0);
    assert_eq!(before["opsdeck_metrics_points_written_total"], 0.0);

    for _ in 0..2 {
        assert_eq!(sender.app.get("/healthz").await.status(), 200);
    }
    sender.accepted("", "scraped v=1i 1\nscraped v=2i 2").await;
    let after = wait_until("the two points to be counted as written", Duration::from_secs(20), || async {
        let samples = scrape().await;
        (samples["opsdeck_metrics_points_written_total"] == 2.0).then_some(samples)
    })
    .await;
    assert_eq!(after[healthz] - before.get(healthz).copied().unwrap_or(0.0), 2.0, "two more /healthz");
    let ingest_count =
        r#"opsdeck_http_request_duration_seconds_count{method="POST",route="/api/v1/metrics",status="2xx"}"#;
    assert_eq!(after[ingest_count], 1.0, "the ingest request is timed under its route pattern");
    assert_eq!(after["opsdeck_metrics_buffer_points"], 0.0);
}

#[tokio::test]
async fn the_health_checkers_lag_and_the_event_delivery_lag_are_exposed_for_prometheus() {
    let sender = Sender::new(TestApp::spawn().await).await;
    let target = testkit::TargetServer::start().await;
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('web', 500, 300, 1, 1)",
    )
    .execute(&sender.app.db)
    .await
    .expect("quick checks");
    let registered = sender
        .app
        .http
        .post(sender.app.url("/api/v1/instances"))
        .bearer_auth(&sender.ingest)
        .json(&json!({"service": "web", "version": "v1", "cluster": "c", "node": "n", "host": "127.0.0.1", "port": target.port}))
        .send()
        .await
        .expect("answer");
    assert_eq!(registered.status(), 201);
    let samples =
        wait_until("two probes and the registration's event to be counted", Duration::from_secs(20), || async {
            let text = sender.app.get("/metrics").await.text().await.ok()?;
            let samples = parse_exposition(&text);
            let probes = samples.get(r#"opsdeck_checker_probes_total{outcome="up"}"#).copied().unwrap_or(0.0);
            let events = samples.get("opsdeck_event_delivery_lag_seconds_count").copied().unwrap_or(0.0);
            (probes >= 2.0 && events >= 1.0).then_some(samples)
        })
        .await;
    assert_eq!(samples["opsdeck_checker_leader"], 1.0, "the only replica leads the checks");
    assert_eq!(samples["opsdeck_checker_targets"], 1.0);
    assert!(
        samples["opsdeck_checker_probe_lateness_seconds_count"] >= 2.0,
        "every started probe's lateness is observed"
    );
    assert!(samples["opsdeck_event_delivery_lag_seconds_sum"] >= 0.0);
}
