//! Pipeline runs.

use app::dto::{PendingApproval, RunState, RunSummary, UncoveredCommits};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    pub app_id: i64,
    pub environment_id: i64,
    pub branch: &'a str,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub state: RunState,
    pub trigger: &'a str,
    /// It deploys to the `local` target (see `claim_next`).
    pub local_target: bool,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    run: &NewRun<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO runs
            (app_id, environment_id, branch, commit_sha, pipeline_sha, state, trigger, created_at,
             local_target)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(run.app_id)
    .bind(run.environment_id)
    .bind(run.branch)
    .bind(run.commit_sha)
    .bind(run.pipeline_sha)
    .bind(run.state.as_str())
    .bind(run.trigger)
    .bind(now)
    .bind(i64::from(run.local_target))
    .fetch_one(exec)
    .await?)
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
    started_at: Option<i64>,
    trigger: String,
    commit_message: Option<String>,
    actor: Option<String>,
    error: Option<String>,
    superseded_by: Option<i64>,
}

/// The columns [`Row`] reads; `FROM` needs [`LIST_FROM`].
const LIST_COLUMNS: &str =
    "r.id, a.name AS app, e.name AS environment, r.branch, r.commit_sha, r.state,
     r.created_at, r.finished_at, r.started_at, r.trigger, r.commit_message,
     COALESCE(r.requested_by, u.display_name) AS actor, r.error, r.superseded_by";

/// Who made a run happen, as sign-in knows them (never the commit's author).
const LIST_FROM: &str = "runs r
     JOIN apps a ON a.id = r.app_id
     JOIN environments e ON e.id = r.environment_id
     LEFT JOIN users u ON u.id = r.pushed_by_user_id";

impl Row {
    fn summary(self) -> Result<RunSummary, super::QueryError> {
        Ok(RunSummary {
            id: self.id,
            app: self.app,
            environment: self.environment,
            branch: self.branch,
            commit_sha: self.commit_sha,
            state: decode_state(&self.state, RunState::parse)?,
            created_at: self.created_at,
            finished_at: self.finished_at,
            started_at: self.started_at,
            trigger: self.trigger,
            commit_message: first_line(self.commit_message.as_deref()),
            actor: self.actor,
            reason: first_line(self.error.as_deref()),
            superseded_by: self.superseded_by,
        })
    }
}

fn first_line(text: Option<&str>) -> Option<String> {
    app::format::first_line(text?)
}

/// The newest runs of one app (uses `runs_by_app`).
pub async fn recent_of_app<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    limit: i64,
) -> Result<Vec<RunSummary>, super::QueryError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {LIST_COLUMNS} FROM {LIST_FROM}
         WHERE r.app_id = $1
         ORDER BY r.id DESC
         LIMIT $2"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.into_iter().map(Row::summary).collect()
}

/// An app's newest runs that ran to an end (succeeded or failed): id,
/// created, started, finished, state; newest first (uses `runs_by_app`).
pub async fn durations_of_app<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    limit: i64,
) -> Result<Vec<(i64, i64, Option<i64>, i64, RunState)>, super::QueryError> {
    let rows: Vec<(i64, i64, Option<i64>, i64, String)> = sqlx::query_as(
        "SELECT id, created_at, started_at, finished_at, state FROM runs
         WHERE app_id = $1 AND state IN ($2, $3) AND finished_at IS NOT NULL
         ORDER BY id DESC LIMIT $4",
    )
    .bind(app_id)
    .bind(RunState::Succeeded.as_str())
    .bind(RunState::Failed.as_str())
    .bind(limit)
    .fetch_all(exec)
    .await?;
    rows.into_iter()
        .map(|(id, created, started, finished, state)| {
            Ok((
                id,
                created,
                started,
                finished,
                decode_state(&state, RunState::parse)?,
            ))
        })
        .collect()
}

