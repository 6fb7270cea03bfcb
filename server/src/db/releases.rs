//! The release ledger: one entry per deployment of a fixed environment
//! (staging, production), from the moment it starts deploying, with its
//! changelog, approvals, targets and rollback lineage.

use app::dto::{
    ApprovalRecord, ChangelogCommit, DeploymentState, ReleaseFilter, ReleaseKind, ReleaseState,
    ReleaseSummary, TargetOutcome,
};
use sqlx::{Any, Executor, FromRow};

use super::decode_state;

/// How many entries one page of the ledger holds at most.
pub const PAGE_LIMIT: i64 = 200;

#[derive(Clone, Debug)]
pub struct NewRelease<'a> {
    pub app_id: i64,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub run_id: Option<i64>,
    pub kind: ReleaseKind,
    pub version: &'a str,
    pub previous_version: Option<&'a str>,
    pub pipeline_sha: &'a str,
    pub image: Option<&'a str>,
    pub label: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub rollback_of: Option<i64>,
    pub rollback_to: Option<i64>,
    pub created_by: Option<&'a str>,
    /// JSON array of [`ChangelogCommit`].
    pub changelog: &'a str,
}

/// Opens an entry in state `deploying`.
pub async fn insert<'e>(
    exec: impl Executor<'e, Database = Any>,
    release: &NewRelease<'_>,
    now: i64,
) -> Result<i64, super::QueryError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO releases (app_id, environment_id, deployment_id, run_id, kind, version,
             previous_version, pipeline_sha, image, state, label, reason, rollback_of, rollback_to,
             created_by, changelog, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         RETURNING id",
    )
    .bind(release.app_id)
    .bind(release.environment_id)
    .bind(release.deployment_id)
    .bind(release.run_id)
    .bind(release.kind.as_str())
    .bind(release.version)
    .bind(release.previous_version)
    .bind(release.pipeline_sha)
    .bind(release.image)
    .bind(ReleaseState::Deploying.as_str())
    .bind(release.label)
    .bind(release.reason)
    .bind(release.rollback_of)
    .bind(release.rollback_to)
    .bind(release.created_by)
    .bind(release.changelog)
    .bind(now)
    .fetch_one(exec)
    .await?)
}

/// Ends the deploy of entry `id`. Live: what served before is superseded
/// (or, for the release a rollback replaced, rolled back). Otherwise failed.
pub async fn finish(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    live: bool,
    now: i64,
) -> Result<(), super::QueryError> {
    if !live {
        sqlx::query("UPDATE releases SET state = $2, finished_at = $3 WHERE id = $1")
            .bind(id)
            .bind(ReleaseState::Failed.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    // Write first: on SQLite a transaction that reads before it writes can
    // lose its snapshot to a concurrent writer (SQLITE_BUSY_SNAPSHOT).
    sqlx::query(
        "UPDATE releases SET state = $2, finished_at = $3, healthy_since = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(ReleaseState::Live.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let (environment_id, rollback_of): (i64, Option<i64>) =
        sqlx::query_as("SELECT environment_id, rollback_of FROM releases WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    // What served stops: how long it was healthy ends here (promotion
    // reads it as how long its artifact was verified).
    sqlx::query(
        "UPDATE releases SET state = CASE WHEN id = $3 THEN $4 ELSE $5 END,
             healthy_until = CASE WHEN healthy_since IS NULL THEN NULL ELSE $8 END
         WHERE environment_id = $1 AND id <> $2 AND state IN ($6, $7)",
    )
    .bind(environment_id)
    .bind(id)
    .bind(rollback_of.unwrap_or(0))
    .bind(ReleaseState::RolledBack.as_str())
    .bind(ReleaseState::Superseded.as_str())
    .bind(ReleaseState::Live.as_str())
    .bind(ReleaseState::Stable.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // A release rolled back while it was still deploying (or that failed)
    // is marked too: the label says what replaced it.
    if let Some(of) = rollback_of {
        sqlx::query("UPDATE releases SET state = $2 WHERE id = $1 AND state = $3")
            .bind(of)
            .bind(ReleaseState::RolledBack.as_str())
            .bind(ReleaseState::Failed.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Marks a failed entry as an aborted canary, with what it measured.
pub async fn mark_aborted<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    reason: &str,
) -> Result<(), super::QueryError> {
    sqlx::query("UPDATE releases SET state = $2, reason = $3 WHERE id = $1 AND state = $4")
        .bind(id)
        .bind(ReleaseState::Aborted.as_str())
        .bind(reason)
        .bind(ReleaseState::Failed.as_str())
        .execute(exec)
        .await?;
    Ok(())
}

/// The ledger entry of a deployment, if it has one.
pub async fn id_of_deployment<'e>(
    exec: impl Executor<'e, Database = Any>,
    deployment_id: i64,
) -> Result<Option<i64>, super::QueryError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM releases WHERE deployment_id = $1")
            .bind(deployment_id)
            .fetch_optional(exec)
            .await?,
    )
}

/// True while a deployment of the environment is being recorded.
pub async fn deploying_in<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
) -> Result<bool, super::QueryError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM releases WHERE environment_id = $1 AND state = $2",
    )
    .bind(environment_id)
    .bind(ReleaseState::Deploying.as_str())
    .fetch_one(exec)
    .await?;
    Ok(count > 0)
}

/// What the stability check needs of a live release.
#[derive(Clone, Debug, FromRow)]
pub struct LiveRow {
    pub id: i64,
    pub app_id: i64,
    pub environment_id: i64,
    pub deployment_id: i64,
    pub run_id: Option<i64>,
    pub healthy_since: Option<i64>,
}

pub async fn list_live<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<LiveRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, app_id, environment_id, deployment_id, run_id, healthy_since
         FROM releases WHERE state = $1",
    )
    .bind(ReleaseState::Live.as_str())
    .fetch_all(exec)
    .await?)
}

