//! The router's acceptance runs under load (issue #6): the canary share over 10,000 requests, a
//! blue-green switch and switch back with zero failed requests, and a killed `opsdeck
//! demo-service` process with zero failed requests (retries), its breaker opened and the checker
//! marking it down.

use app::model::traffic::{Route, Sticky};
use serde_json::Value;
use testkit::{free_port, wait_until};

use crate::{
    demo::Process,
    router::{Load, PATIENCE, Stage, Tally},
};

/// `total` requests to `host` through the router, `concurrency` at a time.
async fn requests(stage: &Stage, host: &str, total: usize, concurrency: usize) -> Tally {
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, url, host) = (stage.http.clone(), format!("{}/", stage.router.url), host.to_owned());
            let count = total / concurrency + usize::from(worker < total % concurrency);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for _ in 0..count {
                    tally.add(http.get(&url).header("host", &host).send().await).await;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("a request loop");
        total.ok += tally.ok;
        total.failures.extend(tally.failures);
        for (version, n) in tally.versions {
            *total.versions.entry(version).or_default() += n;
        }
    }
    total
}

#[tokio::test]
async fn with_the_canary_at_10_percent_10000_requests_send_10_percent_plus_or_minus_1_5_to_the_canary() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["v1", "v1", "v2"]).await;
    stage.set_policy("web", &[("v2", 10), ("v1", 90)], Sticky::default(), Route::default()).await;

    let tally = requests(&stage, "web", 10_000, 8).await;

    assert!(tally.failures.is_empty(), "no failures: {:?}", &tally.failures[..tally.failures.len().min(5)]);
    let canary = tally.versions.get("v2").copied().unwrap_or(0);
    assert_eq!(tally.ok, 10_000);
    assert!((850..=1150).contains(&canary), "canary got {canary} of 10,000: {:?}", tally.versions);
}

#[tokio::test]
async fn a_blue_green_switch_and_switch_back_under_steady_load_fail_no_client_request() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["blue", "blue", "green", "green"]).await;
    stage.set_policy("web", &[("blue", 100)], Sticky::default(), Route::default()).await;
    let load = Load::start(&stage, "web", 6);
    let served_by = |version: &'static str| {
        let stage = &stage;
        async move {
            wait_until(&format!("{version} to serve"), PATIENCE, || async {
                let answer: Value = stage.get("web", "/").await.json().await.ok()?;
                (answer["version"] == version).then_some(())
            })
            .await
        }
    };
    served_by("blue").await;

    stage.set_policy("web", &[("green", 100), ("blue", 0)], Sticky::default(), Route::default()).await;
    served_by("green").await;
    stage.set_policy("web", &[("blue", 100), ("green", 0)], Sticky::default(), Route::default()).await;
    served_by("blue").await;
    let tally = load.finish().await;

    assert!(tally.failures.is_empty(), "zero failed client requests: {:?}", tally.failures);
    assert!(tally.versions.get("green").copied().unwrap_or(0) > 0, "green served: {:?}", tally.versions);
    assert!(tally.versions.get("blue").copied().unwrap_or(0) > 0, "blue served: {:?}", tally.versions);
}

/// `opsdeck demo-service` for `service` v1 on a free port, registering itself with the app.
fn demo_service(stage: &Stage, service: &str, token: &str) -> (Process, u16) {
    let port = free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["--log-format", "json", "demo-service", "--service", service, "--service-version", "v1"])
        .args(["--cluster", "east", "--node", &format!("east-{port}"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--opsdeck-url", &stage.app.address])
        .env("OPSDECK_TOKEN", token);
    (Process::spawn(command), port)
}

#[tokio::test]
async fn killing_an_instance_under_steady_get_load_fails_no_request_opens_its_breaker_and_health_marks_it_down() {
    let stage = Stage::new().await;
    let token =
        stage.app.token("demo", &[app::model::identity::Scope::Ingest, app::model::identity::Scope::Read]).await;
    let (victim, victim_port) = demo_service(&stage, "web", &token);
    let (_survivor, _) = demo_service(&stage, "web", &token);
    let (_third, _) = demo_service(&stage, "web", &token);
    wait_until("the three demo services to register", PATIENCE, || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&stage.app.db).await.ok()?;
        (count == 3).then_some(())
    })
    .await;
    // Through the API, so the checker hears of it (an event) and uses the quick checks at once.
    let operator = stage.app.token("ops", &[app::model::identity::Scope::Operate]).await;
    let quick = serde_json::json!({"check_interval_ms": 500, "check_timeout_ms": 400, "fall": 2, "rise": 1});
    let tuned = stage
        .http
        .patch(stage.app.url("/api/v1/services/web"))
        .bearer_auth(&operator)
        .json(&quick)
        .send()
        .await
        .expect("the app answers");
    assert_eq!(tuned.status(), 200, "quick checks set");
    stage.wait_in_rotation("web", 3).await;
    let load = Load::start(&stage, "web", 6);
    wait_until("requests to flow", PATIENCE, || async { (stage.get("web", "/").await.status() == 200).then_some(()) })
        .await;

    let killed = std::process::Command::new("kill").args(["-KILL", &victim.pid().to_string()]).status();
    assert!(killed.expect("kill runs").success());
    let health = wait_until("the checker to mark the killed instance down", PATIENCE, || async {
        let status = stage.service_status("web").await?;
        let victim = status["upstreams"]
            .as_array()?
            .iter()
            .find(|u| u["address"].as_str().is_some_and(|a| a.ends_with(&format!(":{victim_port}"))))?
            .clone();
        (victim["health"] != "healthy").then(|| victim["health"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    // Keep the load on a little while the instance is out, then stop.
    for _ in 0..50 {
        assert_eq!(stage.get("web", "/").await.status(), 200);
    }
    let tally = load.finish().await;

    assert!(tally.failures.is_empty(), "zero failed client requests: {:?}", tally.failures);
    assert!(tally.ok > 0);
    assert_eq!(health, "unhealthy");
    let metrics = stage.http.get(format!("{}/metrics", stage.router.admin)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("opsdeck_router_breakers_opened_total{service=\"web\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(opened.is_some_and(|n| n >= 1.0), "the killed instance's breaker opened:\n{metrics}");
}
