//! Schema phases: a release may declare that it expands the schema (additive, old versions
//! keep working) or contracts it (removes what older versions need). Rolling back to a version
//! older than a completed contract is refused, with the reason and the way out.

use sqlx::PgExecutor;

/// Why rolling `service_id` back to `version` would break, if it would.
pub async fn rollback_refusal(
    db: impl PgExecutor<'_>,
    service_id: i64,
    version: &str,
) -> Result<Option<String>, sqlx::Error> {
    Ok(super::store::contract_after(db, service_id, version).await?.map(|(id, target, description)| {
        format!(
            "release #{id} ({target}) contracted the schema: {description}; {version} expects what it removed — roll forward instead"
        )
    }))
}