/// Which runs [`page`] returns: exact matches, all optional.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    /// Only these apps (`None`: any app): what the caller may see.
    pub app_ids: Option<&'a [i64]>,
    pub app: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub state: Option<RunState>,
    pub branch: Option<&'a str>,
    pub actor: Option<&'a str>,
    /// Only runs with a smaller id.
    pub before: Option<i64>,
}

/// Up to `limit` runs matching `filter`, newest first (by id, so paging
/// with `before` neither skips nor repeats a run).
pub async fn page<'e>(
    exec: impl Executor<'e, Database = Any>,
    filter: &Filter<'_>,
    limit: i64,
) -> Result<Vec<RunSummary>, super::QueryError> {
    let mut clauses = Vec::new();
    // Placeholders are numbered as values are pushed; names and states go
    // in as bound values, ids (numbers) into the text.
    let mut values: Vec<String> = Vec::new();
    let mut bind = |clause: &dyn Fn(usize) -> String, value: &str| {
        values.push(value.to_string());
        clauses.push(clause(values.len()));
    };
    if let Some(app) = filter.app {
        bind(&|n| format!("a.name = ${n}"), app);
    }
    if let Some(environment) = filter.environment {
        bind(&|n| format!("e.name = ${n}"), environment);
    }
    if let Some(state) = filter.state {
        bind(&|n| format!("r.state = ${n}"), state.as_str());
    }
    if let Some(branch) = filter.branch {
        bind(&|n| format!("r.branch = ${n}"), branch);
    }
    if let Some(actor) = filter.actor {
        bind(
            &|n| format!("COALESCE(r.requested_by, u.display_name) = ${n}"),
            actor,
        );
    }
    if let Some(ids) = filter.app_ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        clauses.push(format!("r.app_id IN ({})", super::id_list(ids)));
    }
    if let Some(before) = filter.before {
        clauses.push(format!("r.id < {before}"));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {LIST_COLUMNS} FROM {LIST_FROM} {filter_sql} ORDER BY r.id DESC LIMIT {limit}"
    );
    let mut query = sqlx::query_as::<_, Row>(&sql);
    for value in values {
        query = query.bind(value);
    }
    let rows = query.fetch_all(exec).await?;
    rows.into_iter().map(Row::summary).collect()
}

#[derive(FromRow)]
struct WaitingRow {
    id: i64,
    app: String,
    environment: String,
    commit_sha: String,
    created_at: i64,
    uncovered: Option<String>,
}

/// A run's stored uncovered commits (written by [`set_uncovered`]); a
/// record that does not read back shows as none rather than failing a page.
fn uncovered_of(text: Option<&str>) -> Option<UncoveredCommits> {
    text.and_then(|text| serde_json::from_str(text).ok())
}

/// Records what a held run would take live that nothing covers, and who
/// pushed its commit (a Gantry user, where a forge said).
pub async fn set_uncovered<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    uncovered: Option<&UncoveredCommits>,
) -> Result<(), super::QueryError> {
    let text = uncovered
        .map(serde_json::to_string)
        .transpose()
        .map_err(super::QueryError::unwritable)?;
    Ok(sqlx::query("UPDATE runs SET uncovered = $2 WHERE id = $1")
        .bind(id)
        .bind(text)
        .execute(exec)
        .await
        .map(|_| ())?)
}

pub async fn set_pushed_by<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    user_id: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE runs SET pushed_by_user_id = $2 WHERE id = $1")
            .bind(id)
            .bind(user_id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Runs held until their environment's approval policy is met, oldest first.
pub async fn list_waiting_for_approval<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<PendingApproval>, super::QueryError> {
    let rows: Vec<WaitingRow> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.commit_sha, r.created_at, r.uncovered
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
            uncovered: uncovered_of(row.uncovered.as_deref()),
            promotion: None,
        })
        .collect())
}

