//! The admin page: users and API tokens managed through forms, for admins only.

use app::model::identity::{Role, Scope};
use fantoccini::{Client, Locator};
use testkit::{Browser, TestApp};

use crate::wait_for_text;

/// Scrolls the first element matching `css` to the middle of the window (for screenshots).
async fn scroll_to(page: &Client, css: &str) {
    page.execute("document.querySelector(arguments[0]).scrollIntoView({block: 'center'})", vec![css.into()])
        .await
        .expect("scroll");
}

async fn stored_role(app: &TestApp, username: &str) -> Option<String> {
    sqlx::query_scalar("SELECT role FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&app.db)
        .await
        .expect("query users")
}

#[tokio::test]
async fn an_admin_creates_a_user_through_the_form_and_it_appears_in_the_list() {
    let app = TestApp::spawn().await;
    let password = app.add_user("ada", Role::Admin).await;
    app.add_user("oscar-from-the-night-shift-operations-team", Role::Operator).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/admin"), "ada", &password).await;

    // A password that breaks the rule is caught in the browser, before anything is sent.
    let form = page.form(Locator::Css("form.admin-add-user")).await.expect("the add-user form");
    form.set_by_name("username", "erin").await.expect("type the name");
    form.set_by_name("display_name", "Erin Example").await.expect("type the display name");
    form.set_by_name("role", "operator").await.expect("choose the role");
    form.set_by_name("password", "too-short").await.expect("type the password");
    form.submit().await.expect("submit");
    wait_for_text(page, ".admin-users .admin-feedback", "the password needs at least 12 characters").await;
    assert_eq!(stored_role(&app, "erin").await, None, "nothing was sent");

    form.set_by_name("password", "a long enough passphrase").await.expect("fix the password");
    form.submit().await.expect("submit");
    wait_for_text(page, ".admin-users .admin-feedback", "Added erin (operator)").await;
    let row = wait_for_text(page, r#".admin-user-row[data-username="erin"]"#, "Erin Example").await;
    assert!(row.contains("active"), "{row}");
    let role = page
        .find(Locator::Css(r#".admin-user-row[data-username="erin"] select[name="role"]"#))
        .await
        .expect("erin's role control")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(role.as_deref(), Some("operator"));
    assert_eq!(stored_role(&app, "erin").await.as_deref(), Some("operator"));

    // Her row changes her role, and disables her behind a disclosure that names her.
    let row_css = r#".admin-user-row[data-username="erin"]"#;
    let row = page.find(Locator::Css(row_css)).await.expect("erin's row");
    let role = row.find(Locator::Css(r#"select[name="role"]"#)).await.expect("role control");
    role.select_by_value("admin").await.expect("choose admin");
    row.find(Locator::Css("button[type=submit]")).await.expect("Change role").click().await.expect("click");
    wait_for_text(page, ".admin-users > .notice", "erin is active with the admin role").await;
    assert_eq!(stored_role(&app, "erin").await.as_deref(), Some("admin"));
    let row = page.find(Locator::Css(row_css)).await.expect("erin's row, refreshed");
    row.find(Locator::Css("summary")).await.expect("disclosure").click().await.expect("open");
    let disable = row.find(Locator::Css("button.admin-danger")).await.expect("disable button");
    assert_eq!(disable.text().await.expect("text"), "Disable erin");
    disable.click().await.expect("disable");
    wait_for_text(page, row_css, "disabled").await;
    let disabled: bool = sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE username = 'erin'")
        .fetch_one(&app.db)
        .await
        .expect("query");
    assert!(disabled, "erin is disabled in the database");

    // What the server refuses, it says in its own words.
    form.set_by_name("username", "erin").await.expect("the same name again");
    form.set_by_name("password", "another long passphrase").await.expect("password");
    form.submit().await.expect("submit");
    wait_for_text(page, ".admin-users .admin-feedback", "a user named erin already exists").await;
    browser.screenshot("admin-users-1280x800").await;
    browser.close().await;
}

#[tokio::test]
async fn an_admin_creates_a_token_sees_the_secret_once_and_revoking_it_in_the_ui_ends_its_access() {
    let app = TestApp::spawn().await;
    let password = app.add_user("ada", Role::Admin).await;
    app.token("agent-node-7", &[Scope::Ingest]).await;
    app.token("grafana-dashboards-for-the-platform-team-read-only", &[Scope::Read, Scope::Operate]).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/admin"), "ada", &password).await;

    let form = page.form(Locator::Css("form.admin-create-token")).await.expect("the create-token form");
    form.set_by_name("name", "wall-3").await.expect("type the name");
    page.find(Locator::Css(r#"form.admin-create-token input[name="scope_read"]"#))
        .await
        .expect("the read scope")
        .click()
        .await
        .expect("tick read");
    form.set_by_name("expires_in_days", "30").await.expect("type the expiry");
    form.submit().await.expect("submit");
    let shown = wait_for_text(page, ".admin-secret", "Copy it now: it is not shown again").await;
    let secret = page.find(Locator::Css(".admin-secret-value")).await.expect("secret").text().await.expect("text");
    assert!(!secret.is_empty() && shown.contains(&format!("Authorization: Bearer {secret}")), "{shown}");
    scroll_to(page, ".admin-secret").await;
    browser.screenshot("admin-token-created-1280x800").await;

    let me = app.http.get(app.url("/api/v1/me")).bearer_auth(&secret).send().await.expect("call as the token");
    assert_eq!(me.status(), 200);
    let who: serde_json::Value = me.json().await.expect("json");
    assert_eq!((who["kind"].as_str(), who["name"].as_str()), (Some("token"), Some("wall-3")), "{who}");

    // Once: the page loaded afresh lists the token but never its secret.
    page.goto(&app.url("/admin")).await.expect("reload");
    browser.wait_hydrated().await;
    let row_css = r#".admin-token-row[data-token="wall-3"]"#;
    let row = wait_for_text(page, row_css, "active").await;
    assert!(row.contains("read") && row.contains("ada"), "{row}");
    assert!(page.find(Locator::Css(".admin-secret")).await.is_err(), "the secret box is gone");
    assert!(!page.source().await.expect("html").contains(&secret), "the secret is nowhere in the page");

    // Revoking sits behind a disclosure that says what it will do.
    let row = page.find(Locator::Css(row_css)).await.expect("the token's row");
    row.find(Locator::Css("summary")).await.expect("disclosure").click().await.expect("open");
    let button = row.find(Locator::Css("button.admin-danger")).await.expect("revoke button");
    assert_eq!(button.text().await.expect("text"), "Revoke wall-3");
    button.click().await.expect("revoke");
    wait_for_text(page, row_css, "revoked").await;
    wait_for_text(page, ".admin-tokens .notice", "Revoked wall-3").await;

    let me = app.http.get(app.url("/api/v1/me")).bearer_auth(&secret).send().await.expect("call as the token");
    assert_eq!(me.status(), 401, "a revoked token is refused");
    scroll_to(page, ".admin-tokens-table").await;
    browser.screenshot("admin-token-revoked-1280x800").await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_opening_admin_sees_the_friendly_refusal_and_no_forms() {
    let app = TestApp::spawn().await;
    let password = app.add_user("vera", Role::Viewer).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/admin"), "vera", &password).await;

    let refusal = wait_for_text(page, ".admin-refusal", "You need the admin role for this page").await;
    assert!(refusal.contains("you are signed in as vera (viewer)"), "{refusal}");
    let forms = page.find_all(Locator::Css(".page-admin form")).await.expect("query");
    assert!(forms.is_empty(), "no controls for a viewer");
    browser.screenshot("admin-refused-1280x800").await;

    // The same before any wasm runs: the server-rendered page has no forms either.
    let (client, _) = app.sign_in("vera", &password).await;
    let html = client.get(app.url("/admin")).send().await.expect("page").text().await.expect("html");
    assert!(html.contains("You need the admin role for this page"), "{html}");
    assert!(!html.contains("admin-add-user") && !html.contains("admin-create-token"), "{html}");
    browser.close().await;
}
