//! A bounded, batching sender of text lines to one opsdeck ingest endpoint (log lines as NDJSON
//! to `POST /api/v1/logs`, points as line protocol to `POST /api/v1/metrics`).
//!
//! Adding a line never waits: it goes into a bounded queue, and when the queue is full the
//! *oldest* line is dropped and counted (the newest lines say most about what is happening now).
//! A sender task posts batches every `every`, or sooner when a batch is full. While opsdeck is
//! unreachable or answers 5xx, the batch goes back to the front of the queue and is retried with
//! jittered backoff; a `503`/`429` with `Retry-After` is retried after that many seconds, in
//! batches half the size until one goes through (opsdeck's metrics buffer takes a request whole
//! or not at all, so a batch bigger than its free space would never fit). A 4xx
//! other than those is about the data and won't change on a retry: the batch is dropped and
//! counted, loudly.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use reqwest::{StatusCode, header::RETRY_AFTER};
use serde::Serialize;
use tokio::sync::Notify;

use crate::resilience::Backoff;

/// Waits after a failed post: quick at first, then no more than every 5 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
/// The longest a `Retry-After` is honoured (a broken header shouldn't stall the sender for hours).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How an outbox sends.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// What the lines are, for messages (`log lines`, `request metrics`).
    pub what: &'static str,
    pub url: String,
    pub content_type: &'static str,
    pub token: String,
    /// Most lines held; beyond it the oldest are dropped.
    pub capacity: usize,
    /// Most lines in one post.
    pub batch: usize,
    /// How often a partial batch is sent.
    pub every: Duration,
}

/// What an outbox has done, for `GET /` and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Lines waiting to be sent.
    pub queued: u64,
    /// Lines opsdeck acknowledged.
    pub sent: u64,
    /// Lines dropped because the queue was full (opsdeck unreachable or too slow).
    pub dropped_full: u64,
    /// Lines opsdeck refused for good (a 4xx about the data); see the service's own log.
    pub refused: u64,
}

/// The queue and its counters, shared by the adders and the sender task.
pub struct Outbox {
    config: OutboxConfig,
    queue: Mutex<VecDeque<String>>,
    ready: Notify,
    sent: AtomicU64,
    dropped_full: AtomicU64,
    refused: AtomicU64,
}

/// Why a post did not go through.
enum Failure {
    /// Worth retrying after this long (None: use the backoff).
    Retry { reason: String, after: Option<Duration> },
    /// The data was refused; retrying would get the same answer.
    Refused(String),
}

impl Outbox {
    pub fn new(config: OutboxConfig) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(VecDeque::with_capacity(config.batch.min(config.capacity))),
            config,
            ready: Notify::new(),
            sent: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Queues a line (without its newline); drops the oldest line when full. Never waits.
    pub fn push(&self, line: String) {
        let full_batch = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            while queue.len() >= self.config.capacity.max(1) {
                queue.pop_front();
                self.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(line);
            queue.len() >= self.config.batch
        };
        if full_batch {
            self.ready.notify_one();
        }
    }

