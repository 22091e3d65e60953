//! Identity and access on the real stack: 401 without identity, 403 with the wrong role or
//! scope, revoked and expired tokens refused, CSRF required for browser sessions, and every
//! refusal in the audit log.

use app::model::identity::{Role, Scope};
use axum::{Router, body::Body, routing::post};
use opsdeck::auth::{Authorized, Operate};
use serde_json::{Value, json};
use testkit::TestApp;
use tower::ServiceExt;

async fn audit_rows(app: &TestApp, action: &str) -> Vec<Value> {
    let admin = app.token("auditor", &[Scope::Admin]).await;
    let page: Value = app
        .http
        .get(app.url(&format!("/api/v1/audit?action={action}&limit=500")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    page["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn no_identity_gets_401_json_with_a_bearer_challenge_and_is_audited() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/audit").await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"opsdeck\"");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized");

    let refusals = audit_rows(&app, "access.denied").await;
    let refusal =
        refusals.iter().find(|r| r["target"] == "GET /api/v1/audit").expect("the refusal is in the audit log");
    assert_eq!(refusal["actor_kind"], "anonymous");
    assert_eq!(refusal["outcome"], "denied");
    assert_eq!(refusal["source_address"], "127.0.0.1");
    assert!(refusal["request_id"].as_str().is_some_and(|id| id.len() == 36));
}

#[tokio::test]
async fn a_viewer_gets_403_on_an_operator_action_and_an_operator_may() {
    let app = TestApp::spawn().await;
    // The first operator actions arrive with releases; this route exercises the same extractor.
    let operate =
        Router::new().route("/operate", post(|_: Authorized<Operate>| async { "done" })).with_state(app.state.clone());
    let viewer = app.token("viewer-bot", &[Scope::Read]).await;
    let operator = app.token("operator-bot", &[Scope::Operate]).await;
    let call = |token: String| {
        let request =
            http::Request::post("/operate").header("authorization", format!("Bearer {token}")).body(Body::empty());
        operate.clone().oneshot(request.expect("request"))
    };
    assert_eq!(call(viewer).await.expect("answer").status(), 403);
    assert_eq!(call(operator).await.expect("answer").status(), 200);

    let password = app.add_user("vera", Role::Viewer).await;
    let (session, csrf) = app.sign_in("vera", &password).await;
    let response = session
        .post(app.url("/api/v1/tokens"))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "x", "scopes": ["read"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 403, "a viewer may not manage tokens");
    let body: Value = response.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("vera (viewer)") && d.contains("admin")), "{body}");
    let refusals = audit_rows(&app, "access.denied").await;
    assert!(refusals.iter().any(|r| r["actor_name"] == "vera" && r["target"] == "POST /api/v1/tokens"), "{refusals:?}");
    assert!(refusals.iter().any(|r| r["actor_name"] == "viewer-bot" && r["target"] == "POST /operate"), "{refusals:?}");
}

#[tokio::test]
async fn an_ingest_token_cannot_read() {
    let app = TestApp::spawn().await;
    let ingest = app.token("agent-node-7", &[Scope::Ingest]).await;
    let response = app.http.get(app.url("/api/v1/me")).bearer_auth(&ingest).send().await.expect("answer");
    assert_eq!(response.status(), 403);
    let refusals = audit_rows(&app, "access.denied").await;
    let refusal = refusals.iter().find(|r| r["actor_name"] == "agent-node-7").expect("audited");
    assert_eq!(refusal["actor_kind"], "token");
    assert!(refusal["detail"].as_str().is_some_and(|d| d.contains("needs the read scope")), "{refusal}");
}

