//! Small views the releases page, the release detail and the service page share: a state mark,
//! the traffic split as a bar, the canary's share as a bar, a live countdown, a verdict with
//! its numbers and a rolling release's nodes.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::components::live::use_clock;
use crate::components::release_actions::{countdown_text, describe_weights, state_mark, verdict_mark, verdict_numbers};
use crate::components::status::Status;
use crate::components::status::StatusMark;
use crate::components::timestamp::Timestamp;
use crate::model::releases::{ReleaseState, RollingProgress, RollingStepState, Verdict};
use crate::model::traffic::VersionWeight;

#[component]
pub fn ReleaseStateMark(state: ReleaseState) -> impl IntoView {
    let (status, word) = state_mark(state);
    view! { <StatusMark status label=word /> }
}

/// The split between versions: one segment per version, labelled with its share (the label,
/// not the colour, carries the number). No policy is said in words, not drawn as a bar.
#[component]
pub fn SplitBar(weights: Vec<VersionWeight>) -> impl IntoView {
    let text = describe_weights(&weights);
    if weights.is_empty() {
        return view! { <p class="release-split is-empty muted" data-split="none">{text}</p> }.into_any();
    }
    // Versions sorted by name get a fixed look each (colour and, for every other one, stripes),
    // so v1 looks the same in "now" and "after" and two versions never share a look.
    let mut names: Vec<&str> = weights.iter().map(|w| w.version.as_str()).collect();
    names.sort_unstable();
    let look = |version: &str| names.iter().position(|n| *n == version).unwrap_or(0) % 4;
    let segments = weights
        .iter()
        .filter(|w| w.percent > 0)
        .map(|w| {
            view! {
                <span class=format!("release-split-segment is-look-{}", look(&w.version)) data-version=w.version.clone()
                    data-percent=w.percent style=format!("flex-basis: {}%", w.percent)>
                    {format!("{} {} %", w.version, w.percent)}
                </span>
            }
        })
        .collect_view();
    view! {
        <div class="release-split" role="img" aria-label=format!("Traffic split: {text}") data-split=text.clone()>
            {segments}
        </div>
    }
    .into_any()
}

/// The target's share as a bar with its number.
#[component]
pub fn PercentBar(percent: u8) -> impl IntoView {
    view! {
        <span class="release-percent">
            <span class="release-percent-track" aria-hidden="true">
                <span class="release-percent-fill" style=format!("width: {percent}%")></span>
            </span>
            <span class="release-percent-value num">{format!("{percent} %")}</span>
        </span>
    }
}

/// Time left in the current step, ticking each second in the browser.
#[component]
pub fn Countdown(ends_at: Option<DateTime<Utc>>) -> impl IntoView {
    let Some(ends_at) = ends_at else {
        return view! { <span class="muted">"—"</span> }.into_any();
    };
    let clock = use_clock();
    let left = move || countdown_text((ends_at - clock.0.get()).num_seconds());
    view! {
        <span class="release-countdown num" title=format!("step ends {}", ends_at.format("%H:%M:%S UTC"))>{left}</span>
    }
    .into_any()
}

/// A verdict with the numbers it was decided on: canary x vs stable y, threshold z, samples n.
#[component]
pub fn VerdictLine(verdict: Option<Verdict>) -> impl IntoView {
    let Some(v) = verdict else {
        return view! { <span class="muted">"no verdict yet"</span> }.into_any();
    };
    let (status, word) = verdict_mark(v.outcome);
    view! {
        <span class="release-verdict">
            <StatusMark status label=word />
            <span class="release-verdict-numbers">
                {format!(" {}", verdict_numbers(&v))}
            </span>
            <span class="release-verdict-when">" · " <Timestamp at=v.at /></span>
        </span>
    }
    .into_any()
}

/// A rolling release as a row of nodes in replacement order, each with a mark and a word
/// (replaced, draining, starting with the time left to become healthy, waiting, failed) and
/// what serves there.
#[component]
pub fn RollingNodes(progress: RollingProgress) -> impl IntoView {
    let clock = use_clock();
    let timeout = chrono::Duration::seconds(i64::from(progress.ready_timeout_seconds));
    let total = progress.steps.len();
    let nodes = progress
        .steps
        .into_iter()
        .enumerate()
        .map(|(index, step)| {
            let (status, word) = match step.state {
                RollingStepState::Replaced => (Status::Healthy, "replaced"),
                RollingStepState::Draining => (Status::Degraded, "stopping the old"),
                RollingStepState::Starting => (Status::Degraded, "starting"),
                RollingStepState::Waiting => (Status::Unknown, "waiting"),
                RollingStepState::Failed => (Status::Down, "failed"),
            };
            let left = (step.state == RollingStepState::Starting).then(|| {
                let ready_by = step.started_at.map(|at| at + timeout);
                move || {
                    ready_by.map(|by| format!("healthy within {}", countdown_text((by - clock.0.get()).num_seconds())))
                }
            });
            view! {
                <li class=format!("rolling-node is-{}", word.replace(' ', "-")) data-node=step.node.clone()
                    data-state=format!("{:?}", step.state)>
                    <span class="rolling-node-name">{format!("{}. {}", index + 1, step.node)}</span>
                    <StatusMark status label=word />
                    {left.map(|left| view! { <span class="rolling-node-left num">{left}</span> })}
                    <span class="rolling-node-detail">{step.text()}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="rolling" role="group" aria-label=format!("Rolling: {total} node(s), in order")>
            <ol class="rolling-nodes">{nodes}</ol>
        </div>
    }
}
