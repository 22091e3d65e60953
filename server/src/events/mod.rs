//! Live events: changes are written to the `events` table in the transaction that makes them
//! ([`publish`]); PostgreSQL NOTIFY carries each committed row to every `opsdeck serve`, whose
//! [`EventHub`] fans it out in process; `GET /api/v1/events` streams it as Server-Sent Events
//! with a heartbeat and `Last-Event-ID` resume (see [`stream`]).

pub mod stream;

use prometheus_client::metrics::histogram::Histogram;
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use app::model::events::{Event, EventKind, InstanceRef};
use sqlx::{PgConnection, PgPool, postgres::PgListener};
use tokio::sync::broadcast;
use uuid::Uuid;

/// The NOTIFY channel the `events` trigger sends on.
const CHANNEL: &str = "opsdeck_events";
/// Serialises event writers, so ids become visible in the order they were drawn and a reader
/// resuming "after id N" misses nothing that commits later with a smaller id.
const WRITE_LOCK: i64 = 0x6f70_7364_6576_0001;
/// How many events a slow subscriber may fall behind before it must catch up from the table.
const FAN_OUT_CAPACITY: usize = 4096;
/// Reasons and other free text in events are cut to this many characters (NOTIFY payloads are
/// limited to 8000 bytes, and an event is a headline, not a log).
pub const MAX_TEXT: usize = 300;
/// Events older than this are pruned.
const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Stores an event as part of the caller's transaction; it reaches every replica when that
/// transaction commits (and never if it rolls back).
///
/// Call it **last, just before commit**: it takes the events write lock, and a transaction
/// holding that lock must not wait for row locks, or two writers could deadlock.
pub async fn publish(tx: &mut PgConnection, kind: &EventKind) -> Result<i64, sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK).execute(&mut *tx).await?;
    let payload = serde_json::to_value(kind).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query_scalar!("INSERT INTO events (kind, payload) VALUES ($1, $2) RETURNING id", kind.name(), payload)
        .fetch_one(&mut *tx)
        .await
}

/// [`publish`] for several events, in order (same rule: last, just before commit).
pub async fn publish_all(tx: &mut PgConnection, kinds: &[EventKind]) -> Result<(), sqlx::Error> {
    for kind in kinds {
        publish(tx, kind).await?;
    }
    Ok(())
}

/// The instance an event is about, read inside the transaction that changes it.
pub async fn instance_ref(tx: &mut PgConnection, id: Uuid) -> Result<Option<InstanceRef>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT i.id, s.name AS service, v.label AS version, c.name AS cluster, n.name AS node, i.host, i.port
           FROM instances i
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE i.id = $1"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|r| InstanceRef {
        id: r.id.to_string(),
        service: r.service,
        version: r.version,
        cluster: r.cluster,
        node: r.node,
        address: address(&r.host, r.port),
    }))
}

/// `host:port`, with IPv6 hosts in brackets.
pub fn address(host: &str, port: i32) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Cuts free text to [`MAX_TEXT`] characters.
pub fn headline(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_TEXT - 1).collect();
    cut.push('…');
    cut
}

/// Events after `after`, oldest first, at most `limit`.
pub async fn since(db: &PgPool, after: i64, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
    let rows =
        sqlx::query!("SELECT id, at, kind, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2", after, limit)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().filter_map(|r| decode(r.id, r.at, &r.kind, r.payload)).collect())
}

fn decode(id: i64, at: chrono::DateTime<chrono::Utc>, kind: &str, payload: serde_json::Value) -> Option<Event> {
    match serde_json::from_value::<EventKind>(payload) {
        Ok(kind) => Some(Event { id, at, kind }),
        Err(error) => {
            // Written by a newer version during a rolling upgrade: skip it rather than stop.
            tracing::warn!(%error, id, kind, "an event this version can't read was skipped");
            None
        }
    }
}

