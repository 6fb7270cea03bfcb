//! Environments of every app's stack and their live state.

use app::dto::{EnvironmentState, EnvironmentSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(Clone, Debug)]
pub struct NewEnvironment<'a> {
    pub app_id: i64,
    pub name: &'a str,
    pub stack_entry: &'a str,
    pub branch: Option<&'a str>,
    pub url: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    env: &NewEnvironment<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO environments
            (app_id, name, stack_entry, branch, state, url, namespace, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(env.app_id)
    .bind(env.name)
    .bind(env.stack_entry)
    .bind(env.branch)
    .bind(EnvironmentState::Pending.as_str())
    .bind(env.url)
    .bind(env.namespace)
    .bind(now)
    .fetch_one(exec)
    .await
}

#[derive(FromRow)]
struct Row {
    app: String,
    name: String,
    branch: Option<String>,
    state: String,
    commit_sha: Option<String>,
    pipeline_sha: Option<String>,
    url: Option<String>,
    updated_at: i64,
}

/// Every environment that is not destroyed, grouped by app.
pub async fn list_active<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<EnvironmentSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.name AS app, e.name, e.branch, e.state, e.commit_sha, e.pipeline_sha,
                e.url, e.updated_at
         FROM environments e JOIN apps a ON a.id = e.app_id
         WHERE e.destroyed_at IS NULL
         ORDER BY a.name, e.id",
    )
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(EnvironmentSummary {
                app: row.app,
                name: row.name,
                branch: row.branch,
                state: decode_state(&row.state, EnvironmentState::parse)?,
                commit_sha: row.commit_sha,
                pipeline_sha: row.pipeline_sha,
                url: row.url,
                updated_at: row.updated_at,
            })
        })
        .collect()
}
