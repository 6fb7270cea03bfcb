//! The steps of a run, their logs (in chunks) and test reports.

use app::dto::{StepState, StepSummary, TestCaseFailure, TestReportSummary};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

/// Creates the step rows of a run, in order, and returns their ids. A
/// later attempt of the run finds them made and gets the same ids.
pub async fn create_all<'e, E>(
    exec: E,
    run_id: i64,
    names: &[&str],
) -> Result<Vec<i64>, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    for (position, name) in names.iter().enumerate() {
        sqlx::query(
            "INSERT INTO steps (run_id, position, name, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id, position) DO NOTHING",
        )
        .bind(run_id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(*name)
        .bind(StepState::Pending.as_str())
        .execute(exec)
        .await?;
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM steps WHERE run_id = $1 AND position < $2 ORDER BY position",
    )
    .bind(run_id)
    .bind(i64::try_from(names.len()).unwrap_or(i64::MAX))
    .fetch_all(exec)
    .await?;
    Ok(ids)
}

/// Where a run's steps stand, in order: `(id, state)`.
pub async fn progress<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<(i64, StepState)>, super::QueryError> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, state FROM steps WHERE run_id = $1 ORDER BY position")
            .bind(run_id)
            .fetch_all(exec)
            .await?;
    rows.into_iter()
        .map(|(id, state)| Ok((id, decode_state(&state, StepState::parse)?)))
        .collect()
}

/// Makes the steps from `position` on pending again, for a later attempt
/// that runs them from their start: their logs stay (the attempt adds to
/// them), their test reports go (the attempt writes its own).
pub async fn again<'e, E>(exec: E, run_id: i64, position: i64) -> Result<(), super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    sqlx::query(
        "DELETE FROM test_reports WHERE step_id IN
             (SELECT id FROM steps WHERE run_id = $1 AND position >= $2)",
    )
    .bind(run_id)
    .bind(position)
    .execute(exec)
    .await?;
    // What the steps run again declared: they declare it again.
    sqlx::query(
        "DELETE FROM run_outputs WHERE run_id = $1 AND step IN
             (SELECT name FROM steps WHERE run_id = $1 AND position >= $2)",
    )
    .bind(run_id)
    .bind(position)
    .execute(exec)
    .await?;
    Ok(sqlx::query(
        "UPDATE steps SET state = $3, exit_code = NULL, error = NULL, log_bytes = 0,
             log_truncated = 0, started_at = NULL, finished_at = NULL
         WHERE run_id = $1 AND position >= $2",
    )
    .bind(run_id)
    .bind(position)
    .bind(StepState::Pending.as_str())
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// The runner still holds the step's run: `$4` its attempt, `$5` its id.
const OWNED: &str = "EXISTS (SELECT 1 FROM runs r WHERE r.id = steps.run_id AND r.attempt = $4
                      AND r.runner_id = $5 AND r.state = 'running')";

/// Starts a step as part of `attempt` of its run, if `runner` still holds
/// that attempt (a replica that lost its run writes nothing).
pub async fn start<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    (runner, attempt): (&str, i64),
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(&format!(
        "UPDATE steps SET state = $2, started_at = $3, attempt = $4 WHERE id = $1 AND {OWNED}"
    ))
    .bind(id)
    .bind(StepState::Running.as_str())
    .bind(now)
    .bind(attempt)
    .bind(runner)
    .execute(exec)
    .await
    .map(|_| ())?)
}

#[derive(Clone, Debug)]
pub struct StepOutcome<'a> {
    pub state: StepState,
    pub exit_code: Option<i64>,
    pub error: Option<&'a str>,
    pub log_bytes: i64,
    pub log_truncated: bool,
}

/// Ends a step, if `runner` still holds `attempt` of its run and a later
/// attempt has not started the step since (this replica lost the run):
/// false then.
pub async fn finish<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    (runner, attempt): (&str, i64),
    outcome: &StepOutcome<'_>,
    now: i64,
) -> Result<bool, super::QueryError> {
    let owned = OWNED.replace("$4", "$8").replace("$5", "$9");
    Ok(sqlx::query(&format!(
        "UPDATE steps SET state = $2, exit_code = $3, error = $4, log_bytes = $5, log_truncated = $6,
             finished_at = $7
         WHERE id = $1 AND attempt = $8 AND {owned}"
    ))
    .bind(id)
    .bind(outcome.state.as_str())
    .bind(outcome.exit_code)
    .bind(outcome.error)
    .bind(outcome.log_bytes)
    .bind(i64::from(outcome.log_truncated))
    .bind(now)
    .bind(attempt)
    .bind(runner)
    .execute(exec)
    .await
    .map(|ended| ended.rows_affected() == 1)?)
}

