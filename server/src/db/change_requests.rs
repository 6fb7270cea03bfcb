//! Change requests, native and from forges, in one model, and the decisions
//! (approvals, rejections, overrides) taken on them.

use app::dto::{ApprovalRecord, ChangeRequestState, ChangeRequestSummary};
use sqlx::{Any, Executor, FromRow};

/// The states in which a request still waits for something.
pub const ACTIVE: [ChangeRequestState; 3] = [
    ChangeRequestState::Open,
    ChangeRequestState::Approved,
    ChangeRequestState::Conflict,
];

#[derive(Clone, Debug, FromRow)]
pub struct CrRow {
    pub id: i64,
    pub app_id: i64,
    pub app: String,
    pub origin: String,
    pub title: String,
    pub description: String,
    pub source_branch: String,
    pub target_branch: String,
    pub head_sha: Option<String>,
    pub author: String,
    pub author_user_id: Option<i64>,
    #[sqlx(try_from = "String")]
    pub state: ChangeRequestState,
    pub state_detail: Option<String>,
    pub merge_sha: Option<String>,
    pub merged_by: Option<String>,
    pub created_at: i64,
    /// The fork a forge request comes from (untrusted), if it does.
    pub fork_of: Option<String>,
}

impl CrRow {
    pub fn summary(&self) -> Result<ChangeRequestSummary, super::QueryError> {
        Ok(ChangeRequestSummary {
            id: self.id,
            app: self.app.clone(),
            title: self.title.clone(),
            source_branch: self.source_branch.clone(),
            target_branch: self.target_branch.clone(),
            author: self.author.clone(),
            state: self.state,
            state_detail: self.state_detail.clone(),
            head_sha: self.head_sha.clone(),
            created_at: self.created_at,
        })
    }

    pub fn is_active(&self) -> bool {
        ACTIVE.contains(&self.state)
    }
}

const SELECT: &str = "SELECT c.id, c.app_id, a.name AS app, c.origin, c.title, c.description,
        c.source_branch, c.target_branch, c.head_sha, c.author, c.author_user_id, c.state,
        c.state_detail, c.merge_sha, c.merged_by, c.created_at, c.fork_of
     FROM change_requests c JOIN apps a ON a.id = c.app_id";

#[derive(Clone, Debug)]
pub struct NewRow<'a> {
    pub app_id: i64,
    pub origin: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub source_branch: &'a str,
    pub target_branch: &'a str,
    pub head_sha: &'a str,
    pub author: &'a str,
    pub author_user_id: Option<i64>,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    row: &NewRow<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO change_requests (app_id, origin, title, description, source_branch,
            target_branch, head_sha, author, author_user_id, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
    )
    .bind(row.app_id)
    .bind(row.origin)
    .bind(row.title)
    .bind(row.description)
    .bind(row.source_branch)
    .bind(row.target_branch)
    .bind(row.head_sha)
    .bind(row.author)
    .bind(row.author_user_id)
    .bind(ChangeRequestState::Open.as_str())
    .bind(now)
    .fetch_one(exec)
    .await?)
}

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<CrRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(exec)
        .await?)
}

/// Open requests first, then the rest; newest first within each.
pub async fn list<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<CrRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT} ORDER BY CASE WHEN c.state IN ($1, $2, $3) THEN 0 ELSE 1 END,
            c.created_at DESC, c.id DESC LIMIT 200"
    ))
    .bind(ACTIVE[0].as_str())
    .bind(ACTIVE[1].as_str())
    .bind(ACTIVE[2].as_str())
    .fetch_all(exec)
    .await?)
}

/// Requests still waiting whose source is `branch` of the app.
pub async fn active_from<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
) -> Result<Vec<CrRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT} WHERE c.app_id = $1 AND c.source_branch = $2 AND c.state IN ($3, $4, $5)
         ORDER BY c.id"
    ))
    .bind(app_id)
    .bind(branch)
    .bind(ACTIVE[0].as_str())
    .bind(ACTIVE[1].as_str())
    .bind(ACTIVE[2].as_str())
    .fetch_all(exec)
    .await?)
}

