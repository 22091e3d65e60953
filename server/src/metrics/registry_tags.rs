//! Tags from the registry: a point that names its instance (`instance=<id>`) but not its
//! cluster, node, service or version gets them from the `instances` table, so charts can group
//! by them without every sender knowing its place in the topology. Tags the sender did give win.
//!
//! Lookups are cached per instance id for a few seconds (unknown ids too), so a busy sender
//! costs one query per cache period, not one per request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use uuid::Uuid;

use crate::influx::Point;

/// How long a lookup is trusted. A re-registered instance gets a new id, so staleness is rare.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Past this many entries, expired ones are swept on the next lookup.
const SWEEP_ABOVE: usize = 10_000;

/// Where an instance is, as tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTags {
    pub cluster: String,
    pub node: String,
    pub service: String,
    pub version: String,
}

impl InstanceTags {
    fn pairs(&self) -> [(&'static str, &str); 4] {
        [("cluster", &self.cluster), ("node", &self.node), ("service", &self.service), ("version", &self.version)]
    }
}

type Entry = (Instant, Option<Arc<InstanceTags>>);

#[derive(Debug, Default)]
pub struct TagCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl TagCache {
    /// Adds the missing registry tags to every point that carries a known `instance` tag.
    pub async fn enrich(&self, db: &PgPool, points: &mut [Point]) -> Result<(), sqlx::Error> {
        let ids: Vec<Uuid> = points.iter().filter_map(instance_id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let known = self.lookup(db, ids).await?;
        for point in points.iter_mut() {
            let Some(tags) = instance_id(point).and_then(|id| known.get(&id)) else { continue };
            for (key, value) in tags.pairs() {
                if point.tag_value(key).is_none() {
                    point.push_tag(key, value);
                }
            }
        }
        Ok(())
    }

    async fn lookup(&self, db: &PgPool, mut ids: Vec<Uuid>) -> Result<HashMap<Uuid, Arc<InstanceTags>>, sqlx::Error> {
        ids.sort_unstable();
        ids.dedup();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                match entries.get(&id) {
                    Some((at, tags)) if at.elapsed() < CACHE_FOR => {
                        if let Some(tags) = tags {
                            found.insert(id, tags.clone());
                        }
                    }
                    _ => missing.push(id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = sqlx::query!(
            r#"SELECT i.id, c.name AS cluster, n.name AS node, s.name AS service, v.label AS version
               FROM instances i
               JOIN services s ON s.id = i.service_id
               JOIN service_versions v ON v.id = i.version_id
               JOIN nodes n ON n.id = i.node_id
               JOIN clusters c ON c.id = n.cluster_id
               WHERE i.id = ANY($1)"#,
            &missing,
        )
        .fetch_all(db)
        .await?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() > SWEEP_ABOVE {
            entries.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
        }
        for id in &missing {
            entries.insert(*id, (now, None));
        }
        for row in rows {
            let tags = Arc::new(InstanceTags {
                cluster: row.cluster,
                node: row.node,
                service: row.service,
                version: row.version,
            });
            entries.insert(row.id, (now, Some(tags.clone())));
            found.insert(row.id, tags);
        }
        Ok(found)
    }
}

fn instance_id(point: &Point) -> Option<Uuid> {
    point.tag_value("instance").and_then(|id| Uuid::parse_str(id).ok())
}
