//! Holding and releasing runs for protected environments. A run of an
//! environment with an approval policy (or inside a freeze) waits in
//! `waiting_for_approval` until enough distinct people approve it; one
//! rejection ends it; an admin may override the policy with a reason.
//!
//! The rules themselves live in [`policy`].

pub mod policy;

use app::dto::RunState;
use app::port::Caller;

use crate::db::{self, audit::NewEntry, change_requests::NewDecision, now_millis, runs::RunRow};
use crate::gitops::schema::{AppConfig, ApprovalPolicy, StackEntry};

/// Approving, rejecting and overriding runs held for approval, and
/// releasing them when a freeze ends.
pub struct Approvals<'a> {
    pub db: &'a crate::db::Db,
    pub git: &'a crate::git::GitStore,
    pub clock: &'a crate::clock::Clock,
    pub flow: &'a crate::signals::Signals,
    /// How recent a sign-in must be where a policy asks for `reauth`.
    pub reauth_max_age: std::time::Duration,
}

impl Approvals<'_> {
    fn freshness(&self) -> policy::Freshness {
        policy::Freshness {
            max_age: self.reauth_max_age,
            now: self.clock.now_millis(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {id} is {state}, not waiting for approval")]
    NotWaiting { id: i64, state: RunState },
    #[error("{actor} has already approved run {id}")]
    AlreadyApproved { id: i64, actor: String },
    #[error("{0}")]
    Forbidden(String),
    /// A freeze or a missing reason: the person can act on it.
    #[error("{0}")]
    Refused(String),
    /// The request itself is wrong (an override without a reason).
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error("the app's configuration is unreadable: {0}")]
    Config(#[from] serde_json::Error),
    #[error("{0}")]
    Git(#[from] crate::git::GitError),
}

impl crate::error::Classified for ApprovalError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ApprovalError::NotFound(_) => Kind::NotFound,
            ApprovalError::NotWaiting { .. }
            | ApprovalError::AlreadyApproved { .. }
            | ApprovalError::Refused(_) => Kind::Conflict,
            ApprovalError::Forbidden(_) => Kind::Forbidden,
            ApprovalError::Invalid(_) => Kind::Invalid,
            ApprovalError::Git(error) => error.kind(),
            ApprovalError::Config(_) => Kind::Internal,
            ApprovalError::Db(error) => error.kind(),
        }
    }
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

/// A held run with what its decision depends on.
struct Held {
    run: RunRow,
    env: db::environments::EnvRow,
    app_name: String,
    entry: Option<StackEntry>,
    /// Why its artifact may not go there yet (`crate::promotion`): no
    /// approval releases it; waiting (a soak) or an override does.
    unpromotable: Option<String>,
}

impl Held {
    fn policy(&self) -> Option<&ApprovalPolicy> {
        self.entry.as_ref().and_then(|e| e.approval.as_ref())
    }

    /// What releases the run: a fork's build needs one admin to allow it,
    /// whatever the environment; otherwise the environment's policy.
    fn release_policy(&self) -> Option<ApprovalPolicy> {
        if self.run.from_fork.is_some() {
            return Some(policy::for_change_request(None));
        }
        self.policy().cloned()
    }

    fn target(&self) -> String {
        format!("{}/{} run {}", self.app_name, self.env.name, self.run.id)
    }
}

async fn load(service: &Approvals<'_>, run_id: i64) -> Result<Held, ApprovalError> {
    let pool = service.db.pool();
    let run = db::runs::get(pool, run_id)
        .await?
        .ok_or(ApprovalError::NotFound(run_id))?;
    if run.state != RunState::WaitingForApproval {
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
    let config: AppConfig = crate::configs::stored(&app_row)?;
    let entry = config
        .stack
        .iter()
        .find(|entry| entry.env == env.stack_entry)
        .cloned();
    let unpromotable = match &entry {
        Some(entry) => {
            crate::promotion::hold(
                service.db,
                run.artifact_id,
                entry,
                service.clock.now_millis(),
            )
            .await?
        }
        None => None,
    };
    Ok(Held {
        run,
        env,
        app_name: app_row.name,
        entry,
        unpromotable,
    })
}

/// The Gantry users who brought the change a run builds: the author of
/// its change request (who opened it in Gantry, or the forge account mapped
/// to them) and who pushed it (where a forge said so) — each looked up now,
/// not only when the run was planned. Never the commit's author line, which
/// the pusher writes as they like. Empty: Gantry does not know (a push to a
/// plain git remote), and the run page says so.
async fn authors_of(service: &Approvals<'_>, held: &Held) -> Result<Vec<i64>, ApprovalError> {
    let pool = service.db.pool();
    let mut authors = Vec::new();
    if let Some(cr) = held.run.change_request_id
        && let Some(row) = db::change_requests::get(pool, cr).await?
    {
        authors.extend(crate::auth::author_of_request(service.db, &row).await?);
    }
    authors.extend(held.run.pushed_by_user_id);
    if let Some(push) = db::coverage::pusher(
        pool,
        held.run.app_id,
        &held.run.branch,
        &held.run.commit_sha,
    )
    .await?
        && let Some(who) = crate::auth::forge_identity(service.db, &push.login).await?
    {
        authors.push(who.user_id);
    }
    Ok(authors)
}

pub async fn approve(
    service: &Approvals<'_>,
    caller: &Caller,
    run_id: i64,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    let held = load(service, run_id).await?;
    let release_policy = held.release_policy();
    let Some(policy) = release_policy.as_ref() else {
        if let Some(why) = &held.unpromotable {
            return Err(ApprovalError::Refused(format!(
                "{} holds run {run_id} for its artifact, not for approvals: {why}; an admin may override with a reason",
                held.env.name
            )));
        }
        // Held only by a freeze: it is released when the freeze ends, or
        // by an override.
        let freeze = policy::freeze_now(held.entry.as_ref(), service.clock.now_millis())
            .map(|f| f.describe())
            .unwrap_or_else(|| "frozen".into());
        return Err(ApprovalError::Refused(format!(
            "{} is {freeze}; the run deploys when the freeze ends, or an admin overrides with a reason",
            held.env.name
        )));
    };
    if let Some(refusal) = policy::refusal(service.freshness(), caller, policy, &held.app_name) {
        return Err(ApprovalError::Forbidden(refusal));
    }
    if let Some(refusal) =
        policy::self_approval_refusal(caller, policy, &authors_of(service, &held).await?)
    {
        return Err(ApprovalError::Forbidden(refusal));
    }
    let required = i64::from(policy.required);
    let frozen = policy::freeze_now(held.entry.as_ref(), service.clock.now_millis());

    let now = now_millis();
    let mut tx = service.db.begin().await?;
    if db::approvals::has_approved(&mut *tx, run_id, caller.user_id).await? {
        return Err(ApprovalError::AlreadyApproved {
            id: run_id,
            actor: caller.me.name.clone(),
        });
    }
    record(&mut tx, caller, &held, "approved", comment, None, now).await?;
    let approvals = db::approvals::approvers_of_run(&mut *tx, run_id).await?;
    // A freeze keeps the run held even when the approvals are there; it is
    // released when the freeze ends (see `release_thawed`).
    // So does its artifact's standing (`release_verified` lets it go once
    // a soak upstream is over).
    let released = approvals >= required
        && frozen.is_none()
        && held.unpromotable.is_none()
        && db::runs::release_hold(&mut *tx, run_id).await?;
    crate::db::commit(tx).await?;
    if released {
        service.flow.runner_wake.notify_one();
        Ok(ApprovalOutcome::Released {
            approvals,
            required,
        })
    } else {
        Ok(ApprovalOutcome::Waiting {
            approvals,
            required,
        })
    }
}

pub async fn reject(
    service: &Approvals<'_>,
    caller: &Caller,
    run_id: i64,
    comment: Option<&str>,
) -> Result<ApprovalOutcome, ApprovalError> {
    let held = load(service, run_id).await?;
    let default_policy = policy::for_change_request(None);
    let policy = held.policy().unwrap_or(&default_policy);
    if let Some(refusal) = policy::refusal(service.freshness(), caller, policy, &held.app_name) {
        return Err(ApprovalError::Forbidden(refusal));
    }
    let now = now_millis();
    let mut tx = service.db.begin().await?;
    record(&mut tx, caller, &held, "rejected", comment, None, now).await?;
    let reason = format!(
        "rejected by {}{}",
        caller.me.name,
        comment.map(|c| format!(": {c}")).unwrap_or_default()
    );
    db::runs::finish(&mut *tx, run_id, RunState::Cancelled, Some(&reason), now).await?;
    crate::db::commit(tx).await?;
    Ok(ApprovalOutcome::Rejected)
}

/// An admin releases a held run regardless of the count and of a freeze,
/// with a reason that goes into the audit log.
pub async fn override_hold(
    service: &Approvals<'_>,
    caller: &Caller,
    run_id: i64,
    reason: &str,
) -> Result<ApprovalOutcome, ApprovalError> {
    let held = load(service, run_id).await?;
    let reason = policy::override_reason(reason).map_err(|e| ApprovalError::Invalid(e.into()))?;
    let admin_only = policy::admin_only(
        held.policy()
            .cloned()
            .unwrap_or_else(|| policy::for_change_request(None)),
    );
    if let Some(refusal) = policy::refusal(service.freshness(), caller, &admin_only, &held.app_name)
    {
        return Err(ApprovalError::Forbidden(refusal));
    }
    let now = now_millis();
    let mut tx = service.db.begin().await?;
    record(&mut tx, caller, &held, "override", None, Some(reason), now).await?;
    db::runs::release_hold(&mut *tx, run_id).await?;
    crate::db::commit(tx).await?;
    service.flow.runner_wake.notify_one();
    Ok(ApprovalOutcome::Released {
        approvals: 0,
        required: held.policy().map_or(0, |p| i64::from(p.required)),
    })
}

async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    caller: &Caller,
    held: &Held,
    decision: &str,
    comment: Option<&str>,
    override_reason: Option<&str>,
    now: i64,
) -> Result<(), ApprovalError> {
    db::change_requests::record_decision(
        &mut **tx,
        &NewDecision {
            environment_id: held.env.id,
            run_id: Some(held.run.id),
            change_request_id: None,
            user_id: caller.user_id,
            decision,
            comment,
            commit_sha: Some(&held.run.commit_sha),
            auth_time: caller.me.auth_time,
            override_reason,
            base_sha: None,
        },
        now,
    )
    .await?;
    let action = match decision {
        "approved" => "run.approve",
        "rejected" => "run.reject",
        _ => "run.override",
    };
    db::audit::record(
        &mut **tx,
        &NewEntry {
            actor: &caller.me.name,
            action,
            target: &held.target(),
            reason: override_reason.or(comment),
            source_ip: caller.source_ip.as_deref(),
            detail: &serde_json::json!({
                "commit": held.run.commit_sha,
                "auth_time": caller.me.auth_time,
            })
            .to_string(),
        },
        now,
    )
    .await?;
    Ok(())
}

/// Releases held runs whose commits approvals now cover (a request
/// approved after its head was pushed to the target, a forge merge that
/// counts arriving after the push), unless a freeze holds them; updates
/// what the others' approval screens list. Held forks wait for an admin
/// whatever covers them.
pub async fn release_covered(service: &Approvals<'_>) -> Result<usize, ApprovalError> {
    let pool = service.db.pool();
    let mut released = 0;
    for pending in db::runs::list_waiting_for_approval(pool).await? {
        let Ok(held) = load(service, pending.run_id).await else {
            continue;
        };
        let Some(policy) = held.policy().filter(|_| held.run.from_fork.is_none()) else {
            continue;
        };
        let Some(app_row) = db::apps::get(pool, held.run.app_id).await? else {
            continue;
        };
        let target = crate::coverage::Protected {
            app_id: held.run.app_id,
            source_url: &app_row.source_url,
            branch: &held.run.branch,
            environment_id: Some(held.env.id),
            policy,
        };
        let judged = async {
            let mut view = crate::coverage::view(
                &crate::coverage::uncovered(service.db, service.git, target, &held.run.commit_sha)
                    .await?,
            );
            view.rewinds_from = crate::coverage::rewinds(
                service.git,
                &app_row.source_url,
                held.env.commit_sha.as_deref(),
                &held.run.commit_sha,
            )
            .await?;
            Ok::<_, crate::coverage::CoverageError>(view)
        }
        .await;
        let view = match judged {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(run = held.run.id, %error, "cannot tell what covers a held run");
                continue;
            }
        };
        if view.total == 0
            && view.rewinds_from.is_none()
            && policy::freeze_now(held.entry.as_ref(), service.clock.now_millis()).is_none()
            && held.unpromotable.is_none()
        {
            let mut tx = service.db.begin().await?;
            db::runs::set_uncovered(&mut *tx, held.run.id, None).await?;
            let freed = db::runs::release_hold(&mut *tx, held.run.id).await?;
            crate::db::commit(tx).await?;
            if freed {
                tracing::info!(
                    run = held.run.id,
                    "approvals cover the run's commits: released"
                );
                released += 1;
            }
        } else if pending.uncovered.as_ref() != Some(&view) {
            db::runs::set_uncovered(pool, held.run.id, Some(&view)).await?;
        }
    }
    if released > 0 {
        service.flow.runner_wake.notify_one();
    }
    Ok(released)
}

