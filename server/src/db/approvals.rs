//! Decisions on held runs (approvals of a change request live with it, in
//! `change_requests`).

use sqlx::{Any, Executor};

/// Whether `user_id` approved the run already.
pub async fn has_approved<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
    user_id: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approvals WHERE run_id = $1 AND user_id = $2 AND decision = 'approved'",
    )
    .bind(run_id)
    .bind(user_id)
    .fetch_one(exec)
    .await?;
    Ok(count > 0)
}

/// How many people approved the run.
pub async fn approvers_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(DISTINCT user_id) FROM approvals WHERE run_id = $1 AND decision = 'approved'",
    )
    .bind(run_id)
    .fetch_one(exec)
    .await?)
}

/// Who last approved (or overrode the hold of) a run, by name.
pub async fn last_approver_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<Option<String>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT u.display_name FROM approvals d JOIN users u ON u.id = d.user_id
         WHERE d.run_id = $1 AND d.decision IN ('approved', 'override')
         ORDER BY d.id DESC LIMIT 1",
    )
    .bind(run_id)
    .fetch_optional(exec)
    .await?)
}
