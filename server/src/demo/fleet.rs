//! The demo fleet: which service instances run where ([`FleetPlan`]), the supervisor that starts
//! them as child processes of this binary and acts on them ([`Fleet`]), and `opsdeck demo`
//! itself ([`run`]), which starts the dashboard, the fleet and the control API together.
//!
//! Nothing is restarted automatically: a crashed or killed instance stays down (and red on the
//! dashboard) until someone starts it again through the control API.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use anyhow::Context;
use app::model::identity::{NewToken, Scope};
use clap::ValueEnum;
use serde::Serialize;
use tokio::{process::Child, sync::Mutex};

use super::{
    DemoSettings, FleetSize,
    mode::{Mode, ModeBody},
    service::TOKEN_ENV,
};
use crate::{audit::Actor, auth::RequestContext, cli::LogFormat, http::error::ApiError, startup::Application};

/// Services and versions of the demo, in port order (service n, version m → base + 10·n + m).
const SERVICES: [&str; 3] = ["web", "api", "payments"];
const VERSIONS: [&str; 2] = ["v1", "v2"];
/// Which nodes (1-based, in every cluster) run each (service, version): 9 instances per cluster,
/// every node runs something of each service, and every version runs on more than one node
/// across the fleet, so stopping a node degrades services instead of erasing them.
const PLACEMENT: [(usize, usize, &[u8]); 6] =
    [(0, 0, &[1, 2]), (0, 1, &[3]), (1, 0, &[2, 3]), (1, 1, &[1]), (2, 0, &[1, 3]), (2, 1, &[2])];
/// Clusters of the full fleet and the third octet of their nodes' loopback addresses
/// (east-1 = 127.0.1.1, west-3 = 127.0.2.3): all of 127.0.0.0/8 is loopback on Linux, so each
/// node gets an address of its own without any set-up.
const CLUSTERS: [(&str, u8); 2] = [("east", 1), ("west", 2)];
const NODES_PER_CLUSTER: u8 = 3;
/// How long a gracefully stopped service gets to deregister and exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the control API waits for a service's own answer (its mode switch).
const SERVICE_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One instance the fleet runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSpec {
    /// `service-version@node`, e.g. `web-v1@east-1`: how the control API names it.
    pub id: String,
    pub service: String,
    pub version: String,
    pub cluster: String,
    pub node: String,
    pub address: SocketAddr,
}

/// The instances of a demo fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    pub instances: Vec<InstanceSpec>,
}

impl FleetPlan {
    /// The fleet of this size, with ports from `port_base` (fixed per service and version, so a
    /// restarted instance comes back at the same address).
    pub fn new(size: FleetSize, port_base: u16) -> Self {
        let spec = |service: usize, version: usize, cluster: &str, octet: u8, node: u8| {
            let (service, version) = (SERVICES[service], VERSIONS[version]);
            let node_name = format!("{cluster}-{node}");
            let port = port_base + 10 * service_index(service) + version_index(version);
            InstanceSpec {
                id: format!("{service}-{version}@{node_name}"),
                service: service.into(),
                version: version.into(),
                cluster: cluster.into(),
                node: node_name,
                address: SocketAddr::from(([127, 0, octet, node], port)),
            }
        };
        let instances = match size {
            FleetSize::Full => CLUSTERS
                .iter()
                .flat_map(|&(cluster, octet)| {
                    (1..=NODES_PER_CLUSTER).flat_map(move |node| {
                        PLACEMENT
                            .iter()
                            .filter(move |(_, _, nodes)| nodes.contains(&node))
                            .map(move |&(service, version, _)| spec(service, version, cluster, octet, node))
                    })
                })
                .collect(),
            FleetSize::Small => (1..=2).map(|node| spec(0, 0, "east", 1, node)).collect(),
        };
        Self { instances }
    }
}

fn service_index(service: &str) -> u16 {
    SERVICES.iter().position(|s| *s == service).unwrap_or_default() as u16
}

fn version_index(version: &str) -> u16 {
    VERSIONS.iter().position(|v| *v == version).unwrap_or_default() as u16
}

/// Whether an instance's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Running,
    /// It ended by itself (mode `exit`, a crash, a refused token).
    Exited,
    /// Stopped from the control API (gracefully, killed, or with its node).
    Stopped,
}

