//! The bounded buffer between ingest and InfluxDB, and the writer task that empties it.
//!
//! Ingest puts whole requests in (all or nothing, so "acknowledged" means "held here") and is
//! told when a request does not fit; the writer sends batches of `--influx-batch-size` lines,
//! `--metrics-writers` at a time, and retries with jittered exponential backoff while InfluxDB
//! is slow or down. Batches written side by side may land out of order; InfluxDB keys points by
//! series and time, so that matters only for two points of one series with the same timestamp
//! (the last one stored wins), as with any two senders. A batch leaves the
//! buffer only once InfluxDB has taken it, so a point that was acknowledged is either written,
//! counted as refused by InfluxDB (a permanent 4xx, logged with InfluxDB's reason), or — only if
//! the process stops before InfluxDB returns — counted in the log line that says how many were
//! left unwritten at shutdown.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    influx::{InfluxClient, InfluxError},
    resilience::Backoff,
};

/// Waits between failed writes: from up to 200 ms, doubling, to at most 5 s.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Above this share of its capacity the buffer reports itself degraded.
const DEGRADED_FILL: f64 = 0.8;

/// Encoded lines (one point each, newline included) waiting for InfluxDB.
#[derive(Debug)]
pub struct Buffer {
    capacity: usize,
    queue: Mutex<Queue>,
    /// Wakes a writer: there are lines to send.
    wake: Notify,
    /// Wakes ingest requests waiting for room: a batch was written, or the writer started failing.
    room: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<String>,
    /// Lines the writers have taken and are sending; they still count against the capacity.
    in_flight: usize,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    written: u64,
    refused_by_influx: u64,
    requests_refused_full: u64,
}

/// The buffer could not take a whole request; nothing of it was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Full {
    pub held: usize,
    pub capacity: usize,
    pub wanted: usize,
    /// Why the writer can't empty it, when it is failing.
    pub writer_error: Option<String>,
}

/// What the buffer and its writer are doing, for readiness and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferStatus {
    pub held: usize,
    pub capacity: usize,
    pub failing_for: Option<Duration>,
    pub last_error: Option<String>,
    pub written: u64,
    pub refused_by_influx: u64,
    pub requests_refused_full: u64,
}

impl BufferStatus {
    /// "metrics degraded: …" while the writer is failing or the buffer is above 80 %.
    pub fn degraded(&self) -> Option<String> {
        let fill = format!("{} of {} points buffered", self.held, self.capacity);
        if let Some(failing_for) = self.failing_for {
            let cause = self.last_error.as_deref().unwrap_or("unknown error");
            return Some(format!(
                "metrics degraded: writes to InfluxDB failing for {} s ({cause}); {fill}",
                failing_for.as_secs()
            ));
        }
        #[allow(clippy::cast_precision_loss)] // a share of a count, for a message
        let share = self.held as f64 / self.capacity.max(1) as f64;
        (share > DEGRADED_FILL).then(|| format!("metrics degraded: the buffer is {:.0} % full ({fill})", share * 100.0))
    }
}

