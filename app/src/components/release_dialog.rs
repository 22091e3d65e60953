//! The confirmation every release action goes through: it loads the server's preview of the
//! action (weights before → after, the instances that will get traffic, live canary-vs-stable
//! numbers, open breakers), shows a refusal instead of a confirm button when the server would
//! refuse, and confirms with the preview's revision and idempotency key. A stale revision
//! (409) shows the present and asks again; nothing is retried by itself.

use leptos::prelude::*;

use crate::api::{ActOnRelease, UiError, get_release_preview};
use crate::backend::{Acted, DialogPreview};
use crate::components::release_actions::{action_label, describe_weights, is_dangerous};
use crate::components::release_view::{ReleaseStateMark, SplitBar, VerdictLine};
use crate::model::releases::{PreviewInstance, Release, ReleaseAction};

/// An action someone asked for, waiting for confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub release: Release,
    pub action: ReleaseAction,
}

fn percent_of(action: &ReleaseAction) -> Option<u8> {
    match action {
        ReleaseAction::SetPercent { percent } => Some(*percent),
        _ => None,
    }
}

fn instance_list(instances: &[PreviewInstance], empty: &'static str) -> AnyView {
    if instances.is_empty() {
        return view! { <p class="muted">{empty}</p> }.into_any();
    }
    let items = instances
        .iter()
        .map(|i| view! { <li class="mono">{format!("{} @ {} on {}", i.version, i.address, i.node)}</li> })
        .collect_view();
    view! { <ul class="release-dialog-instances">{items}</ul> }.into_any()
}

/// The dialog, shown while `ask` holds an action; `done` runs after an applied action.
#[component]
pub fn ConfirmDialog(ask: RwSignal<Option<Ask>>, csrf: String, done: Callback<()>) -> impl IntoView {
    // Bumped by "preview again" after a conflict: a new preview, a new revision and a new key.
    let attempt = RwSignal::new(0_u32);
    let preview = Resource::new(
        move || (ask.get(), attempt.get()),
        |(ask, _)| async move {
            match ask {
                Some(ask) => get_release_preview(ask.release.id, ask.action.name().to_owned(), percent_of(&ask.action))
                    .await
                    .map(Some),
                None => Ok::<_, UiError>(None),
            }
        },
    );
    let confirm = ServerAction::<ActOnRelease>::new();
    let reason = RwSignal::new(String::new());
    let close = move || {
        ask.set(None);
        confirm.value().set(None);
        reason.set(String::new());
    };
    Effect::new(move |_| {
        if let Some(Ok(Acted::Applied { .. })) = confirm.value().get() {
            close();
            done.run(());
        }
    });
    let csrf = StoredValue::new(csrf);
    let send = move |ask: &Ask, dialog: &DialogPreview| {
        confirm.dispatch(ActOnRelease {
            csrf: csrf.get_value(),
            release_id: ask.release.id,
            action: ask.action.name().to_owned(),
            percent: percent_of(&ask.action),
            expected_revision: dialog.preview.revision,
            idempotency_key: dialog.idempotency_key.clone(),
            reason: Some(reason.get_untracked()),
        });
    };
    // The safe choice has the keyboard when the dialog opens (Escape closes, Tab reaches confirm).
    let cancel = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(button) = cancel.get() {
            let _ = button.focus();
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = cancel.get();
    });
    let again = move |_| {
        confirm.value().set(None);
        attempt.update(|n| *n += 1);
    };

    let body = move || {
        let Some(current) = ask.get() else { return ().into_any() };
        let title = action_label(&current.action, &current.release);
        let dangerous = is_dangerous(&current.action);
        let content = move || {
            let current = current.clone();
            Suspend::new(async move {
                let dialog = match preview.await {
                    Ok(Some(dialog)) => dialog,
                    Ok(None) => return ().into_any(),
                    Err(error) => {
                        return view! { <p class="notice is-down" role="alert">"✕ No preview: " {error.message}</p> }
                            .into_any();
                    }
                };
                let p = &dialog.preview;
                let outcome = move || {
                    confirm.value().get().map(|result| match result {
                        Ok(Acted::Stale { conflict }) => view! {
                            <div class="notice is-degraded release-dialog-conflict" role="alert">
                                <p>"▲ Not done — " {conflict.error.clone()} ". Nothing was changed."</p>
                                <p>"Now: " {describe_weights(&conflict.current_policy.weights)}
                                   " (revision " {conflict.current_policy.revision} ")"
                                   {conflict.current_release.as_ref().map(|r| view! { " · release " <ReleaseStateMark state=r.state /> })}
                                </p>
                                <button type="button" class="release-again" on:click=again>"Preview again"</button>
                            </div>
                        }
                        .into_any(),
                        Ok(Acted::Applied { .. }) => ().into_any(),
                        Err(error) => view! { <p class="notice is-down" role="alert">"✕ Not done: " {error.message}</p> }
                            .into_any(),
                    })
                };
                let stale = move || matches!(confirm.value().get(), Some(Ok(Acted::Stale { .. })));
                let buttons = match p.refusal.clone() {
                    Some(refusal) => view! {
                        <p class="notice is-down release-dialog-refusal" role="alert">"✕ Refused: " {refusal}</p>
                    }
                    .into_any(),
                    None => {
                        let (current, dialog) = (current.clone(), dialog.clone());
                        let label = action_label(&current.action, &current.release);
                        view! {
                            <button type="button" class="release-confirm" class:is-dangerous=dangerous
                                disabled=move || confirm.pending().get() || stale()
                                on:click=move |_| send(&current, &dialog)>
                                {label}
                            </button>
                        }
                        .into_any()
                    }
                };
                view! {
                    <div class="release-dialog-preview" data-revision=p.revision>
                        <h3>"Traffic now"</h3>
                        <SplitBar weights=p.weights_before.clone() />
                        <h3>"Traffic after"</h3>
                        <SplitBar weights=p.weights_after.clone() />
                        <h3>"Instances that will get traffic"</h3>
                        {instance_list(&p.receiving_instances, "none (no healthy instance of these versions)")}
                        <h3>"Canary vs stable, live"</h3>
                        <p><VerdictLine verdict=p.verdict.clone() /></p>
                        <h3>"Open circuit breakers"</h3>
                        {instance_list(&p.open_breakers, "none")}
                        <label class="release-dialog-reason">"Reason (for the audit log) "
                            <input type="text" bind:value=reason placeholder="optional" />
                        </label>
                    </div>
                    {outcome}
                    <div class="release-dialog-buttons">{buttons}</div>
                }
                .into_any()
            })
        };
        view! {
            <div class="release-dialog-backdrop">
                <div class="release-dialog panel" role="dialog" aria-modal="true" aria-labelledby="release-dialog-title"
                    on:keydown=move |ev| if ev.key() == "Escape" { close() }>
                    <h2 id="release-dialog-title">{title}</h2>
                    <Transition fallback=|| view! { <p class="muted">"Loading the preview…"</p> }>{content}</Transition>
                    <div class="release-dialog-buttons">
                        <button type="button" class="release-cancel" node_ref=cancel on:click=move |_| close()>"Cancel"</button>
                    </div>
                </div>
            </div>
        }
        .into_any()
    };
    view! { <div class="release-dialog-host">{body}</div> }
}
