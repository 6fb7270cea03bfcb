//! Change requests: a developer proposes merging a branch into an
//! environment's branch (a feature into `latest`, or `latest` into `master`
//! to promote to production); its preview is built; admins approve or reject
//! under the target environment's policy; when the policy is met Gantry
//! merges with git2, pushes, and the target branch's pipeline runs.
//!
//! Native requests and forge merge/pull requests share this model (`origin`
//! tells them apart). Approvals belong to a commit: a new push to the source
//! starts them over. A merge commit's SHA is recorded before it is pushed, so
//! the planner knows the push it sees was approved and does not hold it again.

use app::dto::{ChangeRequestDetail, ChangeRequestState, NewChangeRequest, Role, RunSummary};
use app::port::Caller;
use tokio::sync::Mutex;

use crate::approvals::policy;
use crate::db::{
    self,
    audit::NewEntry,
    change_requests::{CrRow, NewDecision, NewRow},
    now_millis,
};
use crate::git::{GitError, MergeOutcome, MergeRequest};
use crate::gitops::schema::{AppConfig, ApprovalPolicy, BranchMatch, StackEntry};
use crate::gitops::stack::{entry_for, production_branch, staging_branch};

/// Change requests with what they need: the database, the vault (forge
/// tokens are secrets), the clock and the fresh-sign-in window (approval
/// policy, freezes), git (merges) under a lease in the replica's name, the
/// flow (to plan and scan), and notifications and sharing.
#[derive(Clone)]
pub struct ChangeRequests<'a> {
    pub db: &'a crate::db::Db,
    pub vault: &'a crate::secrets::Vault,
    pub clock: &'a crate::clock::Clock,
    pub reauth_max_age: std::time::Duration,
    pub git: &'a crate::git::GitStore,
    /// This replica (its runner id): who holds a request's merge lease.
    pub replica: &'a str,
    /// How long a merge lease lasts unrenewed (`runner.lease`).
    pub merge_lease: std::time::Duration,
    pub flow: &'a crate::signals::Signals,
    pub notifier: crate::notify::Notifier<'a>,
    pub sharing: crate::sharing::Sharing<'a>,
}

impl<'a> ChangeRequests<'a> {
    fn freshness(&self) -> policy::Freshness {
        policy::Freshness {
            max_age: self.reauth_max_age,
            now: self.clock.now_millis(),
        }
    }

    fn secrets(&self) -> crate::secrets::Store<'a> {
        crate::secrets::Store::new(self.db, self.vault)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeRequestError {
    #[error("change request {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    /// The request's state does not allow this now.
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error("the app's configuration is unreadable: {0}")]
    Config(#[from] serde_json::Error),
    #[error("{0}")]
    Git(#[from] GitError),
}

impl crate::error::Classified for ChangeRequestError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ChangeRequestError::NotFound(_) => Kind::NotFound,
            ChangeRequestError::Invalid(_) => Kind::Invalid,
            ChangeRequestError::Forbidden(_) => Kind::Forbidden,
            ChangeRequestError::Conflict(_) => Kind::Conflict,
            ChangeRequestError::Git(error) => error.kind(),
            ChangeRequestError::Config(_) => Kind::Internal,
            ChangeRequestError::Db(error) => error.kind(),
        }
    }
}

impl From<crate::coverage::CoverageError> for ChangeRequestError {
    fn from(error: crate::coverage::CoverageError) -> Self {
        match error {
            crate::coverage::CoverageError::Db(error) => ChangeRequestError::Db(error),
            crate::coverage::CoverageError::Git(error) => ChangeRequestError::Git(error),
        }
    }
}

type Result<T> = std::result::Result<T, ChangeRequestError>;

/// One merge at a time in this process; across replicas, a request is
/// merged under its lease (`merge_lease`).
static MERGES: Mutex<()> = Mutex::const_new(());

/// A request with the configuration it is judged by.
struct Judged {
    row: CrRow,
    source_url: String,
    config: AppConfig,
}

impl Judged {
    fn target_entry(&self) -> Option<&StackEntry> {
        entry_for(&self.config, &self.row.target_branch)
    }

    fn policy(&self) -> ApprovalPolicy {
        policy::for_change_request(self.target_entry())
    }

    fn label(&self) -> String {
        format!(
            "{} change request {} ({} → {})",
            self.row.app, self.row.id, self.row.source_branch, self.row.target_branch
        )
    }
}

async fn load(requests: &ChangeRequests<'_>, id: i64) -> Result<Judged> {
    let pool = requests.db.pool();
    let row = db::change_requests::get(pool, id)
        .await?
        .ok_or(ChangeRequestError::NotFound(id))?;
    let app_row = db::apps::get(pool, row.app_id)
        .await?
        .ok_or(ChangeRequestError::NotFound(id))?;
    let config = crate::configs::stored(&app_row)?;
    Ok(Judged {
        row,
        source_url: app_row.source_url,
        config,
    })
}

fn forbidden(caller: &Caller, role: Role, app: &str) -> Result<()> {
    caller
        .require(role, Some(app))
        .map_err(|e| ChangeRequestError::Forbidden(e.to_string()))
}

/// The target of a request from `source` when none is named: the staging
/// branch, or for the staging branch itself the production branch.
fn default_target(config: &AppConfig, source: &str) -> Option<String> {
    let staging = staging_branch(config);
    if staging == Some(source) {
        production_branch(config).map(str::to_string)
    } else {
        staging.map(str::to_string)
    }
}

