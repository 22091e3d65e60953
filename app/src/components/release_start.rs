//! The service page's "start release" form: strategy, target version (from the service's
//! versions), a steps preset and analysis thresholds with sensible defaults. It is checked here
//! (the same checks compile to wasm and run on the server) and confirmed in a dialog that shows
//! the split before → after before it is sent.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::api::{StartRelease as StartReleaseFn, get_idempotency_key};
use crate::backend::Acted;
use crate::components::release_actions::{describe_weights, strategy_label};
use crate::components::release_view::SplitBar;
use crate::model::releases::{AnalysisConfig, CanaryStep, SmokeCheck, StartRelease, Strategy};
use crate::model::traffic::{TrafficPolicy, VersionWeight};

/// Step presets offered (the first is the default).
pub const STEP_PRESETS: [&str; 3] = ["1, 5, 25, 50, 100", "10, 50, 100", "5, 10, 20, 40, 60, 80, 100"];

/// The form as typed; [`StartForm::to_request`] turns it into the API's [`StartRelease`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartForm {
    pub strategy: Strategy,
    pub target_version: String,
    pub expected_revision: i64,
    /// Canary shares, comma separated, rising, ending at 100.
    pub steps: String,
    pub hold_seconds: u32,
    pub max_jump: u8,
    /// The canary's largest 5xx share, in percent.
    pub max_error_percent: f64,
    pub max_p99_ratio: f64,
    pub min_samples: u32,
    pub interval_seconds: u32,
    pub breaches_to_rollback: u32,
    /// Blue-green: one smoke check against green directly (empty path: none).
    pub smoke_path: String,
    pub smoke_status: u16,
    pub reason: String,
}

impl StartForm {
    pub fn new(target_version: String, expected_revision: i64) -> Self {
        Self {
            strategy: Strategy::Canary,
            target_version,
            expected_revision,
            steps: STEP_PRESETS[0].to_owned(),
            hold_seconds: 60,
            max_jump: 50,
            max_error_percent: 5.0,
            max_p99_ratio: 1.5,
            min_samples: 50,
            interval_seconds: 30,
            breaches_to_rollback: 3,
            smoke_path: "/".to_owned(),
            smoke_status: 200,
            reason: String::new(),
        }
    }

    /// "1, 5, 25, 50, 100" → steps; they must rise and end at 100.
    pub fn parse_steps(&self) -> Result<Vec<CanaryStep>, String> {
        let mut steps = Vec::new();
        for part in self.steps.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let percent: u8 = part
                .trim_end_matches('%')
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| format!("steps: {part:?} is not a share from 1 to 100"))?;
            if steps.last().is_some_and(|s: &CanaryStep| s.percent >= percent) {
                return Err(format!("steps: each step must be larger than the one before ({part} is not)"));
            }
            steps.push(CanaryStep { percent, hold_seconds: self.hold_seconds });
        }
        match steps.last() {
            Some(last) if last.percent == 100 => Ok(steps),
            Some(_) => Err("steps: the last step must be 100 (the canary takes all traffic before promotion)".into()),
            None => Err("steps: at least one, e.g. 1, 5, 25, 50, 100".into()),
        }
    }

    pub fn to_request(&self) -> Result<StartRelease, String> {
        if self.target_version.trim().is_empty() && self.strategy != Strategy::Rollback {
            return Err("target version: pick the version to release".into());
        }
        if !(0.0..=100.0).contains(&self.max_error_percent) {
            return Err("max error rate: a percentage from 0 to 100".into());
        }
        if self.max_p99_ratio < 1.0 {
            return Err("max p99 ratio: 1.0 or more (1.5 = the canary may be 50 % slower)".into());
        }
        if self.interval_seconds == 0 || self.breaches_to_rollback == 0 || self.max_jump == 0 {
            return Err("interval, breaches and max jump: at least 1".into());
        }
        let canary = self.strategy == Strategy::Canary;
        let smoke_path = self.smoke_path.trim();
        let smoke_checks = match (self.strategy, smoke_path) {
            (Strategy::BlueGreen, "") => Vec::new(),
            (Strategy::BlueGreen, path) if !path.starts_with('/') => {
                return Err(format!("smoke check path {path:?}: start with '/', e.g. /healthz"));
            }
            (Strategy::BlueGreen, path) if !(100..=599).contains(&self.smoke_status) => {
                return Err(format!("smoke check on {path}: expected status 100–599, not {}", self.smoke_status));
            }
            (Strategy::BlueGreen, path) => vec![SmokeCheck {
                method: None,
                path: path.to_owned(),
                expect_status: self.smoke_status,
                expect_body_contains: None,
            }],
            _ => Vec::new(),
        };
        let reason = self.reason.trim();
        Ok(StartRelease {
            strategy: self.strategy,
            target_version: self.target_version.trim().to_owned(),
            expected_revision: self.expected_revision,
            steps: if canary { Some(self.parse_steps()?) } else { None },
            max_jump: canary.then_some(self.max_jump.min(100)),
            analysis: canary.then(|| AnalysisConfig {
                interval_seconds: self.interval_seconds,
                max_error_rate: self.max_error_percent / 100.0,
                max_p99_ratio: self.max_p99_ratio,
                min_samples: self.min_samples,
                breaches_to_rollback: self.breaches_to_rollback,
            }),
            smoke_checks,
            schema: None,
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
        })
    }

    /// The split right after the start, for the confirmation (the server decides in the end).
    pub fn weights_after(&self, policy: &TrafficPolicy, stable: &str) -> Vec<VersionWeight> {
        let first = match self.strategy {
            Strategy::Canary => self.parse_steps().ok().and_then(|s| s.first().map(|s| s.percent)).unwrap_or(0),
            Strategy::BlueGreen | Strategy::Rolling => 0,
            Strategy::Rollback => return policy.weights.clone(),
        };
        if first == 0 {
            return if policy.weights.is_empty() {
                vec![VersionWeight { version: stable.to_owned(), percent: 100 }]
            } else {
                policy.weights.clone()
            };
        }
        vec![
            VersionWeight { version: stable.to_owned(), percent: 100 - first },
            VersionWeight { version: self.target_version.clone(), percent: first },
        ]
    }
}

