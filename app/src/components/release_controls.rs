//! The service page's release panel: the current split per version for everyone, and for
//! operators (the same role check the server makes; the server still refuses others) either a
//! "start release" form or the active release's controls — the canary slider (whole percent,
//! the largest jump shown) and one button per action the release allows now. Every button opens
//! the confirmation dialog.

use leptos::prelude::*;

use crate::api::{get_releases, get_service_detail, get_traffic_policy};
use crate::components::event_feed::EventFeed;
use crate::components::release_actions::{action_label, is_dangerous, parse_action, strategy_label};
use crate::components::release_dialog::{Ask, ConfirmDialog};
use crate::components::release_start::{StartDialog, StartReleaseForm, StartState};
use crate::components::release_view::{Countdown, PercentBar, ReleaseStateMark, RollingNodes, SplitBar, VerdictLine};
use crate::components::user_menu::use_current_user;
use crate::model::identity::Scope;
use crate::model::releases::{Release, ReleaseAction, Strategy};
use crate::pages::topology::LoadError;

/// What the panel needs, fetched together.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct PanelData {
    policy: crate::model::traffic::TrafficPolicy,
    active: Option<Release>,
    versions: Vec<String>,
}

async fn load(service: String) -> Result<PanelData, crate::api::UiError> {
    let policy = get_traffic_policy(service.clone()).await?;
    let releases = get_releases(Some(service.clone())).await?;
    let detail = get_service_detail(service).await?;
    let mut versions: Vec<String> = detail.instances.iter().map(|i| i.version.clone()).collect();
    versions.extend(policy.weights.iter().map(|w| w.version.clone()));
    versions.sort();
    versions.dedup();
    Ok(PanelData { policy, active: releases.into_iter().find(|r| !r.state.is_terminal()), versions })
}

#[component]
pub fn ReleasePanel(service: Memo<String>, feed: EventFeed) -> impl IntoView {
    let user = use_current_user();
    let acted = RwSignal::new(0_u32);
    let data = Resource::new(move || (service.get(), feed.changes.get(), acted.get()), |(s, _, _)| load(s));
    let ask = RwSignal::new(None::<Ask>);
    let start = StartState::new();
    // The slider's position survives refetches (any event re-renders the panel's data); an
    // applied action lets it follow the release again.
    let chosen = RwSignal::new(None::<u8>);
    let done = Callback::new(move |()| {
        chosen.set(None);
        acted.update(|n| *n += 1)
    });
    view! {
        <div class="panel release-panel">
            <header class="panel-head"><h2>"Traffic split and release"</h2></header>
            <Transition fallback=|| view! { <p class="muted">"Loading the traffic policy…"</p> }>
                {move || Suspend::new(async move {
                    let me = user.await.ok().flatten();
                    let data = match data.await {
                        Ok(data) => data,
                        Err(error) => return view! { <LoadError error what="the traffic policy" /> }.into_any(),
                    };
                    let operator = me.as_ref().filter(|u| u.role.grants(Scope::Operate)).map(|u| u.csrf_token.clone());
                    let revision = data.policy.revision;
                    let policy_line = match data.policy.updated_at {
                        Some(at) => format!("revision {revision}, set by {} at {}", data.policy.updated_by, at.format("%H:%M:%S UTC")),
                        None => "no policy set yet".to_owned(),
                    };
                    let active = data.active.clone().map(|r| view! { <ActiveRelease release=r ask chosen operator=operator.is_some() /> });
                    let controls = match (&operator, &data.active) {
                        (Some(_), None) => view! {
                            <StartReleaseForm service=service.get_untracked() versions=data.versions.clone()
                                policy=data.policy.clone() state=start />
                        }
                        .into_any(),
                        (Some(_), Some(_)) => ().into_any(),
                        (None, _) => view! {
                            <p class="muted release-viewer-note">"Release controls are for operators."</p>
                        }
                        .into_any(),
                    };
                    view! {
                        <SplitBar weights=data.policy.weights.clone() />
                        <p class="muted release-policy-line" data-revision=revision>{policy_line}</p>
                        {active}
                        <div class="release-controls">{controls}</div>
                    }
                    .into_any()
                })}
            </Transition>
            // Outside the data above, so a refetch (an event) doesn't reset an open dialog.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    user.await.ok().flatten().filter(|u| u.role.grants(Scope::Operate))
                        .map(|u| view! {
                            <ConfirmDialog ask csrf=u.csrf_token.clone() done />
                            <StartDialog state=start csrf=u.csrf_token done />
                        })
                })}
            </Suspense>
        </div>
    }
}