impl Buffer {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), queue: Mutex::default(), wake: Notify::new(), room: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves plain counters and lines: still usable.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes every line or none, at once.
    pub fn push_all(&self, lines: Vec<String>) -> Result<(), Full> {
        self.try_push(lines).map_err(|(_, full)| self.refused(full))
    }

    /// Takes every line or none; when the buffer is full only because InfluxDB is slower than
    /// the senders right now (the writer is not failing), waits up to `patience` for the writer
    /// to make room — backpressure, like a slow InfluxDB itself. Refuses at once when the writer
    /// is failing (InfluxDB down: the caller should come back later, not hold a connection) or
    /// the request is bigger than the whole buffer.
    ///
    /// Without the wait, senders faster than InfluxDB fill the buffer in a fraction of a second
    /// and then sleep a whole `Retry-After` second each: `scripts/bench metrics` measured 0.36×
    /// the direct rate that way on a quiet machine, with 24 such refusals.
    pub async fn push_all_within(&self, lines: Vec<String>, patience: Duration) -> Result<(), Full> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut lines = lines;
        loop {
            // Registered before looking, so a batch written in between still wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(lines) {
                Ok(()) => return Ok(()),
                Err((back, full)) => {
                    let hopeless = full.writer_error.is_some() || full.wanted > self.capacity;
                    if hopeless || tokio::time::Instant::now() >= deadline {
                        return Err(self.refused(full));
                    }
                    lines = back;
                    // Timing out just means one last look before refusing.
                    let _ = tokio::time::timeout_at(deadline, room).await;
                }
            }
        }
    }

    /// Adds the lines if they all fit; otherwise hands them back with why.
    fn try_push(&self, lines: Vec<String>) -> Result<(), (Vec<String>, Full)> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut queue = self.lock();
        let held = queue.lines.len() + queue.in_flight;
        if held + lines.len() > self.capacity {
            let full = Full {
                held,
                capacity: self.capacity,
                wanted: lines.len(),
                writer_error: queue.failing_since.and(queue.last_error.clone()),
            };
            return Err((lines, full));
        }
        queue.lines.extend(lines);
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    fn refused(&self, full: Full) -> Full {
        self.lock().requests_refused_full += 1;
        full
    }

    pub fn status(&self) -> BufferStatus {
        let queue = self.lock();
        BufferStatus {
            held: queue.lines.len() + queue.in_flight,
            capacity: self.capacity,
            failing_for: queue.failing_since.map(|since| since.elapsed()),
            last_error: queue.last_error.clone(),
            written: queue.written,
            refused_by_influx: queue.refused_by_influx,
            requests_refused_full: queue.requests_refused_full,
        }
    }

    /// Up to `most` lines from the front, marked in flight.
    fn take(&self, most: usize) -> Vec<String> {
        let mut queue = self.lock();
        let n = most.min(queue.lines.len());
        let batch: Vec<String> = queue.lines.drain(..n).collect();
        queue.in_flight += batch.len();
        let more = !queue.lines.is_empty();
        drop(queue);
        if more {
            // Another writer may take the next batch meanwhile.
            self.wake.notify_one();
        }
        batch
    }

    fn done(&self, lines: usize, outcome: Result<(), String>) {
        let mut queue = self.lock();
        queue.in_flight = queue.in_flight.saturating_sub(lines);
        queue.failing_since = None;
        match outcome {
            Ok(()) => {
                queue.written += lines as u64;
                queue.last_error = None;
            }
            Err(reason) => {
                queue.refused_by_influx += lines as u64;
                queue.last_error = Some(reason);
            }
        }
        drop(queue);
        self.room.notify_waiters();
    }

    fn failing(&self, error: String) {
        let mut queue = self.lock();
        queue.failing_since.get_or_insert_with(Instant::now);
        queue.last_error = Some(error);
        drop(queue);
        // Waiting requests give up now rather than at their deadline.
        self.room.notify_waiters();
    }
}

/// Sends what the buffer holds to InfluxDB, `writers` batches at a time, until `flush_and_stop`
/// is cancelled and the buffer is empty. Start it once per process; the caller bounds the final
/// flush with a timeout.
pub async fn run_writer(
    buffer: std::sync::Arc<Buffer>,
    influx: InfluxClient,
    writers: usize,
    flush_and_stop: CancellationToken,
) {
    run_writer_lingering(buffer, influx, writers, Duration::ZERO, flush_and_stop).await;
}

/// [`run_writer`], but after sending a batch smaller than the batch size a writer waits `linger`
/// (unless stopping) for more lines before taking the next: fewer, larger writes when lines come
/// one at a time (the router's request points).
pub async fn run_writer_lingering(
    buffer: std::sync::Arc<Buffer>,
    influx: InfluxClient,
    writers: usize,
    linger: Duration,
    flush_and_stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers.max(1) {
        tasks.spawn(write_batches(buffer.clone(), influx.clone(), flush_and_stop.clone(), writer, linger));
    }
    while tasks.join_next().await.is_some() {}
}

#[tracing::instrument(name = "metrics_writer", skip(buffer, influx, flush_and_stop, linger))]
async fn write_batches(
    buffer: std::sync::Arc<Buffer>,
    influx: InfluxClient,
    flush_and_stop: CancellationToken,
    writer: usize,
    linger: Duration,
) {
    let batch_size = influx.config().batch_size.max(1);
    loop {
        let batch = buffer.take(batch_size);
        if batch.is_empty() {
            if flush_and_stop.is_cancelled() {
                return;
            }
            tokio::select! {
                () = buffer.wake.notified() => {}
                () = flush_and_stop.cancelled() => {}
            }
            continue;
        }
        let lines = batch.len();
        let body = batch.concat();
        let mut attempt = 0;
        loop {
            match influx.write_lines(body.clone()).await {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(attempts = attempt + 1, "InfluxDB takes metrics again");
                    }
                    buffer.done(lines, Ok(()));
                    break;
                }
                Err(error) if is_permanent(&error) => {
                    tracing::error!(%error, points = lines, "InfluxDB refused a batch of metrics; it is dropped");
                    buffer.done(lines, Err(format!("InfluxDB refused {lines} points: {error}")));
                    break;
                }
                Err(error) => {
                    if attempt == 0 {
                        tracing::warn!(%error, points = lines, "writing metrics failed; retrying with backoff");
                    }
                    if matches!(&error, InfluxError::Server { status: 404, .. })
                        && let Err(error) = influx.ensure_database().await
                    {
                        tracing::warn!(%error, "could not create the InfluxDB database");
                    }
                    buffer.failing(error.to_string());
                    tokio::time::sleep(RETRY.delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        if lines < batch_size && !linger.is_zero() && !flush_and_stop.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(linger) => {}
                () = flush_and_stop.cancelled() => {}
            }
        }
    }
}

