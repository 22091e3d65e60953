//! Decoding InfluxQL answers (`/query`, JSON, `epoch=ms`) into typed series.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The answer to one statement.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct QueryResult {
    #[serde(default)]
    pub statement_id: u32,
    #[serde(default)]
    pub series: Vec<Series>,
    /// Set when this statement failed (the others may still have answered).
    #[serde(default)]
    pub error: Option<String>,
}

/// One series: a measurement, the tags it was grouped by, and rows of values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Series {
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The values of a column as numbers; nulls (empty buckets) stay `None`.
    pub fn f64_column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let index = self.column(name)?;
        Some(self.values.iter().map(|row| row.get(index).and_then(serde_json::Value::as_f64)).collect())
    }

    /// The values of a column as text.
    pub fn str_column(&self, name: &str) -> Option<Vec<Option<&str>>> {
        let index = self.column(name)?;
        Some(self.values.iter().map(|row| row.get(index).and_then(serde_json::Value::as_str)).collect())
    }

    /// The `time` column as milliseconds since the epoch (queries ask for `epoch=ms`).
    pub fn times_ms(&self) -> Vec<i64> {
        let Some(index) = self.column("time") else { return Vec::new() };
        self.values.iter().filter_map(|row| row.get(index).and_then(serde_json::Value::as_i64)).collect()
    }
}

/// The body of a `/query` answer.
#[derive(Debug, Deserialize)]
pub(super) struct QueryResponse {
    #[serde(default)]
    pub results: Vec<QueryResult>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Quotes an InfluxQL identifier (measurement, tag or field name): `"name"`, with `"` and `\`
/// escaped, so any name is just a name.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Quotes an InfluxQL string literal (a tag value in `WHERE`): `'value'`, with `'` and `\` escaped.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouped_answer_decodes_into_series_with_tags_and_nulls() {
        let body = r#"{"results":[{"statement_id":0,"series":[
            {"name":"requests","tags":{"version":"v2"},"columns":["time","mean"],"values":[[1000,1.5],[2000,null]]}
        ]}]}"#;
        let response: QueryResponse = serde_json::from_str(body).expect("valid");
        let series = &response.results[0].series[0];
        assert_eq!(series.tags["version"], "v2");
        assert_eq!(series.times_ms(), vec![1000, 2000]);
        assert_eq!(series.f64_column("mean"), Some(vec![Some(1.5), None]));
        assert_eq!(series.f64_column("missing"), None);
    }

    #[test]
    fn an_empty_answer_has_no_series() {
        let response: QueryResponse = serde_json::from_str(r#"{"results":[{"statement_id":0}]}"#).expect("valid");
        assert!(response.results[0].series.is_empty());
    }

    #[test]
    fn identifiers_and_literals_are_quoted_so_any_name_is_just_a_name() {
        assert_eq!(quote_identifier(r#"cpu "load"\x"#), r#""cpu \"load\"\\x""#);
        assert_eq!(quote_literal(r"it's C:\"), r"'it\'s C:\\'");
    }
}