/// A run, as the runner and planner work with it.
#[derive(Clone, Debug, FromRow)]
pub struct RunRow {
    pub id: i64,
    pub app_id: i64,
    pub environment_id: i64,
    pub branch: String,
    pub commit_sha: String,
    pub pipeline_sha: String,
    #[sqlx(try_from = "String")]
    pub state: RunState,
    pub trigger: String,
    pub attempt: i64,
    pub cancel_requested: i64,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub change_request_id: Option<i64>,
    pub created_at: i64,
    /// The fork the commit comes from: an untrusted build (no secrets).
    pub from_fork: Option<String>,
    /// The Gantry user who pushed the commit, where a forge said so.
    pub pushed_by_user_id: Option<i64>,
    /// What it builds (recorded when it is planned).
    pub artifact_id: Option<i64>,
    /// The upstream run whose build it deploys (a promoted run).
    pub promoted_from: Option<i64>,
}

const RUN_COLUMNS: &str = "id, app_id, environment_id, branch, commit_sha, pipeline_sha, state, trigger, \
                           attempt, cancel_requested, commit_message, commit_author, change_request_id, created_at, \
                           from_fork, pushed_by_user_id, artifact_id, promoted_from";

/// Marks a run as building a fork's commit.
pub async fn set_from_fork<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    fork: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query("UPDATE runs SET from_fork = $2 WHERE id = $1")
        .bind(id)
        .bind(fork)
        .execute(exec)
        .await
        .map(|_| ())?)
}

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<RunRow>, super::QueryError> {
    Ok(
        sqlx::query_as(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(exec)
            .await?,
    )
}

/// The newest run tied to a change request.
pub async fn latest_for_change_request<'e>(
    exec: impl Executor<'e, Database = Any>,
    change_request_id: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM runs WHERE change_request_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(change_request_id)
    .fetch_optional(exec)
    .await?)
}

/// Ties a run to the change request it builds or results from.
pub async fn set_change_request<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    change_request_id: i64,
) -> Result<(), super::QueryError> {
    sqlx::query("UPDATE runs SET change_request_id = $2 WHERE id = $1")
        .bind(id)
        .bind(change_request_id)
        .execute(exec)
        .await?;
    Ok(())
}

/// The newest run of `sha` on `branch` of the app.
pub async fn latest_of_commit<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
    sha: &str,
) -> Result<Option<RunRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE app_id = $1 AND branch = $2 AND commit_sha = $3
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(app_id)
    .bind(branch)
    .bind(sha)
    .fetch_optional(exec)
    .await?)
}

pub async fn set_commit_info<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    message: &str,
    author: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE runs SET commit_message = $2, commit_author = $3 WHERE id = $1")
            .bind(id)
            .bind(message)
            .bind(author)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Older runs of the environment that have not finished: queued and held
/// ones are superseded at once; running ones are asked to stop. A rollback
/// is never superseded: a push must not undo an admin's decision.
pub async fn supersede_older(
    conn: &mut sqlx::AnyConnection,
    environment_id: i64,
    newer: i64,
    now: i64,
) -> Result<(), super::QueryError> {
    sqlx::query(
        "UPDATE runs SET state = $3, superseded_by = $2, finished_at = $4,
             error = 'superseded by a newer push'
         WHERE environment_id = $1 AND id < $2 AND state IN ($5, $6) AND trigger <> 'rollback'",
    )
    .bind(environment_id)
    .bind(newer)
    .bind(RunState::Superseded.as_str())
    .bind(now)
    .bind(RunState::Queued.as_str())
    .bind(RunState::WaitingForApproval.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "UPDATE runs SET cancel_requested = 1, superseded_by = $2
         WHERE environment_id = $1 AND id < $2 AND state = $3 AND trigger <> 'rollback'",
    )
    .bind(environment_id)
    .bind(newer)
    .bind(RunState::Running.as_str())
    .execute(&mut *conn)
    .await
    .map(|_| ())?)
}

