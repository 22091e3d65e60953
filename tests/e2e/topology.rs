//! The topology picture in a real browser: an instance whose process is killed turns from
//! healthy to down on an open page without a reload (events → refetch), the details panel says
//! why, and the page stays readable with 2,000 instances (grouped and folded by the server).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use app::model::identity::{Role, Scope};
use fantoccini::Locator;
use serde_json::json;
use testkit::{Browser, TestApp, free_port, wait_until};

/// A real HTTP service in its own process (Python's http.server answers `/` with 200).
struct ServiceProcess(Child);

impl ServiceProcess {
    fn start(port: u16) -> Self {
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        Self(child)
    }

    fn kill(&mut self) {
        self.0.kill().expect("kill the service process");
        let _ = self.0.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_instance_turns_from_healthy_to_down_on_the_open_page_when_its_process_is_killed() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('web', 500, 300, 2, 1)",
    )
    .execute(&app.db)
    .await
    .expect("a quickly checked service");
    let ingest = app.token("agent", &[Scope::Ingest]).await;
    let mut ids = Vec::new();
    let mut processes = Vec::new();
    for node in ["east-1", "east-2"] {
        let port = free_port();
        processes.push(ServiceProcess::start(port));
        let body = json!({"service": "web", "version": "v1", "cluster": "east", "node": node, "host": "127.0.0.1",
                          "port": port, "health_check_path": "/"});
        let response =
            app.http.post(app.url("/api/v1/instances")).bearer_auth(&ingest).json(&body).send().await.expect("answer");
        assert_eq!(response.status(), 201);
        ids.push(
            response.json::<serde_json::Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned(),
        );
    }
    let password = app.add_user("vera", Role::Viewer).await;
    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    browser.sign_in(&app.url("/topology"), "vera", &password).await;
    let cell = |id: &str, health: &str| {
        Locator::Css(Box::leak(format!(r#".cell[data-instance="{id}"][data-health="{health}"]"#).into_boxed_str()))
    };
    page.wait().at_most(Duration::from_secs(30)).for_element(cell(&ids[0], "healthy")).await.expect("healthy at first");
    wait_until("the live stream", Duration::from_secs(15), || async {
        let text = page.find(Locator::Css(".freshness")).await.ok()?.text().await.ok()?;
        text.contains("live").then_some(())
    })
    .await;
    // A mark on this document: it survives only if the page is not reloaded.
    page.execute("window.__sameDocument = true", vec![]).await.expect("js");

    processes[0].kill();
    page.wait()
        .at_most(Duration::from_secs(30))
        .for_element(cell(&ids[0], "unhealthy"))
        .await
        .expect("the killed instance turns down on the open page");
    let same = page.execute("return window.__sameDocument === true", vec![]).await.expect("js");
    assert_eq!(same, json!(true), "no reload happened");
    assert!(page.find(cell(&ids[1], "healthy")).await.is_ok(), "the other instance stays healthy");

    // Its details say why.
    page.find(cell(&ids[0], "unhealthy")).await.expect("cell").click().await.expect("click");
    let details = wait_until("the details panel", Duration::from_secs(10), || async {
        page.find(Locator::Css(".instance-details")).await.ok()?.text().await.ok()
    })
    .await;
    assert!(details.contains("cannot connect"), "{details}");
    browser.screenshot("topology-instance-down-1280").await;

    // The service page: the down instance with its reason, the change, the probe chart.
    page.find(Locator::LinkText("Open service web →")).await.expect("link").click().await.expect("click");
    let changes = crate::wait_for_text(page, ".page-service", "Recent state changes").await;
    assert!(changes.contains("cannot connect"), "{changes}");
    wait_until("the probe chart", Duration::from_secs(15), || async {
        page.find(Locator::Css(".chart-svg")).await.ok()
    })
    .await;
    let degraded = page.find(Locator::Css(".service-summary")).await.expect("summary").text().await.expect("text");
    assert!(degraded.contains("degraded") && degraded.contains("1 healthy · 1 down"), "{degraded}");
    browser.screenshot("service-page-1280").await;
    browser.close().await;
}

#[tokio::test]
async fn two_thousand_instances_are_grouped_and_folded_into_a_readable_picture() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    // 2 clusters × 20 nodes × 10 services × 5 instances, registered straight into the tables
    // (the API path is tested elsewhere; this is about the picture). One node is down.
    sqlx::query(
        r#"WITH c AS (INSERT INTO clusters (name) SELECT 'region-' || g FROM generate_series(1, 2) g RETURNING id, name),
                n AS (INSERT INTO nodes (cluster_id, name, address)
                      SELECT c.id, c.name || '-node-' || g, '10.0.' || c.id || '.' || g FROM c, generate_series(1, 20) g RETURNING id, address),
                s AS (INSERT INTO services (name) SELECT 'svc-' || g FROM generate_series(1, 10) g RETURNING id),
                v AS (INSERT INTO service_versions (service_id, label) SELECT id, 'v1' FROM s RETURNING id, service_id)
           INSERT INTO instances (id, service_id, version_id, node_id, host, port, ttl_ms, health, health_reason)
           SELECT gen_random_uuid(), v.service_id, v.id, n.id, n.address, 8000 + v.service_id * 10 + k, 3600000,
                  CASE WHEN n.address = '10.0.1.7' THEN 'unhealthy' ELSE 'healthy' END,
                  CASE WHEN n.address = '10.0.1.7' THEN 'cannot connect: No route to host' END
           FROM n, v, generate_series(1, 5) k"#,
    )
    .execute(&app.db)
    .await
    .expect("2,000 instances");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.db).await.expect("count");
    assert_eq!(count, 2000);

    let html = app.get("/topology").await.text().await.expect("html");
    assert!(html.contains("2000 instances: 1950 healthy · 50 down"), "the summary counts everything");
    // Healthy nodes are folded in each cluster (20 nodes each), the down one stays open.
    assert!(html.contains("more healthy nodes"), "healthy nodes folded");
    assert!(
        html.contains("down because node region-1/region-1-node-7 is down") || html.contains("Node down"),
        "one root cause"
    );
    let cells = html.matches("class=\"cell ").count();
    assert_eq!(cells, 2000, "every instance is a mark (groups of 5 are listed)");

    let browser = Browser::start(1920, 1080).await;
    browser.client.goto(&app.url("/topology")).await.expect("open");
    browser.wait_hydrated().await;
    let first_attention = wait_until("the down node first in the overview", Duration::from_secs(15), || async {
        browser.client.goto(&app.url("/")).await.ok()?;
        browser.client.find(Locator::Css(".attention-item")).await.ok()?.text().await.ok()
    })
    .await;
    assert!(first_attention.contains("Node region-1/region-1-node-7 is down"), "{first_attention}");
    browser.client.goto(&app.url("/topology")).await.expect("open");
    browser.wait_hydrated().await;
    browser.screenshot("topology-2000-instances-1920").await;
    browser.close().await;
}
