//! The probe target: one HTTP listener that answers `GET /healthz` for every registered
//! loopback host (127.0.x.y), counts the probes it answers and records, per host, the longest
//! gap between two probes during the measured window.
//!
//! Why one listener on `0.0.0.0:<port>` rather than a socket per instance: instances are unique
//! by `host:port`, and Linux routes all of 127.0.0.0/8 to `lo`, so 10,000 distinct hosts on one
//! port are 10,000 distinct instances for opsdeck (and for its HTTP client's connection pool)
//! while the target needs one listening socket instead of 10,000. With the checker keeping one
//! idle connection per host, the target then holds ~10,000 accepted sockets; 10,000 listening
//! sockets on top would pass `ulimit -n` (20,000 here). Binding 127.0.0.1 would only receive
//! traffic for 127.0.0.1 itself, hence the wildcard address; nothing but loopback is registered.
//! The instance a probe is for is read from its `Host` header.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::get};

/// Hosts per 127.0.x.0/24 block (1–250 in the last octet).
const HOSTS_PER_BLOCK: usize = 250;

/// The loopback address of instance `index`: 127.0.1.1, 127.0.1.2, … 127.0.1.250, 127.0.2.1, …
pub fn host_of(index: usize) -> Ipv4Addr {
    let block = u8::try_from(1 + index / HOSTS_PER_BLOCK).expect("at most 63,500 instances");
    let host = u8::try_from(1 + index % HOSTS_PER_BLOCK).expect("below 251");
    Ipv4Addr::new(127, 0, block, host)
}

/// The inverse of [`host_of`] for a `Host` header such as `127.0.3.17:41234`.
pub fn index_of(host_header: &str) -> Option<usize> {
    let ip: Ipv4Addr = host_header.rsplit_once(':').map_or(host_header, |(host, _)| host).parse().ok()?;
    let [a, b, block, host] = ip.octets();
    if a != 127 || b != 0 || block == 0 || host == 0 || usize::from(host) > HOSTS_PER_BLOCK {
        return None;
    }
    Some((usize::from(block) - 1) * HOSTS_PER_BLOCK + usize::from(host) - 1)
}

/// Counters shared by the handler and the benchmark. Times are milliseconds since `epoch`,
/// plus one, so that 0 means "never".
pub struct Stats {
    epoch: Instant,
    answered: AtomicU64,
    unknown_host: AtomicU64,
    /// When the measured window began (`u64::MAX`: no window yet).
    window_start: AtomicU64,
    last_probe: Vec<AtomicU64>,
    /// Longest gap between two probes of the host, for probes inside the window.
    max_gap: Vec<AtomicU64>,
    /// Probes of the host inside the window.
    in_window: Vec<AtomicU64>,
}

