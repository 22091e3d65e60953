//! The routing table: every service's policy and its instances, loaded in one consistent read,
//! so a data plane can swap the whole table at once.

use std::collections::HashMap;

use app::model::{topology::InstanceHealth, traffic::TrafficPolicy};
use sqlx::PgPool;
use uuid::Uuid;

/// One instance a request may be sent to.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub id: Uuid,
    pub version: String,
    pub cluster: String,
    pub node: String,
    pub host: String,
    pub port: u16,
    /// As the active health checker last saw it; data planes route to `healthy` ones.
    pub health: InstanceHealth,
}

impl Upstream {
    /// `host:port`, IPv6 in brackets.
    pub fn address(&self) -> String {
        crate::events::address(&self.host, i32::from(self.port))
    }
}

/// A service's policy and all its live (not expired) instances, ordered by id.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRoutes {
    pub policy: TrafficPolicy,
    pub upstreams: Vec<Upstream>,
}

impl ServiceRoutes {
    /// The healthy instances of `version`.
    pub fn healthy_of<'a>(&'a self, version: &'a str) -> impl Iterator<Item = &'a Upstream> + 'a {
        self.upstreams.iter().filter(move |u| u.version == version && u.health == InstanceHealth::Healthy)
    }
}

/// Every service's routes, by service name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingTable {
    pub services: HashMap<String, ServiceRoutes>,
    /// When it was read, for "policy as of …" on a data plane's `/readyz`.
    pub loaded_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RoutingTable {
    /// Reads the whole table in one repeatable-read transaction (policies and instances as of
    /// the same moment).
    pub async fn load(db: &PgPool) -> Result<Self, sqlx::Error> {
        let mut tx = db.begin().await?;
        sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let policies = super::store::load_all(&mut *tx).await?;
        let rows = sqlx::query!(
            r#"SELECT i.id, s.name AS service, v.label AS version, c.name AS cluster, n.name AS node,
                      i.host, i.port, i.health
               FROM instances i
               JOIN services s ON s.id = i.service_id
               JOIN service_versions v ON v.id = i.version_id
               JOIN nodes n ON n.id = i.node_id
               JOIN clusters c ON c.id = n.cluster_id
               WHERE i.health <> 'expired'
               ORDER BY i.id"#
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut services: HashMap<String, ServiceRoutes> = policies
            .into_iter()
            .map(|policy| (policy.service.clone(), ServiceRoutes { policy, upstreams: Vec::new() }))
            .collect();
        for row in rows {
            let Some(routes) = services.get_mut(&row.service) else { continue };
            let Ok(port) = u16::try_from(row.port) else { continue };
            routes.upstreams.push(Upstream {
                id: row.id,
                version: row.version,
                cluster: row.cluster,
                node: row.node,
                host: row.host,
                port,
                health: InstanceHealth::parse(&row.health),
            });
        }
        Ok(Self { services, loaded_at: Some(chrono::Utc::now()) })
    }

    /// The service a request belongs to: the longest matching path prefix wins; among equal
    /// matches, the one with a configured route before a name match.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&ServiceRoutes> {
        self.services
            .values()
            .filter_map(|routes| {
                let length = routes.policy.route_match(host, path)?;
                let configured = routes.policy.route.host.is_some() || routes.policy.route.path_prefix.is_some();
                Some(((length, configured), routes))
            })
            .max_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| rb.policy.service.cmp(&ra.policy.service)))
            .map(|(_, routes)| routes)
    }
}
