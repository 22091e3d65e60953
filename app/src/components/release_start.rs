//! The service page's "start release" form: strategy, target version (typed, the service's
//! versions offered), a steps preset and analysis thresholds with sensible defaults. It is checked here
//! (the same checks compile to wasm and run on the server) and confirmed in a dialog that shows
//! the split before → after before it is sent.

use leptos::prelude::*;

use crate::api::{StartRelease as StartReleaseFn, get_idempotency_key};
use crate::backend::Acted;
use crate::components::release_actions::{describe_weights, strategy_label};
pub use crate::components::release_start_form::{STEP_PRESETS, StartForm, stable_version};
use crate::components::release_view::SplitBar;
use crate::model::releases::Strategy;
use crate::model::traffic::{TrafficPolicy, VersionWeight};

/// A start waiting for confirmation: what it will send and the split before → after.
#[derive(Debug, Clone, PartialEq)]
pub struct StartAsk {
    pub service: String,
    pub form: StartForm,
    pub idempotency_key: String,
    pub before: Vec<VersionWeight>,
    pub after: Vec<VersionWeight>,
}

/// The form's state, owned by the panel (created once), so a refetch of the panel's data (any
/// event) re-renders the form without losing what was typed or closing the confirmation.
#[derive(Clone, Copy)]
pub struct StartState {
    pub form: RwSignal<Option<StartForm>>,
    pub asking: RwSignal<Option<StartAsk>>,
    pub error: RwSignal<Option<String>>,
}

impl StartState {
    pub fn new() -> Self {
        Self { form: RwSignal::new(None), asking: RwSignal::new(None), error: RwSignal::new(None) }
    }
}

impl Default for StartState {
    fn default() -> Self {
        Self::new()
    }
}

#[component]
pub fn StartReleaseForm(
    service: String,
    versions: Vec<String>,
    policy: TrafficPolicy,
    state: StartState,
) -> impl IntoView {
    let StartState { form: typed, asking, error } = state;
    if typed.with_untracked(Option::is_none) {
        let stable_now = stable_version(&policy, &versions, "");
        let default_target = versions.iter().find(|v| **v != stable_now).cloned().unwrap_or_default();
        typed.set(Some(StartForm::new(default_target, policy.revision)));
    }
    // Reads and writes of the typed form (always present from here on).
    let form = Signal::derive(move || typed.get().unwrap_or_else(|| StartForm::new(String::new(), 0)));
    let edit = move |change: &dyn Fn(&mut StartForm)| {
        typed.update(|f| {
            if let Some(f) = f {
                change(f);
            }
        })
    };
    let (service_name, policy) = (StoredValue::new(service), StoredValue::new(policy));
    let versions = StoredValue::new(versions);
    let ask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // The revision the operator sees on the page now is the one the start is based on.
        let mut f = form.get_untracked();
        f.expected_revision = policy.with_value(|p| p.revision);
        match f.to_request() {
            Err(message) => error.set(Some(format!("✕ {message}"))),
            Ok(_) => {
                error.set(None);
                let current = policy.get_value();
                let stable = versions.with_value(|v| stable_version(&current, v, &f.target_version));
                let after = f.weights_after(&current, &stable);
                let service = service_name.get_value();
                leptos::task::spawn_local(async move {
                    match get_idempotency_key().await {
                        Ok(idempotency_key) => asking.set(Some(StartAsk {
                            service,
                            form: f,
                            idempotency_key,
                            before: current.weights,
                            after,
                        })),
                        Err(e) => error.set(Some(format!("✕ {}", e.message))),
                    }
                });
            }
        }
    };
    let options = versions.with_value(|versions| {
        versions.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()
    });
    let presets = STEP_PRESETS.iter().map(|p| view! { <option value=*p>{*p}</option> }).collect_view();
    let strategies = [Strategy::Canary, Strategy::BlueGreen, Strategy::Rolling, Strategy::Rollback]
        .into_iter()
        .map(|s| view! { <option value=strategy_label(s)>{strategy_label(s)}</option> })
        .collect_view();
    fn number<T: std::str::FromStr>(value: String) -> Option<T> {
        value.trim().parse().ok()
    }
    let is_canary = move || form.with(|f| f.strategy == Strategy::Canary);
    view! {
        <form class="release-start" on:submit=ask novalidate=true>
            <h3>"Start a release"</h3>
            <label>"Strategy "
                <select name="strategy" on:change=move |ev| {
                    let strategy = match event_target_value(&ev).as_str() {
                        "blue-green" => Strategy::BlueGreen,
                        "rolling" => Strategy::Rolling,
                        "rollback" => Strategy::Rollback,
                        _ => Strategy::Canary,
                    };
                    edit(&|f| f.strategy = strategy);
                }>{strategies}</select>
            </label>
            // Typed, with the known versions offered: a rolling release deploys a version that
            // may not run anywhere yet.
            <label>"Target version "
                <input type="text" name="target_version" list="release-start-versions" autocomplete="off"
                    prop:value=move || form.with(|f| f.target_version.clone())
                    on:change=move |ev| { let value = event_target_value(&ev); edit(&|f| f.target_version = value.clone()) } />
                <datalist id="release-start-versions">{options}</datalist>
            </label>
            <fieldset class="release-start-canary" disabled=move || !is_canary()>
                <legend>"Canary steps and analysis"</legend>
                <label>"Steps (%) "
                    <select name="steps" on:change=move |ev| { let value = event_target_value(&ev); edit(&|f| f.steps = value.clone()) }>{presets}</select>
                </label>
                <label>"Hold per step (s) "
                    <input type="number" min="1" name="hold_seconds" prop:value=move || form.with(|f| f.hold_seconds.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.hold_seconds = v) } />
                </label>
                <label>"Max jump by hand (%) "
                    <input type="number" min="1" max="100" name="max_jump" prop:value=move || form.with(|f| f.max_jump.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.max_jump = v) } />
                </label>
                <label>"Max canary 5xx (%) "
                    <input type="number" min="0" max="100" step="0.1" name="max_error_percent"
                        prop:value=move || form.with(|f| f.max_error_percent.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.max_error_percent = v) } />
                </label>
                <label>"Max p99 vs stable (×) "
                    <input type="number" min="1" step="0.1" name="max_p99_ratio" prop:value=move || form.with(|f| f.max_p99_ratio.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.max_p99_ratio = v) } />
                </label>
                <label>"Min samples per interval "
                    <input type="number" min="0" name="min_samples" prop:value=move || form.with(|f| f.min_samples.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.min_samples = v) } />
                </label>
                <label>"Failing intervals to roll back "
                    <input type="number" min="1" name="breaches_to_rollback" prop:value=move || form.with(|f| f.breaches_to_rollback.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.breaches_to_rollback = v) } />
                </label>
            </fieldset>
            <fieldset class="release-start-bluegreen" disabled=move || form.with(|f| f.strategy != Strategy::BlueGreen)>
                <legend>"Blue-green smoke check (against green directly, before the switch)"</legend>
                <label>"Path "
                    <input type="text" name="smoke_path" prop:value=move || form.with(|f| f.smoke_path.clone())
                        on:change=move |ev| { let value = event_target_value(&ev); edit(&|f| f.smoke_path = value.clone()) } />
                </label>
                <label>"Expected status "
                    <input type="number" min="100" max="599" name="smoke_status" prop:value=move || form.with(|f| f.smoke_status.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.smoke_status = v) } />
                </label>
            </fieldset>
            <fieldset class="release-start-rolling" disabled=move || form.with(|f| f.strategy != Strategy::Rolling)>
                <legend>"Rolling: instances replaced one node at a time by the deployer"</legend>
                <label>"Ready time per instance (s) "
                    <input type="number" min="10" max="3600" name="ready_timeout_seconds"
                        prop:value=move || form.with(|f| f.ready_timeout_seconds.to_string())
                        on:change=move |ev| if let Some(v) = number(event_target_value(&ev)) { edit(&|f| f.ready_timeout_seconds = v) } />
                </label>
            </fieldset>
            <label>"Reason "
                <input type="text" name="reason" placeholder="optional, for the audit log"
                    on:change=move |ev| { let value = event_target_value(&ev); edit(&|f| f.reason = value.clone()) } />
            </label>
            {move || error.get().map(|e| view! { <p class="notice is-down" role="alert">{e}</p> })}
            <button type="submit" class="release-start-submit">"Review the start…"</button>
        </form>
    }
}

