//! Every pipeline-repo commit Gantry read, and whether it took effect.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct RevisionRow {
    pub id: i64,
    pub pipeline_sha: String,
    pub state: String,
    pub issues: String,
    pub created_at: i64,
}

pub async fn record<'e>(
    exec: impl Executor<'e, Database = Any>,
    pipeline_sha: &str,
    state: &str,
    issues_json: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO config_revisions (pipeline_sha, state, issues, created_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(pipeline_sha)
    .bind(state)
    .bind(issues_json)
    .bind(now)
    .fetch_one(exec)
    .await
}

pub async fn latest<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Option<RevisionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, pipeline_sha, state, issues, created_at FROM config_revisions
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(exec)
    .await
}
