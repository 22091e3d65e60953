//! A service's recent trouble in its logs, on its page beside the charts: the last hour's newest
//! lines at warning or worse, with the count per level, refetched on the event feed and every
//! 10 s, and links to the full search and the live tail of the same service.

use std::time::Duration;

use leptos::prelude::*;

use crate::api::get_logs;
use crate::components::event_feed::EventFeed;
use crate::components::live::{describe_age, use_clock};
use crate::components::log_line::{LevelBadge, LogLineRow};
use crate::model::logs::{LogLevel, LogQuery, LogRange};
use crate::pages::audit::percent_encode;
use crate::pages::topology::LoadError;

/// How many lines the panel shows (the search link has the rest).
const SHOWN: usize = 10;
/// Logs send no events, so the panel also looks again this often.
const REFRESH: Duration = Duration::from_secs(10);

#[component]
pub fn ServiceLogs(service: Memo<String>, feed: EventFeed) -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    // Effects run in the browser only: the server renders once.
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    let lines = Resource::new(
        move || (service.get(), feed.changes.get(), tick.get()),
        |(service, _, _)| {
            get_logs(LogQuery {
                range: LogRange::Hour1,
                level: Some(LogLevel::Warning),
                service: Some(service),
                ..LogQuery::default()
            })
        },
    );
    let clock = use_clock();
    let search = move || format!("/logs?service={}&level=warning", percent_encode(&service.get()));
    let tail = move || format!("/logs?service={}&mode=tail", percent_encode(&service.get()));
    view! {
        <div class="panel service-logs">
            <header class="panel-head">
                <h2>"Warnings and errors, last hour"</h2>
                <p class="panel-links">
                    <a href=search>"Search its logs"</a>
                    " · "
                    <a href=tail>"Live tail"</a>
                </p>
            </header>
            <Transition fallback=|| view! { <p class="muted">"Loading the service's logs…"</p> }>
                {move || Suspend::new(async move {
                    let loaded_at = clock.0.get_untracked();
                    let age = move || format!("searched {}", describe_age((clock.0.get() - loaded_at).num_seconds().max(0)));
                    match lines.await {
                        Ok(page) if page.lines.is_empty() => view! {
                            <p class="logs-summary">
                                <span class="logs-count is-empty">"● No warnings or errors in the last hour."</span>
                                <span class="data-age">{age}</span>
                            </p>
                        }
                        .into_any(),
                        Ok(page) => {
                            let counts = page.counts.unwrap_or_default();
                            let totals = [(LogLevel::Warning, counts.warning), (LogLevel::Error, counts.error), (LogLevel::Fatal, counts.fatal)]
                                .into_iter()
                                .map(|(level, count)| view! { <span class="level-total"><LevelBadge level /> " " {count}</span> })
                                .collect_view();
                            let shown = page.lines.len().min(SHOWN);
                            view! {
                                <p class="logs-summary">
                                    <span class="logs-count">{totals} {format!(" · newest {shown} shown")}</span>
                                    <span class="data-age">{age}</span>
                                </p>
                                <ol class="log-lines">
                                    {page.lines.into_iter().take(SHOWN).map(|line| view! { <LogLineRow line /> }).collect_view()}
                                </ol>
                            }
                            .into_any()
                        }
                        Err(error) => view! { <LoadError error what="the service's logs" /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}
