//! Demo services doing real work on the real stack: web → api → payments, each found through
//! discovery, carrying one W3C trace across the calls; their log lines reach opsdeck's log
//! search and their `http_requests` points reach InfluxDB; a failing, slow or dead callee turns
//! into errors, timeouts or retries upstream. (Outages of opsdeck and InfluxDB: `demo_outage`.)

use std::collections::BTreeMap;

use opsdeck::influx::Series;
use serde_json::Value;
use testkit::wait_until;

use crate::demo::{PATIENCE, Process, Stage, set_mode};

/// Send telemetry often, so the tests don't wait on the default 1 s.
pub(crate) const QUICK_TELEMETRY: [&str; 2] = ["--telemetry-every", "100ms"];

/// The three services of the demo's call chain, each registered and healthy.
struct Chain {
    stage: Stage,
    /// (service, process, port, instance id), in call order: web, api, payments.
    services: Vec<(&'static str, Process, u16, String)>,
}

impl Chain {
    async fn start() -> Self {
        Self::start_with(|_| Vec::new()).await
    }

    /// The chain, each service started with the arguments `extra` gives for it.
    async fn start_with(extra: impl Fn(&str) -> Vec<&'static str>) -> Self {
        let stage = Stage::new().await;
        let mut services = Vec::new();
        for (service, callee) in [("payments", None), ("api", Some("payments")), ("web", Some("api"))] {
            let mut args: Vec<&str> = QUICK_TELEMETRY.to_vec();
            args.extend(extra(service));
            if let Some(callee) = callee {
                args.extend(["--calls", callee]);
            }
            let (process, port) = stage.service_with(service, &args);
            let instance = stage.registered(service, port, &process).await;
            let id = instance["id"].as_str().expect("an instance id").to_owned();
            services.insert(0, (service, process, port, id));
        }
        // Healthy, so discovery hands them out.
        for (_, _, port, _) in &services {
            stage.health(*port, "healthy").await;
        }
        Self { stage, services }
    }

    fn port(&self, service: &str) -> u16 {
        self.services.iter().find(|s| s.0 == service).map(|s| s.2).expect("a service of the chain")
    }

    fn instance_id(&self, service: &str) -> &str {
        self.services.iter().find(|s| s.0 == service).map(|s| s.3.as_str()).expect("a service of the chain")
    }

