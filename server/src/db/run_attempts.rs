//! The attempts of a run: each start, on which replica, from which step,
//! and why an attempt ended without ending its run.

use app::dto::RunAttempt;
use sqlx::{Any, Executor, FromRow};

/// Records that `runner_id` started `attempt` of the run from the step at
/// `from_step`.
pub async fn start<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    attempt: i64,
    runner_id: &str,
    from_step: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO run_attempts (run_id, attempt, runner_id, from_step, started_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, attempt) DO UPDATE SET from_step = $4",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(runner_id)
    .bind(from_step)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Ends the run's latest open attempt; `interrupted` says why when it did
/// not end the run.
pub async fn finish<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    interrupted: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE run_attempts SET finished_at = $2, interrupted = $3
         WHERE run_id = $1 AND finished_at IS NULL",
    )
    .bind(run_id)
    .bind(now)
    .bind(interrupted)
    .execute(exec)
    .await
    .map(|_| ())?)
}

#[derive(FromRow)]
struct AttemptRow {
    attempt: i64,
    runner_id: String,
    from_step: i64,
    step: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
    interrupted: Option<String>,
}

/// The run's attempts, first first.
pub async fn of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<RunAttempt>, super::QueryError> {
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT a.attempt, a.runner_id, a.from_step, s.name AS step, a.started_at, a.finished_at,
                a.interrupted
         FROM run_attempts a
         LEFT JOIN steps s ON s.run_id = a.run_id AND s.position = a.from_step
         WHERE a.run_id = $1 ORDER BY a.attempt",
    )
    .bind(run_id)
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| RunAttempt {
            attempt: row.attempt,
            replica: row.runner_id,
            from_step: row.from_step,
            from_step_name: row.step,
            started_at: row.started_at,
            finished_at: row.finished_at,
            interrupted: row.interrupted,
        })
        .collect())
}
