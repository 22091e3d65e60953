//! Idempotency keys of release and traffic actions, per actor: the first request claims the key
//! inside its own transaction (a concurrent repeat waits for it), its answer is stored with it,
//! a repeat gets that answer, and the same key with another request is refused.

use sqlx::PgConnection;

/// What an idempotency key holds.
pub enum KeyState {
    /// First use: carry the request out (the key row is held by this transaction).
    Fresh,
    /// Used before for the same request: its answer.
    Answered { status: u16, body: serde_json::Value },
    /// Used before for another request.
    Mismatch,
}

/// Claims `key` for `actor` inside the action's transaction (a concurrent repeat waits for it).
pub async fn claim_key(tx: &mut PgConnection, actor: &str, key: &str, hash: &[u8]) -> Result<KeyState, sqlx::Error> {
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (actor, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING 1 AS "claimed!""#,
        actor,
        key,
        hash
    )
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_some() {
        return Ok(KeyState::Fresh);
    }
    let row = sqlx::query!(
        "SELECT request_hash, status, body FROM idempotency_keys WHERE actor = $1 AND key = $2",
        actor,
        key
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(if row.request_hash != hash {
        KeyState::Mismatch
    } else {
        KeyState::Answered { status: u16::try_from(row.status).unwrap_or(200), body: row.body }
    })
}

pub async fn store_answer(
    tx: &mut PgConnection,
    actor: &str,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status = $3, body = $4 WHERE actor = $1 AND key = $2",
        actor,
        key,
        i16::try_from(status).unwrap_or(200),
        body
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