    fn output(&self) -> String {
        self.services
            .iter()
            .map(|(name, p, _, _)| format!("--- {name}:\n{}", p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The log lines of a trace, oldest first, once `ready` says they are all there.
    async fn trace_lines(&self, trace_id: &str, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.logs(&format!("trace_id={trace_id}"), what, ready).await
    }

    async fn logs(&self, filter: &str, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        search_logs(&self.stage, filter, what, ready).await
    }

    /// Every `http_requests` series (grouped by all tags), once `ready` says they are all there.
    async fn request_series(&self, what: &str, ready: impl Fn(&[Series]) -> bool) -> Vec<Series> {
        wait_until(what, PATIENCE, || async {
            let results = self.stage.app.influx.query("SELECT * FROM http_requests GROUP BY *").await.ok()?;
            let series = results.into_iter().next()?.series;
            ready(&series).then_some(series)
        })
        .await
    }
}

/// The log lines a search (`filter`, a query string) finds, oldest first, once `ready` says
/// they are all there.
pub(crate) async fn search_logs(
    stage: &Stage,
    filter: &str,
    what: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_until(what, PATIENCE, || async {
        let response = stage
            .app
            .http
            .get(stage.app.url(&format!("/api/v1/logs?{filter}&limit=1000")))
            .bearer_auth(&stage.reader)
            .send()
            .await
            .ok()?;
        let page: Value = response.json().await.ok()?;
        let mut lines = page["lines"].as_array()?.clone();
        lines.reverse();
        ready(&lines).then_some(lines)
    })
    .await
}

async fn checkout(port: u16, traceparent: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/checkout")).timeout(PATIENCE);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("the demo service answers");
    let status = response.status().as_u16();
    let trace_id = response.headers().get("x-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, response.json().await.expect("a JSON answer"), trace_id)
}

/// The line of `service` and `component` that carries `field` (e.g. the "finished" line has
/// `duration_ms`).
fn line<'a>(lines: &'a [Value], service: &str, component: &str, field: &str) -> Option<&'a Value> {
    lines.iter().find(|l| l["service"] == service && l["component"] == component && !l["fields"][field].is_null())
}

fn has_line(lines: &[Value], service: &str, component: &str, field: &str) -> bool {
    line(lines, service, component, field).is_some()
}

#[tokio::test]
async fn a_checkout_on_web_leaves_log_lines_from_web_api_and_payments_in_one_trace_with_linked_spans() {
    let chain = Chain::start().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    let (status, answer, trace_header) =
        checkout(chain.port("web"), Some(&format!("00-{caller_trace}-{caller_span}-01"))).await;

    assert_eq!(status, 200, "{answer}\n{}", chain.output());
    assert_eq!(trace_header.as_deref(), Some(caller_trace), "the caller's trace is continued");
    assert_eq!(answer["downstream"]["service"], "api");
    assert_eq!(answer["downstream"]["downstream"]["service"], "payments", "{answer}");
    let lines = chain
        .trace_lines(caller_trace, "finished and call lines of all three services", |lines| {
            ["web", "api", "payments"].iter().all(|s| has_line(lines, s, "http", "duration_ms"))
                && ["web", "api"].iter().all(|s| has_line(lines, s, "client", "duration_ms"))
        })
        .await;
    let finished = |service| line(&lines, service, "http", "duration_ms").expect("a finished line");
    let (web, api, payments) = (finished("web"), finished("api"), finished("payments"));
    assert_eq!(web["fields"]["parent_span_id"], caller_span, "web's span is a child of the caller's");
    assert_eq!(api["fields"]["parent_span_id"], web["fields"]["span_id"], "api's span is a child of web's");
    assert_eq!(payments["fields"]["parent_span_id"], api["fields"]["span_id"], "payments' is a child of api's");
    let web_call = line(&lines, "web", "client", "duration_ms").expect("web's call line");
    assert_eq!(web_call["fields"]["span_id"], web["fields"]["span_id"]);
    assert_eq!(
        (web_call["fields"]["peer_service"].as_str(), web_call["fields"]["status"].as_u64()),
        (Some("api"), Some(200))
    );
    let duration = |line: &Value| line["fields"]["duration_ms"].as_f64().expect("a duration");
    assert!(
        duration(web) >= duration(api) && duration(api) >= duration(payments) && duration(payments) > 0.0,
        "each hop's duration includes the next: {} ≥ {} ≥ {}",
        duration(web),
        duration(api),
        duration(payments)
    );
    for (service, finished) in [("web", web), ("api", api), ("payments", payments)] {
        assert_eq!(
            finished["message"].as_str().map(|m| m.starts_with("GET /checkout 200 in ")),
            Some(true),
            "{finished}"
        );
        assert_eq!(finished["level"], "info");
        assert_eq!(finished["instance"], chain.instance_id(service), "{finished}");
        assert_eq!((finished["cluster"].as_str(), finished["node"].as_str()), (Some("east"), Some("east-1")));
        assert_eq!(
            (finished["fields"]["method"].as_str(), finished["fields"]["path"].as_str()),
            (Some("GET"), Some("/checkout"))
        );
        let received = lines.iter().find(|l| l["service"] == service && l["message"] == "GET /checkout received");
        assert_eq!(
            received.map(|l| &l["fields"]["span_id"]),
            Some(&finished["fields"]["span_id"]),
            "{service} received it"
        );
    }
}

#[tokio::test]
async fn each_handled_request_becomes_an_http_requests_point_tagged_with_service_version_and_instance() {
    let chain = Chain::start().await;

    for _ in 0..3 {
        let (status, answer, _) = checkout(chain.port("web"), None).await;
        assert_eq!(status, 200, "{answer}");
    }

    let series = chain
        .request_series("three points from each service", |series| {
            ["web", "api", "payments"].iter().all(|s| {
                series
                    .iter()
                    .filter(|x| x.tags.get("service").map(String::as_str) == Some(s))
                    .map(|x| x.values.len())
                    .sum::<usize>()
                    >= 3
            })
        })
        .await;
    for (service, _, _, instance) in &chain.services {
        let of_service: Vec<&Series> =
            series.iter().filter(|s| s.tags.get("service").map(String::as_str) == Some(service)).collect();
        assert_eq!(of_service.len(), 1, "one series per instance, method and class: {of_service:?}");
        let tags: &BTreeMap<String, String> = &of_service[0].tags;
        let expected: BTreeMap<String, String> = [
            ("cluster", "east"),
            ("instance", instance.as_str()),
            ("method", "GET"),
            ("node", "east-1"),
            ("service", service),
            ("status_class", "2xx"),
            ("version", "v1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(tags, &expected);
        let statuses = of_service[0].f64_column("status").expect("a status field");
        assert!(statuses.iter().all(|s| *s == Some(200.0)), "{statuses:?}");
        let latencies = of_service[0].f64_column("latency_ms").expect("a latency field");
        assert!(latencies.iter().all(|l| l.is_some_and(|ms| ms > 0.0 && ms < 30_000.0)), "{latencies:?}");
    }
}

#[tokio::test]
async fn payments_in_error_mode_makes_web_fail_with_error_lines_naming_the_reason_and_5xx_points() {
    let chain = Chain::start().await;
    assert_eq!(set_mode(chain.port("payments"), "error").await.status(), 200);

    let (status, answer, trace_id) = checkout(chain.port("web"), None).await;

    assert_eq!(status, 502, "web reports that api failed: {answer}");
    let detail = answer["detail"].as_str().expect("a detail");
    assert!(detail.starts_with("api answered 502") && detail.contains("payments"), "{detail}");
    let trace_id = trace_id.expect("the trace id header");
    let lines = chain
        .trace_lines(&trace_id, "error lines of all three services", |lines| {
            ["web", "api", "payments"].iter().all(|s| lines.iter().any(|l| l["service"] == *s && l["level"] == "error"))
        })
        .await;
    let errors = |service: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["service"] == service && l["level"] == "error")
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let failing_on_purpose = "failing on purpose: demo mode is 'error'";
    assert!(
        errors("payments").iter().any(|m| m.starts_with("GET /checkout 500 in") && m.contains(failing_on_purpose)),
        "{:?}",
        errors("payments")
    );
    assert!(
        errors("api").iter().any(|m| m.starts_with("GET payments /checkout 500") && m.contains(failing_on_purpose)),
        "api's call line says why payments failed: {:?}",
        errors("api")
    );
    assert!(
        errors("web").iter().any(|m| m.starts_with("GET /checkout 502 in") && m.contains("api answered 502")),
        "{:?}",
        errors("web")
    );
    let series = chain
        .request_series("5xx points from each service", |series| {
            ["web", "api", "payments"].iter().all(|s| {
                series
                    .iter()
                    .any(|x| x.tags.get("service").map(String::as_str) == Some(s) && x.tags["status_class"] == "5xx")
            })
        })
        .await;
    let lifecycle = chain
        .logs("service=payments", "payments' start, registration and mode change", |lines| {
            lines.iter().any(|l| l["message"] == "demo mode changed from healthy to error")
        })
        .await;
    let messages: Vec<&str> =
        lifecycle.iter().filter(|l| l["component"] == "lifecycle").filter_map(|l| l["message"].as_str()).collect();
    assert!(messages[0].starts_with("payments v1 started on 127.0.0.1:"), "{messages:?}");
    assert_eq!(messages[1], format!("registered with opsdeck as instance {}", chain.instance_id("payments")));
    let switched =
        lifecycle.iter().find(|l| l["message"] == "demo mode changed from healthy to error").expect("the line");
    assert_eq!((switched["level"].as_str(), switched["fields"]["to"].as_str()), (Some("warning"), Some("error")));
    let payments = series.iter().find(|s| s.tags["service"] == "payments").expect("payments' series");
    assert_eq!(payments.f64_column("status").expect("status"), [Some(500.0)]);
    assert!(series.iter().all(|s| s.tags["status_class"] == "5xx"), "no request succeeded: {series:?}");
}

#[tokio::test]
async fn a_slow_payments_times_out_api_s_call_and_web_answers_502_saying_so() {
    // payments answers after 3 s (the stage's --slow-delay); api waits 1 s for it, web 10 s for api.
    let chain = Chain::start_with(|service| match service {
        "api" => vec!["--call-timeout", "1s"],
        "web" => vec!["--call-timeout", "10s"],
        _ => Vec::new(),
    })
    .await;
    assert_eq!(set_mode(chain.port("payments"), "slow").await.status(), 200);

    let (status, answer, trace_id) = checkout(chain.port("web"), None).await;

    assert_eq!(status, 502, "{answer}");
    let detail = answer["detail"].as_str().expect("a detail");
    assert!(detail.starts_with("api answered 504") && detail.contains("did not answer within"), "{detail}");
    let lines = chain
        .trace_lines(&trace_id.expect("a trace id"), "api's timed-out call and payments' slow answer", |lines| {
            has_line(lines, "api", "client", "duration_ms")
                && lines.iter().any(|l| l["service"] == "payments" && l["level"] == "warning")
        })
        .await;
    let call = line(&lines, "api", "client", "duration_ms").expect("api's call line");
    assert_eq!(call["level"], "error", "{call}");
    assert_eq!(call["fields"]["status"], 0, "no answer: {call}");
    let waited = call["fields"]["duration_ms"].as_f64().expect("a duration");
    assert!((1000.0..2900.0).contains(&waited), "gave up after its 1 s timeout, not payments' 3 s: {waited}");
    let slow = lines.iter().find(|l| l["service"] == "payments" && l["level"] == "warning").expect("a warning");
    assert!(slow["message"].as_str().is_some_and(|m| m.starts_with("answering slowly on purpose")), "{slow}");
}

#[tokio::test]
async fn a_call_refused_by_a_dead_instance_is_retried_on_another_and_succeeds_with_a_warning() {
    let chain = Chain::start().await;
    let (second, second_port) = chain.stage.service_with("payments", &QUICK_TELEMETRY);
    chain.stage.registered("payments", second_port, &second).await;
    chain.stage.health(second_port, "healthy").await;
    // Let api's discovery cache hold both payments instances.
    wait_until("api to call both payments instances", PATIENCE, || async {
        let (_, answer, _) = checkout(chain.port("api"), None).await;
        (answer["downstream"]["address"] == format!("127.0.0.1:{second_port}")).then_some(())
    })
    .await;

    // Killed, it still counts as healthy until its checks fail (about a second).
    let killed = std::process::Command::new("kill").args(["-KILL", &second.pid().to_string()]).status();
    assert!(killed.expect("kill runs").success());
    let mut traces = Vec::new();
    for _ in 0..4 {
        let (status, answer, trace_id) = checkout(chain.port("web"), None).await;
        assert_eq!(status, 200, "the retry found the live instance: {answer}");
        traces.push(trace_id.expect("a trace id"));
    }

    let mut retried = None;
    for trace_id in &traces {
        // The line for how the call ended is the one that counts its tries.
        let lines =
            chain.trace_lines(trace_id, "api's call line", |lines| has_line(lines, "api", "client", "attempts")).await;
        if let Some(warning) = lines.iter().find(|l| l["service"] == "api" && l["level"] == "warning") {
            retried = Some((warning.clone(), line(&lines, "api", "client", "attempts").cloned().expect("call")));
        }
    }
    let (warning, call) = retried.expect("at least one of four calls went to the dead instance first (round robin)");
    let message = warning["message"].as_str().expect("a message");
    assert!(message.contains("try 1 failed") && message.contains("retrying on another instance"), "{message}");
    assert_eq!(warning["fields"]["peer_address"], format!("127.0.0.1:{second_port}"));
    assert_eq!(
        (call["fields"]["attempts"].as_u64(), call["fields"]["status"].as_u64()),
        (Some(2), Some(200)),
        "{call}"
    );
}