#[tokio::test]
async fn a_revoked_token_gets_401_from_then_on() {
    let app = TestApp::spawn().await;
    let admin = app.token("admin-bot", &[Scope::Admin]).await;
    let created: Value = app
        .http
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "wall-3", "scopes": ["read"]}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let secret = created["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("odk_"));
    assert_eq!(app.http.get(app.url("/api/v1/me")).bearer_auth(&secret).send().await.expect("me").status(), 200);

    let id = created["token"]["id"].as_i64().expect("id");
    let revoked =
        app.http.delete(app.url(&format!("/api/v1/tokens/{id}"))).bearer_auth(&admin).send().await.expect("revoke");
    assert_eq!(revoked.status(), 200);

    let response = app.http.get(app.url("/api/v1/me")).bearer_auth(&secret).send().await.expect("me");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("revoked")), "{body}");
    let refusals = audit_rows(&app, "access.denied").await;
    assert!(refusals.iter().any(|r| r["actor_name"] == "wall-3" && r["actor_kind"] == "token"), "{refusals:?}");
    assert_eq!(audit_rows(&app, "token.revoke").await.len(), 1);
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let app = TestApp::spawn().await;
    let secret = app.token("old-script", &[Scope::Read]).await;
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'old-script'")
        .execute(&app.db)
        .await
        .expect("expire it");
    let response = app.http.get(app.url("/api/v1/me")).bearer_auth(&secret).send().await.expect("me");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("expired")), "{body}");
}

#[tokio::test]
async fn unknown_and_malformed_tokens_get_401() {
    let app = TestApp::spawn().await;
    for header in ["Bearer odk_not-a-real-token", "Basic YWxpY2U6cHc=", "Bearer "] {
        let response =
            app.http.get(app.url("/api/v1/me")).header("authorization", header).send().await.expect("answer");
        assert_eq!(response.status(), 401, "{header}");
    }
}

#[tokio::test]
async fn a_session_change_without_the_csrf_token_is_403_and_with_it_accepted() {
    let app = TestApp::spawn().await;
    let password = app.add_user("ada", Role::Admin).await;
    let (session, csrf) = app.sign_in("ada", &password).await;
    let request = json!({"name": "from-the-browser", "scopes": ["read"]});

    let without = session.post(app.url("/api/v1/tokens")).json(&request).send().await.expect("answer");
    assert_eq!(without.status(), 403);
    let wrong = session
        .post(app.url("/api/v1/tokens"))
        .header("x-csrf-token", "guess")
        .json(&request)
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 403);
    let with = session
        .post(app.url("/api/v1/tokens"))
        .header("x-csrf-token", &csrf)
        .json(&request)
        .send()
        .await
        .expect("answer");
    assert_eq!(with.status(), 201);

    // The sign-out form: without the token nothing happens, with it the session ends.
    let forged = session.post(app.url("/auth/logout")).form(&[("csrf", "")]).send().await.expect("answer");
    assert_eq!(forged.status(), 403);
    assert_eq!(session_count(&app).await, 1);
    let real = session.post(app.url("/auth/logout")).form(&[("csrf", csrf.as_str())]).send().await.expect("answer");
    assert_eq!(real.status(), 303);
    assert_eq!(session_count(&app).await, 0, "the session is gone server-side");
    assert_eq!(session.get(app.url("/api/v1/me")).send().await.expect("answer").status(), 401);
}

async fn session_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(&app.db).await.expect("count")
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_the_same_answer_and_are_audited() {
    let app = TestApp::spawn().await;
    app.add_user("bob", Role::Operator).await;
    let client = TestApp::browser_like_client();
    let mut answers = Vec::new();
    for (username, password) in [("bob", "wrong password!"), ("nobody", "wrong password!")] {
        let page = client.get(app.url("/login")).send().await.expect("page").text().await.expect("html");
        let token = testkit::hidden_field(&page, "login_csrf").expect("token");
        let response = client
            .post(app.url("/auth/login"))
            .form(&[("username", username), ("password", password), ("login_csrf", &token)])
            .send()
            .await
            .expect("answer");
        answers.push((response.status(), response.headers()["location"].to_str().expect("ascii").to_owned()));
    }
    assert_eq!(answers[0], answers[1], "the answer does not reveal whether the user exists");
    assert!(answers[0].1.starts_with("/login?error=invalid"));
    let failures = audit_rows(&app, "auth.login").await;
    assert_eq!(failures.iter().filter(|r| r["outcome"] == "failed").count(), 2);
    assert!(failures.iter().all(|r| r["detail"] == "wrong user name or password"));
}