/// Stable releases their environment still serves: their health is still
/// followed (promotion reads how long they stayed healthy).
pub async fn list_serving_stable<'e>(
    exec: impl Executor<'e, Database = Any>,
) -> Result<Vec<LiveRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.app_id, r.environment_id, r.deployment_id, r.run_id, r.healthy_since
         FROM releases r JOIN environments e ON e.id = r.environment_id
         WHERE r.state = $1 AND e.deployment_id = r.deployment_id",
    )
    .bind(ReleaseState::Stable.as_str())
    .fetch_all(exec)
    .await?)
}

/// One release as the stability check sees it, if it is live.
pub async fn live_row<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<LiveRow>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT id, app_id, environment_id, deployment_id, run_id, healthy_since
         FROM releases WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(ReleaseState::Live.as_str())
    .fetch_optional(exec)
    .await?)
}

pub async fn set_healthy_since<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    since: Option<i64>,
) -> Result<(), super::QueryError> {
    Ok(
        sqlx::query("UPDATE releases SET healthy_since = $2 WHERE id = $1")
            .bind(id)
            .bind(since)
            .execute(exec)
            .await
            .map(|_| ())?,
    )
}

/// Marks a live release stable; false when it is not live (any more).
pub async fn mark_stable<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    by: &str,
    now: i64,
) -> Result<bool, super::QueryError> {
    let result = sqlx::query(
        "UPDATE releases SET state = $2, stable_at = $3, stable_by = $4 WHERE id = $1 AND state = $5",
    )
    .bind(id)
    .bind(ReleaseState::Stable.as_str())
    .bind(now)
    .bind(by)
    .bind(ReleaseState::Live.as_str())
    .execute(exec)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The newest release of the environment that reached stable, other than
/// `except` (the one serving now).
pub async fn last_stable<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    except: Option<i64>,
) -> Result<Option<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM releases
         WHERE environment_id = $1 AND stable_at IS NOT NULL AND id <> $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(environment_id)
    .bind(except.unwrap_or(0))
    .fetch_optional(exec)
    .await?)
}

/// Deployments whose build a rollback may need: those of releases that
/// reached stable, newest first.
pub async fn stable_deployments<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    limit: i64,
) -> Result<Vec<i64>, super::QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT deployment_id FROM releases
         WHERE environment_id = $1 AND stable_at IS NOT NULL
         ORDER BY id DESC LIMIT $2",
    )
    .bind(environment_id)
    .bind(limit)
    .fetch_all(exec)
    .await?)
}

#[derive(FromRow)]
struct Row {
    id: i64,
    app: String,
    environment: String,
    environment_id: i64,
    deployment_id: i64,
    run_id: Option<i64>,
    change_request_id: Option<i64>,
    kind: String,
    version: String,
    previous_version: Option<String>,
    pipeline_sha: String,
    image: Option<String>,
    state: String,
    label: Option<String>,
    reason: Option<String>,
    rollback_of: Option<i64>,
    rollback_to: Option<i64>,
    changelog: String,
    created_by: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    stable_at: Option<i64>,
    stable_by: Option<String>,
}