/// An instance as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    #[serde(flatten)]
    pub spec: InstanceSpec,
    pub state: ProcessState,
    pub pid: Option<u32>,
    /// How it ended, when it isn't running.
    pub detail: Option<String>,
    /// Its failure switch, as the service itself reports it (absent when it doesn't answer).
    pub mode: Option<Mode>,
}

enum Process {
    Running(Child),
    Ended { state: ProcessState, detail: String },
}

struct Member {
    spec: InstanceSpec,
    process: Process,
}

impl Member {
    /// Notices a process that ended by itself.
    fn refresh(&mut self) {
        if let Process::Running(child) = &mut self.process
            && let Ok(Some(status)) = child.try_wait()
        {
            self.process =
                Process::Ended { state: ProcessState::Exited, detail: format!("exited by itself: {status}") };
        }
    }

    fn status(&self, mode: Option<Mode>) -> MemberStatus {
        let (state, pid, detail) = match &self.process {
            Process::Running(child) => (ProcessState::Running, child.id(), None),
            Process::Ended { state, detail } => (*state, None, Some(detail.clone())),
        };
        MemberStatus { spec: self.spec.clone(), state, pid, detail, mode: mode.filter(|_| pid.is_some()) }
    }
}

/// How the fleet's processes are started.
pub struct Launch {
    /// This binary.
    pub exe: PathBuf,
    /// Where the services find opsdeck's API.
    pub opsdeck_url: String,
    /// An ingest token, handed to each service in its environment.
    pub token: String,
    pub log_format: LogFormat,
}

/// The supervisor: starts, stops and kills the fleet's processes on request, never by itself.
pub struct Fleet {
    launch: Launch,
    members: Mutex<Vec<Member>>,
    http: reqwest::Client,
}

impl Fleet {
    pub fn new(launch: Launch, plan: FleetPlan) -> anyhow::Result<Self> {
        let members = plan
            .instances
            .into_iter()
            .map(|spec| Member {
                spec,
                process: Process::Ended { state: ProcessState::Stopped, detail: "not started yet".into() },
            })
            .collect();
        let http = reqwest::Client::builder().timeout(SERVICE_CALL_TIMEOUT).build().context("an HTTP client")?;
        Ok(Self { launch, members: Mutex::new(members), http })
    }

    fn spawn(&self, spec: &InstanceSpec) -> anyhow::Result<Child> {
        let log_format = self.launch.log_format.to_possible_value().map(|v| v.get_name().to_owned());
        let mut command = tokio::process::Command::new(&self.launch.exe);
        command
            .arg("demo-service")
            .args(["--service", &spec.service, "--service-version", &spec.version])
            .args(["--cluster", &spec.cluster, "--node", &spec.node])
            .args(["--listen", &spec.address.to_string(), "--opsdeck-url", &self.launch.opsdeck_url])
            .arg("--stop-when-stdin-closes")
            .args(log_format.iter().flat_map(|format| ["--log-format", format.as_str()]))
            .env(TOKEN_ENV, &self.launch.token)
            // The service stops when this end of its stdin closes: it can't outlive the demo,
            // even if the demo is killed and never gets to stop it.
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        command.spawn().with_context(|| format!("cannot start {} ({})", spec.id, self.launch.exe.display()))
    }

    /// Starts every instance that isn't running.
    pub async fn start_all(&self) -> Vec<MemberStatus> {
        self.act("with the whole fleet", |_| true, Action::Start).await
    }

    /// Stops every running instance gracefully (each deregisters), killing those that take too long.
    pub async fn stop_all(&self) -> Vec<MemberStatus> {
        self.act("with the whole fleet", |_| true, Action::Terminate).await
    }

    /// Acts on one instance; 404 if there is no such instance.
    pub async fn act_on_instance(&self, id: &str, action: Action) -> Result<MemberStatus, ApiError> {
        let mut changed = self.act("by itself", |spec| spec.id == id, action).await;
        changed.pop().ok_or_else(|| {
            ApiError::NotFound(format!("no demo instance {id:?}; GET /fleet lists them (ids look like web-v1@east-1)"))
        })
    }