#[tokio::test]
async fn repeated_failures_lock_sign_in_for_the_account_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    let password = app.add_user("carol", Role::Viewer).await;
    let client = TestApp::browser_like_client();
    let attempt = |password: String| {
        let client = client.clone();
        let login = app.url("/login");
        let post = app.url("/auth/login");
        async move {
            let page = client.get(login).send().await.expect("page").text().await.expect("html");
            let token = testkit::hidden_field(&page, "login_csrf").expect("token");
            let response = client
                .post(post)
                .form(&[("username", "carol"), ("password", password.as_str()), ("login_csrf", token.as_str())])
                .send()
                .await
                .expect("answer");
            response.headers()["location"].to_str().expect("ascii").to_owned()
        }
    };
    for _ in 0..5 {
        assert!(attempt("not her password".into()).await.contains("error=invalid"));
    }
    assert!(attempt(password).await.contains("error=rate_limited"), "locked even with the right password");
    let attempts = audit_rows(&app, "auth.login").await;
    assert!(attempts.iter().any(|r| r["outcome"] == "denied"), "{attempts:?}");
}

#[tokio::test]
async fn a_sign_in_form_without_its_token_is_refused() {
    let app = TestApp::spawn().await;
    let password = app.add_user("dan", Role::Viewer).await;
    let client = TestApp::browser_like_client();
    let response = client
        .post(app.url("/auth/login"))
        .form(&[("username", "dan"), ("password", password.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().expect("ascii").contains("error=form_expired"));
    assert_eq!(session_count(&app).await, 0);
}

#[tokio::test]
async fn pages_send_anonymous_visitors_to_sign_in_and_back() {
    let app = TestApp::spawn().await;
    let response = TestApp::browser_like_client().get(app.url("/?x=1")).send().await.expect("answer");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2F%3Fx%3D1");
}

#[tokio::test]
async fn anonymous_read_mode_lets_anyone_read_but_not_act() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    assert_eq!(app.get("/api/v1/audit").await.status(), 200);
    assert_eq!(TestApp::browser_like_client().get(app.url("/")).send().await.expect("page").status(), 200);
    let act = app
        .http
        .post(app.url("/api/v1/tokens"))
        .json(&json!({"name": "x", "scopes": ["read"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(act.status(), 401);
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_audit_rows() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/audit").await; // one refusal row to tamper with
    for statement in ["UPDATE audit_log SET outcome = 'success'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let error = sqlx::query(statement).execute(&app.db).await.expect_err("append-only");
        assert!(error.to_string().contains("append-only"), "{statement}: {error}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&app.db).await.expect("count");
    assert!(rows >= 1);
}

#[tokio::test]
async fn user_management_records_before_and_after_and_never_the_password() {
    let app = TestApp::spawn().await;
    let admin = app.token("admin-bot", &[Scope::Admin]).await;
    let create =
        json!({"username": "erin", "display_name": "Erin", "role": "viewer", "password": "a long enough password"});
    let created =
        app.http.post(app.url("/api/v1/users")).bearer_auth(&admin).json(&create).send().await.expect("create");
    assert_eq!(created.status(), 201);
    let again = app.http.post(app.url("/api/v1/users")).bearer_auth(&admin).json(&create).send().await.expect("again");
    assert_eq!(again.status(), 409);
    let short = json!({"username": "fay", "display_name": "Fay", "role": "viewer", "password": "short"});
    let refused = app.http.post(app.url("/api/v1/users")).bearer_auth(&admin).json(&short).send().await.expect("short");
    assert_eq!(refused.status(), 422);

    let change = json!({"role": "operator", "password": "another long password"});
    let updated =
        app.http.patch(app.url("/api/v1/users/erin")).bearer_auth(&admin).json(&change).send().await.expect("update");
    assert_eq!(updated.status(), 200);
    let rows = audit_rows(&app, "user.update").await;
    assert_eq!(rows[0]["before"]["role"], "viewer");
    assert_eq!(rows[0]["after"]["role"], "operator");
    assert_eq!(rows[0]["after"]["password"], "changed");
    let everything: String = sqlx::query_scalar("SELECT string_agg(row_to_json(a)::text, ' ') FROM audit_log a")
        .fetch_one(&app.db)
        .await
        .expect("dump");
    assert!(!everything.contains("another long password") && !everything.contains("a long enough password"));
}

#[tokio::test]
async fn responses_carry_security_headers_and_pages_a_nonce_policy() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    let api = app.get("/healthz").await;
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["x-frame-options"], "DENY");
    assert!(api.headers()["content-security-policy"].to_str().expect("ascii").contains("frame-ancestors 'none'"));
    let page = app.get("/").await;
    let policy = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the policy")
        .to_owned();
    let html = page.text().await.expect("html");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "the inline script carries the same nonce");
    assert!(
        policy.contains("'wasm-unsafe-eval'")
            && !policy.contains("'unsafe-inline' ;")
            && !policy.contains("script-src 'self' 'unsafe-inline'")
    );
}

#[tokio::test]
async fn sessions_end_after_the_idle_time_and_after_their_lifetime() {
    let app = TestApp::spawn().await;
    let password = app.add_user("ida", Role::Viewer).await;
    let (session, _) = app.sign_in("ida", &password).await;
    assert_eq!(session.get(app.url("/api/v1/me")).send().await.expect("me").status(), 200);

    // Unused for longer than the idle time (12 h in tests).
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '13 hours'").execute(&app.db).await.expect("age");
    assert_eq!(session.get(app.url("/api/v1/me")).send().await.expect("me").status(), 401);

    // Recently used, but past its absolute expiry.
    sqlx::query("UPDATE sessions SET last_seen_at = now(), expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .expect("age");
    assert_eq!(session.get(app.url("/api/v1/me")).send().await.expect("me").status(), 401);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_and_secure_behind_tls() {
    let app = TestApp::spawn_with(|settings| settings.auth.cookie_secure = opsdeck::cli::CookieSecure::Auto).await;
    let password = app.add_user("tess", Role::Viewer).await;
    for (proto, secure) in [("http", false), ("https", true)] {
        let client = TestApp::browser_like_client();
        let page = client.get(app.url("/login")).send().await.expect("page").text().await.expect("html");
        let token = testkit::hidden_field(&page, "login_csrf").expect("token");
        let response = client
            .post(app.url("/auth/login"))
            .header("x-forwarded-proto", proto)
            .form(&[("username", "tess"), ("password", password.as_str()), ("login_csrf", token.as_str())])
            .send()
            .await
            .expect("sign in");
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("opsdeck_session="))
            .expect("a session cookie")
            .to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        assert_eq!(cookie.contains("Secure"), secure, "{proto}: {cookie}");
    }
}

#[tokio::test]
async fn a_token_records_when_it_was_last_used() {
    let app = TestApp::spawn().await;
    let admin = app.token("admin-bot", &[Scope::Admin]).await;
    let reader = app.token("reader-bot", &[Scope::Read]).await;
    app.http.get(app.url("/api/v1/me")).bearer_auth(&reader).send().await.expect("me");
    let tokens: Value = app
        .http
        .get(app.url("/api/v1/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let reader_row =
        tokens.as_array().and_then(|t| t.iter().find(|t| t["name"] == "reader-bot")).expect("listed").clone();
    assert!(reader_row["last_used_at"].is_string(), "{reader_row}");
    assert!(
        reader_row.get("secret").is_none() && !reader_row.to_string().contains(&reader[4..]),
        "lists never show secrets"
    );
}
