//! Live events over SSE on the real stack: typed events with ids, a heartbeat, `Last-Event-ID`
//! resume, health and breaker changes from real probes, and two `serve` processes on one
//! database seeing each other's changes (PostgreSQL LISTEN/NOTIFY).

use std::time::Duration;

use app::model::identity::Scope;
use serde_json::{Value, json};
use testkit::{SseClient, TargetServer, TestApp, TestEnv};

const SOON: Duration = Duration::from_secs(10);

fn instance(service: &str, port: u16) -> Value {
    json!({"service": service, "version": "v1", "cluster": "eu-1", "node": "node-a", "host": "127.0.0.1", "port": port})
}

async fn register(app: &TestApp, token: &str, body: &Value) -> String {
    let response =
        app.http.post(app.url("/api/v1/instances")).bearer_auth(token).json(body).send().await.expect("answer");
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.expect("json")["instance_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn changes_stream_as_typed_events_with_ids_a_heartbeat_and_resume_after_last_event_id() {
    let app = TestApp::spawn().await;
    let (ingest, reader) = (app.token("agent", &[Scope::Ingest]).await, app.token("screen", &[Scope::Read]).await);
    let mut stream = SseClient::connect(&app.url("/api/v1/events"), &reader, None).await;

    let first = register(&app, &ingest, &instance("web", 9001)).await;
    let registered = stream.next_matching("instance_registered", SOON, |m| m.event == "instance_registered").await;
    let data = registered.json();
    assert_eq!(data["type"], "instance_registered");
    assert_eq!(data["instance"]["id"], first.as_str());
    assert_eq!(data["instance"]["service"], "web");
    assert_eq!(data["instance"]["address"], "127.0.0.1:9001");
    assert_eq!(registered.id.as_deref(), Some(data["id"].to_string().as_str()), "the SSE id is the event id");

    let url = app.url(&format!("/api/v1/instances/{first}"));
    assert_eq!(app.http.delete(&url).bearer_auth(&ingest).send().await.expect("answer").status(), 204);
    let gone = stream.next_matching("instance_deregistered", SOON, |m| m.event == "instance_deregistered").await;
    let last_seen = gone.id.clone().expect("an id");

    let beat = stream.next_matching("a heartbeat", SOON, |m| m.event == "heartbeat").await;
    assert!(beat.json()["last_event_id"].as_i64() >= last_seen.parse().ok(), "{beat:?}");
    drop(stream);

    // Missed while disconnected: delivered first on reconnect, nothing older.
    let second = register(&app, &ingest, &instance("api", 9002)).await;
    let mut resumed = SseClient::connect(&app.url("/api/v1/events"), &reader, Some(&last_seen)).await;
    let missed = resumed.next_matching("the missed event", SOON, |m| m.event != "heartbeat").await;
    assert_eq!(missed.event, "instance_registered");
    assert_eq!(missed.json()["instance"]["id"], second.as_str());

    // A bad Last-Event-ID is a clear 400, and an ingest token may not watch.
    let bad = app
        .http
        .get(app.url("/api/v1/events"))
        .bearer_auth(&reader)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    let refused = app.http.get(app.url("/api/v1/events")).bearer_auth(&ingest).send().await.expect("answer");
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn health_and_breaker_changes_from_real_probes_are_pushed_with_their_reasons() {
    let app = TestApp::spawn().await;
    let (ingest, reader) = (app.token("agent", &[Scope::Ingest]).await, app.token("screen", &[Scope::Read]).await);
    sqlx::query(
        "INSERT INTO services (name, check_interval_ms, check_timeout_ms, fall, rise) VALUES ('pay', 500, 300, 2, 1)",
    )
    .execute(&app.db)
    .await
    .expect("service");
    let mut stream = SseClient::connect(&app.url("/api/v1/events"), &reader, None).await;
    let mut target = TargetServer::start().await;
    let id = register(&app, &ingest, &instance("pay", target.port)).await;
    let is_health =
        |to: &'static str| move |m: &testkit::SseMessage| m.event == "health_changed" && m.json()["to"] == to;

    let up = stream.next_matching("healthy", SOON, is_health("healthy")).await.json();
    assert_eq!(up["instance"]["id"], id.as_str());
    assert_eq!(up["from"], "unknown");

    target.stop().await;
    let down = stream.next_matching("unhealthy", SOON, is_health("unhealthy")).await.json();
    // Down after exactly `fall` (2) failures: the retries come sooner than the interval, so this
    // is within fall × interval.
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("2 failed checks in a row") && r.contains("cannot connect")),
        "{down}"
    );
    // fall (2) + 2 failures open the breaker; it is stored on the instance too.
    let opened = stream.next_matching("breaker open", SOON, |m| m.event == "breaker_changed").await.json();
    assert_eq!((opened["from"].as_str(), opened["to"].as_str()), (Some("closed"), Some("open")));
    let stored: String = sqlx::query_scalar("SELECT breaker FROM instances WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert_eq!(stored, "open");

    // Back: the half-open trial passes, the breaker closes and the instance is healthy again.
    target.restart().await;
    let (mut closed, mut healthy) = (false, false);
    while !(closed && healthy) {
        let next = stream.next_matching("breaker closed and healthy again", SOON, |m| m.event != "heartbeat").await;
        closed |= next.event == "breaker_changed" && next.json()["to"] == "closed";
        if is_health("healthy")(&next) {
            // Back after exactly `rise` (1) success.
            assert!(
                next.json()["reason"].as_str().is_some_and(|r| r.starts_with("1 passed checks in a row")),
                "{next:?}"
            );
            healthy = true;
        }
    }
}

#[tokio::test]
async fn a_change_made_through_one_serve_process_appears_on_the_other_ones_event_stream() {
    let settings = TestEnv::from_env().serve_settings().await;
    let first = TestApp::start(settings.clone()).await;
    let second = TestApp::start(settings).await;
    assert_ne!(first.address, second.address);
    let ingest = first.token("agent", &[Scope::Ingest]).await;
    let reader = first.token("screen", &[Scope::Read]).await;
    let mut on_second = SseClient::connect(&second.url("/api/v1/events"), &reader, None).await;
    let mut on_first = SseClient::connect(&first.url("/api/v1/events"), &reader, None).await;

    let id = register(&first, &ingest, &instance("web", 9001)).await;
    for stream in [&mut on_second, &mut on_first] {
        let seen = stream.next_matching("the registration", SOON, |m| m.event == "instance_registered").await;
        assert_eq!(seen.json()["instance"]["id"], id.as_str());
    }

    // And the other way round.
    let url = second.url(&format!("/api/v1/instances/{id}"));
    assert_eq!(second.http.delete(&url).bearer_auth(&ingest).send().await.expect("answer").status(), 204);
    on_first.next_matching("the deregistration", SOON, |m| m.event == "instance_deregistered").await;

    // Only one of the two runs the health checks (the other stands by): the checker's advisory
    // lock (0x6f707364_65636b01, split by PostgreSQL into classid and objid) is held once.
    let leaders = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 1869640548
               AND objid = 1701014273 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&first.db)
        .await
        .expect("locks")
    };
    testkit::wait_until("a checker to lead", SOON, || async { (leaders().await == 1).then_some(()) }).await;
    assert_eq!(leaders().await, 1, "only one checker leads");
}
