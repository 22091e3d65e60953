//! The first page: server-rendered, hydrated, live about the stores, theme switchable.

use std::time::Duration;

use fantoccini::Locator;
use testkit::{Browser, InfluxProcess, TestApp, wait_until};

#[tokio::test]
async fn the_overview_is_server_rendered_with_both_stores_ready() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("html");
    // Rendered on the server: the readiness is in the HTML, before any script runs.
    assert!(html.contains("PostgreSQL ready") && html.contains("InfluxDB ready"), "{html}");
    assert!(
        html.contains("All of opsdeck&#x27;s stores are ready.") || html.contains("All of opsdeck's stores are ready."),
        "{html}"
    );
    assert!(html.contains("/pkg/opsdeck.js") && html.contains("/pkg/opsdeck.wasm"), "hydration scripts are linked");
    assert!(html.contains(r#"data-theme="dark""#), "dark is the default theme");
}

#[tokio::test]
async fn the_bundle_and_stylesheet_are_served() {
    let app = TestApp::spawn().await;
    for (path, kind) in
        [("/pkg/opsdeck.wasm", "application/wasm"), ("/pkg/opsdeck.js", "javascript"), ("/pkg/opsdeck.css", "text/css")]
    {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(content_type.contains(kind), "{path}: {content_type}");
        // Precompressed at build time, not compressed on every request.
        let compressed = app.http.get(app.url(path)).header("accept-encoding", "br").send().await.expect("answer");
        assert_eq!(compressed.headers()["content-encoding"], "br", "{path}");
        assert!(compressed.headers()["content-type"].to_str().expect("ascii").contains(kind), "{path}");
    }
}

#[tokio::test]
async fn an_unknown_page_is_a_404_that_says_where_to_go() {
    let app = TestApp::spawn().await;
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), 404);
    let html = response.text().await.expect("html");
    assert!(html.contains("Nothing here") && html.contains("/no/such/page"), "{html}");
}

#[tokio::test]
async fn the_page_hydrates_switches_theme_and_shows_an_influxdb_outage_live() {
    let mut influx = InfluxProcess::start().await;
    let url = influx.url();
    let app = TestApp::spawn_with(|settings| settings.influx.url = url).await;
    let password = app.add_user("olga", app::model::identity::Role::Operator).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/"), "olga", &password).await;
    page.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(r#".app[data-hydrated="true"]"#))
        .await
        .expect("the wasm hydrates the page");

    // Reactive after hydration: the theme switch changes the page and says what it will do next.
    let toggle = page.find(Locator::Css(".theme-toggle")).await.expect("toggle");
    assert_eq!(toggle.text().await.expect("text"), "☀ Light");
    toggle.click().await.expect("click");
    let root = page.find(Locator::Css(".app")).await.expect("root");
    assert_eq!(root.attr("data-theme").await.expect("attr").as_deref(), Some("light"));
    assert_eq!(toggle.text().await.expect("text"), "☾ Dark");
    browser.screenshot("overview-light-1280x800").await;
    toggle.click().await.expect("back to dark");

    // Live: stop InfluxDB and the page says so by itself, without a reload.
    influx.stop();
    let headline = wait_until("the page to report InfluxDB unavailable", Duration::from_secs(20), || async {
        let text = page.find(Locator::Css(".stores-headline")).await.ok()?.text().await.ok()?;
        text.contains("InfluxDB unavailable").then_some(text)
    })
    .await;
    assert_eq!(headline, "Needs attention: InfluxDB unavailable.");
    let strip = page
        .find(Locator::Css(r#".readiness-item[data-dependency="influxdb"]"#))
        .await
        .expect("strip")
        .text()
        .await
        .expect("text");
    assert!(
        strip.contains("✕") && strip.contains("InfluxDB unavailable"),
        "status by shape and word, not colour alone: {strip}"
    );
    browser.screenshot("overview-influx-down-1280x800").await;

    influx.resume().await;
    wait_until("the page to report InfluxDB ready again", Duration::from_secs(20), || async {
        let text = page.find(Locator::Css(".stores-headline")).await.ok()?.text().await.ok()?;
        text.contains("All of opsdeck").then_some(())
    })
    .await;
    browser.close().await;
}

#[tokio::test]
async fn signing_in_shows_name_and_role_and_signing_out_ends_the_session_server_side() {
    let app = TestApp::spawn().await;
    let password = app.add_user("sam", app::model::identity::Role::Operator).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    page.goto(&app.url("/")).await.expect("navigate");
    assert!(page.current_url().await.expect("url").as_str().contains("/login?next=%2F"), "sent to sign in first");
    browser.screenshot("login-1280x800").await;
    browser.sign_in(&app.url("/"), "sam", &password).await;

    let who = page.find(Locator::Css(".user-name")).await.expect("who is signed in").text().await.expect("text");
    assert!(who.contains("sam (test)") && who.to_lowercase().contains("operator"), "{who}");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(&app.db).await.expect("count");
    assert_eq!(sessions, 1);
    browser.screenshot("overview-signed-in-1280x800").await;

    page.find(Locator::Css(".user-sign-out button")).await.expect("sign-out button").click().await.expect("click");
    page.wait()
        .at_most(Duration::from_secs(10))
        .for_url(&format!("{}/login?signed_out=1", app.address).parse().expect("url"))
        .await
        .expect("back at sign-in");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(&app.db).await.expect("count");
    assert_eq!(sessions, 0, "the session is gone server-side");
    page.goto(&app.url("/")).await.expect("navigate");
    assert!(
        page.current_url().await.expect("url").as_str().contains("/login"),
        "signed out: pages ask to sign in again"
    );
    browser.close().await;
}
