//! `/logs`: search (range, minimum level, cluster/node/service/instance, trace id, text;
//! newest first, "Older →" by cursor, counts per level) and a live tail with the same filters.
//! The filters live in the URL (a plain GET form), so any view is a link to share, and the
//! search works before (and without) the wasm.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::Form, hooks::use_query_map, params::ParamsMap};

use crate::api::{UiError, get_logs};
use crate::components::live::{describe_age, use_clock};
use crate::components::log_line::{LogLineRow, level_glyph};
use crate::components::log_tail::LiveTail;
use crate::model::logs::{LevelCounts, LogLevel, LogPage, LogQuery, LogRange};
use crate::pages::audit::percent_encode;

/// The query parameters the filter form writes (and the page reads).
const FILTER_KEYS: [&str; 8] = ["range", "level", "cluster", "node", "service", "instance", "trace_id", "q"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Search,
    Tail,
}

#[component]
pub fn LogsPage() -> impl IntoView {
    let query = use_query_map();
    let mode =
        Memo::new(move |_| query.with(|q| if q.get_str("mode") == Some("tail") { Mode::Tail } else { Mode::Search }));
    let parsed = Memo::new(move |_| query.with(|q| query_from(|key| q.get_str(key))));
    view! {
        <Title text="Logs" />
        <section class="page page-logs">
            <h1>"Logs"</h1>
            {move || query.with(|q| view! { <LogFilters values=q.clone() tail=mode.get() == Mode::Tail /> })}
            <nav class="logs-modes" aria-label="Search or live tail">
                {move || query.with(|q| {
                    let search = logs_href(q, None, false);
                    let tail = logs_href(q, None, true);
                    let current = mode.get();
                    view! {
                        <a href=search class="logs-mode" class:is-current=current == Mode::Search>"Search"</a>
                        <a href=tail class="logs-mode logs-mode-tail" class:is-current=current == Mode::Tail>"● Live tail"</a>
                    }
                })}
            </nav>
            {move || match (mode.get(), parsed.get()) {
                (_, Err(message)) => view! { <p class="notice is-down" role="alert">"✕ These filters don't work: " {message}</p> }.into_any(),
                (Mode::Tail, Ok(filters)) => view! { <LiveTail stream_url=tail_url(&filters) /> }.into_any(),
                (Mode::Search, Ok(filters)) => view! { <SearchResults filters /> }.into_any(),
            }}
        </section>
    }
    .into_any()
}