/// Claims the oldest queued run for this runner, atomically (rollbacks
/// first: they are what an admin is waiting for). On PostgreSQL, replicas
/// claiming at once skip each other's locked rows (`FOR UPDATE SKIP
/// LOCKED`) instead of queueing behind them; SQLite has one process, whose
/// runners take turns on the write lock. Runs that deploy to the `local`
/// target are claimed only by a replica that runs it (`local`).
pub async fn claim_next(
    db: &super::Db,
    runner_id: &str,
    local: bool,
    now: i64,
) -> Result<Option<RunRow>, super::QueryError> {
    const NEXT: &str = "SELECT id FROM runs WHERE state = $4 AND ($5 = 1 OR local_target = 0)
         ORDER BY CASE WHEN trigger = 'rollback' THEN 0 ELSE 1 END, id LIMIT 1";
    let lock = match db.backend() {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let now_db = super::now_sql(db.backend());
    let claimed: Option<i64> = sqlx::query_scalar(&format!(
        "UPDATE runs SET state = $1, runner_id = $2, started_at = COALESCE(started_at, $3),
             heartbeat_at = {now_db}, attempt = attempt + 1
         WHERE id = ({NEXT}{lock}) AND state = $4
         RETURNING id"
    ))
    .bind(RunState::Running.as_str())
    .bind(runner_id)
    .bind(now)
    .bind(RunState::Queued.as_str())
    .bind(i64::from(local))
    .fetch_optional(db.pool())
    .await?;
    match claimed {
        Some(id) => get(db.pool(), id).await,
        None => Ok(None),
    }
}

/// Ends a run (only if it is not already ended).
pub async fn finish<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: RunState,
    error: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE runs SET state = $2, error = $3, finished_at = $4
         WHERE id = $1 AND state IN ($5, $6, $7)",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(error)
    .bind(now)
    .bind(RunState::Running.as_str())
    .bind(RunState::Queued.as_str())
    .bind(RunState::WaitingForApproval.as_str())
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Moves a held run on (`waiting_for_approval` → `queued`). False when the
/// run was not held.
pub async fn release_hold<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query("UPDATE runs SET state = $2 WHERE id = $1 AND state = $3")
        .bind(id)
        .bind(RunState::Queued.as_str())
        .bind(RunState::WaitingForApproval.as_str())
        .execute(exec)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Which running runs a take-over takes.
#[derive(Clone, Copy, Debug)]
pub enum Orphans<'a> {
    /// Every one: SQLite's start-up, where the one process is this one.
    All,
    /// Those whose heartbeat is older than this lease (ms) by the
    /// database's clock: their replica stopped renewing it.
    LeaseExpired(i64),
    /// This replica's own, handed over as it shuts down.
    Of(&'a str),
}

impl Orphans<'_> {
    /// The condition: a lease (ms) bound as `$2` and a runner as `$3`,
    /// each NULL when it does not apply ([`Orphans::values`]).
    fn condition(db: &super::Db) -> String {
        format!(
            "($2 IS NULL OR heartbeat_at IS NULL OR heartbeat_at < {} - $2)
             AND ($3 IS NULL OR runner_id = $3)",
            super::now_sql(db.backend())
        )
    }

    fn values(&self) -> (Option<i64>, Option<String>) {
        match *self {
            Orphans::All => (None, None),
            Orphans::LeaseExpired(lease) => (Some(lease), None),
            Orphans::Of(runner) => (None, Some(runner.to_string())),
        }
    }
}

/// The running runs `which` selects, oldest first.
pub async fn list_orphans(
    db: &super::Db,
    which: Orphans<'_>,
) -> Result<Vec<RunRow>, super::QueryError> {
    let (lease, runner) = which.values();
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE state = $1 AND {} ORDER BY id",
        Orphans::condition(db)
    ))
    .bind(RunState::Running.as_str())
    .bind(lease)
    .bind(runner)
    .fetch_all(db.pool())
    .await?)
}

