//! The live-tail hub of one `opsdeck serve`: one subscription per distinct filter, shared by
//! every viewer with that filter, each a bounded `broadcast` queue.
//!
//! New lines reach every replica the same way: the ingest transaction sends a small NOTIFY
//! naming its lines (time range and id ranges, [`Announcement`]); each replica's hub listens on
//! one connection and, only while someone is watching, reads the announced lines back once
//! (an index range on the primary key) and hands each to the subscriptions whose filter it
//! matches. Ingest never waits for any of this: NOTIFY is queued at commit, and a `broadcast`
//! send never blocks — a viewer that falls behind its queue loses the oldest lines and is told
//! how many (`Lagged`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use app::model::logs::LogLine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{broadcast, watch};

use super::filter::TailFilter;

/// The NOTIFY channel ingest announces committed batches on.
pub const CHANNEL: &str = "opsdeck_log_lines";
/// How many lines a viewer may fall behind before it misses some.
pub const VIEWER_QUEUE: usize = 1024;

/// What a NOTIFY says about a committed batch: where its lines are. Small by design (NOTIFY
/// payloads are limited to 8000 bytes): a batch with many id runs is announced in several parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The earliest and latest line time, so the read-back touches only those partitions.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Inclusive id ranges.
    pub ids: Vec<(i64, i64)>,
}

/// The hub; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LogTailHub {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    subscriptions: Mutex<HashMap<TailFilter, Subscription>>,
    listening: watch::Sender<bool>,
    missed: AtomicU64,
    dispatched: AtomicU64,
}

#[derive(Debug)]
struct Subscription {
    sender: broadcast::Sender<Arc<LogLine>>,
    viewers: usize,
}

/// What the hub has done so far, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub subscriptions: usize,
    pub viewers: usize,
    /// Lines handed to subscriptions (one per matching subscription).
    pub dispatched: u64,
    /// Lines viewers missed because they fell behind.
    pub missed: u64,
}

/// One viewer's place in a subscription; leaving (drop) ends the subscription with its last
/// viewer.
#[derive(Debug)]
pub struct Viewer {
    hub: LogTailHub,
    filter: TailFilter,
    pub lines: broadcast::Receiver<Arc<LogLine>>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.hub.leave(&self.filter);
    }
}

impl Viewer {
    /// Counts lines this viewer missed.
    pub fn missed(&self, lines: u64) {
        self.hub.inner.missed.fetch_add(lines, Ordering::Relaxed);
    }
}

impl LogTailHub {
    /// Joins the subscription for `filter`, creating it for the first viewer.
    pub fn subscribe(&self, filter: TailFilter) -> Viewer {
        let mut subscriptions = self.lock();
        let subscription = subscriptions
            .entry(filter.clone())
            .or_insert_with(|| Subscription { sender: broadcast::channel(VIEWER_QUEUE).0, viewers: 0 });
        subscription.viewers += 1;
        let lines = subscription.sender.subscribe();
        Viewer { hub: self.clone(), filter, lines }
    }