const SELECT: &str = "SELECT r.id, a.name AS app, e.name AS environment, r.environment_id,
        r.deployment_id, r.run_id, ru.change_request_id, r.kind, r.version, r.previous_version,
        r.pipeline_sha, r.image, r.state, r.label, r.reason, r.rollback_of, r.rollback_to,
        r.changelog, r.created_by, r.created_at, r.finished_at, r.stable_at, r.stable_by
     FROM releases r
     JOIN apps a ON a.id = r.app_id
     JOIN environments e ON e.id = r.environment_id
     LEFT JOIN runs ru ON ru.id = r.run_id";

/// One page of the ledger, newest first, filtered by app and environment.
pub async fn list(
    conn: &mut sqlx::AnyConnection,
    filter: &ReleaseFilter,
) -> Result<Vec<ReleaseSummary>, super::QueryError> {
    let limit = filter.limit.unwrap_or(50).clamp(1, PAGE_LIMIT);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "{SELECT}
         WHERE ($1 IS NULL OR a.name = $1) AND ($2 IS NULL OR e.name = $2) AND ($3 IS NULL OR r.id < $3)
         ORDER BY r.id DESC LIMIT $4"
    ))
    .bind(filter.app.as_deref())
    .bind(filter.environment.as_deref())
    .bind(filter.before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    hydrate(conn, rows).await
}

pub async fn get(
    conn: &mut sqlx::AnyConnection,
    id: i64,
) -> Result<Option<ReleaseSummary>, super::QueryError> {
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(hydrate(conn, rows).await?.pop())
}

/// Successful deployments of an environment, oldest first: (deployment,
/// commit, finished at, its release).
pub async fn deployment_history<'e>(
    exec: impl Executor<'e, Database = Any>,
    environment_id: i64,
    limit: i64,
) -> Result<Vec<(i64, String, Option<i64>, Option<i64>)>, super::QueryError> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.commit_sha, d.finished_at, r.id
         FROM deployments d LEFT JOIN releases r ON r.deployment_id = d.id
         WHERE d.environment_id = $1 AND d.state IN ($2, $3)
         ORDER BY d.id LIMIT $4",
    )
    .bind(environment_id)
    .bind(DeploymentState::Succeeded.as_str())
    .bind(DeploymentState::PartiallyFailed.as_str())
    .bind(limit)
    .fetch_all(exec)
    .await?)
}

/// Adds each entry's targets and the decisions that let it through (on its
/// run, or on the change request that merged it): two queries per page.
async fn hydrate(
    conn: &mut sqlx::AnyConnection,
    rows: Vec<Row>,
) -> Result<Vec<ReleaseSummary>, super::QueryError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let deployments: Vec<i64> = rows.iter().map(|r| r.deployment_id).collect();
    let targets: Vec<TargetRow> = sqlx::query_as(&format!(
        "SELECT deployment_id, target, state, detail, finished_at FROM deployment_targets
         WHERE deployment_id IN ({}) ORDER BY target",
        placeholders(deployments.len(), 1)
    ))
    .bind_all(&deployments)
    .fetch_all(&mut *conn)
    .await?;
    let runs: Vec<i64> = rows.iter().filter_map(|r| r.run_id).collect();
    let requests: Vec<i64> = rows.iter().filter_map(|r| r.change_request_id).collect();
    let decisions: Vec<DecisionRow> = if runs.is_empty() && requests.is_empty() {
        Vec::new()
    } else {
        let mut clauses = Vec::new();
        if !runs.is_empty() {
            clauses.push(format!("d.run_id IN ({})", placeholders(runs.len(), 1)));
        }
        if !requests.is_empty() {
            clauses.push(format!(
                "d.change_request_id IN ({})",
                placeholders(requests.len(), runs.len() + 1)
            ));
        }
        sqlx::query_as(&format!(
            "SELECT d.run_id, d.change_request_id, u.display_name AS who, d.decision, d.comment,
                    d.override_reason, d.commit_sha, d.auth_time, d.created_at
             FROM approvals d JOIN users u ON u.id = d.user_id
             WHERE {} ORDER BY d.created_at, d.id",
            clauses.join(" OR ")
        ))
        .bind_all(&runs)
        .bind_all(&requests)
        .fetch_all(&mut *conn)
        .await?
    };
    rows.into_iter()
        .map(|row| {
            let targets = targets
                .iter()
                .filter(|t| t.deployment_id == row.deployment_id)
                .map(|t| {
                    Ok(TargetOutcome {
                        target: t.target.clone(),
                        state: decode_state(&t.state, DeploymentState::parse)?,
                        detail: t.detail.clone(),
                        finished_at: t.finished_at,
                    })
                })
                .collect::<Result<Vec<_>, super::QueryError>>()?;
            let approvals = decisions
                .iter()
                .filter(|d| {
                    (row.run_id.is_some() && d.run_id == row.run_id)
                        || (row.change_request_id.is_some()
                            && d.change_request_id == row.change_request_id)
                })
                .map(DecisionRow::record)
                .collect();
            let changelog: Vec<ChangelogCommit> =
                serde_json::from_str(&row.changelog).unwrap_or_default();
            Ok(ReleaseSummary {
                id: row.id,
                app: row.app,
                environment: row.environment,
                version: row.version,
                state: decode_state(&row.state, ReleaseState::parse)?,
                kind: ReleaseKind::parse(&row.kind).unwrap_or(ReleaseKind::Release),
                label: row.label,
                previous_version: row.previous_version,
                pipeline_sha: row.pipeline_sha,
                image: row.image,
                reason: row.reason,
                rollback_of: row.rollback_of,
                rollback_to: row.rollback_to,
                run_id: row.run_id,
                deployment_id: row.deployment_id,
                environment_id: row.environment_id,
                created_by: row.created_by,
                created_at: row.created_at,
                finished_at: row.finished_at,
                stable_at: row.stable_at,
                stable_by: row.stable_by,
                changelog,
                targets,
                approvals,
                soak: None,
                uncovered: None,
                artifact: None,
            })
        })
        .collect()
}