/// The in-process fan-out of committed events, fed by one LISTEN connection per process.
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
    last_id: Arc<AtomicI64>,
    /// Observes each event's delivery lag (for `/metrics`).
    delivery_lag: Histogram,
}

impl EventHub {
    pub fn new(delivery_lag: Histogram) -> Self {
        Self { sender: broadcast::channel(FAN_OUT_CAPACITY).0, last_id: Arc::default(), delivery_lag }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// The newest event id this process has seen.
    pub fn last_id(&self) -> i64 {
        self.last_id.load(Ordering::SeqCst)
    }

    fn deliver(&self, event: Event) {
        if event.id <= self.last_id() {
            return;
        }
        self.last_id.store(event.id, Ordering::SeqCst);
        let lag = (chrono::Utc::now() - event.at).to_std().unwrap_or_default();
        self.delivery_lag.observe(lag.as_secs_f64());
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(Arc::new(event));
    }

    /// Listens for committed events until the process stops. A lost connection is re-opened
    /// and the gap filled from the table, so subscribers see every event once, in order.
    pub async fn run(self, db: PgPool) {
        match sqlx::query_scalar!("SELECT COALESCE(MAX(id), 0) AS \"id!\" FROM events").fetch_one(&db).await {
            Ok(id) => self.last_id.store(id, Ordering::SeqCst),
            Err(error) => tracing::warn!(%error, "could not read the newest event id; starting from the listener"),
        }
        let mut backoff = 0u32;
        let mut pruned_at = tokio::time::Instant::now() - KEEP_FOR;
        loop {
            match self.listen(&db).await {
                Ok(()) => backoff = 0,
                Err(error) => {
                    let wait = crate::resilience::Backoff::new(
                        std::time::Duration::from_millis(200),
                        std::time::Duration::from_secs(5),
                    )
                    .delay(backoff);
                    backoff = backoff.saturating_add(1);
                    tracing::warn!(%error, ?wait, "the event listener lost PostgreSQL; reconnecting");
                    tokio::time::sleep(wait).await;
                }
            }
            if pruned_at.elapsed() > std::time::Duration::from_secs(600) {
                pruned_at = tokio::time::Instant::now();
                let cutoff = chrono::Utc::now() - KEEP_FOR;
                if let Err(error) = sqlx::query!("DELETE FROM events WHERE at < $1", cutoff).execute(&db).await {
                    tracing::warn!(%error, "old events were not pruned; retrying later");
                }
            }
        }
    }

    /// One listening session: subscribe, fill any gap, then deliver notifications until the
    /// connection drops (`Ok`) or can't be opened (`Err`).
    async fn listen(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(CHANNEL).await?;
        self.catch_up(db).await?;
        loop {
            let notification = tokio::time::timeout(std::time::Duration::from_secs(600), listener.try_recv()).await;
            match notification {
                Ok(Ok(Some(notification))) => match serde_json::from_str::<Notified>(notification.payload()) {
                    Ok(n) => {
                        if n.id > self.last_id() + 1 {
                            // A gap (missed while reconnecting, or out of order): read it from the table.
                            self.catch_up(db).await?;
                        }
                        if let Some(event) = decode(n.id, n.at, &n.kind, n.payload) {
                            self.deliver(event);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "an unreadable event notification was skipped"),
                },
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(error)) => return Err(error),
                // Quiet for ten minutes: return so the caller can prune, then listen again.
                Err(_) => return Ok(()),
            }
        }
    }

    async fn catch_up(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        loop {
            let batch = since(db, self.last_id(), 1000).await?;
            let done = batch.len() < 1000;
            batch.into_iter().for_each(|event| self.deliver(event));
            if done {
                return Ok(());
            }
        }
    }
}

/// The shape of a notification, as the trigger builds it.
#[derive(serde::Deserialize)]
struct Notified {
    id: i64,
    at: chrono::DateTime<chrono::Utc>,
    kind: String,
    payload: serde_json::Value,
}

pub use stream::routes;