    /// Acts on every instance of one node; 404 if there is no such node.
    pub async fn act_on_node(&self, node: &str, action: Action) -> Result<Vec<MemberStatus>, ApiError> {
        let changed = self.act(&format!("with its node {node}"), |spec| spec.node == node, action).await;
        if changed.is_empty() {
            return Err(ApiError::NotFound(format!("no demo node {node:?}; GET /fleet lists them (e.g. east-1)")));
        }
        Ok(changed)
    }

    /// Applies `action` to the selected instances; `scope` says which, for the record.
    async fn act(&self, scope: &str, selected: impl Fn(&InstanceSpec) -> bool, action: Action) -> Vec<MemberStatus> {
        let mut members = self.members.lock().await;
        if action == Action::Terminate {
            // Signal them all before waiting for any, so they deregister side by side.
            for member in members.iter_mut().filter(|m| selected(&m.spec)) {
                member.refresh();
                if let Process::Running(child) = &member.process {
                    send_sigterm(&member.spec.id, child).await;
                }
            }
        }
        let mut changed = Vec::new();
        for member in members.iter_mut().filter(|m| selected(&m.spec)) {
            member.refresh();
            match (action, &mut member.process) {
                (Action::Start, Process::Ended { .. }) => match self.spawn(&member.spec) {
                    Ok(child) => {
                        tracing::info!(instance = %member.spec.id, pid = child.id(), "demo instance started");
                        member.process = Process::Running(child);
                    }
                    Err(error) => {
                        tracing::error!(instance = %member.spec.id, error = format!("{error:#}"), "could not start a demo instance");
                        member.process = Process::Ended {
                            state: ProcessState::Exited,
                            detail: format!("could not start: {error:#}"),
                        };
                    }
                },
                (Action::Kill, Process::Running(child)) => {
                    let detail = format!("killed (SIGKILL) from the control API, {scope}");
                    if let Err(error) = child.kill().await {
                        tracing::warn!(instance = %member.spec.id, %error, "could not kill a demo instance");
                    }
                    tracing::warn!(instance = %member.spec.id, "{detail}");
                    member.process = Process::Ended { state: ProcessState::Stopped, detail };
                }
                (Action::Terminate, Process::Running(child)) => {
                    let detail = terminate(&member.spec.id, child, scope).await;
                    member.process = Process::Ended { state: ProcessState::Stopped, detail };
                }
                _ => {}
            }
            changed.push(member.status(None));
        }
        changed
    }

    /// Every instance, with the mode each running one reports (asked concurrently).
    pub async fn list(&self) -> Vec<MemberStatus> {
        let mut statuses: Vec<MemberStatus> = {
            let mut members = self.members.lock().await;
            members
                .iter_mut()
                .map(|m| {
                    m.refresh();
                    m.status(None)
                })
                .collect()
        };
        let mut asks = tokio::task::JoinSet::new();
        for (index, status) in statuses.iter().enumerate().filter(|(_, s)| s.state == ProcessState::Running) {
            let (http, url) = (self.http.clone(), mode_url(&status.spec));
            asks.spawn(async move {
                let mode = async { http.get(url).send().await.ok()?.json::<ModeBody>().await.ok() }.await;
                (index, mode.map(|body| body.mode))
            });
        }
        while let Some(Ok((index, mode))) = asks.join_next().await {
            statuses[index].mode = mode;
        }
        statuses
    }

    /// Sets an instance's failure switch through the service's own `PUT /demo/mode`.
    pub async fn set_mode(&self, id: &str, mode: Mode) -> Result<MemberStatus, ApiError> {
        let status = self.act_on_instance(id, Action::Look).await?;
        if status.state != ProcessState::Running {
            return Err(ApiError::Conflict(format!(
                "{id} is not running ({}); start it first: POST /instances/{id}/start",
                status.detail.unwrap_or_default()
            )));
        }
        let url = mode_url(&status.spec);
        let response = self.http.put(&url).json(&ModeBody { mode }).send().await.map_err(|error| {
            ApiError::Unavailable(format!(
                "{id} did not take the mode change ({url}: {error}); GET /fleet shows its state"
            ))
        })?;
        if !response.status().is_success() {
            let answer = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::Unavailable(format!("{id} refused the mode change ({answer}: {body})")));
        }
        tracing::warn!(instance = %id, %mode, "demo mode set from the control API");
        Ok(MemberStatus { mode: Some(mode), ..status })
    }
}