#[derive(FromRow)]
struct TargetRow {
    deployment_id: i64,
    target: String,
    state: String,
    detail: Option<String>,
    finished_at: Option<i64>,
}

#[derive(FromRow)]
struct DecisionRow {
    run_id: Option<i64>,
    change_request_id: Option<i64>,
    who: String,
    decision: String,
    comment: Option<String>,
    override_reason: Option<String>,
    commit_sha: Option<String>,
    auth_time: Option<i64>,
    created_at: i64,
}

impl DecisionRow {
    fn record(&self) -> ApprovalRecord {
        ApprovalRecord {
            who: self.who.clone(),
            decision: self.decision.clone(),
            comment: self
                .override_reason
                .clone()
                .or_else(|| self.comment.clone()),
            commit_sha: self.commit_sha.clone(),
            auth_time: self.auth_time,
            at: self.created_at,
        }
    }
}

/// `$first, $first+1, …` for an `IN` list of `count` values.
fn placeholders(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds every value of a list, in order.
trait BindAll<'q> {
    fn bind_all(self, values: &'q [i64]) -> Self;
}

impl<'q, O> BindAll<'q> for sqlx::query::QueryAs<'q, Any, O, sqlx::any::AnyArguments<'q>> {
    fn bind_all(self, values: &'q [i64]) -> Self {
        values.iter().fold(self, |query, value| query.bind(*value))
    }
}

/// App, id, kind, state, finished, rollback of, changelog.
type FactColumns = (
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
);

/// One ledger entry as delivery metrics read it.
#[derive(Clone, Debug)]
pub struct FactRow {
    pub app: String,
    pub id: i64,
    pub kind: ReleaseKind,
    pub state: ReleaseState,
    pub finished_at: Option<i64>,
    pub rollback_of: Option<i64>,
    pub changelog: Vec<ChangelogCommit>,
}

/// The ledger of every app's environment `environment` (or only `app`'s)
/// since `since`, as delivery metrics read it, oldest first.
pub async fn facts<'e>(
    exec: impl Executor<'e, Database = Any>,
    app: Option<&str>,
    environment: &str,
    since: i64,
) -> Result<Vec<FactRow>, super::QueryError> {
    let sql = format!(
        "SELECT a.name, r.id, r.kind, r.state, r.finished_at, r.rollback_of, r.changelog
         FROM releases r
         JOIN apps a ON a.id = r.app_id
         JOIN environments e ON e.id = r.environment_id
         WHERE e.name = $1 AND r.created_at >= $2 {}
         ORDER BY r.id",
        if app.is_some() { "AND a.name = $3" } else { "" }
    );
    let mut query = sqlx::query_as(&sql).bind(environment).bind(since);
    if let Some(app) = app {
        query = query.bind(app);
    }
    let rows: Vec<FactColumns> = query.fetch_all(exec).await?;
    rows.into_iter()
        .map(
            |(app, id, kind, state, finished_at, rollback_of, changelog)| {
                let changelog: Vec<ChangelogCommit> =
                    serde_json::from_str(&changelog).unwrap_or_default();
                Ok(FactRow {
                    app,
                    id,
                    kind: ReleaseKind::parse(&kind).unwrap_or(ReleaseKind::Release),
                    state: decode_state(&state, ReleaseState::parse)?,
                    finished_at,
                    rollback_of,
                    changelog,
                })
            },
        )
        .collect()
}