impl Stats {
    fn new(instances: usize) -> Self {
        Self {
            epoch: Instant::now(),
            answered: AtomicU64::new(0),
            unknown_host: AtomicU64::new(0),
            window_start: AtomicU64::new(u64::MAX),
            last_probe: (0..instances).map(|_| AtomicU64::new(0)).collect(),
            max_gap: (0..instances).map(|_| AtomicU64::new(0)).collect(),
            in_window: (0..instances).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn record(&self, index: usize) {
        let now = self.now();
        self.answered.fetch_add(1, Ordering::Relaxed);
        let previous = self.last_probe[index].swap(now, Ordering::Relaxed);
        let window_start = self.window_start.load(Ordering::Relaxed);
        if now >= window_start {
            // The gap since the previous probe, even if that was before the window; a host never
            // probed before counts from the window's start.
            let gap = now - if previous == 0 { window_start } else { previous };
            self.max_gap[index].fetch_max(gap, Ordering::Relaxed);
            self.in_window[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Probes answered so far (all hosts).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Probes whose `Host` was not one of ours (answered 404, not counted as answered).
    pub fn unknown_host(&self) -> u64 {
        self.unknown_host.load(Ordering::Relaxed)
    }

    /// Starts the measured window: gaps are recorded from now on.
    pub fn start_window(&self) {
        for (gap, count) in self.max_gap.iter().zip(&self.in_window) {
            gap.store(0, Ordering::Relaxed);
            count.store(0, Ordering::Relaxed);
        }
        self.window_start.store(self.now(), Ordering::Relaxed);
    }

    /// Ends the window: per host, the longest time it went unprobed (ms; including the stretch
    /// from its last probe to the end of the window) and how often it was probed.
    pub fn end_window(&self) -> Vec<HostWindow> {
        let end = self.now();
        let start = self.window_start.load(Ordering::Relaxed).min(end);
        (0..self.last_probe.len())
            .map(|i| {
                let trailing = end - self.last_probe[i].load(Ordering::Relaxed).clamp(start, end);
                HostWindow {
                    max_gap_ms: self.max_gap[i].load(Ordering::Relaxed).max(trailing),
                    probes: self.in_window[i].load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// One host's probes over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostWindow {
    pub max_gap_ms: u64,
    pub probes: u64,
}

/// A running target server.
pub struct Target {
    pub port: u16,
    pub stats: Arc<Stats>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Target {
    /// Binds `0.0.0.0:0` and serves until the runtime stops.
    pub async fn start(instances: usize) -> anyhow::Result<Self> {
        let stats = Arc::new(Stats::new(instances));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .context("cannot bind the probe target on 0.0.0.0")?;
        let port = listener.local_addr()?.port();
        let app = Router::new().route("/healthz", get(healthz)).with_state(stats.clone());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.await;
            };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                tracing::error!(%error, "the probe target stopped");
            }
        });
        Ok(Self { port, stats, shutdown, server })
    }

    /// Closes the listener and every kept-alive connection, waiting up to 10 s.
    ///
    /// Call it before stopping opsdeck: the side that closes a TCP connection first keeps it in
    /// TIME_WAIT for a minute. If opsdeck closed first, 10,000 of its local ports on 127.0.0.1
    /// would stay taken, and a PostgreSQL or InfluxDB started within that minute on a "free"
    /// port (scripts/lib/common.sh picks 20000–60000, across the ephemeral range) can fail to
    /// bind. Closed from here, the TIME_WAITs sit on the 10,000 127.0.x.y addresses instead.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.server).await;
    }
}

async fn healthz(State(stats): State<Arc<Stats>>, headers: HeaderMap) -> StatusCode {
    let index = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(index_of)
        .filter(|i| *i < stats.last_probe.len());
    match index {
        Some(index) => {
            stats.record(index);
            StatusCode::OK
        }
        None => {
            stats.unknown_host.fetch_add(1, Ordering::Relaxed);
            StatusCode::NOT_FOUND
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_has_its_own_host_and_maps_back() {
        let hosts: std::collections::HashSet<_> = (0..10_000).map(host_of).collect();
        assert_eq!(hosts.len(), 10_000);
        for i in [0, 1, 249, 250, 9_999] {
            assert_eq!(index_of(&format!("{}:8080", host_of(i))), Some(i));
        }
        assert_eq!(index_of("127.0.0.1:8080"), None);
        assert_eq!(index_of("example.com"), None);
    }

    #[test]
    fn the_window_reports_the_longest_unprobed_stretch() {
        let stats = Stats::new(2);
        stats.record(0);
        std::thread::sleep(std::time::Duration::from_millis(30));
        stats.start_window();
        stats.record(0);
        let hosts = stats.end_window();
        assert!((30..1_000).contains(&hosts[0].max_gap_ms), "counted from the probe before the window: {hosts:?}");
        assert_eq!(hosts[0].probes, 1);
        assert_eq!(hosts[1].probes, 0, "host 1 was never probed");
        assert_eq!(stats.answered(), 2);
    }
}
