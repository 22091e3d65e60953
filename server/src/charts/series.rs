//! The InfluxQL behind the charts, and the answers laid onto the window's buckets. Every value
//! not reported by InfluxDB stays `None`, so "no samples" never turns into 0.

use std::collections::{BTreeMap, HashMap};

use app::model::charts::{TimeWindow, VersionMetrics};
use chrono::{DateTime, Utc};

use crate::influx::{InfluxClient, InfluxError, Series, quote_literal};

/// The request measurement written by the demo services and the router (one point per request).
pub const REQUESTS: &str = "http_requests";
/// The label of points that carry no `version` tag (an instance the registry doesn't know).
const NO_VERSION: &str = "(no version)";

/// `WHERE` bounds of a window, as epoch milliseconds.
fn time_bounds(window: &TimeWindow) -> String {
    format!("time >= {}ms AND time < {}ms", window.from.timestamp_millis(), window.to.timestamp_millis())
}

/// Lays a series' column onto the buckets by time; buckets InfluxDB didn't name stay `None`.
fn column_on_buckets(series: &Series, column: &str, index: &HashMap<i64, usize>) -> Vec<Option<f64>> {
    let mut values = vec![None; index.len()];
    let (Some(time), Some(column)) = (series.column("time"), series.column(column)) else { return values };
    for row in &series.values {
        let at = row.get(time).and_then(serde_json::Value::as_i64);
        let value = row.get(column).and_then(serde_json::Value::as_f64);
        if let (Some(slot), Some(value)) = (at.and_then(|at| index.get(&at)), value) {
            values[*slot] = Some(value);
        }
    }
    values
}

fn bucket_index(buckets: &[DateTime<Utc>]) -> HashMap<i64, usize> {
    buckets.iter().enumerate().map(|(i, at)| (at.timestamp_millis(), i)).collect()
}

fn version_of(series: &Series) -> String {
    series.tags.get("version").filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| NO_VERSION.to_owned())
}

/// Per version: counts, percentiles, and 5xx counts in one round trip (two statements).
pub async fn service(
    influx: &InfluxClient,
    service: &str,
    window: &TimeWindow,
    buckets: &[DateTime<Utc>],
) -> Result<Vec<VersionMetrics>, InfluxError> {
    let (bounds, bucket, service_literal) = (time_bounds(window), window.bucket_seconds, quote_literal(service));
    let statement = format!(
        "SELECT count(latency_ms) AS requests, percentile(latency_ms, 50) AS p50, percentile(latency_ms, 95) AS p95, \
         percentile(latency_ms, 99) AS p99 FROM {REQUESTS} WHERE service = {service_literal} AND {bounds} \
         GROUP BY time({bucket}s), version fill(null); \
         SELECT count(latency_ms) AS errors FROM {REQUESTS} WHERE service = {service_literal} AND status_class = '5xx' \
         AND {bounds} GROUP BY time({bucket}s), version fill(null)"
    );
    let mut results = influx.query(&statement).await?.into_iter();
    let totals = results.next().map(|r| r.series).unwrap_or_default();
    let errors = results.next().map(|r| r.series).unwrap_or_default();
    Ok(combine(totals, errors, window, buckets))
}

/// Joins the totals and the 5xx counts per version into rates. Pure, so it is unit-tested.
fn combine(
    totals: Vec<Series>,
    errors: Vec<Series>,
    window: &TimeWindow,
    buckets: &[DateTime<Utc>],
) -> Vec<VersionMetrics> {
    let index = bucket_index(buckets);
    let errors: HashMap<String, Vec<Option<f64>>> =
        errors.iter().map(|s| (version_of(s), column_on_buckets(s, "errors", &index))).collect();
    let seconds = window.bucket_seconds.max(1) as f64;
    let mut versions: BTreeMap<String, VersionMetrics> = BTreeMap::new();
    for series in &totals {
        let version = version_of(series);
        // A bucket with no request is missing (InfluxDB may say null or 0 for an empty count).
        let counts: Vec<Option<f64>> =
            column_on_buckets(series, "requests", &index).into_iter().map(|c| c.filter(|c| *c > 0.0)).collect();
        let failed = errors.get(&version);
        let error_rate = counts
            .iter()
            .enumerate()
            .map(|(i, count)| count.map(|count| failed.and_then(|f| f[i]).unwrap_or(0.0) / count))
            .collect();
        let requests = counts.iter().flatten().sum::<f64>() as u64;
        if requests == 0 {
            continue;
        }
        versions.insert(
            version.clone(),
            VersionMetrics {
                version,
                requests,
                request_rate: counts.iter().map(|c| c.map(|c| c / seconds)).collect(),
                error_rate,
                p50_ms: column_on_buckets(series, "p50", &index),
                p95_ms: column_on_buckets(series, "p95", &index),
                p99_ms: column_on_buckets(series, "p99", &index),
            },
        );
    }
    versions.into_values().collect()
}

/// Mean CPU and memory percentages of one node per bucket.
pub async fn node(
    influx: &InfluxClient,
    cluster: &str,
    node: &str,
    window: &TimeWindow,
    buckets: &[DateTime<Utc>],
) -> Result<(Vec<Option<f64>>, Vec<Option<f64>>), InfluxError> {
    let statement = format!(
        "SELECT mean(cpu_percent) AS cpu, mean(memory_used_percent) AS memory FROM \"node\" \
         WHERE \"cluster\" = {} AND \"node\" = {} AND {} GROUP BY time({}s) fill(null)",
        quote_literal(cluster),
        quote_literal(node),
        time_bounds(window),
        window.bucket_seconds
    );
    let index = bucket_index(buckets);
    let results = influx.query(&statement).await?;
    let series = results.into_iter().flat_map(|r| r.series).next();
    Ok(match series {
        Some(series) => (column_on_buckets(&series, "cpu", &index), column_on_buckets(&series, "memory", &index)),
        None => (vec![None; buckets.len()], vec![None; buckets.len()]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn series(version: &str, columns: &[&str], rows: Vec<Vec<serde_json::Value>>) -> Series {
        Series {
            name: REQUESTS.into(),
            tags: [("version".to_owned(), version.to_owned())].into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values: rows,
        }
    }

    #[test]
    fn empty_buckets_are_missing_and_a_bucket_without_errors_has_error_rate_zero() {
        let window = TimeWindow {
            from: DateTime::from_timestamp_millis(0).expect("t"),
            to: DateTime::from_timestamp_millis(30_000).expect("t"),
            bucket_seconds: 10,
            preset: None,
        };
        let buckets = window.bucket_starts();
        let totals = vec![series(
            "v1",
            &["time", "requests", "p50", "p95", "p99"],
            vec![
                vec![json!(0), json!(20), json!(5.0), json!(9.0), json!(10.0)],
                vec![json!(10_000), json!(0), json!(null), json!(null), json!(null)],
                vec![json!(20_000), json!(4), json!(7.0), json!(8.0), json!(8.0)],
            ],
        )];
        let errors =
            vec![series("v1", &["time", "errors"], vec![vec![json!(0), json!(5)], vec![json!(20_000), json!(null)]])];
        let versions = combine(totals, errors, &window, &buckets);
        let v1 = &versions[0];
        assert_eq!(v1.requests, 24);
        assert_eq!(v1.request_rate, vec![Some(2.0), None, Some(0.4)]);
        assert_eq!(v1.error_rate, vec![Some(0.25), None, Some(0.0)]);
        assert_eq!(v1.p99_ms, vec![Some(10.0), None, Some(8.0)]);
    }
}
