//! Live readiness of opsdeck's stores: fetched on the server for the first paint, then polled
//! from the browser, and shown with its age so a stale answer never looks live.

use leptos::prelude::*;

use crate::api::get_readiness;
use crate::components::live::{STALE_AFTER_SECONDS, describe_age, use_clock};
use crate::components::status::{Status, StatusMark};
use crate::model::{DependencyCheck, Readiness};

/// How often the browser asks again.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The readiness report shared by the header and the pages.
pub type ReadinessResource = Resource<Result<Readiness, crate::api::UiError>>;

/// Creates the polled readiness resource and provides it to the pages below.
pub fn provide_readiness() -> ReadinessResource {
    let poll = RwSignal::new(0_u64);
    let resource = Resource::new(move || poll.get(), |_| get_readiness());
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || poll.update(|n| *n += 1), POLL_EVERY) {
            on_cleanup(move || handle.clear());
        }
    });
    provide_context(resource);
    resource
}

/// The readiness resource the shell provided.
pub fn use_readiness() -> ReadinessResource {
    expect_context::<ReadinessResource>()
}

/// How a dependency check reads as a status.
pub fn check_status(check: &DependencyCheck) -> Status {
    if check.ok { Status::Healthy } else { Status::Down }
}

/// The header strip: one mark per store and the age of the report.
#[component]
pub fn ReadinessStrip() -> impl IntoView {
    let readiness = use_readiness();
    view! {
        <div class="readiness-strip" aria-live="polite">
            <Transition fallback=|| {
                view! { <StatusMark status=Status::Unknown label="checking stores…" /> }
            }>
                {move || Suspend::new(async move {
                    match readiness.await {
                        Ok(report) => view! { <ReadinessMarks report /> }.into_any(),
                        Err(_) => {
                            view! {
                                <StatusMark
                                    status=Status::Down
                                    label="opsdeck server unreachable — retrying"
                                />
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn ReadinessMarks(report: Readiness) -> impl IntoView {
    let clock = use_clock();
    let checked_at = report.checked_at;
    let age = move || (clock.0.get() - checked_at).num_seconds().max(0);
    let marks = report
        .checks
        .iter()
        .map(|check| {
            let word = if check.ok { "ready" } else { check.dependency.failure_word() };
            view! {
                <span class="readiness-item" data-dependency=format!("{:?}", check.dependency).to_lowercase()>
                    <StatusMark status=check_status(check) label=format!("{} {word}", check.dependency.label()) />
                </span>
            }
        })
        .collect_view();
    view! {
        {marks}
        <span class="data-age" class:is-stale=move || { age() > STALE_AFTER_SECONDS }>
            {move || {
                let seconds = age();
                if seconds > STALE_AFTER_SECONDS {
                    format!("stale {seconds} s")
                } else {
                    format!("checked {}", describe_age(seconds))
                }
            }}
        </span>
    }
}