/// What becomes of a run taken over.
#[derive(Clone, Copy, Debug)]
pub enum TakeOver<'a> {
    /// Queued again: its next attempt resumes it.
    Resume,
    /// Ended in this state (failed, cancelled, superseded), with this
    /// reason.
    End(RunState, &'a str),
}

/// Takes a running run that `which` still selects away from its replica,
/// inside `tx`: true for exactly one of the replicas that try at once.
/// Until `tx` commits, the row stays locked, so no replica claims the
/// resumed run before the caller has put its steps and deployment in
/// order.
pub async fn take_over(
    db: &super::Db,
    tx: &mut sqlx::AnyConnection,
    id: i64,
    which: Orphans<'_>,
    what: TakeOver<'_>,
    now: i64,
) -> Result<bool, super::QueryError> {
    let query = match what {
        TakeOver::Resume => format!(
            "UPDATE runs SET state = $4, runner_id = NULL, heartbeat_at = NULL
             WHERE id = $5 AND state = $1 AND {}",
            Orphans::condition(db)
        ),
        TakeOver::End(..) => format!(
            "UPDATE runs SET state = $4, error = $6, finished_at = $7
             WHERE id = $5 AND state = $1 AND {}",
            Orphans::condition(db)
        ),
    };
    let (state, reason) = match what {
        TakeOver::Resume => (RunState::Queued, None),
        TakeOver::End(state, reason) => (state, Some(reason)),
    };
    let (lease, runner) = which.values();
    let mut query = sqlx::query(&query)
        .bind(RunState::Running.as_str())
        .bind(lease)
        .bind(runner)
        .bind(state.as_str())
        .bind(id);
    if let Some(reason) = reason {
        query = query.bind(reason).bind(now);
    }
    let taken = query.execute(&mut *tx).await?;
    Ok(taken.rows_affected() == 1)
}

/// One attempt of a run, as the replica running it holds it: what that
/// replica's writes are guarded by, so a replica that lost its run (taken
/// over after its lease expired) writes nothing over the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub run_id: i64,
    pub runner: &'a str,
    pub attempt: i64,
}

/// True while `holder` still holds its run (a read; see `lock_held`).
pub async fn holds<'e>(
    exec: impl Executor<'e, Database = Any>,
    holder: Holder<'_>,
) -> Result<bool, super::QueryError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE id = $1 AND runner_id = $2 AND attempt = $3 AND state = $4",
    )
    .bind(holder.run_id)
    .bind(holder.runner)
    .bind(holder.attempt)
    .bind(RunState::Running.as_str())
    .fetch_optional(exec)
    .await?;
    Ok(found.is_some())
}

/// True while `holder` still holds its run. In a transaction it also locks
/// the run's row until the transaction ends: on PostgreSQL a take-over of
/// the run waits for it, and then sees what it wrote.
pub async fn lock_held<'e>(
    exec: impl Executor<'e, Database = Any>,
    holder: Holder<'_>,
) -> Result<bool, super::QueryError> {
    let held = sqlx::query(
        "UPDATE runs SET attempt = attempt
         WHERE id = $1 AND runner_id = $2 AND attempt = $3 AND state = $4",
    )
    .bind(holder.run_id)
    .bind(holder.runner)
    .bind(holder.attempt)
    .bind(RunState::Running.as_str())
    .execute(exec)
    .await?;
    Ok(held.rows_affected() == 1)
}