/// Requests approved but not merged yet (a freeze held them back).
pub async fn approved<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<CrRow>, super::QueryError> {
    Ok(
        sqlx::query_as(&format!("{SELECT} WHERE c.state = $1 ORDER BY c.id"))
            .bind(ChangeRequestState::Approved.as_str())
            .fetch_all(exec)
            .await?,
    )
}

/// The request whose merge by Gantry produced `sha` on `branch`, if any
/// (recorded with `merged_via = gantry` before the push; a forge's merges,
/// and merges recorded before, are never this).
pub async fn merged_as<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM change_requests
         WHERE app_id = $1 AND target_branch = $2 AND merge_sha = $3
           AND merged_via = $4
         ORDER BY id DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(branch)
    .bind(sha)
    .bind(MergedVia::Gantry.as_str())
    .fetch_optional(exec)
    .await?)
}

pub async fn set_state<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: ChangeRequestState,
    detail: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    sqlx::query(
        "UPDATE change_requests SET state = $2, state_detail = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(detail)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(())
}

/// Sets the state of a request that is still active (open, approved or in
/// conflict): false when it was merged, rejected or closed meanwhile, by
/// another replica, a reviewer or the forge — that is not undone.
pub async fn set_state_if_active<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: ChangeRequestState,
    detail: Option<&str>,
    now: i64,
) -> Result<bool, super::QueryError> {
    let active = ACTIVE
        .iter()
        .map(|state| format!("'{}'", state.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let set = sqlx::query(&format!(
        "UPDATE change_requests SET state = $2, state_detail = $3, updated_at = $4
         WHERE id = $1 AND state IN ({active})"
    ))
    .bind(id)
    .bind(state.as_str())
    .bind(detail)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(set.rows_affected() == 1)
}

/// Records the merge commit about to be pushed — only while `holder` holds
/// the request's merge lease `lease` (in the database's clock) and the
/// request is still approved: the last check before the push, so a
/// replica whose lease ran out pushes nothing.
///
/// With the commit, its coverage grant is written (`grant`): Gantry
/// merges only onto a target it checked, so its merge covers what is
/// under it (see `coverage`).
pub async fn record_merge_sha_under_lease(
    db: &super::Db,
    id: i64,
    sha: &str,
    (lease, holder): (&str, &str),
    grant: &super::coverage::NewGrant<'_>,
) -> Result<bool, super::QueryError> {
    let mut tx = db.begin().await?;
    let recorded = sqlx::query(&format!(
        "UPDATE change_requests SET merge_sha = $2, merged_via = '{}'
         WHERE id = $1 AND state = $3
           AND EXISTS (SELECT 1 FROM singletons
                       WHERE name = $4 AND holder = $5 AND expires_at > {})",
        MergedVia::Gantry.as_str(),
        super::now_sql(db.backend())
    ))
    .bind(id)
    .bind(sha)
    .bind(ChangeRequestState::Approved.as_str())
    .bind(lease)
    .bind(holder)
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() != 1 {
        return Ok(false);
    }
    super::coverage::grant(&mut *tx, grant, super::now_millis()).await?;
    tx.commit().await?;
    Ok(true)
}

/// A new head on the source branch: back to open, approvals start over,
/// and a merge commit recorded for the old head is forgotten.
pub async fn set_head<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    sqlx::query(
        "UPDATE change_requests SET head_sha = $2, state = $3, state_detail = NULL, updated_at = $4,
             merge_sha = NULL, merged_via = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(sha)
    .bind(ChangeRequestState::Open.as_str())
    .bind(now)
    .execute(exec)
    .await?;
    Ok(())
}

/// How a request came to be merged (`change_requests.merged_via`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergedVia {
    /// Gantry merged it (itself, or through the forge's API) after checking
    /// its target: the merge commit is recorded.
    Gantry,
    /// A merge on the forge that the policy counts as an approval.
    Forge,
    /// Merged on the forge, not counted as an approval: what it brought is
    /// judged like any push.
    ForgeUncounted,
    /// The target already contained it: nothing was merged, no commit is
    /// the request's.
    Contained,
}

impl MergedVia {
    pub fn as_str(self) -> &'static str {
        match self {
            MergedVia::Gantry => "gantry",
            MergedVia::Forge => "forge",
            MergedVia::ForgeUncounted => "forge-uncounted",
            MergedVia::Contained => "contained",
        }
    }
}

