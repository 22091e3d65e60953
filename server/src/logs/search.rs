//! Search: newest first with a keyset cursor on (at, id), and counts by level for the same
//! filter. Text values are bound parameters, so SQL metacharacters are only text; `q` goes
//! through `websearch_to_tsquery` (quotes, `or`, `-word` work as in a web search box, and
//! nothing in it is an error).

use app::model::logs::{LevelCounts, LogLevel, LogLine};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A search, checked.
#[derive(Debug, Clone)]
pub struct Filter {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub level: LogLevel,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub trace_id: Option<String>,
    pub q: Option<String>,
}

/// Where a page ends: the (at, id) of its last line. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('.')?;
        Some(Self { at: DateTime::from_timestamp_micros(micros.parse().ok()?)?, id: id.parse().ok()? })
    }
}

/// A stored line as queried (shared with the live tail and the trace view).
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) level: i16,
    pub(crate) message: String,
    pub(crate) cluster: Option<String>,
    pub(crate) node: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) instance: Option<String>,
    pub(crate) component: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) fields: serde_json::Value,
}

/// Up to `limit` lines older than `before`, newest first, and the cursor of the next page.
#[tracing::instrument(skip_all)]
pub async fn page(
    db: &PgPool,
    filter: &Filter,
    before: Option<Cursor>,
    limit: u32,
) -> sqlx::Result<(Vec<LogLine>, Option<Cursor>)> {
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id AS "id!", at, received_at, level, message, cluster, node, service, instance, component,
                  trace_id, fields
           FROM log_lines
           WHERE at >= $1 AND ($2::timestamptz IS NULL OR at < $2) AND level >= $3
             AND ($4::text IS NULL OR cluster = $4) AND ($5::text IS NULL OR node = $5)
             AND ($6::text IS NULL OR service = $6) AND ($7::text IS NULL OR instance = $7)
             AND ($8::text IS NULL OR trace_id = $8)
             AND ($9::text IS NULL OR search @@ websearch_to_tsquery('simple', $9))
             AND ($10::timestamptz IS NULL OR (at, id) < ($10, $11))
           ORDER BY at DESC, id DESC
           LIMIT $12"#,
        filter.since,
        filter.until,
        filter.level.rank(),
        filter.cluster,
        filter.node,
        filter.service,
        filter.instance,
        filter.trace_id,
        filter.q,
        before.map(|c| c.at),
        before.map_or(0, |c| c.id),
        i64::from(limit) + 1,
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() > limit as usize;
    let lines: Vec<LogLine> = rows.into_iter().take(limit as usize).map(LogLine::from).collect();
    let next = if more { lines.last().map(|line| Cursor { at: line.time, id: line.id }) } else { None };
    Ok((lines, next))
}

/// Lines per level for the filter (the same conditions as [`page`] without the cursor; kept
/// literal in both so each is checked at compile time).
#[tracing::instrument(skip_all)]
pub async fn counts(db: &PgPool, filter: &Filter) -> sqlx::Result<LevelCounts> {
    let rows = sqlx::query!(
        r#"SELECT level, count(*) AS "count!"
           FROM log_lines
           WHERE at >= $1 AND ($2::timestamptz IS NULL OR at < $2) AND level >= $3
             AND ($4::text IS NULL OR cluster = $4) AND ($5::text IS NULL OR node = $5)
             AND ($6::text IS NULL OR service = $6) AND ($7::text IS NULL OR instance = $7)
             AND ($8::text IS NULL OR trace_id = $8)
             AND ($9::text IS NULL OR search @@ websearch_to_tsquery('simple', $9))
           GROUP BY level"#,
        filter.since,
        filter.until,
        filter.level.rank(),
        filter.cluster,
        filter.node,
        filter.service,
        filter.instance,
        filter.trace_id,
        filter.q,
    )
    .fetch_all(db)
    .await?;
    let mut counts = LevelCounts::default();
    for row in rows {
        if let Some(level) = LogLevel::from_rank(row.level) {
            counts.add(level, row.count);
        }
    }
    Ok(counts)
}

impl From<Row> for LogLine {
    fn from(row: Row) -> Self {
        LogLine {
            id: row.id,
            time: row.at,
            received_at: row.received_at,
            // The table's CHECK keeps the rank within 0–4.
            level: LogLevel::from_rank(row.level).unwrap_or(LogLevel::Fatal),
            message: row.message,
            cluster: row.cluster,
            node: row.node,
            service: row.service,
            instance: row.instance,
            component: row.component,
            trace_id: row.trace_id,
            fields: row.fields,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_not_a_cursor() {
        let cursor = Cursor { at: DateTime::from_timestamp_micros(1_796_000_000_123_456).expect("a time"), id: 42 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("'; DROP TABLE log_lines; --"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}
