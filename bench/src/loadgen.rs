//! A closed-loop HTTP load generator on hyper (hyper-util's pooled client): `connections` tasks
//! each send one GET after another for a fixed time and record every latency, so the router,
//! HAProxy, nginx and the upstream alone are all measured the same way.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub ok: u64,
    /// Non-2xx answers and transport errors.
    pub errors: u64,
    pub elapsed: Duration,
    /// Every successful request's latency, sorted, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        Duration::from_micros(u64::from(self.latencies_us[index]))
    }
}

type LoadClient = Client<HttpConnector, Empty<Bytes>>;

fn client(connections: usize) -> LoadClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(connections).build(connector)
}

async fn one(client: &LoadClient, url: &http::Uri, host: Option<&str>) -> bool {
    let mut request = http::Request::new(Empty::new());
    *request.uri_mut() = url.clone();
    if let Some(host) = host
        && let Ok(value) = http::HeaderValue::from_str(host)
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    match client.request(request).await {
        Ok(response) => {
            let ok = response.status().is_success();
            ok & response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Sends GETs to `url` (with `host` as the Host header, if given) from `connections` loops for
/// `warm_up` (not counted), then for `duration` (counted).
pub async fn run(
    url: &str,
    host: Option<&str>,
    connections: usize,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let uri: http::Uri = url.parse()?;
    let client = client(connections);
    let start = Instant::now() + warm_up;
    let end = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, uri, host) = (client.clone(), uri.clone(), host.map(str::to_owned));
            tokio::spawn(async move {
                let mut result = LoadResult::default();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let ok = one(&client, &uri, host.as_deref()).await;
                    if sent < start {
                        continue;
                    }
                    if ok {
                        result.ok += 1;
                        result.latencies_us.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    } else {
                        result.errors += 1;
                    }
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult { elapsed: duration, ..LoadResult::default() };
    for task in tasks {
        let part = task.await?;
        total.ok += part.ok;
        total.errors += part.errors;
        total.latencies_us.extend(part.latencies_us);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// A background load that runs until stopped; counts what failed (for the kill measurement).
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64)>>,
}

impl Background {
    pub fn start(url: &str, host: Option<&str>, connections: usize) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse()?;
        let client = client(connections);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = (0..connections)
            .map(|_| {
                let (client, uri, host, stopped) =
                    (client.clone(), uri.clone(), host.map(str::to_owned), stopped.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0, 0);
                    while !*stopped.borrow() {
                        if one(&client, &uri, host.as_deref()).await {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Ok(Self { stop, tasks })
    }

    /// Stops and returns (succeeded, failed).
    pub async fn finish(self) -> (u64, u64) {
        let _ = self.stop.send(true);
        let mut total = (0, 0);
        for task in self.tasks {
            if let Ok((ok, failed)) = task.await {
                total.0 += ok;
                total.1 += failed;
            }
        }
        total
    }
}
