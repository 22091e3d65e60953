//! The demo's data plane: an `opsdeck router` child process in front of the fleet (the demo's
//! load goes through it, Host = service name), and the policies it starts from — every service
//! 100 % on v1, its v2 running healthy beside it with 0 % until someone starts a release.

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use anyhow::Context;
use app::model::{
    events::EventKind,
    traffic::{TrafficChange, VersionWeight},
};
use clap::ValueEnum;
use tokio::process::Child;

use super::plan::{FleetPlan, MemberKind};
use crate::{cli::ServeSettings, traffic::store};

/// The version every demo service starts on.
pub const STABLE_VERSION: &str = "v1";
/// Who the demo's policy changes are recorded as.
const ACTOR: &str = "opsdeck demo";
/// How long the demo waits for its router to answer `/readyz` with 200.
const READY_PATIENCE: Duration = Duration::from_secs(60);

/// Where the demo's router listens.
#[derive(Debug, Clone, Copy)]
pub struct RouterAddresses {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

/// The `opsdeck router` child: stopped with SIGTERM (it finishes requests in flight and flushes
/// its metrics), killed if the demo drops it without stopping it.
pub struct DemoRouter {
    child: Child,
    /// Held open while the demo runs: the router stops when it closes (the demo ended, even by
    /// SIGKILL), so it never outlives the demo.
    _stdin: Option<tokio::process::ChildStdin>,
    pub addresses: RouterAddresses,
}

impl DemoRouter {
    /// Starts `opsdeck router` against the dashboard's PostgreSQL and InfluxDB, sending its
    /// access logs to the dashboard with the fleet's ingest token. Secrets go in its environment.
    pub fn start(
        exe: &Path,
        serve: &ServeSettings,
        addresses: RouterAddresses,
        opsdeck_url: &str,
        ingest_token: &str,
        log_format: crate::cli::LogFormat,
    ) -> anyhow::Result<Self> {
        let influx = &serve.influx;
        let mut command = tokio::process::Command::new(exe);
        let log_format = log_format.to_possible_value().map(|v| v.get_name().to_owned());
        command
            .args(log_format.iter().flat_map(|format| ["--log-format", format.as_str()]))
            .arg("router")
            .arg("--stop-when-stdin-closes")
            .args(["--listen", &addresses.listen.to_string(), "--admin-listen", &addresses.admin.to_string()])
            .args(["--opsdeck-url", opsdeck_url])
            .env("OPSDECK_INGEST_TOKEN", ingest_token)
            .env("DATABASE_URL", serve.database.url.expose_secret())
            .env("OPSDECK_INFLUX_URL", influx.url.as_str())
            .env("OPSDECK_INFLUX_DATABASE", &influx.database);
        if let Some(api) = influx.api.to_possible_value() {
            command.env("OPSDECK_INFLUX_API", api.get_name());
        }
        for (variable, value) in [
            ("OPSDECK_INFLUX_ORG", &influx.org),
            ("OPSDECK_INFLUX_TOKEN", &influx.token),
            ("OPSDECK_INFLUX_USERNAME", &influx.username),
            ("OPSDECK_INFLUX_PASSWORD", &influx.password),
        ] {
            match value {
                Some(value) => command.env(variable, value),
                None => command.env_remove(variable),
            };
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the demo's router ({} router)", exe.display()))?;
        Ok(Self { _stdin: child.stdin.take(), child, addresses })
    }

    /// Completes when the router's `/readyz` answers 200 (its table is loaded), or after a
    /// minute with a warning (the demo goes on; its traffic fails until the router is up).
    pub async fn until_ready(&self) {
        let url = format!("http://{}/readyz", self.addresses.admin);
        let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(2)).build() else { return };
        let ready = async {
            let mut polls = tokio::time::interval(Duration::from_millis(200));
            loop {
                polls.tick().await;
                if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
            }
        };
        if tokio::time::timeout(READY_PATIENCE, ready).await.is_err() {
            tracing::warn!(%url, "the demo's router is not ready after a minute; its traffic fails until it is");
        }
    }

    /// SIGTERM, then up to 10 s to finish, then SIGKILL.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Gives every service of the plan that has no policy yet one with 100 % on v1 and 0 % on its
/// other versions (a policy someone already set, e.g. by a release before a restart, is kept).
pub async fn initial_policies(db: &sqlx::PgPool, plan: &FleetPlan) -> anyhow::Result<()> {
    let mut services: Vec<(&str, Vec<&str>)> = Vec::new();
    for instance in plan.instances.iter().filter(|i| i.kind == MemberKind::Service) {
        match services.iter_mut().find(|(service, _)| *service == instance.service) {
            Some((_, versions)) if !versions.contains(&instance.version.as_str()) => versions.push(&instance.version),
            Some(_) => {}
            None => services.push((&instance.service, vec![&instance.version])),
        }
    }
    for (service, mut versions) in services {
        versions.sort_by_key(|v| (*v != STABLE_VERSION, *v));
        let mut tx = db.begin().await?;
        if store::load(&mut *tx, service).await?.is_some_and(|p| p.revision > 0) {
            continue;
        }
        let weights: Vec<VersionWeight> = versions
            .iter()
            .map(|v| VersionWeight { version: (*v).to_owned(), percent: if *v == STABLE_VERSION { 100 } else { 0 } })
            .collect();
        let change = TrafficChange {
            expected_revision: 0,
            weights: weights.clone(),
            sticky: Default::default(),
            route: Default::default(),
            reason: Some("demo start: stable on v1, the other versions wait for a release".to_owned()),
        };
        let policy = match store::write(&mut tx, service, &change, ACTOR).await {
            Ok(policy) => policy,
            // Another demo process got there first, or the service isn't in the catalog yet.
            Err(error) => {
                tracing::warn!(%service, error = %error, "could not set the demo's initial traffic policy");
                continue;
            }
        };
        let event = EventKind::TrafficChanged {
            service: service.to_owned(),
            revision: policy.revision,
            weights,
            actor: ACTOR.to_owned(),
        };
        crate::events::publish(&mut tx, &event).await?;
        tx.commit().await.context("committing the demo's initial traffic policy")?;
    }
    Ok(())
}
