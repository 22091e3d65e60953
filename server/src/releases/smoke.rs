//! Blue-green smoke checks: each configured request is sent to every healthy green instance
//! directly by host:port (not through the router, which sends green nothing yet), with a
//! timeout; all must answer with the expected status (and body text) for the switch to be
//! allowed.

use std::time::Duration;

use app::model::releases::SmokeCheck;

use super::store::InstanceFacts;

/// How long one smoke request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeReport {
    pub passed: bool,
    /// "smoke checks passed: 2 checks × 1 instance" or the first failures.
    pub summary: String,
}

/// Checks a configuration before a release starts.
pub fn check_config(checks: &[SmokeCheck]) -> Result<(), String> {
    for (n, check) in checks.iter().enumerate() {
        if !check.path.starts_with('/') || check.path.contains(char::is_whitespace) {
            return Err(format!("smoke_checks[{n}].path {:?}: start with '/', without spaces", check.path));
        }
        if !(100..=599).contains(&check.expect_status) {
            return Err(format!(
                "smoke_checks[{n}].expect_status {}: give an HTTP status 100–599",
                check.expect_status
            ));
        }
        if let Some(method) = &check.method
            && reqwest::Method::from_bytes(method.as_bytes()).is_err()
        {
            return Err(format!("smoke_checks[{n}].method {method:?} is not an HTTP method"));
        }
    }
    Ok(())
}

/// Runs every check against every instance given (the healthy green ones).
pub async fn run(checks: &[SmokeCheck], instances: &[&InstanceFacts]) -> SmokeReport {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).user_agent("opsdeck-smoke-checks").build() {
        Ok(client) => client,
        Err(error) => return SmokeReport { passed: false, summary: format!("smoke checks could not start: {error}") },
    };
    let mut failures = Vec::new();
    for instance in instances {
        let address = crate::events::address(&instance.host, instance.port);
        for check in checks {
            let method = check.method.as_deref().unwrap_or("GET");
            let url = format!("http://{address}{}", check.path);
            let Ok(method_value) = reqwest::Method::from_bytes(method.as_bytes()) else { continue };
            let outcome = match client.request(method_value, &url).send().await {
                Err(error) => Err(format!("{method} {url}: no answer ({error})")),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    if status != check.expect_status {
                        Err(format!("{method} {url}: status {status}, expected {}", check.expect_status))
                    } else if let Some(text) =
                        check.expect_body_contains.as_ref().filter(|t| !body.contains(t.as_str()))
                    {
                        Err(format!("{method} {url}: the body lacks {text:?}"))
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(failure) = outcome {
                failures.push(failure);
            }
        }
    }
    let runs = checks.len() * instances.len();
    if failures.is_empty() {
        SmokeReport {
            passed: true,
            summary: format!("smoke checks passed: {} check(s) × {} instance(s)", checks.len(), instances.len()),
        }
    } else {
        let shown: Vec<_> = failures.iter().take(3).cloned().collect();
        SmokeReport {
            passed: false,
            summary: format!("smoke checks failed ({} of {runs}): {}", failures.len(), shown.join("; ")),
        }
    }
}
