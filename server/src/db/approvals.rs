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

/// Whether an admin overrode the run's hold.
pub async fn overridden<'e>(
    exec: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approvals WHERE run_id = $1 AND decision = 'override'",
    )
    .bind(run_id)
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

/// Something waiting for a decision (a held run or an open change
/// request), with what tells whether it waits for one person in particular.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Undecided {
    pub app_id: i64,
    pub app: String,
    /// Held runs: the stack entry of their environment.
    pub stack_entry: Option<String>,
    /// Change requests: the branch they merge into.
    pub target_branch: Option<String>,
    /// A fork's build or request (an admin decides).
    pub from_fork: i64,
    /// Who brought the change, where Gantry knows: the request's author,
    /// the run's pusher.
    pub author_user_id: Option<i64>,
    pub pushed_by_user_id: Option<i64>,
    /// The person asked about decided it already (on this head).
    pub decided: i64,
}

/// Held runs and open change requests of `apps` (all apps: `None`), and
/// whether `user_id` already decided each: what "waiting for you" counts.
pub async fn undecided<'e, E>(
    exec: E,
    user_id: i64,
    apps: Option<&[i64]>,
) -> Result<Vec<Undecided>, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    // Ids are numbers, written into the text: no injection.
    let filter = |column: &str| match apps {
        None => String::new(),
        Some([]) => " AND 1 = 0".to_string(),
        Some(ids) => {
            let ids = super::id_list(ids);
            format!(" AND {column} IN ({})", ids)
        }
    };
    let mut held: Vec<Undecided> = sqlx::query_as(&format!(
        "SELECT a.id AS app_id, a.name AS app, e.stack_entry, CAST(NULL AS TEXT) AS target_branch,
                CAST(CASE WHEN r.from_fork IS NULL THEN 0 ELSE 1 END AS BIGINT) AS from_fork,
                c.author_user_id, r.pushed_by_user_id,
                CAST(CASE WHEN EXISTS (SELECT 1 FROM approvals d WHERE d.run_id = r.id AND d.user_id = $2)
                     THEN 1 ELSE 0 END AS BIGINT) AS decided
         FROM runs r
         JOIN environments e ON e.id = r.environment_id
         JOIN apps a ON a.id = r.app_id
         LEFT JOIN change_requests c ON c.id = r.change_request_id
         WHERE r.state = $1{}",
        filter("r.app_id")
    ))
    .bind(app::dto::RunState::WaitingForApproval.as_str())
    .bind(user_id)
    .fetch_all(exec)
    .await?;
    let requests: Vec<Undecided> = sqlx::query_as(&format!(
        "SELECT a.id AS app_id, a.name AS app, CAST(NULL AS TEXT) AS stack_entry, c.target_branch,
                CAST(CASE WHEN c.fork_of IS NULL THEN 0 ELSE 1 END AS BIGINT) AS from_fork,
                c.author_user_id, CAST(NULL AS BIGINT) AS pushed_by_user_id,
                CAST(CASE WHEN EXISTS (SELECT 1 FROM approvals d WHERE d.change_request_id = c.id
                                  AND d.user_id = $2 AND d.commit_sha = c.head_sha)
                     THEN 1 ELSE 0 END AS BIGINT) AS decided
         FROM change_requests c
         JOIN apps a ON a.id = c.app_id
         WHERE c.state = $1 AND a.removed_at IS NULL{}",
        filter("c.app_id")
    ))
    .bind(app::dto::ChangeRequestState::Open.as_str())
    .bind(user_id)
    .fetch_all(exec)
    .await?;
    held.extend(requests);
    Ok(held)
}
