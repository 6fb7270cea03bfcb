//! Every pipeline-repo commit Gantry read, and whether it took effect.

use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug, FromRow)]
pub struct RevisionRow {
    pub id: i64,
    pub pipeline_sha: String,
    pub state: String,
    pub issues: String,
    pub created_at: i64,
    /// The highest cluster id registered when it was read.
    pub clusters_seen: i64,
}

/// What reading one pipeline commit came to.
pub struct NewRevision<'a> {
    pub pipeline_sha: &'a str,
    pub state: &'a str,
    pub issues_json: &'a str,
    /// The highest cluster id among the clusters it was judged against.
    pub clusters_seen: i64,
}

pub async fn record<'e>(
    exec: impl Executor<'e, Database = Any>,
    revision: &NewRevision<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO config_revisions (pipeline_sha, state, issues, created_at, clusters_seen)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(revision.pipeline_sha)
    .bind(revision.state)
    .bind(revision.issues_json)
    .bind(now)
    .bind(revision.clusters_seen)
    .fetch_one(exec)
    .await?)
}

pub async fn latest<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Option<RevisionRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, pipeline_sha, state, issues, created_at, clusters_seen FROM config_revisions
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(exec)
    .await?)
}