/// Releases held runs whose only obstacle was a freeze that has ended:
/// runs of environments without a policy, and runs whose approvals are
/// complete; and runs approvals now cover ([`release_covered`]). Called
/// periodically.
pub async fn release_thawed(service: &Approvals<'_>) -> Result<usize, ApprovalError> {
    let pool = service.db.pool();
    let mut released = 0;
    for pending in db::runs::list_waiting_for_approval(pool).await? {
        let Ok(held) = load(service, pending.run_id).await else {
            continue;
        };
        if policy::freeze_now(held.entry.as_ref(), service.clock.now_millis()).is_some()
            || held.unpromotable.is_some()
        {
            continue;
        }
        let approvals = db::approvals::approvers_of_run(pool, held.run.id).await?;
        let required = held.release_policy().map_or(0, |p| i64::from(p.required));
        if approvals >= required && db::runs::release_hold(pool, held.run.id).await? {
            tracing::info!(run = held.run.id, "freeze over: run released");
            released += 1;
        }
    }
    if released > 0 {
        service.flow.runner_wake.notify_one();
    }
    Ok(released + release_covered(service).await?)
}

/// Releases held runs whose artifact now passes what their environment
/// `requires` (its soak upstream is over) and that nothing else holds: no
/// freeze, no fork, and no policy or enough people approved the run. A run
/// whose commits approvals cover is left to [`release_covered`], which
/// judges coverage afresh. Called with the stability check, which is what
/// moves a soak on.
pub async fn release_verified(service: &Approvals<'_>) -> Result<usize, ApprovalError> {
    let pool = service.db.pool();
    let mut released = 0;
    for pending in db::runs::list_waiting_for_approval(pool).await? {
        let Ok(held) = load(service, pending.run_id).await else {
            continue;
        };
        let asks = held.entry.as_ref().is_some_and(|e| e.requires.is_some());
        if !asks
            || held.unpromotable.is_some()
            || held.run.from_fork.is_some()
            || policy::freeze_now(held.entry.as_ref(), service.clock.now_millis()).is_some()
        {
            continue;
        }
        let approved = match held.policy() {
            None => true,
            Some(policy) => {
                db::approvals::approvers_of_run(pool, held.run.id).await?
                    >= i64::from(policy.required)
            }
        };
        if approved && db::runs::release_hold(pool, held.run.id).await? {
            tracing::info!(
                run = held.run.id,
                "its artifact passed what the environment requires: released"
            );
            released += 1;
        }
    }
    if released > 0 {
        service.flow.runner_wake.notify_one();
    }
    Ok(released)
}
