//! The client side of the router tests: steady GET load from a few loops through a router, and
//! the tally of what answered (by version) and what failed.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::Value;

use crate::router::Stage;

/// Requests from `concurrency` loops until stopped: what answered, and every failure.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) failures: Vec<String>,
    pub(crate) versions: BTreeMap<String, u64>,
}

impl Load {
    pub(crate) fn start(stage: &Stage, host: &str, concurrency: usize) -> Self {
        Self::through(&stage.http, &stage.router.url, host, concurrency)
    }

    /// `GET {router}/checkout` with this Host header from `concurrency` loops.
    pub(crate) fn through(http: &reqwest::Client, router: &str, host: &str, concurrency: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..concurrency)
            .map(|_| {
                let (stop, http, url, host) =
                    (stop.clone(), http.clone(), format!("{router}/checkout"), host.to_owned());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        tally.add(http.get(&url).header("host", &host).send().await).await;
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    pub(crate) async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for task in self.tasks {
            let tally = task.await.expect("a load loop");
            total.ok += tally.ok;
            total.failures.extend(tally.failures);
            for (version, n) in tally.versions {
                *total.versions.entry(version).or_default() += n;
            }
        }
        total
    }
}

impl Tally {
    pub(crate) async fn add(&mut self, response: reqwest::Result<reqwest::Response>) {
        match response {
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                self.ok += 1;
                *self.versions.entry(body["version"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            }
            Ok(response) => {
                let status = response.status();
                self.failures.push(format!("{status}: {}", response.text().await.unwrap_or_default()));
            }
            Err(error) => self.failures.push(format!("no answer: {error}")),
        }
    }
}
