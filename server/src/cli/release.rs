//! `opsdeck release list|show|start|act`: the release buttons on the command line, through the
//! REST API (the same service layer, checks and audit as the pages), printing readable text.

use std::process::ExitCode;

use app::components::release_actions::{
    countdown_text, describe_weights, parse_action, state_mark, strategy_label, verdict_numbers,
};
use app::model::releases::{
    CanaryStep, Release, ReleaseActionRequest, ReleaseDetail, RollingConfig, StartRelease, Strategy, Verdict,
};
use app::model::traffic::TrafficPolicy;
use clap::{Args, Subcommand, ValueEnum};

use super::remote::{Remote, RemoteArgs, RemoteError, finish};

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Releases, in progress first, then newest.
    List {
        /// Only this service's releases.
        #[arg(long)]
        service: Option<String>,
        /// Only releases in progress.
        #[arg(long)]
        active: bool,
    },
    /// One release: state, steps, verdicts and actions.
    Show { id: i64 },
    /// Start a release of a service.
    Start(StartArgs),
    /// Act on a release: set-percent, next-step, pause, resume, promote, abort, run-smoke-checks,
    /// switch, switch-back, rollback.
    Act(ActArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    Canary,
    BlueGreen,
    Rolling,
    Rollback,
}

impl From<StrategyArg> for Strategy {
    fn from(value: StrategyArg) -> Self {
        match value {
            StrategyArg::Canary => Strategy::Canary,
            StrategyArg::BlueGreen => Strategy::BlueGreen,
            StrategyArg::Rolling => Strategy::Rolling,
            StrategyArg::Rollback => Strategy::Rollback,
        }
    }
}

