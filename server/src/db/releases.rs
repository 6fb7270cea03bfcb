//! The release ledger.

use app::dto::{ReleaseState, ReleaseSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(FromRow)]
struct Row {
    id: i64,
    app: String,
    environment: String,
    version: String,
    state: String,
    created_by: Option<String>,
    created_at: i64,
}

/// The newest releases first.
pub async fn list_recent<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<ReleaseSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.version, r.state, r.created_by,
                r.created_at
         FROM releases r
         JOIN apps a ON a.id = r.app_id
         JOIN environments e ON e.id = r.environment_id
         ORDER BY r.created_at DESC, r.id DESC
         LIMIT 200",
    )
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(ReleaseSummary {
                id: row.id,
                app: row.app,
                environment: row.environment,
                version: row.version,
                state: decode_state(&row.state, ReleaseState::parse)?,
                created_by: row.created_by,
                created_at: row.created_at,
            })
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct NewRelease<'a> {
    pub app_id: i64,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub version: &'a str,
    pub pipeline_sha: &'a str,
    pub image: Option<&'a str>,
    pub created_by: Option<&'a str>,
}

/// Records a production deployment as a live release; the previous live
/// release of the environment is superseded.
pub async fn insert<'e, E>(exec: E, release: &NewRelease<'_>, now: i64) -> Result<i64, sqlx::Error>
where
    E: Executor<'e, Database = Any> + Copy,
{
    sqlx::query("UPDATE releases SET state = $2 WHERE environment_id = $1 AND state = $3")
        .bind(release.environment_id)
        .bind(ReleaseState::Superseded.as_str())
        .bind(ReleaseState::Live.as_str())
        .execute(exec)
        .await?;
    sqlx::query_scalar(
        "INSERT INTO releases (app_id, environment_id, deployment_id, version, pipeline_sha, image, state,
             created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(release.app_id)
    .bind(release.environment_id)
    .bind(release.deployment_id)
    .bind(release.version)
    .bind(release.pipeline_sha)
    .bind(release.image)
    .bind(ReleaseState::Live.as_str())
    .bind(release.created_by)
    .bind(now)
    .fetch_one(exec)
    .await
}
