//! The live event stream in the browser: one `EventSource` on `/api/v1/events` per page that
//! shows live state. Change events bump a counter (at most twice a second) that the page's data
//! resources depend on, so they refetch the server-aggregated view; heartbeats keep the
//! "live · updated N s ago" honest. The browser reconnects by itself with `Last-Event-ID`.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::components::live::{STALE_AFTER_SECONDS, describe_age, use_clock};

/// Every change event type the server sends (the SSE `event:` names).
pub const CHANGE_EVENTS: [&str; 10] = [
    "instance_registered",
    "instance_deregistered",
    "instance_expired",
    "instance_removed",
    "health_changed",
    "breaker_changed",
    "topology_edited",
    "traffic_changed",
    "release_changed",
    "verdict_recorded",
];

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedState {
    /// Server-rendered, or the stream is opening.
    Connecting,
    Live,
    /// The connection dropped; the browser is retrying.
    Reconnecting,
}

/// Handles a page reads: `changes` to refetch on, the rest to say how fresh it is.
#[derive(Clone, Copy)]
pub struct EventFeed {
    pub changes: RwSignal<u64>,
    pub state: RwSignal<FeedState>,
    pub last_heartbeat: RwSignal<Option<DateTime<Utc>>>,
}

/// Opens the stream for the current page (in the browser; a no-op on the server) and closes it
/// when the page goes away.
pub fn use_event_feed() -> EventFeed {
    let feed = EventFeed {
        changes: RwSignal::new(0),
        state: RwSignal::new(FeedState::Connecting),
        last_heartbeat: RwSignal::new(None),
    };
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::connect(feed));
    feed
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::{cell::Cell, rc::Rc};

    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::{JsCast, closure::Closure};
    use web_sys::{EventSource, MessageEvent};

    use super::{CHANGE_EVENTS, EventFeed, FeedState};
    use crate::model::events::StreamHeartbeat;

    /// Changes within this window cause one refetch.
    const DEBOUNCE_MS: u64 = 500;

    pub fn connect(feed: EventFeed) {
        let Ok(source) = EventSource::new("/api/v1/events") else {
            feed.state.set(FeedState::Reconnecting);
            return;
        };
        let pending = Rc::new(Cell::new(false));
        let on_change = Closure::<dyn Fn(MessageEvent)>::new(move |_: MessageEvent| {
            if pending.replace(true) {
                return;
            }
            let pending = pending.clone();
            set_timeout(
                move || {
                    pending.set(false);
                    feed.changes.update(|n| *n += 1);
                },
                std::time::Duration::from_millis(DEBOUNCE_MS),
            );
        });
        for name in CHANGE_EVENTS {
            let _ = source.add_event_listener_with_callback(name, on_change.as_ref().unchecked_ref());
        }
        let on_heartbeat = Closure::<dyn Fn(MessageEvent)>::new(move |message: MessageEvent| {
            let beat = message.data().as_string().and_then(|data| serde_json::from_str::<StreamHeartbeat>(&data).ok());
            if let Some(beat) = beat {
                feed.last_heartbeat.set(Some(beat.at));
            }
            feed.state.set(FeedState::Live);
        });
        let _ = source.add_event_listener_with_callback("heartbeat", on_heartbeat.as_ref().unchecked_ref());
        let on_open = Closure::<dyn Fn()>::new(move || {
            feed.state.set(FeedState::Live);
            // Whatever happened while disconnected: refetch once.
            feed.changes.update(|n| *n += 1);
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let on_error = Closure::<dyn Fn()>::new(move || feed.state.set(FeedState::Reconnecting));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let held = SendWrapper::new((source, on_change, on_heartbeat, on_open, on_error));
        on_cleanup(move || {
            let (source, ..) = held.take();
            source.close();
        });
    }
}

/// "● live · updated 3 s ago", "▲ reconnecting…", "✕ stale 47 s": how fresh the page's data is.
#[component]
pub fn Freshness(feed: EventFeed, #[prop(into)] generated_at: Signal<Option<DateTime<Utc>>>) -> impl IntoView {
    let clock = use_clock();
    let text = move || {
        let now = clock.0.get();
        let data_age = generated_at.get().map(|at| (now - at).num_seconds().max(0));
        // With a live stream, data is as fresh as the last heartbeat that brought no change.
        let heard = feed.last_heartbeat.get().map(|at| (now - at).num_seconds().max(0));
        match (feed.state.get(), data_age) {
            (FeedState::Live, Some(age)) => {
                let age = heard.map_or(age, |h| h.min(age));
                if age > STALE_AFTER_SECONDS {
                    ("is-stale", format!("✕ stale {age} s — no word from the server"))
                } else {
                    ("is-live", format!("● live · updated {}", describe_age(age)))
                }
            }
            (FeedState::Reconnecting, Some(age)) => {
                ("is-stale", format!("▲ reconnecting… data from {}", describe_age(age)))
            }
            (_, Some(age)) if age > STALE_AFTER_SECONDS => ("is-stale", format!("◌ stale {age} s")),
            (_, Some(age)) => ("", format!("◌ connecting… data from {}", describe_age(age))),
            (_, None) => ("is-stale", "◌ no data yet".to_string()),
        }
    };
    view! {
        <p class=move || format!("freshness {}", text().0) role="status" aria-live="polite">{move || text().1}</p>
    }
}
