//! Headless Chromium driven over WebDriver (chromedriver from Debian, fantoccini in Rust).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder};

use crate::wait::{free_port, wait_until};

/// A chromedriver process and a browser session; both end when this is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts headless Chromium with a window of `width`×`height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test installs Debian's chromium-driver)");
        let profile = std::env::temp_dir().join(format!("opsdeck-chromium-{}", uuid::Uuid::new_v4().simple()));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("built as an object"),
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = wait_until("chromedriver to accept a session", Duration::from_secs(30), || {
            let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(capabilities.clone());
            let webdriver = webdriver.clone();
            async move { builder.connect(&webdriver).await.ok() }
        })
        .await;
        // Fail in seconds, not WebDriver's default five minutes, if a page never finishes loading.
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(None, Some(Duration::from_secs(30)), None);
        client.update_timeouts(timeouts).await.expect("set the page-load timeout");
        let browser = Self { client, driver, profile };
        browser.set_viewport(width, height).await;
        browser
    }

    /// Makes the page area (not the window) exactly `width`×`height`, as screenshots should be.
    async fn set_viewport(&self, width: u32, height: u32) {
        let inner =
            self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.expect("js runs");
        let inner: Vec<u32> = serde_json::from_value(inner).expect("two numbers");
        let (window_width, window_height) = self.client.get_window_size().await.expect("window size");
        let outer_width = window_width as u32 + width - inner[0];
        let outer_height = window_height as u32 + height - inner[1];
        self.client.set_window_size(outer_width, outer_height).await.expect("resize the window");
    }

    /// Opens `url`, is sent to the sign-in page, signs in through the form, and waits until
    /// it is back on `url`, hydrated.
    pub async fn sign_in(&self, url: &str, username: &str, password: &str) {
        use fantoccini::Locator;
        self.client.goto(url).await.expect("navigate");
        let form = self.client.form(Locator::Css("form.login-form")).await.expect("the sign-in form is shown");
        form.set_by_name("username", username).await.expect("type the user name");
        form.set_by_name("password", password).await.expect("type the password");
        form.submit().await.expect("submit");
        // The URL first: the sign-in page's own hydration marker could satisfy the next wait
        // while the form post is still on its way.
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_url(&url.parse().expect("a URL"))
            .await
            .expect("back where we started after signing in");
        self.wait_hydrated().await;
    }

    /// Waits until the wasm has taken over the page.
    pub async fn wait_hydrated(&self) {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(fantoccini::Locator::Css(r#".app[data-hydrated="true"]"#))
            .await
            .expect("the wasm hydrates the page");
    }

    /// Saves a screenshot under `target/screenshots/` for people to look at.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.client.screenshot().await.expect("the browser takes a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the session cleanly (call before drop when the test passed).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A killed chromedriver leaves its Chromium running (a test that panicked never ended
        // the session): end every process started with this test's own profile folder.
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(format!("user-data-dir={}", self.profile.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
