//! Active health checks: every instance is probed over HTTP at its service's interval, with a
//! timeout. `fall` consecutive failures mark it unhealthy, `rise` consecutive successes healthy;
//! each change is stored with its reason. A failed probe is retried sooner, after a jittered,
//! exponentially growing wait capped at the interval (so detection stays within fall ×
//! interval), and each target sits behind a circuit breaker, so a dead host costs one trial
//! probe per interval instead of retries. Every probe result goes to InfluxDB (`health_probe`).
//!
//! One `serve` replica checks at a time: the checker holds a PostgreSQL advisory lock on its own
//! connection, and the others wait to take over when that connection goes (see [`run`]). The
//! per-target state lives in the leader and is rebuilt from the table when leadership moves;
//! each health change and each breaker opening/closing is stored and published as an event.

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::model::topology::InstanceHealth;
use sqlx::PgPool;
use tokio::{sync::Semaphore, time::Instant};
use uuid::Uuid;

use app::model::events::{BreakerPosition, EventKind};

use super::verdicts::{Verdict, store_verdicts};
use crate::{
    events::EventHub,
    influx::{InfluxClient, Point},
    metrics::workers::CheckerMetrics,
    resilience::{Backoff, BreakerConfig, CircuitBreaker},
};

/// The target list is re-read within this long after an event that may change it (a new,
/// removed or re-configured instance)…
const RELOAD_AFTER_CHANGE: Duration = Duration::from_secs(1);
/// …and at least this often anyway.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// The leader lock (per database); and how often a follower tries to take it, and the leader
/// checks it still holds it.
const LEADER_LOCK: i64 = 0x6f70_7364_6563_6b01;
/// How often due probes are started.
const TICK: Duration = Duration::from_millis(100);
/// Probes in flight at once.
const CONCURRENCY: usize = 512;

/// One instance to probe, as configured.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    url: String,
    interval: Duration,
    timeout: Duration,
    fall: i32,
    rise: i32,
    tags: [(&'static str, String); 5],
}

/// What this process knows about a target between probes.
struct TargetState {
    target: Target,
    health: InstanceHealth,
    successes: i32,
    failures: i32,
    next_due: Instant,
    breaker: CircuitBreaker,
    probing: bool,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Up { status: u16, latency: Duration },
    Down { reason: String, status: Option<u16>, latency: Duration },
}

/// The verdict after a probe: the new health if it changed.
pub fn judge(health: InstanceHealth, successes: i32, failures: i32, fall: i32, rise: i32) -> Option<InstanceHealth> {
    match health {
        InstanceHealth::Healthy if failures >= fall => Some(InstanceHealth::Unhealthy),
        InstanceHealth::Unhealthy if successes >= rise => Some(InstanceHealth::Healthy),
        InstanceHealth::Unknown | InstanceHealth::Expired if failures >= fall => Some(InstanceHealth::Unhealthy),
        InstanceHealth::Unknown | InstanceHealth::Expired if successes >= rise => Some(InstanceHealth::Healthy),
        _ => None,
    }
}

/// Probes one URL: 2xx is up; anything else, with why.
pub async fn probe(http: &reqwest::Client, url: &str, timeout: Duration) -> Probe {
    let started = std::time::Instant::now();
    match http.get(url).timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => {
            Probe::Up { status: response.status().as_u16(), latency: started.elapsed() }
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let body: String = response.text().await.unwrap_or_default().chars().take(200).collect();
            let reason = if body.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", body.trim())
            };
            Probe::Down { reason, status: Some(status), latency: started.elapsed() }
        }
        Err(error) => {
            let reason = if error.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if error.is_connect() {
                let mut cause: &dyn std::error::Error = &error;
                while let Some(source) = cause.source() {
                    cause = source;
                }
                format!("cannot connect: {cause}")
            } else {
                format!("request failed: {error}")
            };
            Probe::Down { reason, status: None, latency: started.elapsed() }
        }
    }
}

