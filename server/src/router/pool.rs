//! The router's view of the routing table: per service, its versions' healthy instances, each with
//! a passive circuit breaker and a round-robin cursor. A new table becomes a new [`Snapshot`]
//! swapped in whole ([`arc_swap::ArcSwap`]); instances keep their breaker across snapshots.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use app::model::{
    topology::InstanceHealth,
    traffic::{VersionWeight, version_for_bucket},
};
use arc_swap::ArcSwap;
use tokio::time::Instant;
use uuid::Uuid;

use super::{report::TargetReport, upstream::Connections};
use crate::{
    resilience::{BreakerConfig, CircuitBreaker},
    traffic::{RoutingTable, ServiceRoutes, TrafficProvider, Upstream},
};

/// One instance and its breaker (shared by every snapshot that contains the instance).
#[derive(Debug)]
pub struct Target {
    pub upstream: Upstream,
    /// `host:port`, what the router connects to.
    pub authority: String,
    breaker: Mutex<CircuitBreaker>,
    /// Its request points' tag text and counters, filled by the reporter on first use.
    pub report: OnceLock<Arc<TargetReport>>,
    /// Its idle keep-alive connections (they go when the instance leaves the table).
    pub connections: Connections,
}

impl Target {
    fn new(upstream: &Upstream, breaker: CircuitBreaker) -> Self {
        Self {
            upstream: upstream.clone(),
            authority: upstream.address(),
            breaker: Mutex::new(breaker),
            report: OnceLock::new(),
            connections: Connections::default(),
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go to this instance now (moves an expired open breaker to half-open).
    fn admit(&self) -> bool {
        self.breaker().try_acquire(Instant::now()).is_ok()
    }

    /// A real answer (or its absence) from this instance; true when this failure opened the
    /// breaker.
    pub fn record(&self, success: bool) -> bool {
        let mut breaker = self.breaker();
        let was_open = breaker.state().name() == "open";
        if success {
            breaker.record_success();
        } else {
            breaker.record_failure(Instant::now());
        }
        !was_open && breaker.state().name() == "open"
    }

    pub fn breaker_state(&self) -> &'static str {
        self.breaker().state().name()
    }
}

/// A version's instances in rotation, and where round robin stands.
#[derive(Debug, Default)]
pub struct VersionPool {
    pub targets: Vec<Arc<Target>>,
    cursor: AtomicUsize,
}

/// A service as the router serves it.
#[derive(Debug)]
pub struct ServicePool {
    pub routes: ServiceRoutes,
    /// Healthy instances by version; without a policy, all under the key `""`.
    pub versions: HashMap<String, VersionPool>,
}

/// What one request was given.
pub struct Pick {
    pub target: Arc<Target>,
    /// The chosen version had no instance to take the call; another weighted version did.
    pub fell_back: bool,
}

impl ServicePool {
    /// The version a request belongs to (by `bucket` in 0..10 000), or `None` without a policy.
    pub fn version_for(&self, bucket: u32) -> Option<&str> {
        version_for_bucket(&self.routes.policy.weights, bucket)
    }

    /// An instance for a request of `version` (None: no policy), by round robin over healthy
    /// instances whose breaker admits the call, skipping `tried`. When the version has none, the
    /// other versions with weight take it (`fell_back`).
    pub fn pick(&self, version: Option<&str>, tried: &[Uuid]) -> Option<Pick> {
        let weights = &self.routes.policy.weights;
        let first = version.unwrap_or("");
        if let Some(target) = self.versions.get(first).and_then(|pool| round_robin(pool, tried)) {
            return Some(Pick { target, fell_back: false });
        }
        weights
            .iter()
            .filter(|w: &&VersionWeight| w.percent > 0 && w.version != first)
            .find_map(|w| self.versions.get(&w.version).and_then(|pool| round_robin(pool, tried)))
            .map(|target| Pick { target, fell_back: true })
    }

    /// Whether `target`'s version has another instance whose breaker is not open: only then
    /// may an HTTP 5xx answer open `target`'s breaker. Ejecting a version's last instance for
    /// its answers would quietly move its share to the other versions — a faulty canary would
    /// get no traffic, so canary analysis would see no data and hold instead of rolling it
    /// back (Envoy's outlier detection caps ejection for the same reason). Connect failures and
    /// timeouts still open it: an instance that doesn't answer can't serve its share anyway.
    pub fn has_other_admitted(&self, target: &Target) -> bool {
        self.versions.get(&target.upstream.version).is_some_and(|pool| {
            pool.targets.iter().any(|other| other.upstream.id != target.upstream.id && other.breaker_state() != "open")
        })
    }