/// Renews the lease of `attempt` of a run, in the database's clock. False
/// when this replica no longer holds it: another replica took the run
/// over (this one lost the database for longer than a lease) or it ended.
pub async fn heartbeat(
    db: &super::Db,
    id: i64,
    runner_id: &str,
    attempt: i64,
) -> Result<bool, super::QueryError> {
    let renewed = sqlx::query(&format!(
        "UPDATE runs SET heartbeat_at = {} WHERE id = $1 AND runner_id = $2 AND attempt = $3
             AND state = $4",
        super::now_sql(db.backend())
    ))
    .bind(id)
    .bind(runner_id)
    .bind(attempt)
    .bind(RunState::Running.as_str())
    .execute(db.pool())
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Ends `attempt` of a run as its runner saw it end — unless the runner
/// lost the run (taken over, or ended by someone else): false then.
pub async fn finish_attempt<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    runner_id: &str,
    attempt: i64,
    state: RunState,
    error: Option<&str>,
    now: i64,
) -> Result<bool, super::QueryError> {
    let ended = sqlx::query(
        "UPDATE runs SET state = $2, error = $3, finished_at = $4
         WHERE id = $1 AND state = $5 AND runner_id = $6 AND attempt = $7",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(error)
    .bind(now)
    .bind(RunState::Running.as_str())
    .bind(runner_id)
    .bind(attempt)
    .execute(exec)
    .await?;
    Ok(ended.rows_affected() == 1)
}

/// Whether `attempt` of the run already ended as `state` at `at` under
/// `runner_id`: an earlier try of this very end whose commit was not
/// acknowledged (the connection dropped) but went through.
pub async fn ended_as<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    runner_id: &str,
    attempt: i64,
    state: RunState,
    at: i64,
) -> Result<bool, super::QueryError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs
         WHERE id = $1 AND runner_id = $2 AND attempt = $3 AND state = $4 AND finished_at = $5",
    )
    .bind(id)
    .bind(runner_id)
    .bind(attempt)
    .bind(state.as_str())
    .bind(at)
    .fetch_optional(exec)
    .await?;
    Ok(found.is_some())
}

pub async fn request_cancel<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
            .bind(id)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Cancel requested, and whether a newer run is the reason.
pub async fn cancel_state<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<(bool, bool), super::QueryError> {
    let (requested, superseded_by): (i64, Option<i64>) =
        sqlx::query_as("SELECT cancel_requested, superseded_by FROM runs WHERE id = $1")
            .bind(id)
            .fetch_one(exec)
            .await?;
    Ok((requested != 0, superseded_by.is_some()))
}

/// Runs of this runner id, or of any runner, left `running`.
pub async fn list_running<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<RunRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE state = $1 ORDER BY id"
    ))
    .bind(RunState::Running.as_str())
    .fetch_all(exec)
    .await?)
}

/// Runs of an environment that have not ended.
pub async fn list_unfinished_for_environment<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<Vec<RunRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE environment_id = $1 AND state IN ($2, $3, $4) ORDER BY id"
    ))
    .bind(environment_id)
    .bind(RunState::Queued.as_str())
    .bind(RunState::WaitingForApproval.as_str())
    .bind(RunState::Running.as_str())
    .fetch_all(exec)
    .await?)
}

#[derive(FromRow)]
struct DetailRow {
    id: i64,
    app: String,
    environment: String,
    branch: String,
    commit_sha: String,
    pipeline_sha: String,
    state: String,
    trigger: String,
    error: Option<String>,
    commit_message: Option<String>,
    commit_author: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    from_fork: Option<String>,
    uncovered: Option<String>,
    pushed_by: Option<String>,
    started_at: Option<i64>,
    requested_by: Option<String>,
    superseded_by: Option<i64>,
}

