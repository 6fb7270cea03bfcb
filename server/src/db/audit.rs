//! The append-only audit log (the database refuses updates and deletes).

use app::dto::AuditEntry;
use sqlx::{Any, Executor, FromRow};

/// One state change made by a person (or by Gantry on a person's behalf).
#[derive(Clone, Debug)]
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub reason: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    /// JSON object with details.
    pub detail: &'a str,
}

pub async fn record<'e>(
    exec: impl Executor<'e, Database = Any>,
    entry: &NewEntry<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO audit_log (at, actor, action, target, reason, source_ip, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(now)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.reason)
    .bind(entry.source_ip)
    .bind(entry.detail)
    .fetch_one(exec)
    .await
}

#[derive(FromRow)]
struct Row {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    reason: Option<String>,
    source_ip: Option<String>,
}

/// The newest entries first.
pub async fn list_recent<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, actor, action, target, reason, source_ip
         FROM audit_log ORDER BY at DESC, id DESC LIMIT 200",
    )
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| AuditEntry {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            target: row.target,
            reason: row.reason,
            source_ip: row.source_ip,
        })
        .collect())
}