/// Opens a request (developers and up). Its source's preview is built if
/// the current head has no run yet.
pub async fn open(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    new: NewChangeRequest,
) -> Result<CrRow> {
    let pool = requests.db.pool();
    let app_row = db::apps::find_active_by_name(pool, &new.app)
        .await?
        .ok_or_else(|| ChangeRequestError::Invalid(format!("no app named {:?}", new.app)))?;
    forbidden(caller, Role::Developer, &app_row.name)?;
    let config: AppConfig = crate::configs::stored(&app_row)?;
    let source = new.source_branch.trim().to_string();
    let target = match new.target_branch.as_deref().map(str::trim) {
        Some(target) if !target.is_empty() => target.to_string(),
        _ => default_target(&config, &source).ok_or_else(|| {
            ChangeRequestError::Invalid(format!(
                "{} has no staging branch to merge into; name a target_branch",
                app_row.name
            ))
        })?,
    };
    let target_is_environment = config
        .stack
        .iter()
        .any(|entry| entry.branches == BranchMatch::Exact(target.clone()));
    if !target_is_environment {
        return Err(ChangeRequestError::Invalid(format!(
            "target_branch {target:?} is not an environment branch of {}; expected one of {}",
            app_row.name,
            config
                .stack
                .iter()
                .filter_map(|e| match &e.branches {
                    BranchMatch::Exact(b) => Some(b.as_str()),
                    BranchMatch::Glob(_) => None,
                })
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if source == target {
        return Err(ChangeRequestError::Invalid(format!(
            "source_branch and target_branch are both {source:?}"
        )));
    }
    let heads = requests.git.fetch(&app_row.source_url).await?;
    let head = heads.get(&source).cloned().ok_or_else(|| {
        ChangeRequestError::Invalid(format!(
            "source_branch {source:?} does not exist in {}; push it first",
            app_row.source_url
        ))
    })?;
    if !heads.contains_key(&target) {
        return Err(ChangeRequestError::Invalid(format!(
            "target_branch {target:?} does not exist in {}",
            app_row.source_url
        )));
    }
    if requests
        .git
        .is_ancestor(&app_row.source_url, &head, &heads[&target])
        .await?
    {
        return Err(ChangeRequestError::Invalid(format!(
            "{target} already contains {source}; there is nothing to merge"
        )));
    }
    if let Some(existing) = db::change_requests::active_from(pool, app_row.id, &source)
        .await?
        .into_iter()
        .find(|cr| cr.target_branch == target)
    {
        return Err(ChangeRequestError::Conflict(format!(
            "change request {} already proposes {source} → {target}",
            existing.id
        )));
    }
    let title = match new.title.as_deref().map(str::trim) {
        Some(title) if !title.is_empty() => title.to_string(),
        _ => requests
            .git
            .commit_info(&app_row.source_url, &head)
            .await
            .map(|c| c.summary)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("Merge {source} into {target}")),
    };
    if title.chars().count() > 200 {
        return Err(ChangeRequestError::Invalid(
            "title is longer than 200 characters".into(),
        ));
    }
    let now = now_millis();
    let mut tx = requests.db.begin().await?;
    let id = db::change_requests::insert(
        &mut *tx,
        &NewRow {
            app_id: app_row.id,
            origin: "native",
            title: &title,
            description: new.description.as_deref().unwrap_or("").trim(),
            source_branch: &source,
            target_branch: &target,
            head_sha: &head,
            author: &caller.me.name,
            author_user_id: Some(caller.user_id),
        },
        now,
    )
    .await?;
    db::audit::record(
        &mut *tx,
        &NewEntry {
            actor: &caller.me.name,
            action: "change_request.open",
            target: &format!("{} change request {id} ({source} → {target})", app_row.name),
            reason: None,
            source_ip: caller.source_ip.as_deref(),
            detail: &serde_json::json!({ "head": head }).to_string(),
        },
        now,
    )
    .await?;
    // The source head's run belongs to the request; without one, build it.
    match db::runs::latest_of_commit(&mut *tx, app_row.id, &source, &head).await? {
        Some(run) => db::runs::set_change_request(&mut *tx, run.id, id).await?,
        None => {
            let event = db::inbox::BranchEvent {
                app_id: app_row.id,
                branch: source.clone(),
                before: None,
                after: Some(head.clone()),
            };
            db::inbox::insert(
                &mut *tx,
                "change_request",
                &format!("cr:{id}:{head}"),
                "push",
                &serde_json::to_string(&event)?,
                now,
            )
            .await?;
        }
    }
    crate::db::commit(tx).await?;
    requests.flow.plan_wake.notify_one();
    tracing::info!(app = %app_row.name, change_request = id, %source, %target, "change request opened");
    crate::notify::emit(
        &requests.notifier,
        crate::notify::Notice {
            event: crate::notify::Event::ApprovalRequested,
            app: app_row.name.clone(),
            environment: crate::gitops::stack::entry_for(&config, &target)
                .map_or_else(|| target.clone(), |entry| entry.env.clone()),
            subject: format!("change_request:{id}"),
            title: format!(
                "{}: {} asks to merge {source} into {target}",
                app_row.name, caller.me.name
            ),
            text: title.clone(),
            url: Some(crate::notify::link(
                &requests.notifier,
                &format!("change-requests/{id}"),
            )),
        },
    )
    .await;
    db::change_requests::get(pool, id)
        .await?
        .ok_or(ChangeRequestError::NotFound(id))
}

/// What the planner does for a new head of `branch`: requests from it move
/// to the new head (approvals start over). Returns the request the run
/// belongs to, if any.
pub async fn on_source_push(
    requests: &ChangeRequests<'_>,
    app_id: i64,
    branch: &str,
    sha: &str,
) -> std::result::Result<Option<i64>, crate::db::QueryError> {
    let pool = requests.db.pool();
    let mut first = None;
    for cr in db::change_requests::active_from(pool, app_id, branch).await? {
        first.get_or_insert(cr.id);
        if cr.head_sha.as_deref() != Some(sha) {
            db::change_requests::set_head(pool, cr.id, sha, now_millis()).await?;
            tracing::info!(change_request = cr.id, %sha, "change request updated; approvals start over");
        }
    }
    Ok(first)
}

/// Approves the request's current head; merges when the policy is met.
pub async fn approve(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
    comment: Option<&str>,
) -> Result<CrRow> {
    let judged = load(requests, id).await?;
    let policy = judged.policy();
    check_decider(requests, caller, &judged, &policy)?;
    let author = crate::auth::author_of_request(requests.db, &judged.row).await?;
    if let Some(refusal) = policy::self_approval_refusal(caller, &policy, author.as_slice()) {
        return Err(ChangeRequestError::Forbidden(refusal));
    }
    let head = head_of(&judged)?;
    let environment = target_environment_id(requests, &judged).await?;
    if db::change_requests::has_approved(requests.db.pool(), id, &head, caller.user_id, environment)
        .await?
    {
        return Err(ChangeRequestError::Conflict(format!(
            "{} has already approved {} of change request {id}",
            caller.me.name,
            short(&head)
        )));
    }
    decide(requests, caller, &judged, "approved", comment, None).await?;
    crate::notify::emit(
        &requests.notifier,
        crate::notify::Notice {
            event: crate::notify::Event::Approved,
            app: judged.row.app.clone(),
            environment: judged.target_entry().map_or_else(
                || judged.row.target_branch.clone(),
                |entry| entry.env.clone(),
            ),
            subject: format!("change_request:{id}:{}:{}", short(&head), caller.me.name),
            title: format!("{} approved {}", caller.me.name, judged.label()),
            text: comment.unwrap_or_default().to_string(),
            url: Some(crate::notify::link(
                &requests.notifier,
                &format!("change-requests/{id}"),
            )),
        },
    )
    .await;
    let merged = try_merge(requests, id, &caller.me.name).await?;
    // The approval may cover a held run's commits (the request's head
    // pushed to its target before it was approved): it goes now.
    release_covered(requests).await;
    Ok(merged)
}

/// Releases held runs that approvals now cover.
async fn release_covered(requests: &ChangeRequests<'_>) {
    let approvals = crate::approvals::Approvals {
        db: requests.db,
        git: requests.git,
        clock: requests.clock,
        flow: requests.flow,
        reauth_max_age: requests.reauth_max_age,
    };
    if let Err(error) = crate::approvals::release_covered(&approvals).await {
        tracing::warn!(%error, "releasing held runs that approvals now cover failed");
    }
}

/// Rejects the request: it is closed for good.
pub async fn reject(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
    comment: Option<&str>,
) -> Result<CrRow> {
    let judged = load(requests, id).await?;
    let policy = judged.policy();
    check_decider(requests, caller, &judged, &policy)?;
    decide(requests, caller, &judged, "rejected", comment, None).await?;
    let detail = format!(
        "rejected by {}{}",
        caller.me.name,
        comment.map(|c| format!(": {c}")).unwrap_or_default()
    );
    db::change_requests::set_state(
        requests.db.pool(),
        id,
        ChangeRequestState::Rejected,
        Some(&detail),
        now_millis(),
    )
    .await?;
    reload(requests, id).await
}

/// An admin merges regardless of the count, the author rule and a freeze,
/// with a mandatory reason kept in the audit log.
pub async fn override_policy(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
    reason: &str,
) -> Result<CrRow> {
    let judged = load(requests, id).await?;
    let reason =
        policy::override_reason(reason).map_err(|e| ChangeRequestError::Invalid(e.into()))?;
    let admin_only = policy::admin_only(judged.policy());
    check_decider(requests, caller, &judged, &admin_only)?;
    decide(requests, caller, &judged, "override", None, Some(reason)).await?;
    try_merge(requests, id, &caller.me.name).await
}

/// A tester's (or anyone's above) feedback on the preview: one model with
/// what share-link visitors leave (see `sharing`), never an approval.
pub async fn feedback(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
    comment: Option<&str>,
) -> Result<CrRow> {
    let feedback = app::dto::NewFeedback {
        verdict: "note".into(),
        comment: comment.unwrap_or_default().to_string(),
        name: None,
    };
    crate::sharing::leave_feedback_signed_in(&requests.sharing, caller, id, feedback)
        .await
        .map_err(|error| match error {
            crate::sharing::ShareError::NotFound(id) => ChangeRequestError::NotFound(id),
            crate::sharing::ShareError::Forbidden(why) => ChangeRequestError::Forbidden(why),
            crate::sharing::ShareError::Db(error) => ChangeRequestError::Db(error),
            crate::sharing::ShareError::Config(error) => ChangeRequestError::Config(error),
            other => ChangeRequestError::Invalid(other.to_string()),
        })?;
    reload(requests, id).await
}

/// The author (or an admin) withdraws the request.
pub async fn close(requests: &ChangeRequests<'_>, caller: &Caller, id: i64) -> Result<CrRow> {
    let judged = load(requests, id).await?;
    if judged.row.author_user_id != Some(caller.user_id) {
        forbidden(caller, Role::Admin, &judged.row.app)?;
    }
    if !judged.row.is_active() {
        return Err(ChangeRequestError::Conflict(format!(
            "change request {id} is already {}",
            judged.row.state
        )));
    }
    let now = now_millis();
    let mut tx = requests.db.begin().await?;
    db::change_requests::set_state(
        &mut *tx,
        id,
        ChangeRequestState::Closed,
        Some(&format!("closed by {}", caller.me.name)),
        now,
    )
    .await?;
    let detail = serde_json::json!({
        "head": judged.row.head_sha,
        "auth_time": caller.me.auth_time,
    });
    audit(
        &mut tx,
        caller,
        "change_request.close",
        &judged,
        None,
        &detail,
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    reload(requests, id).await
}

fn check_decider(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    judged: &Judged,
    policy: &ApprovalPolicy,
) -> Result<()> {
    if !judged.row.is_active() {
        return Err(ChangeRequestError::Conflict(format!(
            "change request {} is {}; there is nothing to decide",
            judged.row.id, judged.row.state
        )));
    }
    match policy::refusal(requests.freshness(), caller, policy, &judged.row.app) {
        Some(refusal) => Err(ChangeRequestError::Forbidden(refusal)),
        None => Ok(()),
    }
}

fn head_of(judged: &Judged) -> Result<String> {
    judged.row.head_sha.clone().ok_or_else(|| {
        ChangeRequestError::Conflict(format!(
            "change request {} has no source commit yet",
            judged.row.id
        ))
    })
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

async fn decide(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    judged: &Judged,
    decision: &str,
    comment: Option<&str>,
    override_reason: Option<&str>,
) -> Result<()> {
    let head = head_of(judged)?;
    let environment_id = target_environment_id(requests, judged).await?;
    // What the decider saw the request against: an approval covers what
    // its head adds to the target's head (see `coverage`).
    let base = match decision {
        "approved" | "override" => requests
            .git
            .heads(&judged.source_url)
            .await?
            .get(&judged.row.target_branch)
            .cloned(),
        _ => None,
    };
    // An override merges onto whatever the target carries: its audit
    // entry names the commits on the target no approval covered.
    let overrode = match (
        decision,
        &base,
        judged.target_entry().and_then(|e| e.approval.as_ref()),
    ) {
        ("override", Some(target), Some(policy)) => {
            let protected = crate::coverage::Protected {
                app_id: judged.row.app_id,
                source_url: &judged.source_url,
                branch: &judged.row.target_branch,
                environment_id: Some(environment_id),
                policy,
            };
            let uncovered =
                crate::coverage::uncovered(requests.db, requests.git, protected, target).await?;
            (!uncovered.is_empty()).then(|| {
                uncovered
                    .commits
                    .iter()
                    .map(|c| serde_json::json!({ "sha": c.sha, "summary": c.summary, "author": c.author }))
                    .collect::<Vec<_>>()
            })
        }
        _ => None,
    };
    let now = now_millis();
    let mut tx = requests.db.begin().await?;
    db::change_requests::record_decision(
        &mut *tx,
        &NewDecision {
            environment_id,
            run_id: None,
            change_request_id: Some(judged.row.id),
            user_id: caller.user_id,
            decision,
            comment,
            commit_sha: Some(&head),
            auth_time: caller.me.auth_time,
            override_reason,
            base_sha: base.as_deref(),
        },
        now,
    )
    .await?;
    let action = match decision {
        "approved" => "change_request.approve",
        "rejected" => "change_request.reject",
        "feedback" => "change_request.feedback",
        _ => "change_request.override",
    };
    let mut detail = serde_json::json!({
        "head": judged.row.head_sha,
        "auth_time": caller.me.auth_time,
    });
    if let Some(commits) = overrode {
        detail["uncovered_on_target"] = serde_json::Value::from(commits);
    }
    audit(
        &mut tx,
        caller,
        action,
        judged,
        override_reason.or(comment),
        &detail,
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    Ok(())
}

async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    caller: &Caller,
    action: &str,
    judged: &Judged,
    reason: Option<&str>,
    detail: &serde_json::Value,
    now: i64,
) -> Result<()> {
    db::audit::record(
        &mut **tx,
        &NewEntry {
            actor: &caller.me.name,
            action,
            target: &judged.label(),
            reason,
            source_ip: caller.source_ip.as_deref(),
            detail: &detail.to_string(),
        },
        now,
    )
    .await?;
    Ok(())
}

/// The environment the target branch deploys to (created on the first
/// decision if it never ran, so the approval has an environment to belong to).
async fn target_environment_id(requests: &ChangeRequests<'_>, judged: &Judged) -> Result<i64> {
    let pool = requests.db.pool();
    if let Some(env) =
        db::environments::find_for_branch(pool, judged.row.app_id, &judged.row.target_branch)
            .await?
    {
        return Ok(env.id);
    }
    let entry_env = judged
        .target_entry()
        .map(|e| e.env.clone())
        .unwrap_or_else(|| judged.row.target_branch.clone());
    if let Some(env) = db::environments::find_by_name(pool, judged.row.app_id, &entry_env).await? {
        return Ok(env.id);
    }
    let inserted = db::environments::insert(
        pool,
        &db::environments::NewEnvironment {
            app_id: judged.row.app_id,
            name: &entry_env,
            stack_entry: &entry_env,
            branch: Some(&judged.row.target_branch),
            url: None,
            namespace: None,
        },
        now_millis(),
    )
    .await;
    match inserted {
        Ok(id) => Ok(id),
        // Made meanwhile by the planner (or another replica): that one is it.
        Err(error) if error.is_conflict() => {
            db::environments::find_by_name(pool, judged.row.app_id, &entry_env)
                .await?
                .map(|env| env.id)
                .ok_or_else(|| {
                    ChangeRequestError::Conflict(format!(
                        "environment {entry_env} vanished; try again"
                    ))
                })
        }
        Err(error) => Err(error.into()),
    }
}

async fn reload(requests: &ChangeRequests<'_>, id: i64) -> Result<CrRow> {
    db::change_requests::get(requests.db.pool(), id)
        .await?
        .ok_or(ChangeRequestError::NotFound(id))
}

/// Merges the request if its policy is met and no freeze is in force;
/// otherwise records why not. `by` is who triggered it (for the audit log).
/// Records a merge (state and audit entry together) and lets the watcher
/// see the target branch move at once.
#[allow(clippy::too_many_arguments)]
async fn record_merge(
    requests: &ChangeRequests<'_>,
    judged: &Judged,
    id: i64,
    sha: Option<&str>,
    by: &str,
    detail: &str,
    audit: &serde_json::Value,
    now: i64,
) -> Result<()> {
    let mut tx = requests.db.begin().await?;
    db::change_requests::mark_merged(
        &mut *tx,
        id,
        sha,
        db::change_requests::MergedVia::Gantry,
        by,
        detail,
        now,
    )
    .await?;
    db::audit::record(
        &mut *tx,
        &NewEntry {
            actor: by,
            action: "change_request.merge",
            target: &judged.label(),
            reason: None,
            source_ip: None,
            detail: &audit.to_string(),
        },
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    tracing::info!(
        change_request = id,
        sha = sha.unwrap_or("unknown"),
        "change request merged"
    );
    requests.flow.scan_wake.notify_one();
    Ok(())
}

/// Why the forge did not merge an approved request: kept on the request,
/// which stays approved (Gantry retries).
#[derive(Debug, thiserror::Error)]
enum ForgeMergeError {
    #[error("app.yaml has no `forge` settings for {0}; merge it on {0}")]
    NotConfigured(String),
    #[error("the {0} request number is unknown")]
    NoNumber(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Call(#[from] crate::outbound::CallError),
}

/// Merges an approved forge request through the forge's API; a refusal
/// (not mergeable, head moved) leaves it approved with the forge's reason.
async fn merge_on_forge(
    requests: &ChangeRequests<'_>,
    judged: &Judged,
    id: i64,
    head: &str,
    by: &str,
    target_coverage: Option<crate::git::Coverage>,
) -> Result<CrRow> {
    let pool = requests.db.pool();
    let origin = judged.row.origin.clone();
    let target = judged.row.target_branch.clone();
    let now = now_millis();
    // The forge merges onto the target's head: not onto commits no
    // approval covers (checked here; the forge's merge commit covers only
    // what it adds to its first parent, so a target that moves meanwhile
    // gains nothing unchecked).
    let mut target_before = None;
    if let Some(coverage) = target_coverage {
        let heads = requests.git.fetch(&judged.source_url).await?;
        if let Some(target_sha) = heads.get(&target) {
            target_before = Some(target_sha.clone());
            let uncovered = requests
                .git
                .uncovered_any(&judged.source_url, &[target_sha, head], coverage)
                .await?;
            if !uncovered.is_empty() {
                let detail = uncovered_detail(&target, target_sha, &uncovered);
                approved_for_now(pool, id, &detail, now).await?;
                return reload(requests, id).await;
            }
        }
    }
    let outcome: std::result::Result<Option<String>, ForgeMergeError> = async {
        let forge = judged
            .config
            .forge
            .as_ref()
            .filter(|forge| forge.kind == origin)
            .ok_or_else(|| ForgeMergeError::NotConfigured(origin.clone()))?;
        let (number, _) = db::change_requests::forge_comment(pool, id)
            .await?
            .unwrap_or((None, None));
        let number = number.ok_or_else(|| ForgeMergeError::NoNumber(origin.clone()))?;
        let token = requests
            .secrets()
            .resolve(judged.row.app_id, std::slice::from_ref(&forge.token_secret))
            .await?
            .pop()
            .map(|(_, token)| token)
            .unwrap_or_default();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let answer = crate::forge::api::send(
            &client,
            &crate::forge::api::merge(forge, &token, number, head),
        )
        .await?;
        // GitHub says `sha`, GitLab `merge_commit_sha`; Gitea says nothing.
        Ok(answer["sha"]
            .as_str()
            .or_else(|| answer["merge_commit_sha"].as_str())
            .map(str::to_string))
    }
    .await;
    match outcome {
        Ok(sha) => {
            let sha = match sha {
                Some(sha) => Some(sha),
                None => forge_merge_commit(requests, judged, head, target_before.as_deref()).await,
            };
            let detail = match &sha {
                Some(sha) => format!("merged on {origin} as {}", short(sha)),
                None => format!("merged on {origin}"),
            };
            let audit = serde_json::json!({ "merge_sha": sha, "forge": origin, "head": head });
            if let Some(sha) = &sha {
                // A fast-forward's commit is the request's own, parents and
                // all: only it is granted; a merge (or squash) commit the
                // forge made grants what it adds to the target.
                let kind = if sha == head {
                    "forge_ff"
                } else {
                    "forge_merge"
                };
                db::coverage::grant(
                    pool,
                    &db::coverage::NewGrant {
                        app_id: judged.row.app_id,
                        branch: &target,
                        kind,
                        tip_sha: sha,
                        base_sha: None,
                        change_request_id: Some(id),
                        user_id: None,
                    },
                    now,
                )
                .await?;
            }
            record_merge(
                requests,
                judged,
                id,
                sha.as_deref(),
                by,
                &detail,
                &audit,
                now,
            )
            .await?;
        }
        Err(error) => {
            let detail =
                format!("approved, but {origin} did not merge it: {error}; Gantry retries");
            approved_for_now(pool, id, &detail, now).await?;
            tracing::warn!(change_request = id, %error, "forge merge failed");
        }
    }
    reload(requests, id).await
}

/// Leaves an active request approved and unmerged, saying why (the retry
/// loop takes it up again). False when it was rejected, closed or merged
/// meanwhile: then it stays so.
async fn approved_for_now(
    pool: &sqlx::AnyPool,
    id: i64,
    detail: &str,
    now: i64,
) -> std::result::Result<bool, crate::db::QueryError> {
    db::change_requests::set_state_if_active(
        pool,
        id,
        ChangeRequestState::Approved,
        Some(detail),
        now,
    )
    .await
}

/// The forge's merge commit of `head`, when its answer did not say
/// (Gitea): the target's new head, if it is `head` (a fast-forward) or a
/// merge of `head` onto the target Gantry checked (`before`) — anything
/// else (a commit pushed meanwhile) is no merge of Gantry's.
async fn forge_merge_commit(
    requests: &ChangeRequests<'_>,
    judged: &Judged,
    head: &str,
    before: Option<&str>,
) -> Option<String> {
    let heads = requests.git.fetch(&judged.source_url).await.ok()?;
    let target = heads.get(&judged.row.target_branch)?.clone();
    if target == head {
        return Some(target);
    }
    let parents = requests
        .git
        .parents(&judged.source_url, &target)
        .await
        .ok()?;
    let merges_head = before.is_some_and(|before| parents == [before, head]);
    merges_head.then_some(target)
}

/// Whether an active request may be merged now.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    /// Not enough approvals of its current head.
    NeedsApprovals {
        approvals: i64,
        required: i64,
    },
    /// Approved, but its target is frozen (the text says how).
    Frozen(String),
    Ready,
}

/// An admin's override lets a request through whatever its approvals and
/// any freeze; otherwise approvals come first, then the freeze.
fn gate(approvals: i64, required: i64, overridden: bool, freeze: Option<String>) -> Gate {
    if overridden {
        return Gate::Ready;
    }
    if approvals < required {
        return Gate::NeedsApprovals {
            approvals,
            required,
        };
    }
    match freeze {
        Some(freeze) => Gate::Frozen(freeze),
        None => Gate::Ready,
    }
}

/// What a merge attempt makes of the request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Merged {
        sha: String,
        detail: String,
    },
    AlreadyMerged {
        detail: String,
    },
    /// Not merged: the request's new state and what to do about it.
    Stays {
        state: ChangeRequestState,
        detail: String,
    },
}

/// Why an approved request waits: merging it would take commits live that
/// no approval covers (on its target, or under its head). It merges once
/// they are covered (Gantry retries), or an admin overrides.
fn uncovered_detail(target: &str, target_sha: &str, uncovered: &crate::git::Uncovered) -> String {
    let count = if uncovered.more {
        format!("at least {}", uncovered.total)
    } else {
        uncovered.total.to_string()
    };
    let noun = if uncovered.total == 1 {
        "commit"
    } else {
        "commits"
    };
    format!(
        "approved, but not merged: merging into {target} (at {}) would take {count} {noun} live that no approval covers: {}. Approve {target}'s held run (or revert them); Gantry merges once they are covered, or an admin overrides with a reason",
        short(target_sha),
        uncovered.describe(5)
    )
}

fn after_merge(outcome: &MergeOutcome, source: &str, target: &str) -> Next {
    match outcome {
        MergeOutcome::Merged { sha, fast_forward } => {
            let how = if *fast_forward {
                "fast-forwarded"
            } else {
                "merged"
            };
            Next::Merged {
                detail: format!("{how} into {target} as {}", short(sha)),
                sha: sha.clone(),
            }
        }
        MergeOutcome::Landed { sha } => Next::Merged {
            detail: format!(
                "merged into {target} as {}: the merge reached {target} before the replica merging it stopped, and was recorded on retry",
                short(sha)
            ),
            sha: sha.clone(),
        },
        MergeOutcome::AlreadyMerged { target_sha } => Next::AlreadyMerged {
            detail: format!(
                "{target} already contained {source} (at {}); nothing was merged",
                short(target_sha)
            ),
        },
        MergeOutcome::Uncovered {
            target_sha,
            uncovered,
        } => Next::Stays {
            state: ChangeRequestState::Approved,
            detail: uncovered_detail(target, target_sha, uncovered),
        },
        MergeOutcome::Conflict { files } => Next::Stays {
            state: ChangeRequestState::Conflict,
            detail: format!(
                "cannot merge: {source} and {target} both changed {}. Merge {target} into {source} (or rebase), resolve, and push; the request is reviewed again",
                files.join(", ")
            ),
        },
        MergeOutcome::NotFastForward => Next::Stays {
            state: ChangeRequestState::Conflict,
            detail: format!(
                "cannot fast-forward: {target} has commits {source} lacks. Rebase {source} onto {target} and push (this app merges by fast-forward only)"
            ),
        },
        // New commits need their own approval: the request is open again.
        MergeOutcome::SourceMoved { now: moved } => Next::Stays {
            state: ChangeRequestState::Open,
            detail: match moved {
                Some(sha) => format!(
                    "{source} moved to {} after approval; the new commits need approval",
                    short(sha)
                ),
                None => format!("{source} was deleted"),
            },
        },
    }
}

pub async fn try_merge(requests: &ChangeRequests<'_>, id: i64, by: &str) -> Result<CrRow> {
    let _one_at_a_time = MERGES.lock().await;
    let lease = merge_lease_name(id);
    // Another replica merging it finishes within a lease (or died, and its
    // lease expires): wait, then judge the request afresh — an approval
    // that arrived meanwhile counts.
    let deadline = tokio::time::Instant::now() + requests.merge_lease;
    while !hold_merge_lease(requests, &lease).await? {
        if tokio::time::Instant::now() >= deadline {
            return reload(requests, id).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let renewing = async {
        let mut renew = tokio::time::interval(requests.merge_lease / 3);
        renew.tick().await;
        loop {
            renew.tick().await;
            match hold_merge_lease(requests, &lease).await {
                Ok(true) => {}
                // Lost: the push is refused at its last check (the lease
                // is checked when the merge commit is recorded).
                Ok(false) => tracing::warn!(change_request = id, "the merge lease was lost"),
                Err(error) => {
                    tracing::warn!(change_request = id, %error, "renewing the merge lease failed");
                }
            }
        }
    };
    let merged = tokio::select! {
        merged = merge_if_ready(requests, id, by) => merged,
        never = renewing => never,
    };
    if let Err(error) = db::singletons::release(requests.db, &lease, requests.replica).await {
        tracing::warn!(change_request = id, %error, "releasing the merge lease failed; it expires");
    }
    merged
}

fn merge_lease_name(id: i64) -> String {
    format!("merge:{id}")
}

async fn hold_merge_lease(requests: &ChangeRequests<'_>, lease: &str) -> Result<bool> {
    let ms = i64::try_from(requests.merge_lease.as_millis()).unwrap_or(i64::MAX);
    Ok(db::singletons::hold(requests.db, lease, requests.replica, ms).await?)
}

/// `try_merge` under the request's lease.
async fn merge_if_ready(requests: &ChangeRequests<'_>, id: i64, by: &str) -> Result<CrRow> {
    let judged = load(requests, id).await?;
    if !judged.row.is_active() {
        return Ok(judged.row);
    }
    let pool = requests.db.pool();
    let head = head_of(&judged)?;
    let policy = judged.policy();
    let environment = target_environment_id(requests, &judged).await?;
    let overridden = db::change_requests::overridden(pool, id, &head, environment).await?;
    let approvals = db::change_requests::approvals_of(pool, id, &head, environment).await?;
    let freeze = policy::freeze_now(judged.target_entry(), requests.clock.now_millis())
        .map(|freeze| freeze.describe());
    let hold = match gate(approvals, i64::from(policy.required), overridden, freeze) {
        Gate::Ready => None,
        Gate::NeedsApprovals {
            approvals,
            required,
        } => Some((
            ChangeRequestState::Open,
            format!("{approvals} of {required} approvals"),
        )),
        Gate::Frozen(freeze) => Some((
            ChangeRequestState::Approved,
            format!(
                "approved; {} is {freeze}. It merges when the freeze ends, or an admin overrides with a reason",
                judged.row.target_branch
            ),
        )),
    };
    if let Some((state, detail)) = hold {
        db::change_requests::set_state_if_active(pool, id, state, Some(&detail), now_millis())
            .await?;
        return reload(requests, id).await;
    }
    // Approved before merging: a replica that dies mid-merge leaves the
    // request where the expiry loop retries it. A request rejected, closed
    // or merged since it was read is left so.
    let merging = format!("approved; merging into {}", judged.row.target_branch);
    if !approved_for_now(pool, id, &merging, now_millis()).await? {
        return reload(requests, id).await;
    }
    // Into a protected environment's branch, Gantry merges only what
    // approvals cover — on the target's head and under the request's: a
    // merge would otherwise take an unapproved commit live under this
    // request's approval. An admin's override covers what it was given:
    // the target as it was then (its audit entry lists what was uncovered
    // on it) and the request's head; commits pushed since are not.
    let target_coverage = match judged.target_entry().and_then(|e| e.approval.clone()) {
        Some(protected) => {
            let mut coverage = crate::coverage::of(
                requests.db,
                crate::coverage::Protected {
                    app_id: judged.row.app_id,
                    source_url: &judged.source_url,
                    branch: &judged.row.target_branch,
                    environment_id: Some(environment),
                    policy: &protected,
                },
            )
            .await?;
            if overridden {
                coverage.full.extend(
                    db::change_requests::override_bases(pool, id, &head, environment).await?,
                );
                coverage.full.push(head.clone());
            }
            Some(coverage)
        }
        None => None,
    };
    // A forge's request is merged by the forge, so it closes there too.
    if judged.row.origin != "native" {
        return merge_on_forge(requests, &judged, id, &head, by, target_coverage).await;
    }
    let message = format!(
        "Merge branch '{}' into {}\n\n{} (change request {id})\n\nApproved-by: {}\n",
        judged.row.source_branch,
        judged.row.target_branch,
        judged.row.title,
        approvers(requests, id, &head).await?.join(", ")
    );
    let request = MergeRequest {
        source_branch: judged.row.source_branch.clone(),
        source_sha: head.clone(),
        target_branch: judged.row.target_branch.clone(),
        strategy: judged.config.merge,
        message,
        interrupted: judged.row.merge_sha.clone(),
        target_coverage,
    };
    let (record_db, replica) = (requests.db.clone(), requests.replica.to_string());
    let (app_id, target) = (judged.row.app_id, judged.row.target_branch.clone());
    let runtime = tokio::runtime::Handle::current();
    let outcome = requests
        .git
        .merge_and_push(&judged.source_url, request, move |sha| {
            let lease = merge_lease_name(id);
            let grant = db::coverage::NewGrant {
                app_id,
                branch: &target,
                kind: "merge",
                tip_sha: sha,
                base_sha: None,
                change_request_id: Some(id),
                user_id: None,
            };
            let recorded = runtime.block_on(db::change_requests::record_merge_sha_under_lease(
                &record_db,
                id,
                sha,
                (&lease, &replica),
                &grant,
            ));
            match recorded {
                Ok(true) => Ok(()),
                Ok(false) => Err(GitError::Refused(format!(
                    "this replica no longer holds the merge lease of change request {id}; it was not pushed"
                ))),
                Err(e) => Err(GitError::Refused(format!("cannot record the merge: {e}"))),
            }
        })
        .await;
    let now = now_millis();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            // The recorded merge commit stays: if the push reached the
            // target after all, the retry finds it there (`Landed`).
            let detail = format!("approved, but the merge failed: {error}; Gantry retries");
            approved_for_now(pool, id, &detail, now).await?;
            tracing::warn!(change_request = id, %error, "merge failed");
            return reload(requests, id).await;
        }
    };
    let (source, target) = (&judged.row.source_branch, &judged.row.target_branch);
    match after_merge(&outcome, source, target) {
        Next::Merged { sha, detail } => {
            let fast_forward = matches!(
                outcome,
                MergeOutcome::Merged {
                    fast_forward: true,
                    ..
                }
            );
            let landed = matches!(outcome, MergeOutcome::Landed { .. });
            let audit = serde_json::json!({
                "merge_sha": sha,
                "fast_forward": fast_forward,
                "head": head,
                "interrupted": landed,
            });
            record_merge(requests, &judged, id, Some(&sha), by, &detail, &audit, now).await?;
        }
        Next::AlreadyMerged { detail } => {
            // No commit of the target's is this request's merge: the
            // target's head is judged by what approvals cover, like any.
            db::change_requests::mark_merged(
                pool,
                id,
                None,
                db::change_requests::MergedVia::Contained,
                by,
                &detail,
                now,
            )
            .await?;
        }
        Next::Stays { state, detail } => {
            db::change_requests::set_state_if_active(pool, id, state, Some(&detail), now).await?;
            if matches!(outcome, MergeOutcome::SourceMoved { .. }) {
                // The new head is planned (and reviewed) at once.
                requests.flow.scan_wake.notify_one();
            }
        }
    }
    reload(requests, id).await
}

async fn approvers(requests: &ChangeRequests<'_>, id: i64, head: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = db::change_requests::decisions(requests.db.pool(), Some(id), None)
        .await?
        .into_iter()
        .filter(|d| {
            d.commit_sha.as_deref() == Some(head)
                && matches!(d.decision.as_str(), "approved" | "override")
        })
        .map(|d| d.who)
        .collect();
    names.dedup();
    Ok(names)
}

/// Merges approved requests that are not merged yet: a freeze held them
/// back and is over, the merge failed, or the replica merging one died.
/// Periodic (the expiry loop, on one replica).
pub async fn merge_thawed(requests: &ChangeRequests<'_>) -> Result<()> {
    for cr in db::change_requests::approved(requests.db.pool()).await? {
        if let Err(error) = try_merge(requests, cr.id, "gantry").await {
            tracing::warn!(change_request = cr.id, %error, "retrying the merge failed");
        }
    }
    Ok(())
}

/// The change request page: the request, its preview, tests and decisions.
pub async fn detail(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
) -> Result<ChangeRequestDetail> {
    let judged = load(requests, id).await?;
    forbidden(caller, Role::Viewer, &judged.row.app)?;
    let pool = requests.db.pool();
    let policy = judged.policy();
    let head = judged.row.head_sha.clone().unwrap_or_default();
    let environment =
        db::environments::find_for_branch(pool, judged.row.app_id, &judged.row.target_branch)
            .await?
            .map(|env| env.id);
    let (commits, uncovered_on_target) = if judged.row.is_active() {
        review_commits(requests, &judged, &head, environment).await
    } else {
        (Vec::new(), None)
    };

    let app_ids = [judged.row.app_id];
    let preview =
        db::environments::list_active_of(requests.db, db::environments::Which::Apps(&app_ids))
            .await?
            .into_iter()
            .find(|e| {
                e.app == judged.row.app
                    && e.branch.as_deref() == Some(judged.row.source_branch.as_str())
            })
            .map(|e| crate::lanes::redact(caller, e));
    let run = db::runs::latest_of_commit(pool, judged.row.app_id, &judged.row.source_branch, &head)
        .await?;
    let (run, reports) = match run {
        Some(run) => {
            let tester = caller.me.can(Role::Tester, Some(&judged.row.app));
            let summary = db::runs::detail(pool, run.id)
                .await?
                .map(|(summary, _)| RunSummary {
                    // Why a run failed is for testers and up, as on its page.
                    reason: summary.reason.filter(|_| tester),
                    ..summary
                });
            let reports = db::steps::reports_for_run(pool, run.id).await?;
            (summary, reports)
        }
        None => (None, Vec::new()),
    };
    Ok(ChangeRequestDetail {
        summary: judged.row.summary()?,
        description: judged.row.description.clone(),
        origin: judged.row.origin.clone(),
        target_environment: judged.target_entry().map(|e| e.env.clone()),
        preview,
        run,
        reports,
        required_approvals: i64::from(policy.required),
        approver_roles: policy.roles.clone(),
        approvals_of_head: match environment {
            Some(environment) => {
                db::change_requests::approvals_of(pool, id, &head, environment).await?
            }
            None => 0,
        },
        decisions: db::change_requests::decisions(pool, Some(id), None).await?,
        freeze: policy::freeze_now(judged.target_entry(), requests.clock.now_millis())
            .map(|f| f.describe()),
        merge_sha: judged.row.merge_sha.clone(),
        merged_by: judged.row.merged_by.clone(),
        feedback: db::sharing::feedback_of(pool, id)
            .await?
            .into_iter()
            .map(crate::sharing::feedback_view)
            .collect(),
        fork_of: judged.row.fork_of.clone(),
        commits,
        uncovered_on_target,
        share_links: Vec::new(),
    })
}

/// What an open request changes, file by file, as of the mirror's last
/// fetch (nothing when the request is closed; `unavailable` when the
/// mirror cannot say). The lines are for developers and up — source is
/// theirs to read; a viewer or tester sees the names, and no file is read
/// for them.
pub async fn files(
    requests: &ChangeRequests<'_>,
    caller: &Caller,
    id: i64,
) -> Result<app::dto::ChangeRequestFiles> {
    let judged = load(requests, id).await?;
    forbidden(caller, Role::Viewer, &judged.row.app)?;
    let lines = caller.me.can(Role::Developer, Some(&judged.row.app));
    let head = judged.row.head_sha.clone().unwrap_or_default();
    if !judged.row.is_active() {
        return Ok(app::dto::ChangeRequestFiles::default());
    }
    let shown = async {
        let Some(target) = target_head(requests, &judged, &head).await? else {
            return Ok(crate::git::Patches::default());
        };
        requests
            .git
            .patches(
                &judged.source_url,
                &target,
                &head,
                crate::git::PatchLimits::default(),
                lines,
            )
            .await
    }
    .await;
    let (patches, unavailable) = match shown {
        Ok(patches) => (patches, false),
        Err(error) => {
            tracing::info!(change_request = judged.row.id, %error, "the request's files cannot be shown");
            (crate::git::Patches::default(), true)
        }
    };
    Ok(app::dto::ChangeRequestFiles {
        files: patches
            .files
            .into_iter()
            .map(|file| app::dto::FileDiff {
                path: file.path,
                status: file.status,
                additions: file.additions.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                deletions: file.deletions.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                binary: file.binary,
                lines: file.lines,
                truncated: file.truncated,
            })
            .collect(),
        more_files: patches.more_files,
        lines_withheld: !lines,
        unavailable,
    })
}

/// The target branch's head in the mirror, when the request has a `head`
/// to compare with it.
async fn target_head(
    requests: &ChangeRequests<'_>,
    judged: &Judged,
    head: &str,
) -> std::result::Result<Option<String>, GitError> {
    if head.is_empty() {
        return Ok(None);
    }
    Ok(requests
        .git
        .heads(&judged.source_url)
        .await?
        .remove(&judged.row.target_branch))
}

/// What a reviewer decides on: the request's own commits (what its head
/// adds to the target's head — what an approval covers) and, apart, the
/// commits on a protected target that no approval covers (the request
/// does not merge onto them). As of the mirror's last fetch; a mirror that
/// lacks them shows none (the merge itself checks, whatever the page said).
async fn review_commits(
    requests: &ChangeRequests<'_>,
    judged: &Judged,
    head: &str,
    environment: Option<i64>,
) -> (
    Vec<app::dto::ChangelogCommit>,
    Option<app::dto::UncoveredCommits>,
) {
    let shown = async {
        let Some(target) = target_head(requests, judged, head).await? else {
            return Ok((Vec::new(), None));
        };
        let own = requests
            .git
            .log_range(&judged.source_url, Some(&target), head, 100)
            .await?;
        let own = crate::coverage::view(&crate::git::Uncovered {
            total: own.len(),
            commits: own,
            more: false,
        })
        .commits;
        let uncovered = match judged.target_entry().and_then(|e| e.approval.as_ref()) {
            Some(policy) => {
                let protected = crate::coverage::Protected {
                    app_id: judged.row.app_id,
                    source_url: &judged.source_url,
                    branch: &judged.row.target_branch,
                    environment_id: environment,
                    policy,
                };
                let uncovered =
                    crate::coverage::uncovered(requests.db, requests.git, protected, &target)
                        .await?;
                Some(crate::coverage::view(&uncovered))
            }
            None => None,
        };
        Ok::<_, ChangeRequestError>((own, uncovered))
    }
    .await;
    shown.unwrap_or_else(|error| {
        tracing::info!(change_request = judged.row.id, %error, "the request's commits cannot be shown");
        (Vec::new(), None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_come_first_then_the_freeze() {
        assert_eq!(
            gate(0, 1, false, None),
            Gate::NeedsApprovals {
                approvals: 0,
                required: 1
            }
        );
        // Still short of approvals while frozen: it asks for approvals.
        assert_eq!(
            gate(1, 2, false, Some("frozen".into())),
            Gate::NeedsApprovals {
                approvals: 1,
                required: 2
            }
        );
        assert_eq!(
            gate(2, 2, false, Some("frozen until Monday".into())),
            Gate::Frozen("frozen until Monday".into())
        );
        assert_eq!(gate(3, 2, false, None), Gate::Ready);
    }

    #[test]
    fn an_override_passes_approvals_and_freezes() {
        assert_eq!(gate(0, 2, true, Some("frozen".into())), Gate::Ready);
    }

    #[test]
    fn every_merge_outcome_has_its_next_state() {
        let merged = after_merge(
            &MergeOutcome::Merged {
                sha: "0123456789abcdef".into(),
                fast_forward: true,
            },
            "feature",
            "master",
        );
        assert_eq!(
            merged,
            Next::Merged {
                sha: "0123456789abcdef".into(),
                detail: "fast-forwarded into master as 0123456789ab".into()
            }
        );
        assert!(matches!(
            after_merge(
                &MergeOutcome::AlreadyMerged {
                    target_sha: "abc".into()
                },
                "feature",
                "master"
            ),
            Next::AlreadyMerged { detail } if detail.contains("nothing was merged")
        ));
        let conflict = after_merge(
            &MergeOutcome::Conflict {
                files: vec!["a.txt".into(), "b.txt".into()],
            },
            "feature",
            "master",
        );
        assert!(
            matches!(&conflict, Next::Stays { state: ChangeRequestState::Conflict, detail } if detail.contains("both changed a.txt, b.txt")),
            "{conflict:?}"
        );
        assert!(matches!(
            after_merge(&MergeOutcome::NotFastForward, "feature", "master"),
            Next::Stays {
                state: ChangeRequestState::Conflict,
                ..
            }
        ));
        let moved = after_merge(
            &MergeOutcome::SourceMoved {
                now: Some("fedcba9876543210".into()),
            },
            "feature",
            "master",
        );
        assert_eq!(
            moved,
            Next::Stays {
                state: ChangeRequestState::Open,
                detail:
                    "feature moved to fedcba987654 after approval; the new commits need approval"
                        .into()
            }
        );
        assert!(matches!(
            after_merge(&MergeOutcome::SourceMoved { now: None }, "feature", "master"),
            Next::Stays { state: ChangeRequestState::Open, detail } if detail == "feature was deleted"
        ));
    }
}
