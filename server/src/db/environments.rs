//! Environments of every app's stack and their live state.

use app::dto::{EnvironmentState, EnvironmentSummary, PinInfo};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;
use super::runs::Holder;

#[derive(Clone, Debug)]
pub struct NewEnvironment<'a> {
    pub app_id: i64,
    pub name: &'a str,
    pub stack_entry: &'a str,
    pub branch: Option<&'a str>,
    pub url: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    env: &NewEnvironment<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO environments
            (app_id, name, stack_entry, branch, state, url, namespace, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(env.app_id)
    .bind(env.name)
    .bind(env.stack_entry)
    .bind(env.branch)
    .bind(EnvironmentState::Pending.as_str())
    .bind(env.url)
    .bind(env.namespace)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// One environment of the matrix, as `list_active` reads it.
#[derive(FromRow, serde::Deserialize)]
struct Row {
    app: String,
    name: String,
    stack_entry: String,
    branch: Option<String>,
    state: String,
    commit_sha: Option<String>,
    pipeline_sha: Option<String>,
    url: Option<String>,
    updated_at: i64,
    commit_message: Option<String>,
    commit_author: Option<String>,
    state_detail: Option<String>,
    drift: Option<String>,
    pin_release: Option<i64>,
    pin_version: Option<String>,
    pinned_by: Option<String>,
    pin_reason: Option<String>,
    pinned_at: Option<i64>,
    pin_commit: Option<String>,
    pin_git_error: Option<String>,
}

/// `Row`'s fields and the columns they come from.
const ROW_COLUMNS: [(&str, &str); 20] = [
    ("app", "a.name"),
    ("name", "e.name"),
    ("stack_entry", "e.stack_entry"),
    ("branch", "e.branch"),
    ("state", "e.state"),
    ("commit_sha", "e.commit_sha"),
    ("pipeline_sha", "e.pipeline_sha"),
    ("url", "e.url"),
    ("updated_at", "e.updated_at"),
    ("commit_message", "e.commit_message"),
    ("commit_author", "e.commit_author"),
    ("state_detail", "e.state_detail"),
    ("drift", "e.drift"),
    ("pin_release", "p.release_id"),
    ("pin_version", "p.version"),
    ("pinned_by", "p.pinned_by"),
    ("pin_reason", "p.reason"),
    ("pinned_at", "p.created_at"),
    ("pin_commit", "p.pin_commit"),
    ("pin_git_error", "p.git_error"),
];

/// Every environment that is not destroyed, grouped by app, with its pin.
///
/// The home page and API read every environment (3,000 with 1,000 apps).
/// On SQLite each row comes as one JSON text built by SQLite: through the
/// `Any` driver every value costs a conversion, and twenty per row took
/// ~50 ms where one JSON text takes ~20 (`bench/src/bin/home.rs`). On
/// PostgreSQL building the JSON costs more than it saves (the API's p99
/// went from 31 to 62 ms), so there the columns come as they are.
pub async fn list_active(db: &super::Db) -> Result<Vec<EnvironmentSummary>, super::QueryError> {
    list_active_of(db, Which::All).await
}

/// Which of the environments that are not destroyed to read.
#[derive(Clone, Copy, Debug)]
pub enum Which<'a> {
    All,
    /// Those of these apps (by id): one page of lanes.
    Apps(&'a [i64]),
    /// Those that failed, drifted or are pinned, of these apps (all apps:
    /// `None`), the most recently changed first, at most `limit`.
    NeedingAttention {
        limit: u32,
        apps: Option<&'a [i64]>,
    },
}

/// The environments `which` names, grouped by app, with their pins.
pub async fn list_active_of(
    db: &super::Db,
    which: Which<'_>,
) -> Result<Vec<EnvironmentSummary>, super::QueryError> {
    // Ids and the limit are numbers, written into the text: no injection.
    let of_apps = |ids: &[i64]| {
        let ids = super::id_list(ids);
        format!(" AND e.app_id IN ({})", ids)
    };
    let (filter, order) = match which {
        Which::All => (String::new(), "a.name, e.id".to_string()),
        Which::Apps([]) | Which::NeedingAttention { apps: Some([]), .. } => return Ok(Vec::new()),
        Which::Apps(ids) => (of_apps(ids), "a.name, e.id".to_string()),
        Which::NeedingAttention { limit, apps } => (
            format!(
                " AND (e.state IN ('{}', '{}') OR e.drift IS NOT NULL OR p.environment_id IS NOT NULL){}",
                EnvironmentState::Failed.as_str(),
                EnvironmentState::PartiallyFailed.as_str(),
                apps.map(of_apps).unwrap_or_default()
            ),
            format!("e.updated_at DESC, e.id DESC LIMIT {limit}"),
        ),
    };
    let from = format!(
        "FROM environments e JOIN apps a ON a.id = e.app_id
         LEFT JOIN environment_pins p ON p.environment_id = e.id
         WHERE e.destroyed_at IS NULL AND a.removed_at IS NULL{filter}
         ORDER BY {order}"
    );
    let from = from.as_str();
    let rows: Vec<Row> = match db.backend() {
        super::Backend::Sqlite => {
            let pairs: Vec<String> = ROW_COLUMNS
                .iter()
                .map(|(field, column)| format!("'{field}', {column}"))
                .collect();
            let texts: Vec<String> =
                sqlx::query_scalar(&format!("SELECT json_object({}) {from}", pairs.join(", ")))
                    .fetch_all(db.pool())
                    .await?;
            texts
                .iter()
                .map(|text| serde_json::from_str(text))
                .collect::<Result<_, _>>()
                .map_err(super::QueryError::stored)?
        }
        super::Backend::Postgres => {
            let columns: Vec<String> = ROW_COLUMNS
                .iter()
                .map(|(field, column)| format!("{column} AS {field}"))
                .collect();
            sqlx::query_as(&format!("SELECT {} {from}", columns.join(", ")))
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.into_iter()
        .map(|row| {
            let pin = match (
                row.pin_version,
                row.pinned_by,
                row.pin_reason,
                row.pinned_at,
            ) {
                (Some(version), Some(pinned_by), Some(reason), Some(pinned_at)) => Some(PinInfo {
                    release_id: row.pin_release,
                    version,
                    pinned_by,
                    reason,
                    pinned_at,
                    pin_commit: row.pin_commit,
                    git_error: row.pin_git_error,
                }),
                _ => None,
            };
            Ok(EnvironmentSummary {
                app: row.app,
                name: row.name,
                stack_entry: row.stack_entry,
                branch: row.branch,
                state: decode_state(&row.state, EnvironmentState::parse)?,
                commit_sha: row.commit_sha,
                pipeline_sha: row.pipeline_sha,
                url: row.url,
                updated_at: row.updated_at,
                commit_message: row.commit_message,
                commit_author: row.commit_author,
                state_detail: row.state_detail,
                drift: row.drift,
                pin,
            })
        })
        .collect()
}

/// An environment row, as the flow works with it.
#[derive(Clone, Debug, FromRow)]
pub struct EnvRow {
    pub id: i64,
    pub app_id: i64,
    pub name: String,
    pub stack_entry: String,
    pub branch: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: EnvironmentState,
    pub url: Option<String>,
    pub commit_sha: Option<String>,
    pub locked_by_run: Option<i64>,
    pub deployment_id: Option<i64>,
    pub ttl_seconds: Option<i64>,
    pub updated_at: i64,
    pub destroyed_at: Option<i64>,
    pub namespace: Option<String>,
    pub drift: Option<String>,
}

const ENV_COLUMNS: &str = "id, app_id, name, stack_entry, branch, state, url, commit_sha, locked_by_run, \
                           deployment_id, ttl_seconds, updated_at, destroyed_at, namespace, drift";

pub async fn get<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<EnvRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?)
}

/// The environment of that name, destroyed or not.
pub async fn find_by_name<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    name: &str,
) -> Result<Option<EnvRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE app_id = $1 AND name = $2"
    ))
    .bind(app_id)
    .bind(name)
    .fetch_optional(exec)
    .await?)
}

