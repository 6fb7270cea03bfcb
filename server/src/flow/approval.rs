//! Holding and releasing runs for protected environments. A run of an
//! environment with an approval policy waits in `waiting_for_approval` until
//! enough distinct people approve it; one rejection ends it.
//!
//! Who may approve is the environment's policy: the roles allowed (a role
//! includes the ones above it), and a fresh sign-in where it demands one.

use app::dto::RunState;

use crate::db::{self, audit::NewEntry, now_millis};
use crate::gitops::schema::{AppConfig, ApprovalPolicy};
use crate::state::App;
use app::dto::Role;
use app::port::Caller;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {id} is {state}, not waiting for approval")]
    NotWaiting { id: i64, state: String },
    #[error("{actor} has already approved run {id}")]
    AlreadyApproved { id: i64, actor: String },
    #[error("{0}")]
    Forbidden(String),
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
    caller: &Caller,
    run_id: i64,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    decide(app, caller, run_id, comment, true).await
}

pub async fn reject(
    app: &App,
    caller: &Caller,
    run_id: i64,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    decide(app, caller, run_id, comment, false).await
}

/// Checks that `caller` may decide under `policy` for `app_name`.
pub fn check_policy(
    app: &App,
    caller: &Caller,
    policy: Option<&ApprovalPolicy>,
    app_name: &str,
) -> Result<(), ApprovalError> {
    let roles: Vec<Role> = policy
        .map(|p| p.roles.iter().filter_map(|r| Role::parse(r)).collect())
        .unwrap_or_default();
    let lowest = roles
        .iter()
        .min_by_key(|r| r.rank())
        .copied()
        .unwrap_or(Role::Admin);
    if !caller.me.can(lowest, Some(app_name)) {
        return Err(ApprovalError::Forbidden(format!(
            "approving here needs the {lowest} role on {app_name}; {} does not have it",
            caller.me.name
        )));
    }
    if policy.is_some_and(|p| p.reauth) {
        let max_age = app.config.reauth_max_age.as_millis() as i64;
        let fresh = caller
            .me
            .auth_time
            .is_some_and(|t| now_millis() - t <= max_age);
        if !fresh {
            return Err(ApprovalError::Forbidden(format!(
                "this environment needs a fresh sign-in to approve (within {}); sign in again at /auth/login?fresh=1",
                crate::gitops::duration::HumanDuration(app.config.reauth_max_age)
            )));
        }
    }
    Ok(())
}

async fn decide(
    app: &App,
    caller: &Caller,
    run_id: i64,
    comment: Option<&str>,
    approve: bool,
) -> Result<ApprovalOutcome, ApprovalError> {
    let actor = caller.me.name.as_str();
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
    let policy = config
        .stack
        .iter()
        .find(|entry| entry.env == env.stack_entry)
        .and_then(|entry| entry.approval.clone());
    check_policy(app, caller, policy.as_ref(), &app_row.name)?;
    let required = policy
        .as_ref()
        .map_or(1, |policy| i64::from(policy.required));

    let now = now_millis();
    let mut tx = pool.begin().await?;
    let user_id = caller.user_id;
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
