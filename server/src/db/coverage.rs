//! What approvals cover on a protected environment's branch: the records
//! the coverage rule reads (deployments, decisions on runs and on change
//! requests, grants) and the grants it writes. The rule is `coverage`'s.

use sqlx::{Any, Executor, FromRow};

/// The commits ever deployed to the environment: each one was covered when
/// it went live (or the environment was not protected yet).
pub async fn deployed_commits<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<Vec<String>, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT commit_sha FROM deployments WHERE environment_id = $1")
            .bind(environment_id)
            .fetch_all(exec)
            .await?,
    )
}

/// Decisions on one held run of the environment: how many people approved
/// it, whether an admin overrode the hold, whether anyone rejected it.
#[derive(Clone, Debug, FromRow)]
pub struct RunDecisions {
    pub commit_sha: String,
    pub approvers: i64,
    pub overrides: i64,
    pub rejections: i64,
}

pub async fn run_decisions<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<Vec<RunDecisions>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT r.commit_sha,
                COUNT(DISTINCT CASE WHEN a.decision = 'approved' THEN a.user_id END) AS approvers,
                SUM(CASE WHEN a.decision = 'override' THEN 1 ELSE 0 END) AS overrides,
                SUM(CASE WHEN a.decision = 'rejected' THEN 1 ELSE 0 END) AS rejections
         FROM approvals a JOIN runs r ON r.id = a.run_id
         WHERE r.environment_id = $1
         GROUP BY r.id, r.commit_sha",
    )
    .bind(environment_id)
    .fetch_all(exec)
    .await?)
}

/// One decision (approval, override or rejection) on a change request's
/// head into the environment, with the target head its decider saw.
#[derive(Clone, Debug, FromRow)]
pub struct RequestDecision {
    pub change_request_id: i64,
    pub commit_sha: String,
    pub user_id: i64,
    pub decision: String,
    pub base_sha: Option<String>,
}

pub async fn request_decisions<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<Vec<RequestDecision>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT change_request_id, commit_sha, user_id, decision, base_sha
         FROM approvals
         WHERE environment_id = $1 AND change_request_id IS NOT NULL
           AND commit_sha IS NOT NULL AND decision IN ('approved', 'override', 'rejected')
         ORDER BY id",
    )
    .bind(environment_id)
    .fetch_all(exec)
    .await?)
}

/// A grant: see the migration `0018_approval_coverage.sql` for the kinds.
#[derive(Clone, Debug, FromRow)]
pub struct GrantRow {
    pub kind: String,
    pub tip_sha: String,
    pub base_sha: Option<String>,
}

pub async fn grants<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
) -> Result<Vec<GrantRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT kind, tip_sha, base_sha FROM coverage_grants
         WHERE app_id = $1 AND branch = $2 ORDER BY id",
    )
    .bind(app_id)
    .bind(branch)
    .fetch_all(exec)
    .await?)
}

#[derive(Clone, Debug)]
pub struct NewGrant<'a> {
    pub app_id: i64,
    pub branch: &'a str,
    pub kind: &'a str,
    pub tip_sha: &'a str,
    pub base_sha: Option<&'a str>,
    pub change_request_id: Option<i64>,
    pub user_id: Option<i64>,
}

pub async fn grant<'e>(
    exec: impl Executor<'e, Database = Any>,
    grant: &NewGrant<'_>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO coverage_grants (app_id, branch, kind, tip_sha, base_sha, change_request_id,
             user_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(grant.app_id)
    .bind(grant.branch)
    .bind(grant.kind)
    .bind(grant.tip_sha)
    .bind(grant.base_sha)
    .bind(grant.change_request_id)
    .bind(grant.user_id)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Who pushed a branch head, as a forge's signed push event said.
#[derive(Clone, Debug, FromRow)]
pub struct ForgePush {
    pub forge: String,
    pub login: String,
    pub before_sha: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub async fn record_push<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
    before: Option<&str>,
    forge: &str,
    login: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO forge_pushes (app_id, branch, sha, before_sha, forge, login, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (app_id, branch, sha)
         DO UPDATE SET before_sha = $4, forge = $5, login = $6, created_at = $7",
    )
    .bind(app_id)
    .bind(branch)
    .bind(sha)
    .bind(before)
    .bind(forge)
    .bind(login)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn pusher<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
) -> Result<Option<ForgePush>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT forge, login, before_sha FROM forge_pushes
         WHERE app_id = $1 AND branch = $2 AND sha = $3",
    )
    .bind(app_id)
    .bind(branch)
    .bind(sha)
    .fetch_optional(exec)
    .await?)
}
