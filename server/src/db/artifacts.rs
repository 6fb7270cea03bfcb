//! Artifacts (an app's source tree built by one pipeline commit) and the
//! outputs a run's steps declared.

use app::dto::{RunArtifact, RunOutput};
use sqlx::{Any, Executor};

/// The artifact of (`app_id`, `source_tree`, `pipeline_sha`), made when
/// it is the first run to build it; its id.
pub async fn ensure<'e, E>(
    exec: E,
    app_id: i64,
    (source_tree, pipeline_sha): (&str, &str),
    now: i64,
) -> Result<i64, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    sqlx::query(
        "INSERT INTO artifacts (app_id, source_tree, pipeline_sha, created_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (app_id, source_tree, pipeline_sha) DO NOTHING",
    )
    .bind(app_id)
    .bind(source_tree)
    .bind(pipeline_sha)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT id FROM artifacts WHERE app_id = $1 AND source_tree = $2 AND pipeline_sha = $3",
    )
    .bind(app_id)
    .bind(source_tree)
    .bind(pipeline_sha)
    .fetch_one(exec)
    .await?)
}

/// Records that the run builds `artifact_id`.
pub async fn set_for_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    artifact_id: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE runs SET artifact_id = $2 WHERE id = $1")
            .bind(run_id)
            .bind(artifact_id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Keeps what `step` declared, over what earlier steps declared by the
/// same names — if `runner` still holds `attempt` of the run (a replica
/// that lost its run writes nothing).
pub async fn record_outputs<'e, E>(
    exec: E,
    (run_id, attempt, runner): (i64, i64, &str),
    step: &str,
    outputs: &[(String, String)],
) -> Result<(), super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    for (name, value) in outputs {
        sqlx::query(
            "INSERT INTO run_outputs (run_id, name, value, step)
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = $1
                 AND r.attempt = $5 AND r.runner_id = $6 AND r.state = 'running')
             ON CONFLICT (run_id, name) DO UPDATE SET value = $3, step = $4",
        )
        .bind(run_id)
        .bind(name)
        .bind(value)
        .bind(step)
        .bind(attempt)
        .bind(runner)
        .execute(exec)
        .await?;
    }
    Ok(())
}

/// The run's artifact, if it has one.
pub async fn of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Option<RunArtifact>, super::QueryError> {
    let row: Option<(i64, String, String)> = sqlx::query_as(
        "SELECT a.id, a.source_tree, a.pipeline_sha FROM runs r JOIN artifacts a ON a.id = r.artifact_id
         WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_optional(exec)
    .await?;
    Ok(row.map(|(id, source_tree, pipeline_sha)| RunArtifact {
        id,
        source_tree,
        pipeline_sha,
    }))
}

/// What the run's steps declared, by name.
pub async fn outputs_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<RunOutput>, super::QueryError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, value, step FROM run_outputs WHERE run_id = $1 ORDER BY name")
            .bind(run_id)
            .fetch_all(exec)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, value, step)| RunOutput { name, value, step })
        .collect())
}
