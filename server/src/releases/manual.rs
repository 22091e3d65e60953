//! Traffic set by hand (`PUT /services/{service}/traffic`): the same safety as release actions
//! (operate, idempotency key, optimistic lock, one audit row, an event), refused while a release
//! of the service is in progress.

use app::model::{
    audit::{AuditAction, AuditOutcome},
    events::EventKind,
    traffic::{TrafficChange, TrafficPolicy},
};
use serde_json::json;

use super::{
    error::ReleaseError,
    service::{Releases, Who, fingerprint},
    store,
};
use crate::{
    audit::{self, AuditEntry},
    events, traffic,
};

impl Releases {
    /// `PUT /services/{service}/traffic`: a policy set by hand, refused while a release of the
    /// service is in progress (its actions move the traffic then).
    #[tracing::instrument(skip_all, fields(service))]
    pub async fn set_traffic(
        &self,
        who: &Who,
        service: &str,
        change: &TrafficChange,
        key: Option<&str>,
    ) -> Result<TrafficPolicy, ReleaseError> {
        change.check().map_err(ReleaseError::Invalid)?;
        let mut tx = self.db.begin().await?;
        let hash = fingerprint(&format!("PUT /services/{service}/traffic"), change);
        if let Some(repeat) = Self::claim::<TrafficPolicy>(&mut tx, who, key, &hash).await? {
            return Ok(repeat);
        }
        let facts = store::service(&mut tx, service)
            .await?
            .ok_or_else(|| ReleaseError::NotFound(format!("no service named {service:?}")))?;
        sqlx::query!("SELECT id FROM services WHERE id = $1 FOR UPDATE", facts.id).fetch_one(&mut *tx).await?;
        if let Some(active) = store::active_of(&mut *tx, facts.id).await? {
            let message = format!(
                "release #{active} of {service} is in progress: its traffic changes through the release's actions (or abort it first)"
            );
            return Err(Self::conflict(&mut tx, message, service, Some(active)).await?);
        }
        let before = traffic::store::load(&mut *tx, service).await?.unwrap_or_else(|| TrafficPolicy::none(service));
        let policy = traffic::store::write(&mut tx, service, change, &who.label())
            .await
            .map_err(|e| ReleaseError::from_write(e, None))?;
        let entry = AuditEntry::new(who.actor.clone(), AuditAction::TrafficChange, AuditOutcome::Success)
            .target(format!("service {service}"))
            .change(
                Some(json!({ "revision": before.revision, "weights": before.weights })),
                Some(json!({ "revision": policy.revision, "weights": policy.weights, "sticky": policy.sticky, "route": policy.route })),
            )
            .reason(change.reason.clone())
            .detail(format!("traffic of {service} set by hand to revision {}", policy.revision));
        audit::record(&mut *tx, &entry, &who.context).await?;
        events::publish(
            &mut tx,
            &EventKind::TrafficChanged {
                service: service.to_owned(),
                revision: policy.revision,
                weights: policy.weights.clone(),
                actor: who.label(),
            },
        )
        .await?;
        Self::answer(&mut tx, who, key, 200, &policy).await?;
        tx.commit().await?;
        Ok(policy)
    }
}
