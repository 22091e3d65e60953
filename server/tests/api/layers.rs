//! The layers every request passes through: request id, compression, body limit, timeout.

use std::time::Duration;

use testkit::TestApp;

#[tokio::test]
async fn every_response_gets_a_generated_request_id() {
    let app = TestApp::spawn().await;
    let first = app.get("/healthz").await;
    let second = app.get("/").await;
    let id = |r: &reqwest::Response| r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (a, b) = (id(&first).expect("an id on the API"), id(&second).expect("an id on pages"));
    assert_ne!(a, b, "each request has its own id");
    assert_eq!(a.len(), 36, "a UUID: {a}");
}

#[tokio::test]
async fn a_request_id_sent_by_the_caller_is_honoured() {
    let app = TestApp::spawn().await;
    let response =
        app.http.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.expect("answer");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn pages_are_compressed_for_clients_that_accept_it() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    let response = app.http.get(app.url("/")).header("accept-encoding", "gzip").send().await.expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-encoding").map(|v| v.as_bytes()), Some(&b"gzip"[..]));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = TestApp::spawn_with(|settings| settings.http.body_limit = 64 * 1024).await;
    let response = app.http.post(app.url("/_fn/anything")).body(vec![b'x'; 65 * 1024]).send().await.expect("answer");
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_408() {
    // /readyz waits a second for an InfluxDB that accepts connections but never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", black_hole.local_addr().expect("addr")).parse().expect("url");
    let app = TestApp::spawn_with(|settings| {
        settings.influx.url = url;
        settings.influx.timeout = Duration::from_secs(1);
        settings.http.request_timeout = Duration::from_millis(300);
    })
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 408);
    assert!(response.headers().contains_key("x-request-id"), "even a timed-out request can be traced");
}
