//! Metric charts: the time window a chart covers (a preset range or custom from/to), its bucket
//! size, and what the chart API returns — values per bucket where `None` means "no samples",
//! never zero — plus event markers (health changes now, releases later).
//!
//! The window rules live here so the API, the server functions and the range picker in the
//! browser refuse the same things with the same words.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest custom window a chart may cover.
pub const MAX_SPAN: Duration = Duration::days(7);
/// The shortest custom window (shorter ones have too few buckets to draw).
pub const MIN_SPAN: Duration = Duration::minutes(1);
/// How far in the future a custom window may end (clock skew, a window "to the next hour").
pub const MAX_AHEAD: Duration = Duration::hours(1);
/// Bucket sizes a custom window may get: round numbers of seconds, so tick labels read well.
const NICE_BUCKETS_SECONDS: [i64; 18] =
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400];
/// A custom window gets at most this many buckets (and, with the nice sizes, at least ~half).
const MAX_CUSTOM_BUCKETS: i64 = 120;

/// A preset range, ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum RangePreset {
    #[serde(rename = "15m")]
    Minutes15,
    #[serde(rename = "1h")]
    Hour1,
    #[serde(rename = "6h")]
    Hours6,
    #[serde(rename = "24h")]
    Hours24,
}

impl RangePreset {
    pub const ALL: [RangePreset; 4] =
        [RangePreset::Minutes15, RangePreset::Hour1, RangePreset::Hours6, RangePreset::Hours24];

    /// The value in URLs and the API (`15m`, `1h`, `6h`, `24h`).
    pub fn as_str(self) -> &'static str {
        match self {
            RangePreset::Minutes15 => "15m",
            RangePreset::Hour1 => "1h",
            RangePreset::Hours6 => "6h",
            RangePreset::Hours24 => "24h",
        }
    }

    /// For people: "15 min", "1 h", …
    pub fn label(self) -> &'static str {
        match self {
            RangePreset::Minutes15 => "15 min",
            RangePreset::Hour1 => "1 h",
            RangePreset::Hours6 => "6 h",
            RangePreset::Hours24 => "24 h",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn span(self) -> Duration {
        match self {
            RangePreset::Minutes15 => Duration::minutes(15),
            RangePreset::Hour1 => Duration::hours(1),
            RangePreset::Hours6 => Duration::hours(6),
            RangePreset::Hours24 => Duration::hours(24),
        }
    }

    /// 15 min → 15 s, 1 h → 1 min, 6 h → 5 min, 24 h → 15 min: 60–96 buckets each.
    pub fn bucket_seconds(self) -> i64 {
        match self {
            RangePreset::Minutes15 => 15,
            RangePreset::Hour1 => 60,
            RangePreset::Hours6 => 300,
            RangePreset::Hours24 => 900,
        }
    }
}

/// The bucket size for a custom window: the smallest nice size that keeps it at or under 120
/// buckets (so 60–120 buckets for most spans).
pub fn custom_bucket_seconds(span: Duration) -> i64 {
    let seconds = span.num_seconds().max(1);
    let wanted = (seconds + MAX_CUSTOM_BUCKETS - 1) / MAX_CUSTOM_BUCKETS;
    NICE_BUCKETS_SECONDS.into_iter().find(|&nice| nice >= wanted).unwrap_or(86_400)
}

/// The range parameters as they arrive (query string or server function), before checking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
pub struct WindowQuery {
    /// A preset ending now: `15m`, `1h` (the default), `6h` or `24h`. Not with `from`/`to`.
    pub range: Option<String>,
    /// Start of a custom window (RFC 3339, e.g. `2026-11-30T01:00:00Z`); needs `to`.
    pub from: Option<String>,
    /// End of a custom window (RFC 3339), later than `from`, at most 7 days after it.
    pub to: Option<String>,
}

/// A checked window: `[from, to)` in buckets of `bucket_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TimeWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_seconds: i64,
    /// The preset it came from; `None` for a custom window.
    pub preset: Option<RangePreset>,
}

/// A window refused: which parameter and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    pub parameter: &'static str,
    pub reason: String,
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.parameter, self.reason)
    }
}

impl WindowQuery {
    pub fn preset(preset: RangePreset) -> Self {
        Self { range: Some(preset.as_str().to_owned()), from: None, to: None }
    }

