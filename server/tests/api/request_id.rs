//! Every response carries an `x-request-id`; a caller's own id is kept.

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
