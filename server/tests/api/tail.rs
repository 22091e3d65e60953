//! Live tail and trace view on the real stack: lines ingested through `POST /api/v1/logs`
//! reach `GET /api/v1/logs/tail` streams whose filter they match (on any replica), viewers with
//! one filter share one subscription, a viewer that stops reading is told what it missed while
//! ingest and other viewers carry on, and `GET /api/v1/traces/{id}` orders a trace and finds
//! its hops.

use std::time::{Duration, Instant};

use app::model::identity::{Role, Scope};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use testkit::{SseClient, TestApp, TestEnv, wait_until};

const SOON: Duration = Duration::from_secs(10);

struct Tail {
    app: TestApp,
    ingest: String,
    reader: String,
}

impl Tail {
    async fn new() -> Self {
        Self::on(TestApp::spawn().await).await
    }

    async fn on(app: TestApp) -> Self {
        let ingest = app.token("agent", &[Scope::Ingest]).await;
        let reader = app.token("screen", &[Scope::Read]).await;
        Self { app, ingest, reader }
    }

    /// Opens a tail with these filters and waits for its first heartbeat (so the subscription
    /// exists and the server is listening).
    async fn open(&self, app: &TestApp, filters: &[(&str, &str)]) -> SseClient {
        let url = reqwest::Url::parse_with_params(&app.url("/api/v1/logs/tail"), filters).expect("a url");
        let mut stream = SseClient::connect(url.as_str(), &self.reader, None).await;
        let beat = stream.next("the first heartbeat", SOON).await;
        assert_eq!(beat.event, "heartbeat");
        assert_eq!(beat.json()["listening"], true, "the server listens for new lines");
        stream
    }

    async fn send_to(&self, app: &TestApp, lines: &[Value]) {
        let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let response = app
            .http
            .post(app.url("/api/v1/logs"))
            .bearer_auth(&self.ingest)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{text}");
    }

    async fn send(&self, lines: &[Value]) {
        self.send_to(&self.app, lines).await;
    }

    async fn metric(&self, name: &str) -> i64 {
        let text = self.app.get("/metrics").await.text().await.expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
    }
}

fn line(message: &str, service: &str) -> Value {
    json!({"time": Utc::now().to_rfc3339(), "level": "info", "message": message, "cluster": "eu-1",
           "node": "node-a", "service": service, "instance": format!("{service}-1"), "component": "http"})
}

/// The next `line` event's message (heartbeats skipped).
async fn next_message(stream: &mut SseClient, what: &str) -> String {
    let event = stream.next_matching(what, SOON, |m| m.event == "line").await;
    event.json()["message"].as_str().expect("a message").to_owned()
}

#[tokio::test]
async fn a_line_appears_on_a_tail_whose_filter_matches_and_not_on_one_whose_filter_does_not() {
    let tail = Tail::new().await;
    let mut web = tail.open(&tail.app, &[("service", "web")]).await;
    let mut payments = tail.open(&tail.app, &[("service", "payments")]).await;
    let mut errors = tail.open(&tail.app, &[("level", "error")]).await;

    tail.send(&[line("GET /checkout received", "web")]).await;
    let mut failure = line("card declined", "payments");
    failure["level"] = json!("error");
    tail.send(&[failure]).await;

    let seen = web.next_matching("the web line", SOON, |m| m.event == "line").await;
    assert_eq!(seen.json()["message"], "GET /checkout received");
    assert_eq!(seen.json()["service"], "web");
    assert!(seen.id.is_some_and(|id| id.parse::<i64>().is_ok()), "the line id is the event id");
    // Lines arrive in order: the first line this tail sees is the payments one.
    assert_eq!(next_message(&mut payments, "the payments line").await, "card declined");
    assert_eq!(next_message(&mut errors, "the error").await, "card declined");
}