    /// Checks the parameters against the rules and the clock.
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<TimeWindow, WindowError> {
        let refuse = |parameter, reason: String| Err(WindowError { parameter, reason });
        let range = self.range.as_deref().filter(|r| !r.is_empty());
        let from = self.from.as_deref().filter(|f| !f.is_empty());
        let to = self.to.as_deref().filter(|t| !t.is_empty());
        match (range, from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                refuse("range", "give either a range or a custom from/to, not both".into())
            }
            (range, None, None) => {
                let preset = match range {
                    None => RangePreset::Hour1,
                    Some(text) => match RangePreset::parse(text) {
                        Some(preset) => preset,
                        None => return refuse("range", format!("{text:?} is not one of 15m, 1h, 6h, 24h")),
                    },
                };
                Ok(TimeWindow {
                    from: now - preset.span(),
                    to: now,
                    bucket_seconds: preset.bucket_seconds(),
                    preset: Some(preset),
                })
            }
            (None, Some(_), None) => refuse("to", "a custom window needs both from and to".into()),
            (None, None, Some(_)) => refuse("from", "a custom window needs both from and to".into()),
            (None, Some(from_text), Some(to_text)) => {
                let from = parse_time("from", from_text)?;
                let to = parse_time("to", to_text)?;
                if to <= from {
                    return refuse("to", format!("{} is not later than from ({})", to_text, from_text));
                }
                let span = to - from;
                if span > MAX_SPAN {
                    return refuse("to", format!("the window spans {} h; at most 7 days (168 h)", span.num_hours()));
                }
                if span < MIN_SPAN {
                    return refuse("to", "the window is shorter than one minute".into());
                }
                if from.timestamp() < 0 {
                    // InfluxDB keeps nanoseconds in an i64: nothing before 1677, and no metric
                    // here predates 1970.
                    return refuse("from", format!("{from_text} is before 1970; no metrics are that old"));
                }
                if to > now + MAX_AHEAD {
                    return refuse("to", "more than an hour in the future".into());
                }
                Ok(TimeWindow { from, to, bucket_seconds: custom_bucket_seconds(span), preset: None })
            }
        }
    }
}

/// RFC 3339, or the browser's `datetime-local` form (`2026-11-30T01:00`, read as UTC).
pub fn parse_time(parameter: &'static str, text: &str) -> Result<DateTime<Utc>, WindowError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    Err(WindowError { parameter, reason: format!("{text:?} is not a time: use RFC 3339, e.g. 2026-11-30T01:00:00Z") })
}

impl TimeWindow {
    /// The start of every bucket from the one holding `from` up to `to`, aligned to multiples
    /// of the bucket size since the epoch (as InfluxDB's `GROUP BY time()` aligns them).
    pub fn bucket_starts(&self) -> Vec<DateTime<Utc>> {
        let size = self.bucket_seconds.max(1) * 1000;
        let first = self.from.timestamp_millis().div_euclid(size) * size;
        let end = self.to.timestamp_millis();
        (0..).map(|i| first + i * size).take_while(|&ms| ms < end).filter_map(DateTime::from_timestamp_millis).collect()
    }
}

/// What a marker stands for; releases come with the release controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// An instance turned healthy or unhealthy.
    HealthUp,
    HealthDown,
    Release,
}

/// A vertical line on the charts, with its label on hover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChartMarker {
    pub kind: MarkerKind,
    pub at: DateTime<Utc>,
    pub label: String,
}

/// One version's request metrics, one value per bucket of `ServiceMetrics::buckets`.
/// `None`: no request in that bucket (missing, not zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionMetrics {
    pub version: String,
    /// Requests in the window.
    pub requests: u64,
    /// Requests per second.
    pub request_rate: Vec<Option<f64>>,
    /// Share of requests answered 5xx (or not at all), 0–1; 0 when there were requests and no errors.
    pub error_rate: Vec<Option<f64>>,
    /// Latency percentiles in milliseconds.
    pub p50_ms: Vec<Option<f64>>,
    pub p95_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

/// `GET /api/v1/metrics/services/{service}`: request rate, error rate and latency per version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServiceMetrics {
    pub service: String,
    pub window: TimeWindow,
    /// The start of each bucket; every series has one value per bucket.
    pub buckets: Vec<DateTime<Utc>>,
    /// Versions with at least one request in the window, by name. Empty: no data at all.
    pub versions: Vec<VersionMetrics>,
    /// False when no request was recorded in the window ("no data", not zero traffic).
    pub has_data: bool,
    /// Health changes of the service's instances in the window, oldest first.
    pub markers: Vec<ChartMarker>,
    pub generated_at: DateTime<Utc>,
}

