//! Service discovery: the healthy endpoints of a service, in round-robin order across calls.

use std::{collections::HashMap, sync::Mutex};

use app::model::topology::{Discovery, Endpoint};
use sqlx::PgPool;

use crate::http::error::ApiError;

/// Where each service's rotation stands. Per process: replicas rotate independently, which
/// still spreads load evenly over many calls.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<HashMap<String, usize>>,
}

impl RoundRobin {
    /// Rotates `items` so a different one comes first on each call for `key`.
    pub fn rotate<T>(&self, key: &str, mut items: Vec<T>) -> Vec<T> {
        if items.len() < 2 {
            return items;
        }
        let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let turn = next.entry(key.to_owned()).or_insert(0);
        let start = *turn % items.len();
        *turn = turn.wrapping_add(1);
        items.rotate_left(start);
        items
    }
}

/// The healthy endpoints of `service` (optionally of one version), rotated by one per call.
pub async fn discover(
    db: &PgPool,
    round_robin: &RoundRobin,
    service: &str,
    version: Option<&str>,
) -> Result<Discovery, ApiError> {
    let known = sqlx::query_scalar!("SELECT EXISTS (SELECT 1 FROM services WHERE name = $1) AS \"known!\"", service)
        .fetch_one(db)
        .await?;
    if !known {
        return Err(ApiError::NotFound(format!("no service named {service:?} has registered")));
    }
    let rows = sqlx::query!(
        r#"SELECT i.id, i.host, i.port, v.label AS version, n.name AS node, c.name AS cluster
           FROM instances i
           JOIN services s ON s.id = i.service_id
           JOIN service_versions v ON v.id = i.version_id
           JOIN nodes n ON n.id = i.node_id
           JOIN clusters c ON c.id = n.cluster_id
           WHERE s.name = $1 AND i.health = 'healthy' AND ($2::TEXT IS NULL OR v.label = $2)
           ORDER BY i.id"#,
        service,
        version,
    )
    .fetch_all(db)
    .await?;
    let endpoints: Vec<Endpoint> = rows
        .into_iter()
        .map(|r| Endpoint {
            instance_id: r.id.to_string(),
            address: if r.host.contains(':') {
                format!("[{}]:{}", r.host, r.port)
            } else {
                format!("{}:{}", r.host, r.port)
            },
            version: r.version,
            node: r.node,
            cluster: r.cluster,
        })
        .collect();
    let key = format!("{service}/{}", version.unwrap_or("*"));
    let index = index_of(&endpoints);
    Ok(Discovery { service: service.to_owned(), endpoints: round_robin.rotate(&key, endpoints), index })
}

/// A digest of the set (sorted by id, so order doesn't matter): equal sets, equal index.
fn index_of(endpoints: &[Endpoint]) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for endpoint in endpoints {
        digest.update(format!("{}|{}|{}\n", endpoint.instance_id, endpoint.address, endpoint.version));
    }
    digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Blocks until the healthy endpoints of `service` differ from the set identified by `index`,
/// or `wait` has passed, then answers as [`discover`] does. Woken by events (so by changes made
/// through any replica); each relevant event re-reads the set.
pub async fn watch(
    state: &crate::state::AppState,
    service: &str,
    version: Option<&str>,
    index: &str,
    wait: std::time::Duration,
) -> Result<Discovery, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before the first read, so a change between the two is not missed.
    let mut changes = state.events.subscribe();
    loop {
        let current = discover(&state.db, &state.round_robin, service, version).await?;
        if current.index != index {
            return Ok(current);
        }
        loop {
            let next = tokio::select! {
                // Shutting down: answer what we have; the client asks again elsewhere.
                () = state.stopping.cancelled() => return Ok(current),
                next = tokio::time::timeout_at(deadline, changes.recv()) => next,
            };
            match next {
                Err(_) => return Ok(current),
                Ok(Ok(event)) if !event.kind.may_change_endpoints_of(service) => continue,
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(current),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RoundRobin;

    #[test]
    fn each_call_starts_one_further_and_keys_rotate_independently() {
        let rr = RoundRobin::default();
        let firsts: Vec<_> = (0..4).map(|_| rr.rotate("web", vec!['a', 'b', 'c'])[0]).collect();
        assert_eq!(firsts, ['a', 'b', 'c', 'a']);
        assert_eq!(rr.rotate("api", vec![1, 2]), [1, 2]);
        assert_eq!(rr.rotate("web", vec!['a', 'b', 'c']), ['b', 'c', 'a']);
    }
}
