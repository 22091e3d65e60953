//! HAProxy as a traffic provider: the same policies the built-in router follows, applied to a
//! real HAProxy (2.6+) through its runtime API. One backend per service (`<prefix><service>`),
//! one server per live instance named by its instance id, each healthy server weighted by its
//! version's share ([`plan::wanted_servers`]); unhealthy and departed instances drain first and
//! departed ones are deleted once they have no sessions (or after the drain timeout).
//!
//! An apply reads what HAProxy has (`show servers state`), turns the difference into commands
//! ([`plan::backend_plan`]) and sends them, so applying the same table twice sends nothing.
//! With [`config::ConfigSettings`] the provider also owns HAProxy's configuration file and
//! reloads HAProxy (master CLI `reload`) only when the set of services or their routes change.

pub mod config;
pub mod plan;
pub mod runtime;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::time::Instant;

use self::{
    config::{BackendConfig, ConfigSettings},
    runtime::RuntimeSocket,
};
use super::{RoutingTable, TrafficProvider};

/// How long a worker started by a reload may take to answer with every backend.
const RELOAD_PATIENCE: Duration = Duration::from_secs(15);

/// The command line of the HAProxy provider (`opsdeck router --provider haproxy …`).
#[derive(Debug, Clone, clap::Args)]
pub struct HaproxyArgs {
    /// HAProxy's runtime API (`stats socket … level admin`): a unix socket path or host:port.
    #[arg(id = "haproxy_socket", long = "haproxy-socket", env = "OPSDECK_HAPROXY_SOCKET")]
    pub socket: Option<RuntimeSocket>,
    /// Backends are named `<prefix><service>`.
    #[arg(
        id = "haproxy_backend_prefix",
        long = "haproxy-backend-prefix",
        env = "OPSDECK_HAPROXY_BACKEND_PREFIX",
        default_value = "opsdeck_"
    )]
    pub backend_prefix: String,
    /// Let opsdeck write HAProxy's configuration file (frontend, one backend per service) and
    /// reload HAProxy when services come or go; needs --haproxy-master-socket and
    /// --haproxy-listen. Without it the backends must already exist.
    #[arg(id = "haproxy_config", long = "haproxy-config", env = "OPSDECK_HAPROXY_CONFIG", requires_all = ["haproxy_master_socket", "haproxy_listen"])]
    pub config: Option<PathBuf>,
    /// HAProxy's master CLI (`haproxy -W -S PATH`), used to reload it.
    #[arg(id = "haproxy_master_socket", long = "haproxy-master-socket", env = "OPSDECK_HAPROXY_MASTER_SOCKET")]
    pub master_socket: Option<PathBuf>,
    /// Where the generated frontend listens for client traffic.
    #[arg(id = "haproxy_listen", long = "haproxy-listen", env = "OPSDECK_HAPROXY_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// How long a departed instance drains before it is deleted even with sessions open.
    #[arg(id = "haproxy_drain_timeout", long = "haproxy-drain-timeout", env = "OPSDECK_HAPROXY_DRAIN_TIMEOUT", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

