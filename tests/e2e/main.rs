//! End-to-end tests: the real app on its real stores, seen through headless Chromium.

mod admin;
mod audit;
mod charts;
mod live_traffic;
mod logs;
mod overview;
mod releases;
mod topology;

use std::time::Duration;

use fantoccini::{Client, Locator};
use testkit::wait_until;

/// The text of the first element matching `css`, once it contains `expected`.
pub async fn wait_for_text(page: &Client, css: &str, expected: &str) -> String {
    wait_until(&format!("{css} to contain {expected:?}"), Duration::from_secs(15), || async {
        let text = page.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        text.contains(expected).then_some(text)
    })
    .await
}
