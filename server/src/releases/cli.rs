//! `opsdeck release …`: the release buttons on the command line, through the JSON API (so the
//! same roles, idempotency keys, optimistic locking and audit apply). The token comes from
//! `OPSDECK_TOKEN`; answers are printed as JSON, refusals go to stderr with a failing exit code.

use anyhow::{Context, bail};
use app::model::releases::{CanaryStep, ReleaseAction, ReleaseActionRequest, StartRelease, Strategy};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// Where opsdeck serves its API.
    #[arg(long = "opsdeck-url", env = "OPSDECK_URL", default_value = "http://127.0.0.1:3000", global = true)]
    pub opsdeck_url: url::Url,
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ReleaseCommand {
    /// Releases, in progress first.
    List {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        active: bool,
    },
    /// One release with its verdicts and history.
    Show { id: i64 },
    /// Start a release of SERVICE (at the policy revision current now, unless given).
    Start {
        service: String,
        #[arg(long, value_enum)]
        strategy: StrategyArg,
        /// The version to release (ignored by `rollback`).
        #[arg(long, default_value = "")]
        target: String,
        /// Canary steps in percent, e.g. `1,5,25,50,100`.
        #[arg(long, value_delimiter = ',')]
        steps: Option<Vec<u8>>,
        /// Hold time of each step.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        hold: std::time::Duration,
        #[arg(long)]
        max_jump: Option<u8>,
        /// Blue-green smoke check paths (expecting 200), e.g. `/healthz`.
        #[arg(long = "smoke-path")]
        smoke_paths: Vec<String>,
        #[arg(long)]
        expected_revision: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Act on a release: set-percent, next-step, pause, resume, promote, abort,
    /// run-smoke-checks, switch, switch-back, rollback.
    Act {
        id: i64,
        #[arg(value_enum)]
        action: ActionArg,
        /// For set-percent.
        #[arg(long)]
        percent: Option<u8>,
        #[arg(long)]
        expected_revision: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
        /// A new key per action (one is made up when absent); repeating a key repeats nothing.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// What an action would do now.
    Preview {
        id: i64,
        #[arg(value_enum)]
        action: ActionArg,
        #[arg(long)]
        percent: Option<u8>,
    },
    /// What waits for a person.
    Inbox,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    Canary,
    BlueGreen,
    Rolling,
    Rollback,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    SetPercent,
    NextStep,
    Pause,
    Resume,
    Promote,
    Abort,
    RunSmokeChecks,
    Switch,
    SwitchBack,
    Rollback,
}

impl ActionArg {
    fn action(self, percent: Option<u8>) -> anyhow::Result<ReleaseAction> {
        Ok(match self {
            ActionArg::SetPercent => {
                ReleaseAction::SetPercent { percent: percent.context("set-percent needs --percent N")? }
            }
            ActionArg::NextStep => ReleaseAction::NextStep,
            ActionArg::Pause => ReleaseAction::Pause,
            ActionArg::Resume => ReleaseAction::Resume,
            ActionArg::Promote => ReleaseAction::Promote,
            ActionArg::Abort => ReleaseAction::Abort,
            ActionArg::RunSmokeChecks => ReleaseAction::RunSmokeChecks,
            ActionArg::Switch => ReleaseAction::Switch,
            ActionArg::SwitchBack => ReleaseAction::SwitchBack,
            ActionArg::Rollback => ReleaseAction::Rollback,
        })
    }
}

struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = self.base.join(path).with_context(|| format!("{path} is not a path under {}", self.base))?;
        let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.with_context(|| format!("{method} {url}: opsdeck did not answer"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{method} {url} was refused with {status}: {}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Ok(body)
    }

    async fn revision(&self, service: &str) -> anyhow::Result<i64> {
        let policy = self.call(reqwest::Method::GET, &format!("api/v1/services/{service}/traffic"), None, None).await?;
        policy["revision"].as_i64().context("the traffic policy has no revision")
    }
}

/// Runs one `opsdeck release` command.
pub async fn run(args: ReleaseArgs) -> anyhow::Result<()> {
    let token = std::env::var("OPSDECK_TOKEN")
        .context("set OPSDECK_TOKEN to an API token with the read scope (and operate, to act)")?;
    let mut base = args.opsdeck_url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let api = Api { http: reqwest::Client::new(), base, token };
    use reqwest::Method;
    let answer = match args.command {
        ReleaseCommand::List { service, active } => {
            let mut path = format!("api/v1/releases?active={active}");
            if let Some(service) = service {
                path.push_str(&format!("&service={service}"));
            }
            api.call(Method::GET, &path, None, None).await?
        }
        ReleaseCommand::Show { id } => api.call(Method::GET, &format!("api/v1/releases/{id}"), None, None).await?,
        ReleaseCommand::Start {
            service,
            strategy,
            target,
            steps,
            hold,
            max_jump,
            smoke_paths,
            expected_revision,
            reason,
        } => {
            let expected_revision = match expected_revision {
                Some(revision) => revision,
                None => api.revision(&service).await?,
            };
            let hold_seconds = u32::try_from(hold.as_secs()).context("--hold is too long")?;
            let start = StartRelease {
                strategy: match strategy {
                    StrategyArg::Canary => Strategy::Canary,
                    StrategyArg::BlueGreen => Strategy::BlueGreen,
                    StrategyArg::Rolling => Strategy::Rolling,
                    StrategyArg::Rollback => Strategy::Rollback,
                },
                target_version: target,
                expected_revision,
                steps: steps
                    .map(|steps| steps.into_iter().map(|percent| CanaryStep { percent, hold_seconds }).collect()),
                max_jump,
                analysis: None,
                smoke_checks: smoke_paths
                    .into_iter()
                    .map(|path| app::model::releases::SmokeCheck {
                        method: None,
                        path,
                        expect_status: 200,
                        expect_body_contains: None,
                    })
                    .collect(),
                schema: None,
                reason,
            };
            let key = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_value(&start)?;
            api.call(Method::POST, &format!("api/v1/services/{service}/releases"), Some(&body), Some(&key)).await?
        }
        ReleaseCommand::Act { id, action, percent, expected_revision, reason, idempotency_key } => {
            let action = action.action(percent)?;
            let expected_revision = match expected_revision {
                Some(revision) => revision,
                None => {
                    let detail = api.call(Method::GET, &format!("api/v1/releases/{id}"), None, None).await?;
                    detail["policy"]["revision"].as_i64().context("the release's policy has no revision")?
                }
            };
            let request = ReleaseActionRequest { action, expected_revision, reason };
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let body = serde_json::to_value(&request)?;
            api.call(Method::POST, &format!("api/v1/releases/{id}/actions"), Some(&body), Some(&key)).await?
        }
        ReleaseCommand::Preview { id, action, percent } => {
            let name = action.action(percent)?.name();
            let mut path = format!("api/v1/releases/{id}/preview?action={name}");
            if let Some(percent) = percent {
                path.push_str(&format!("&percent={percent}"));
            }
            api.call(Method::GET, &path, None, None).await?
        }
        ReleaseCommand::Inbox => api.call(Method::GET, "api/v1/inbox", None, None).await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
