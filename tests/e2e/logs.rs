//! The logs page and the trace view in a real browser: a line ingested through the API shows on
//! an open live tail within a second, as inert text; pause, resume and clear do what they say;
//! the search is server-rendered with counts; a trace shows the hops it took.

use std::time::Duration;

use app::model::identity::{Role, Scope};
use chrono::Utc;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use testkit::{Browser, TestApp, wait_until};

use crate::wait_for_text;

const HOSTILE: &str = r#"<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> checkout failed"#;

async fn ingest(app: &TestApp, token: &str, lines: &[Value]) {
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let response = app
        .http
        .post(app.url("/api/v1/logs"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

fn line(message: &str, level: &str) -> Value {
    json!({"time": Utc::now().to_rfc3339(), "level": level, "message": message, "cluster": "eu-1",
           "node": "node-a", "service": "web", "instance": "web-1", "component": "http"})
}

/// The messages on the tail, newest first.
async fn tail_messages(page: &Client) -> Option<Vec<String>> {
    let mut messages = Vec::new();
    for element in page.find_all(Locator::Css(".log-tail-lines .log-line .log-message")).await.ok()? {
        messages.push(element.text().await.ok()?);
    }
    Some(messages)
}

async fn wait_for_messages(page: &Client, what: &str, expected: &[&str]) {
    wait_until(what, Duration::from_secs(15), || async {
        let messages = tail_messages(page).await?;
        (messages == expected).then_some(())
    })
    .await;
}

async fn click(page: &Client, css: &str) {
    page.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css} is shown")).click().await.expect("click");
}

#[tokio::test]
async fn a_line_ingested_appears_on_the_live_tail_within_a_second_as_text_and_pause_resume_clear_work() {
    let app = TestApp::spawn().await;
    let password = app.add_user("olga", Role::Viewer).await;
    let token = app.token("agent", &[Scope::Ingest]).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/logs?mode=tail&service=web"), "olga", &password).await;
    page.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(r#".log-tail[data-tail-state="live"]"#))
        .await
        .expect("the tail connects");

    ingest(&app, &token, &[line(HOSTILE, "error")]).await;
    let acknowledged_ms = Utc::now().timestamp_millis();
    let row = page
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(".log-tail-lines .log-line"))
        .await
        .expect("the line appears");
    let received_ms: i64 =
        row.attr("data-received-at").await.expect("attr").expect("stamped").parse().expect("milliseconds");
    let delay = received_ms - acknowledged_ms;
    assert!(delay < 1000, "the line arrived {delay} ms after ingest was acknowledged");
    assert_eq!(tail_messages(page).await.expect("messages"), [HOSTILE], "the markup shows as text");
    let pwned = page.execute("return typeof window.__pwned", vec![]).await.expect("js runs");
    assert_eq!(pwned, "undefined", "nothing in the message ran");
    assert!(
        page.find_all(Locator::Css(".log-tail-lines img, .log-tail-lines script")).await.expect("query").is_empty()
    );
    let level = row.find(Locator::Css(".log-level")).await.expect("level").text().await.expect("text");
    assert_eq!(level, "✕ error", "the level is a glyph and a word");
    browser.screenshot("logs-tail-1280x800").await;

    click(page, ".log-tail-pause").await;
    ingest(&app, &token, &[line("sent while paused", "info")]).await;
    wait_for_text(page, ".log-tail-held", "1 new line waiting").await;
    assert_eq!(tail_messages(page).await.expect("messages"), [HOSTILE], "a paused tail shows nothing new");

    click(page, ".log-tail-resume").await;
    wait_for_messages(page, "the held line after resume", &["sent while paused", HOSTILE]).await;

    click(page, ".log-tail-clear").await;
    wait_for_messages(page, "an empty tail after clear", &[]).await;
    ingest(&app, &token, &[line("after clearing", "warning")]).await;
    wait_for_messages(page, "new lines after clear", &["after clearing"]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_search_is_server_rendered_newest_first_with_counts_and_markup_as_text() {
    let app = TestApp::spawn().await;
    let password = app.add_user("sam", Role::Viewer).await;
    let token = app.token("agent", &[Scope::Ingest]).await;
    ingest(&app, &token, &[line("first", "info"), line(HOSTILE, "error")]).await;
    let (client, _) = app.sign_in("sam", &password).await;
    let html = client.get(app.url("/logs?service=web")).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"), "escaped: {html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains(r#"data-level="error" data-count="1""#) && html.contains(r#"data-level="info" data-count="1""#),
        "{html}"
    );
    let (newest, oldest) =
        (html.find("checkout failed").expect("the error"), html.find(">first<").expect("the first line"));
    assert!(newest < oldest, "newest first");
    let none = client.get(app.url("/logs?service=nobody")).send().await.expect("page").text().await.expect("html");
    assert!(none.contains("No lines match since"), "{none}");
}

#[tokio::test]
async fn the_trace_page_shows_the_hops_of_an_ingested_trace() {
    let app = TestApp::spawn().await;
    let password = app.add_user("tia", Role::Viewer).await;
    let token = app.token("agent", &[Scope::Ingest]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let base = Utc::now();
    let at = |ms: i64| (base - chrono::Duration::milliseconds(ms)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let traced = |ms: i64, service: &str, node: &str, message: &str, fields: Value| {
        json!({"time": at(ms), "level": "info", "message": message, "cluster": "eu-1", "node": node,
               "service": service, "component": "http", "trace_id": trace_id, "fields": fields})
    };
    ingest(
        &app,
        &token,
        &[
            traced(100, "web", "node-a", "GET /checkout received", json!({"span_id": "aaaa"})),
            traced(90, "api", "node-b", "GET /items received", json!({"span_id": "bbbb", "parent_span_id": "aaaa"})),
            traced(
                60,
                "api",
                "node-b",
                "GET /items 200 in 30.0 ms",
                json!({"span_id": "bbbb", "parent_span_id": "aaaa", "duration_ms": 30.0, "status": 200}),
            ),
            traced(
                50,
                "web",
                "node-a",
                "GET /checkout 200 in 50.0 ms",
                json!({"span_id": "aaaa", "duration_ms": 50.0, "status": 200}),
            ),
        ],
    )
    .await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url(&format!("/traces/{trace_id}")), "tia", &password).await;

    let hop = wait_for_text(page, ".trace-hop", "web@node-a → api@node-b").await;
    assert!(hop.contains("after 10.0 ms") && hop.contains("took 30.0 ms"), "{hop}");
    let spans = page.find_all(Locator::Css(".trace-span")).await.expect("spans");
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].attr("data-depth").await.expect("attr").as_deref(), Some("1"));
    let lines = page.find_all(Locator::Css(".trace-lines .log-line")).await.expect("lines");
    assert_eq!(lines.len(), 4);
    browser.screenshot("trace-1280x800").await;

    page.goto(&app.url("/traces/0af7651916cd43dd8448eb211c80319c")).await.expect("navigate");
    wait_for_text(page, ".page-trace .notice", "no stored log line carries trace id").await;
    browser.close().await;
}