impl Default for HaproxyArgs {
    fn default() -> Self {
        Self {
            socket: None,
            backend_prefix: "opsdeck_".to_owned(),
            config: None,
            master_socket: None,
            listen: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl HaproxyArgs {
    /// The provider these arguments describe; fails naming the missing flag.
    pub fn provider(&self) -> anyhow::Result<HaproxyProvider> {
        let Some(runtime) = self.socket.clone() else {
            bail!("--provider haproxy needs --haproxy-socket (the path of HAProxy's `stats socket … level admin`)")
        };
        let config = match (&self.config, &self.master_socket, self.listen) {
            (Some(path), Some(master_socket), Some(listen)) => {
                let RuntimeSocket::Unix(stats_socket) = &runtime else {
                    bail!("--haproxy-config generates a unix stats socket: give --haproxy-socket as a path")
                };
                Some(ConfigSettings {
                    path: path.clone(),
                    master_socket: master_socket.clone(),
                    listen,
                    stats_socket: stats_socket.clone(),
                })
            }
            (None, _, _) => None,
            _ => bail!("--haproxy-config needs --haproxy-master-socket and --haproxy-listen"),
        };
        Ok(HaproxyProvider::new(HaproxySettings {
            runtime,
            backend_prefix: self.backend_prefix.clone(),
            config,
            drain_timeout: self.drain_timeout,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct HaproxySettings {
    pub runtime: RuntimeSocket,
    pub backend_prefix: String,
    /// `Some`: opsdeck writes the configuration and reloads HAProxy when services change.
    pub config: Option<ConfigSettings>,
    pub drain_timeout: Duration,
}

/// Drives one HAProxy. Applies are never concurrent (the trait's promise); the mutexes only
/// give `&self` its memory between them.
pub struct HaproxyProvider {
    settings: HaproxySettings,
    /// Departed servers and when they started draining, by (backend, server).
    draining: Mutex<HashMap<(String, String), Instant>>,
    /// The shape of the configuration HAProxy runs (see [`config::shape`]).
    shape: Mutex<Option<String>>,
}

impl HaproxyProvider {
    pub fn new(settings: HaproxySettings) -> Self {
        Self { settings, draining: Mutex::default(), shape: Mutex::default() }
    }

    pub fn backend_name(&self, service: &str) -> String {
        format!("{}{service}", self.settings.backend_prefix)
    }

    fn backends(&self, table: &RoutingTable) -> Vec<BackendConfig> {
        let mut backends: Vec<BackendConfig> = table
            .services
            .values()
            .map(|routes| BackendConfig {
                service: routes.policy.service.clone(),
                name: self.backend_name(&routes.policy.service),
                route: routes.policy.route.clone(),
                servers: plan::wanted_servers(routes),
            })
            .collect();
        backends.sort_by(|a, b| a.service.cmp(&b.service));
        backends
    }

    /// Rewrites the configuration and reloads HAProxy if the services or routes changed since
    /// the file was last written; waits for the new worker.
    async fn ensure_shape(&self, config: &ConfigSettings, backends: &[BackendConfig]) -> anyhow::Result<()> {
        let wanted = config::shape(config, backends);
        let known = self.shape.lock().expect("shape lock").clone();
        let current = match known {
            Some(shape) => Some(shape),
            None => tokio::fs::read_to_string(&config.path)
                .await
                .ok()
                .and_then(|text| config::shape_of_file(&text).map(str::to_owned)),
        };
        if current.as_deref() == Some(wanted.as_str()) {
            *self.shape.lock().expect("shape lock") = Some(wanted);
            return Ok(());
        }
        let text = config::render(config, backends);
        let staged = config.path.with_extension("next");
        tokio::fs::write(&staged, &text)
            .await
            .with_context(|| format!("writing HAProxy's configuration to {}", staged.display()))?;
        let check = tokio::process::Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&staged)
            .output()
            .await
            .context("running `haproxy -c` to check the generated configuration (is HAProxy installed?)")?;
        if !check.status.success() {
            bail!(
                "HAProxy rejects the generated configuration {}: {}",
                staged.display(),
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        tokio::fs::rename(&staged, &config.path)
            .await
            .with_context(|| format!("moving {} to {}", staged.display(), config.path.display()))?;
        let old_pid = self.worker_pid().await.ok();
        let master = RuntimeSocket::Unix(config.master_socket.clone());
        // The master re-executes itself and may drop the connection before answering.
        if let Err(error) = master.send("reload").await
            && !format!("{error:#}").contains("reset")
        {
            return Err(error.context(format!(
                "wrote {} but could not ask HAProxy's master to reload it; if HAProxy is not running, start it: \
                 haproxy -W -S {} -f {}",
                config.path.display(),
                config.master_socket.display(),
                config.path.display()
            )));
        }
        self.wait_for_worker(old_pid, backends).await?;
        tracing::info!(shape = %wanted, backends = backends.len(), "reloaded HAProxy with a new set of services");
        *self.shape.lock().expect("shape lock") = Some(wanted);
        Ok(())
    }

    /// The pid of the worker that answers the runtime API (`show info`).
    async fn worker_pid(&self) -> anyhow::Result<u32> {
        let info = self.settings.runtime.send("show info").await?;
        info.lines()
            .find_map(|line| line.strip_prefix("Pid: "))
            .and_then(|pid| pid.trim().parse().ok())
            .with_context(|| format!("no `Pid:` in HAProxy's `show info`: {info}"))
    }

    async fn wait_for_worker(&self, old_pid: Option<u32>, backends: &[BackendConfig]) -> anyhow::Result<()> {
        let deadline = Instant::now() + RELOAD_PATIENCE;
        let wanted: HashSet<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        loop {
            let pid = self.worker_pid().await.ok();
            if pid.is_some() && pid != old_pid {
                let have = self.settings.runtime.backends().await.unwrap_or_default();
                if wanted.iter().all(|name| have.iter().any(|h| h == name)) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "HAProxy did not come back with the new configuration within {RELOAD_PATIENCE:?} after `reload` \
                     (worker pid {old_pid:?} → {pid:?}); look at HAProxy's own log"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes departed servers that have no sessions left, or drained for longer than the
    /// timeout; the others wait for a later apply.
    async fn finish_drains(&self, leaving: Vec<(String, String)>, errors: &mut Vec<String>) -> anyhow::Result<()> {
        let now = Instant::now();
        let sessions =
            if leaving.is_empty() { HashMap::new() } else { self.settings.runtime.current_sessions().await? };
        let mut due = Vec::new();
        {
            let mut draining = self.draining.lock().expect("draining lock");
            draining.retain(|key, _| leaving.contains(key));
            for key in leaving {
                let since = *draining.entry(key.clone()).or_insert(now);
                let idle = sessions.get(&key).copied().unwrap_or(0) == 0;
                if idle || now.duration_since(since) >= self.settings.drain_timeout {
                    due.push(key);
                }
            }
        }
        for (backend, server) in due {
            let mut removed = true;
            for command in plan::removals(&backend, &server) {
                if let Err(error) = self.settings.runtime.change(&command.line, command.accepted).await {
                    errors.push(format!("{error:#}"));
                    removed = false;
                    break;
                }
            }
            if removed {
                tracing::info!(%backend, %server, "removed a departed instance from HAProxy after draining");
                self.draining.lock().expect("draining lock").remove(&(backend, server));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TrafficProvider for HaproxyProvider {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    #[tracing::instrument(skip_all, fields(services = table.services.len()))]
    async fn apply(&self, table: std::sync::Arc<RoutingTable>) -> anyhow::Result<()> {
        let backends = self.backends(&table);
        if let Some(config) = &self.settings.config {
            self.ensure_shape(config, &backends).await?;
        }
        let runtime = &self.settings.runtime;
        let existing = runtime.backends().await?;
        let mut have: HashMap<String, Vec<runtime::ServerState>> = HashMap::new();
        for server in runtime.servers_state().await? {
            have.entry(server.backend.clone()).or_default().push(server);
        }
        let mut errors = Vec::new();
        let mut leaving = Vec::new();
        for backend in &backends {
            if !existing.contains(&backend.name) {
                errors.push(format!(
                    "HAProxy at {runtime} has no backend {} for service {}: declare it, or let opsdeck write the \
                     configuration (--haproxy-config)",
                    backend.name, backend.service
                ));
                continue;
            }
            let current = have.get(&backend.name).map(Vec::as_slice).unwrap_or_default();
            let plan = plan::backend_plan(&backend.name, &backend.servers, current);
            for command in &plan.commands {
                if let Err(error) = runtime.change(&command.line, command.accepted).await {
                    errors.push(format!("{error:#}"));
                }
            }
            leaving.extend(plan.leaving.into_iter().map(|server| (backend.name.clone(), server)));
        }
        self.finish_drains(leaving, &mut errors).await?;
        if !errors.is_empty() {
            bail!("{} HAProxy command(s) failed: {}", errors.len(), errors.join("; "));
        }
        Ok(())
    }
}

/// Two providers fed the same tables in turn: `opsdeck router --provider haproxy` drives HAProxy
/// and keeps its own table (for `/status`) on the same policy. The second is applied only when
/// the first took the table, so `/status` never shows a table HAProxy refused.
pub struct Tee {
    pub first: std::sync::Arc<HaproxyProvider>,
    pub then: std::sync::Arc<dyn TrafficProvider>,
}

#[async_trait::async_trait]
impl TrafficProvider for Tee {
    fn name(&self) -> &'static str {
        self.first.name()
    }

    async fn apply(&self, table: std::sync::Arc<RoutingTable>) -> anyhow::Result<()> {
        self.first.apply(table.clone()).await?;
        self.then.apply(table).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_haproxy_provider_needs_a_socket_and_a_generated_config_needs_a_unix_one() {
        let missing = HaproxyArgs::default().provider().err().expect("refused without a socket");
        assert!(format!("{missing}").contains("--haproxy-socket"), "{missing}");

        let tcp = HaproxyArgs {
            socket: Some("127.0.0.1:9999".parse().expect("a socket")),
            config: Some("/tmp/haproxy.cfg".into()),
            master_socket: Some("/tmp/master.sock".into()),
            listen: Some("127.0.0.1:80".parse().expect("an address")),
            ..HaproxyArgs::default()
        };
        let refused = tcp.provider().err().expect("refused with a TCP socket");
        assert!(format!("{refused}").contains("unix stats socket"), "{refused}");

        let half = HaproxyArgs {
            socket: Some("/run/haproxy.sock".parse().expect("a socket")),
            config: Some("/tmp/haproxy.cfg".into()),
            ..HaproxyArgs::default()
        };
        let refused = half.provider().err().expect("refused without the master socket");
        assert!(format!("{refused}").contains("--haproxy-master-socket"), "{refused}");

        let plain =
            HaproxyArgs { socket: Some("/run/haproxy.sock".parse().expect("a socket")), ..HaproxyArgs::default() };
        assert_eq!(plain.provider().expect("a provider").backend_name("web"), "opsdeck_web");
    }
}