    pub fn stats(&self) -> OutboxStats {
        let queued = self.queue.lock().unwrap_or_else(PoisonError::into_inner).len() as u64;
        OutboxStats {
            queued,
            sent: self.sent.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Takes up to `limit` lines from the front of the queue.
    fn take_batch(&self, limit: usize) -> Vec<String> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(limit.max(1));
        queue.drain(..n).collect()
    }

    /// Puts a batch that failed back at the front, keeping the bound (the oldest go first).
    fn put_back(&self, batch: Vec<String>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        for line in batch.into_iter().rev() {
            queue.push_front(line);
        }
        while queue.len() > self.config.capacity.max(1) {
            queue.pop_front();
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends until `stop` completes, then tries to send what is left for at most `grace`.
    pub async fn run(self: Arc<Self>, http: reqwest::Client, stop: impl Future<Output = ()>, grace: Duration) {
        let mut failures = 0_u32;
        let mut dropped_reported = 0_u64;
        let mut limit = self.config.batch;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.ready.notified() => {}
                () = tokio::time::sleep(self.config.every) => {}
            }
            // Send full batches back to back; stop at the first failure and wait.
            loop {
                let batch = self.take_batch(limit);
                if batch.is_empty() {
                    break;
                }
                match self.post(&http, &batch).await {
                    Ok(()) => {
                        failures = 0;
                        limit = limit.saturating_mul(2).min(self.config.batch);
                        let dropped = self.dropped_full.load(Ordering::Relaxed);
                        if dropped > dropped_reported {
                            tracing::warn!(
                                what = self.config.what,
                                dropped = dropped - dropped_reported,
                                dropped_total = dropped,
                                "opsdeck takes {} again; some were dropped while it could not (the buffer holds {})",
                                self.config.what,
                                self.config.capacity
                            );
                            dropped_reported = dropped;
                        }
                    }
                    Err(Failure::Refused(reason)) => {
                        self.refused.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(what = self.config.what, lines = batch.len(), %reason,
                            "opsdeck refused a batch of {}; it is dropped (retrying would be refused again)", self.config.what);
                    }
                    Err(Failure::Retry { reason, after }) => {
                        let lines = batch.len();
                        // With a Retry-After, opsdeck is up but can't hold this much now (its
                        // buffer is full): smaller batches, so one never stays too big to fit.
                        if after.is_some() {
                            limit = (lines / 2).max(1);
                        }
                        self.put_back(batch);
                        let wait = after.unwrap_or_else(|| RETRY.delay(failures));
                        if failures == 0 {
                            tracing::warn!(what = self.config.what, lines, %reason, retry_in_ms = wait.as_millis() as u64,
                                "cannot send {} to opsdeck; keeping them (up to {}) and retrying", self.config.what, self.config.capacity);
                        }
                        failures = failures.saturating_add(1);
                        tokio::select! {
                            () = &mut stop => return self.flush(&http, grace).await,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
                if self.stats().queued < limit as u64 {
                    break;
                }
            }
        }
        self.flush(&http, grace).await;
    }

    /// Sends what is queued, giving up after `grace` (what is left is counted in the log).
    pub async fn flush(&self, http: &reqwest::Client, grace: Duration) {
        let flushing = async {
            loop {
                let batch = self.take_batch(self.config.batch);
                if batch.is_empty() {
                    return;
                }
                match self.post(http, &batch).await {
                    Ok(()) => {}
                    Err(Failure::Refused(_)) => {
                        self.refused.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    Err(Failure::Retry { .. }) => {
                        self.put_back(batch);
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(grace, flushing).await;
        let left = self.stats().queued;
        if left > 0 {
            tracing::warn!(
                what = self.config.what,
                left,
                "stopping with {left} {} not sent to opsdeck",
                self.config.what
            );
        }
    }

    async fn post(&self, http: &reqwest::Client, batch: &[String]) -> Result<(), Failure> {
        let mut body = batch.join("\n");
        body.push('\n');
        let answer = http
            .post(&self.config.url)
            .bearer_auth(&self.config.token)
            .header(reqwest::header::CONTENT_TYPE, self.config.content_type)
            .body(body)
            .send()
            .await
            .map_err(|error| Failure::Retry {
                reason: format!("cannot reach {}: {error}", self.config.url),
                after: None,
            })?;
        let status = answer.status();
        if status.is_success() {
            self.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        let after = answer
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
            .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
        let detail: String = answer.text().await.unwrap_or_default().chars().take(500).collect();
        let reason = format!("opsdeck answered {status}: {detail}");
        Err(if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Failure::Retry { reason, after }
        } else {
            Failure::Refused(reason)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(capacity: usize, batch: usize) -> Arc<Outbox> {
        Outbox::new(OutboxConfig {
            what: "test lines",
            url: "http://127.0.0.1:9/unused".into(),
            content_type: "text/plain",
            token: String::new(),
            capacity,
            batch,
            every: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_lines_and_counts_them() {
        let outbox = outbox(3, 2);
        for n in 0..5 {
            outbox.push(format!("line {n}"));
        }
        assert_eq!(outbox.stats(), OutboxStats { queued: 3, dropped_full: 2, ..OutboxStats::default() });
        assert_eq!(outbox.take_batch(2), ["line 2", "line 3"]);
        assert_eq!(outbox.take_batch(2), ["line 4"]);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_within_the_bound() {
        let outbox = outbox(3, 2);
        outbox.push("a".into());
        outbox.push("b".into());
        let batch = outbox.take_batch(2);
        outbox.push("c".into());
        outbox.push("d".into());
        outbox.put_back(batch);
        assert_eq!(outbox.stats().dropped_full, 1, "a, b, c, d is one more than fits: a goes");
        assert_eq!(outbox.take_batch(2), ["b", "c"]);
    }
}
