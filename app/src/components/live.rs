//! Wall-clock time in the browser, ticking once a second, so every view can say how old its
//! data is. On the server the clock is frozen at render time.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// Data older than this is shown as stale, never as live.
pub const STALE_AFTER_SECONDS: i64 = 15;

/// The ticking clock, provided once by the shell.
#[derive(Clone, Copy)]
pub struct Clock(pub RwSignal<DateTime<Utc>>);

/// Starts the clock (in the browser only: effects don't run on the server) and provides it.
pub fn provide_clock() -> Clock {
    let now = RwSignal::new(Utc::now());
    Effect::new(move |_| {
        let handle = set_interval_with_handle(move || now.set(Utc::now()), std::time::Duration::from_secs(1));
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    });
    let clock = Clock(now);
    provide_context(clock);
    clock
}

/// The clock the shell provided.
pub fn use_clock() -> Clock {
    expect_context::<Clock>()
}

/// "just now", "12 s ago", "4 min ago", "2 h ago".
pub fn describe_age(seconds: i64) -> String {
    match seconds {
        s if s < 2 => "just now".to_string(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_age;

    #[test]
    fn ages_are_described_in_the_largest_sensible_unit() {
        assert_eq!(describe_age(0), "just now");
        assert_eq!(describe_age(47), "47 s ago");
        assert_eq!(describe_age(600), "10 min ago");
        assert_eq!(describe_age(10_800), "3 h ago");
    }
}
