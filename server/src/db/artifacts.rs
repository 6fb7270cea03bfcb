//! Artifacts (an app's source tree built by one pipeline commit) and the
//! outputs a run's steps declared.

use app::dto::{ArtifactRejection, RunArtifact, RunOutput};
use sqlx::{Any, Executor};

/// The artifact of (`app_id`, `source_tree`, `pipeline_tree`), made when
/// it is the first run to build it (recording `pipeline_sha`, the pipeline
/// commit it was first built by); its id.
pub async fn ensure<'e, E>(
    exec: E,
    app_id: i64,
    (source_tree, pipeline_sha, pipeline_tree): (&str, &str, &str),
    now: i64,
) -> Result<i64, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let known: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM artifacts WHERE app_id = $1 AND source_tree = $2 AND pipeline_tree = $3
         ORDER BY id LIMIT 1",
    )
    .bind(app_id)
    .bind(source_tree)
    .bind(pipeline_tree)
    .fetch_optional(exec)
    .await?;
    if let Some(id) = known {
        return Ok(id);
    }
    sqlx::query(
        "INSERT INTO artifacts (app_id, source_tree, pipeline_sha, pipeline_tree, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, source_tree, pipeline_sha) DO NOTHING",
    )
    .bind(app_id)
    .bind(source_tree)
    .bind(pipeline_sha)
    .bind(pipeline_tree)
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

/// One release of an artifact that went live and was healthy: a
/// verification of it in its environment.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VerificationRow {
    pub release_id: i64,
    pub run_id: i64,
    pub environment: String,
    pub deployment_id: i64,
    pub image: Option<String>,
    pub healthy_since: i64,
    /// When it stopped serving; `None` while it serves.
    pub healthy_until: Option<i64>,
    /// It is what its environment serves now.
    pub serving: i64,
}

/// Where `artifact_id` went live and stayed healthy: releases (never
/// rollbacks) of runs that built it and succeeded — their checks after the
/// deploy passed too — that were healthy for a while and were not rolled
/// back. Newest first.
pub async fn verifications<'e>(
    exec: impl Executor<'e, Database = Any>,
    artifact_id: i64,
) -> Result<Vec<VerificationRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT r.id AS release_id, ru.id AS run_id, e.name AS environment, r.deployment_id,
                r.image, r.healthy_since, r.healthy_until,
                CASE WHEN e.deployment_id = r.deployment_id AND r.healthy_until IS NULL
                          AND e.state = 'live'
                     THEN 1 ELSE 0 END AS serving
         FROM releases r
         JOIN runs ru ON ru.id = r.run_id
         JOIN environments e ON e.id = r.environment_id
         WHERE ru.artifact_id = $1 AND r.kind = 'release' AND ru.state = 'succeeded'
           AND r.healthy_since IS NOT NULL AND r.state IN ('live', 'stable', 'superseded')
         ORDER BY r.id DESC",
    )
    .bind(artifact_id)
    .fetch_all(exec)
    .await?)
}

/// Who rejected the artifact, why and when; `None` if nobody did.
pub async fn rejection<'e>(
    exec: impl Executor<'e, Database = Any>,
    artifact_id: i64,
) -> Result<Option<ArtifactRejection>, super::QueryError> {
    let row: Option<(Option<String>, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT rejected_by, rejected_reason, rejected_at FROM artifacts WHERE id = $1",
    )
    .bind(artifact_id)
    .fetch_optional(exec)
    .await?;
    Ok(row.and_then(|(by, reason, at)| {
        Some(ArtifactRejection {
            by: by?,
            reason: reason.unwrap_or_default(),
            at: at?,
        })
    }))
}

/// Marks the artifact rejected; the first rejection stands (false: it
/// already was).
pub async fn reject<'e>(
    exec: impl Executor<'e, Database = Any>,
    artifact_id: i64,
    by: &str,
    reason: &str,
    now: i64,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query(
        "UPDATE artifacts SET rejected_by = $2, rejected_reason = $3, rejected_at = $4
         WHERE id = $1 AND rejected_at IS NULL",
    )
    .bind(artifact_id)
    .bind(by)
    .bind(reason)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// An artifact by id: its app, source tree and pipeline commit.
pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    artifact_id: i64,
) -> Result<Option<(i64, RunArtifact)>, super::QueryError> {
    let row: Option<(i64, i64, String, String)> =
        sqlx::query_as("SELECT id, app_id, source_tree, pipeline_sha FROM artifacts WHERE id = $1")
            .bind(artifact_id)
            .fetch_optional(exec)
            .await?;
    Ok(row.map(|(id, app_id, source_tree, pipeline_sha)| {
        (
            app_id,
            RunArtifact {
                id,
                source_tree,
                pipeline_sha,
            },
        )
    }))
}

/// The artifact a release deployed (through its run), if known.
pub async fn of_release<'e>(
    exec: impl Executor<'e, Database = Any>,
    release_id: i64,
) -> Result<Option<i64>, super::QueryError> {
    let found: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT ru.artifact_id FROM releases r JOIN runs ru ON ru.id = r.run_id WHERE r.id = $1",
    )
    .bind(release_id)
    .fetch_optional(exec)
    .await?;
    Ok(found.flatten())
}

/// Records that the run deploys what `from_run` built.
pub async fn set_promoted_from<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    from_run: i64,
) -> Result<(), super::QueryError> {
    sqlx::query("UPDATE runs SET promoted_from = $2 WHERE id = $1")
        .bind(run_id)
        .bind(from_run)
        .execute(exec)
        .await?;
    Ok(())
}

/// Gives the run what `from_run`'s steps declared (a promoted run deploys
/// that build) — if `runner` still holds `attempt` of it.
pub async fn copy_outputs<'e>(
    exec: impl Executor<'e, Database = Any>,
    (run_id, attempt, runner): (i64, i64, &str),
    from_run: i64,
) -> Result<(), super::QueryError> {
    sqlx::query(
        "INSERT INTO run_outputs (run_id, name, value, step)
         SELECT $1, o.name, o.value, o.step FROM run_outputs o
         WHERE o.run_id = $2 AND EXISTS (SELECT 1 FROM runs r WHERE r.id = $1
             AND r.attempt = $3 AND r.runner_id = $4 AND r.state = 'running')
         ON CONFLICT (run_id, name) DO NOTHING",
    )
    .bind(run_id)
    .bind(from_run)
    .bind(attempt)
    .bind(runner)
    .execute(exec)
    .await?;
    Ok(())
}

/// The run whose build environment `environment_id` serves: its current
/// deployment's run, or for a rollback the run of the deployment it
/// re-applied.
pub async fn serving_run<'e, E>(
    exec: E,
    environment_id: i64,
) -> Result<Option<i64>, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT d.run_id, d.rollback_of FROM environments e
         JOIN deployments d ON d.id = e.deployment_id WHERE e.id = $1",
    )
    .bind(environment_id)
    .fetch_optional(exec)
    .await?;
    match row {
        Some((_, Some(of))) => Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT run_id FROM deployments WHERE id = $1",
        )
        .bind(of)
        .fetch_optional(exec)
        .await?
        .flatten()),
        Some((run, None)) => Ok(run),
        None => Ok(None),
    }
}