/// The live (not destroyed) environment that follows `branch`.
pub async fn find_for_branch<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
    branch: &str,
) -> Result<Option<EnvRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENV_COLUMNS} FROM environments
         WHERE app_id = $1 AND branch = $2 AND destroyed_at IS NULL ORDER BY id LIMIT 1"
    ))
    .bind(app_id)
    .bind(branch)
    .fetch_optional(exec)
    .await?)
}

/// Every environment of an app that is not destroyed.
pub async fn list_for_app<'e>(
    exec: impl Executor<'e, Database = Any>,
    app_id: i64,
) -> Result<Vec<EnvRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE app_id = $1 AND destroyed_at IS NULL ORDER BY id"
    ))
    .bind(app_id)
    .fetch_all(exec)
    .await?)
}

/// Every environment that is not destroyed, across apps.
pub async fn list_all_active<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<EnvRow>, super::QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE destroyed_at IS NULL ORDER BY id"
    ))
    .fetch_all(exec)
    .await?)
}

/// Brings a destroyed environment back for a new branch head.
pub async fn revive<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    branch: &str,
    url: Option<&str>,
    ttl_seconds: Option<i64>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environments SET destroyed_at = NULL, branch = $2, url = $3, ttl_seconds = $4,
             state = $5, state_detail = NULL, commit_sha = NULL, pipeline_sha = NULL,
             commit_message = NULL, commit_author = NULL, deployment_id = NULL,
             locked_by_run = NULL, updated_at = $6
         WHERE id = $1",
    )
    .bind(id)
    .bind(branch)
    .bind(url)
    .bind(ttl_seconds)
    .bind(EnvironmentState::Pending.as_str())
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn set_ttl<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    ttl_seconds: Option<i64>,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE environments SET ttl_seconds = $2 WHERE id = $1")
            .bind(id)
            .bind(ttl_seconds)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// `holder` still holds its run (`$2` run, `$3` runner, `$4` attempt).