/// `GET /api/v1/metrics/nodes/{cluster}/{node}`: CPU and memory per bucket (means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NodeMetrics {
    pub cluster: String,
    pub node: String,
    pub window: TimeWindow,
    pub buckets: Vec<DateTime<Utc>>,
    /// CPU busy, percent of all cores.
    pub cpu_percent: Vec<Option<f64>>,
    /// Memory used, percent of total.
    pub memory_percent: Vec<Option<f64>>,
    /// False when the node's agent reported nothing in the window.
    pub has_data: bool,
    /// Health changes of the instances on the node in the window, oldest first.
    pub markers: Vec<ChartMarker>,
    /// The instances registered on the node now.
    pub instances: Vec<super::topology::Instance>,
    pub generated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    fn custom(from: &str, to: &str) -> WindowQuery {
        WindowQuery { range: None, from: Some(from.into()), to: Some(to.into()) }
    }

    #[test]
    fn presets_get_the_documented_bucket_sizes_and_end_now() {
        let now = at("2026-11-30T03:00:00Z");
        let sizes: Vec<i64> = RangePreset::ALL
            .iter()
            .map(|p| WindowQuery::preset(*p).resolve(now).expect("valid").bucket_seconds)
            .collect();
        assert_eq!(sizes, vec![15, 60, 300, 900]);
        let default = WindowQuery::default().resolve(now).expect("valid");
        assert_eq!(
            (default.from, default.to, default.preset),
            (at("2026-11-30T02:00:00Z"), now, Some(RangePreset::Hour1))
        );
    }

    #[test]
    fn custom_windows_get_between_60_and_120_nice_buckets() {
        for (span, expected) in [
            (Duration::minutes(1), 1),
            (Duration::minutes(10), 5),
            (Duration::minutes(90), 60),
            (Duration::hours(3), 120),
            (Duration::hours(48), 1800),
            (Duration::days(7), 7200),
        ] {
            let bucket = custom_bucket_seconds(span);
            assert_eq!(bucket, expected, "{span:?}");
            let count = span.num_seconds() / bucket;
            assert!((50..=120).contains(&count), "{span:?}: {count} buckets");
        }
    }

    #[test]
    fn bad_windows_are_refused_naming_the_parameter() {
        let now = at("2026-11-30T03:00:00Z");
        let refused = |query: WindowQuery| query.resolve(now).expect_err("refused").parameter;
        assert_eq!(refused(WindowQuery { range: Some("2h".into()), ..Default::default() }), "range");
        assert_eq!(refused(custom("2026-11-30T02:00:00Z", "2026-11-30T01:00:00Z")), "to");
        assert_eq!(refused(custom("2026-11-20T00:00:00Z", "2026-11-30T00:00:00Z")), "to");
        assert_eq!(refused(custom("yesterday", "2026-11-30T00:00:00Z")), "from");
        assert_eq!(refused(WindowQuery { from: Some("2026-11-30T00:00:00Z".into()), ..Default::default() }), "to");
        assert_eq!(refused(WindowQuery { to: Some("2026-11-30T00:00:00Z".into()), ..Default::default() }), "from");
        assert_eq!(refused(custom("2026-12-30T00:00:00Z", "2026-12-30T01:00:00Z")), "to", "in the future");
        assert_eq!(refused(custom("0001-01-01T00:00:00Z", "0001-01-01T01:00:00Z")), "from", "before 1970");
        let both = WindowQuery { range: Some("1h".into()), ..custom("2026-11-30T00:00:00Z", "2026-11-30T01:00:00Z") };
        assert_eq!(refused(both), "range");
    }

    #[test]
    fn a_browser_datetime_local_value_is_read_as_utc() {
        let window = custom("2026-11-30T01:00", "2026-11-30T02:00").resolve(at("2026-11-30T03:00:00Z")).expect("ok");
        assert_eq!(window.from, at("2026-11-30T01:00:00Z"));
        assert_eq!(window.bucket_seconds, 30);
    }

    #[test]
    fn buckets_are_aligned_to_the_epoch_and_cover_the_window() {
        let window = TimeWindow {
            from: at("2026-11-30T01:00:20Z"),
            to: at("2026-11-30T01:03:00Z"),
            bucket_seconds: 60,
            preset: None,
        };
        assert_eq!(
            window.bucket_starts(),
            vec![at("2026-11-30T01:00:00Z"), at("2026-11-30T01:01:00Z"), at("2026-11-30T01:02:00Z")]
        );
    }
}
