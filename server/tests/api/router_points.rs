//! The router's request metrics in InfluxDB: one `router_requests` point per instance and
//! status class each second (not one per request), whose sums give every request exactly, with
//! attempts and latency (sum, max, p50, p99, and cumulative buckets that sum across instances).

use std::collections::BTreeMap;

use app::model::traffic::{Route, Sticky};
use testkit::wait_until;

use crate::router::{PATIENCE, Stage};

/// `sum(requests)`, `sum(attempts)`, `count(requests)` (points), `max(latency_ms_max)`,
/// `max(latency_ms_p99)` and `sum(le_10000ms)` (the summed bucket) by status class.
async fn by_class(stage: &Stage) -> Option<BTreeMap<String, [f64; 6]>> {
    let statement = "SELECT sum(requests), sum(attempts), count(requests), max(latency_ms_max), max(latency_ms_p99), \
                     sum(le_10000ms) FROM router_requests WHERE service = 'web' GROUP BY status_class";
    let results = stage.app.influx.query(statement).await.ok()?;
    let mut classes = BTreeMap::new();
    for series in &results.first()?.series {
        let class = series.tags.get("status_class")?.clone();
        let row = series.values.first()?;
        let number = |i: usize| row.get(i).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        classes.insert(class, [number(1), number(2), number(3), number(4), number(5), number(6)]);
    }
    Some(classes)
}

#[tokio::test]
async fn requests_through_the_router_are_summed_per_instance_and_status_class_into_a_few_points() {
    let stage = Stage::new().await;
    let _echoes = stage.echoes("web", &["v1", "v2"]).await;
    let revision = stage.set_policy("web", &[("v1", 50), ("v2", 50)], Sticky::default(), Route::default()).await;
    stage.wait_revision("web", revision).await;
    stage.wait_in_rotation("web", 2).await;

    for n in 0..200 {
        let path = if n % 4 == 0 { "/missing?status=404" } else { "/" };
        let answer = stage.get("web", path).await;
        assert_eq!(answer.status().as_u16(), if n % 4 == 0 { 404 } else { 200 });
    }

    let classes = wait_until("the router's points for all 200 requests", PATIENCE, || async {
        let classes = by_class(&stage).await?;
        let total: f64 = classes.values().map(|c| c[0]).sum();
        (total >= 200.0).then_some(classes)
    })
    .await;
    let [ok, ok_attempts, ok_points, ok_max, ok_p99, ok_within_10s] = classes["2xx"];
    let [missing, ..] = classes["4xx"];
    assert_eq!((ok, missing), (150.0, 50.0), "every request counted once: {classes:?}");
    assert_eq!(ok_attempts, 150.0, "one attempt each: {classes:?}");
    assert!(ok_points < 150.0, "points are sums, not one per request: {ok_points} points for 150 requests");
    assert!(ok_p99 > 0.0 && ok_p99 <= ok_max, "p99 {ok_p99} ms within the largest latency {ok_max} ms");
    assert_eq!(ok_within_10s, 150.0, "the buckets sum across instances: all 150 took under 10 s");
}
