//! Notices between replicas on PostgreSQL (`NOTIFY`; see `crate::jobs::relay`).

/// Publishes `payload` on `channel` to every replica listening.
pub async fn publish(
    db: &super::Db,
    channel: &str,
    payload: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(db.pool())
        .await
        .map(|_| ())?)
}
