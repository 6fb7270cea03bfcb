//! The append-only audit log (the database refuses updates and deletes).

use app::dto::{AuditEntry, AuditFilter};
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
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
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
    .await?)
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

impl Row {
    fn into_entry(self) -> AuditEntry {
        AuditEntry {
            id: self.id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            reason: self.reason,
            source_ip: self.source_ip,
        }
    }
}

/// `text` inside a LIKE pattern, matched literally.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The newest entries matching `filter` first.
pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, super::QueryError> {
    let family = filter
        .action
        .as_deref()
        .map(|action| format!("{}.%", like_literal(action)));
    let target = filter
        .target
        .as_deref()
        .map(|target| format!("%{}%", like_literal(target)));
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, at, actor, action, target, reason, source_ip FROM audit_log
         WHERE ($1 IS NULL OR actor = $1)
           AND ($2 IS NULL OR action = $2 OR action LIKE $3 ESCAPE '\\')
           AND ($4 IS NULL OR target LIKE $4 ESCAPE '\\')
           AND ($5 IS NULL OR at >= $5)
           AND ($6 IS NULL OR at < $6)
         ORDER BY at DESC, id DESC LIMIT $7",
    )
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .bind(family)
    .bind(target)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.limit.unwrap_or(200).clamp(1, 1000))
    .fetch_all(exec)
    .await?;
    Ok(rows.into_iter().map(Row::into_entry).collect())
}
