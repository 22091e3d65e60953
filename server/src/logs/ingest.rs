//! Ingest: an NDJSON body is checked line by line and turned into `COPY … FROM STDIN` text in
//! one pass, then stored with a single `COPY` (one statement, so committed before we answer).
//!
//! Batch policy: all or nothing. If any line is bad the whole batch is refused with 422 and a
//! list of `{line, field, reason}`, and nothing is stored; so "acknowledged" always means "every
//! line is committed", and a sender fixes or drops the bad lines and resends without
//! de-duplicating. Blank lines are skipped (but counted in line numbers).
//!
//! Time window: a line older than the retention would be dropped at once, and one more than an
//! hour ahead is a broken clock; both are refused. Inside the window, a day without a partition
//! yet gets one on demand (`partitions::ensure`).

use std::{collections::BTreeSet, io::Write as _, time::Duration};

use anyhow::Context;
use app::model::logs::{LineError, LogLevel, LogLineIn};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::partitions;

/// Longest line accepted, in bytes (without its newline).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most lines in one batch.
pub const MAX_LINES: usize = 10_000;
/// How far ahead of the server's clock a line's time may be.
pub const MAX_AHEAD: Duration = Duration::from_secs(3600);
/// Longest context value (cluster, node, service, instance, component), in characters.
const MAX_CONTEXT_CHARS: usize = 256;
/// Longest trace id, in characters.
const MAX_TRACE_CHARS: usize = 128;

/// The columns the COPY text carries, in order. The id comes last: it is drawn from the
/// table's sequence just before the COPY and appended to each row, so the batch can be
/// announced to live tails by id (`tail::hub::announce`); COPY takes given values even for a
/// `GENERATED ALWAYS` identity column.
pub const COPY_STATEMENT: &str =
    "COPY log_lines (at, level, message, cluster, node, service, instance, component, trace_id, fields, id) FROM STDIN";

const TEXT_FIELDS: [&str; 9] =
    ["time", "level", "message", "cluster", "node", "service", "instance", "component", "trace_id"];
const REQUIRED: [&str; 3] = ["time", "level", "message"];

/// A checked batch, ready for COPY.
#[derive(Debug, Default)]
pub struct Batch {
    /// COPY text format: one row per line, tab-separated, escaped.
    pub copy_text: Vec<u8>,
    pub lines: u64,
    /// The days the lines fall on (their partitions must exist).
    pub days: BTreeSet<NaiveDate>,
    /// The earliest and latest line time (set when there is a line).
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Checks every line of `body` and encodes the good ones; any bad line refuses the batch.
pub fn parse(body: &[u8], now: DateTime<Utc>, retention: Duration) -> Result<Batch, Vec<LineError>> {
    let oldest = partitions::cutoff(now, retention);
    let newest = now + chrono::Duration::from_std(MAX_AHEAD).unwrap_or_default();
    let window = Window { oldest, newest, retention };
    let mut batch = Batch { copy_text: Vec::with_capacity(body.len() + body.len() / 4), ..Batch::default() };
    let mut errors = Vec::new();
    let mut counted = 0usize;
    for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        counted += 1;
        if counted > MAX_LINES {
            errors.push(LineError {
                line: number,
                field: None,
                reason: format!("a batch holds at most {MAX_LINES} lines; send the rest in another batch"),
            });
            break;
        }
        match check_line(raw, &window) {
            Ok(line) if errors.is_empty() => {
                line.encode(&mut batch.copy_text);
                batch.days.insert(line.at.date_naive());
                batch.span = Some(match batch.span {
                    None => (line.at, line.at),
                    Some((earliest, latest)) => (earliest.min(line.at), latest.max(line.at)),
                });
                batch.lines += 1;
            }
            Ok(_) => {}
            Err((field, reason)) => errors.push(LineError { line: number, field, reason }),
        }
    }
    if errors.is_empty() { Ok(batch) } else { Err(errors) }
}

/// The times a line may have.
struct Window {
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    retention: Duration,
}

/// A line that passed every check.
struct Checked<'a> {
    at: DateTime<Utc>,
    level: LogLevel,
    incoming: LogLineIn<'a>,
}