    fn leave(&self, filter: &TailFilter) {
        let mut subscriptions = self.lock();
        if let Some(subscription) = subscriptions.get_mut(filter) {
            subscription.viewers -= 1;
            if subscription.viewers == 0 {
                subscriptions.remove(filter);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TailFilter, Subscription>> {
        // A panic while holding the lock leaves the map consistent (every change is one step).
        self.inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stats(&self) -> TailStats {
        let subscriptions = self.lock();
        TailStats {
            subscriptions: subscriptions.len(),
            viewers: subscriptions.values().map(|s| s.viewers).sum(),
            dispatched: self.inner.dispatched.load(Ordering::Relaxed),
            missed: self.inner.missed.load(Ordering::Relaxed),
        }
    }

    /// Whether the hub is receiving announcements now (its listener is connected).
    pub fn listening(&self) -> watch::Receiver<bool> {
        self.inner.listening.subscribe()
    }

    /// Hands lines (in ingest order) to every subscription whose filter they match.
    pub fn dispatch(&self, lines: Vec<LogLine>) {
        let subscriptions = self.lock();
        let mut dispatched = 0u64;
        for line in lines {
            let line = Arc::new(line);
            for (filter, subscription) in subscriptions.iter() {
                if filter.matches(&line) {
                    // Err means no receiver right now (the last viewer is leaving): nothing to do.
                    let _ = subscription.sender.send(line.clone());
                    dispatched += 1;
                }
            }
        }
        self.inner.dispatched.fetch_add(dispatched, Ordering::Relaxed);
    }

    fn watched(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Listens for announced batches until the process stops, reconnecting with backoff. Lines
    /// committed while the listener is disconnected are not tailed (search has them); the
    /// `heartbeat` event says `listening: false` meanwhile.
    pub async fn run(self, db: PgPool) {
        let mut failures = 0u32;
        loop {
            let outcome = self.listen(&db).await;
            self.inner.listening.send_replace(false);
            let wait =
                crate::resilience::Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).delay(failures);
            match outcome {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, ?wait, "the log tail listener lost PostgreSQL; reconnecting");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn listen(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(CHANNEL).await?;
        self.inner.listening.send_replace(true);
        loop {
            let Some(notification) = listener.try_recv().await? else { return Ok(()) };
            if !self.watched() {
                continue;
            }
            match serde_json::from_str::<Announcement>(notification.payload()) {
                Ok(announcement) => match read_back(db, &announcement).await {
                    Ok(lines) => self.dispatch(lines),
                    Err(error) => tracing::warn!(%error, "announced log lines could not be read; the tail skips them"),
                },
                Err(error) => tracing::warn!(%error, "an unreadable log announcement was skipped"),
            }
        }
    }
}

/// Reads an announced batch's lines, in ingest (id) order. The time range is widened by a
/// millisecond each way: senders may give nanoseconds, which PostgreSQL rounds to microseconds.
async fn read_back(db: &PgPool, announcement: &Announcement) -> sqlx::Result<Vec<LogLine>> {
    let ids: Vec<i64> = announcement.ids.iter().flat_map(|&(low, high)| low..=high).collect();
    let margin = chrono::Duration::milliseconds(1);
    let rows = sqlx::query_as!(
        super::super::search::Row,
        r#"SELECT id AS "id!", at, received_at, level, message, cluster, node, service, instance, component,
                  trace_id, fields
           FROM log_lines
           WHERE at >= $1 AND at <= $2 AND id = ANY($3)
           ORDER BY id"#,
        announcement.from - margin,
        announcement.to + margin,
        &ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(LogLine::from).collect())
}

/// Compresses ascending ids into inclusive runs.
pub fn runs(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, high)) if *high + 1 == id => *high = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Most id runs one NOTIFY carries (each run is at most ~45 bytes of JSON).
pub const RUNS_PER_NOTIFY: usize = 150;

/// Queues the announcement of a batch in its transaction; PostgreSQL delivers it at commit.
pub async fn announce(
    tx: &mut sqlx::PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    ids: &[i64],
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    for part in runs(ids).chunks(RUNS_PER_NOTIFY) {
        let payload = serde_json::to_string(&Announcement { from, to, ids: part.to_vec() })?;
        sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, payload)
            .execute(&mut *tx)
            .await
            .context("could not announce the batch to live tails")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::logs::LogLevel;

    fn line(id: i64, level: LogLevel, service: &str) -> LogLine {
        LogLine {
            id,
            time: Utc::now(),
            received_at: Utc::now(),
            level,
            message: format!("line {id}"),
            cluster: None,
            node: None,
            service: Some(service.to_owned()),
            instance: None,
            component: None,
            trace_id: None,
            fields: serde_json::json!({}),
        }
    }

    #[test]
    fn ids_compress_into_runs() {
        assert_eq!(runs(&[1, 2, 3, 7, 8, 10]), vec![(1, 3), (7, 8), (10, 10)]);
        assert_eq!(runs(&[]), Vec::<(i64, i64)>::new());
    }

    #[test]
    fn the_biggest_announcement_fits_in_a_notify_payload() {
        let far = i64::MAX - 10;
        let ids: Vec<i64> = (0..RUNS_PER_NOTIFY as i64).map(|i| far - 2 * i).rev().collect();
        let announcement = Announcement { from: Utc::now(), to: Utc::now(), ids: runs(&ids) };
        assert_eq!(announcement.ids.len(), RUNS_PER_NOTIFY);
        assert!(serde_json::to_string(&announcement).expect("json").len() < 8000);
    }

    #[test]
    fn viewers_with_equal_filters_share_a_subscription_that_ends_with_the_last() {
        let hub = LogTailHub::default();
        let mut errors = TailFilter::everything();
        errors.level = LogLevel::Error;
        let first = hub.subscribe(errors.clone());
        let second = hub.subscribe(errors.clone());
        let other = hub.subscribe(TailFilter::everything());
        assert_eq!((hub.stats().subscriptions, hub.stats().viewers), (2, 3));
        drop(first);
        assert_eq!(hub.stats().subscriptions, 2);
        drop(second);
        drop(other);
        assert_eq!(hub.stats().subscriptions, 0);
    }

    #[test]
    fn a_line_reaches_only_the_subscriptions_it_matches() {
        let hub = LogTailHub::default();
        let mut errors = TailFilter::everything();
        errors.level = LogLevel::Error;
        let mut error_viewer = hub.subscribe(errors);
        let mut all_viewer = hub.subscribe(TailFilter::everything());
        hub.dispatch(vec![line(1, LogLevel::Info, "web"), line(2, LogLevel::Error, "web")]);
        assert_eq!(error_viewer.lines.try_recv().expect("the error").id, 2);
        assert!(error_viewer.lines.try_recv().is_err());
        assert_eq!(all_viewer.lines.try_recv().expect("first").id, 1);
        assert_eq!(all_viewer.lines.try_recv().expect("second").id, 2);
    }

    #[test]
    fn a_viewer_that_falls_behind_learns_how_many_lines_it_missed() {
        let hub = LogTailHub::default();
        let mut viewer = hub.subscribe(TailFilter::everything());
        let extra = 10;
        hub.dispatch((0..(VIEWER_QUEUE + extra) as i64).map(|id| line(id, LogLevel::Info, "web")).collect());
        match viewer.lines.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(missed)) => assert_eq!(missed, extra as u64),
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
