//! The `opsdeck` binary itself: bad settings stop it at once with a message naming the setting;
//! SIGTERM stops it cleanly; logs are JSON when stdout is not a terminal.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use testkit::{TestEnv, free_port, wait_until};

fn opsdeck() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command.env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

#[test]
fn a_bad_setting_fails_fast_naming_the_setting_and_the_expectation() {
    let output = opsdeck().args(["serve", "--influx-api", "v3"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--influx-api") && stderr.contains("v1") && stderr.contains("v2"), "{stderr}");

    let output = opsdeck().args(["serve"]).env("OPSDECK_REQUEST_TIMEOUT", "soon").output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--request-timeout"), "{stderr}");
}

#[test]
fn a_missing_site_bundle_is_reported_with_how_to_build_it() {
    let output = opsdeck().args(["serve", "--site-root", "/nonexistent/site"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--site-root") && stderr.contains("cargo xtask site"), "{stderr}");
}

#[test]
fn an_unreachable_database_is_reported_with_what_to_do() {
    let env = TestEnv::from_env();
    let output = opsdeck()
        .args(["serve", "--database-timeout", "1s"])
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{}/opsdeck", free_port()))
        .env("OPSDECK_SITE_ROOT", &env.site_root)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL") && stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_logs_are_json_lines() {
    let env = TestEnv::from_env();
    let port = free_port();
    let child = opsdeck()
        .arg("serve")
        .env("OPSDECK_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", env.fresh_database().await.to_string())
        .env("OPSDECK_INFLUX_URL", env.influx_url.as_str())
        .env("OPSDECK_SITE_ROOT", &env.site_root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let child = drained(child);
    let http = reqwest::Client::new();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    wait_until("the binary to serve /healthz", Duration::from_secs(30), || {
        let request = http.get(&healthz).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    let (status, stdout, _) = terminate(child).await;
    let stdout: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert!(status.success(), "exit status {status:?}");
    assert!(!stdout.is_empty());
    for line in &stdout {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(json["level"].is_string() && json["timestamp"].is_string(), "{line}");
    }
    assert!(stdout.iter().any(|l| l.contains("opsdeck is serving")), "{stdout:?}");
    assert!(stdout.iter().any(|l| l.contains("shutting down")), "{stdout:?}");
}

#[tokio::test]
async fn migrate_applies_the_schema_and_exits() {
    let env = TestEnv::from_env();
    let url = env.fresh_database().await;
    let output = opsdeck().arg("migrate").env("DATABASE_URL", url.to_string()).output().expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pool = sqlx::PgPool::connect_with(url.connect_options()).await.expect("connect");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("the migrations table exists");
    assert_eq!(recorded as usize, opsdeck::db::MIGRATOR.iter().count());
}

/// Runs an `opsdeck` subcommand with `stdin` as its standard input.
fn run_with_input(args: &[&str], database_url: &str, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = opsdeck()
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    child.stdin.take().expect("piped").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("finishes")
}

#[tokio::test]
async fn the_first_admin_is_created_from_the_command_line_and_secrets_never_reach_the_logs() {
    let env = TestEnv::from_env();
    let database = env.fresh_database().await.to_string();
    let password = "a-password-only-this-test-knows";
    let added = run_with_input(
        &["user", "add", "--role", "admin", "--display-name", "Root Admin", "root"],
        &database,
        &format!("{password}\n"),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let created = run_with_input(&["token", "create", "--name", "ci", "--scope", "read,ingest"], &database, "");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8_lossy(&created.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with("odk_"))
        .expect("the token is printed")
        .to_owned();

    let port = free_port();
    let server = opsdeck()
        .arg("serve")
        .env("RUST_LOG", "debug")
        .env("OPSDECK_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &database)
        .env("OPSDECK_INFLUX_URL", env.influx_url.as_str())
        .env("OPSDECK_SITE_ROOT", &env.site_root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let server = drained(server);
    let base = format!("http://127.0.0.1:{port}");
    let http = testkit::TestApp::browser_like_client();
    wait_until("the server to answer", Duration::from_secs(30), || {
        let request = http.get(format!("{base}/healthz")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    // Sign in with the password (and fail once with another), and use the token.
    for attempt in ["not-the-password-either", password] {
        let page = http.get(format!("{base}/login")).send().await.expect("page").text().await.expect("html");
        let login_csrf = testkit::hidden_field(&page, "login_csrf").expect("token");
        let response = http
            .post(format!("{base}/auth/login"))
            .form(&[("username", "root"), ("password", attempt), ("login_csrf", &login_csrf)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), 303);
    }
    let me: serde_json::Value =
        http.get(format!("{base}/api/v1/me")).send().await.expect("me").json().await.expect("json");
    assert_eq!(me["name"], "root", "signed in with the password from standard input");
    let with_token =
        reqwest::Client::new().get(format!("{base}/api/v1/me")).bearer_auth(&token).send().await.expect("me");
    assert_eq!(with_token.status(), 200);

    let (_, stdout, stderr) = terminate(server).await;
    let output = format!("{stdout}{stderr}");
    let command_logs = format!("{}{}", String::from_utf8_lossy(&added.stdout), String::from_utf8_lossy(&added.stderr));
    assert!(output.contains("\"level\":\"DEBUG\""), "debug logging was on, so the check means something");
    for (name, secret) in
        [("password", password), ("failed password", "not-the-password-either"), ("token", token.as_str())]
    {
        assert!(!output.contains(secret), "the {name} appears in the server log");
        assert!(!command_logs.contains(secret), "the {name} appears in the command's output");
    }
    assert!(!output.contains(&token[4..20]), "no part of the token's secret appears");
}

/// A running server whose output is read as it is written: a full pipe would stop it.
struct Drained {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

fn drained(mut child: std::process::Child) -> Drained {
    fn reader(stream: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    Drained { child, stdout, stderr }
}

/// Sends SIGTERM and waits (at most 30 s) for the exit; returns the status and the output.
async fn terminate(mut server: Drained) -> (std::process::ExitStatus, String, String) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let finished = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().expect("waits");
        (status, server.stdout.join().unwrap_or_default(), server.stderr.join().unwrap_or_default())
    });
    tokio::time::timeout(Duration::from_secs(30), finished).await.expect("stops within 30 s").expect("joins")
}

#[tokio::test]
async fn two_serve_processes_on_one_database_each_stream_the_changes_made_through_the_other() {
    let env = TestEnv::from_env();
    let database = env.fresh_database().await.to_string();
    // Migrate first, so the two processes don't race to create the schema's first table.
    let migrated = opsdeck().arg("migrate").env("DATABASE_URL", &database).output().expect("runs");
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let created = run_with_input(&["token", "create", "--name", "agent", "--scope", "read,ingest"], &database, "");
    let token = String::from_utf8_lossy(&created.stdout)
        .lines()
        .rev()
        .find(|l| l.starts_with("odk_"))
        .expect("the token is printed")
        .to_owned();
    let bases: Vec<String> = (0..2).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
    let servers: Vec<Drained> = bases
        .iter()
        .map(|base| {
            let server = opsdeck()
                .arg("serve")
                .env("OPSDECK_LISTEN", base.trim_start_matches("http://"))
                // Long enough that a shutdown waiting for the open event streams would show.
                .env("OPSDECK_SHUTDOWN_GRACE", "10min")
                .env("DATABASE_URL", &database)
                .env("OPSDECK_INFLUX_URL", env.influx_url.as_str())
                .env("OPSDECK_SITE_ROOT", &env.site_root)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starts");
            drained(server)
        })
        .collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    for base in &bases {
        wait_until("both processes to serve", Duration::from_secs(30), || {
            let request = http.get(format!("{base}/healthz")).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }
    let mut streams = Vec::new();
    for base in &bases {
        streams.push(testkit::SseClient::connect(&format!("{base}/api/v1/events"), &token, None).await);
    }

    let body = serde_json::json!({"service": "web", "version": "v1", "cluster": "eu-1", "node": "a", "host": "127.0.0.9", "port": 9001});
    let registered = http
        .post(format!("{}/api/v1/instances", bases[0]))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(registered.status(), 201);
    let id =
        registered.json::<serde_json::Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned();
    let removed =
        http.delete(format!("{}/api/v1/instances/{id}", bases[1])).bearer_auth(&token).send().await.expect("answer");
    assert_eq!(removed.status(), 204);
    for (stream, base) in streams.iter_mut().zip(&bases) {
        let seen = stream
            .next_matching(&format!("the registration on {base}"), Duration::from_secs(10), |m| {
                m.event == "instance_registered"
            })
            .await;
        assert_eq!(seen.json()["instance"]["id"], id.as_str());
        stream
            .next_matching(&format!("the deregistration on {base}"), Duration::from_secs(10), |m| {
                m.event == "instance_deregistered"
            })
            .await;
    }
    // Shutting down ends the event streams (their clients reconnect elsewhere) instead of
    // waiting the whole grace period for them.
    for (server, mut stream) in servers.into_iter().zip(streams) {
        let (status, _, stderr) = tokio::time::timeout(Duration::from_secs(60), terminate(server))
            .await
            .expect("shutdown does not wait for open event streams");
        assert!(status.success(), "{stderr}");
        assert!(stream.ended(Duration::from_secs(10)).await, "the stream was ended");
    }
}
