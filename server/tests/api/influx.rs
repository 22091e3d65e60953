//! The InfluxDB client against the real InfluxDB 1.x (write, then read back), and the v2 path
//! against a strict recorder of the request (v2 can't run here: only 1.x is packaged).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opsdeck::influx::{InfluxApi, InfluxAuth, InfluxClient, InfluxConfig, InfluxError, Point, quote_identifier};
use testkit::TestEnv;

fn config(url: url::Url, api: InfluxApi, database: &str) -> InfluxConfig {
    InfluxConfig {
        url,
        api,
        database: database.into(),
        org: None,
        auth: InfluxAuth::None,
        timeout: Duration::from_secs(5),
        batch_size: 5000,
    }
}

async fn fresh_client(batch_size: usize) -> InfluxClient {
    let env = TestEnv::from_env();
    let database = format!("test_{}", uuid::Uuid::new_v4().simple());
    let client = InfluxClient::new(InfluxConfig { batch_size, ..config(env.influx_url, InfluxApi::V1, &database) });
    client.ensure_database().await.expect("create the database");
    client
}

/// Writes one point and reads it back grouped by every tag.
async fn round_trip(client: &InfluxClient, point: Point) -> opsdeck::influx::Series {
    let measurement = point.measurement().to_owned();
    client.write(&[point.timestamp_ns(1_700_000_000_000_000_000)]).await.expect("write");
    let results =
        client.query(&format!("SELECT * FROM {} GROUP BY *", quote_identifier(&measurement))).await.expect("query");
    let mut series = results.into_iter().next().expect("one statement").series;
    assert_eq!(series.len(), 1, "exactly one series came back: {series:?}");
    series.remove(0)
}

#[tokio::test]
async fn points_written_are_read_back_with_their_types_and_time() {
    let client = fresh_client(5000).await;
    let series = round_trip(
        &client,
        Point::new("requests")
            .tag("service", "web")
            .field("count", 7_i64)
            .field("p99", 182.5)
            .field("ok", true)
            .field("note", "fine"),
    )
    .await;
    assert_eq!(series.name, "requests");
    assert_eq!(series.tags["service"], "web");
    assert_eq!(series.times_ms(), vec![1_700_000_000_000]);
    assert_eq!(series.f64_column("count"), Some(vec![Some(7.0)]));
    assert_eq!(series.f64_column("p99"), Some(vec![Some(182.5)]));
    assert_eq!(series.str_column("note"), Some(vec![Some("fine")]));
    let ok = series.column("ok").expect("ok column");
    assert_eq!(series.values[0][ok], serde_json::Value::Bool(true));
}

#[tokio::test]
async fn commas_spaces_and_equals_signs_survive_in_every_element() {
    let client = fresh_client(5000).await;
    let series =
        round_trip(&client, Point::new("cpu load,x=1").tag("host name", "a,b=c d").field("f=g h,i", 1_i64)).await;
    assert_eq!(series.name, "cpu load,x=1");
    assert_eq!(series.tags["host name"], "a,b=c d");
    assert!(series.column("f=g h,i").is_some(), "{:?}", series.columns);
}

#[tokio::test]
async fn quotes_backslashes_and_newlines_survive_in_string_fields() {
    let client = fresh_client(5000).await;
    let text = "say \"hi\"\nC:\\path\\ ,=' end\\";
    let series = round_trip(&client, Point::new("strings").field("text", text)).await;
    assert_eq!(series.str_column("text"), Some(vec![Some(text)]));
}

#[tokio::test]
async fn hostile_tag_values_cannot_inject_fields_or_tags() {
    let client = fresh_client(5000).await;
    let hostile = "x\" evil=1,injected=2 3";
    let series = round_trip(&client, Point::new("hostile").tag("t", hostile).field("v", 1_i64)).await;
    assert_eq!(series.tags.len(), 1, "{:?}", series.tags);
    assert_eq!(series.tags["t"], hostile);
    assert_eq!(series.columns, ["time", "v"]);
}

