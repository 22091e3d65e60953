//! The audit log: who did what, when, from where, and how it ended, newest first. The filters
//! are a GET form whose values live in the URL, so every filtered view is a link and works
//! before (and without) the wasm; "Older →" pages back with the server's cursor.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::Form, hooks::use_query_map, params::ParamsMap};

use crate::api::{UiError, list_audit};
use crate::components::audit_log::AuditTable;
use crate::components::live::{describe_age, use_clock};
use crate::model::audit::{AuditAction, AuditFilter, AuditOutcome, AuditPage as Page};

/// The query parameters the filter form writes (and the page reads).
const FILTER_KEYS: [&str; 5] = ["actor", "action", "outcome", "since", "until"];

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| query.with(|q| filter_from_query(|key| q.get_str(key))));
    let page = Resource::new(
        move || filter.get(),
        |filter| async move {
            match filter {
                Ok(filter) => list_audit(filter).await,
                Err(message) => Err(UiError { status: 400, message }),
            }
        },
    );
    view! {
        <Title text="Audit log" />
        <section class="page page-audit">
            <h1>"Audit log"</h1>
            // Rebuilt on every navigation, so the fields always show the URL's filters.
            {move || query.with(|q| view! { <AuditFilters values=q.clone() /> })}
            <Transition fallback=|| view! { <p class="muted">"Loading the audit log…"</p> }>
                {move || Suspend::new(async move {
                    let result = page.await;
                    let query = query.get_untracked();
                    match result {
                        Ok(page) => view! { <AuditResults page query /> }.into_any(),
                        Err(error) => view! { <AuditError error /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

/// The filter form: a plain GET to this page (the router makes it a client-side navigation
/// once hydrated).
#[component]
fn AuditFilters(values: ParamsMap) -> impl IntoView {
    let value = |key: &str| values.get(key).unwrap_or_default();
    let (actor, action, outcome) = (value("actor"), value("action"), value("outcome"));
    // `datetime-local` shows only its own format; show a parsed time in it, else what was typed.
    let time_value = |key: &str| {
        let raw = value(key);
        parse_time(&raw).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()).unwrap_or(raw)
    };
    let (since, until) = (time_value("since"), time_value("until"));
    let actions = AuditAction::ALL
        .into_iter()
        .map(|a| view! { <option value=a.as_str() selected=action == a.as_str()>{a.as_str()}</option> })
        .collect_view();
    let outcomes = AuditOutcome::ALL
        .into_iter()
        .map(|o| {
            let glyph = crate::components::audit_log::outcome_status(o).glyph();
            view! { <option value=o.as_str() selected=outcome == o.as_str()>{format!("{glyph} {}", o.as_str())}</option> }
        })
        .collect_view();
    view! {
        <Form method="get" action="/audit" attr:class="panel audit-filters" attr:aria-label="Filter the audit log">
            <label class="audit-field">
                <span>"Actor"</span>
                <input name="actor" value=actor placeholder="exact name" autocomplete="off" spellcheck="false" />
            </label>
            <label class="audit-field">
                <span>"Action"</span>
                <select name="action">
                    <option value="" selected=action.is_empty()>"any action"</option>
                    {actions}
                </select>
            </label>
            <label class="audit-field">
                <span>"Outcome"</span>
                <select name="outcome">
                    <option value="" selected=outcome.is_empty()>"any outcome"</option>
                    {outcomes}
                </select>
            </label>
            <label class="audit-field">
                <span>"Since (UTC)"</span>
                <input name="since" type="datetime-local" step="1" value=since />
            </label>
            <label class="audit-field">
                <span>"Until (UTC)"</span>
                <input name="until" type="datetime-local" step="1" value=until />
            </label>
            <div class="audit-filter-actions">
                <button type="submit" class="audit-apply">"Apply filters"</button>
                <a class="audit-clear" href="/audit">"Clear"</a>
            </div>
        </Form>
    }
    .into_any()
}

#[component]
fn AuditResults(page: Page, query: ParamsMap) -> impl IntoView {
    let clock = use_clock();
    let loaded_at = clock.0.get_untracked();
    let filtered = FILTER_KEYS.iter().any(|key| query.get_str(key).is_some_and(|v| !v.trim().is_empty()));
    let paged = query.get_str("before").is_some();
    let count = page.records.len();
    let pairs = || (&query).into_iter().map(|(key, value)| (key.as_ref(), value));
    let older = page.next_before.map(|before| audit_href(pairs(), Some(before)));
    let newest = paged.then(|| audit_href(pairs(), None));
    let summary = match (count, filtered) {
        (0, true) => "No audit records match these filters.".to_string(),
        (0, false) if paged => "No older audit records.".to_string(),
        (0, false) => "The audit log is empty.".to_string(),
        (1, _) => "1 record, newest first".to_string(),
        (n, _) => {
            format!("{n} records, newest first{}", if older.is_some() { " (older ones on the next page)" } else { "" })
        }
    };
    view! {
        <div class="panel audit-results">
            <p class="audit-summary">
                <span class="audit-count" class:is-empty=count == 0>{summary}</span>
                <span class="data-age">
                    {move || format!("loaded {}", describe_age((clock.0.get() - loaded_at).num_seconds().max(0)))}
                </span>
            </p>
            {(count > 0).then(|| view! { <AuditTable records=page.records /> })}
            <nav class="audit-pager" aria-label="Audit log pages">
                {newest.map(|href| view! { <a class="audit-newest" href=href>"← Newest"</a> })}
                {older.map(|href| view! { <a class="audit-older" href=href>"Older →"</a> })}
            </nav>
        </div>
    }
    .into_any()
}

/// Why the log isn't shown, in words, with the way forward.
#[component]
fn AuditError(error: UiError) -> impl IntoView {
    match error.status {
        401 => view! {
            <div class="panel audit-refusal">
                <p>"Sign in to see the audit log."</p>
                <a href="/login?next=%2Faudit">"Sign in"</a>
            </div>
        }
        .into_any(),
        403 => view! { <p class="notice is-down" role="alert">"✕ " {error.message}</p> }.into_any(),
        400 | 422 => view! {
            <p class="notice is-down" role="alert">"✕ These filters don't work: " {error.message}</p>
        }
        .into_any(),
        _ => view! {
            <p class="notice is-down" role="alert">"✕ The audit log could not be loaded: " {error.message}</p>
        }
        .into_any(),
    }
}

/// The filter the URL asks for (`query` looks a parameter up); a value that isn't one of ours
/// is an error that names it.
fn filter_from_query<'q>(query: impl Fn(&str) -> Option<&'q str>) -> Result<AuditFilter, String> {
    let text = |key: &str| query(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let time = |key: &str| {
        text(key).map(|raw| {
            parse_time(&raw).ok_or_else(|| format!("{key}: {raw:?} is not a time like 2025-03-01T14:30 (UTC)"))
        })
    };
    if let Some(action) = text("action") {
        action.parse::<AuditAction>().map_err(|e| format!("action: {e}"))?;
    }
    if let Some(outcome) = text("outcome") {
        outcome.parse::<AuditOutcome>().map_err(|e| format!("outcome: {e}"))?;
    }
    let before = text("before")
        .map(|raw| raw.parse::<i64>().map_err(|_| format!("before: {raw:?} is not a record id")))
        .transpose()?;
    Ok(AuditFilter {
        actor: text("actor"),
        action: text("action"),
        outcome: text("outcome"),
        since: time("since").transpose()?,
        until: time("until").transpose()?,
        before,
        limit: None,
    })
}

/// A time from the filter form (`datetime-local`, read as UTC), RFC 3339, or a bare date
/// (midnight UTC).
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(raw) {
        return Some(time.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .or_else(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .map(|naive| naive.and_utc())
}

/// This page with the same filters (empty ones dropped) and the given cursor.
fn audit_href<'q>(query: impl IntoIterator<Item = (&'q str, &'q str)>, before: Option<i64>) -> String {
    let mut pairs: Vec<String> = query
        .into_iter()
        .filter(|(key, value)| FILTER_KEYS.contains(key) && !value.trim().is_empty())
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect();
    pairs.extend(before.map(|id| format!("before={id}")));
    if pairs.is_empty() { "/audit".into() } else { format!("/audit?{}", pairs.join("&")) }
}

/// Percent-encodes all but RFC 3986's unreserved characters; the same on the server and in
/// the browser, so links hydrate unchanged.
pub(crate) fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query lookup over pairs, as the page does over the URL's query.
    fn query<'q>(pairs: &'q [(&'q str, &'q str)]) -> impl Fn(&str) -> Option<&'q str> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    #[test]
    fn the_form_query_becomes_a_filter_with_empty_fields_ignored() {
        let filter = filter_from_query(query(&[
            ("actor", " erin "),
            ("action", "access.denied"),
            ("outcome", ""),
            ("since", "2025-03-01T14:30"),
            ("until", ""),
            ("before", "120"),
        ]))
        .expect("valid");
        assert_eq!(filter.actor.as_deref(), Some("erin"));
        assert_eq!(filter.action.as_deref(), Some("access.denied"));
        assert_eq!(filter.outcome, None);
        assert_eq!(filter.since.map(|t| t.to_rfc3339()).as_deref(), Some("2025-03-01T14:30:00+00:00"));
        assert_eq!(filter.before, Some(120));
    }

    #[test]
    fn a_value_that_is_not_ours_is_refused_by_name() {
        assert!(filter_from_query(query(&[("action", "rm -rf")])).expect_err("not an action").starts_with("action:"));
        assert!(filter_from_query(query(&[("since", "yesterday")])).expect_err("not a time").starts_with("since:"));
        assert!(filter_from_query(query(&[("before", "x")])).expect_err("not an id").starts_with("before:"));
    }

    #[test]
    fn times_are_read_as_utc_in_the_forms_people_type() {
        for raw in ["2025-03-01T14:30:00Z", "2025-03-01T15:30:00+01:00", "2025-03-01T14:30", "2025-03-01 14:30:00"] {
            assert_eq!(parse_time(raw).map(|t| t.to_rfc3339()).as_deref(), Some("2025-03-01T14:30:00+00:00"), "{raw}");
        }
        assert_eq!(parse_time("2025-03-01").map(|t| t.to_rfc3339()).as_deref(), Some("2025-03-01T00:00:00+00:00"));
    }

    #[test]
    fn the_older_link_keeps_the_filters_and_drops_empty_ones() {
        let q = [("actor", "a b&c"), ("action", ""), ("outcome", "denied"), ("before", "5")];
        assert_eq!(audit_href(q, Some(3)), "/audit?actor=a%20b%26c&outcome=denied&before=3");
        assert_eq!(audit_href(q, None), "/audit?actor=a%20b%26c&outcome=denied");
    }
}
