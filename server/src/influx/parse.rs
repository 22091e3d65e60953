//! The InfluxDB line protocol parser: the inverse of the encoder in `line_protocol.rs`, used to
//! check every line that services and agents send before opsdeck acknowledges it.
//!
//! It reads what the encoder writes and what InfluxDB's own parser reads: a backslash escapes
//! only the characters that are special where it stands (commas and spaces in measurements;
//! commas, equals signs and spaces in tag keys, tag values and field keys; double quotes and
//! backslashes in string field values) and is literal anywhere else. Field values are floats
//! (`1.5`, `-2`, `1e3`), integers (`3i`), unsigned integers (`3u`), booleans (`t`, `true`,
//! `False`, …) or double-quoted strings, which may span lines. The timestamp is optional and
//! read in the request's precision. Blank lines and `#` comments are skipped.
//!
//! Stricter than InfluxDB on purpose, so a refusal comes at ingest (with the line number) rather
//! than from the background writer: an unescaped `=` in a tag value, NaN and infinity, numbers
//! out of range and text after the timestamp are all refused with the reason.

use std::str::FromStr;

use super::line_protocol::{FieldValue, Point};

/// The unit of the timestamps in a request (`precision=` on `/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
pub enum Precision {
    #[default]
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl Precision {
    fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "ns" => Ok(Precision::Nanoseconds),
            "us" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            other => Err(format!("precision {other:?} is not one of ns, us, ms, s")),
        }
    }
}

/// A line that could not be read: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Every point in `body` with the number of the line it starts on, and every line that could
/// not be read. A bad line doesn't stop the rest from being read, so one answer can name them all.
pub fn parse_lines(body: &str, precision: Precision) -> (Vec<(usize, Point)>, Vec<LineError>) {
    let mut cursor = Cursor { text: body, at: 0, line: 1 };
    let mut points = Vec::new();
    let mut errors = Vec::new();
    loop {
        cursor.skip_blank_and_comments();
        if cursor.at_end() {
            break;
        }
        let line = cursor.line;
        match cursor.point(precision) {
            Ok(point) => points.push((line, point)),
            Err(reason) => {
                errors.push(LineError { line, reason });
                cursor.skip_line();
            }
        }
    }
    (points, errors)
}

/// Parses one line (no trailing newline needed) in nanoseconds precision.
pub fn parse_line(line: &str) -> Result<Point, String> {
    let (mut points, mut errors) = parse_lines(line, Precision::Nanoseconds);
    match (points.len(), errors.pop()) {
        (_, Some(error)) => Err(error.reason),
        (1, None) => Ok(points.remove(0).1),
        (n, None) => Err(format!("expected one point, found {n}")),
    }
}

/// Where the parser is in the request body. Every character it stops on is ASCII, so byte
/// positions always fall on character boundaries.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
    line: usize,
}

