//! Deployments: one commit applied to one environment, with the exact
//! manifests, and the outcome per target.

use app::dto::DeploymentState;
use sqlx::{Any, Executor, FromRow};

#[derive(Clone, Debug)]
pub struct NewDeployment<'a> {
    pub environment_id: i64,
    pub run_id: Option<i64>,
    pub kind: &'a str,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub image: Option<&'a str>,
    pub manifests: &'a str,
    pub manifests_digest: &'a str,
    pub created_by: Option<&'a str>,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    new: &NewDeployment<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO deployments (environment_id, run_id, kind, commit_sha, pipeline_sha, image, state,
             manifests, manifests_digest, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(new.environment_id)
    .bind(new.run_id)
    .bind(new.kind)
    .bind(new.commit_sha)
    .bind(new.pipeline_sha)
    .bind(new.image)
    .bind(DeploymentState::Deploying.as_str())
    .bind(new.manifests)
    .bind(new.manifests_digest)
    .bind(new.created_by)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// Concludes a deployment that is still `deploying`; false when it was
/// concluded already — by a take-over that abandoned it while a replica
/// that had lost its run was still applying it. That replica's verdict
/// must not overwrite the abandonment.
pub async fn finish<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: DeploymentState,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, super::QueryError> {
    let concluded = sqlx::query(
        "UPDATE deployments SET state = $2, reason = COALESCE($3, reason), finished_at = $4
         WHERE id = $1 AND state = $5",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .bind(DeploymentState::Deploying.as_str())
    .execute(exec)
    .await?;
    Ok(concluded.rows_affected() == 1)
}

#[allow(clippy::too_many_arguments)]
pub async fn record_target<'e>(
    exec: impl Executor<'e, Database = Any>,
    deployment_id: i64,
    target: &str,
    state: DeploymentState,
    detail: Option<&str>,
    objects: Option<&str>,
    started_at: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO deployment_targets (deployment_id, target, state, detail, objects, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (deployment_id, target) DO UPDATE SET state = $3, detail = $4, objects = $5, finished_at = $7",
    )
    .bind(deployment_id)
    .bind(target)
    .bind(state.as_str())
    .bind(detail)
    .bind(objects)
    .bind(started_at)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

#[derive(Clone, Debug, FromRow)]
pub struct DeploymentRow {
    pub id: i64,
    pub environment_id: i64,
    pub run_id: Option<i64>,
    pub kind: String,
    pub commit_sha: String,
    pub pipeline_sha: String,
    pub state: String,
    pub manifests: String,
}

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<DeploymentRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, environment_id, run_id, kind, commit_sha, pipeline_sha, state, manifests
         FROM deployments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(exec)
    .await?)
}

/// Deployments a crash left in `deploying`.
pub async fn list_deploying<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<DeploymentRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, environment_id, run_id, kind, commit_sha, pipeline_sha, state, manifests
         FROM deployments WHERE state = $1 ORDER BY id",
    )
    .bind(DeploymentState::Deploying.as_str())
    .fetch_all(exec)
    .await?)
}

/// Stores the exact manifests, sealed.
pub async fn store_sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sealed: &super::Sealed,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("UPDATE deployments SET manifests_sealed = $2, manifests_nonce = $3, manifests_key_id = $4 WHERE id = $1")
        .bind(id)
        .bind(sealed.ciphertext.clone())
        .bind(sealed.nonce.clone())
        .bind(&sealed.key_id)
        .execute(exec)
        .await
        .map(|_| ())?)
}

/// The sealed manifests and their digest: (digest, nonce, ciphertext, key id).
pub async fn sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<(String, Option<Vec<u8>>, Option<Vec<u8>>, Option<String>)>, super::QueryError> {
    Ok(sqlx::query_as("SELECT manifests_digest, manifests_nonce, manifests_sealed, manifests_key_id FROM deployments WHERE id = $1")
        .bind(id)
        .fetch_optional(exec)
        .await?)
}

