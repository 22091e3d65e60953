//! Reading and changing traffic policies. A change names the revision it was based on and
//! succeeds only if that is still the current one (optimistic locking): two operators acting on
//! the same screen can't overwrite each other — the second is told what the first did.

use app::model::traffic::{Route, Sticky, TrafficChange, TrafficPolicy, VersionWeight};
use sqlx::{PgConnection, PgExecutor};

/// The NOTIFY channel a policy change is announced on (`{"service_id": …, "revision": …}`).
pub const CHANNEL: &str = "opsdeck_traffic";

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// Someone changed the policy since the caller looked; here is what it is now.
    #[error("the traffic policy of {} is at revision {}, not {expected}: reload and decide again", .current.service, .current.revision)]
    Stale { expected: i64, current: Box<TrafficPolicy> },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The service's policy (revision 0 and no weights when none was set), or `None` for an unknown
/// service.
pub async fn load(db: impl PgExecutor<'_>, service: &str) -> Result<Option<TrafficPolicy>, sqlx::Error> {
    Ok(fetch(db, Some(service)).await?.pop())
}

/// Every service's policy (services without one included, at revision 0), by service name.
pub async fn load_all(db: impl PgExecutor<'_>) -> Result<Vec<TrafficPolicy>, sqlx::Error> {
    fetch(db, None).await
}

/// The policies of one service (`Some`) or of all (`None`), by service name.
async fn fetch(db: impl PgExecutor<'_>, service: Option<&str>) -> Result<Vec<TrafficPolicy>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT s.name, p.revision AS "revision?", p.weights AS "weights?", p.sticky_header, p.sticky_cookie,
                  p.route_host, p.route_path_prefix, p.strip_prefix AS "strip_prefix?",
                  p.updated_at AS "updated_at?", p.updated_by AS "updated_by?"
           FROM services s LEFT JOIN traffic_policies p ON p.service_id = s.id
           WHERE $1::TEXT IS NULL OR s.name = $1
           ORDER BY s.name"#,
        service
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(match row.revision {
                None => TrafficPolicy::none(&row.name),
                Some(revision) => TrafficPolicy {
                    service: row.name,
                    revision,
                    weights: parse_weights(row.weights)?,
                    sticky: Sticky { header: row.sticky_header, cookie: row.sticky_cookie },
                    route: Route {
                        host: row.route_host,
                        path_prefix: row.route_path_prefix,
                        strip_prefix: row.strip_prefix.unwrap_or(false),
                    },
                    updated_at: row.updated_at,
                    updated_by: row.updated_by.unwrap_or_default(),
                },
            })
        })
        .collect()
}

fn parse_weights(value: Option<serde_json::Value>) -> Result<Vec<VersionWeight>, sqlx::Error> {
    value
        .map(serde_json::from_value)
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

/// Applies `change` to `service`'s policy inside the caller's transaction (so the audit row and
/// event commit with it) and returns the new policy. The row is locked until commit, so of two
/// writers with the same `expected_revision` exactly one succeeds and the other gets
/// [`WriteError::Stale`] with the winner's policy. `updated_by` says who, e.g. `user alice`.
pub async fn write(
    tx: &mut PgConnection,
    service: &str,
    change: &TrafficChange,
    updated_by: &str,
) -> Result<TrafficPolicy, WriteError> {
    change.check().map_err(WriteError::Invalid)?;
    let service_id = sqlx::query_scalar!("SELECT id FROM services WHERE name = $1 FOR UPDATE", service)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| WriteError::UnknownService(service.to_owned()))?;
    // The service row lock serialises writers, including the first (when no policy row exists
    // yet for FOR UPDATE to lock), so the revision read here is the one the update replaces.
    let current = load(&mut *tx, service).await?.ok_or_else(|| WriteError::UnknownService(service.to_owned()))?;
    if current.revision != change.expected_revision {
        return Err(WriteError::Stale { expected: change.expected_revision, current: Box::new(current) });
    }
    let weights = serde_json::to_value(&change.weights).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query!(
        r#"INSERT INTO traffic_policies
               (service_id, revision, weights, sticky_header, sticky_cookie, route_host, route_path_prefix, strip_prefix, updated_by)
           VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (service_id) DO UPDATE SET
               revision = traffic_policies.revision + 1, weights = EXCLUDED.weights,
               sticky_header = EXCLUDED.sticky_header, sticky_cookie = EXCLUDED.sticky_cookie,
               route_host = EXCLUDED.route_host, route_path_prefix = EXCLUDED.route_path_prefix,
               strip_prefix = EXCLUDED.strip_prefix, updated_at = now(), updated_by = EXCLUDED.updated_by"#,
        service_id,
        weights,
        change.sticky.header,
        change.sticky.cookie,
        change.route.host,
        change.route.path_prefix,
        change.route.strip_prefix,
        updated_by,
    )
    .execute(&mut *tx)
    .await?;
    Ok(load(&mut *tx, service).await?.expect("the service row is locked by this transaction"))
}