#[tokio::test]
async fn backslashes_in_tags_are_data_wherever_they_stand() {
    let client = fresh_client(5000).await;
    for (i, value) in [r"a\b", r"a\,b", r"a\\,b", r"\\server\share", r"x\ y=z\ "].into_iter().enumerate() {
        let series =
            round_trip(&client, Point::new(format!("backslash{i}")).tag("path", value).field("v", 1_i64)).await;
        assert_eq!(series.tags["path"], value, "tag value {value:?}");
    }
    // The one form InfluxDB can't store is refused before sending, with the reason.
    let error = client
        .write(&[Point::new("backslash").tag("path", r"C:\").field("v", 1_i64)])
        .await
        .expect_err("trailing backslash");
    assert!(error.to_string().contains("ends in a backslash"), "{error}");
}

#[tokio::test]
async fn writes_are_split_into_batches_and_all_arrive() {
    let client = fresh_client(2).await;
    let points: Vec<_> = (0..5_i64)
        .map(|i| Point::new("batched").tag("n", i.to_string()).field("v", i).timestamp_ns(1_000_000_000 * (i + 1)))
        .collect();
    client.write(&points).await.expect("write in three requests");
    let results = client.query("SELECT count(v) FROM batched").await.expect("query");
    assert_eq!(results[0].series[0].f64_column("count"), Some(vec![Some(5.0)]));
}

#[tokio::test]
async fn a_bad_point_fails_the_write_before_anything_is_sent() {
    let client = fresh_client(1).await;
    let points = [Point::new("partial").field("v", 1.0), Point::new("partial").field("v", f64::NAN)];
    let error = client.write(&points).await.expect_err("NaN refused");
    assert!(matches!(error, InfluxError::Encode(_)), "{error}");
    let results = client.query("SELECT * FROM partial").await.expect("query");
    assert!(results[0].series.is_empty(), "nothing was written");
}

#[tokio::test]
async fn server_errors_keep_the_servers_message() {
    let env = TestEnv::from_env();
    let client = InfluxClient::new(config(env.influx_url, InfluxApi::V1, "no_such_database_here"));
    let error = client.write(&[Point::new("m").field("v", 1_i64)]).await.expect_err("no database");
    let text = error.to_string();
    assert!(matches!(error, InfluxError::Server { status: 404, .. }), "{text}");
    assert!(text.contains("database not found"), "{text}");
    let error = client.query("SELECT * FROM").await.expect_err("bad InfluxQL").to_string();
    assert!(error.contains("SELECT * FROM") && error.contains("found EOF"), "{error}");
}

/// What the recorder saw of one request.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A stand-in for InfluxDB 2.x/3.x that records every request and answers like the real one.
async fn v2_recorder() -> (url::Url, Arc<Mutex<Vec<Recorded>>>) {
    use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |request: Request| {
        let log = log.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let query =
                url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
            let record = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query,
                authorization: header("authorization"),
                content_type: header("content-type"),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let path = record.path.clone();
            log.lock().expect("lock").push(record);
            match path.as_str() {
                "/api/v2/write" => StatusCode::NO_CONTENT.into_response(),
                "/query" => axum::Json(serde_json::json!({"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[1000,1.5]]}]}]})).into_response(),
                _ => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"code":"not found","message":"path not found"}))).into_response(),
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr")).parse().expect("url");
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await });
    (url, seen)
}

#[tokio::test]
async fn the_v2_api_writes_to_api_v2_write_with_bucket_org_precision_and_token() {
    let (url, seen) = v2_recorder().await;
    let client = InfluxClient::new(InfluxConfig {
        org: Some("ops team".into()),
        auth: InfluxAuth::Token("s3cr3t".into()),
        ..config(url, InfluxApi::V2, "metrics")
    });
    client.write(&[Point::new("m").tag("t", "a b").field("v", 1.5).timestamp_ns(42)]).await.expect("write");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v2/write");
    let mut query = request.query.clone();
    query.sort();
    assert_eq!(
        query,
        [
            ("bucket".to_owned(), "metrics".to_owned()),
            ("org".into(), "ops team".into()),
            ("precision".into(), "ns".into())
        ]
    );
    assert_eq!(request.authorization.as_deref(), Some("Token s3cr3t"));
    assert_eq!(request.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(request.body, "m,t=a\\ b v=1.5 42\n");
}

#[tokio::test]
async fn the_v2_api_queries_influxql_on_query_with_the_token() {
    let (url, seen) = v2_recorder().await;
    let client = InfluxClient::new(InfluxConfig {
        auth: InfluxAuth::Token("s3cr3t".into()),
        ..config(url, InfluxApi::V2, "metrics")
    });
    let results = client.query("SELECT v FROM m").await.expect("query");
    assert_eq!(results[0].series[0].f64_column("v"), Some(vec![Some(1.5)]));

    let recorded = seen.lock().expect("lock").clone();
    let request = &recorded[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/query"));
    let mut query = request.query.clone();
    query.sort();
    assert_eq!(query, [("db".to_owned(), "metrics".to_owned()), ("epoch".into(), "ms".into())]);
    assert_eq!(request.authorization.as_deref(), Some("Token s3cr3t"));
    assert_eq!(request.body, "q=SELECT+v+FROM+m");
    // v2 buckets are made by their operator: no CREATE DATABASE is sent.
    client.ensure_database().await.expect("nothing to do");
    assert_eq!(seen.lock().expect("lock").len(), 1, "no request besides the query");
}
