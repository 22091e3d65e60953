//! Active health checks: every instance is probed over HTTP at its service's interval, with a
//! timeout. `fall` consecutive failures mark it unhealthy, `rise` consecutive successes healthy;
//! each change is stored with its reason. A failed probe is retried sooner, after a jittered,
//! exponentially growing wait capped at the interval (so detection stays within fall ×
//! interval), and each target sits behind a circuit breaker, so a dead host costs one trial
//! probe per interval instead of retries. Every probe result goes to InfluxDB (`health_probe`).
//!
//! Not yet: a leader lock. Two `serve` replicas both probe; their verdicts agree, the probes
//! double. The per-target state lives in this process and is rebuilt from the table on start.

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::model::topology::InstanceHealth;
use sqlx::PgPool;
use tokio::{sync::Semaphore, time::Instant};
use uuid::Uuid;

use crate::{
    influx::{InfluxClient, Point},
    resilience::{Backoff, BreakerConfig, CircuitBreaker},
};

/// How often the target list is re-read (new, removed and re-configured instances).
const RELOAD_EVERY: Duration = Duration::from_secs(1);
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

/// The checker: runs until the process stops.
pub async fn run(db: PgPool, influx: InfluxClient) {
    let http = reqwest::Client::builder()
        .user_agent(concat!("opsdeck-health-checker/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(1)
        .build()
        .expect("a client with a user agent always builds");
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let (results_tx, mut results) = tokio::sync::mpsc::channel::<(Uuid, Probe)>(CONCURRENCY * 2);
    let mut targets: HashMap<Uuid, TargetState> = HashMap::new();
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut points: Vec<Point> = Vec::new();
    loop {
        tokio::select! {
            _ = reload.tick() => {
                if let Err(error) = load(&db, &mut targets).await {
                    tracing::warn!(%error, "could not load the health-check targets; keeping the last list");
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
                points.push(probe_point(&state.target, &outcome));
                if let Some((from, to, reason)) = apply(state, &outcome) {
                    if let Err(error) = record_change(&db, id, from, to, &reason, state).await {
                        tracing::warn!(%error, %id, "could not store a health change; it will be judged again");
                    } else {
                        tracing::info!(%id, from = from.as_str(), to = to.as_str(), reason, "instance health changed");
                    }
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

async fn record_change(
    db: &PgPool,
    id: Uuid,
    from: InstanceHealth,
    to: InstanceHealth,
    reason: &str,
    state: &TargetState,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    // Only if the row still is what we judged from: an expiry or a re-registration in between wins.
    let updated = sqlx::query!(
        r#"UPDATE instances SET health = $2, health_reason = $3, health_changed_at = now(),
               consecutive_successes = $4, consecutive_failures = $5
           WHERE id = $1 AND health = $6"#,
        id,
        to.as_str(),
        reason,
        state.successes,
        state.failures,
        from.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        sqlx::query!(
            "INSERT INTO instance_health_changes (instance_id, from_health, to_health, reason) VALUES ($1, $2, $3, $4)",
            id,
            from.as_str(),
            to.as_str(),
            reason
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
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
    point = point.field("ok", ok).field("latency_ms", latency.as_secs_f64() * 1000.0);
    if let Some(status) = status {
        point = point.field("status", i64::from(status));
    }
    point.timestamp(chrono::Utc::now())
}

/// Re-reads the targets: adds new ones (due now), drops removed ones, and picks up changed
/// settings and health written by others (expiry, re-registration).
async fn load(db: &PgPool, targets: &mut HashMap<Uuid, TargetState>) -> Result<(), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT i.id, i.host, i.port, COALESCE(i.health_check_path, s.health_check_path) AS "path!", i.health,
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
                state.target = target;
                if state.health != health && !state.probing {
                    state.health = health;
                }
            }
            None => {
                let breaker = CircuitBreaker::new(BreakerConfig {
                    failure_threshold: r.fall.max(1) as u32 + 2,
                    open_for: target.interval,
                });
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