/// The field at fault (if one is) and why.
type Refusal = (Option<String>, String);

fn check_line<'a>(raw: &'a [u8], window: &Window) -> Result<Checked<'a>, Refusal> {
    if raw.len() > MAX_LINE_BYTES {
        return Err((None, format!("the line is {} bytes; at most {MAX_LINE_BYTES} are accepted", raw.len())));
    }
    let text = std::str::from_utf8(raw).map_err(|e| (None, format!("not UTF-8 ({e})")))?;
    let incoming: LogLineIn<'a> = serde_json::from_str(text).map_err(|e| explain(text, &e))?;
    let at = DateTime::parse_from_rfc3339(&incoming.time)
        .map_err(|e| {
            (
                Some("time".to_owned()),
                format!("{:?} is not an RFC 3339 time such as 2026-11-30T12:00:00.123Z ({e})", incoming.time),
            )
        })?
        .with_timezone(&Utc);
    if at < window.oldest {
        return Err((
            Some("time".to_owned()),
            format!(
                "{at} is older than the log retention ({}) and would be dropped at once",
                humantime::format_duration(window.retention)
            ),
        ));
    }
    if at > window.newest {
        return Err((
            Some("time".to_owned()),
            format!("{at} is more than 1 h ahead of the server's clock; check the sender's clock"),
        ));
    }
    let level = LogLevel::parse(&incoming.level).map_err(|reason| (Some("level".to_owned()), reason))?;
    no_nul("message", &incoming.message)?;
    let context = [
        ("cluster", &incoming.cluster),
        ("node", &incoming.node),
        ("service", &incoming.service),
        ("instance", &incoming.instance),
        ("component", &incoming.component),
    ];
    for (field, value) in context {
        if let Some(value) = value {
            check_context(field, value, MAX_CONTEXT_CHARS, false)?;
        }
    }
    if let Some(trace) = &incoming.trace_id {
        check_context("trace_id", trace, MAX_TRACE_CHARS, true)?;
    }
    if let Some(fields) = &incoming.fields
        && fields_hold_nul(fields)
    {
        return Err((
            Some("fields".to_owned()),
            "contains a NUL character (\\u0000), which PostgreSQL can't store".to_owned(),
        ));
    }
    Ok(Checked { at, level, incoming })
}

fn no_nul(field: &'static str, value: &str) -> Result<(), Refusal> {
    if value.contains('\0') {
        return Err((
            Some(field.to_owned()),
            "contains a NUL character (\\u0000), which PostgreSQL can't store".to_owned(),
        ));
    }
    Ok(())
}

/// Context values are names people filter by: not empty, bounded, no control characters (and,
/// for a trace id, no spaces).
fn check_context(field: &'static str, value: &str, max: usize, no_space: bool) -> Result<(), Refusal> {
    no_nul(field, value)?;
    if value.is_empty() {
        return Err((Some(field.to_owned()), "is empty; leave it out instead".to_owned()));
    }
    if value.chars().count() > max {
        return Err((Some(field.to_owned()), format!("is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err((Some(field.to_owned()), "contains a control character".to_owned()));
    }
    if no_space && value.chars().any(char::is_whitespace) {
        return Err((Some(field.to_owned()), "contains a space".to_owned()));
    }
    Ok(())
}

fn fields_hold_nul(fields: &Map<String, Value>) -> bool {
    fn value_holds_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(value_holds_nul),
            Value::Object(map) => fields_hold_nul(map),
            _ => false,
        }
    }
    fields.iter().any(|(key, value)| key.contains('\0') || value_holds_nul(value))
}

/// Turns a failed typed parse into a refusal that names the field when there is one: the line
/// is read again loosely (only on this error path) to see which key is unknown, missing or of
/// the wrong type.
fn explain(text: &str, error: &serde_json::Error) -> Refusal {
    let loose: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => return (None, format!("not JSON ({error})")),
    };
    let Value::Object(object) = loose else {
        return (None, "each line must be a JSON object".to_owned());
    };
    for (key, value) in &object {
        let known_text = TEXT_FIELDS.contains(&key.as_str());
        if !known_text && key != "fields" {
            return (Some(key.clone()), "unknown field; put free fields in \"fields\"".to_owned());
        }
        let field = Some(key.clone());
        if known_text && !(value.is_string() || (value.is_null() && !REQUIRED.contains(&key.as_str()))) {
            return (field, "must be a string".to_owned());
        }
        if key == "fields" && !(value.is_object() || value.is_null()) {
            return (field, "must be a JSON object".to_owned());
        }
    }
    if let Some(missing) = REQUIRED.iter().find(|name| !object.contains_key(**name)) {
        return (Some((*missing).to_owned()), "is required".to_owned());
    }
    (None, error.to_string())
}

