//! The event inbox: every incoming change, stored once (deduplicated by
//! source + delivery id) before anything acts on it.

use sqlx::{Any, Executor, FromRow};

/// The payload of a push or branch deletion event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BranchEvent {
    pub app_id: i64,
    pub branch: String,
    /// The head before (none for a new branch).
    pub before: Option<String>,
    /// The head after (none for a deleted branch).
    pub after: Option<String>,
}

#[derive(Clone, Debug, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

/// Stores an event; `None` when the same delivery was stored before.
pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    source: &str,
    delivery_id: &str,
    kind: &str,
    payload: &str,
    now: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO event_inbox (source, delivery_id, kind, payload, received_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id",
    )
    .bind(source)
    .bind(delivery_id)
    .bind(kind)
    .bind(payload)
    .bind(now)
    .fetch_optional(exec)
    .await?)
}

/// Stores a forge delivery; `None` when the same delivery id, or the same
/// signed body under another id (a replay), was stored before.
pub async fn insert_delivery<'e>(
    exec: impl Executor<'e, Database = Any>,
    source: &str,
    delivery_id: &str,
    body_digest: &str,
    kind: &str,
    payload: &str,
    now: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO event_inbox (source, delivery_id, body_digest, kind, payload, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(source)
    .bind(delivery_id)
    .bind(body_digest)
    .bind(kind)
    .bind(payload)
    .bind(now)
    .fetch_optional(exec)
    .await?)
}

/// The oldest events not processed yet.
pub async fn pending<'e>(
    exec: impl Executor<'e, Database = Any>,
    limit: i64,
) -> Result<Vec<EventRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, source, kind, payload, attempts FROM event_inbox
         WHERE processed_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(exec)
    .await?)
}

/// Marks an event done; `error` keeps why it could not be acted on.
pub async fn mark_processed<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    error: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("UPDATE event_inbox SET processed_at = $2, error = $3, attempts = attempts + 1 WHERE id = $1")
        .bind(id)
        .bind(now)
        .bind(error)
        .execute(exec)
        .await
        .map(|_| ())?)
}

/// Counts a failed attempt without finishing the event (it is retried).
pub async fn mark_attempt<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    error: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE event_inbox SET attempts = attempts + 1, error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
