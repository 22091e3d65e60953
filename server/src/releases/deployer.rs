//! Who starts and stops instances for rolling releases. opsdeck owns no machines: a deployer
//! does it for it. [`HttpDeployer`] speaks a three-call HTTP protocol that the demo's control
//! API implements and that a small adapter in front of any orchestrator can implement too:
//!
//! - `PUT    {base}/deployments/{service}/{version}/{node}` — start that version of the service
//!   on the node, beside what runs there (idempotent: already running is fine). 2xx once the
//!   process runs; health is opsdeck's own business (its checks must see it healthy).
//! - `DELETE {base}/deployments/{service}/{version}/{node}` — stop it gracefully: it deregisters,
//!   finishes its requests in flight and exits (idempotent). 2xx once it is gone.
//! - `GET    {base}/deployments/{service}/{version}/{node}` — `{"running": bool, "detail": …}`,
//!   so a failure report can say "exited by itself: exit status 1" instead of only "timed out".
//!
//! Errors carry the deployer's own answer. Written by hand because it is three requests with
//! reqwest; no crate fits a protocol this small.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Where an instance goes: the service, its version, the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub service: String,
    pub version: String,
    pub node: String,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} on {}", self.service, self.version, self.node)
    }
}

/// What the deployer knows of a placement's process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deployed {
    pub running: bool,
    /// How it ended, when it isn't running ("exited by itself: exit status: 1").
    #[serde(default)]
    pub detail: Option<String>,
}

/// Starts and stops instances for rolling releases.
#[async_trait::async_trait]
pub trait Deployer: Send + Sync + std::fmt::Debug {
    /// Names it in reports ("deployer http://127.0.0.1:3099").
    fn name(&self) -> String;
    /// Starts the placement's process (returns once it runs, before it is healthy).
    async fn start(&self, placement: &Placement) -> anyhow::Result<()>;
    /// Stops it gracefully (returns once it is gone).
    async fn stop(&self, placement: &Placement) -> anyhow::Result<()>;
    /// Whether it runs, and how it ended if not.
    async fn status(&self, placement: &Placement) -> anyhow::Result<Deployed>;
}

/// A start or stop gets this long: a graceful stop waits for requests in flight.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP deployer (`opsdeck serve --deployer-url`).
#[derive(Debug)]
pub struct HttpDeployer {
    base: url::Url,
    http: reqwest::Client,
}

impl HttpDeployer {
    pub fn new(base: url::Url) -> anyhow::Result<Self> {
        let http =
            reqwest::Client::builder().timeout(CALL_TIMEOUT).build().context("an HTTP client for the deployer")?;
        Ok(Self { base, http })
    }

    fn url(&self, placement: &Placement) -> anyhow::Result<url::Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--deployer-url {} can't take a path", self.base))?
            .pop_if_empty()
            .extend(["deployments", &placement.service, &placement.version, &placement.node]);
        Ok(url)
    }

    async fn call(&self, method: reqwest::Method, placement: &Placement) -> anyhow::Result<reqwest::Response> {
        let url = self.url(placement)?;
        let response = self
            .http
            .request(method.clone(), url.clone())
            .send()
            .await
            .with_context(|| format!("{method} {url}: the deployer did not answer"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{method} {url}: the deployer answered {status}: {}", body.chars().take(500).collect::<String>())
    }
}

#[async_trait::async_trait]
impl Deployer for HttpDeployer {
    fn name(&self) -> String {
        format!("deployer {}", self.base)
    }

    async fn start(&self, placement: &Placement) -> anyhow::Result<()> {
        self.call(reqwest::Method::PUT, placement).await.map(drop)
    }

    async fn stop(&self, placement: &Placement) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, placement).await.map(drop)
    }

    async fn status(&self, placement: &Placement) -> anyhow::Result<Deployed> {
        let response = self.call(reqwest::Method::GET, placement).await?;
        response.json().await.context("the deployer's status answer is not {\"running\": bool, \"detail\": …}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_becomes_one_path_segment_each_under_the_base_url() {
        let placement = Placement { service: "web".into(), version: "v2 beta".into(), node: "east-1".into() };
        for base in ["http://127.0.0.1:3099", "http://127.0.0.1:3099/", "http://deploy.example/ops/"] {
            let deployer = HttpDeployer::new(base.parse().expect("a URL")).expect("a client");
            let url = deployer.url(&placement).expect("a path").to_string();
            assert!(url.ends_with("/deployments/web/v2%20beta/east-1"), "{url}");
            assert!(!url.contains("//deployments"), "{url}");
        }
    }
}