/// Marks a request merged, unless it is merged already (a forge's echo of
/// Gantry's own merge never overwrites Gantry's record). False then.
pub async fn mark_merged<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: Option<&str>,
    via: MergedVia,
    by: &str,
    detail: &str,
    now: i64,
) -> Result<bool, super::QueryError> {
    let marked = sqlx::query(
        "UPDATE change_requests SET state = $2, merge_sha = $3, merged_by = $4, state_detail = $5,
            merged_at = $6, updated_at = $6, merged_via = $7
         WHERE id = $1 AND state <> $2",
    )
    .bind(id)
    .bind(ChangeRequestState::Merged.as_str())
    .bind(sha)
    .bind(by)
    .bind(detail)
    .bind(now)
    .bind(via.as_str())
    .execute(exec)
    .await?;
    Ok(marked.rows_affected() == 1)
}

#[derive(Clone, Debug)]
pub struct NewDecision<'a> {
    pub environment_id: i64,
    pub run_id: Option<i64>,
    pub change_request_id: Option<i64>,
    pub user_id: i64,
    /// `approved`, `rejected` or `override`.
    pub decision: &'a str,
    pub comment: Option<&'a str>,
    pub commit_sha: Option<&'a str>,
    pub auth_time: Option<i64>,
    pub override_reason: Option<&'a str>,
    /// For a decision on a change request: the target's head the decider
    /// saw (an approval covers what the request's head adds to it).
    pub base_sha: Option<&'a str>,
}

pub async fn record_decision<'e>(
    exec: impl Executor<'e, Database = Any>,
    decision: &NewDecision<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO approvals (environment_id, run_id, change_request_id, user_id, decision,
            comment, commit_sha, auth_time, override_reason, created_at, base_sha)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(decision.environment_id)
    .bind(decision.run_id)
    .bind(decision.change_request_id)
    .bind(decision.user_id)
    .bind(decision.decision)
    .bind(decision.comment)
    .bind(decision.commit_sha)
    .bind(decision.auth_time)
    .bind(decision.override_reason)
    .bind(now)
    .bind(decision.base_sha)
    .fetch_one(exec)
    .await?)
}

/// Distinct people who approved `sha` of the request into `environment`
/// (its target's: a request retargeted on the forge starts over; an
/// override counts as meeting the policy on its own, see [`overridden`]).
pub async fn approvals_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    environment: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(DISTINCT user_id) FROM approvals
         WHERE change_request_id = $1 AND commit_sha = $2 AND decision = 'approved'
           AND environment_id = $3",
    )
    .bind(id)
    .bind(sha)
    .bind(environment)
    .fetch_one(exec)
    .await?)
}

pub async fn has_approved<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    user_id: i64,
    environment: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approvals WHERE change_request_id = $1 AND commit_sha = $2
            AND user_id = $3 AND decision IN ('approved', 'override') AND environment_id = $4",
    )
    .bind(id)
    .bind(sha)
    .bind(user_id)
    .bind(environment)
    .fetch_one(exec)
    .await?;
    Ok(count > 0)
}

/// True when an admin overrode the policy for `sha` of the request.
pub async fn overridden<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    environment: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM approvals
         WHERE change_request_id = $1 AND commit_sha = $2 AND decision = 'override'
           AND environment_id = $3",
    )
    .bind(id)
    .bind(sha)
    .bind(environment)
    .fetch_one(exec)
    .await?;
    Ok(count > 0)
}

#[derive(FromRow)]
struct DecisionRow {
    who: String,
    decision: String,
    comment: Option<String>,
    override_reason: Option<String>,
    commit_sha: Option<String>,
    auth_time: Option<i64>,
    created_at: i64,
}

