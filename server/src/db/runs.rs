//! Pipeline runs.

use app::dto::{PendingApproval, RunState, RunSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

/// How many runs a list returns at most (paging comes with the run views).
pub const LIST_LIMIT: i64 = 200;

#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    pub app_id: i64,
    pub environment_id: i64,
    pub branch: &'a str,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub state: RunState,
    pub trigger: &'a str,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    run: &NewRun<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO runs
            (app_id, environment_id, branch, commit_sha, pipeline_sha, state, trigger, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(run.app_id)
    .bind(run.environment_id)
    .bind(run.branch)
    .bind(run.commit_sha)
    .bind(run.pipeline_sha)
    .bind(run.state.as_str())
    .bind(run.trigger)
    .bind(now)
    .fetch_one(exec)
    .await
}

#[derive(FromRow)]
struct Row {
    id: i64,
    app: String,
    environment: String,
    branch: String,
    commit_sha: String,
    state: String,
    created_at: i64,
    finished_at: Option<i64>,
}

/// The newest runs first.
pub async fn list_recent<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<RunSummary>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.branch, r.commit_sha, r.state,
                r.created_at, r.finished_at
         FROM runs r
         JOIN apps a ON a.id = r.app_id
         JOIN environments e ON e.id = r.environment_id
         ORDER BY r.created_at DESC, r.id DESC
         LIMIT $1",
    )
    .bind(LIST_LIMIT)
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RunSummary {
                id: row.id,
                app: row.app,
                environment: row.environment,
                branch: row.branch,
                commit_sha: row.commit_sha,
                state: decode_state(&row.state, RunState::parse)?,
                created_at: row.created_at,
                finished_at: row.finished_at,
            })
        })
        .collect()
}

#[derive(FromRow)]
struct WaitingRow {
    id: i64,
    app: String,
    environment: String,
    commit_sha: String,
    created_at: i64,
}

/// Runs held until their environment's approval policy is met, oldest first.
pub async fn list_waiting_for_approval<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<PendingApproval>, sqlx::Error> {
    let rows: Vec<WaitingRow> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.commit_sha, r.created_at
         FROM runs r
         JOIN apps a ON a.id = r.app_id
         JOIN environments e ON e.id = r.environment_id
         WHERE r.state = $1
         ORDER BY r.created_at, r.id",
    )
    .bind(RunState::WaitingForApproval.as_str())
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| PendingApproval {
            run_id: row.id,
            app: row.app,
            environment: row.environment,
            commit_sha: row.commit_sha,
            requested_at: row.created_at,
        })
        .collect())
}