/// What the control API can do to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start it if it isn't running.
    Start,
    /// SIGTERM: it deregisters and exits (SIGKILL after a grace period).
    Terminate,
    /// SIGKILL: gone at once, still registered (its heartbeats stop), like a lost machine.
    Kill,
    /// Nothing: just its status.
    Look,
}

fn mode_url(spec: &InstanceSpec) -> String {
    format!("http://{}/demo/mode", spec.address)
}

/// Sends SIGTERM: the service deregisters and exits.
async fn send_sigterm(id: &str, child: &Child) {
    // The child hasn't been reaped (we hold it un-waited), so its pid can't have been reused.
    // `kill(1)` because tokio's `Child` only sends SIGKILL and the workspace forbids the
    // `unsafe` a direct `libc::kill` would need.
    if let Some(pid) = child.id() {
        let sent = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        if !sent.is_ok_and(|status| status.success()) {
            tracing::warn!(instance = %id, pid, "could not send SIGTERM; it is killed after the grace period");
        }
    }
}

/// Waits for a process sent SIGTERM to exit, killing it after [`STOP_GRACE`]; says how it ended.
/// (Waiting also closes its stdin, which a demo service takes as a second request to stop.)
async fn terminate(id: &str, child: &mut Child, scope: &str) -> String {
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => format!("stopped (SIGTERM) from the control API, {scope}: {status}"),
        Ok(Err(error)) => format!("stopped; its exit status is unknown ({error})"),
        Err(_) => {
            tracing::warn!(instance = %id, grace = ?STOP_GRACE, "did not stop after SIGTERM; killing it");
            let _ = child.kill().await;
            format!("killed (SIGKILL) after not stopping within {} s of SIGTERM", STOP_GRACE.as_secs())
        }
    }
}

/// The token the fleet registers with: ingest only, expiring by itself, revoked when the demo stops.
async fn create_token(db: &sqlx::PgPool) -> anyhow::Result<(i64, String)> {
    let request = NewToken { name: "opsdeck demo fleet".into(), scopes: vec![Scope::Ingest], expires_in_days: Some(1) };
    let created = crate::auth::tokens::create(db, &request, &Actor::system("opsdeck demo"), &RequestContext::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the demo fleet's ingest token: {error}"))?;
    Ok((created.token.id, created.secret))
}

/// `opsdeck demo`: the dashboard, the fleet and the control API, until SIGTERM or Ctrl-C. On the
/// way out the fleet stops first (each service deregisters while the dashboard still answers),
/// then the control API and the dashboard.
pub async fn run(settings: DemoSettings, log_format: LogFormat) -> anyhow::Result<()> {
    let plan = FleetPlan::new(settings.fleet, settings.service_port_base);
    let application = Application::build(settings.serve.clone()).await?;
    let dashboard = application.local_addr();
    let db = application.state().db.clone();
    let control_listener = tokio::net::TcpListener::bind(settings.control_listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--control-listen / OPSDECK_DEMO_CONTROL_LISTEN): is the port taken?",
            settings.control_listen
        )
    })?;
    let control_address = control_listener.local_addr().context("the control listener has no address")?;
    let (token_id, token) = create_token(&db).await?;
    let (stop_dashboard, dashboard_stop) = tokio::sync::oneshot::channel::<()>();
    let mut dashboard_task = tokio::spawn(application.run_until_stopped(async move {
        let _ = dashboard_stop.await;
    }));

    let launch = Launch {
        exe: std::env::current_exe().context("cannot find this program's own path to start the demo services")?,
        opsdeck_url: format!("http://{}", reachable(dashboard)),
        token,
        log_format,
    };
    let fleet = Arc::new(Fleet::new(launch, plan)?);
    let started = fleet.start_all().await;
    let (stop_control, control_stop) = tokio::sync::oneshot::channel::<()>();
    let mut control_task = tokio::spawn(super::control::serve(control_listener, fleet.clone(), async move {
        let _ = control_stop.await;
    }));
    tracing::info!(dashboard = %format!("http://{dashboard}/"), control = %format!("http://{control_address}/"), instances = started.len(), "opsdeck demo is running");
    print_banner(dashboard, control_address, &started);

    let outcome = tokio::select! {
        () = crate::startup::shutdown_signal() => Ok(()),
        ended = &mut dashboard_task => Err(flatten(ended).err().unwrap_or_else(|| anyhow::anyhow!("the dashboard stopped by itself"))),
        ended = &mut control_task => Err(flatten(ended).err().unwrap_or_else(|| anyhow::anyhow!("the control API stopped by itself"))),
    };
    tracing::info!("stopping the demo fleet (each service deregisters), then the dashboard");
    fleet.stop_all().await;
    let (actor, context) = (Actor::system("opsdeck demo"), RequestContext::default());
    if let Err(error) = crate::auth::tokens::revoke(&db, token_id, &actor, &context).await {
        tracing::warn!(%error, "could not revoke the demo fleet's token; it expires within a day");
    }
    let _ = stop_control.send(());
    let _ = stop_dashboard.send(());
    if !control_task.is_finished() {
        let _ = control_task.await;
    }
    if !dashboard_task.is_finished() {
        flatten(dashboard_task.await)?;
    }
    outcome
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.context("a demo task panicked")?
}

