//! Driving the real `opsdeck` binary: `opsdeck token create` for an API token, `opsdeck serve`
//! as a child process pinned to one core, and registration of many instances through
//! `POST /api/v1/instances` with concurrent requests.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::json;

/// Where the stores and the bundle are, for every `opsdeck` command.
#[derive(Debug, Clone)]
pub struct Environment {
    pub binary: PathBuf,
    pub database_url: String,
    pub influx_url: String,
    pub site_root: PathBuf,
}

impl Environment {
    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .env("DATABASE_URL", &self.database_url)
            .env("OPSDECK_INFLUX_URL", &self.influx_url)
            .env("OPSDECK_SITE_ROOT", &self.site_root)
            .env("OPSDECK_LOG_FORMAT", "json");
        command
    }

    /// `opsdeck token create --scope <scope>`: returns the secret (printed once on stdout).
    pub async fn create_token(&self, name: &str, scope: &str) -> anyhow::Result<String> {
        let output = self
            .command()
            .args(["token", "create", "--name", name, "--scope", scope])
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout.lines().find(|line| line.starts_with("odk_")) {
            Some(secret) if output.status.success() => Ok(secret.to_owned()),
            _ => bail!("opsdeck token create failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// Starts `opsdeck serve` on `listen`, pinned to `core` with one tokio worker thread, its
    /// output appended to `log`; returns once `/readyz` answers 200.
    pub async fn serve(&self, listen: std::net::SocketAddr, core: u32, log: &Path) -> anyhow::Result<Serve> {
        let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = tokio::process::Command::new("taskset");
        command
            .arg("-c")
            .arg(core.to_string())
            .arg(&self.binary)
            .arg("serve")
            .env("DATABASE_URL", &self.database_url)
            .env("OPSDECK_INFLUX_URL", &self.influx_url)
            .env("OPSDECK_SITE_ROOT", &self.site_root)
            .env("OPSDECK_LOG_FORMAT", "json")
            .env("OPSDECK_LISTEN", listen.to_string())
            .env("TOKIO_WORKER_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        // taskset execs the binary, so the child's pid is opsdeck's.
        let mut child = command.spawn().context("cannot start taskset (util-linux) with opsdeck serve")?;
        let pid = child.id().context("opsdeck serve exited at once")?;
        let base = format!("http://{listen}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("opsdeck serve exited with {status} before it was ready; see {}", log.display());
            }
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("opsdeck serve was not ready within 60 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Serve { child, pid, base })
    }
}

/// A running `opsdeck serve`; killed when dropped.
pub struct Serve {
    child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
}

impl Serve {
    /// Fails if the process has exited (it should run through the whole benchmark).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("opsdeck serve exited with {status} during the benchmark");
        }
        Ok(())
    }

    /// Stops the process (SIGKILL: the stores are thrown away after the run).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// How registered instances are spread over the topology.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub clusters: usize,
    pub nodes: usize,
    pub services: usize,
    pub versions: usize,
}

impl Spread {
    /// The registration of instance `index`: host from [`crate::target::host_of`], the node
    /// follows the host's /24 block (250 hosts a node), services and versions alternate.
    pub fn registration(&self, index: usize, host: Ipv4Addr, port: u16) -> serde_json::Value {
        let node = (index / 250) % self.nodes;
        json!({
            "service": format!("bench-svc-{}", index % self.services),
            "version": format!("v{}", (index / self.services) % self.versions + 1),
            "cluster": format!("bench-cluster-{}", node % self.clusters),
            "node": format!("bench-node-{node}"),
            "host": host.to_string(),
            "port": port,
            // Long enough that no heartbeat is needed during the run.
            "ttl_seconds": 3600,
        })
    }

    pub fn service_names(&self) -> Vec<String> {
        (0..self.services).map(|s| format!("bench-svc-{s}")).collect()
    }
}

/// Registers instances `0..count` through the API with `concurrency` requests in flight.
pub async fn register_all(
    base: &str,
    token: &str,
    count: usize,
    concurrency: usize,
    body: impl Fn(usize) -> serde_json::Value + Send + Sync + 'static,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let url = format!("{base}/api/v1/instances");
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, next, body, url, token) = (http.clone(), next.clone(), body.clone(), url.clone(), token.to_owned());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(());
                }
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body(index))
                    .send()
                    .await
                    .with_context(|| format!("registering instance {index}"))?;
                let status = response.status();
                if !status.is_success() {
                    bail!("registering instance {index}: HTTP {status}: {}", response.text().await.unwrap_or_default());
                }
                if index % 1000 == 999 {
                    tracing::info!(registered = index + 1, "registering");
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}
