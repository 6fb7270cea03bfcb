//! Applications, as reconciled from the pipeline repo.

use sqlx::{Any, Executor};

/// What the reconciler records for one `apps/<name>/` folder.
#[derive(Clone, Debug)]
pub struct NewApp<'a> {
    pub name: &'a str,
    pub source_url: &'a str,
    pub config: &'a str,
    pub pipeline_sha: &'a str,
}

/// Inserts an application and returns its id.
pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    app: &NewApp<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO apps (name, source_url, config, pipeline_sha, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(app.name)
    .bind(app.source_url)
    .bind(app.config)
    .bind(app.pipeline_sha)
    .bind(now)
    .fetch_one(exec)
    .await
}
