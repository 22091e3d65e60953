//! The health-check benchmark's result: the figures measured over the steady window, the
//! target they are held against, and the verdict, as a plain-text table.

use std::{fmt::Write as _, time::Duration};

/// Everything measured over one window.
#[derive(Debug, Clone)]
pub struct Figures {
    pub instances: usize,
    pub interval: Duration,
    pub window: Duration,
    pub lag_limit: Duration,
    /// Probes the target answered inside the window.
    pub probes: u64,
    /// `health_probe` points InfluxDB holds with a time inside the window.
    pub influx_points: u64,
    /// Per instance: the longest time it went unprobed and its probes inside the window.
    pub hosts: Vec<crate::target::HostWindow>,
    /// Mean and largest probe latency opsdeck stored in InfluxDB for the window (ms).
    pub probe_latency_ms: (f64, f64),
    pub healthy_after: usize,
    pub unknown_host_probes: u64,
    /// CPU time of `opsdeck serve` (all threads) over the window.
    pub opsdeck_cpu: Duration,
    /// Time opsdeck's threads were runnable but waited for their core.
    pub opsdeck_run_queue_wait: Duration,
    pub opsdeck: crate::procstat::Footprint,
    pub postgres_cpu: Option<Duration>,
    pub influxd_cpu: Option<Duration>,
    /// The benchmark process itself (probe target and this program).
    pub bench_cpu: Duration,
    pub load_average: f64,
    pub registration: Duration,
    pub time_to_all_healthy: Duration,
    pub machine: String,
}

impl Figures {
    pub fn expected_probes_per_second(&self) -> f64 {
        self.instances as f64 / self.interval.as_secs_f64()
    }

    pub fn probes_per_second(&self) -> f64 {
        self.probes as f64 / self.window.as_secs_f64()
    }

    /// CPU as a percentage of one core over the window.
    pub fn cpu_percent(&self, cpu: Duration) -> f64 {
        100.0 * cpu.as_secs_f64() / self.window.as_secs_f64()
    }

    /// The window divided by the probes each instance got, averaged over the instances.
    pub fn mean_period(&self) -> Duration {
        let probes: u64 = self.hosts.iter().map(|h| h.probes).sum();
        if probes == 0 {
            return self.window;
        }
        self.window.mul_f64(self.hosts.len() as f64 / probes as f64)
    }

    pub fn lagging(&self) -> usize {
        self.hosts.iter().filter(|h| h.max_gap_ms > self.lag_limit.as_millis() as u64).count()
    }

    fn gap_percentile(&self, p: f64) -> u64 {
        let mut gaps: Vec<u64> = self.hosts.iter().map(|h| h.max_gap_ms).collect();
        gaps.sort_unstable();
        let rank = ((gaps.len() as f64 * p).ceil() as usize).clamp(1, gaps.len().max(1)) - 1;
        gaps.get(rank).copied().unwrap_or(0)
    }

    /// The checks the run must pass, each with whether it did.
    pub fn verdicts(&self) -> Vec<(String, bool)> {
        let expected = self.expected_probes_per_second();
        vec![
            (format!("probe rate ≥ 98% of {expected:.0}/s"), self.probes_per_second() >= 0.98 * expected),
            (
                format!("every instance probed at least every {:.1} s", self.lag_limit.as_secs_f64()),
                self.lagging() == 0,
            ),
            (format!("all {} instances healthy at the end", self.instances), self.healthy_after == self.instances),
            ("every probe stored in InfluxDB (≥ 98%)".into(), self.influx_points as f64 >= 0.98 * self.probes as f64),
            ("opsdeck CPU below one core (< 90%)".into(), self.cpu_percent(self.opsdeck_cpu) < 90.0),
        ]
    }