/// The release in progress: where it stands, and (for operators) its buttons.
#[component]
fn ActiveRelease(
    release: Release,
    ask: RwSignal<Option<Ask>>,
    chosen: RwSignal<Option<u8>>,
    operator: bool,
) -> impl IntoView {
    let step = match &release.rolling {
        Some(rolling) => rolling.count_text(),
        None => format!("step {} of {}", release.step_index + 1, release.steps.len().max(1)),
    };
    let head = view! {
        <p class="release-active-head" data-release=release.id data-state=format!("{:?}", release.state)>
            <a href=format!("/releases/{}", release.id)>
                {format!("{} {} → {}", strategy_label(release.strategy), release.stable_version, release.target_version)}
            </a>
            " " <ReleaseStateMark state=release.state /> " "
            <PercentBar percent=release.current_percent />
            " " {step}
            {(release.strategy == Strategy::Canary).then(|| view! { " · step ends in " <Countdown ends_at=release.step_ends_at /> })}
        </p>
        {release.rolling.clone().map(|progress| view! { <RollingNodes progress /> })}
        {(release.strategy == Strategy::Canary).then(|| view! {
            <p class="release-last-verdict"><VerdictLine verdict=release.last_verdict.clone() /></p>
        })}
        {release.status_reason.clone().map(|why| view! { <p class="notice">{why}</p> })}
    };
    if !operator {
        return head.into_any();
    }
    let allowed = |name: &str| release.allowed_actions.iter().any(|a| a == name);
    let slider = (release.strategy == Strategy::Canary && allowed("set_percent")).then(|| {
        let current = release.current_percent;
        let (low, high) = (current.saturating_sub(release.max_jump), current.saturating_add(release.max_jump).min(100));
        let picked = move || chosen.get().unwrap_or(current).clamp(low, high);
        let r = release.clone();
        let target = release.target_version.clone();
        view! {
            <div class="release-slider">
                <label for="release-percent">"Canary share "</label>
                <input id="release-percent" class="release-percent-input" type="range" min=low max=high step="1"
                    prop:value=move || picked().to_string()
                    on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { chosen.set(Some(v)) } />
                <output for="release-percent" class="num">{move || format!("{} %", picked())}</output>
                <span class="muted">{format!(" max jump {} % (from {current} %: {low}–{high} %)", release.max_jump)}</span>
                <button type="button" class="release-set-percent" disabled=move || picked() == current
                    on:click=move |_| ask.set(Some(Ask { release: r.clone(), action: ReleaseAction::SetPercent { percent: chosen.get_untracked().unwrap_or(current).clamp(low, high) } }))>
                    {move || format!("Send {} % to {}…", picked(), target)}
                </button>
            </div>
        }
    });
    let buttons = release
        .allowed_actions
        .iter()
        .filter(|name| name.as_str() != "set_percent")
        .filter_map(|name| parse_action(name, None).ok())
        .map(|action| {
            let label = format!("{}…", action_label(&action, &release));
            let dangerous = is_dangerous(&action);
            let r = release.clone();
            view! {
                <button type="button" class=format!("release-action release-action-{}", action.name()) class:is-dangerous=dangerous
                    on:click=move |_| ask.set(Some(Ask { release: r.clone(), action: action.clone() }))>{label}</button>
            }
        })
        .collect_view();
    view! { {head} {slider} <div class="release-buttons">{buttons}</div> }.into_any()
}
