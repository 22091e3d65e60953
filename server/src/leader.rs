//! One leader among replicas for work that must run once (health checks, the release
//! controller): the leader holds a PostgreSQL session-level advisory lock on a connection of its
//! own, does the work while it holds it, and steps down when that connection is lost — another
//! replica's next try then takes the lock.

use std::{future::Future, time::Duration};

use sqlx::PgPool;

/// How often a standby tries for the lock, and how often the leader checks its connection.
const POLL: Duration = Duration::from_secs(2);

/// Runs forever: waits to lead `job` (named in logs) under advisory lock `lock`, and while
/// leading runs `work()` until it returns or the lock's connection is lost; then tries again.
pub async fn lead<F, Fut>(db: &PgPool, lock: i64, job: &str, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut waiting_logged = false;
    loop {
        let mut connection = match db.acquire().await {
            Ok(connection) => connection.detach(),
            Err(error) => {
                tracing::warn!(%error, "{job}: can't reach PostgreSQL; retrying");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let leading = sqlx::query_scalar!("SELECT pg_try_advisory_lock($1) AS \"locked!\"", lock)
            .fetch_one(&mut connection)
            .await
            .unwrap_or(false);
        if !leading {
            if !waiting_logged {
                tracing::info!("another replica runs {job}; standing by to take over");
                waiting_logged = true;
            }
            drop(connection);
            tokio::time::sleep(POLL).await;
            continue;
        }
        tracing::info!("this replica runs {job} now");
        waiting_logged = false;
        let still_leading = async {
            loop {
                tokio::time::sleep(POLL).await;
                if let Err(error) = sqlx::query("SELECT 1").execute(&mut connection).await {
                    tracing::warn!(%error, "{job}: lost the leader lock's connection; stepping down");
                    return;
                }
            }
        };
        tokio::select! {
            () = work() => {}
            () = still_leading => {}
        }
    }
}
