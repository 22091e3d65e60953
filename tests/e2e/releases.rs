//! Release control in the browser: an operator moves the canary slider on the service page,
//! confirms in the dialog (which shows the server's preview) and sees the split change, in the
//! split bar and in the live request-rate chart fed by real traffic (demo-service processes behind
//! the router); a viewer sees no controls and the API refuses them. Real app, PostgreSQL,
//! InfluxDB, real HTTP instances, headless Chromium.

use std::{collections::BTreeMap, time::Duration};

use app::model::identity::{Role, Scope};
use fantoccini::Locator;
use serde_json::{Value, json};
use testkit::{Browser, TargetServer, TestApp, TestEnv, wait_until};

use crate::{
    live_traffic::{DemoService, RouterHandle, SteadyLoad},
    wait_for_text,
};

const PATIENCE: Duration = Duration::from_secs(30);

/// `web` with quick health checks (every 500 ms, healthy after one good probe).
async fn create_web(app: &TestApp) {
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('web', 500, 400, 100, 1)",
    )
    .execute(&app.db)
    .await
    .expect("create the service");
}

/// Waits until the instance of web `version` listening on `port` is healthy.
async fn wait_healthy(app: &TestApp, version: &str, port: u16) {
    let port = i32::from(port);
    wait_until(&format!("web {version} to be healthy"), PATIENCE, || async {
        let health: Option<String> = sqlx::query_scalar("SELECT health FROM instances WHERE port = $1")
            .bind(port)
            .fetch_optional(&app.db)
            .await
            .expect("query");
        (health.as_deref() == Some("healthy")).then_some(())
    })
    .await;
}