/// A run with its app and environment names (steps and reports apart).
pub async fn detail<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<(RunSummary, DetailExtra)>, super::QueryError> {
    let row: Option<DetailRow> = sqlx::query_as(
        "SELECT r.id, a.name AS app, e.name AS environment, r.branch, r.commit_sha, r.pipeline_sha, r.state,
                r.trigger, r.error, r.commit_message, r.commit_author, r.created_at, r.finished_at,
                r.from_fork, r.uncovered, u.display_name AS pushed_by, r.started_at, r.requested_by,
                r.superseded_by
         FROM runs r JOIN apps a ON a.id = r.app_id JOIN environments e ON e.id = r.environment_id
         LEFT JOIN users u ON u.id = r.pushed_by_user_id
         WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.map(|row| {
        Ok((
            RunSummary {
                id: row.id,
                app: row.app,
                environment: row.environment,
                branch: row.branch,
                commit_sha: row.commit_sha,
                state: decode_state(&row.state, RunState::parse)?,
                created_at: row.created_at,
                finished_at: row.finished_at,
                started_at: row.started_at,
                trigger: row.trigger.clone(),
                commit_message: first_line(row.commit_message.as_deref()),
                actor: row.requested_by.clone().or(row.pushed_by.clone()),
                reason: first_line(row.error.as_deref()),
                superseded_by: row.superseded_by,
            },
            DetailExtra {
                pipeline_sha: row.pipeline_sha,
                trigger: row.trigger,
                error: row.error,
                commit_message: row.commit_message,
                commit_author: row.commit_author,
                from_fork: row.from_fork,
                uncovered: uncovered_of(row.uncovered.as_deref()),
                pushed_by: row.pushed_by,
            },
        ))
    })
    .transpose()
}

/// The parts of a run's detail beyond its summary.
pub struct DetailExtra {
    pub pipeline_sha: String,
    pub trigger: String,
    pub error: Option<String>,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub from_fork: Option<String>,
    pub uncovered: Option<UncoveredCommits>,
    pub pushed_by: Option<String>,
}

/// Marks a run as asked for by `by` (a re-run): the runs list's "started by".
pub async fn set_requested_by<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    by: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE runs SET requested_by = $2 WHERE id = $1")
            .bind(id)
            .bind(by)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Marks a run as the rollback to release `to`, asked by `by` for `reason`.
pub async fn set_rollback<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    to: i64,
    by: &str,
    reason: &str,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE runs SET rollback_to = $2, requested_by = $3, reason = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(to)
    .bind(by)
    .bind(reason)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// A rollback run's release, who asked and why.
pub async fn rollback_of_run<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<(i64, String, String)>, super::QueryError> {
    let row: Option<(Option<i64>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT rollback_to, requested_by, reason FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(exec)
            .await?;
    Ok(row.and_then(|(to, by, reason)| {
        Some((to?, by.unwrap_or_default(), reason.unwrap_or_default()))
    }))
}

/// An unfinished run of the environment with this trigger, if any.
pub async fn unfinished_with_trigger<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    trigger: &str,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM runs WHERE environment_id = $1 AND trigger = $2 AND state IN ($3, $4, $5)
         ORDER BY id LIMIT 1",
    )
    .bind(environment_id)
    .bind(trigger)
    .bind(RunState::Queued.as_str())
    .bind(RunState::WaitingForApproval.as_str())
    .bind(RunState::Running.as_str())
    .fetch_optional(exec)
    .await?)
}

/// The newest run of an environment that was not superseded, keyed by app
/// and environment name.
#[derive(Clone, Debug, FromRow)]
pub struct LatestRow {
    pub app: String,
    pub environment: String,
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub state: RunState,
    pub commit_sha: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

const LATEST_COLUMNS: &str = "a.name AS app, e.name AS environment, r.id, r.state, r.commit_sha,
     r.created_at, r.finished_at, r.error";

/// The newest run of each live environment of these apps (by id): one
/// index probe per environment (`runs_by_environment`).
pub async fn latest_of_apps<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_ids: &[i64],
) -> Result<Vec<LatestRow>, super::QueryError> {
    if app_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Numbers, written into the text: no injection.
    let ids = super::id_list(app_ids);
    Ok(sqlx::query_as(&format!(
        "SELECT {LATEST_COLUMNS}
         FROM environments e
         JOIN apps a ON a.id = e.app_id
         JOIN runs r ON r.id = (
             SELECT n.id FROM runs n
             WHERE n.environment_id = e.id AND n.state <> $1
             ORDER BY n.created_at DESC, n.id DESC LIMIT 1)
         WHERE e.destroyed_at IS NULL AND e.app_id IN ({})",
        ids
    ))
    .bind(RunState::Superseded.as_str())
    .fetch_all(exec)
    .await?)
}