    pub fn passed(&self) -> bool {
        self.verdicts().iter().all(|(_, ok)| *ok)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let secs = |d: Duration| d.as_secs_f64();
        let pct = |d: Duration| self.cpu_percent(d);
        let optional = |d: Option<Duration>| {
            d.map_or_else(|| "not measured".into(), |d| format!("{:.1} % of one core ({:.2} s)", pct(d), secs(d)))
        };
        let per_probe_us = if self.probes == 0 { f64::NAN } else { secs(self.opsdeck_cpu) * 1e6 / self.probes as f64 };
        let _ = writeln!(
            out,
            "\n== health checks: {} instances every {} s, opsdeck serve on one core ==",
            self.instances,
            secs(self.interval)
        );
        let _ = writeln!(out, "machine: {}", self.machine);
        let _ = writeln!(
            out,
            "window: {:.0} s steady state (after all healthy); load average at the end {:.2}",
            secs(self.window),
            self.load_average
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<38} {:>16} {:>16}", "", "target", "measured");
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "probes in the window",
            format!("{:.0}", self.expected_probes_per_second() * secs(self.window)),
            self.probes
        );
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "probes per second",
            format!("{:.0}", self.expected_probes_per_second()),
            format!("{:.1}", self.probes_per_second())
        );
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "longest unprobed stretch (max)",
            format!("≤ {:.1} s", secs(self.lag_limit)),
            format!("{:.2} s", self.gap_percentile(1.0) as f64 / 1000.0)
        );
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "  per instance: p50 / p99",
            "",
            format!(
                "{:.2} / {:.2} s",
                self.gap_percentile(0.5) as f64 / 1000.0,
                self.gap_percentile(0.99) as f64 / 1000.0
            )
        );
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "mean time between probes",
            format!("{:.2} s", secs(self.interval)),
            format!("{:.3} s", self.mean_period().as_secs_f64())
        );
        let _ = writeln!(out, "{:<38} {:>16} {:>16}", "instances over the limit", "0", self.lagging());
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "instances not probed in the window",
            "0",
            self.hosts.iter().filter(|h| h.probes == 0).count()
        );
        let _ =
            writeln!(out, "{:<38} {:>16} {:>16}", "health_probe points in InfluxDB", self.probes, self.influx_points);
        let _ =
            writeln!(out, "{:<38} {:>16} {:>16}", "healthy instances at the end", self.instances, self.healthy_after);
        let _ = writeln!(
            out,
            "{:<38} {:>16} {:>16}",
            "opsdeck serve CPU, % of one core",
            "< 100 %",
            format!("{:.1} %", pct(self.opsdeck_cpu))
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "opsdeck serve: {:.2} s CPU in {:.0} s = {:.1} µs per probe",
            secs(self.opsdeck_cpu),
            secs(self.window),
            per_probe_us
        );
        let _ = writeln!(
            out,
            "opsdeck serve: RSS {:.1} MiB (peak {:.1} MiB), {} threads, {} open files; waited {:.2} s for its core",
            self.opsdeck.rss_kib as f64 / 1024.0,
            self.opsdeck.peak_rss_kib as f64 / 1024.0,
            self.opsdeck.threads,
            self.opsdeck.open_files,
            secs(self.opsdeck_run_queue_wait)
        );
        let _ = writeln!(
            out,
            "probe latency as opsdeck measured it: mean {:.2} ms, max {:.1} ms",
            self.probe_latency_ms.0, self.probe_latency_ms.1
        );
        let _ = writeln!(out, "PostgreSQL (postmaster + backends): {}", optional(self.postgres_cpu));
        let _ = writeln!(out, "InfluxDB: {}", optional(self.influxd_cpu));
        let _ = writeln!(out, "benchmark + probe target: {:.1} % of one core", pct(self.bench_cpu));
        let _ = writeln!(
            out,
            "set-up: {} registrations in {:.1} s ({:.0}/s); all healthy {:.1} s after the last one",
            self.instances,
            secs(self.registration),
            self.instances as f64 / secs(self.registration),
            secs(self.time_to_all_healthy)
        );
        if self.unknown_host_probes > 0 {
            let _ = writeln!(out, "probes for hosts the target does not know: {}", self.unknown_host_probes);
        }
        let _ = writeln!(out);
        for (check, ok) in self.verdicts() {
            let _ = writeln!(out, "{} {check}", if ok { "PASS" } else { "FAIL" });
        }
        let _ = writeln!(
            out,
            "verdict: {}",
            if self.passed() {
                "opsdeck keeps up with the target on one core"
            } else {
                "target missed (see FAIL lines)"
            }
        );
        out
    }
}