#[component]
fn SearchResults(filters: LogQuery) -> impl IntoView {
    let query = use_query_map();
    let page = Resource::new(move || filters.clone(), get_logs);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Searching…"</p> }>
            {move || Suspend::new(async move {
                let result = page.await;
                let query = query.get_untracked();
                match result {
                    Ok(page) => view! { <Results page query /> }.into_any(),
                    Err(error) => view! { <SearchError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The filter form: a GET to this page; in tail mode it keeps the tail on.
#[component]
fn LogFilters(values: ParamsMap, tail: bool) -> impl IntoView {
    let value = |key: &str| values.get(key).unwrap_or_default();
    let (range, level) = (value("range"), value("level"));
    let ranges = LogRange::ALL
        .into_iter()
        .map(|r| {
            let selected = range == r.as_str() || (range.is_empty() && r == LogRange::default());
            view! { <option value=r.as_str() selected=selected>{r.label()}</option> }
        })
        .collect_view();
    let levels = LogLevel::ALL
        .into_iter()
        .map(|l| view! { <option value=l.as_str() selected=level == l.as_str()>{format!("{} {} and worse", level_glyph(l), l.as_str())}</option> })
        .collect_view();
    let text_field = |key: &'static str, label: &'static str, hint: &'static str| {
        let current = value(key);
        view! {
            <label class="logs-field">
                <span>{label}</span>
                <input name=key value=current placeholder=hint autocomplete="off" spellcheck="false" />
            </label>
        }
    };
    let q = value("q");
    let context_fields = [
        ("cluster", "Cluster", "exact name"),
        ("node", "Node", "exact name"),
        ("service", "Service", "exact name"),
        ("instance", "Instance", "instance id"),
        ("trace_id", "Trace id", "32 hex digits"),
    ]
    .into_iter()
    .map(|(key, label, hint)| text_field(key, label, hint))
    .collect_view();
    view! {
        <Form method="get" action="/logs" attr:class="panel logs-filters" attr:aria-label="Filter the logs">
            <label class="logs-field logs-field-q">
                <span>"Text"</span>
                <input name="q" value=q placeholder=r#"words, "a phrase", or, -word"# autocomplete="off" spellcheck="false" />
            </label>
            <label class="logs-field" class:is-disabled=tail>
                <span>"Range"</span>
                <select name="range" disabled=tail title=if tail { "a live tail shows lines from now on" } else { "" }>{ranges}</select>
            </label>
            <label class="logs-field">
                <span>"Level"</span>
                <select name="level">
                    <option value="" selected=level.is_empty()>"all levels"</option>
                    {levels}
                </select>
            </label>
            {context_fields}
            {tail.then(|| view! { <input type="hidden" name="mode" value="tail" /> })}
            <div class="logs-filter-actions">
                <button type="submit" class="logs-apply">{if tail { "Tail these" } else { "Search" }}</button>
                <a class="logs-clear" href=if tail { "/logs?mode=tail" } else { "/logs" }>"Clear filters"</a>
            </div>
        </Form>
    }
    .into_any()
}

#[component]
fn Results(page: LogPage, query: ParamsMap) -> impl IntoView {
    let clock = use_clock();
    let loaded_at = clock.0.get_untracked();
    let paged = query.get_str("before").is_some();
    let count = page.lines.len();
    let older = page.next.as_deref().map(|next| logs_href(&query, Some(next), false));
    let newest = paged.then(|| logs_href(&query, None, false));
    let summary = match (count, paged) {
        (0, true) => "No older lines.".to_owned(),
        (0, false) => format!("No lines match since {} UTC.", page.since.format("%Y-%m-%d %H:%M")),
        (1, _) => "1 line, newest first".to_owned(),
        (n, _) => {
            format!("{n} lines, newest first{}", if older.is_some() { " (older ones on the next page)" } else { "" })
        }
    };
    view! {
        <div class="panel logs-results">
            {page.counts.map(|counts| view! { <LevelTotals counts /> })}
            <p class="logs-summary">
                <span class="logs-count" class:is-empty=count == 0>{summary}</span>
                <span class="data-age">
                    {move || format!("searched {}", describe_age((clock.0.get() - loaded_at).num_seconds().max(0)))}
                </span>
            </p>
            <ol class="log-lines">
                {page.lines.into_iter().map(|line| view! { <LogLineRow line /> }).collect_view()}
            </ol>
            <nav class="logs-pager" aria-label="Log pages">
                {newest.map(|href| view! { <a class="logs-newest" href=href>"← Newest"</a> })}
                {older.map(|href| view! { <a class="logs-older" href=href>"Older →"</a> })}
            </nav>
        </div>
    }
    .into_any()
}

/// Matching lines per level over the whole search: zero shows as 0, never as a blank.
#[component]
fn LevelTotals(counts: LevelCounts) -> impl IntoView {
    let total = counts.total();
    let items = [
        (LogLevel::Fatal, counts.fatal),
        (LogLevel::Error, counts.error),
        (LogLevel::Warning, counts.warning),
        (LogLevel::Info, counts.info),
        (LogLevel::Debug, counts.debug),
    ]
    .into_iter()
    .map(|(level, n)| {
        view! {
            <li class=format!("logs-total is-{}", level.as_str()) class:is-zero=n == 0 data-level=level.as_str() data-count=n>
                <span aria-hidden="true">{level_glyph(level)}</span>
                {format!(" {n} {}", level.as_str())}
            </li>
        }
    })
    .collect_view();
    view! {
        <ul class="logs-totals" aria-label=format!("{total} matching lines by level")>
            {items}
            <li class="logs-total-all">{format!("{total} in all")}</li>
        </ul>
    }
}

#[component]
fn SearchError(error: UiError) -> impl IntoView {
    match error.status {
        401 => view! {
            <div class="panel logs-refusal">
                <p>"Sign in to see the logs."</p>
                <a href="/login?next=%2Flogs">"Sign in"</a>
            </div>
        }
        .into_any(),
        400 | 422 => {
            view! { <p class="notice is-down" role="alert">"✕ These filters don't work: " {error.message}</p> }
                .into_any()
        }
        _ => view! { <p class="notice is-down" role="alert">"✕ The logs could not be searched: " {error.message}</p> }
            .into_any(),
    }
}

/// The search the URL asks for; a level or range that isn't one of ours is an error naming it.
fn query_from<'q>(query: impl Fn(&str) -> Option<&'q str>) -> Result<LogQuery, String> {
    let text = |key: &str| query(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(LogQuery {
        range: text("range").map(|r| LogRange::parse(&r)).transpose()?.unwrap_or_default(),
        level: text("level").map(|l| LogLevel::parse(&l).map_err(|e| format!("level: {e}"))).transpose()?,
        cluster: text("cluster"),
        node: text("node"),
        service: text("service"),
        instance: text("instance"),
        trace_id: text("trace_id"),
        q: text("q"),
        before: text("before"),
    })
}

/// The tail's stream with the same filters.
fn tail_url(filters: &LogQuery) -> String {
    let pairs: Vec<String> =
        filters.tail_pairs().into_iter().map(|(key, value)| format!("{key}={}", percent_encode(&value))).collect();
    if pairs.is_empty() { "/api/v1/logs/tail".to_owned() } else { format!("/api/v1/logs/tail?{}", pairs.join("&")) }
}

/// This page with the same filters (empty ones dropped), a cursor, and search or tail mode.
fn logs_href(query: &ParamsMap, before: Option<&str>, tail: bool) -> String {
    let mut pairs: Vec<String> = FILTER_KEYS
        .iter()
        .filter_map(|key| {
            let value = query.get_str(key)?.trim();
            (!value.is_empty()).then(|| format!("{key}={}", percent_encode(value)))
        })
        .collect();
    pairs.extend(before.map(|cursor| format!("before={}", percent_encode(cursor))));
    if tail {
        pairs.push("mode=tail".to_owned());
    }
    if pairs.is_empty() { "/logs".to_owned() } else { format!("/logs?{}", pairs.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<'q>(pairs: &'q [(&'q str, &'q str)]) -> impl Fn(&str) -> Option<&'q str> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    #[test]
    fn the_url_becomes_a_query_and_the_tail_url_keeps_its_filters_as_text() {
        let parsed =
            query_from(query(&[("level", "warning"), ("service", " web "), ("q", "a&b=<c>"), ("range", "6h")]))
                .expect("valid");
        assert_eq!(
            (parsed.level, parsed.range, parsed.service.as_deref()),
            (Some(LogLevel::Warning), LogRange::Hours6, Some("web"))
        );
        assert_eq!(tail_url(&parsed), "/api/v1/logs/tail?level=warning&service=web&q=a%26b%3D%3Cc%3E");
        assert!(query_from(query(&[("level", "loud")])).expect_err("not a level").contains("level"));
        assert!(query_from(query(&[("range", "1y")])).expect_err("not a range").contains("range"));
    }
}