const HELD: &str = "EXISTS (SELECT 1 FROM runs r WHERE r.id = $2 AND r.runner_id = $3
                     AND r.attempt = $4 AND r.state = 'running')";

/// Takes the environment's deploy lock for `holder`'s run; false when
/// another run holds it, or `holder` lost its run.
pub async fn try_lock<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    holder: Holder<'_>,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query(&format!(
        "UPDATE environments SET locked_by_run = $2
         WHERE id = $1 AND (locked_by_run IS NULL OR locked_by_run = $2) AND {HELD}"
    ))
    .bind(id)
    .bind(holder.run_id)
    .bind(holder.runner)
    .bind(holder.attempt)
    .execute(exec)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Gives the deploy lock up, if `holder` still holds its run: the lock is
/// the run's, and a replica that lost the run must not release it from
/// under the attempt that took over.
pub async fn unlock<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    holder: Holder<'_>,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(&format!(
        "UPDATE environments SET locked_by_run = NULL
         WHERE id = $1 AND locked_by_run = $2 AND {HELD}"
    ))
    .bind(id)
    .bind(holder.run_id)
    .bind(holder.runner)
    .bind(holder.attempt)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Drops `run_id`'s deploy lock whoever runs it (a take-over).
pub async fn release_lock_of<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    run_id: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environments SET locked_by_run = NULL WHERE id = $1 AND locked_by_run = $2",
    )
    .bind(id)
    .bind(run_id)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn set_state<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    state: EnvironmentState,
    detail: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environments SET state = $2, state_detail = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(detail)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// What an environment serves after a successful deployment.
#[derive(Clone, Debug)]
pub struct Serving<'a> {
    pub deployment_id: i64,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub commit_message: &'a str,
    pub commit_author: &'a str,
    pub url: Option<&'a str>,
}

pub async fn set_serving<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    serving: &Serving<'_>,
    state: EnvironmentState,
    detail: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environments SET deployment_id = $2, commit_sha = $3, pipeline_sha = $4,
             commit_message = $5, commit_author = $6, url = COALESCE($7, url), state = $8,
             state_detail = $9, updated_at = $10
         WHERE id = $1",
    )
    .bind(id)
    .bind(serving.deployment_id)
    .bind(serving.commit_sha)
    .bind(serving.pipeline_sha)
    .bind(serving.commit_message)
    .bind(serving.commit_author)
    .bind(serving.url)
    .bind(state.as_str())
    .bind(detail)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

pub async fn mark_destroyed<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    detail: &str,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(sqlx::query(
        "UPDATE environments SET state = $2, state_detail = $3, destroyed_at = $4, updated_at = $4,
             locked_by_run = NULL, deployment_id = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(EnvironmentState::Destroyed.as_str())
    .bind(detail)
    .bind(now)
    .execute(exec)
    .await
    .map(|_| ())?)
}

/// Drops deploy locks held by runs that are not running any more (after a
/// crash nobody would release them).
/// The environment has been deployed to the `local` target.
pub async fn on_local_target<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id
         WHERE d.environment_id = $1 AND t.target = 'local'",
    )
    .bind(id)
    .fetch_one(exec)
    .await?;
    Ok(count > 0)
}

pub async fn release_stale_locks<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<u64, super::QueryError> {
    let result = sqlx::query(
        "UPDATE environments SET locked_by_run = NULL
         WHERE locked_by_run IS NOT NULL
           AND locked_by_run NOT IN (SELECT id FROM runs WHERE state = 'running')",
    )
    .execute(exec)
    .await?;
    Ok(result.rows_affected())
}

pub async fn set_namespace<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    namespace: &str,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE environments SET namespace = $2 WHERE id = $1")
            .bind(id)
            .bind(namespace)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Records the last drift check: `None` = in sync.
pub async fn set_drift<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    drift: Option<&str>,
    now: i64,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE environments SET drift = $2, drift_checked_at = $3 WHERE id = $1")
            .bind(id)
            .bind(drift)
            .bind(now)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}
