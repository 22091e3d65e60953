//! `opsdeck agent`: runs on a node, checks the node in (`PUT /api/v1/nodes/{cluster}/{node}/agent`,
//! which creates it on first sight and lets the health model tell a silent node from a failing
//! instance) and reports its CPU, memory, disk and network from `/proc` every few seconds as
//! line protocol (`POST /api/v1/metrics`, measurement `node`). The token, with the *ingest*
//! scope, comes from `OPSDECK_TOKEN`.

pub mod procfs;

use std::time::Duration;

use anyhow::Context;
use app::model::topology::AgentCheckIn;
use clap::Args;
use reqwest::StatusCode;

use crate::influx::Point;

/// The environment variable that carries the token (never a flag: `ps` shows flags).
pub const TOKEN_ENV: &str = "OPSDECK_TOKEN";

/// Settings of `opsdeck agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The cluster this node belongs to.
    #[arg(long = "cluster", env = "OPSDECK_AGENT_CLUSTER")]
    pub cluster: String,

    /// This node's name.
    #[arg(long = "node", env = "OPSDECK_AGENT_NODE")]
    pub node: String,

    /// This node's address, as shown on the dashboard.
    #[arg(long = "address", env = "OPSDECK_AGENT_ADDRESS")]
    pub address: Option<String>,

    /// How often to report (1 s – 1 h). Three missed reports mark the node down.
    #[arg(long = "every", env = "OPSDECK_AGENT_EVERY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,

    /// Where opsdeck serves its API.
    #[arg(long = "opsdeck-url", env = "OPSDECK_URL", default_value = "http://127.0.0.1:3000")]
    pub opsdeck_url: url::Url,

    /// Stop when standard input closes (a supervisor, such as `opsdeck demo`, holds the other end).
    #[arg(long = "stop-when-stdin-closes", action = clap::ArgAction::SetTrue)]
    pub stop_when_stdin_closes: bool,
}

/// Reports until the process is stopped. A refused token stops it at once; anything else (opsdeck
/// restarting, a network blip) is logged and tried again at the next report.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "{TOKEN_ENV} is not set: give the agent an ingest token in the environment (not on the command line, \
             where `ps` shows it); `opsdeck token create --name agent --scope ingest` makes one"
        )
    })?;
    let every_seconds = u32::try_from(args.every.as_secs()).unwrap_or(u32::MAX);
    let check_in = AgentCheckIn { address: args.address.clone(), report_every_seconds: every_seconds };
    check_in.check().map_err(|rule| anyhow::anyhow!("invalid agent setting: {rule} (--every, --address)"))?;
    app::model::topology::check_name("cluster", &args.cluster).map_err(|e| anyhow::anyhow!("--cluster: {e}"))?;
    app::model::topology::check_name("node", &args.node).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let base = args.opsdeck_url.as_str().trim_end_matches('/').to_owned();
    let check_in_url = format!("{base}/api/v1/nodes/{}/{}/agent", args.cluster, args.node);
    let metrics_url = format!("{base}/api/v1/metrics");
    let http = reqwest::Client::builder()
        .user_agent(concat!("opsdeck-agent/", env!("CARGO_PKG_VERSION")))
        .timeout(args.every.min(Duration::from_secs(10)))
        .build()
        .context("cannot build the HTTP client")?;
    tracing::info!(cluster = %args.cluster, node = %args.node, every = ?args.every, url = %base, "the node agent is reporting");

    let mut ticks = tokio::time::interval(args.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(procfs::Counters, tokio::time::Instant)> = None;
    let mut metrics_missing_logged = false;
    // Made once: it watches stdin on a thread of its own.
    let stop = crate::demo::service::stop_requested(args.stop_when_stdin_closes);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => {
                tracing::info!("the node agent stopped");
                return Ok(());
            }
        }
        match http.put(&check_in_url).bearer_auth(&token).json(&check_in).send().await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) if matches!(answer.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                let status = answer.status();
                anyhow::bail!(
                    "opsdeck refused the token in {TOKEN_ENV} ({status}: {}); it needs the ingest scope",
                    answer.text().await.unwrap_or_default()
                );
            }
            Ok(answer) => {
                let status = answer.status();
                tracing::warn!(%status, detail = answer.text().await.unwrap_or_default(), "the check-in was refused; trying again at the next report");
            }
            Err(error) => {
                tracing::warn!(%error, "opsdeck did not answer the check-in; trying again at the next report")
            }
        }
        let (counters, levels) = match procfs::sample() {
            Ok(sample) => sample,
            Err(error) => {
                tracing::warn!(%error, "cannot read /proc; no vital signs this time");
                continue;
            }
        };
        let now = tokio::time::Instant::now();
        let Some((before, then)) = previous.replace((counters, now)) else { continue };
        let vitals = procfs::vitals(&before, &counters, &levels, now - then);
        let line = match point(&args.cluster, &args.node, &vitals).to_line() {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "the report could not be encoded");
                continue;
            }
        };
        match http.post(&metrics_url).bearer_auth(&token).header("content-type", "text/plain").body(line).send().await {
            Ok(answer) if answer.status().is_success() => {}
            Ok(answer) if answer.status() == StatusCode::NOT_FOUND && !metrics_missing_logged => {
                metrics_missing_logged = true;
                tracing::warn!("this opsdeck has no metrics endpoint (an older version?); only check-ins are sent");
            }
            Ok(answer) => tracing::warn!(status = %answer.status(), "the report was refused; the next one follows"),
            Err(error) => tracing::warn!(%error, "the report was not delivered; the next one follows"),
        }
    }
}

/// The `node` point: one line per report.
pub fn point(cluster: &str, node: &str, vitals: &procfs::Vitals) -> Point {
    Point::new("node")
        .tag("cluster", cluster)
        .tag("node", node)
        .field("cpu_percent", vitals.cpu_percent)
        .field("memory_used_bytes", i64::try_from(vitals.memory_used_bytes).unwrap_or(i64::MAX))
        .field("memory_total_bytes", i64::try_from(vitals.memory_total_bytes).unwrap_or(i64::MAX))
        .field("memory_used_percent", vitals.memory_used_percent)
        .field("disk_read_bytes_per_second", vitals.disk_read_bytes_per_second)
        .field("disk_written_bytes_per_second", vitals.disk_written_bytes_per_second)
        .field("net_received_bytes_per_second", vitals.net_received_bytes_per_second)
        .field("net_sent_bytes_per_second", vitals.net_sent_bytes_per_second)
        .field("load1", vitals.load1)
        .timestamp(chrono::Utc::now())
}