/// The start's confirmation: the split before → after, then the start with the form's key.
#[component]
pub fn StartDialog(state: StartState, csrf: String, done: Callback<()>) -> impl IntoView {
    let StartState { form: typed, asking, error } = state;
    let start = ServerAction::<StartReleaseFn>::new();
    Effect::new(move |_| match start.value().get() {
        Some(Ok(Acted::Applied { .. })) => {
            asking.set(None);
            typed.set(None);
            start.value().set(None);
            done.run(());
        }
        Some(Ok(Acted::Stale { conflict })) => {
            asking.set(None);
            start.value().set(None);
            error.set(Some(format!(
                "▲ Not started — {}. Now: {} (revision {}). Check and start again.",
                conflict.error,
                describe_weights(&conflict.current_policy.weights),
                conflict.current_policy.revision
            )));
        }
        Some(Err(e)) => {
            asking.set(None);
            start.value().set(None);
            error.set(Some(format!("✕ Not started: {}", e.message)));
        }
        None => {}
    });
    let csrf = StoredValue::new(csrf);
    move || {
        asking.get().map(|ask| {
            let title = format!("Start a {} release of {}", strategy_label(ask.form.strategy), ask.form.target_version);
            let StartAsk { service, form, idempotency_key, before, after } = ask;
            let rolling_note = (form.strategy == Strategy::Rolling).then(|| {
                format!(
                    "Then each node running the stable version gets {} (started by the deployer), one at a time: \
                     once it is healthy the versions share traffic by instance count and the old instance there is \
                     stopped. A new instance not healthy within {} s stops the release where it is.",
                    form.target_version, form.ready_timeout_seconds
                )
            });
            let send = move |_| {
                start.dispatch(StartReleaseFn {
                    csrf: csrf.get_value(),
                    service: service.clone(),
                    form: form.clone(),
                    idempotency_key: idempotency_key.clone(),
                });
            };
            view! {
                <div class="release-dialog-backdrop">
                    <div class="release-dialog panel" role="dialog" aria-modal="true" aria-labelledby="release-start-title"
                        on:keydown=move |ev| if ev.key() == "Escape" { asking.set(None) }>
                        <h2 id="release-start-title">{title.clone()}</h2>
                        <h3>"Traffic now"</h3>
                        <SplitBar weights=before />
                        <h3>"Traffic after the start"</h3>
                        <SplitBar weights=after />
                        {rolling_note.map(|note| view! { <p class="release-dialog-note">{note}</p> })}
                        <div class="release-dialog-buttons">
                            <button type="button" class="release-cancel" on:click=move |_| asking.set(None)>"Cancel"</button>
                            <button type="button" class="release-confirm" disabled=move || start.pending().get() on:click=send>{title}</button>
                        </div>
                    </div>
                </div>
            }
        })
    }
}