    /// "v1: 0 of 2 healthy, v2: 1 of 1 healthy (breaker open)" — for a 503's detail.
    pub fn describe(&self) -> String {
        let mut by_version: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for upstream in &self.routes.upstreams {
            let entry = by_version.entry(upstream.version.as_str()).or_default();
            entry.1 += 1;
            if upstream.health == InstanceHealth::Healthy {
                entry.0 += 1;
            }
        }
        if by_version.is_empty() {
            return "no instance is registered".to_owned();
        }
        by_version
            .iter()
            .map(|(version, (healthy, all))| format!("{version}: {healthy} of {all} healthy"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn round_robin(pool: &VersionPool, tried: &[Uuid]) -> Option<Arc<Target>> {
    let count = pool.targets.len();
    if count == 0 {
        return None;
    }
    let start = pool.cursor.fetch_add(1, Ordering::Relaxed);
    (0..count)
        .map(|offset| &pool.targets[(start + offset) % count])
        .find(|target| !tried.contains(&target.upstream.id) && target.admit())
        .cloned()
}

/// Everything a request needs, as of one table.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: Arc<RoutingTable>,
    pub services: HashMap<String, ServicePool>,
}

impl Snapshot {
    /// The service a request belongs to.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&ServicePool> {
        let routes = self.table.route(host, path)?;
        self.services.get(&routes.policy.service)
    }
}

/// The live table: swapped whole on every apply; breakers carried over by instance id.
pub struct LiveTable {
    current: ArcSwap<Snapshot>,
    breaker: BreakerConfig,
    /// Serialises applies (the trait promises no concurrency, but be safe).
    applying: Mutex<()>,
}

impl LiveTable {
    pub fn new(breaker: BreakerConfig) -> Self {
        Self { current: ArcSwap::from_pointee(Snapshot::default()), breaker, applying: Mutex::new(()) }
    }

    /// The snapshot a request works from, start to end.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn install(&self, table: Arc<RoutingTable>) {
        let _guard = self.applying.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.current.load_full();
        let known: HashMap<Uuid, &Arc<Target>> = previous
            .services
            .values()
            .flat_map(|s| s.versions.values())
            .flat_map(|v| v.targets.iter())
            .map(|t| (t.upstream.id, t))
            .collect();
        let mut services = HashMap::with_capacity(table.services.len());
        for (name, routes) in &table.services {
            let policy_less = routes.policy.weights.is_empty();
            let mut versions: HashMap<String, VersionPool> = HashMap::new();
            for upstream in routes.upstreams.iter().filter(|u| u.health == InstanceHealth::Healthy) {
                let target = match known.get(&upstream.id) {
                    Some(existing) if existing.upstream == *upstream => Arc::clone(existing),
                    Some(existing) => Arc::new(Target::new(upstream, existing.breaker().clone())),
                    None => Arc::new(Target::new(upstream, CircuitBreaker::new(self.breaker))),
                };
                let key = if policy_less { String::new() } else { upstream.version.clone() };
                versions.entry(key).or_default().targets.push(target);
            }
            services.insert(name.clone(), ServicePool { routes: routes.clone(), versions });
        }
        self.current.store(Arc::new(Snapshot { table, services }));
    }
}

#[async_trait::async_trait]
impl TrafficProvider for LiveTable {
    fn name(&self) -> &'static str {
        "router"
    }

    async fn apply(&self, table: Arc<RoutingTable>) -> anyhow::Result<()> {
        self.install(table);
        Ok(())
    }
}

/// A stable bucket in 0..10 000 for a sticky value (FNV-1a: the same on every router and build).
pub fn sticky_bucket(value: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % 10_000) as u32
}

/// A uniformly random bucket in 0..10 000.
pub fn random_bucket() -> u32 {
    fastrand::u32(0..10_000)
}

/// The default passive breaker: three failures in a row open it for five seconds.
pub const DEFAULT_BREAKER: BreakerConfig = BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(5) };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_buckets_are_stable_and_spread() {
        assert_eq!(sticky_bucket(b"alice"), sticky_bucket(b"alice"));
        let canary = (0..10_000).filter(|i| sticky_bucket(format!("user-{i}").as_bytes()) < 1000).count();
        assert!((800..1200).contains(&canary), "about 10 % of users in the first 10 % of buckets: {canary}");
    }
}