/// A 400-class answer about the data (bad point, type conflict, too large) won't change on a
/// retry. Everything else — no answer, 5xx, 429, a missing database, a refused login — may be
/// fixed by waiting or by the operator, so the points are kept.
fn is_permanent(error: &InfluxError) -> bool {
    matches!(error, InfluxError::Server { status: 400 | 413 | 422, .. } | InfluxError::Encode(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m v={i}i\n")).collect()
    }

    #[test]
    fn a_request_is_taken_whole_or_not_at_all() {
        let buffer = Buffer::new(5);
        buffer.push_all(lines(3)).expect("fits");
        let full = buffer.push_all(lines(3)).expect_err("does not fit");
        assert_eq!((full.held, full.capacity, full.wanted), (3, 5, 3));
        assert_eq!(buffer.status().held, 3, "nothing of the refused request was kept");
        buffer.push_all(lines(2)).expect("exactly fills");
        assert_eq!(buffer.status().requests_refused_full, 1);
    }

    #[test]
    fn lines_in_flight_still_count_until_written() {
        let buffer = Buffer::new(4);
        buffer.push_all(lines(4)).expect("fits");
        let batch = buffer.take(3);
        assert_eq!(batch.len(), 3);
        assert!(buffer.push_all(lines(1)).is_err(), "in-flight lines hold their place");
        buffer.done(3, Ok(()));
        buffer.push_all(lines(3)).expect("room again");
        assert_eq!(buffer.status().written, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_makes_a_request_wait_for_room_while_the_writer_keeps_up() {
        let buffer = std::sync::Arc::new(Buffer::new(4));
        buffer.push_all(lines(4)).expect("fits");
        let batch = buffer.take(4);
        let waiting = tokio::spawn({
            let buffer = buffer.clone();
            async move { buffer.push_all_within(lines(3), Duration::from_secs(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "no room yet: it waits instead of refusing");
        buffer.done(batch.len(), Ok(()));
        waiting.await.expect("joins").expect("taken once the batch was written");
        assert_eq!(buffer.status().held, 3);
        assert_eq!(buffer.status().requests_refused_full, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_no_longer_than_its_patience_and_not_at_all_when_the_writer_fails() {
        let buffer = Buffer::new(4);
        buffer.push_all(lines(4)).expect("fits");
        let started = tokio::time::Instant::now();
        let full = buffer.push_all_within(lines(1), Duration::from_secs(2)).await.expect_err("still full");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(full.writer_error, None, "slow, not failing");

        buffer.failing("InfluxDB did not answer".into());
        let started = tokio::time::Instant::now();
        let full = buffer.push_all_within(lines(1), Duration::from_secs(2)).await.expect_err("still full");
        assert_eq!(started.elapsed(), Duration::ZERO, "InfluxDB down: refused at once");
        assert!(full.writer_error.is_some());
        let too_big = Buffer::new(4).push_all_within(lines(5), Duration::from_secs(2)).await.expect_err("never fits");
        assert_eq!(too_big.wanted, 5);
        assert_eq!(buffer.status().requests_refused_full, 2);
    }

    #[test]
    fn degraded_while_failing_or_above_eighty_percent() {
        let buffer = Buffer::new(10);
        buffer.push_all(lines(8)).expect("fits");
        assert_eq!(buffer.status().degraded(), None);
        buffer.push_all(lines(1)).expect("fits");
        assert!(buffer.status().degraded().expect("90 %").contains("90 % full"));
        let _ = buffer.take(1);
        buffer.failing("InfluxDB did not answer".into());
        let message = buffer.status().degraded().expect("failing");
        assert!(message.starts_with("metrics degraded: writes to InfluxDB failing"), "{message}");
        buffer.done(1, Ok(()));
        assert_eq!(buffer.status().failing_for, None);
    }
}
