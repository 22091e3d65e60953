//! Keeps a data plane's routing table current: load it, apply it, then reload and apply on every
//! policy notification (`opsdeck_traffic`) and every topology event (`opsdeck_events`: instances
//! registered, removed, expired, changing health), plus a periodic full reload as a safety net.
//!
//! When PostgreSQL is unreachable the provider keeps the last table it was given (it goes on
//! serving), the [`WatchStatus`] records since when and why, and the loop reconnects with
//! jittered backoff. Generic over [`TrafficProvider`], so the built-in router and HAProxy share it.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::{RoutingTable, TrafficProvider};
use crate::resilience::Backoff;

/// The channels whose notifications change the table.
const CHANNELS: [&str; 2] = [super::store::CHANNEL, "opsdeck_events"];
/// Waits between reconnection attempts while PostgreSQL is unreachable.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// How the loop behaves.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// A full reload this often even without notifications (a missed NOTIFY can't last longer).
    pub full_reload_every: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self { full_reload_every: Duration::from_secs(10) }
    }
}

/// What the loop has done, for `/readyz` and `/status`. Cheap to read from any thread.
#[derive(Debug, Default)]
pub struct WatchStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone)]
struct StatusInner {
    applied: Option<Arc<RoutingTable>>,
    applied_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    reloads: u64,
}

/// A copy of the status at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WatchReport {
    /// Whether the last reload worked (PostgreSQL reachable).
    pub ready: bool,
    /// One sentence an operator can act on.
    pub message: String,
    /// Revision in effect per service (0: no policy).
    pub revisions: std::collections::BTreeMap<String, i64>,
    /// When the table in effect was read from PostgreSQL.
    pub policy_loaded_at: Option<DateTime<Utc>>,
    pub policy_age_seconds: Option<f64>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub reloads: u64,
}

impl WatchStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn applied(&self, table: Arc<RoutingTable>) {
        let mut inner = self.lock();
        inner.applied = Some(table);
        inner.applied_at = Some(Utc::now());
        inner.failing_since = None;
        inner.last_error = None;
        inner.reloads += 1;
    }

    fn failed(&self, cause: String) {
        let mut inner = self.lock();
        inner.failing_since.get_or_insert_with(Utc::now);
        inner.last_error = Some(cause);
    }

    /// The table last applied, if any.
    pub fn table(&self) -> Option<Arc<RoutingTable>> {
        self.lock().applied.clone()
    }

    pub fn report(&self) -> WatchReport {
        let inner = self.lock().clone();
        let revisions = inner
            .applied
            .as_ref()
            .map(|table| table.services.iter().map(|(name, routes)| (name.clone(), routes.policy.revision)).collect())
            .unwrap_or_default();
        let loaded_at = inner.applied.as_ref().and_then(|t| t.loaded_at);
        let age = loaded_at.map(|at| (Utc::now() - at).num_milliseconds() as f64 / 1000.0);
        let describe = |revisions: &std::collections::BTreeMap<String, i64>| {
            if revisions.is_empty() {
                "no services".to_owned()
            } else {
                revisions.iter().map(|(s, r)| format!("{s} r{r}")).collect::<Vec<_>>().join(", ")
            }
        };
        let (ready, message) = match (&inner.applied, &inner.failing_since) {
            (Some(_), None) => (true, format!("policy in effect: {}", describe(&revisions))),
            (Some(_), Some(since)) => (
                false,
                format!(
                    "serving last known policy (revision {}) loaded at {} since {}; PostgreSQL unreachable: {}",
                    describe(&revisions),
                    loaded_at.map_or_else(|| "?".to_owned(), |at| at.to_rfc3339()),
                    since.to_rfc3339(),
                    inner.last_error.as_deref().unwrap_or("unknown cause"),
                ),
            ),
            (None, _) => (
                false,
                format!(
                    "no routing table yet: PostgreSQL {}",
                    inner.last_error.as_deref().map_or("not read yet".to_owned(), |e| format!("unreachable: {e}"))
                ),
            ),
        };
        WatchReport {
            ready,
            message,
            revisions,
            policy_loaded_at: loaded_at,
            policy_age_seconds: age,
            failing_since: inner.failing_since,
            last_error: inner.last_error,
            reloads: inner.reloads,
        }
    }
}

/// Runs until `stop` is cancelled: keeps `provider`'s table current (see the module comment).
pub async fn watch(
    db: PgPool,
    provider: Arc<dyn TrafficProvider>,
    status: Arc<WatchStatus>,
    settings: WatchSettings,
    stop: CancellationToken,
) {
    let mut failures = 0_u32;
    loop {
        let reloads_before = status.report().reloads;
        let session = tokio::select! {
            outcome = listen_and_apply(&db, provider.as_ref(), &status, settings) => outcome,
            () = stop.cancelled() => return,
        };
        let cause = match session {
            Ok(()) => "the notification connection closed".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        if status.report().reloads > reloads_before {
            // The session worked for a while: start the backoff over.
            failures = 0;
        }
        if failures == 0 {
            tracing::warn!(provider = provider.name(), %cause, "PostgreSQL unreachable; serving the last known policy");
        }
        status.failed(cause);
        tokio::select! {
            () = tokio::time::sleep(RECONNECT.delay(failures)) => {}
            () = stop.cancelled() => return,
        }
        failures = failures.saturating_add(1);
    }
}

/// One session: subscribe first (so no change between the load and the LISTEN is missed), load
/// and apply, then reload on notifications and on the timer until something fails.
async fn listen_and_apply(
    db: &PgPool,
    provider: &dyn TrafficProvider,
    status: &WatchStatus,
    settings: WatchSettings,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut listener = PgListener::connect_with(db).await.context("connecting to PostgreSQL to LISTEN")?;
    listener.eager_reconnect(false);
    listener.listen_all(CHANNELS).await.context("LISTEN on the traffic and event channels")?;
    reload(db, provider, status).await?;
    let mut timer = tokio::time::interval(settings.full_reload_every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;
    loop {
        tokio::select! {
            notification = listener.try_recv() => match notification.context("waiting for notifications")? {
                Some(_) => {
                    // Coalesce: whatever else has arrived is covered by this one reload.
                    while listener.next_buffered().is_some() {}
                }
                None => anyhow::bail!("the PostgreSQL notification connection was lost"),
            },
            _ = timer.tick() => {}
        }
        reload(db, provider, status).await?;
    }
}

async fn reload(db: &PgPool, provider: &dyn TrafficProvider, status: &WatchStatus) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let table = Arc::new(RoutingTable::load(db).await.context("reading the routing table")?);
    match provider.apply(table.clone()).await {
        Ok(()) => status.applied(table),
        // The provider keeps its previous table; the next reload tries again.
        Err(error) => tracing::error!(
            provider = provider.name(),
            error = format!("{error:#}"),
            "applying the routing table failed"
        ),
    }
    Ok(())
}
