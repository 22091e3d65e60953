//! A demo service's side of the registry: register (retrying with backoff), heartbeat at the
//! cadence the registration answer asks for, register again when the registry has forgotten the
//! instance, and deregister on a clean stop. Written against the public JSON API only, exactly
//! as an outside agent would use it.

use std::time::Duration;

use anyhow::Context;
use app::model::topology::{RegisterInstance, Registration};
use reqwest::StatusCode;
use tokio::sync::watch;

use crate::resilience::Backoff;

/// Waits between registration attempts: a restart that races its own old registration (409) or
/// an opsdeck that is still starting resolves within seconds; the cap keeps a long outage from
/// turning into a stampede when it ends.
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
/// Every call to opsdeck gives up after this long (and is retried by its caller).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Talks to opsdeck's registry for one instance.
pub struct Registrar {
    http: reqwest::Client,
    instances_url: url::Url,
    token: String,
    request: RegisterInstance,
}

/// Why one registration attempt did not succeed.
enum Refused {
    /// Worth another try later (409, opsdeck unreachable or failing).
    Retry(String),
    /// Will not get better by retrying (bad token, bad settings).
    Fatal(anyhow::Error),
}

/// The outcome of one heartbeat.
enum Beat {
    Renewed,
    /// 404: the registry no longer has the instance (expired and removed, or deregistered).
    Forgotten,
    Failed(String),
}

impl Registrar {
    pub fn new(opsdeck_url: &url::Url, token: String, request: RegisterInstance) -> anyhow::Result<Self> {
        let instances_url = opsdeck_url
            .join("/api/v1/instances")
            .with_context(|| format!("--opsdeck-url {opsdeck_url} cannot be joined with /api/v1/instances"))?;
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().context("cannot build an HTTP client")?;
        Ok(Self { http, instances_url, token, request })
    }

    fn instance_url(&self, id: &str, suffix: &str) -> String {
        format!("{}/{id}{suffix}", self.instances_url)
    }

    /// Registers, retrying with jittered backoff until opsdeck accepts, or fails for a reason
    /// retrying can't fix.
    pub async fn register(&self) -> anyhow::Result<Registration> {
        let mut attempt = 0;
        loop {
            match self.register_once().await {
                Ok(registration) => {
                    tracing::info!(instance_id = %registration.instance_id, heartbeat_every_seconds = registration.heartbeat_every_seconds, "registered with opsdeck");
                    return Ok(registration);
                }
                Err(Refused::Fatal(error)) => return Err(error),
                Err(Refused::Retry(reason)) => {
                    let wait = RETRY.delay(attempt);
                    tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, attempt, "registration not accepted yet; retrying");
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    async fn register_once(&self) -> Result<Registration, Refused> {
        let response = self
            .http
            .post(self.instances_url.clone())
            .bearer_auth(&self.token)
            .json(&self.request)
            .send()
            .await
            .map_err(|error| Refused::Retry(format!("cannot reach opsdeck at {}: {error}", self.instances_url)))?;
        let status = response.status();
        if status == StatusCode::CREATED {
            return response.json::<Registration>().await.map_err(|error| {
                Refused::Retry(format!("opsdeck accepted the registration but its answer was unreadable: {error}"))
            });
        }
        let detail = error_detail(response).await;
        let address = format!("{}:{}", self.request.host, self.request.port);
        Err(match status {
            StatusCode::CONFLICT => Refused::Retry(format!(
                "{detail} (409: usually this instance restarted before its old registration expired; \
                 it is retried until the old one expires)"
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Refused::Fatal(anyhow::anyhow!(
                "opsdeck refused the token in OPSDECK_TOKEN ({status}: {detail}); \
                 create one with `opsdeck token create --name demo --scope ingest`"
            )),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Refused::Fatal(anyhow::anyhow!(
                "opsdeck refused the registration of {address} ({status}: {detail}); fix the setting it names"
            )),
            _ => Refused::Retry(format!("opsdeck answered {status}: {detail}")),
        })
    }

    async fn heartbeat(&self, instance_id: &str) -> Beat {
        let sent = self.http.put(self.instance_url(instance_id, "/heartbeat")).bearer_auth(&self.token).send().await;
        match sent {
            Ok(response) if response.status() == StatusCode::NO_CONTENT => Beat::Renewed,
            Ok(response) if response.status() == StatusCode::NOT_FOUND => Beat::Forgotten,
            Ok(response) => {
                let status = response.status();
                Beat::Failed(format!("opsdeck answered {status}: {}", error_detail(response).await))
            }
            Err(error) => Beat::Failed(format!("cannot reach opsdeck: {error}")),
        }
    }

    /// Registers and keeps the registration alive until the task is dropped: a heartbeat at the
    /// cadence opsdeck asked for; on 404 (forgotten) registers again. The current registration
    /// is published on `current` (`None` while there is none). Fails only for reasons retrying
    /// can't fix.
    pub async fn keep_registered(&self, current: watch::Sender<Option<Registration>>) -> anyhow::Result<()> {
        loop {
            let registration = self.register().await?;
            let id = registration.instance_id.clone();
            let every = Duration::from_secs(u64::from(registration.heartbeat_every_seconds.max(1)));
            current.send_replace(Some(registration));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.heartbeat(&id).await {
                    Beat::Renewed => tracing::debug!(instance_id = %id, "heartbeat"),
                    Beat::Forgotten => {
                        tracing::warn!(instance_id = %id, "opsdeck no longer knows this instance (expired and removed, or deregistered); registering again");
                        current.send_replace(None);
                        break;
                    }
                    // The lease outlives several missed beats (the TTL is three beats), so keep
                    // the cadence rather than hammering a struggling opsdeck.
                    Beat::Failed(reason) => {
                        tracing::warn!(instance_id = %id, %reason, "heartbeat failed; trying again at the next beat")
                    }
                }
            }
        }
    }

    /// Removes the registration now (a clean stop), so nothing routes to or alarms about it.
    pub async fn deregister(&self, instance_id: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .delete(self.instance_url(instance_id, ""))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach opsdeck to deregister instance {instance_id}"))?;
        match response.status() {
            // 404: already gone (expired and removed), which is what deregistering wants.
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(()),
            status => anyhow::bail!(
                "opsdeck did not deregister instance {instance_id} ({status}: {}); it will expire after its TTL",
                error_detail(response).await
            ),
        }
    }
}

/// The `detail` of opsdeck's JSON error body, or the start of whatever else came back.
async fn error_detail(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| body["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(200).collect())
}
