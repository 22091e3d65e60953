//! Points in time as opsdeck shows them: in UTC to the second, with a live relative age beside,
//! so nobody has to guess a time zone or do arithmetic under stress.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::components::live::{describe_age, use_clock};

/// "just now", "4 min ago", "3 d ago"; for a time ahead, "in 12 min", "in 29 d". Times a few
/// seconds ahead are clock skew between server and browser, and read "just now".
pub fn relative_age(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    const DAY: i64 = 86_400;
    let seconds = (now - at).num_seconds();
    match seconds {
        s if s > -60 && s < 2 * DAY => describe_age(s.max(0)),
        s if s >= 2 * DAY => format!("{} d ago", s / DAY),
        s => match -s {
            ahead if ahead < 7200 => format!("in {} min", ahead / 60),
            ahead if ahead < 2 * DAY => format!("in {} h", ahead / 3600),
            ahead => format!("in {} d", ahead / DAY),
        },
    }
}

/// A point in time: date, clock time in UTC, and its age ticking with the shell's clock.
#[component]
pub fn Timestamp(at: DateTime<Utc>) -> impl IntoView {
    let clock = use_clock();
    view! {
        <span class="timestamp">
            <time class="timestamp-utc" datetime=at.to_rfc3339()>
                <span class="timestamp-date">{at.format("%Y-%m-%d").to_string()}</span>
                " "
                <span class="timestamp-clock">{at.format("%H:%M:%S UTC").to_string()}</span>
            </time>
            " "
            <span class="timestamp-age muted">{move || relative_age(clock.0.get(), at)}</span>
        </span>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::relative_age;

    #[test]
    fn ages_read_in_the_largest_sensible_unit_both_ways() {
        let now = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(relative_age(now, now - Duration::seconds(47)), "47 s ago");
        assert_eq!(relative_age(now, now - Duration::hours(30)), "30 h ago");
        assert_eq!(relative_age(now, now - Duration::days(9)), "9 d ago");
        assert_eq!(relative_age(now, now + Duration::seconds(3)), "just now", "clock skew is not the future");
        assert_eq!(relative_age(now, now + Duration::minutes(12)), "in 12 min");
        assert_eq!(relative_age(now, now + Duration::days(29)), "in 29 d");
    }
}
