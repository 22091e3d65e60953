//! The metric charts in a real browser: a service page with request data shows its traffic
//! charts with axes and hover titles carrying values, and they change without a reload when
//! more requests are written; a service without request data says "no data" instead of
//! drawing a flat zero; a node page shows CPU and memory and takes new reports on its refresh
//! timer.

use std::time::Duration;

use app::model::identity::Scope;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use testkit::{Browser, TargetServer, TestApp, free_port, wait_until};

async fn register(app: &TestApp, ingest: &str, service: &str, node: &str) -> String {
    let body = json!({"service": service, "version": "v1", "cluster": "east", "node": node, "host": "127.0.0.1",
                      "port": free_port(), "health_check_path": "/"});
    let response = app.http.post(app.url("/api/v1/instances")).bearer_auth(ingest).json(&body).send().await;
    let response = response.expect("answer");
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned()
}

async fn write(app: &TestApp, ingest: &str, lines: String) {
    let response = app
        .http
        .post(app.url("/api/v1/metrics?precision=ms"))
        .bearer_auth(ingest)
        .body(lines)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 202);
}

/// Milliseconds since the epoch, `seconds_ago` seconds ago.
fn ms_ago(seconds_ago: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    now.as_millis() as i64 - seconds_ago * 1000
}

/// `count` requests of `instance` spread over the 10 s after `start_ms`, every fifth a 503.
fn requests(instance: &str, start_ms: i64, count: i64) -> String {
    (0..count)
        .map(|i| {
            let (status, class) = if i % 5 == 4 { (503, "5xx") } else { (200, "2xx") };
            let at = start_ms + i * 10_000 / count.max(1);
            format!(
                "http_requests,instance={instance},method=GET,status_class={class} latency_ms={},status={status}i {}\n",
                12.0 + i as f64,
                at
            )
        })
        .collect()
}

async fn texts(page: &Client, script: &str) -> Vec<String> {
    serde_json::from_value(page.execute(script, vec![]).await.expect("js")).expect("strings")
}

