//! The audit page: the log newest first, filtered through the URL, and never executing what
//! people typed.

use std::time::Duration;

use app::model::identity::Role;
use fantoccini::{Client, Locator};
use testkit::{Browser, TestApp, wait_until};

use crate::wait_for_text;

/// The `data-action` of every row shown.
async fn shown_actions(page: &Client) -> Option<Vec<String>> {
    let mut actions = Vec::new();
    for row in page.find_all(Locator::Css(".audit-row")).await.ok()? {
        actions.push(row.attr("data-action").await.ok()??);
    }
    Some(actions)
}

#[tokio::test]
async fn the_audit_page_lists_the_sign_in_of_the_current_user_and_filtering_by_access_denied_shows_only_refusals() {
    let app = TestApp::spawn().await;
    let password = app.add_user("vic", Role::Viewer).await;
    // A refusal to find later: the API called without identity.
    assert_eq!(app.get("/api/v1/audit").await.status(), 401);
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/audit"), "vic", &password).await;

    let login = wait_for_text(page, r#".audit-row[data-action="auth.login"][data-outcome="success"]"#, "vic").await;
    assert!(login.contains("user vic") && login.contains("●") && login.contains("success"), "{login}");
    // The change behind a record opens in place.
    let creation = page.find(Locator::Css(r#".audit-row[data-action="user.create"]"#)).await.expect("vic's creation");
    creation.find(Locator::Css("summary")).await.expect("its change").click().await.expect("open");
    let change = creation.find(Locator::Css(".audit-change-values")).await.expect("before and after");
    assert!(change.text().await.expect("text").contains(r#""username":"vic""#), "compact JSON");
    browser.screenshot("audit-1280x800").await;

    let form = page.form(Locator::Css("form.audit-filters")).await.expect("the filter form");
    form.set_by_name("action", "access.denied").await.expect("choose the action");
    form.submit().await.expect("apply");
    let actions = wait_until("only refusals to be listed", Duration::from_secs(15), || async {
        let actions = shown_actions(page).await?;
        (!actions.is_empty() && actions.iter().all(|a| a == "access.denied")).then_some(actions)
    })
    .await;
    assert!(!actions.is_empty());
    let url = page.current_url().await.expect("url");
    assert!(url.as_str().contains("action=access.denied"), "the filter is in the URL: {url}");
    let refusal = wait_for_text(page, ".audit-row", "GET /api/v1/audit").await;
    assert!(refusal.contains("✕") && refusal.contains("denied") && refusal.contains("anonymous"), "{refusal}");
    browser.screenshot("audit-filtered-1280x800").await;

    // The filtered view is a link that works without the wasm: the server renders it so.
    let (client, _) = app.sign_in("vic", &password).await;
    let html = client.get(url.as_str()).send().await.expect("page").text().await.expect("html");
    assert!(html.contains(r#"data-action="access.denied""#), "{html}");
    assert!(!html.contains(r#"data-action="auth.login""#), "{html}");
    browser.close().await;
}

#[tokio::test]
async fn a_script_tag_typed_as_a_user_name_shows_in_the_audit_log_as_text() {
    let app = TestApp::spawn().await;
    let password = app.add_user("vic", Role::Viewer).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    let hostile = "<script>alert(1)</script>";

    // A sign-in attempt with markup for a user name: the audit target becomes `user <script>…`.
    page.goto(&app.url("/login")).await.expect("navigate");
    let form = page.form(Locator::Css("form.login-form")).await.expect("the sign-in form");
    form.set_by_name("username", hostile).await.expect("type the name");
    form.set_by_name("password", "not the password").await.expect("type a password");
    form.submit().await.expect("submit");
    page.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".login-form .notice"))
        .await
        .expect("the sign-in is refused");

    browser.sign_in(&app.url("/audit"), "vic", &password).await;
    let target = wait_for_text(page, r#".audit-row[data-outcome="failed"] .audit-target"#, "user <script>").await;
    assert_eq!(target, format!("user {hostile}"), "the markup is shown as typed");
    let injected: bool = serde_json::from_value(
        page.execute("return Array.from(document.scripts).some(s => s.textContent.trim() === 'alert(1)')", vec![])
            .await
            .expect("js runs"),
    )
    .expect("a bool");
    assert!(!injected, "no <script>alert element exists in the page");
    assert!(page.find_all(Locator::Css(".audit-table script")).await.expect("query").is_empty());

    // Escaped on the server as well, for the first paint and for the hydration data.
    let (client, _) = app.sign_in("vic", &password).await;
    let html = client.get(app.url("/audit")).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("user &lt;script"), "{html}");
    assert!(!html.contains(hostile), "{html}");
    browser.screenshot("audit-hostile-name-1280x800").await;
    browser.close().await;
}