/// Failed runs that are still the newest of their live environment,
/// newest first, at most `limit`, among the runs since `since` of `apps`
/// (all apps: `None`). Two bounded steps rather than one anti-join: the
/// newest failures come straight off `runs_by_state_and_time` (a few times
/// `limit`), then each one's environment says which run is its newest (one
/// probe of `runs_by_environment` each). One query with `NOT EXISTS` took
/// 220 ms on PostgreSQL at 1,000 apps (it checked every failure first).
pub async fn failed_and_latest<'e, E>(
    exec: E,
    since: i64,
    limit: u32,
    apps: Option<&[i64]>,
) -> Result<Vec<LatestRow>, super::QueryError>
where
    E: Executor<'e, Database = Any> + Copy,
{
    // Ids are numbers, written into the text: no injection.
    let of_apps = match apps {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(ids) => {
            let ids = super::id_list(ids);
            format!(" AND r.app_id IN ({})", ids)
        }
    };
    #[derive(FromRow)]
    struct Failed {
        environment_id: i64,
        #[sqlx(flatten)]
        run: LatestRow,
    }
    let failed: Vec<Failed> = sqlx::query_as(&format!(
        "SELECT r.environment_id, {LATEST_COLUMNS}
         FROM runs r
         JOIN environments e ON e.id = r.environment_id
         JOIN apps a ON a.id = r.app_id
         WHERE r.state = $1 AND r.created_at >= $2{of_apps}
           AND e.destroyed_at IS NULL AND a.removed_at IS NULL
         ORDER BY r.created_at DESC
         LIMIT {}",
        u64::from(limit) * 4
    ))
    .bind(RunState::Failed.as_str())
    .bind(since)
    .fetch_all(exec)
    .await?;
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    let mut environments: Vec<i64> = failed.iter().map(|f| f.environment_id).collect();
    environments.sort_unstable();
    environments.dedup();
    let ids = super::id_list(&environments);
    let newest: Vec<(i64, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT e.id, (SELECT n.id FROM runs n
                       WHERE n.environment_id = e.id AND n.state <> $1
                       ORDER BY n.created_at DESC, n.id DESC LIMIT 1)
         FROM environments e WHERE e.id IN ({})",
        ids
    ))
    .bind(RunState::Superseded.as_str())
    .fetch_all(exec)
    .await?;
    let newest: std::collections::HashMap<i64, i64> = newest
        .into_iter()
        .filter_map(|(env, run)| Some((env, run?)))
        .collect();
    Ok(failed
        .into_iter()
        .filter(|f| newest.get(&f.environment_id) == Some(&f.run.id))
        .map(|f| f.run)
        .take(limit as usize)
        .collect())
}

/// What an admin asked of the run's canary, if anything.
pub async fn rollout_command<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<String>, super::QueryError> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT rollout_command FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(exec)
            .await?
            .flatten(),
    )
}

/// Asks the run's canary to `promote` or `abort` (`None`: clears it).
pub async fn set_rollout_command<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    command: Option<&str>,
) -> Result<(), super::QueryError> {
    sqlx::query("UPDATE runs SET rollout_command = $2 WHERE id = $1")
        .bind(id)
        .bind(command)
        .execute(exec)
        .await?;
    Ok(())
}

/// Where the run's canary stands (JSON), for its page.
pub async fn rollout_state<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<String>, super::QueryError> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT rollout_state FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(exec)
            .await?
            .flatten(),
    )
}

/// Records where the run's canary stands.
pub async fn set_rollout_state<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: &str,
) -> Result<(), super::QueryError> {
    sqlx::query("UPDATE runs SET rollout_state = $2 WHERE id = $1")
        .bind(id)
        .bind(state)
        .execute(exec)
        .await?;
    Ok(())
}
