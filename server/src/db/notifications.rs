//! Notification channels and their delivery log.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct ChannelRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub settings: String,
    pub created_at: i64,
}

pub async fn channels<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ChannelRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, name, kind, settings, created_at FROM notification_channels ORDER BY name",
    )
    .fetch_all(exec)
    .await?)
}

pub async fn channel<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<ChannelRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, name, kind, settings, created_at FROM notification_channels WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(exec)
    .await?)
}

/// Registers a channel, or replaces one of the same name.
pub async fn put_channel<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
    kind: &str,
    settings: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO notification_channels (name, kind, settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (name) DO UPDATE SET kind = $2, settings = $3, updated_at = $4",
    )
    .bind(name)
    .bind(kind)
    .bind(settings)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn delete_channel<'e>(
    exec: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query("DELETE FROM notification_channels WHERE name = $1")
        .bind(name)
        .execute(exec)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Queues a delivery; false when the channel already has this event for
/// this subject (one message per run outcome or release).
pub async fn queue<'e>(
    exec: impl Executor<'e, Database = Any>,
    channel_id: i64,
    event: &str,
    subject: &str,
    payload: &str,
    now: i64,
) -> Result<bool, super::QueryError> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO notification_deliveries
             (channel_id, event, subject, payload, state, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $5)
         ON CONFLICT (channel_id, event, subject) DO NOTHING RETURNING id",
    )
    .bind(channel_id)
    .bind(event)
    .bind(subject)
    .bind(payload)
    .bind(now)
    .fetch_optional(exec)
    .await?;
    Ok(id.is_some())
}

/// A delivery to send, with its channel.
#[derive(Clone, Debug, FromRow)]
pub struct DueDelivery {
    pub id: i64,
    pub kind: String,
    pub settings: String,
    pub payload: String,
    pub attempts: i64,
}

pub async fn due<'e>(
    exec: impl Executor<'e, Database = Any>,
    now: i64,
    limit: i64,
) -> Result<Vec<DueDelivery>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT d.id, c.kind, c.settings, d.payload, d.attempts
         FROM notification_deliveries d JOIN notification_channels c ON c.id = d.channel_id
         WHERE d.state IN ('pending', 'retrying') AND d.next_attempt_at <= $1
         ORDER BY d.next_attempt_at, d.id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(exec)
    .await?)
}

pub async fn delivered<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE notification_deliveries SET state = 'delivered', attempts = attempts + 1,
             delivered_at = $2, next_attempt_at = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Records a failed attempt: retried at `next`, or failed for good.
pub async fn failed_attempt<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    attempts: i64,
    next: Option<i64>,
    error: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE notification_deliveries SET state = $2, attempts = $3, next_attempt_at = $4,
             last_error = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(if next.is_some() { "retrying" } else { "failed" })
    .bind(attempts)
    .bind(next)
    .bind(error)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// One line of a channel's delivery log.
#[derive(Clone, Debug, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub event: String,
    pub subject: String,
    /// pending, retrying, delivered or failed.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

pub async fn deliveries<'e>(
    exec: impl Executor<'e, Database = Any>,
    channel_id: i64,
) -> Result<Vec<DeliveryRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, event, subject, state, attempts, last_error, created_at, delivered_at
         FROM notification_deliveries WHERE channel_id = $1 ORDER BY id DESC LIMIT 200",
    )
    .bind(channel_id)
    .fetch_all(exec)
    .await?)
}