/// An address a client on this machine can connect to (a wildcard listen address isn't one).
fn reachable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], address.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, address.port())),
        _ => address,
    }
}

/// Where everything is and what to try, for the person who started the demo.
fn print_banner(dashboard: SocketAddr, control: SocketAddr, started: &[MemberStatus]) {
    let dashboard = reachable(dashboard);
    let control = reachable(control);
    let example = started.first().map(|s| s.spec.id.as_str()).unwrap_or("web-v1@east-1");
    let node = started.first().map(|s| s.spec.node.as_str()).unwrap_or("east-1");
    let running = started.iter().filter(|s| s.state == ProcessState::Running).count();
    println!(
        "\nopsdeck demo: {running} of {} demo instances started\n\
         \n  dashboard     http://{dashboard}/\n  control API   http://{control}/   (the fleet as a table)\n\
         \nTry:\n\
         \n  curl -s http://{control}/fleet                                      # the fleet, as JSON\
         \n  curl -s -X PUT http://{control}/instances/{example}/mode -d '{{\"mode\":\"error\"}}'   # healthy | slow | error | exit\
         \n  curl -s -X POST http://{control}/nodes/{node}/stop                      # SIGKILL every process on the node\
         \n  curl -s -X POST http://{control}/nodes/{node}/start                     # start them again\
         \n  curl -s -X POST http://{control}/instances/{example}/start              # start one stopped instance\
         \n  curl -s -X POST http://{control}/instances/{example}/stop               # SIGTERM: it deregisters and exits\
         \n\nCtrl-C stops everything.\n",
        started.len()
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_full_fleet_spreads_two_versions_of_three_services_over_six_nodes_with_unique_addresses() {
        let plan = FleetPlan::new(FleetSize::Full, 8100);
        assert_eq!(plan.instances.len(), 18);
        let addresses: HashSet<_> = plan.instances.iter().map(|i| i.address).collect();
        assert_eq!(addresses.len(), plan.instances.len(), "one instance per host:port");
        let ids: HashSet<_> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), plan.instances.len(), "ids are unique");
        let nodes: HashSet<_> = plan.instances.iter().map(|i| (i.node.as_str(), i.address.ip())).collect();
        assert_eq!(nodes.len(), 6, "each node has its own address: {nodes:?}");
        for service in SERVICES {
            for version in VERSIONS {
                let on: Vec<_> =
                    plan.instances.iter().filter(|i| i.service == service && i.version == version).collect();
                assert!(on.len() >= 2, "{service} {version} runs more than once");
                assert!(on.iter().all(|i| i.address.port() == on[0].address.port()), "fixed port per version");
            }
        }
        let east_1 = plan.instances.iter().find(|i| i.id == "web-v1@east-1").expect("web v1 on east-1");
        assert_eq!(east_1.address, "127.0.1.1:8100".parse().expect("address"));
        let payments = plan.instances.iter().find(|i| i.id == "payments-v2@west-2").expect("payments v2 on west-2");
        assert_eq!(payments.address, "127.0.2.2:8121".parse().expect("address"));
    }

    #[test]
    fn the_small_fleet_is_two_instances_on_two_nodes() {
        let plan = FleetPlan::new(FleetSize::Small, 40000);
        let ids: Vec<_> = plan.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["web-v1@east-1", "web-v1@east-2"]);
    }
}
