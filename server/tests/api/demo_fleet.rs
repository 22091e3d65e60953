//! `opsdeck demo` supervises a small fleet of demo-service processes whose nodes can be stopped
//! and started, and whose modes changed, from its control API — on the real stack.

use serde_json::Value;
use testkit::{TestEnv, free_port, wait_until};

use crate::demo::{PATIENCE, Process, node_becomes, node_health};

#[tokio::test]
async fn the_demo_supervises_a_fleet_whose_nodes_and_modes_are_changed_from_the_control_api() {
    let env = TestEnv::from_env();
    let database = env.fresh_database().await;
    let (dashboard_port, control_port) = (free_port(), free_port());
    // Ephemeral ports leave room above for the fleet's base + 21.
    let port_base = free_port().min(60000);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "demo", "--fleet", "small"])
        .args(["--listen", &format!("127.0.0.1:{dashboard_port}")])
        .args(["--control-listen", &format!("127.0.0.1:{control_port}")])
        .args(["--service-port-base", &port_base.to_string()])
        .args(["--router-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--router-admin-listen", &format!("127.0.0.1:{}", free_port())])
        .env("DATABASE_URL", database.to_string())
        .env("OPSDECK_INFLUX_URL", env.influx_url.as_str())
        .env("OPSDECK_SITE_ROOT", &env.site_root);
    let mut demo = Process::spawn(command);
    let db = wait_until("the demo's database to be migrated", PATIENCE, || async {
        let pool = sqlx::PgPool::connect_with(database.connect_options()).await.ok()?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&pool).await.ok()?;
        (count == 3).then_some(pool)
    })
    .await;
    // The demo set its services' checks through the catalog API, so failures show in seconds.
    let checks: (i32, i32, i32, i32) =
        sqlx::query_as("SELECT check_interval_ms, check_timeout_ms, fall, rise FROM services WHERE name = 'web'")
            .fetch_one(&db)
            .await
            .expect("the web service");
    assert_eq!(checks, (2000, 1000, 2, 1));
    node_becomes(&db, "east-1", "healthy").await;
    node_becomes(&db, "east-2", "healthy").await;
    // The load generator's requests show up as the services' own log lines.
    wait_until("the demo's traffic to show in the logs", PATIENCE, || async {
        let served: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM log_lines WHERE service = 'web' AND component = 'http' AND message LIKE 'GET /checkout 200 in %'",
        )
        .fetch_one(&db)
        .await
        .ok()?;
        (served > 0).then_some(())
    })
    .await;
    let scopes: Vec<String> = sqlx::query_scalar("SELECT scopes FROM api_tokens WHERE name = 'opsdeck demo fleet'")
        .fetch_one(&db)
        .await
        .expect("the fleet's token");
    assert_eq!(scopes, ["ingest", "read"], "ingest to register and send, read to discover each other");
    let control = format!("http://127.0.0.1:{control_port}");
    let http = reqwest::Client::builder().timeout(PATIENCE).build().expect("client");

    let stopped: Value =
        http.post(format!("{control}/nodes/east-1/stop")).send().await.expect("answer").json().await.expect("json");
    assert_eq!(stopped[0]["id"], "web-v1@east-1");
    assert_eq!(stopped[0]["state"], "stopped");
    node_becomes(&db, "east-1", "unhealthy").await;
    assert_eq!(node_health(&db, "east-2").await.as_deref(), Some("healthy"), "the other node is untouched");
    let fleet: Value = http.get(format!("{control}/fleet")).send().await.expect("answer").json().await.expect("json");
    let states: Vec<_> = fleet.as_array().expect("list").iter().map(|m| m["state"].as_str()).collect();
    assert_eq!(states, [Some("stopped"), Some("running"), Some("running")]);

    let started: Value =
        http.post(format!("{control}/nodes/east-1/start")).send().await.expect("answer").json().await.expect("json");
    assert_eq!(started[0]["state"], "running");
    node_becomes(&db, "east-1", "healthy").await;
    let unknown = http.post(format!("{control}/nodes/mars-1/start")).send().await.expect("answer");
    assert_eq!(unknown.status(), 404);

    let mode_of = |id: &str, body: &'static str| http.put(format!("{control}/instances/{id}/mode")).body(body).send();
    let set: Value = mode_of("web-v1@east-2", r#"{"mode":"error"}"#).await.expect("answer").json().await.expect("json");
    assert_eq!(set["mode"], "error");
    node_becomes(&db, "east-2", "unhealthy").await;
    let reason: String = sqlx::query_scalar("SELECT health_reason FROM instances WHERE health = 'unhealthy'")
        .fetch_one(&db)
        .await
        .expect("the reason is stored");
    assert!(reason.contains("HTTP 503"), "{reason}");
    assert_eq!(mode_of("web-v1@east-2", r#"{"mode":"broken"}"#).await.expect("answer").status(), 422);
    assert_eq!(mode_of("web-v1@mars-1", r#"{"mode":"error"}"#).await.expect("answer").status(), 404);
    let page = http.get(format!("{control}/")).send().await.expect("answer").text().await.expect("html");
    assert!(page.contains("<td>web-v1@east-2</td>") && page.contains("<td>error</td>"), "{page}");

    let pids: Vec<u64> = {
        let fleet: Value =
            http.get(format!("{control}/fleet")).send().await.expect("answer").json().await.expect("json");
        fleet.as_array().expect("list").iter().filter_map(|m| m["pid"].as_u64()).collect()
    };
    assert_eq!(pids.len(), 3);
    for pid in &pids {
        let environment = std::fs::read(format!("/proc/{pid}/environ")).expect("the service's environment");
        let environment = String::from_utf8_lossy(&environment);
        let variables: Vec<&str> = environment.split('\0').collect();
        let arguments = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the service's arguments");
        assert!(variables.iter().any(|v| v.starts_with("OPSDECK_TOKEN=odk_")), "the token is in the environment");
        assert!(!String::from_utf8_lossy(&arguments).contains("odk_"), "the token is not in argv (ps shows argv)");
        assert!(
            !variables.iter().any(|v| v.starts_with("DATABASE_URL=")),
            "the services don't get the dashboard's database URL"
        );
    }
    demo.sigterm();
    let status = demo.exit_status().await;

    assert!(status.success(), "exit {status:?}: {}", demo.output());
    assert_eq!(node_health(&db, "east-2").await, None, "the untouched instance deregistered on the way out");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "demo service {pid} outlived the demo");
    }
    let revoked: bool =
        sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE name = 'opsdeck demo fleet'")
            .fetch_one(&db)
            .await
            .expect("the fleet's token exists");
    assert!(revoked, "the fleet's token is revoked when the demo stops");
}