impl Checked<'_> {
    /// Appends one row of COPY text: tab-separated columns, `\N` for null, escaped.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.level.rank().to_string().as_bytes());
        out.push(b'\t');
        escape(&self.incoming.message, out);
        let i = &self.incoming;
        for value in [&i.cluster, &i.node, &i.service, &i.instance, &i.component, &i.trace_id] {
            out.push(b'\t');
            match value {
                Some(value) => escape(value, out),
                None => out.extend_from_slice(b"\\N"),
            }
        }
        out.push(b'\t');
        match &i.fields {
            // A map of JSON values always serialises.
            Some(fields) => escape(&serde_json::to_string(fields).unwrap_or_else(|_| "{}".to_owned()), out),
            None => out.extend_from_slice(b"{}"),
        }
        out.push(b'\n');
    }
}

/// COPY text format: backslash, tab, newline and carriage return are the only bytes with a
/// meaning inside a column; each is written as a backslash escape. Everything else (quotes,
/// `<script>`, any Unicode) is data as it stands.
pub fn escape(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (index, byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        out.extend_from_slice(replacement);
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Stores a checked batch: partitions for its days first, then one transaction that draws the
/// ids, COPYs the rows and queues the NOTIFY that tells live tails (on every replica) where
/// the lines are; it commits before we answer. Returns the rows PostgreSQL reports.
#[tracing::instrument(skip_all, fields(lines = batch.lines))]
pub async fn store(db: &PgPool, batch: &Batch) -> anyhow::Result<u64> {
    let Some((earliest, latest)) = batch.span else { return Ok(0) };
    partitions::ensure(db, &batch.days).await?;
    let mut tx = db.begin().await.context("no database connection for COPY")?;
    let count = i64::try_from(batch.lines).context("too many lines")?;
    // One row holding every id (an array), not a row per id: decoding thousands of rows costs
    // more than drawing the ids.
    let ids: Vec<i64> = sqlx::query_scalar!(
        r#"SELECT array_agg(nextval(pg_get_serial_sequence('log_lines', 'id'))) AS "ids!" FROM generate_series(1, $1::bigint)"#,
        count
    )
    .fetch_one(&mut *tx)
    .await
    .context("cannot draw ids for the log lines")?;
    let rows = with_ids(&batch.copy_text, &ids);
    let mut copy = tx.copy_in_raw(COPY_STATEMENT).await.context("cannot start COPY into log_lines")?;
    if let Err(error) = copy.send(rows.as_slice()).await {
        // Best effort: the connection is closed if abort fails too.
        let _ = copy.abort("the client side failed").await;
        return Err(anyhow::Error::new(error).context("COPY into log_lines failed"));
    }
    let stored = copy.finish().await.context("COPY into log_lines failed")?;
    super::tail::hub::announce(&mut tx, earliest, latest, &ids).await?;
    tx.commit().await.context("could not commit the log lines")?;
    Ok(stored)
}

/// Appends `\t<id>` to each COPY row. Newlines inside values are escaped (`\n`), so every
/// raw newline ends a row.
fn with_ids(copy_text: &[u8], ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(copy_text.len() + ids.len() * 12);
    let rows = copy_text.split(|b| *b == b'\n').filter(|row| !row.is_empty());
    for (row, id) in rows.zip(ids) {
        out.extend_from_slice(row);
        // Writing into a Vec can't fail.
        let _ = writeln!(out, "\t{id}");
    }
    out
}

#[cfg(test)]
mod tests;
