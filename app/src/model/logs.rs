//! Aggregated log lines: what services send to `POST /api/v1/logs` (one JSON object per line,
//! NDJSON) and what `GET /api/v1/logs` answers.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How serious a line is, least first. Stored as its rank (0–4), so "at least warning" is a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] =
        [LogLevel::Debug, LogLevel::Info, LogLevel::Warning, LogLevel::Error, LogLevel::Fatal];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
        }
    }

    /// The stored rank: 0 debug … 4 fatal.
    pub fn rank(self) -> i16 {
        match self {
            LogLevel::Debug => 0,
            LogLevel::Info => 1,
            LogLevel::Warning => 2,
            LogLevel::Error => 3,
            LogLevel::Fatal => 4,
        }
    }

    pub fn from_rank(rank: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.rank() == rank)
    }

    /// Parses the exact lowercase name; the error says which names exist.
    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == value)
            .ok_or_else(|| format!("{value:?} is not a level; use one of debug, info, warning, error, fatal"))
    }
}

/// One line as a sender writes it: one JSON object per NDJSON line. Free data goes in
/// `fields`; any other key is refused. Strings borrow from the body where they can (ingest
/// reads hundreds of thousands of these a second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogLineIn<'a> {
    /// RFC 3339, e.g. `2026-11-30T12:00:00.123Z`; no older than the retention, at most 1 h ahead.
    #[serde(borrow)]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub time: Cow<'a, str>,
    /// debug, info, warning, error or fatal (checked after parsing, so a bad one is named).
    #[serde(borrow)]
    #[cfg_attr(feature = "ssr", schema(value_type = LogLevel))]
    pub level: Cow<'a, str>,
    #[serde(borrow)]
    #[cfg_attr(feature = "ssr", schema(value_type = String))]
    pub message: Cow<'a, str>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub cluster: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub node: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub service: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub instance: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub component: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub trace_id: Option<Cow<'a, str>>,
    /// Free fields: a JSON object.
    #[serde(default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Object>))]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub id: i64,
    /// When it happened, by the sender's clock.
    pub time: DateTime<Utc>,
    /// When opsdeck stored it.
    pub received_at: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub component: Option<String>,
    pub trace_id: Option<String>,
    /// Free fields the sender attached (a JSON object).
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub fields: serde_json::Value,
}

/// How many lines of each level match a search (levels with none are 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LevelCounts {
    pub debug: i64,
    pub info: i64,
    pub warning: i64,
    pub error: i64,
    pub fatal: i64,
}

impl LevelCounts {
    pub fn add(&mut self, level: LogLevel, count: i64) {
        let slot = match level {
            LogLevel::Debug => &mut self.debug,
            LogLevel::Info => &mut self.info,
            LogLevel::Warning => &mut self.warning,
            LogLevel::Error => &mut self.error,
            LogLevel::Fatal => &mut self.fatal,
        };
        *slot += count;
    }

    pub fn total(&self) -> i64 {
        self.debug + self.info + self.warning + self.error + self.fatal
    }
}

/// One page of a search, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<String>,
    /// Lines per level matching the whole search (not just this page), on the first page only
    /// (a request without `before`); later pages leave it out rather than count again.
    pub counts: Option<LevelCounts>,
    /// The time range searched (the defaults filled in).
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// How far back the logs page searches (relative, so a shared link stays useful).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRange {
    #[serde(rename = "15m")]
    Minutes15,
    #[default]
    #[serde(rename = "1h")]
    Hour1,
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "24h")]
    Hours24,
    #[serde(rename = "7d")]
    Days7,
}

impl LogRange {
    pub const ALL: [LogRange; 5] =
        [LogRange::Minutes15, LogRange::Hour1, LogRange::Hours6, LogRange::Hours24, LogRange::Days7];

    /// The URL value: `15m`, `1h`, `6h`, `24h`, `7d`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogRange::Minutes15 => "15m",
            LogRange::Hour1 => "1h",
            LogRange::Hours6 => "6h",
            LogRange::Hours24 => "24h",
            LogRange::Days7 => "7d",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LogRange::Minutes15 => "last 15 min",
            LogRange::Hour1 => "last hour",
            LogRange::Hours6 => "last 6 h",
            LogRange::Hours24 => "last 24 h",
            LogRange::Days7 => "last 7 days",
        }
    }

    pub fn duration(self) -> chrono::Duration {
        match self {
            LogRange::Minutes15 => chrono::Duration::minutes(15),
            LogRange::Hour1 => chrono::Duration::hours(1),
            LogRange::Hours6 => chrono::Duration::hours(6),
            LogRange::Hours24 => chrono::Duration::hours(24),
            LogRange::Days7 => chrono::Duration::days(7),
        }
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|range| range.as_str() == value)
            .ok_or_else(|| format!("range: {value:?} is not one of 15m, 1h, 6h, 24h, 7d"))
    }
}

/// A search as the logs page asks for it (the page's URL query, parsed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogQuery {
    pub range: LogRange,
    pub level: Option<LogLevel>,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub service: Option<String>,
    pub instance: Option<String>,
    pub trace_id: Option<String>,
    pub q: Option<String>,
    /// The cursor of the previous page (`LogPage::next`).
    pub before: Option<String>,
}

impl LogQuery {
    /// The filters the live tail shares with search, as URL query pairs (empty ones left out).
    pub fn tail_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(level) = self.level {
            pairs.push(("level", level.as_str().to_owned()));
        }
        for (key, value) in [
            ("cluster", &self.cluster),
            ("node", &self.node),
            ("service", &self.service),
            ("instance", &self.instance),
            ("trace_id", &self.trace_id),
            ("q", &self.q),
        ] {
            if let Some(value) = value {
                pairs.push((key, value.clone()));
            }
        }
        pairs
    }
}

/// The live tail's `heartbeat` event: the stream is alive, and whether this server is
/// receiving new lines right now (false while its PostgreSQL listener reconnects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TailHeartbeat {
    pub at: DateTime<Utc>,
    pub listening: bool,
}

/// The live tail's `missed` event: the viewer fell behind its bounded queue and this many
/// matching lines were skipped (they are stored; search finds them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TailMissed {
    pub missed: u64,
    pub at: DateTime<Utc>,
}

/// The answer to an accepted batch: every line is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogsAccepted {
    pub accepted: u64,
}

/// What is wrong with one line of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LineError {
    /// 1-based line number in the body (blank lines count).
    pub line: usize,
    /// The field at fault; absent when the line as a whole is (not JSON, too long).
    pub field: Option<String>,
    pub reason: String,
}

/// The answer to a refused batch (422): nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogsRejected {
    /// Always `unprocessable`, as in every API error.
    pub error: String,
    pub detail: String,
    /// The bad lines, first ones first (at most 100 are listed; `detail` gives the count).
    pub lines: Vec<LineError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_names_and_ranks_in_order() {
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::parse(level.as_str()), Ok(level));
            assert_eq!(LogLevel::from_rank(level.rank()), Some(level));
        }
        assert!(LogLevel::Warning < LogLevel::Error);
        assert!(matches!(LogLevel::parse("WARN"), Err(reason) if reason.contains("warning")));
    }
}