/// Characters a backslash escapes in a measurement, and in keys and tag values.
const MEASUREMENT_SPECIAL: &[u8] = b", ";
const KEY_SPECIAL: &[u8] = b",= ";

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_line(&mut self) {
        match self.text[self.at..].find('\n') {
            Some(offset) => {
                self.at += offset + 1;
                self.line += 1;
            }
            None => self.at = self.text.len(),
        }
    }

    fn skip_blank_and_comments(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\r' => self.at += 1,
                b'\n' => {
                    self.at += 1;
                    self.line += 1;
                }
                b'#' => self.skip_line(),
                _ => break,
            }
        }
    }

    fn skip_spaces(&mut self) -> bool {
        let start = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at > start
    }

    fn point(&mut self, precision: Precision) -> Result<Point, String> {
        let measurement = self.name(MEASUREMENT_SPECIAL, b", \n");
        if measurement.is_empty() {
            return Err("the measurement name is empty".into());
        }
        let mut point = Point::new(measurement.clone());
        while self.peek() == Some(b',') {
            self.at += 1;
            let key = self.name(KEY_SPECIAL, b",= \n");
            if key.is_empty() {
                return Err(format!("an empty tag key in {measurement:?}"));
            }
            if self.peek() != Some(b'=') {
                return Err(format!("tag {key:?} has no value (expected key=value)"));
            }
            self.at += 1;
            let value = self.name(KEY_SPECIAL, b",= \n");
            if self.peek() == Some(b'=') {
                return Err(format!("tag {key:?}: an unescaped '=' in its value (write it as \\=)"));
            }
            if value.is_empty() {
                return Err(format!("tag {key:?} has an empty value"));
            }
            point = point.tag(key, value);
        }
        if !self.skip_spaces() || matches!(self.peek(), None | Some(b'\n' | b'\r')) {
            return Err(format!("{measurement:?} has no fields; a point needs at least one (key=value)"));
        }
        loop {
            let key = self.name(KEY_SPECIAL, b",= \n");
            if key.is_empty() {
                return Err("an empty field key".into());
            }
            if self.peek() != Some(b'=') {
                return Err(format!("field {key:?} has no value (expected key=value)"));
            }
            self.at += 1;
            let value = self.field_value(&key)?;
            point = point.field(key, value);
            if self.peek() == Some(b',') {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.skip_spaces() && !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
            let token = self.token(b" \n\r");
            let units: i64 =
                token.parse().map_err(|_| format!("timestamp {token:?} is not a whole number of {precision:?}"))?;
            let ns = units
                .checked_mul(precision.nanos_per_unit())
                .ok_or_else(|| format!("timestamp {token:?} is out of range (past the year 2262 in nanoseconds)"))?;
            point = point.timestamp_ns(ns);
            self.skip_spaces();
        }
        if self.peek() == Some(b'\r') {
            self.at += 1;
        }
        match self.peek() {
            None => {}
            Some(b'\n') => {
                self.at += 1;
                self.line += 1;
            }
            Some(_) => {
                let rest = self.token(b"\n");
                return Err(format!("unexpected text {rest:?} after the fields and timestamp"));
            }
        }
        Ok(point)
    }

    /// A measurement, key or tag value: up to an unescaped `stop` byte (or the end).
    fn name(&mut self, special: &[u8], stop: &[u8]) -> String {
        let mut out = String::new();
        let mut from = self.at;
        let bytes = self.text.as_bytes();
        while let Some(&byte) = bytes.get(self.at) {
            if byte == b'\\' && bytes.get(self.at + 1).is_some_and(|next| special.contains(next)) {
                out.push_str(&self.text[from..self.at]);
                out.push(char::from(bytes[self.at + 1]));
                self.at += 2;
                from = self.at;
            } else if stop.contains(&byte) {
                break;
            } else {
                self.at += 1;
            }
        }
        out.push_str(&self.text[from..self.at]);
        out
    }

    /// Raw text up to one of `stop` (or the end).
    fn token(&mut self, stop: &[u8]) -> &str {
        let start = self.at;
        while self.peek().is_some_and(|b| !stop.contains(&b)) {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn field_value(&mut self, key: &str) -> Result<FieldValue, String> {
        if self.peek() == Some(b'"') {
            return self.string(key).map(FieldValue::String);
        }
        let raw = self.token(b", \n\r");
        typed_value(key, raw)
    }

    /// A double-quoted string; `\"` and `\\` are escapes, any other backslash is literal.
    fn string(&mut self, key: &str) -> Result<String, String> {
        self.at += 1;
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        let mut from = self.at;
        while let Some(&byte) = bytes.get(self.at) {
            match byte {
                b'\\' if matches!(bytes.get(self.at + 1), Some(b'"' | b'\\')) => {
                    out.push_str(&self.text[from..self.at]);
                    out.push(char::from(bytes[self.at + 1]));
                    self.at += 2;
                    from = self.at;
                }
                b'"' => {
                    out.push_str(&self.text[from..self.at]);
                    self.at += 1;
                    return Ok(out);
                }
                b'\n' => {
                    self.line += 1;
                    self.at += 1;
                }
                _ => self.at += 1,
            }
        }
        Err(format!("field {key:?}: the string value has no closing double quote"))
    }
}

/// A field value that is not a string: integer (`i`), unsigned (`u`), boolean or float.
fn typed_value(key: &str, raw: &str) -> Result<FieldValue, String> {
    let digits = |text: &str, signed: bool| {
        let unsigned = if signed { text.strip_prefix('-').unwrap_or(text) } else { text };
        !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit())
    };
    if raw.is_empty() {
        return Err(format!("field {key:?} has an empty value"));
    }
    if let Some(number) = raw.strip_suffix('i')
        && digits(number, true)
    {
        return number.parse().map(FieldValue::Integer).map_err(|_| {
            format!("field {key:?}: integer {raw:?} is out of range (-9223372036854775808 to 9223372036854775807)")
        });
    }
    if let Some(number) = raw.strip_suffix('u')
        && digits(number, false)
    {
        return number.parse().map(FieldValue::UInteger).map_err(|_| {
            format!("field {key:?}: unsigned integer {raw:?} is out of range (0 to 18446744073709551615)")
        });
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    let float_like = raw.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && raw.bytes().any(|b| b.is_ascii_digit());
    match raw.parse::<f64>() {
        Ok(value) if float_like && value.is_finite() => Ok(FieldValue::Float(value)),
        Ok(_) if float_like => Err(format!("field {key:?}: {raw:?} is too large; InfluxDB stores only finite numbers")),
        _ => Err(format!(
            "field {key:?}: {raw:?} is not a number (1.5, 3i, 3u), a boolean (true, false) or a double-quoted string"
        )),
    }
}

#[cfg(test)]
mod tests;
