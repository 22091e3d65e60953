//! The frame around every page: brand, navigation, live store status and the theme switch.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::live::provide_clock;
use crate::components::readiness::{ReadinessStrip, provide_readiness};
use crate::components::theme::{ThemeToggle, initial_theme};
use crate::components::user_menu::{UserMenu, provide_current_user};

/// A navigation entry: a page that exists, or one that a later piece of work brings.
struct NavEntry {
    label: &'static str,
    target: NavTarget,
}

enum NavTarget {
    Page(&'static str),
    /// Not built yet: shown, greyed, saying what brings it — never a fake page.
    ArrivesWith(&'static str),
}

const NAV: &[NavEntry] = &[
    NavEntry { label: "Overview", target: NavTarget::Page("/") },
    NavEntry { label: "Topology", target: NavTarget::Page("/topology") },
    NavEntry { label: "Services", target: NavTarget::Page("/services") },
    NavEntry { label: "Releases", target: NavTarget::Page("/releases") },
    NavEntry { label: "Logs", target: NavTarget::Page("/logs") },
    NavEntry { label: "Audit", target: NavTarget::Page("/audit") },
    NavEntry { label: "Wall", target: NavTarget::ArrivesWith("the wall display") },
    NavEntry { label: "Admin", target: NavTarget::Page("/admin") },
];

/// The app frame. Marks itself `data-hydrated` once the wasm has taken over (tests wait on it).
#[component]
pub fn Shell(children: Children) -> impl IntoView {
    provide_clock();
    provide_readiness();
    provide_current_user();
    let theme = RwSignal::new(initial_theme());
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    let nav = NAV
        .iter()
        .map(|entry| match entry.target {
            NavTarget::Page(href) => view! { <A href=href attr:class="nav-link">{entry.label}</A> }.into_any(),
            NavTarget::ArrivesWith(what) => view! {
                <span class="nav-link is-pending" aria-disabled="true" title=format!("Arrives with {what}")>
                    {entry.label}
                    <small class="nav-pending-note">"arrives with " {what}</small>
                </span>
            }
            .into_any(),
        })
        .collect_view();

    view! {
        <div class="app" data-theme=move || theme.get().as_str() data-hydrated=move || hydrated.get().to_string()>
            <header class="app-header">
                <a class="app-brand" href="/">"opsdeck"</a>
                <nav class="app-nav" aria-label="Main">{nav}</nav>
                <div class="app-header-end">
                    <UserMenu />
                    <ThemeToggle theme />
                </div>
            </header>
            // The health of opsdeck itself, on its own row so it never competes with the menu.
            <div class="app-status">
                <ReadinessStrip />
            </div>
            <main class="app-main">{children()}</main>
        </div>
    }
}