/// Sends `body` to `path` as an operator and returns the (successful) answer.
async fn operate(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> Value {
    let operator = app.token("setup", &[Scope::Read, Scope::Operate]).await;
    let response = app.http.request(method, app.url(path)).bearer_auth(&operator).json(&body).send().await;
    let response = response.expect("answer");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert!(status.is_success(), "{status} {body}");
    body
}

/// Puts all of web's traffic on v1 (policy revision 1).
async fn all_on_v1(app: &TestApp) {
    let body = json!({"expected_revision": 0, "weights": [{"version": "v1", "percent": 100}]});
    operate(app, reqwest::Method::PUT, "/api/v1/services/web/traffic", body).await;
}

/// Starts a canary of v2 at 10 % (steps 10 → 50 → 100, long holds so nothing moves by itself)
/// on top of policy revision 1. Returns the release id.
async fn start_canary(app: &TestApp) -> i64 {
    let release = operate(app, reqwest::Method::POST, "/api/v1/services/web/releases", json!({
        "strategy": "canary", "target_version": "v2", "expected_revision": 1,
        "steps": [{"percent": 10, "hold_seconds": 3600}, {"percent": 50, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 3600}]
    }))
    .await;
    release["id"].as_i64().expect("id")
}

/// `web` with healthy v1 and v2 instances, v1 at 100 %, and a canary of v2 started at 10 %.
/// Returns the release id.
async fn web_with_a_canary(app: &TestApp) -> (i64, Vec<TargetServer>) {
    create_web(app).await;
    let ingest = app.token("agent", &[Scope::Ingest]).await;
    let mut instances = Vec::new();
    for version in ["v1", "v2"] {
        let target = TargetServer::start().await;
        let body = json!({"service": "web", "version": version, "cluster": "eu-1", "node": "node-a",
                          "host": "127.0.0.1", "port": target.port});
        let response = app.http.post(app.url("/api/v1/instances")).bearer_auth(&ingest).json(&body).send().await;
        assert_eq!(response.expect("answer").status(), 201);
        wait_healthy(app, version, target.port).await;
        instances.push(target);
    }
    all_on_v1(app).await;
    (start_canary(app).await, instances)
}

/// The request-rate chart's newest value per version, read from its legend (`data-last`).
async fn request_rates(page: &fantoccini::Client) -> Option<BTreeMap<String, f64>> {
    let rates = page
        .execute(
            "const chart = [...document.querySelectorAll('.traffic-panel figure.time-chart')]\
                 .find(f => f.querySelector('figcaption strong')?.textContent === 'Request rate');\
             if (!chart) return null;\
             return Object.fromEntries([...chart.querySelectorAll('.chart-legend-item')]\
                 .map(item => [item.dataset.series, item.dataset.last]));",
            vec![],
        )
        .await
        .ok()?;
    let rates: BTreeMap<String, String> = serde_json::from_value(rates).ok()?;
    Some(rates.into_iter().map(|(version, last)| (version, last.parse().unwrap_or(0.0))).collect())
}

async fn weights(app: &TestApp) -> Value {
    sqlx::query_scalar(
        "SELECT weights FROM traffic_policies p JOIN services s ON s.id = p.service_id WHERE s.name = 'web'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the policy")
}

#[tokio::test]
async fn an_operator_moves_the_canary_slider_confirms_the_preview_and_sees_the_split_change() {
    // Real traffic: demo services as web v1 and v2, the router in front, 30 requests a second.
    let settings = TestEnv::from_env().serve_settings().await;
    let app = TestApp::start(settings.clone()).await;
    create_web(&app).await;
    let fleet = app.token("demo-fleet", &[Scope::Ingest, Scope::Read]).await;
    let services = [DemoService::start(&app, &fleet, "web", "v1"), DemoService::start(&app, &fleet, "web", "v2")];
    for (version, service) in ["v1", "v2"].into_iter().zip(&services) {
        wait_healthy(&app, version, service.port).await;
    }
    all_on_v1(&app).await;
    let router = RouterHandle::start(&settings).await;
    let load = SteadyLoad::start(&router, "web", 30);
    let password = app.add_user("olga", Role::Operator).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/services/web?range=15m"), "olga", &password).await;

    // Before any canary the live request-rate chart shows v1 only.
    let before = wait_until("web v1's requests in the request-rate chart", Duration::from_secs(60), || async {
        let rates = request_rates(page).await?;
        (rates.get("v1").copied().unwrap_or(0.0) > 0.0).then_some(rates)
    })
    .await;
    assert_eq!(before.get("v2").copied().unwrap_or(0.0), 0.0, "v2 gets nothing at 100/0: {before:?}");

    let release = start_canary(&app).await;
    page.goto(&app.url("/services/web?range=15m")).await.expect("open the service page again");
    browser.wait_hydrated().await;
    wait_for_text(page, ".release-panel .release-split", "v2 10 %").await;
    let head = wait_for_text(page, ".release-active-head", "progressing").await;
    assert!(head.contains("step 1 of 3"), "{head}");
    let hint = wait_for_text(page, ".release-slider", "max jump 50 %").await;
    assert!(hint.contains("0–60 %"), "the reachable range is shown: {hint}");
    page.execute("window.__sameDocument = true", vec![]).await.expect("js");

    // Move the slider to 50 % the way a person's drag does (value, then an input event).
    page.execute(
        "const s = document.querySelector('.release-percent-input'); s.value = '50'; \
         s.dispatchEvent(new Event('input', { bubbles: true }));",
        vec![],
    )
    .await
    .expect("move the slider");
    let button = page.find(Locator::Css(".release-set-percent")).await.expect("the send button");
    assert_eq!(button.text().await.expect("text"), "Send 50 % to v2…");
    button.click().await.expect("open the confirmation");

    // The dialog shows the server's preview before anything changes.
    let preview = wait_for_text(page, ".release-dialog-preview", "v2 50 %").await;
    assert!(preview.contains("v2 10 %"), "before → after: {preview}");
    assert!(preview.contains("Instances that will get traffic") && preview.contains("127.0.0.1:"), "{preview}");
    assert!(preview.contains("Open circuit breakers"), "{preview}");
    assert_eq!(weights(&app).await, json!([{"version": "v2", "percent": 10}, {"version": "v1", "percent": 90}]));
    browser.screenshot("release-confirm-dialog").await;
    let confirm = page.find(Locator::Css(".release-confirm")).await.expect("the confirm button");
    assert_eq!(confirm.text().await.expect("text"), "Send 50 % to v2");
    confirm.click().await.expect("confirm");

    wait_for_text(page, ".release-panel .release-split", "v2 50 %").await;
    assert_eq!(weights(&app).await, json!([{"version": "v2", "percent": 50}, {"version": "v1", "percent": 50}]));
    let actor: String = sqlx::query_scalar(
        "SELECT actor_name FROM audit_log WHERE action = 'release.action' AND outcome = 'success' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .expect("the action's audit row");
    assert_eq!(actor, "olga");

    // The live request-rate chart (no reload) shows v2 taking a share of the load that only
    // 50 % explains (at 10 % it would be about a tenth).
    let after =
        wait_until("web v2 taking about half the requests in the live chart", Duration::from_secs(90), || async {
            let rates = request_rates(page).await?;
            let (v1, v2) = (rates.get("v1").copied().unwrap_or(0.0), rates.get("v2").copied().unwrap_or(0.0));
            (v2 > 0.0 && v2 / (v1 + v2) >= 0.3).then_some(rates)
        })
        .await;
    let same = page.execute("return window.__sameDocument === true", vec![]).await.expect("js");
    assert_eq!(same, json!(true), "the chart changed without a reload: {after:?}");
    assert!(load.answered.load(std::sync::atomic::Ordering::Relaxed) > 0, "the load got answers");

    // The live traffic charts mark the start and the change, with what happened on hover.
    let labels = wait_until("release markers on the live traffic charts", PATIENCE, || async {
        let titles = page
            .execute(
                "return Array.from(document.querySelectorAll('.traffic-panel .chart-marker.is-release title'))\
                 .map(t => t.textContent);",
                vec![],
            )
            .await
            .ok()?;
        let titles: Vec<String> = serde_json::from_value(titles).ok()?;
        titles.iter().any(|t| t.contains("at 50 % by user olga")).then_some(titles)
    })
    .await;
    assert!(labels.iter().any(|t| t.contains(&format!("release #{release} (canary) started"))), "{labels:?}");
    page.execute("document.querySelector('.traffic-panel').scrollIntoView()", vec![]).await.expect("js");
    browser.screenshot("release-live-chart-after").await;

    // The releases page lists it in progress with its share.
    page.goto(&app.url("/releases")).await.expect("releases page");
    let row = wait_for_text(page, &format!(r#".releases-active tr[data-release="{release}"]"#), "50 %").await;
    assert!(row.contains("v1 → v2") && row.contains("progressing"), "{row}");
    browser.close().await;
    drop((load, router, services));
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_stale_confirm_shows_the_present_and_asks_again_instead_of_overwriting() {
    let app = TestApp::spawn().await;
    let (release, _instances) = web_with_a_canary(&app).await;
    let password = app.add_user("olga", Role::Operator).await;
    let other = app.token("other-operator", &[Scope::Read, Scope::Operate]).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/services/web"), "olga", &password).await;
    wait_for_text(page, ".release-panel .release-split", "v2 10 %").await;
    page.find(Locator::Css(".release-action-pause")).await.expect("the pause button").click().await.expect("open");
    wait_for_text(page, ".release-dialog-preview", "Traffic after").await;

    // Another operator moves the canary while the dialog is open.
    let response = app
        .http
        .post(app.url(&format!("/api/v1/releases/{release}/actions")))
        .bearer_auth(&other)
        .json(&json!({"action": "set_percent", "percent": 20, "expected_revision": 2}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    page.find(Locator::Css(".release-confirm")).await.expect("confirm").click().await.expect("confirm");

    let conflict = wait_for_text(page, ".release-dialog-conflict", "Nothing was changed.").await;
    assert!(conflict.contains("v2 20 %") && conflict.contains("revision 3"), "the present is shown: {conflict}");
    let state: String = sqlx::query_scalar("SELECT state FROM releases WHERE id = $1")
        .bind(release)
        .fetch_one(&app.db)
        .await
        .expect("release state");
    assert_eq!(state, "progressing", "the stale pause changed nothing");

    // Asked again: a fresh preview at the new revision, and this time it goes through.
    page.find(Locator::Css(".release-again")).await.expect("preview again").click().await.expect("click");
    wait_until("a preview at revision 3", PATIENCE, || async {
        let preview = page.find(Locator::Css(".release-dialog-preview")).await.ok()?;
        (preview.attr("data-revision").await.ok()?.as_deref() == Some("3")).then_some(())
    })
    .await;
    page.find(Locator::Css(".release-confirm")).await.expect("confirm").click().await.expect("confirm");
    wait_for_text(page, ".release-active-head", "paused").await;
    browser.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_viewer_sees_the_split_but_no_release_controls_and_the_api_refuses_the_viewer() {
    let app = TestApp::spawn().await;
    let (release, _instances) = web_with_a_canary(&app).await;
    let password = app.add_user("vera", Role::Viewer).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/services/web"), "vera", &password).await;

    wait_for_text(page, ".release-panel .release-split", "v2 10 %").await;
    wait_for_text(page, ".release-viewer-note", "Release controls are for operators.").await;
    for control in [".release-percent-input", ".release-action", ".release-start", ".release-dialog-host"] {
        let found = page.find_all(Locator::Css(control)).await.expect("query");
        assert!(found.is_empty(), "a viewer sees no {control}");
    }
    browser.close().await;

    // The same person going around the page: refused by the API, and the refusal audited.
    let (client, csrf) = app.sign_in("vera", &password).await;
    let response = client
        .post(app.url(&format!("/api/v1/releases/{release}/actions")))
        .header("x-csrf-token", csrf)
        .json(&json!({"action": "promote", "expected_revision": 2}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 403);
    let refusals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor_name = 'vera' AND outcome <> 'success'")
            .fetch_one(&app.db)
            .await
            .expect("audit");
    assert!(refusals >= 1, "the refusal is in the audit log");
    assert_eq!(weights(&app).await, json!([{"version": "v2", "percent": 10}, {"version": "v1", "percent": 90}]));
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_releases_page_puts_the_inbox_first_and_the_detail_shows_steps_and_actions() {
    let app = TestApp::spawn().await;
    let (release, _instances) = web_with_a_canary(&app).await;
    let operator = app.token("night-shift", &[Scope::Read, Scope::Operate]).await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/releases/{release}/actions")))
        .bearer_auth(&operator)
        .json(&json!({"action": "pause", "expected_revision": 2, "reason": "waiting for the payments team"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let password = app.add_user("vera", Role::Viewer).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/releases"), "vera", &password).await;

    let inbox = wait_for_text(page, ".page-releases > .release-inbox", "web").await;
    assert!(inbox.contains("paused") && inbox.contains("since"), "the ask, its state and since when: {inbox}");
    let first_panel = page
        .execute("return document.querySelector('.page-releases .panel').classList.contains('release-inbox');", vec![])
        .await
        .expect("script");
    assert_eq!(first_panel, json!(true), "what waits for a person comes first");
    let row = wait_for_text(page, &format!(r#".releases-active tr[data-release="{release}"]"#), "paused").await;
    assert!(row.contains("10 %") && row.contains("1/3"), "{row}");
    browser.screenshot("releases-page").await;

    page.goto(&app.url(&format!("/releases/{release}"))).await.expect("detail page");
    let steps = wait_for_text(page, ".release-steps", "▶ now").await;
    assert!(steps.contains("10 %") && steps.contains("50 %") && steps.contains("◌ to come"), "{steps}");
    let actions = wait_for_text(page, ".release-actions", "pause").await;
    assert!(actions.contains("start") && actions.contains("waiting for the payments team"), "{actions}");
    assert!(actions.contains("v2 10 % · v1 90 %"), "weights before → after: {actions}");
    browser.screenshot("release-detail").await;
    browser.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_operator_starts_a_canary_from_the_form_after_confirming_the_split_it_will_make() {
    let app = TestApp::spawn().await;
    let (release, _instances) = web_with_a_canary(&app).await;
    let operator = app.token("cleanup", &[Scope::Read, Scope::Operate]).await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/releases/{release}/actions")))
        .bearer_auth(&operator)
        .json(&json!({"action": "abort", "expected_revision": 2}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200, "the first canary ends, so the form is offered");
    let password = app.add_user("olga", Role::Operator).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/services/web"), "olga", &password).await;

    let form = wait_for_text(page, "form.release-start", "Start a release").await;
    assert!(form.contains("Max canary 5xx"), "{form}");
    let target = page
        .find(Locator::Css(r#"form.release-start input[name="target_version"]"#))
        .await
        .expect("target")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(target.as_deref(), Some("v2"), "the version that isn't stable is offered first");
    page.find(Locator::Css(".release-start-submit")).await.expect("review").click().await.expect("click");
    let dialog = wait_for_text(page, ".release-dialog", "Traffic after the start").await;
    assert!(dialog.contains("v2 1 %") && dialog.contains("v1 99 %"), "{dialog}");
    page.find(Locator::Css(".release-dialog .release-confirm")).await.expect("confirm").click().await.expect("confirm");

    let head = wait_for_text(page, ".release-active-head", "progressing").await;
    assert!(head.contains("step 1 of 5"), "{head}");
    wait_for_text(page, ".release-panel .release-split", "v2 1 %").await;
    let started_by: String =
        sqlx::query_scalar("SELECT started_by FROM releases WHERE id <> $1 ORDER BY id DESC LIMIT 1")
            .bind(release)
            .fetch_one(&app.db)
            .await
            .expect("the new release");
    assert!(started_by.contains("olga"), "{started_by}");
    browser.close().await;
    app.stop().await.expect("clean stop");
}
