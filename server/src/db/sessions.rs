//! Signed-in sessions, by the SHA-256 of their id (the id is the cookie).

use sqlx::{Any, Executor};

/// Stores a new session; false when the id is taken.
pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    stored_id: &str,
    data: &[u8],
    expires_at: i64,
) -> Result<bool, super::QueryError> {
    let inserted = sqlx::query(
        "INSERT INTO user_sessions (id, data, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(stored_id)
    .bind(data)
    .bind(expires_at)
    .execute(exec)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn save<'e>(
    exec: impl Executor<'e, Database = Any>,
    stored_id: &str,
    data: &[u8],
    expires_at: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO user_sessions (id, data, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET data = $2, expires_at = $3",
    )
    .bind(stored_id)
    .bind(data)
    .bind(expires_at)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// A live session's data and expiry.
pub async fn load<'e>(
    exec: impl Executor<'e, Database = Any>,
    stored_id: &str,
    now: i64,
) -> Result<Option<(Vec<u8>, i64)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT data, expires_at FROM user_sessions WHERE id = $1 AND expires_at > $2",
    )
    .bind(stored_id)
    .bind(now)
    .fetch_optional(exec)
    .await?)
}

pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    stored_id: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("DELETE FROM user_sessions WHERE id = $1")
        .bind(stored_id)
        .execute(exec)
        .await
        .map(|_| ())?)
}

/// Deletes the sessions expired before `now`; how many.
pub async fn purge_expired<'e>(
    exec: impl Executor<'e, Database = Any>,
    now: i64,
) -> Result<u64, super::QueryError> {
    let result = sqlx::query("DELETE FROM user_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(exec)
        .await?;
    Ok(result.rows_affected())
}
