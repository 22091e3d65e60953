//! `opsdeck traffic show|set`: a service's traffic policy through the REST API.

use std::process::ExitCode;

use app::components::release_actions::describe_weights;
use app::model::traffic::{TrafficChange, TrafficPolicy, VersionWeight, check_weights};
use clap::{Args, Subcommand};

use super::release::traffic_path;
use super::remote::{Remote, RemoteArgs, RemoteError, finish};

#[derive(Debug, Args)]
pub struct TrafficArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: TrafficCommand,
}

#[derive(Debug, Subcommand)]
pub enum TrafficCommand {
    /// A service's split, revision, sticky and route settings.
    Show { service: String },
    /// Set a service's split by hand, e.g. `opsdeck traffic set shop v1=90 v2=10` (refused
    /// while a release of it is in progress; sticky and route settings are kept).
    Set {
        service: String,
        /// `version=percent`, summing to 100.
        #[arg(required = true, value_parser = parse_weight)]
        weights: Vec<VersionWeight>,
        /// The revision you saw (default: the current one, read just before).
        #[arg(long)]
        expected_revision: Option<i64>,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `v2=10` (or `v2=10%`).
pub fn parse_weight(value: &str) -> Result<VersionWeight, String> {
    let (version, percent) =
        value.split_once('=').ok_or_else(|| format!("{value:?}: write version=percent, e.g. v2=10"))?;
    let percent = percent
        .trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("{value:?}: the percent is a whole number from 0 to 100"))?;
    if version.trim().is_empty() {
        return Err(format!("{value:?}: the version is missing before '='"));
    }
    Ok(VersionWeight { version: version.trim().to_owned(), percent })
}

pub async fn run(args: TrafficArgs) -> ExitCode {
    finish(execute(args).await).await
}

async fn execute(args: TrafficArgs) -> Result<String, RemoteError> {
    let remote = Remote::new(&args.remote)?;
    match args.command {
        TrafficCommand::Show { service } => Ok(policy_text(&remote.get(&traffic_path(&service)).await?)),
        TrafficCommand::Set { service, weights, expected_revision, reason } => {
            check_weights(&weights).map_err(RemoteError::Invalid)?;
            let current: TrafficPolicy = remote.get(&traffic_path(&service)).await?;
            let change = TrafficChange {
                expected_revision: expected_revision.unwrap_or(current.revision),
                weights,
                sticky: current.sticky,
                route: current.route,
                reason,
            };
            let key = uuid::Uuid::new_v4().to_string();
            let policy: TrafficPolicy =
                remote.send_json(reqwest::Method::PUT, &traffic_path(&service), &change, Some(&key)).await?;
            Ok(format!("traffic of {} set\n{}", service, policy_text(&policy)))
        }
    }
}

pub fn policy_text(policy: &TrafficPolicy) -> String {
    let mut lines =
        vec![format!("{} revision {}: {}", policy.service, policy.revision, describe_weights(&policy.weights))];
    if let Some(at) = policy.updated_at {
        lines.push(format!("set by {} at {}", policy.updated_by, at.format("%Y-%m-%d %H:%M:%S UTC")));
    }
    let sticky = match (&policy.sticky.header, &policy.sticky.cookie) {
        (None, None) => "none".to_owned(),
        (header, cookie) => format!(
            "{}{}",
            header.as_ref().map(|h| format!("header {h} ")).unwrap_or_default(),
            cookie.as_ref().map(|c| format!("cookie {c}")).unwrap_or_default()
        ),
    };
    lines.push(format!("sticky: {}", sticky.trim()));
    let route = &policy.route;
    lines.push(format!(
        "route: host {} · path prefix {}{}",
        route.host.as_deref().unwrap_or(&format!("{0} or {0}.*", policy.service)),
        route.path_prefix.as_deref().unwrap_or("—"),
        if route.strip_prefix { " (stripped)" } else { "" }
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_is_version_equals_percent_and_bad_ones_say_how_to_write_it() {
        assert_eq!(parse_weight("v2=10").expect("valid"), VersionWeight { version: "v2".into(), percent: 10 });
        assert_eq!(parse_weight("v2=10%").expect("valid").percent, 10);
        assert!(parse_weight("v2").expect_err("refused").contains("version=percent"));
        assert!(parse_weight("v2=101").expect_err("refused").contains("0 to 100"));
        assert!(parse_weight("=5").expect_err("refused").contains("version is missing"));
    }
}
