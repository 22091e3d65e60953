//! The live tail in the browser: an `EventSource` on `/api/v1/logs/tail` with the page's
//! filters (the browser session authenticates it, as for `/api/v1/events`). Newest line first;
//! at most [`KEEP_LINES`] are kept (the oldest drop off, and the page says how many); pause
//! holds new lines back until resume; clear empties the view. "Missed N lines" notices come
//! from the server when this browser fell behind; a lost connection is said in the list too.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::components::live::{STALE_AFTER_SECONDS, describe_age, use_clock};
use crate::components::log_line::LogLineRow;
use crate::model::logs::LogLine;

/// Most lines the view keeps (and most held while paused).
pub const KEEP_LINES: usize = 1000;

/// Something in the tail's list. Nearly every item is a line, so boxing the large variant
/// would only add an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TailItem {
    Line {
        line: LogLine,
        received_ms: i64,
    },
    /// The server skipped lines because this viewer fell behind.
    Missed {
        missed: u64,
        at: DateTime<Utc>,
    },
    /// The connection dropped; lines sent meanwhile are not shown.
    Disconnected {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TailRow {
    pub key: u64,
    pub item: TailItem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailState {
    Connecting,
    Live,
    /// Connected, but the server says it is not receiving new lines (its database listener
    /// is reconnecting).
    NotListening,
    Reconnecting,
}

impl TailState {
    fn as_str(self) -> &'static str {
        match self {
            TailState::Connecting => "connecting",
            TailState::Live => "live",
            TailState::NotListening => "not-listening",
            TailState::Reconnecting => "reconnecting",
        }
    }
}

/// The tail's signals; `Copy`, so the browser callbacks can hold it.
#[derive(Clone, Copy)]
pub struct Tail {
    pub rows: RwSignal<VecDeque<TailRow>>,
    pub held: RwSignal<Vec<TailItem>>,
    pub paused: RwSignal<bool>,
    /// Lines dropped from view to keep it bounded.
    pub dropped: RwSignal<u64>,
    pub state: RwSignal<TailState>,
    pub last_heard: RwSignal<Option<DateTime<Utc>>>,
    next_key: StoredValue<u64>,
}

impl Tail {
    fn new() -> Self {
        Self {
            rows: RwSignal::new(VecDeque::new()),
            held: RwSignal::new(Vec::new()),
            paused: RwSignal::new(false),
            dropped: RwSignal::new(0),
            state: RwSignal::new(TailState::Connecting),
            last_heard: RwSignal::new(None),
            next_key: StoredValue::new(0),
        }
    }

    /// Shows an item, or holds it while paused.
    pub fn receive(&self, item: TailItem) {
        if self.paused.get_untracked() {
            let mut overflow = 0;
            self.held.update(|held| {
                held.push(item);
                while held.len() > KEEP_LINES {
                    held.remove(0);
                    overflow += 1;
                }
            });
            if overflow > 0 {
                self.dropped.update(|n| *n += overflow);
            }
        } else {
            self.show(vec![item]);
        }
    }

    fn show(&self, items: Vec<TailItem>) {
        let mut overflow = 0;
        self.rows.update(|rows| {
            for item in items {
                let key = self.next_key.get_value();
                self.next_key.set_value(key + 1);
                rows.push_front(TailRow { key, item });
            }
            while rows.len() > KEEP_LINES {
                rows.pop_back();
                overflow += 1;
            }
        });
        if overflow > 0 {
            self.dropped.update(|n| *n += overflow);
        }
    }

    pub fn resume(&self) {
        self.paused.set(false);
        let held = std::mem::take(&mut *self.held.write());
        self.show(held);
    }

    pub fn clear(&self) {
        self.rows.set(VecDeque::new());
        self.held.set(Vec::new());
        self.dropped.set(0);
    }
}

/// The live tail for `stream_url` (`/api/v1/logs/tail?…`). Opens in the browser only; the
/// server renders it "connecting".
#[component]
pub fn LiveTail(stream_url: String) -> impl IntoView {
    let tail = Tail::new();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::connect(&stream_url, tail));
    #[cfg(not(feature = "hydrate"))]
    let _ = stream_url;
    let clock = use_clock();
    let status = move || {
        let age = tail.last_heard.get().map(|at| (clock.0.get() - at).num_seconds().max(0));
        match (tail.state.get(), age) {
            (TailState::Live, Some(age)) if age > STALE_AFTER_SECONDS => {
                ("is-stale", format!("✕ stale {age} s — no word from the server"))
            }
            (TailState::Live, age) => ("is-live", format!("● live · last heard {}", describe_age(age.unwrap_or(0)))),
            (TailState::NotListening, _) => {
                ("is-stale", "▲ connected, but the server is not receiving new lines right now".to_owned())
            }
            (TailState::Reconnecting, _) => {
                ("is-stale", "▲ reconnecting… lines sent meanwhile won't show here (search has them)".to_owned())
            }
            (TailState::Connecting, _) => ("", "◌ connecting…".to_owned()),
        }
    };
    let summary = move || {
        let (shown, dropped) = (
            tail.rows.with(|rows| rows.iter().filter(|r| matches!(r.item, TailItem::Line { .. })).count()),
            tail.dropped.get(),
        );
        let mut text = match shown {
            0 => "No lines yet — new lines matching the filters appear here, newest first.".to_owned(),
            1 => "1 line, newest first".to_owned(),
            n => format!("{n} lines, newest first"),
        };
        if dropped > 0 {
            text.push_str(&format!(
                " · keeping the newest {KEEP_LINES}: {dropped} older lines dropped from view (search has them)"
            ));
        }
        text
    };
    let held = move || tail.held.with(Vec::len);
    view! {
        <div class="panel log-tail" data-tail-state=move || tail.state.get().as_str() data-paused=move || tail.paused.get().to_string()>
            <div class="log-tail-bar">
                <p class=move || format!("freshness {}", status().0) role="status" aria-live="polite">{move || status().1}</p>
                <div class="log-tail-controls">
                    <Show
                        when=move || tail.paused.get()
                        fallback=move || view! { <button type="button" class="log-tail-pause" on:click=move |_| tail.paused.set(true)>"❚❚ Pause"</button> }
                    >
                        <button type="button" class="log-tail-resume" on:click=move |_| tail.resume()>"▶ Resume"</button>
                    </Show>
                    <button type="button" class="log-tail-clear" on:click=move |_| tail.clear()>"Clear"</button>
                </div>
            </div>
            <p class="log-tail-summary">
                <span class="log-tail-count">{summary}</span>
                <Show when=move || tail.paused.get()>
                    <span class="log-tail-held" role="status">
                        {move || match held() {
                            1 => "❚❚ paused — 1 new line waiting".to_owned(),
                            n => format!("❚❚ paused — {n} new lines waiting"),
                        }}
                    </span>
                </Show>
            </p>
            <ol class="log-lines log-tail-lines" aria-live="off">
                <For each=move || tail.rows.get() key=|row| row.key let:row>
                    {match row.item {
                        TailItem::Line { line, received_ms } => view! { <LogLineRow line received_ms /> }.into_any(),
                        TailItem::Missed { missed, at } => view! {
                            <li class="log-notice log-missed" data-missed=missed>
                                {format!("▲ missed {missed} line{} at {} UTC: this browser fell behind (search has them)", if missed == 1 { "" } else { "s" }, at.format("%H:%M:%S"))}
                            </li>
                        }.into_any(),
                        TailItem::Disconnected { at } => view! {
                            <li class="log-notice log-disconnected">
                                {format!("▲ connection lost at {} UTC — lines sent until it came back are not shown (search has them)", at.format("%H:%M:%S"))}
                            </li>
                        }.into_any(),
                    }}
                </For>
            </ol>
        </div>
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use chrono::Utc;
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::{JsCast, closure::Closure};
    use web_sys::{EventSource, MessageEvent};

    use super::{Tail, TailItem, TailState};
    use crate::model::logs::{LogLine, TailHeartbeat, TailMissed};

    fn data<T: serde::de::DeserializeOwned>(message: &MessageEvent) -> Option<T> {
        message.data().as_string().and_then(|data| serde_json::from_str(&data).ok())
    }

    pub fn connect(url: &str, tail: Tail) {
        let Ok(source) = EventSource::new(url) else {
            tail.state.set(TailState::Reconnecting);
            return;
        };
        let on_line = Closure::<dyn Fn(MessageEvent)>::new(move |message: MessageEvent| {
            let now = Utc::now();
            tail.last_heard.set(Some(now));
            if let Some(line) = data::<LogLine>(&message) {
                tail.receive(TailItem::Line { line, received_ms: now.timestamp_millis() });
            }
        });
        let on_missed = Closure::<dyn Fn(MessageEvent)>::new(move |message: MessageEvent| {
            if let Some(missed) = data::<TailMissed>(&message) {
                tail.receive(TailItem::Missed { missed: missed.missed, at: missed.at });
            }
        });
        let on_heartbeat = Closure::<dyn Fn(MessageEvent)>::new(move |message: MessageEvent| {
            tail.last_heard.set(Some(Utc::now()));
            let listening = data::<TailHeartbeat>(&message).is_none_or(|beat| beat.listening);
            tail.state.set(if listening { TailState::Live } else { TailState::NotListening });
        });
        let _ = source.add_event_listener_with_callback("line", on_line.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback("missed", on_missed.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback("heartbeat", on_heartbeat.as_ref().unchecked_ref());
        let on_error = Closure::<dyn Fn()>::new(move || {
            if matches!(tail.state.get_untracked(), TailState::Live | TailState::NotListening) {
                tail.receive(TailItem::Disconnected { at: Utc::now() });
            }
            tail.state.set(TailState::Reconnecting);
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let held = SendWrapper::new((source, on_line, on_missed, on_heartbeat, on_error));
        on_cleanup(move || {
            let (source, ..) = held.take();
            source.close();
        });
    }
}