#[tokio::test]
async fn viewers_with_the_same_filter_share_one_subscription_that_ends_with_its_last_viewer() {
    let tail = Tail::new().await;
    let first = tail.open(&tail.app, &[("level", "error"), ("q", "timeout")]).await;
    let second = tail.open(&tail.app, &[("q", "timeout"), ("level", "error")]).await;
    let other = tail.open(&tail.app, &[("level", "info")]).await;
    assert_eq!(tail.metric("opsdeck_log_tail_subscriptions").await, 2);
    assert_eq!(tail.metric("opsdeck_log_tail_viewers").await, 3);

    drop(first);
    drop(second);
    wait_until("the shared subscription ends", SOON, || async {
        (tail.metric("opsdeck_log_tail_subscriptions").await == 1).then_some(())
    })
    .await;
    drop(other);
    wait_until("no subscription is left", SOON, || async {
        (tail.metric("opsdeck_log_tail_subscriptions").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_told_how_many_lines_it_missed_while_ingest_and_other_viewers_carry_on() {
    let tail = Tail::new().await;
    let mut slow = tail.open(&tail.app, &[("service", "web")]).await;
    let mut fast = tail.open(&tail.app, &[("service", "web")]).await;
    // Far more than the slow viewer's queue (1,024 lines) and its socket buffers hold.
    let (batches, per_batch) = (24, 500);
    let padding = "x".repeat(2000);
    let mut slowest_ingest = Duration::ZERO;
    for batch in 0..batches {
        let lines: Vec<Value> = (0..per_batch).map(|n| line(&format!("line {batch}/{n} {padding}"), "web")).collect();
        let started = Instant::now();
        tail.send(&lines).await;
        slowest_ingest = slowest_ingest.max(started.elapsed());
        // The reading viewer keeps up (it is paced by ingest) and gets every line, in order.
        for n in 0..per_batch {
            let message = next_message(&mut fast, "the reading viewer's next line").await;
            assert!(message.starts_with(&format!("line {batch}/{n} ")), "{batch}/{n}: {}", &message[..20]);
        }
    }
    assert!(slowest_ingest < Duration::from_secs(3), "ingest waited for a viewer: {slowest_ingest:?}");

    let total = batches * per_batch;
    let (mut received, mut missed) = (0u64, 0u64);
    while received + missed < total {
        let event = slow.next("the slow viewer's backlog", SOON).await;
        match event.event.as_str() {
            "line" => received += 1,
            "missed" => missed += event.json()["missed"].as_u64().expect("a count"),
            _ => {}
        }
    }
    assert_eq!(received + missed, total, "every line is either received or counted as missed");
    assert!(missed > 0, "the slow viewer fell behind");
    assert_eq!(tail.metric("opsdeck_log_tail_lines_missed_total").await, missed as i64);
}

#[tokio::test]
async fn a_line_ingested_through_one_replica_reaches_a_tail_opened_on_another() {
    let settings = TestEnv::from_env().serve_settings().await;
    let first = TestApp::start(settings.clone()).await;
    let second = TestApp::start(settings).await;
    let tail = Tail::on(first).await;
    let mut on_second = tail.open(&second, &[("service", "web")]).await;
    let mut on_first = tail.open(&tail.app, &[("service", "web")]).await;

    tail.send(&[line("through the first replica", "web")]).await;
    assert_eq!(next_message(&mut on_second, "the line on the second replica").await, "through the first replica");
    assert_eq!(next_message(&mut on_first, "the line on the first replica").await, "through the first replica");

    tail.send_to(&second, &[line("through the second replica", "web")]).await;
    assert_eq!(next_message(&mut on_first, "the other way round").await, "through the second replica");
}

#[tokio::test]
async fn sql_metacharacters_in_q_are_just_text_for_search_and_tail() {
    let tail = Tail::new().await;
    let hostile = "user said '; DROP TABLE log_lines; -- and 100% of \\ _ matched";
    let mut matching = tail.open(&tail.app, &[("q", "'; DROP TABLE log_lines; --")]).await;
    tail.send(&[line("drop everything else", "web"), line(hostile, "web")]).await;

    assert_eq!(next_message(&mut matching, "the hostile line").await, hostile);
    let found: Value = tail
        .app
        .http
        .get(tail.app.url("/api/v1/logs"))
        .query(&[("q", "'; DROP TABLE log_lines; --")])
        .bearer_auth(&tail.reader)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let messages: Vec<&str> =
        found["lines"].as_array().expect("lines").iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(messages, [hostile]);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM log_lines").fetch_one(&tail.app.db).await.expect("table");
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn a_signed_in_browser_session_can_open_the_tail_and_anonymous_callers_cannot() {
    let tail = Tail::new().await;
    let password = tail.app.add_user("ops", Role::Viewer).await;
    let (browser, _csrf) = tail.app.sign_in("ops", &password).await;
    let response = browser.get(tail.app.url("/api/v1/logs/tail")).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
    let anonymous = reqwest::get(tail.app.url("/api/v1/logs/tail")).await.expect("answer");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_tail_ends_promptly_when_the_server_shuts_down() {
    let mut tail = Tail::new().await;
    let mut stream = tail.open(&tail.app, &[]).await;
    tail.app.begin_shutdown();
    assert!(stream.ended(Duration::from_secs(3)).await, "the stream ended within 3 s");
}

fn traced(base: DateTime<Utc>, ms_ago: i64, service: &str, node: &str, message: &str, fields: Value) -> Value {
    let time = base - chrono::Duration::milliseconds(ms_ago);
    json!({"time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "level": "info", "message": message,
           "cluster": "eu-1", "node": node, "service": service, "component": "http",
           "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "fields": fields})
}

#[tokio::test]
async fn the_trace_endpoint_orders_every_line_and_finds_the_hops_with_their_times() {
    let tail = Tail::new().await;
    // Sent out of order and in two batches, as two services would.
    let base = Utc::now();
    tail.send(&[
        traced(
            base, 90, "api", "node-b", "GET /items received", json!({"span_id": "bbbb", "parent_span_id": "aaaa"})),
        traced(
            base, 60, "api", "node-b", "GET /items 200 in 30.0 ms",
               json!({"span_id": "bbbb", "parent_span_id": "aaaa", "duration_ms": 30.0, "method": "GET", "path": "/items", "status": 200})),
    ])
    .await;
    tail.send(&[
        traced(
            base,
            50,
            "web",
            "node-a",
            "GET /checkout 200 in 50.0 ms",
            json!({"span_id": "aaaa", "duration_ms": 50.0, "method": "GET", "path": "/checkout", "status": 200}),
        ),
        traced(base, 100, "web", "node-a", "GET /checkout received", json!({"span_id": "aaaa"})),
        traced(
            base,
            55,
            "web",
            "node-a",
            "GET api/items 200 in 34.0 ms",
            json!({"span_id": "aaaa", "duration_ms": 34.0, "peer_service": "api"}),
        ),
    ])
    .await;
    let mut other = traced(base, 10, "web", "node-a", "another trace", json!({}));
    other["trace_id"] = json!("0af7651916cd43dd8448eb211c80319c");
    tail.send(&[other]).await;

    let response = tail
        .app
        .http
        .get(tail.app.url("/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"))
        .bearer_auth(&tail.reader)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let trace: Value = response.json().await.expect("json");
    let messages: Vec<&str> =
        trace["lines"].as_array().expect("lines").iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(
        messages,
        [
            "GET /checkout received",
            "GET /items received",
            "GET /items 200 in 30.0 ms",
            "GET api/items 200 in 34.0 ms",
            "GET /checkout 200 in 50.0 ms",
        ]
    );
    let labels: Vec<(&str, u64)> = trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| (s["service"].as_str().expect("service"), s["depth"].as_u64().expect("depth")))
        .collect();
    assert_eq!(labels, [("web", 0), ("api", 1)]);
    let hops = trace["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 1);
    assert_eq!(
        (hops[0]["from_label"].as_str(), hops[0]["to_label"].as_str()),
        (Some("web@node-a"), Some("api@node-b"))
    );
    assert_eq!(hops[0]["callee_ms"], 30.0);
    let overhead = hops[0]["overhead_ms"].as_f64().expect("the caller reported the call");
    assert!((overhead - 4.0).abs() < 1e-6, "{overhead}");
    let after = hops[0]["after_ms"].as_f64().expect("a number");
    assert!((after - 10.0).abs() < 0.01, "api began 10 ms after web: {after}");
}

#[tokio::test]
async fn an_unknown_trace_is_a_404_and_a_malformed_id_a_400_saying_why() {
    let tail = Tail::new().await;
    for (path, status, says) in [
        ("/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736", 404, "no stored log line carries trace id"),
        ("/api/v1/traces/has%20a%20space", 400, "space"),
        (&format!("/api/v1/traces/{}", "a".repeat(129)), 400, "1–128 characters"),
    ] {
        let response = tail.app.http.get(tail.app.url(path)).bearer_auth(&tail.reader).send().await.expect("answer");
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.expect("json");
        assert!(body["detail"].as_str().expect("detail").contains(says), "{path}: {body}");
    }
}
