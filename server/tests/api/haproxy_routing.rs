//! The HAProxy provider end to end: a real `opsdeck router --provider haproxy` process writing
//! HAProxy's configuration and following policies pushed by PostgreSQL, and the routes of the
//! generated frontend (path prefix, strip, Host name) through a real HAProxy.

use std::sync::atomic::Ordering;

use app::model::traffic::{Route, TrafficChange, VersionWeight};
use opsdeck::traffic::store;
use testkit::wait_until;

use crate::{
    demo::Process,
    haproxy::{PATIENCE, Stage, VersionServer},
};

#[tokio::test]
async fn opsdeck_router_with_the_haproxy_provider_follows_policy_changes_pushed_by_postgresql() {
    let stage = Stage::new().await;
    let (v1, v2) = (VersionServer::start("v1").await, VersionServer::start("v2").await);
    let (one, two) = (stage.register("v1", &v1).await, stage.register("v2", &v2).await);
    let settings = &stage.haproxy.settings;
    let admin = testkit::free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsdeck"));
    command
        .args(["router", "--listen", "127.0.0.1:0", "--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--database-url", &stage.database_url, "--influx-url", &stage.influx.0])
        .args(["--influx-database", &stage.influx.1, "--full-reload-every", "1s"])
        .args(["--provider", "haproxy", "--haproxy-socket"])
        .arg(&settings.stats_socket)
        .arg("--haproxy-config")
        .arg(&settings.path)
        .arg("--haproxy-master-socket")
        .arg(&settings.master_socket)
        .args(["--haproxy-listen", &settings.listen.to_string()]);
    let router = Process::spawn(command);

    // No policy yet: both versions share the traffic.
    let both = wait_until("HAProxy to get web's two servers from the router", PATIENCE * 2, || async {
        let servers = stage.servers().await;
        (servers.get(&one) == Some(&100) && servers.get(&two) == Some(&100)).then_some(())
    });
    if tokio::time::timeout(PATIENCE, both).await.is_err() {
        panic!("the router did not drive HAProxy within {PATIENCE:?}; its output:\n{}", router.output());
    }
    // A policy written to PostgreSQL reaches HAProxy through NOTIFY, without the test applying it.
    for (weights, only) in [([("v1", 100), ("v2", 0)], "v1"), ([("v1", 0), ("v2", 100)], "v2")] {
        let mut tx = stage.app.db.begin().await.expect("begin");
        let revision = store::load(&mut *tx, "web").await.expect("load").map_or(0, |p| p.revision);
        let change = TrafficChange {
            expected_revision: revision,
            weights: weights.iter().map(|(v, p)| VersionWeight { version: (*v).to_owned(), percent: *p }).collect(),
            sticky: Default::default(),
            route: Default::default(),
            reason: None,
        };
        store::write(&mut tx, "web", &change, "test").await.expect("the policy is written");
        tx.commit().await.expect("commit");
        wait_until(&format!("all of web's traffic to reach {only}"), PATIENCE, || async {
            let counts = stage.spread(16).await;
            (counts.len() == 1 && counts.contains_key(only)).then_some(())
        })
        .await;
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await.expect("the admin listener answers");
    assert_eq!(ready.status(), 200, "router output:\n{}", router.output());
    let report: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(report["revisions"]["web"], 2, "{report}");
}

#[tokio::test]
async fn haproxy_routes_by_path_prefix_and_strips_it_as_the_policy_says() {
    let stage = Stage::new().await;
    // Shop's version is called s1, so each answer says who gave it.
    let (web, shop) = (VersionServer::start("v1").await, VersionServer::start("s1").await);
    stage.register_in("web", "v1", &web).await;
    stage.register_in("shop", "s1", &shop).await;
    let mut tx = stage.app.db.begin().await.expect("begin");
    let change = TrafficChange {
        expected_revision: 0,
        weights: vec![VersionWeight { version: "s1".into(), percent: 100 }],
        sticky: Default::default(),
        route: Route { host: None, path_prefix: Some("/shop".into()), strip_prefix: true },
        reason: None,
    };
    store::write(&mut tx, "shop", &change, "test").await.expect("shop's route is written");
    tx.commit().await.expect("commit");
    stage.apply().await;

    let get = |host: &'static str, path: &'static str| {
        let request = stage.client.get(format!("{}{path}", stage.haproxy.url())).header("host", host).send();
        async move {
            let response = request.await.expect("HAProxy answers");
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        }
    };
    let answer = get("web", "/shop/cart?x=1").await;
    assert_eq!(answer, (200, "s1 /cart?x=1".to_owned()), "the prefix wins over the Host name and is stripped");
    assert_eq!(get("anything", "/shop").await, (200, "s1".to_owned()), "the bare prefix is shop's /");
    assert_eq!(shop.served.load(Ordering::Relaxed), 1);
    let answer = get("web.example.com", "/shopping").await;
    assert_eq!(answer, (200, "v1 /shopping".to_owned()), "/shopping is not under /shop: web's, by its name");
    assert_eq!(get("WEB:8080", "/").await, (200, "v1".to_owned()), "the Host name matches without case or port");
    assert_eq!(get("nobody", "/").await.0, 503, "no service matches: HAProxy has no backend for it");
}
