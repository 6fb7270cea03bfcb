//! Holding and releasing runs for protected environments. A run of an
//! environment with an approval policy waits in `waiting_for_approval` until
//! enough distinct people approve it; one rejection ends it.
//!
//! Until sign-in exists, the approver is the name the API caller gives;
//! roles and self-approval are enforced once identities are real.

use app::dto::RunState;

use crate::db::{self, audit::NewEntry, now_millis};
use crate::gitops::schema::AppConfig;
use crate::state::App;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {id} is {state}, not waiting for approval")]
    NotWaiting { id: i64, state: String },
    #[error("{actor} has already approved run {id}")]
    AlreadyApproved { id: i64, actor: String },
    #[error("an approver name is required")]
    NoActor,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the app's configuration is unreadable: {0}")]
    Config(#[from] serde_json::Error),
}

#[derive(Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ApprovalOutcome {
    /// The policy is met: the run is queued.
    Released { approvals: i64, required: i64 },
    /// More approvals are needed.
    Waiting { approvals: i64, required: i64 },
    /// The run was rejected and will not run.
    Rejected,
}

pub async fn approve(
    app: &App,
    run_id: i64,
    actor: &str,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    decide(app, run_id, actor, comment, true).await
}

pub async fn reject(
    app: &App,
    run_id: i64,
    actor: &str,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    decide(app, run_id, actor, comment, false).await
}

async fn decide(
    app: &App,
    run_id: i64,
    actor: &str,
    comment: Option<&str>,
    approve: bool,
) -> Result<ApprovalOutcome, ApprovalError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(ApprovalError::NoActor);
    }
    let pool = app.db.pool();
    let run = db::runs::get(pool, run_id)
        .await?
        .ok_or(ApprovalError::NotFound(run_id))?;
    if run.state != RunState::WaitingForApproval.as_str() {
        return Err(ApprovalError::NotWaiting {
            id: run_id,
            state: run.state,
        });
    }
    let env = db::environments::get(pool, run.environment_id)
        .await?
        .ok_or(ApprovalError::NotFound(run_id))?;
    let app_row = db::apps::get(pool, run.app_id)
        .await?
        .ok_or(ApprovalError::NotFound(run_id))?;
    let config: AppConfig = serde_json::from_str(&app_row.config)?;
    let required = config
        .stack
        .iter()
        .find(|entry| entry.env == env.stack_entry)
        .and_then(|entry| entry.approval.as_ref())
        .map_or(1, |policy| i64::from(policy.required));

    let now = now_millis();
    let mut tx = pool.begin().await?;
    let user_id = ensure_api_user(&mut tx, actor, now).await?;
    let already: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE run_id = $1 AND user_id = $2 AND decision = 'approved'")
        .bind(run_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    if approve && already > 0 {
        return Err(ApprovalError::AlreadyApproved {
            id: run_id,
            actor: actor.to_string(),
        });
    }
    sqlx::query(
        "INSERT INTO approvals (environment_id, run_id, user_id, decision, comment, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(env.id)
    .bind(run_id)
    .bind(user_id)
    .bind(if approve { "approved" } else { "rejected" })
    .bind(comment)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    db::audit::record(
        &mut *tx,
        &NewEntry {
            actor,
            action: if approve { "run.approve" } else { "run.reject" },
            target: &format!("{}/{} run {run_id}", app_row.name, env.name),
            reason: comment,
            source_ip: None,
            detail: &serde_json::json!({ "commit": run.commit_sha }).to_string(),
        },
        now,
    )
    .await?;
    let outcome = if approve {
        let approvals: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT user_id) FROM approvals WHERE run_id = $1 AND decision = 'approved'")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        if approvals >= required && db::runs::release_hold(&mut *tx, run_id).await? {
            ApprovalOutcome::Released {
                approvals,
                required,
            }
        } else {
            ApprovalOutcome::Waiting {
                approvals,
                required,
            }
        }
    } else {
        let reason = format!(
            "rejected by {actor}{}",
            comment.map(|c| format!(": {c}")).unwrap_or_default()
        );
        db::runs::finish(&mut *tx, run_id, RunState::Cancelled, Some(&reason), now).await?;
        ApprovalOutcome::Rejected
    };
    tx.commit().await?;
    if matches!(outcome, ApprovalOutcome::Released { .. }) {
        app.flow.runner_wake.notify_one();
    }
    Ok(outcome)
}

/// The user row standing for an API caller until sign-in exists.
async fn ensure_api_user(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    if let Some(id) =
        sqlx::query_scalar("SELECT id FROM users WHERE issuer = 'gantry-api' AND subject = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
    {
        return Ok(id);
    }
    sqlx::query_scalar(
        "INSERT INTO users (issuer, subject, display_name, created_at) VALUES ('gantry-api', $1, $1, $2) RETURNING id",
    )
    .bind(name)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
}
