//! The InfluxDB line protocol encoder.
//!
//! `measurement,tag=value field=1.5,n=3i,s="text" 1700000000000000000`
//!
//! Escaping follows what InfluxDB's parser (the same Go code in 1.x and 2.x) reads back: in
//! measurements, commas and spaces; in tag keys, tag values and field keys, commas, equals signs
//! and spaces; in string field values, double quotes and backslashes. Elsewhere a backslash is
//! literal, even next to an escaped character (`a\\,b` in the line is `a\,b` stored). A name or
//! tag value that *ends* in a backslash can't be written at all (the backslash would escape the
//! separator after it; InfluxDB answers "invalid tag format"), so it is refused here with a
//! clear error, as are newlines outside string fields (the protocol has no escape for them) and
//! NaN and infinity, which InfluxDB can't store.
//!
//! InfluxDB 3 parses with another implementation that reads `\\` as one backslash; names with two
//! backslashes in a row may come back with one there.

use std::fmt::Write as _;

/// A field value, typed as InfluxDB stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    /// Written with a `u` suffix; InfluxDB 2.x and 3.x store it, 1.x refuses it.
    UInteger(u64),
    Boolean(bool),
    String(String),
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Integer(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::UInteger(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Boolean(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::String(v.to_owned())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::String(v)
    }
}

/// Why a point can't be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineProtocolError {
    #[error("the measurement name is empty")]
    EmptyMeasurement,
    #[error("point {measurement:?} has no fields; InfluxDB needs at least one")]
    NoFields { measurement: String },
    #[error("field {field:?} of {measurement:?} is {value}; InfluxDB stores only finite numbers")]
    NotFinite { measurement: String, field: String, value: f64 },
    #[error("{element} {value:?} contains a newline, which line protocol can only carry inside string field values")]
    Newline { element: &'static str, value: String },
    #[error("{element} {value:?} ends in a backslash, which InfluxDB would read as escaping the separator after it")]
    TrailingBackslash { element: &'static str, value: String },
    #[error("an empty {element} in {measurement:?}")]
    EmptyKey { element: &'static str, measurement: String },
}

/// One point: measurement, tags, fields and an optional timestamp in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    timestamp_ns: Option<i64>,
}

impl Point {
    pub fn new(measurement: impl Into<String>) -> Self {
        Self { measurement: measurement.into(), tags: Vec::new(), fields: Vec::new(), timestamp_ns: None }
    }

    /// Adds a tag. Tags with an empty value are left out when encoding: InfluxDB treats an
    /// absent tag and an empty one the same and rejects the empty form.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Adds a tag to a point already built (e.g. one parsed from a request).
    pub fn push_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.tags.push((key.into(), value.into()));
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    pub fn timestamp_ns(mut self, ns: i64) -> Self {
        self.timestamp_ns = Some(ns);
        self
    }

    pub fn timestamp(self, at: chrono::DateTime<chrono::Utc>) -> Self {
        match at.timestamp_nanos_opt() {
            Some(ns) => self.timestamp_ns(ns),
            None => self,
        }
    }

    pub fn measurement(&self) -> &str {
        &self.measurement
    }

    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// The value of tag `key`, if the point has it with a non-empty value.
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> &[(String, FieldValue)] {
        &self.fields
    }

    pub fn timestamp_ns_opt(&self) -> Option<i64> {
        self.timestamp_ns
    }

    /// Appends this point as one line (with its trailing newline) to `out`. On error `out` is
    /// left as it was.
    pub fn encode_into(&self, out: &mut String) -> Result<(), LineProtocolError> {
        self.check()?;
        let start = out.len();
        escape_into(out, &self.measurement, &[',', ' ']);
        // Sorted tags are what InfluxDB stores and the fastest for it to parse.
        let mut tags: Vec<_> = self.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in tags {
            out.push(',');
            escape_into(out, key, &[',', '=', ' ']);
            out.push('=');
            escape_into(out, value, &[',', '=', ' ']);
        }
        out.push(' ');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escape_into(out, key, &[',', '=', ' ']);
            out.push('=');
            match value {
                // `{}` on f64 is the shortest text that reads back to the same number, and never
                // uses exponent notation, which InfluxDB 1.x's parser rejects in some forms.
                FieldValue::Float(v) => {
                    let _ = write!(out, "{v}");
                }
                FieldValue::Integer(v) => {
                    let _ = write!(out, "{v}i");
                }
                FieldValue::UInteger(v) => {
                    let _ = write!(out, "{v}u");
                }
                FieldValue::Boolean(v) => out.push_str(if *v { "true" } else { "false" }),
                FieldValue::String(v) => {
                    out.push('"');
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        }
        if let Some(ns) = self.timestamp_ns {
            let _ = write!(out, " {ns}");
        }
        out.push('\n');
        debug_assert!(out.len() > start);
        Ok(())
    }

    /// The point as one line of line protocol, without the trailing newline.
    pub fn to_line(&self) -> Result<String, LineProtocolError> {
        let mut line = String::new();
        self.encode_into(&mut line)?;
        line.pop();
        Ok(line)
    }

    fn check(&self) -> Result<(), LineProtocolError> {
        let measurement = || self.measurement.clone();
        if self.measurement.is_empty() {
            return Err(LineProtocolError::EmptyMeasurement);
        }
        plain_text("measurement", &self.measurement)?;
        if self.fields.is_empty() {
            return Err(LineProtocolError::NoFields { measurement: measurement() });
        }
        for (key, value) in &self.tags {
            if key.is_empty() {
                return Err(LineProtocolError::EmptyKey { element: "tag key", measurement: measurement() });
            }
            plain_text("tag key", key)?;
            plain_text("tag value", value)?;
        }
        for (key, value) in &self.fields {
            if key.is_empty() {
                return Err(LineProtocolError::EmptyKey { element: "field key", measurement: measurement() });
            }
            plain_text("field key", key)?;
            if let FieldValue::Float(v) = value
                && !v.is_finite()
            {
                return Err(LineProtocolError::NotFinite { measurement: measurement(), field: key.clone(), value: *v });
            }
        }
        Ok(())
    }
}

/// Names and tag values: no newline anywhere, no backslash at the end.
fn plain_text(element: &'static str, value: &str) -> Result<(), LineProtocolError> {
    if value.contains(['\n', '\r']) {
        return Err(LineProtocolError::Newline { element, value: value.to_owned() });
    }
    if value.ends_with('\\') {
        return Err(LineProtocolError::TrailingBackslash { element, value: value.to_owned() });
    }
    Ok(())
}

/// Puts a backslash before each `special` character; everything else, backslashes included,
/// passes through as it is.
pub(crate) fn escape_into(out: &mut String, value: &str, special: &[char]) {
    for c in value.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Encodes many points, one line each.
pub fn encode_all<'a>(points: impl IntoIterator<Item = &'a Point>) -> Result<String, LineProtocolError> {
    let mut out = String::new();
    for point in points {
        point.encode_into(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
