//! The supervisor of the demo fleet: starts its instances as child processes of this binary
//! and stops, kills and restarts them on request through the control API.
//!
//! Nothing is restarted automatically: a crashed or killed instance stays down (and red on the
//! dashboard) until someone starts it again.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use clap::ValueEnum;
use serde::Serialize;
use tokio::{process::Child, sync::Mutex};

use super::{
    mode::{Mode, ModeBody},
    plan::{FleetPlan, InstanceSpec, MemberKind},
    service::TOKEN_ENV,
};
use crate::{cli::LogFormat, http::error::ApiError};

/// How long a gracefully stopped service gets to deregister and exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the control API waits for a service's own answer (its mode switch).
const SERVICE_CALL_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// Its status; the mode is left for [`Fleet::list`] to ask the service.
    fn status(&self) -> MemberStatus {
        let (state, pid, detail) = match &self.process {
            Process::Running(child) => (ProcessState::Running, child.id(), None),
            Process::Ended { state, detail } => (*state, None, Some(detail.clone())),
        };
        MemberStatus { spec: self.spec.clone(), state, pid, detail, mode: None }
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
    /// Which service each service calls, for the callees this fleet runs.
    callees: std::collections::HashMap<String, String>,
    /// Where deployed versions go (rolling releases add members through [`Fleet::deploy`]).
    plan: FleetPlan,
}

impl Fleet {
    pub fn new(launch: Launch, plan: FleetPlan) -> anyhow::Result<Self> {
        let callees = plan.callees();
        let members = plan
            .instances
            .clone()
            .into_iter()
            .map(|spec| Member {
                spec,
                process: Process::Ended { state: ProcessState::Stopped, detail: "not started yet".into() },
            })
            .collect();
        let http = reqwest::Client::builder().timeout(SERVICE_CALL_TIMEOUT).build().context("an HTTP client")?;
        Ok(Self { launch, members: Mutex::new(members), http, callees, plan })
    }

    /// Starts `version` of `service` on `node` for a deployer (a rolling release), adding it
    /// to the fleet if the plan didn't have it; already running is fine.
    pub async fn deploy(&self, service: &str, version: &str, node: &str) -> Result<MemberStatus, ApiError> {
        let spec = self.plan.placement(service, version, node).map_err(ApiError::Unprocessable)?;
        {
            let mut members = self.members.lock().await;
            if !members.iter().any(|m| m.spec.id == spec.id) {
                tracing::info!(instance = %spec.id, address = %spec.address, "deploying a new demo instance");
                members.push(Member {
                    spec: spec.clone(),
                    process: Process::Ended { state: ProcessState::Stopped, detail: "not started yet".into() },
                });
            }
        }
        self.act_on_instance(&spec.id, Action::Start).await
    }

    /// Stops `version` of `service` on `node` gracefully for a deployer; `None` when the fleet
    /// has no such instance (nothing to stop).
    pub async fn undeploy(&self, service: &str, version: &str, node: &str) -> Option<MemberStatus> {
        let id = format!("{service}-{version}@{node}");
        self.act_on_instance(&id, Action::Terminate).await.ok()
    }

    /// The instance of `version` of `service` on `node`, if the fleet has one.
    pub async fn deployment(&self, service: &str, version: &str, node: &str) -> Option<MemberStatus> {
        let id = format!("{service}-{version}@{node}");
        self.act_on_instance(&id, Action::Look).await.ok()
    }

    fn spawn(&self, spec: &InstanceSpec) -> anyhow::Result<Child> {
        let log_format = self.launch.log_format.to_possible_value().map(|v| v.get_name().to_owned());
        let mut command = tokio::process::Command::new(&self.launch.exe);
        match spec.kind {
            MemberKind::Service => command
                .arg("demo-service")
                .args(["--service", &spec.service, "--service-version", &spec.version])
                .args(["--cluster", &spec.cluster, "--node", &spec.node])
                .args(["--listen", &spec.address.to_string()])
                .args(self.callees.get(&spec.service).iter().flat_map(|callee| ["--calls", callee.as_str()])),
            MemberKind::Agent => command.arg("agent").args(["--cluster", &spec.cluster, "--node", &spec.node]).args([
                "--address",
                &spec.address.ip().to_string(),
                "--every",
                "5s",
            ]),
        };
        command
            .args(["--opsdeck-url", &self.launch.opsdeck_url])
            .arg("--stop-when-stdin-closes")
            .args(log_format.iter().flat_map(|format| ["--log-format", format.as_str()]))
            .env(TOKEN_ENV, &self.launch.token)
            // A demo service needs its ingest token and nothing else: not the dashboard's secrets.
            .env_remove("DATABASE_URL")
            .env_remove("OPSDECK_INFLUX_TOKEN")
            .env_remove("OPSDECK_INFLUX_PASSWORD")
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
            changed.push(member.status());
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
                    m.status()
                })
                .collect()
        };
        let mut asks = tokio::task::JoinSet::new();
        let running_services =
            |s: &&MemberStatus| s.state == ProcessState::Running && s.spec.kind == MemberKind::Service;
        for (index, status) in statuses.iter().enumerate().filter(|(_, s)| running_services(s)) {
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
        if status.spec.kind == MemberKind::Agent {
            return Err(ApiError::Unprocessable(format!(
                "{id} is a node agent: it has no failure switch; stop its node to silence it (POST /nodes/{}/stop)",
                status.spec.node
            )));
        }
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