/// The objects the environment's last successful deployment before
/// `before` applied to `target` (what prune compares against), as the
/// deploy layer stored them.
pub async fn previous_objects<'e, T: serde::de::DeserializeOwned>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    target: &str,
    before: i64,
) -> Result<Vec<T>, super::QueryError> {
    let objects: Option<String> = sqlx::query_scalar(
        "SELECT t.objects FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id
         WHERE d.environment_id = $1 AND t.target = $2 AND t.state = $3 AND t.objects IS NOT NULL AND d.id < $4
         ORDER BY d.id DESC LIMIT 1",
    )
    .bind(environment_id)
    .bind(target)
    .bind(DeploymentState::Succeeded.as_str())
    .bind(before)
    .fetch_optional(exec)
    .await?;
    Ok(objects
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

/// Marks a deployment as re-applying `of` (a rollback), with the reason.
pub async fn set_rollback_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    of: i64,
    reason: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE deployments SET rollback_of = $2, reason = $3 WHERE id = $1")
            .bind(id)
            .bind(of)
            .bind(reason)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// The targets of a run's latest deployment: (target, state, detail).
pub async fn targets_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<(String, String, Option<String>)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT t.target, t.state, t.detail FROM deployment_targets t
         WHERE t.deployment_id = (SELECT MAX(id) FROM deployments WHERE run_id = $1)
         ORDER BY t.target",
    )
    .bind(run_id)
    .fetch_all(exec)
    .await?)
}

/// The deployment of `run_id` the environment serves, if an earlier
/// attempt of the run deployed it and nothing replaced it since.
pub async fn serving_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    run_id: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT d.id FROM environments e JOIN deployments d ON d.id = e.deployment_id
         WHERE e.id = $1 AND d.run_id = $2 AND d.state = $3",
    )
    .bind(environment_id)
    .bind(run_id)
    .bind(DeploymentState::Succeeded.as_str())
    .fetch_optional(exec)
    .await?)
}

/// Whether a run made any deployment.
pub async fn exists_for_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(exec)
        .await?;
    Ok(count > 0)
}

/// Every deployment's sealed manifests (key rotation): (id, digest, nonce,
/// ciphertext, key id).
pub async fn all_sealed<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<(i64, String, Vec<u8>, Vec<u8>, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, manifests_digest, manifests_nonce, manifests_sealed, manifests_key_id FROM deployments WHERE manifests_sealed IS NOT NULL",
    )
    .fetch_all(exec)
    .await?)
}

/// The shown manifests of each live environment's latest deployment to
/// `target`, with the app and environment names (what the cluster check
/// reads the kinds in use from).
pub async fn latest_manifests_on<'e>(
    exec: impl Executor<'e, Database = Any>,
    target: &str,
) -> Result<Vec<(String, String, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT a.name, e.name, d.manifests FROM deployments d
         JOIN environments e ON e.id = d.environment_id
         JOIN apps a ON a.id = e.app_id
         WHERE e.destroyed_at IS NULL
           AND d.id IN (SELECT MAX(d2.id) FROM deployments d2
                        JOIN deployment_targets t ON t.deployment_id = d2.id
                        WHERE t.target = $1 GROUP BY d2.environment_id)
         ORDER BY d.id",
    )
    .bind(target)
    .fetch_all(exec)
    .await?)
}

/// When each deploy of an app's environments since `since` started, with
/// the environment's stack entry (uses `deployments_by_environment`).
pub async fn started_since_of_app<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    since: i64,
) -> Result<Vec<(String, i64)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT e.stack_entry, d.created_at
         FROM environments e JOIN deployments d ON d.environment_id = e.id
         WHERE e.app_id = $1 AND d.created_at >= $2",
    )
    .bind(app_id)
    .bind(since)
    .fetch_all(exec)
    .await?)
}