/// The version with the largest share now, or (no policy) the first that is not the target.
pub fn stable_version(policy: &TrafficPolicy, versions: &[String], target: &str) -> String {
    policy
        .weights
        .iter()
        .max_by_key(|w| w.percent)
        .map(|w| w.version.clone())
        .or_else(|| versions.iter().find(|v| v.as_str() != target).cloned())
        .unwrap_or_default()
}

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
            <label>"Target version "
                <select name="target_version" prop:value=move || form.with(|f| f.target_version.clone())
                    on:change=move |ev| { let value = event_target_value(&ev); edit(&|f| f.target_version = value.clone()) }>{options}</select>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(steps: &str) -> StartForm {
        StartForm { steps: steps.into(), ..StartForm::new("v2".into(), 3) }
    }

    #[test]
    fn the_default_form_makes_a_canary_with_five_steps_and_thresholds() {
        let request = form(STEP_PRESETS[0]).to_request().expect("defaults are valid");
        let steps: Vec<u8> = request.steps.expect("canary").iter().map(|s| s.percent).collect();
        assert_eq!(steps, [1, 5, 25, 50, 100]);
        assert_eq!(request.analysis.expect("canary").max_error_rate, 0.05);
        assert_eq!(request.expected_revision, 3);
    }

    #[test]
    fn steps_that_fall_or_stop_short_of_100_are_refused_with_why() {
        assert!(form("5, 1, 100").to_request().expect_err("refused").contains("larger"));
        assert!(form("1, 5, 50").to_request().expect_err("refused").contains("100"));
        assert!(form("0, 100").to_request().expect_err("refused").contains("1 to 100"));
    }

    #[test]
    fn blue_green_sends_no_steps_and_its_start_gives_green_no_traffic() {
        let f = StartForm { strategy: Strategy::BlueGreen, ..form(STEP_PRESETS[0]) };
        let request = f.to_request().expect("valid");
        assert_eq!(request.steps, None);
        assert_eq!(request.smoke_checks.len(), 1, "the default smoke check: GET / → 200");
        let bad = StartForm { smoke_path: "healthz".into(), ..f.clone() };
        assert!(bad.to_request().expect_err("refused").contains("start with '/'"));
        let policy = TrafficPolicy::none("shop");
        assert_eq!(f.weights_after(&policy, "v1"), vec![VersionWeight { version: "v1".into(), percent: 100 }]);
    }
}