/// The checker in a replica: waits to become the leader (see [`crate::leader`]) and checks
/// while it leads.
pub async fn run(db: PgPool, influx: InfluxClient, events: EventHub, metrics: CheckerMetrics) {
    crate::leader::lead(&db.clone(), LEADER_LOCK, "the health checks", || async {
        metrics.leading.set(1);
        // Reset when this round of leading ends, however it ends (the future may be dropped).
        let _stepped_down = scopeguard(|| {
            metrics.leading.set(0);
            metrics.targets.set(0);
        });
        check(db.clone(), influx.clone(), events.clone(), &metrics).await;
    })
    .await;
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Whether an event may change the list of targets to check.
fn changes_targets(kind: &EventKind) -> bool {
    match kind {
        EventKind::BreakerChanged { .. } => false,
        EventKind::HealthChanged { to, .. } => *to == InstanceHealth::Unknown,
        _ => true,
    }
}

/// Checks every instance while this replica leads.
async fn check(db: PgPool, influx: InfluxClient, events: EventHub, metrics: &CheckerMetrics) {
    let mut changes = events.subscribe();
    let http = reqwest::Client::builder()
        .user_agent(concat!("opsdeck-health-checker/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(1)
        .build()
        .expect("a client with a user agent always builds");
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let (results_tx, mut results) = tokio::sync::mpsc::channel::<(Uuid, Probe)>(CONCURRENCY * 2);
    let mut targets: HashMap<Uuid, TargetState> = HashMap::new();
    let mut reload = tokio::time::interval(RELOAD_AFTER_CHANGE);
    let (mut stale, mut loaded_at) = (true, Instant::now());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut points: Vec<Point> = Vec::new();
    // Verdicts are stored by a writer task of their own, so a mass change (start-up, a
    // partition) never stalls probing; it ends when this function's sender is dropped.
    let (verdicts, pending) = tokio::sync::mpsc::unbounded_channel::<Verdict>();
    tokio::spawn(store_verdicts(db.clone(), pending));
    loop {
        tokio::select! {
            change = changes.recv() => {
                match change {
                    Ok(event) if !changes_targets(&event.kind) => {}
                    // A change, or we fell behind and can't tell: re-read.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => stale = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => changes = events.subscribe(),
                }
            }
            _ = reload.tick() => {
                if stale || loaded_at.elapsed() >= RELOAD_EVERY {
                    match load(&db, &mut targets).await {
                        Ok(()) => {
                            (stale, loaded_at) = (false, Instant::now());
                            metrics.targets.set(i64::try_from(targets.len()).unwrap_or(i64::MAX));
                        }
                        Err(error) => tracing::warn!(%error, "could not load the health-check targets; keeping the last list"),
                    }
                }
                if !points.is_empty() {
                    let batch = std::mem::take(&mut points);
                    let influx = influx.clone();
                    tokio::spawn(async move {
                        if let Err(error) = influx.write(&batch).await {
                            tracing::debug!(%error, points = batch.len(), "probe results not written to InfluxDB");
                        }
                    });
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for (id, state) in targets.iter_mut().filter(|(_, s)| !s.probing && s.next_due <= now) {
                    if state.breaker.try_acquire(now).is_err() {
                        state.next_due = now + state.target.interval;
                        continue;
                    }
                    state.probing = true;
                    metrics.lateness.observe(now.saturating_duration_since(state.next_due).as_secs_f64());
                    let (id, url, timeout, http, limit, results) = (*id, state.target.url.clone(), state.target.timeout, http.clone(), limit.clone(), results_tx.clone());
                    tokio::spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        let outcome = probe(&http, &url, timeout).await;
                        let _ = results.send((id, outcome)).await;
                    });
                }
            }
            Some((id, outcome)) = results.recv() => {
                let Some(state) = targets.get_mut(&id) else { continue };
                metrics.probed(matches!(outcome, Probe::Up { .. }));
                points.push(probe_point(&state.target, &outcome));
                let breaker_before = resting(state.breaker.state());
                let change = apply(state, &outcome);
                let breaker_after = resting(state.breaker.state());
                if let Some((from, to, reason)) = change {
                    let _ = verdicts.send(Verdict::Health { id, from, to, reason, successes: state.successes, failures: state.failures });
                }
                if breaker_before != breaker_after {
                    let _ = verdicts.send(Verdict::Breaker { id, from: breaker_before, to: breaker_after });
                }
            }
        }
    }
}

/// Updates the in-memory state after a probe; returns the change, if any.
fn apply(state: &mut TargetState, outcome: &Probe) -> Option<(InstanceHealth, InstanceHealth, String)> {
    let now = Instant::now();
    state.probing = false;
    let reason = match outcome {
        Probe::Up { status, .. } => {
            state.successes += 1;
            state.failures = 0;
            state.breaker.record_success();
            // From when it was due, not from now: counting from the answer added the tick's wait,
            // the probe's latency and the loop's delay to every period (5.26 s instead of 5 s with
            // 10,000 instances, see docs/benchmarks.md).
            let next = state.next_due + state.target.interval;
            // A whole interval late (the loop was held up, e.g. storing thousands of first
            // verdicts): spread over the next interval. Making them all due now would probe them
            // in one burst, and keep them in that burst on every later round.
            state.next_due = if next > now { next } else { now + state.target.interval.mul_f64(fastrand::f64()) };
            format!("HTTP {status}")
        }
        Probe::Down { reason, .. } => {
            state.failures += 1;
            state.successes = 0;
            state.breaker.record_failure(now);
            let backoff = Backoff::new(state.target.interval / 8, state.target.interval);
            state.next_due = now + backoff.delay(u32::try_from(state.failures - 1).unwrap_or(0));
            reason.clone()
        }
    };
    let to = judge(state.health, state.successes, state.failures, state.target.fall, state.target.rise)?;
    let from = std::mem::replace(&mut state.health, to);
    let reason = match to {
        InstanceHealth::Unhealthy => format!("{} failed checks in a row; last: {reason}", state.failures),
        _ => format!("{} passed checks in a row ({reason})", state.successes),
    };
    Some((from, to, reason))
}

/// The breaker position people see: half-open lasts one trial probe, so it is shown as the
/// open state it came from until the trial decides (closed again, or open).
fn resting(state: crate::resilience::BreakerState) -> BreakerPosition {
    match state {
        crate::resilience::BreakerState::Closed { .. } => BreakerPosition::Closed,
        _ => BreakerPosition::Open,
    }
}

fn probe_point(target: &Target, outcome: &Probe) -> Point {
    let (ok, latency, status) = match outcome {
        Probe::Up { status, latency } => (true, latency, Some(*status)),
        Probe::Down { status, latency, .. } => (false, latency, *status),
    };
    let mut point = Point::new("health_probe");
    for (key, value) in &target.tags {
        point = point.tag(*key, value.clone());
    }
    // `failed` (0/1) beside `ok`, because InfluxQL can sum integers but not booleans.
    point = point.field("ok", ok).field("failed", i64::from(!ok)).field("latency_ms", latency.as_secs_f64() * 1000.0);
    if let Some(status) = status {
        point = point.field("status", i64::from(status));
    }
    point.timestamp(chrono::Utc::now())
}

/// Re-reads the targets: adds new ones (due now), drops removed ones, and picks up changed
/// settings and health written by others (expiry, re-registration).
async fn load(db: &PgPool, targets: &mut HashMap<Uuid, TargetState>) -> Result<(), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT i.id, i.host, i.port, COALESCE(i.health_check_path, s.health_check_path) AS "path!", i.health, i.breaker,
                  s.check_interval_ms, s.check_timeout_ms, s.fall, s.rise,
                  s.name AS service, v.label AS version, n.name AS node, c.name AS cluster
           FROM instances i
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE i.health <> 'expired'"#
    )
    .fetch_all(db)
    .await?;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let now = Instant::now();
    for r in rows {
        seen.insert(r.id);
        let host = if r.host.contains(':') { format!("[{}]", r.host) } else { r.host.clone() };
        let target = Target {
            url: format!("http://{host}:{}{}", r.port, r.path),
            interval: Duration::from_millis(u64::try_from(r.check_interval_ms).unwrap_or(5000)),
            timeout: Duration::from_millis(u64::try_from(r.check_timeout_ms).unwrap_or(2000)),
            fall: r.fall,
            rise: r.rise,
            tags: [
                ("cluster", r.cluster),
                ("node", r.node),
                ("service", r.service),
                ("version", r.version),
                ("instance", r.id.to_string()),
            ],
        };
        let health = InstanceHealth::parse(&r.health);
        match targets.get_mut(&r.id) {
            Some(state) => {
                // A shortened interval (a service tuned through the API) applies now, not
                // after the probe the old one scheduled.
                state.next_due = state.next_due.min(now + target.interval);
                state.target = target;
                if state.health != health && !state.probing {
                    state.health = health;
                }
            }
            None => {
                let mut breaker = CircuitBreaker::new(BreakerConfig {
                    failure_threshold: r.fall.max(1) as u32 + 2,
                    open_for: target.interval,
                });
                if BreakerPosition::parse(&r.breaker) == BreakerPosition::Open {
                    // Open when the last leader stopped: keep it open (one trial per interval).
                    breaker.trip(now);
                }
                targets.insert(
                    r.id,
                    TargetState { target, health, successes: 0, failures: 0, next_due: now, breaker, probing: false },
                );
            }
        }
    }
    targets.retain(|id, _| seen.contains(id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::topology::InstanceHealth::*;

    #[test]
    fn after_a_success_the_next_probe_is_due_one_interval_after_the_last_was_due() {
        let interval = Duration::from_secs(5);
        let due = Instant::now() - Duration::from_millis(300);
        let target = Target {
            url: "http://127.0.0.1:1/healthz".into(),
            interval,
            timeout: Duration::from_secs(2),
            fall: 3,
            rise: 2,
            tags: [
                ("cluster", "c".into()),
                ("node", "n".into()),
                ("service", "s".into()),
                ("version", "v".into()),
                ("instance", "i".into()),
            ],
        };
        let breaker = CircuitBreaker::new(BreakerConfig { failure_threshold: 5, open_for: interval });
        let mut state =
            TargetState { target, health: Healthy, successes: 5, failures: 0, next_due: due, breaker, probing: true };
        apply(&mut state, &Probe::Up { status: 200, latency: Duration::from_millis(300) });
        assert_eq!(state.next_due, due + interval, "the 300 ms it took to answer must not delay the next probe");

        state.next_due = Instant::now() - Duration::from_secs(6);
        state.probing = true;
        let before = Instant::now();
        apply(&mut state, &Probe::Up { status: 200, latency: Duration::from_millis(1) });
        assert!(
            state.next_due >= before && state.next_due <= Instant::now() + interval,
            "a probe a whole interval late is rescheduled within the next interval, not in the past"
        );
    }

    #[test]
    fn fall_failures_mark_down_and_rise_successes_mark_up() {
        assert_eq!(judge(Healthy, 0, 2, 3, 2), None);
        assert_eq!(judge(Healthy, 0, 3, 3, 2), Some(Unhealthy));
        assert_eq!(judge(Unhealthy, 1, 0, 3, 2), None);
        assert_eq!(judge(Unhealthy, 2, 0, 3, 2), Some(Healthy));
        assert_eq!(judge(Unknown, 2, 0, 3, 2), Some(Healthy), "a new instance needs rise successes");
        assert_eq!(judge(Unknown, 0, 3, 3, 2), Some(Unhealthy));
    }
}