#[tokio::test]
async fn traffic_charts_show_values_on_hover_and_change_without_a_reload_and_an_idle_service_shows_no_data() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    let ingest = app.token("demo", &[Scope::Ingest]).await;
    let web = register(&app, &ingest, "web", "east-1").await;
    register(&app, &ingest, "quiet", "east-2").await;
    write(&app, &ingest, requests(&web, ms_ago(180), 5)).await;
    // Wait until InfluxDB has them, so the first render shows them.
    let reader = app.token("reader", &[Scope::Read]).await;
    wait_until("the requests in InfluxDB", Duration::from_secs(20), || async {
        let response = app.http.get(app.url("/api/v1/metrics/services/web?range=15m")).bearer_auth(&reader).send();
        let body: Value = response.await.ok()?.json().await.ok()?;
        (body["versions"][0]["requests"] == 5).then_some(())
    })
    .await;

    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    page.goto(&app.url("/services/web?range=15m")).await.expect("open the service page");
    browser.wait_hydrated().await;
    crate::wait_for_text(page, ".traffic-summary", "v1: 5 requests").await;
    let chart = page.find(Locator::Css(r#".traffic-panel .time-chart[data-has-data="true"]"#)).await;
    chart.expect("a chart with data");
    let ticks =
        texts(page, "return [...document.querySelectorAll('.traffic-panel .chart-tick')].map(t => t.textContent)")
            .await;
    assert!(ticks.iter().any(|t| t.ends_with("req/s")), "a value axis with units: {ticks:?}");
    assert!(ticks.iter().any(|t| t.len() == 5 && t.contains(':')), "a time axis in HH:MM: {ticks:?}");
    let titles = texts(
        page,
        "return [...document.querySelectorAll('.traffic-panel .chart-column title')].map(t => t.textContent)",
    )
    .await;
    assert!(titles.iter().any(|t| t.contains("UTC — v1 ") && t.contains("req/s")), "hover values: {titles:?}");
    assert!(titles.iter().any(|t| t.contains("p99 ") && t.contains(" ms")), "latency on hover");
    assert!(titles.iter().any(|t| t.contains("v1 no data")), "empty buckets say so on hover");
    // Pointing at a bucket spells its values out above the chart.
    page.execute(
        "const column = [...document.querySelectorAll('.traffic-panel .chart-column')]\
             .find(c => !c.classList.contains('is-empty'));\
         column.closest('figure').id = 'pointed';\
         column.dispatchEvent(new MouseEvent('mouseenter'));",
        vec![],
    )
    .await
    .expect("js");
    let readout = crate::wait_for_text(page, "#pointed .chart-readout", "UTC — v1 ").await;
    assert!(readout.contains("req/s"), "{readout}");
    let lines = page.find_all(Locator::Css(".traffic-panel .chart-svg .chart-line")).await.expect("lines");
    assert!(!lines.is_empty(), "lines are drawn");

    wait_until("the live stream", Duration::from_secs(15), || async {
        let text = page.find(Locator::Css(".traffic-panel .freshness")).await.ok()?.text().await.ok()?;
        text.contains("live").then_some(())
    })
    .await;
    page.execute("window.__sameDocument = true", vec![]).await.expect("js");
    page.execute("document.querySelector('.traffic-panel').scrollIntoView()", vec![]).await.expect("js");
    browser.screenshot("service-traffic-1280").await;

    write(&app, &ingest, requests(&web, ms_ago(30), 7)).await;
    wait_until("the chart to take the new requests", Duration::from_secs(45), || async {
        let text = page.find(Locator::Css(".traffic-summary")).await.ok()?.text().await.ok()?;
        text.contains("v1: 12 requests").then_some(())
    })
    .await;
    // Nothing listens on the instance's port: the checker marks it down, and the charts mark when.
    let marker = wait_until("a health marker on the charts", Duration::from_secs(30), || async {
        let labels = texts(
            page,
            "return [...document.querySelectorAll('.traffic-panel .chart-marker.is-down title')].map(t => t.textContent)",
        )
        .await;
        labels.into_iter().find(|l| l.contains("web v1 on east/east-1") && l.contains("→ unhealthy"))
    })
    .await;
    assert!(marker.contains("UTC"), "{marker}");
    let same = page.execute("return window.__sameDocument === true", vec![]).await.expect("js");
    assert_eq!(same, json!(true), "the charts changed without a reload");

    // The range picker: a preset is a link the router follows in place; the window is in the URL.
    page.find(Locator::Css(r#".range-link[href$="range=1h"]"#)).await.expect("1 h").click().await.expect("click");
    crate::wait_for_text(page, ".range-link.is-active", "1 h").await;
    let minute_titles = wait_until("one-minute buckets", Duration::from_secs(15), || async {
        let titles = texts(
            page,
            "return [...document.querySelectorAll('.traffic-panel .chart-column title')].map(t => t.textContent)",
        )
        .await;
        (titles.len() >= 60 && titles.iter().all(|t| t.contains(":00 UTC"))).then_some(titles)
    })
    .await;
    assert!(minute_titles.iter().any(|t| t.contains("UTC — v1 ")));
    assert!(page.current_url().await.expect("url").as_str().ends_with("/services/web?range=1h"));
    let same = page.execute("return window.__sameDocument === true", vec![]).await.expect("js");
    assert_eq!(same, json!(true), "a preset changes the window without a reload");
    // A custom window (a plain GET form, so it works before hydration too).
    page.execute(
        "const form = document.querySelector('.range-custom');\
         const at = m => new Date(Date.now() - m * 60000).toISOString().slice(0, 16);\
         form.elements.from.value = at(30); form.elements.to.value = at(-1); form.submit();",
        vec![],
    )
    .await
    .expect("js");
    wait_until("the custom window's URL", Duration::from_secs(15), || async {
        let url = page.current_url().await.ok()?;
        url.query().is_some_and(|q| q.contains("from=") && q.contains("to=")).then_some(())
    })
    .await;
    browser.wait_hydrated().await;
    crate::wait_for_text(page, ".traffic-summary", "v1: 12 requests").await;
    let active = page.find_all(Locator::Css(".range-link.is-active")).await.expect("links");
    assert!(active.is_empty(), "no preset is marked for a custom window");

    page.goto(&app.url("/services/quiet?range=15m")).await.expect("open the idle service");
    let notice = crate::wait_for_text(page, ".traffic-no-data", "No requests recorded").await;
    assert!(notice.contains("not the same as zero"), "{notice}");
    let empty_charts = page.find_all(Locator::Css(r#".traffic-panel .time-chart[data-has-data="false"]"#)).await;
    assert!(empty_charts.expect("charts").len() >= 3, "every chart says no data");
    let drawn = page.find_all(Locator::Css(".traffic-panel .chart-svg .chart-line")).await.expect("lines");
    assert!(drawn.is_empty(), "no line at all, not a flat zero");
    crate::wait_for_text(page, ".traffic-panel .chart-no-data", "No requests recorded in this window").await;
    page.execute("document.querySelector('.traffic-panel').scrollIntoView()", vec![]).await.expect("js");
    browser.screenshot("service-traffic-no-data-1280").await;

    browser.close().await;
}

#[tokio::test]
async fn a_node_page_shows_cpu_and_memory_and_takes_new_reports_on_its_refresh_timer_without_a_reload() {
    let app = TestApp::spawn_with(|settings| settings.auth.anonymous_read = true).await;
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('web', 500, 300, 2, 1)",
    )
    .execute(&app.db)
    .await
    .expect("a quickly checked service");
    // A healthy instance with a long lease: after its first verdict no change event is due,
    // so only the refresh timer can make the page refetch.
    let target = TargetServer::start().await;
    let ingest = app.token("demo", &[Scope::Ingest]).await;
    let body = json!({"service": "web", "version": "v1", "cluster": "east", "node": "east-1", "host": "127.0.0.1",
                      "port": target.port, "health_check_path": "/healthz", "ttl_seconds": 3600});
    let response = app.http.post(app.url("/api/v1/instances")).bearer_auth(&ingest).json(&body).send().await;
    assert_eq!(response.expect("answer").status(), 201);
    write(&app, &ingest, "node,cluster=east,node=east-1 cpu_percent=37.5,memory_used_percent=55.0\n".into()).await;
    let reader = app.token("reader", &[Scope::Read]).await;
    wait_until("a healthy instance and the node's report", Duration::from_secs(20), || async {
        let response = app.http.get(app.url("/api/v1/metrics/nodes/east/east-1?range=15m")).bearer_auth(&reader).send();
        let body: Value = response.await.ok()?.json().await.ok()?;
        (body["has_data"] == true && body["instances"][0]["health"] == "healthy").then_some(())
    })
    .await;

    let browser = Browser::start(1280, 800).await;
    let page = &browser.client;
    page.goto(&app.url("/nodes/east/east-1?range=15m")).await.expect("open the node page");
    browser.wait_hydrated().await;
    crate::wait_for_text(page, ".page-node", "Instances on this node").await;
    let cpu_script = "return [...document.querySelectorAll('.page-node .chart-column title')]\
                      .map(t => t.textContent).filter(t => t.includes('CPU') && !t.includes('CPU no data'))";
    let titles =
        texts(page, "return [...document.querySelectorAll('.page-node .chart-column title')].map(t => t.textContent)")
            .await;
    assert!(titles.iter().any(|t| t.contains("CPU 37.5 %")), "CPU on hover: {titles:?}");
    assert!(titles.iter().any(|t| t.contains("memory 55.0 %")), "memory on hover");
    browser.screenshot("node-page-1280").await;

    // Opening the event stream causes one refetch; the one after it can only be the timer's
    // (every 15 s for this window).
    page.execute("window.__sameDocument = true", vec![]).await.expect("js");
    wait_until("the node page's stream", Duration::from_secs(15), || async {
        let text = page.find(Locator::Css(".page-node .freshness")).await.ok()?.text().await.ok()?;
        text.contains("live").then_some(())
    })
    .await;
    let generated_at = || async {
        let grid = page.find(Locator::Css(".page-node .chart-grid-layout")).await.ok()?;
        grid.attr("data-generated-at").await.ok()?
    };
    let first = generated_at().await;
    wait_until("a refetch", Duration::from_secs(30), || async { (generated_at().await != first).then_some(()) }).await;
    let before = texts(page, cpu_script).await;
    write(&app, &ingest, "node,cluster=east,node=east-1 cpu_percent=99.5,memory_used_percent=56.0\n".into()).await;
    wait_until("the node chart to take the new report", Duration::from_secs(30), || async {
        let now = texts(page, cpu_script).await;
        (now != before).then_some(())
    })
    .await;
    let same = page.execute("return window.__sameDocument === true", vec![]).await.expect("js");
    assert_eq!(same, json!(true), "the node charts changed without a reload");
    browser.close().await;
}
