//! Automatic canary analysis: over the last interval, the canary's requests against the stable
//! version's, from the request metrics the services write to InfluxDB (`http_requests`, tags
//! `service`, `version`, `status_class`, field `latency_ms`): request count, 5xx share and p99
//! latency (InfluxQL `PERCENTILE`), judged against the release's thresholds.

use std::collections::HashMap;

use app::model::releases::{AnalysisConfig, Verdict, VerdictOutcome};
use chrono::{DateTime, Utc};

use crate::influx::{InfluxClient, InfluxError, quote_literal};

/// The defaults when a canary starts without its own thresholds.
pub fn default_config() -> AnalysisConfig {
    AnalysisConfig {
        interval_seconds: 60,
        max_error_rate: 0.05,
        max_p99_ratio: 1.5,
        min_samples: 50,
        breaches_to_rollback: 3,
    }
}

/// Checks thresholds before a release starts.
pub fn check_config(config: &AnalysisConfig) -> Result<(), String> {
    if !(1..=3600).contains(&config.interval_seconds) {
        return Err(format!("analysis.interval_seconds {}: give 1–3600", config.interval_seconds));
    }
    if !(0.0..=1.0).contains(&config.max_error_rate) {
        return Err(format!("analysis.max_error_rate {}: give a share from 0.0 to 1.0", config.max_error_rate));
    }
    if !(config.max_p99_ratio.is_finite() && config.max_p99_ratio >= 1.0) {
        return Err(format!("analysis.max_p99_ratio {}: give a factor of at least 1.0", config.max_p99_ratio));
    }
    if !(1..=100).contains(&config.breaches_to_rollback) {
        return Err(format!("analysis.breaches_to_rollback {}: give 1–100", config.breaches_to_rollback));
    }
    Ok(())
}

/// One version's numbers over the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    pub p99_ms: Option<f64>,
}

impl Sample {
    fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Compares `canary` with `stable` of `service` over the last interval.
pub async fn compare(
    influx: &InfluxClient,
    service: &str,
    canary: &str,
    stable: &str,
    config: &AnalysisConfig,
) -> Result<Verdict, InfluxError> {
    let window = format!("\"service\" = {} AND time > now() - {}s", quote_literal(service), config.interval_seconds);
    let statement = format!(
        "SELECT count(\"latency_ms\") AS n FROM \"http_requests\" WHERE {window} GROUP BY \"version\", \"status_class\"; \
         SELECT percentile(\"latency_ms\", 99) AS p99 FROM \"http_requests\" WHERE {window} GROUP BY \"version\""
    );
    let results = influx.query(&statement).await?;
    let mut samples: HashMap<String, Sample> = HashMap::new();
    if let Some(counts) = results.first() {
        for series in &counts.series {
            let Some(version) = series.tags.get("version") else { continue };
            let n = series.f64_column("n").unwrap_or_default().into_iter().flatten().sum::<f64>() as u64;
            let sample = samples.entry(version.clone()).or_default();
            sample.requests += n;
            if series.tags.get("status_class").is_some_and(|c| c == "5xx") {
                sample.errors += n;
            }
        }
    }
    if let Some(p99s) = results.get(1) {
        for series in &p99s.series {
            let Some(version) = series.tags.get("version") else { continue };
            let p99 = series.f64_column("p99").unwrap_or_default().into_iter().flatten().next();
            samples.entry(version.clone()).or_default().p99_ms = p99;
        }
    }
    let get = |version: &str| samples.get(version).copied().unwrap_or_default();
    Ok(judge(Utc::now(), get(canary), get(stable), config))
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The verdict on the numbers: too few canary requests → inconclusive (the step is held); a
/// 5xx share above the threshold, or a p99 above the stable p99 × ratio → fail; else pass.
pub fn judge(at: DateTime<Utc>, canary: Sample, stable: Sample, config: &AnalysisConfig) -> Verdict {
    let canary_rate = canary.error_rate();
    let stable_rate = stable.error_rate();
    let stable_text = stable_rate.map_or("no data".to_owned(), percent);
    let (outcome, summary) = if canary.requests < u64::from(config.min_samples) {
        (
            VerdictOutcome::Inconclusive,
            format!(
                "too little data: {} canary request(s) < {} needed; step held",
                canary.requests, config.min_samples
            ),
        )
    } else if let Some(rate) = canary_rate.filter(|r| *r > config.max_error_rate) {
        (
            VerdictOutcome::Fail,
            format!(
                "canary 5xx {} > {} (n = {}; stable {stable_text})",
                percent(rate),
                percent(config.max_error_rate),
                canary.requests
            ),
        )
    } else if let (Some(c), Some(s)) = (canary.p99_ms, stable.p99_ms)
        && c > s * config.max_p99_ratio
    {
        (
            VerdictOutcome::Fail,
            format!(
                "canary p99 {c:.1} ms > {:.1} ms (stable {s:.1} ms × {}; n = {})",
                s * config.max_p99_ratio,
                config.max_p99_ratio,
                canary.requests
            ),
        )
    } else {
        (
            VerdictOutcome::Pass,
            format!(
                "canary 5xx {} ≤ {} and p99 {} (stable {stable_text}, p99 {}; n = {})",
                canary_rate.map_or("–".to_owned(), percent),
                percent(config.max_error_rate),
                canary.p99_ms.map_or("–".to_owned(), |p| format!("{p:.1} ms")),
                stable.p99_ms.map_or("–".to_owned(), |p| format!("{p:.1} ms")),
                canary.requests
            ),
        )
    };
    Verdict {
        at,
        outcome,
        canary_error_rate: canary_rate,
        stable_error_rate: stable_rate,
        max_error_rate: config.max_error_rate,
        canary_p99_ms: canary.p99_ms,
        stable_p99_ms: stable.p99_ms,
        max_p99_ratio: config.max_p99_ratio,
        canary_samples: canary.requests,
        stable_samples: stable.requests,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AnalysisConfig {
        AnalysisConfig { min_samples: 20, ..default_config() }
    }

    #[test]
    fn too_few_canary_requests_are_inconclusive_whatever_their_errors() {
        let canary = Sample { requests: 19, errors: 19, p99_ms: Some(900.0) };
        let verdict = judge(Utc::now(), canary, Sample { requests: 1000, errors: 0, p99_ms: Some(5.0) }, &config());
        assert_eq!(verdict.outcome, VerdictOutcome::Inconclusive);
        assert!(verdict.summary.contains("19 canary request(s) < 20"), "{}", verdict.summary);
    }

    #[test]
    fn a_5xx_share_above_the_threshold_fails_with_its_numbers() {
        let canary = Sample { requests: 310, errors: 150, p99_ms: Some(3.0) };
        let verdict = judge(Utc::now(), canary, Sample { requests: 300, errors: 0, p99_ms: Some(3.0) }, &config());
        assert_eq!(verdict.outcome, VerdictOutcome::Fail);
        assert_eq!(verdict.summary, "canary 5xx 48.4 % > 5.0 % (n = 310; stable 0.0 %)");
    }

    #[test]
    fn a_p99_above_stable_times_the_ratio_fails_and_within_it_passes() {
        let stable = Sample { requests: 300, errors: 0, p99_ms: Some(10.0) };
        let slow = Sample { requests: 300, errors: 0, p99_ms: Some(16.0) };
        assert_eq!(judge(Utc::now(), slow, stable, &config()).outcome, VerdictOutcome::Fail);
        let fine = Sample { requests: 300, errors: 3, p99_ms: Some(14.0) };
        assert_eq!(judge(Utc::now(), fine, stable, &config()).outcome, VerdictOutcome::Pass);
    }
}
