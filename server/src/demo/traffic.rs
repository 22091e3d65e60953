//! The demo's steady traffic: a light load generator that sends `GET` requests to a list of
//! targets at a fixed rate each, so the request metrics, logs and traces have something real in
//! them. By default every target is the demo's router with `Host: web` (one target per web
//! instance, so the load is the same as when it went to each instance directly).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A request that takes longer than this is abandoned (and counted as failed).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to one target still waiting before new ones are skipped rather than piled up.
const MAX_IN_FLIGHT: usize = 32;
/// How often a summary line is logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Counts of what the generator did.
#[derive(Debug, Default)]
pub struct TrafficCounts {
    pub sent: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Ticks skipped because too many requests to that target were still waiting.
    pub skipped: AtomicU64,
}

/// Where one stream of requests goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    /// The Host header to send (a router picks the service by it); `None`: the URL's host.
    pub host: Option<String>,
}

impl Target {
    pub fn direct(url: url::Url) -> Self {
        Self { url, host: None }
    }
}

/// Sends `per_second` requests a second to each target until `stop` is cancelled. Returns at
/// once when there is nothing to do (no targets or a rate of 0).
pub async fn run(targets: Vec<Target>, per_second: f64, stop: CancellationToken) -> Arc<TrafficCounts> {
    let counts = Arc::new(TrafficCounts::default());
    if targets.is_empty() || per_second <= 0.0 || !per_second.is_finite() {
        return counts;
    }
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "cannot build an HTTP client; the demo sends no traffic");
            return counts;
        }
    };
    tracing::info!(targets = targets.len(), per_second, "demo traffic started");
    let every = Duration::from_secs_f64(1.0 / per_second);
    let mut senders = tokio::task::JoinSet::new();
    for (index, target) in targets.into_iter().enumerate() {
        let (http, counts, stop) = (http.clone(), counts.clone(), stop.clone());
        // Spread the targets' ticks over the interval instead of firing them all at once.
        let offset = every.mul_f64(index as f64 / 8.0 % 1.0);
        senders.spawn(async move {
            let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    counts.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let mut request = http.get(target.url.clone());
                if let Some(host) = &target.host {
                    request = request.header(reqwest::header::HOST, host);
                }
                let counts = counts.clone();
                tokio::spawn(async move {
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                    match request.send().await {
                        Ok(answer) if answer.status().is_success() => counts.succeeded.fetch_add(1, Ordering::Relaxed),
                        _ => counts.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    drop(permit);
                });
            }
        });
    }
    let mut summaries = tokio::time::interval_at(tokio::time::Instant::now() + SUMMARY_EVERY, SUMMARY_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = summaries.tick() => tracing::info!(
                sent = counts.sent.load(Ordering::Relaxed),
                succeeded = counts.succeeded.load(Ordering::Relaxed),
                failed = counts.failed.load(Ordering::Relaxed),
                skipped = counts.skipped.load(Ordering::Relaxed),
                "demo traffic so far"
            ),
        }
    }
    senders.shutdown().await;
    counts
}