#[derive(Debug, Args)]
pub struct StartArgs {
    pub service: String,
    #[arg(long, value_enum, default_value_t = StrategyArg::Canary)]
    pub strategy: StrategyArg,
    /// The version to release (ignored by rollback).
    #[arg(long = "to", default_value = "")]
    pub target_version: String,
    /// Canary shares, e.g. `1,5,25,50,100` (default: the server's).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<u8>,
    /// Hold time per step (with --steps), e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub hold: std::time::Duration,
    /// The largest change one set-percent may make.
    #[arg(long)]
    pub max_jump: Option<u8>,
    /// Rolling: how long each new instance may take to become healthy, e.g. `2m`.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub ready_timeout: std::time::Duration,
    /// The traffic policy revision you saw (default: the current one, read just before).
    #[arg(long)]
    pub expected_revision: Option<i64>,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Repeat a start safely: the same key acts once (default: a fresh one).
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ActArgs {
    pub id: i64,
    /// The action, e.g. `set-percent`, `promote`, `abort`.
    pub action: String,
    /// The canary share for set-percent.
    #[arg(long)]
    pub percent: Option<u8>,
    /// The traffic policy revision you saw (default: the release's current one, read just before).
    #[arg(long)]
    pub expected_revision: Option<i64>,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

pub async fn run(args: ReleaseArgs) -> ExitCode {
    finish(execute(args).await).await
}

async fn execute(args: ReleaseArgs) -> Result<String, RemoteError> {
    let remote = Remote::new(&args.remote)?;
    match args.command {
        ReleaseCommand::List { service, active } => {
            let mut query = Vec::new();
            if let Some(service) = &service {
                query.push(("service", service.clone()));
            }
            if active {
                query.push(("active", "true".to_owned()));
            }
            let query = serde_urlencoded::to_string(&query).unwrap_or_default();
            let releases: Vec<Release> = remote.get(&format!("/releases?{query}")).await?;
            Ok(list_text(&releases))
        }
        ReleaseCommand::Show { id } => {
            let detail: ReleaseDetail = remote.get(&format!("/releases/{id}")).await?;
            Ok(detail_text(&detail))
        }
        ReleaseCommand::Start(start) => {
            let expected_revision = match start.expected_revision {
                Some(revision) => revision,
                None => remote.get::<TrafficPolicy>(&traffic_path(&start.service)).await?.revision,
            };
            let steps = (!start.steps.is_empty()).then(|| {
                let hold_seconds = u32::try_from(start.hold.as_secs()).unwrap_or(u32::MAX);
                start.steps.iter().map(|&percent| CanaryStep { percent, hold_seconds }).collect()
            });
            let body = StartRelease {
                strategy: start.strategy.into(),
                target_version: start.target_version,
                expected_revision,
                steps,
                max_jump: start.max_jump,
                analysis: None,
                smoke_checks: Vec::new(),
                schema: None,
                rolling: matches!(start.strategy, StrategyArg::Rolling).then(|| RollingConfig {
                    ready_timeout_seconds: u32::try_from(start.ready_timeout.as_secs()).unwrap_or(u32::MAX),
                }),
                reason: start.reason,
            };
            let key = start.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let path = format!("/services/{}/releases", encode(&start.service));
            let release: Release = remote.send_json(reqwest::Method::POST, &path, &body, Some(&key)).await?;
            Ok(format!("started release #{}\n{}", release.id, release_text(&release)))
        }
        ReleaseCommand::Act(act) => {
            let action = parse_action(&act.action.replace('-', "_"), act.percent).map_err(RemoteError::Invalid)?;
            let expected_revision = match act.expected_revision {
                Some(revision) => revision,
                None => remote.get::<ReleaseDetail>(&format!("/releases/{}", act.id)).await?.policy.revision,
            };
            let body = ReleaseActionRequest { action: action.clone(), expected_revision, reason: act.reason };
            let key = act.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let path = format!("/releases/{}/actions", act.id);
            let release: Release = remote.send_json(reqwest::Method::POST, &path, &body, Some(&key)).await?;
            Ok(format!("{} done on release #{}\n{}", action.name(), release.id, release_text(&release)))
        }
    }
}

pub(super) fn traffic_path(service: &str) -> String {
    format!("/services/{}/traffic", encode(service))
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// `● progressing` — the glyph and the word (no colour on a terminal that can't show it).
fn state_text(release: &Release) -> String {
    let (status, word) = state_mark(release.state);
    format!("{} {word}", status.glyph())
}

pub fn list_text(releases: &[Release]) -> String {
    if releases.is_empty() {
        return "no releases".to_owned();
    }
    let mut lines = vec![format!(
        "{:<6} {:<20} {:<10} {:<24} {:<22} {:>5} {:>6}",
        "ID", "SERVICE", "STRATEGY", "FROM → TO", "STATE", "SHARE", "STEP"
    )];
    for r in releases {
        lines.push(format!(
            "{:<6} {:<20} {:<10} {:<24} {:<22} {:>4}% {:>6}",
            format!("#{}", r.id),
            r.service,
            strategy_label(r.strategy),
            format!("{} → {}", r.stable_version, r.target_version),
            state_text(r),
            r.current_percent,
            format!("{}/{}", r.step_index + 1, r.steps.len().max(1)),
        ));
    }
    lines.join("\n")
}

fn verdict_text(v: &Verdict) -> String {
    format!("{:?} at {}: {} — {}", v.outcome, v.at.format("%H:%M:%S UTC"), verdict_numbers(v), v.summary)
}

pub fn release_text(r: &Release) -> String {
    let progress = match &r.rolling {
        Some(rolling) => rolling.count_text(),
        None => format!("step {}/{}", r.step_index + 1, r.steps.len().max(1)),
    };
    let mut lines = vec![
        format!(
            "#{} {} {} {} → {}: {} at {} % ({progress})",
            r.id,
            r.service,
            strategy_label(r.strategy),
            r.stable_version,
            r.target_version,
            state_text(r),
            r.current_percent,
        ),
        format!("policy revision {} · allowed now: {}", r.policy_revision, r.allowed_actions.join(", ")),
    ];
    if let Some(ends) = r.step_ends_at {
        lines.push(format!("step ends in {}", countdown_text((ends - chrono::Utc::now()).num_seconds())));
    }
    if let Some(v) = &r.last_verdict {
        lines.push(format!("last verdict: {}", verdict_text(v)));
    }
    if let Some(why) = &r.status_reason {
        lines.push(format!("why: {why}"));
    }
    lines.join("\n")
}

pub fn detail_text(detail: &ReleaseDetail) -> String {
    let mut lines = vec![
        release_text(&detail.release),
        format!("traffic now (revision {}): {}", detail.policy.revision, describe_weights(&detail.policy.weights)),
    ];
    if !detail.release.steps.is_empty() {
        let steps: Vec<String> =
            detail.release.steps.iter().map(|s| format!("{} % ({} s)", s.percent, s.hold_seconds)).collect();
        lines.push(format!("steps: {}", steps.join(" → ")));
    }
    if let Some(rolling) = &detail.release.rolling {
        let back = if rolling.rolling_back { "rolling back: " } else { "rolling: " };
        lines.push(format!("{back}{} (ready time {} s each)", rolling.count_text(), rolling.ready_timeout_seconds));
        lines.extend(rolling.steps.iter().map(|step| format!("  {}", step.text())));
    }
    lines.push(format!("verdicts ({}):", detail.verdicts.len()));
    lines.extend(detail.verdicts.iter().map(|v| format!("  {}", verdict_text(v))));
    lines.push(format!("actions ({}):", detail.history.len()));
    lines.extend(detail.history.iter().map(|h| {
        format!(
            "  {} {} {}: {} → {}{}",
            h.at.format("%Y-%m-%d %H:%M:%S UTC"),
            h.actor,
            h.action,
            describe_weights(&h.weights_before),
            describe_weights(&h.weights_after),
            h.reason.as_ref().map(|r| format!(" — {r}")).unwrap_or_default()
        )
    }));
    lines.join("\n")
}