/// Every decision on a request (or, with `run`, on a held run), oldest first.
pub async fn decisions<'e>(
    exec: impl Executor<'e, Database = Any>,
    change_request: Option<i64>,
    run: Option<i64>,
) -> Result<Vec<ApprovalRecord>, super::QueryError> {
    let rows: Vec<DecisionRow> = sqlx::query_as(
        "SELECT u.display_name AS who, d.decision, d.comment, d.override_reason, d.commit_sha,
                d.auth_time, d.created_at
         FROM approvals d JOIN users u ON u.id = d.user_id
         WHERE (d.change_request_id = $1) OR (d.run_id = $2)
         ORDER BY d.created_at, d.id",
    )
    .bind(change_request)
    .bind(run)
    .fetch_all(exec)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ApprovalRecord {
            who: row.who,
            decision: row.decision,
            comment: row.override_reason.or(row.comment),
            commit_sha: row.commit_sha,
            auth_time: row.auth_time,
            at: row.created_at,
        })
        .collect())
}

/// The request a forge knows as `number` (`origin`: github, gitlab, gitea).
pub async fn find_forge<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    origin: &str,
    number: i64,
) -> Result<Option<CrRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT} WHERE c.app_id = $1 AND c.origin = $2 AND c.forge_number = $3
         ORDER BY c.id DESC LIMIT 1"
    ))
    .bind(app_id)
    .bind(origin)
    .bind(number)
    .fetch_optional(exec)
    .await?)
}

pub async fn set_forge_number<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    number: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE change_requests SET forge_number = $2 WHERE id = $1")
            .bind(id)
            .bind(number)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Marks a forge request as coming from `fork`.
pub async fn set_fork<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    fork: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE change_requests SET fork_of = $2 WHERE id = $1")
            .bind(id)
            .bind(fork)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// The fork behind `branch` of the app, when an active request from a fork
/// is built under that name (`pr-<number>`).
pub async fn fork_behind<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
) -> Result<Option<String>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT fork_of FROM change_requests
         WHERE app_id = $1 AND source_branch = $2 AND fork_of IS NOT NULL
         ORDER BY id DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(branch)
    .fetch_optional(exec)
    .await?)
}

/// A forge request's number and Gantry's comment on it, if any.
pub async fn forge_comment<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<(Option<i64>, Option<String>)>, super::QueryError> {
    Ok(
        sqlx::query_as("SELECT forge_number, forge_comment_id FROM change_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(exec)
            .await?,
    )
}

pub async fn set_forge_comment<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    comment_id: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE change_requests SET forge_comment_id = $2 WHERE id = $1")
            .bind(id)
            .bind(comment_id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// The forge retargeted the request: its new target, and it is open again
/// (approvals belong to a target's environment and start over).
pub async fn retarget<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    target_branch: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE change_requests SET target_branch = $2, state = $3, state_detail = $4,
            updated_at = $5, merge_sha = NULL, merged_via = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(target_branch)
    .bind(ChangeRequestState::Open.as_str())
    .bind(format!(
        "retargeted to {target_branch}; approvals start over"
    ))
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// The people who approved `sha` of the request into `environment`.
pub async fn approvers_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    environment: i64,
) -> Result<Vec<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM approvals
         WHERE change_request_id = $1 AND commit_sha = $2 AND decision = 'approved'
           AND environment_id = $3",
    )
    .bind(id)
    .bind(sha)
    .bind(environment)
    .fetch_all(exec)
    .await?)
}

/// The target heads the admins who overrode `sha` of the request into
/// `environment` saw: an override covers the target as it was then.
pub async fn override_bases<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    sha: &str,
    environment: i64,
) -> Result<Vec<String>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT base_sha FROM approvals
         WHERE change_request_id = $1 AND commit_sha = $2 AND decision = 'override'
           AND environment_id = $3 AND base_sha IS NOT NULL",
    )
    .bind(id)
    .bind(sha)
    .bind(environment)
    .fetch_all(exec)
    .await?)
}
