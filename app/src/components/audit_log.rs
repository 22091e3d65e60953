//! The audit log as a table: one row per record, outcome as glyph and word, changes as compact
//! JSON behind a `<details>`. Everything in a record came from outside (user names typed at
//! the sign-in form, request paths), so it is only ever rendered as text.

use leptos::prelude::*;
use serde_json::Value;

use crate::components::status::{Status, StatusMark};
use crate::components::timestamp::Timestamp;
use crate::model::audit::{AuditOutcome, AuditRecord};

/// How an outcome reads: ● success, ▲ failed, ✕ denied (the shared status vocabulary).
pub fn outcome_status(outcome: AuditOutcome) -> Status {
    match outcome {
        AuditOutcome::Success => Status::Healthy,
        AuditOutcome::Failed => Status::Degraded,
        AuditOutcome::Denied => Status::Down,
    }
}

/// What a change touched, for the `<summary>`: the top-level fields that differ, or
/// "created" / "removed" when only one side exists.
pub fn change_summary(before: Option<&Value>, after: Option<&Value>) -> String {
    match (before, after) {
        (None, Some(_)) => "created".into(),
        (Some(_), None) => "removed".into(),
        (Some(Value::Object(before)), Some(Value::Object(after))) => {
            let mut keys: Vec<&str> = after.keys().chain(before.keys()).map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            let changed: Vec<&str> = keys.into_iter().filter(|k| before.get(*k) != after.get(*k)).collect();
            if changed.is_empty() { "no change".into() } else { changed.join(", ") }
        }
        (Some(before), Some(after)) if before == after => "no change".into(),
        _ => "changed".into(),
    }
}

/// The records of one page, newest first as the server sent them.
#[component]
pub fn AuditTable(records: Vec<AuditRecord>) -> impl IntoView {
    view! {
        <table class="audit-table">
            <thead>
                <tr>
                    <th scope="col" class="audit-col-time">"Time"</th>
                    <th scope="col" class="audit-col-actor">"Actor"</th>
                    <th scope="col" class="audit-col-action">"Action"</th>
                    <th scope="col" class="audit-col-target">"Target"</th>
                    <th scope="col" class="audit-col-outcome">"Outcome"</th>
                    <th scope="col" class="audit-col-detail">"Detail"</th>
                    <th scope="col" class="audit-col-change">"Before → after"</th>
                    <th scope="col" class="audit-col-source">"Source · request id"</th>
                </tr>
            </thead>
            <tbody>{records.into_iter().map(|record| view! { <AuditRow record /> }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn AuditRow(record: AuditRecord) -> impl IntoView {
    let outcome = record.outcome;
    let action = record.action.clone();
    let dash = || "—".to_string();
    view! {
        <tr
            class="audit-row"
            class:is-denied=outcome == AuditOutcome::Denied
            class:is-failed=outcome == AuditOutcome::Failed
            data-action=action
            data-outcome=outcome.as_str()
        >
            <td class="audit-time">
                <Timestamp at=record.at />
            </td>
            <td class="audit-actor">
                <span class="audit-actor-kind">{record.actor_kind}</span>
                " "
                <span class="audit-actor-name">{record.actor_name}</span>
            </td>
            <td class="audit-action">
                <code>{record.action}</code>
            </td>
            <td class="audit-target">{record.target.unwrap_or_else(dash)}</td>
            <td class="audit-outcome">
                <StatusMark status=outcome_status(outcome) label=outcome.as_str() />
            </td>
            <td class="audit-detail">
                {record.detail.unwrap_or_else(dash)}
                {record.reason.map(|reason| view! { <span class="audit-reason">"Reason: " {reason}</span> })}
            </td>
            <td class="audit-change">
                <ChangeDetails before=record.before after=record.after />
            </td>
            <td class="audit-source">
                <span class="audit-address">{record.source_address.unwrap_or_else(dash)}</span>
                " "
                <code class="audit-request-id">{record.request_id.unwrap_or_else(dash)}</code>
            </td>
        </tr>
    }
    .into_any()
}

/// Before and after as compact JSON, collapsed behind the names of what changed.
#[component]
fn ChangeDetails(before: Option<Value>, after: Option<Value>) -> impl IntoView {
    if before.is_none() && after.is_none() {
        return view! { <span class="muted">"—"</span> }.into_any();
    }
    let summary = change_summary(before.as_ref(), after.as_ref());
    // `Value`'s Display is compact JSON.
    let compact = |value: Option<Value>| value.map_or_else(|| "—".to_string(), |v| v.to_string());
    view! {
        <details class="audit-change-details">
            <summary>{summary}</summary>
            <dl class="audit-change-values">
                <dt>"before"</dt>
                <dd>
                    <code>{compact(before)}</code>
                </dd>
                <dt>"after"</dt>
                <dd>
                    <code>{compact(after)}</code>
                </dd>
            </dl>
        </details>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::change_summary;

    #[test]
    fn a_change_is_summarised_by_the_fields_that_differ() {
        let before = json!({"username": "erin", "role": "viewer", "disabled": false});
        let after = json!({"username": "erin", "role": "admin", "disabled": true});
        assert_eq!(change_summary(Some(&before), Some(&after)), "disabled, role");
        assert_eq!(change_summary(None, Some(&after)), "created");
        assert_eq!(change_summary(Some(&before), None), "removed");
        assert_eq!(change_summary(Some(&before), Some(&before)), "no change");
    }
}
