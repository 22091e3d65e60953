//! Instruments of opsdeck's background workers for `/metrics`: how far behind the health checker
//! runs (probe start after it was due), what it checked, whether this replica leads it, and how
//! long a committed event takes to reach this replica's event hub. The workers hold clones and
//! update them; the registry reads them at scrape time.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `up` or `down`.
    pub outcome: &'static str,
}

/// The health checker's instruments.
#[derive(Debug, Clone)]
pub struct CheckerMetrics {
    /// 1 while this replica holds the checker's leader lock.
    pub leading: Gauge,
    /// Instances this replica checks (0 when it does not lead).
    pub targets: Gauge,
    /// Probes finished, by outcome.
    pub probes: Family<ProbeLabels, Counter>,
    /// How late each probe started after it was due: the checker's lag.
    pub lateness: Histogram,
}

impl CheckerMetrics {
    pub fn probed(&self, up: bool) {
        self.probes.get_or_create(&ProbeLabels { outcome: if up { "up" } else { "down" } }).inc();
    }
}

/// Every worker's instruments; cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub checker: CheckerMetrics,
    /// From an event's transaction to its arrival at this replica's hub (NOTIFY or gap fill).
    pub event_delivery: Histogram,
}

impl WorkerMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let checker = CheckerMetrics {
            leading: Gauge::default(),
            targets: Gauge::default(),
            probes: Family::default(),
            // 1 ms to ~33 s, doubling: a healthy checker starts probes within its 50 ms tick.
            lateness: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        registry.register("checker_leader", "1 while this replica runs the health checks", checker.leading.clone());
        registry.register("checker_targets", "Instances the health checker probes", checker.targets.clone());
        registry.register("checker_probes", "Health-check probes finished, by outcome", checker.probes.clone());
        registry.register_with_unit(
            "checker_probe_lateness",
            "How late each probe started after it was due (the checker's lag)",
            Unit::Seconds,
            checker.lateness.clone(),
        );
        let event_delivery = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "event_delivery_lag",
            "From an event's transaction to its arrival at this replica (LISTEN/NOTIFY)",
            Unit::Seconds,
            event_delivery.clone(),
        );
        Self { checker, event_delivery }
    }
}
