//! The branch heads Gantry last saw per app repo: the baseline for change
//! detection.

use std::collections::BTreeMap;

use sqlx::{Any, Executor};

pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
) -> Result<BTreeMap<String, String>, super::QueryError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT branch, commit_sha FROM branch_heads WHERE app_id = $1")
            .bind(app_id)
            .fetch_all(exec)
            .await?;
    Ok(rows.into_iter().collect())
}

pub async fn set<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO branch_heads (app_id, branch, commit_sha, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app_id, branch) DO UPDATE SET commit_sha = $3, updated_at = $4",
    )
    .bind(app_id)
    .bind(branch)
    .bind(sha)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn delete<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("DELETE FROM branch_heads WHERE app_id = $1 AND branch = $2")
            .bind(app_id)
            .bind(branch)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