/// Marks the steps that never ran (after a failure or cancel).
pub async fn skip_pending<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE steps SET state = $2 WHERE run_id = $1 AND state = $3")
            .bind(run_id)
            .bind(StepState::Skipped.as_str())
            .bind(StepState::Pending.as_str())
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Makes the steps an interrupted attempt left running pending again: the
/// run's next attempt runs them from their start.
pub async fn pause_running<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE steps SET state = $2, started_at = NULL WHERE run_id = $1 AND state = $3",
    )
    .bind(run_id)
    .bind(StepState::Pending.as_str())
    .bind(StepState::Running.as_str())
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Ends steps left running by an interrupted process.
pub async fn interrupt_running<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    reason: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("UPDATE steps SET state = $2, error = $3, finished_at = $4 WHERE run_id = $1 AND state = $5")
        .bind(run_id)
        .bind(StepState::Failed.as_str())
        .bind(reason)
        .bind(now)
        .bind(StepState::Running.as_str())
        .execute(exec)
        .await
        .map(|_| ())?)
}

#[derive(FromRow)]
struct StepRow {
    id: i64,
    position: i64,
    name: String,
    state: String,
    exit_code: Option<i64>,
    error: Option<String>,
    log_bytes: i64,
    log_truncated: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    network: Option<String>,
}

/// Records that a step runs on the host's network.
pub async fn set_network<'e>(
    exec: impl Executor<'e, Database = Any>,
    step_id: i64,
    network: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("UPDATE steps SET network = $2 WHERE id = $1")
        .bind(step_id)
        .bind(network)
        .execute(exec)
        .await
        .map(|_| ())?)
}

pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<StepSummary>, super::QueryError> {
    let rows: Vec<StepRow> = sqlx::query_as(
        "SELECT id, position, name, state, exit_code, error, log_bytes, log_truncated, started_at, finished_at,
                network
         FROM steps WHERE run_id = $1 ORDER BY position",
    )
    .bind(run_id)
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(StepSummary {
                id: row.id,
                position: row.position,
                name: row.name,
                state: decode_state(&row.state, StepState::parse)?,
                exit_code: row.exit_code,
                error: row.error,
                log_bytes: row.log_bytes,
                log_truncated: row.log_truncated != 0,
                started_at: row.started_at,
                finished_at: row.finished_at,
                network: row.network,
            })
        })
        .collect()
}

pub async fn append_log<'e>(
    exec: impl Executor<'e, Database = Any>,
    step_id: i64,
    seq: i64,
    content: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "INSERT INTO log_chunks (step_id, seq, content, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(step_id)
    .bind(seq)
    .bind(content)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// The number of the step's last log chunk (0: none yet): a later
/// attempt's chunks follow it.
pub async fn last_seq<'e>(
    exec: impl Executor<'e, Database = Any>,
    step_id: i64,
) -> Result<i64, super::QueryError> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM log_chunks WHERE step_id = $1")
            .bind(step_id)
            .fetch_one(exec)
            .await?;
    Ok(last.unwrap_or(0))
}

/// Log chunks of a step after `after_seq`, in order: `(seq, content)`.
pub async fn log_chunks<'e>(
    exec: impl Executor<'e, Database = Any>,
    step_id: i64,
    after_seq: i64,
) -> Result<Vec<(i64, String)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT seq, content FROM log_chunks WHERE step_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(step_id)
    .bind(after_seq)
    .fetch_all(exec)
    .await?)
}

pub async fn insert_report<'e>(
    exec: impl Executor<'e, Database = Any>,
    step_id: i64,
    report: &TestReportSummary,
    now: i64,
) -> Result<(), super::QueryError> {
    let failures =
        serde_json::to_string(&report.failures).map_err(super::QueryError::unwritable)?;
    Ok(sqlx::query(
        "INSERT INTO test_reports (step_id, name, passed, failed, skipped, failures, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(step_id)
    .bind(&report.name)
    .bind(report.passed)
    .bind(report.failed)
    .bind(report.skipped)
    .bind(failures)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

#[derive(FromRow)]
struct ReportRow {
    step: String,
    name: String,
    passed: i64,
    failed: i64,
    skipped: i64,
    failures: String,
}

pub async fn reports_for_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Vec<TestReportSummary>, super::QueryError> {
    let rows: Vec<ReportRow> = sqlx::query_as(
        "SELECT s.name AS step, t.name, t.passed, t.failed, t.skipped, t.failures
         FROM test_reports t JOIN steps s ON s.id = t.step_id
         WHERE s.run_id = $1 ORDER BY s.position, t.id",
    )
    .bind(run_id)
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|row| {
            let failures: Vec<TestCaseFailure> =
                serde_json::from_str(&row.failures).map_err(super::QueryError::stored)?;
            Ok(TestReportSummary {
                step: row.step,
                name: row.name,
                passed: row.passed,
                failed: row.failed,
                skipped: row.skipped,
                failures,
            })
        })
        .collect()
}
