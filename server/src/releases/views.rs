//! What release control shows: lists, a release's detail, the confirmation preview of an
//! action (computed exactly as the action would be, without doing it), and the inbox.

use app::model::{
    releases::{
        ActionPreview, InboxItem, PreviewInstance, Release, ReleaseAction, ReleaseDetail, ReleaseState, Strategy,
    },
    traffic::TrafficPolicy,
};

use super::{analysis, error::ReleaseError, service::Releases, store};
use crate::traffic;

impl Releases {
    pub async fn list(&self, service: Option<&str>, active: bool) -> Result<Vec<Release>, ReleaseError> {
        let ids = store::list_ids(&self.db, service, active).await?;
        Ok(store::load_many(&self.db, &ids).await?.into_iter().map(|r| r.release).collect())
    }

    pub async fn detail(&self, id: i64) -> Result<ReleaseDetail, ReleaseError> {
        let stored =
            store::load(&self.db, id).await?.ok_or_else(|| ReleaseError::NotFound(format!("no release #{id}")))?;
        let service = &stored.release.service;
        let policy = traffic::store::load(&self.db, service).await?.unwrap_or_else(|| TrafficPolicy::none(service));
        Ok(ReleaseDetail {
            verdicts: store::verdicts(&self.db, id).await?,
            history: store::history(&self.db, id).await?,
            release: stored.release,
            policy,
        })
    }

    pub async fn traffic(&self, service: &str) -> Result<TrafficPolicy, ReleaseError> {
        traffic::store::load(&self.db, service)
            .await?
            .ok_or_else(|| ReleaseError::NotFound(format!("no service named {service:?}")))
    }

    /// What `action` would do now, for the confirmation dialog.
    pub async fn preview(&self, id: i64, action: ReleaseAction) -> Result<ActionPreview, ReleaseError> {
        let mut connection = self.db.acquire().await?;
        let stored = store::load(&mut *connection, id)
            .await?
            .ok_or_else(|| ReleaseError::NotFound(format!("no release #{id}")))?;
        let release = &stored.release;
        let policy = traffic::store::load(&mut *connection, &release.service)
            .await?
            .unwrap_or_else(|| TrafficPolicy::none(&release.service));
        let (planned, instances) = Self::decide(&mut connection, &stored, &action, None).await?;
        drop(connection);
        let (weights_after, refusal) = match planned {
            Ok(plan) => (plan.weights.unwrap_or_else(|| policy.weights.clone()), None),
            Err(refusal) => (policy.weights.clone(), Some(refusal)),
        };
        let show = |i: &store::InstanceFacts| PreviewInstance {
            id: i.id.to_string(),
            version: i.version.clone(),
            address: crate::events::address(&i.host, i.port),
            node: i.node.clone(),
        };
        let gets_traffic = |version: &str| {
            weights_after.is_empty() || weights_after.iter().any(|w| w.version == version && w.percent > 0)
        };
        let receiving_instances =
            instances.iter().filter(|i| i.healthy && gets_traffic(&i.version)).map(show).collect();
        let open_breakers = instances.iter().filter(|i| i.breaker_open).map(show).collect();
        let verdict = match (&release.strategy, &release.state) {
            (Strategy::Canary, state) if !state.is_terminal() => {
                let config = release.analysis.clone().unwrap_or_else(analysis::default_config);
                let live = analysis::compare(
                    &self.influx,
                    &release.service,
                    &release.target_version,
                    &release.stable_version,
                    &config,
                );
                match live.await {
                    Ok(verdict) => Some(verdict),
                    Err(error) => {
                        tracing::warn!(%error, "the live verdict for a preview could not be computed");
                        release.last_verdict.clone()
                    }
                }
            }
            _ => release.last_verdict.clone(),
        };
        Ok(ActionPreview {
            action,
            refusal,
            weights_before: policy.weights.clone(),
            weights_after,
            receiving_instances,
            verdict,
            open_breakers,
            revision: policy.revision,
        })
    }

    /// What waits for a person, newest first.
    pub async fn inbox(&self) -> Result<Vec<InboxItem>, ReleaseError> {
        let ids = store::inbox_ids(&self.db).await?;
        let releases = store::load_many(&self.db, &ids).await?;
        Ok(releases
            .into_iter()
            .map(|stored| {
                let r = stored.release;
                let ask = match r.state {
                    ReleaseState::Paused => {
                        format!("{} is paused at {} %: resume, promote or abort", r.target_version, r.current_percent)
                    }
                    ReleaseState::AwaitingPromotion => {
                        format!("{} is at {} % and waits for promotion", r.target_version, r.current_percent)
                    }
                    ReleaseState::SmokeFailed => format!(
                        "smoke checks of {} failed: {}",
                        r.target_version,
                        r.status_reason.clone().unwrap_or_default()
                    ),
                    ReleaseState::RolledBack => format!(
                        "{} was rolled back automatically: {}",
                        r.target_version,
                        r.status_reason.clone().unwrap_or_default()
                    ),
                    ReleaseState::Failed => format!(
                        "the rolling release of {} stopped: {} — roll back, or fix it and start again",
                        r.target_version,
                        r.status_reason.clone().unwrap_or_default()
                    ),
                    _ => format!(
                        "the step at {} % is held: {}",
                        r.current_percent,
                        r.last_verdict.as_ref().map_or("too little data".to_owned(), |v| v.summary.clone())
                    ),
                };
                let since = match r.state {
                    ReleaseState::Progressing => stored.held_since.unwrap_or(r.updated_at),
                    ReleaseState::RolledBack | ReleaseState::Failed => r.finished_at.unwrap_or(r.updated_at),
                    _ => r.updated_at,
                };
                InboxItem { release_id: r.id, service: r.service, state: r.state, ask, since }
            })
            .collect())
    }
}
