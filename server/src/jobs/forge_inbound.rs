//! Acting on one stored forge delivery, for the planner: a push or branch
//! deletion fetches the app's repo and scans it; a merge/pull request
//! opens, updates or ends a Gantry change request and its preview. A job
//! of the flow (it scans and tears previews down), so it sits with the
//! application, not with the forge's domain code.

use app::dto::ChangeRequestState;
use serde_json::Value;

use crate::db::{self, apps::AppRow, change_requests::NewRow, now_millis};
use crate::forge::events::{ForgeEvent, RequestAction, normalize, same_repo};
use crate::forge::{Forge, KIND_PREFIX, feedback, fork_branch};
use crate::state::App;

/// What can stop acting on one forge delivery.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("unknown forge {0:?} in the inbox")]
    UnknownForge(String),
    /// A delivery or record that does not parse.
    #[error("a stored record: {0}")]
    Stored(#[from] serde_json::Error),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The flow's work the delivery started (a scan, a preview's end).
    #[error(transparent)]
    Flow(Box<crate::jobs::FlowError>),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl From<crate::jobs::FlowError> for ForgeError {
    fn from(error: crate::jobs::FlowError) -> Self {
        ForgeError::Flow(Box::new(error))
    }
}

impl crate::error::Classified for ForgeError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ForgeError::Db(error) => error.kind(),
            ForgeError::UnknownForge(_) | ForgeError::Stored(_) => Kind::Internal,
            ForgeError::Git(_) => Kind::Unavailable,
            ForgeError::Flow(error) => error.kind(),
        }
    }
}

/// Acts on one stored delivery (called by the planner).
pub async fn process(app: &App, source: &str, kind: &str, payload: &str) -> Result<(), ForgeError> {
    let forge = Forge::parse(source).ok_or_else(|| ForgeError::UnknownForge(source.to_string()))?;
    let event = kind.strip_prefix(KIND_PREFIX).unwrap_or(kind);
    let payload: Value = serde_json::from_str(payload)?;
    match normalize(forge, event, &payload) {
        ForgeEvent::Ignored(why) => {
            tracing::debug!(forge = forge.as_str(), %why, "forge delivery ignored");
            Ok(())
        }
        ForgeEvent::Branch {
            repos,
            branch,
            push,
            ..
        } => {
            for app_row in apps_of(app, &repos).await? {
                // Who pushed, before the scan plans the push's run: its
                // author for no-self-approval, and where the policy counts
                // pushes, an approval (see `jobs::plan`).
                if let Some(push) = &push {
                    db::coverage::record_push(
                        app.db.pool(),
                        app_row.id,
                        &branch,
                        &push.after,
                        push.before.as_deref(),
                        forge.as_str(),
                        &push.pusher,
                        now_millis(),
                    )
                    .await?;
                }
                crate::jobs::scan::scan_app(app, &app_row, "webhook").await?;
                tracing::info!(app = %app_row.name, %branch, forge = forge.as_str(), "webhook: fetched");
            }
            Ok(())
        }
        ForgeEvent::Request {
            repos,
            number,
            action,
            source_branch,
            target_branch,
            head_sha,
            title,
            description,
            author,
            fork,
            merged,
        } => {
            // A fork's branch name is its author's choice: never ours.
            let source_branch = match &fork {
                Some(_) => fork_branch(number),
                None => source_branch,
            };
            for app_row in apps_of(app, &repos).await? {
                let mut head_sha = head_sha.clone();
                if fork.is_some() {
                    head_sha =
                        follow_fork_head(app, &app_row, forge, number, action, &source_branch)
                            .await?
                            .or(head_sha);
                }
                let request = ForgeRequest {
                    forge,
                    number,
                    source_branch: &source_branch,
                    target_branch: &target_branch,
                    head_sha: head_sha.as_deref(),
                    title: &title,
                    description: &description,
                    author: &author,
                    fork: fork.as_deref(),
                    merged: merged.as_ref(),
                };
                on_request(app, &app_row, action, &request).await?;
            }
            Ok(())
        }
    }
}

/// The apps whose source is one of `repos`.
async fn apps_of(app: &App, repos: &[String]) -> Result<Vec<AppRow>, ForgeError> {
    let apps: Vec<AppRow> = db::apps::list_active(app.db.pool())
        .await?
        .into_iter()
        .filter(|row| repos.iter().any(|url| same_repo(url, &row.source_url)))
        .collect();
    if apps.is_empty() {
        // Worth a line: a repository whose app.yaml names another URL form,
        // or a hook set up before the pipeline repo lists the app.
        tracing::info!(
            ?repos,
            "forge delivery for a repository no app watches; ignored"
        );
    }
    Ok(apps)
}

/// Where the forge keeps a request's head in the base repository.
fn request_ref(forge: Forge, number: i64) -> String {
    match forge {
        Forge::GitHub | Forge::Gitea => format!("refs/pull/{number}/head"),
        Forge::GitLab => format!("refs/merge-requests/{number}/head"),
    }
}

/// Keeps the mirror's copy of a fork's request head current (or drops it
/// when the request ended, which ends its preview at the next scan).
async fn follow_fork_head(
    app: &App,
    app_row: &AppRow,
    forge: Forge,
    number: i64,
    action: RequestAction,
    name: &str,
) -> Result<Option<String>, ForgeError> {
    match action {
        RequestAction::Opened | RequestAction::Updated => Ok(Some(
            app.git
                .fetch_fork_head(&app_row.source_url, &request_ref(forge, number), name)
                .await?,
        )),
        RequestAction::Merged | RequestAction::Closed => {
            app.git.forget_fork_head(&app_row.source_url, name).await?;
            Ok(None)
        }
    }
}

struct ForgeRequest<'a> {
    forge: Forge,
    number: i64,
    source_branch: &'a str,
    target_branch: &'a str,
    head_sha: Option<&'a str>,
    title: &'a str,
    description: &'a str,
    author: &'a str,
    fork: Option<&'a str>,
    merged: Option<&'a crate::forge::events::ForgeMerge>,
}

async fn on_request(
    app: &App,
    app_row: &AppRow,
    action: RequestAction,
    request: &ForgeRequest<'_>,
) -> Result<(), ForgeError> {
    let pool = app.db.pool();
    let origin = request.forge.as_str();
    let now = now_millis();
    let existing =
        db::change_requests::find_forge(pool, app_row.id, origin, request.number).await?;
    match (action, existing) {
        (RequestAction::Opened | RequestAction::Updated, None) => {
            // The author as a Gantry identity (for no-self-approval): the
            // forge account mapped to a user, never a commit's author line.
            let author = crate::auth::forge_identity(&app.db, request.author).await?;
            let id = db::change_requests::insert(
                pool,
                &NewRow {
                    app_id: app_row.id,
                    origin,
                    title: request.title,
                    description: request.description,
                    source_branch: request.source_branch,
                    target_branch: request.target_branch,
                    head_sha: request.head_sha.unwrap_or_default(),
                    author: request.author,
                    author_user_id: author.map(|who| who.user_id),
                },
                now,
            )
            .await?;
            db::change_requests::set_forge_number(pool, id, request.number).await?;
            if let Some(fork) = request.fork {
                db::change_requests::set_fork(pool, id, fork).await?;
            }
            tracing::info!(app = %app_row.name, change_request = id, forge = origin, number = request.number, fork = request.fork.unwrap_or(""), "forge request opened");
            // The push usually arrives before the request: its run, planned
            // already, belongs to the request and reports on it now.
            if let Some(sha) = request.head_sha
                && let Some(run) =
                    db::runs::latest_of_commit(pool, app_row.id, request.source_branch, sha).await?
            {
                db::runs::set_change_request(pool, run.id, id).await?;
                if let Err(error) =
                    feedback::update_comment(&app.delivery(), &app.replica.forge_comments, run.id)
                        .await
                {
                    tracing::warn!(run = run.id, %error, "change-request comment not updated");
                }
            }
            // The preview is the source branch's: fetch it now.
            crate::jobs::scan::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Opened | RequestAction::Updated, Some(cr)) => {
            // A delivery retried after a crash between the row and its
            // mark: the mark is never missing for long.
            if let (Some(fork), None) = (request.fork, &cr.fork_of) {
                db::change_requests::set_fork(pool, cr.id, fork).await?;
            }
            if !request.target_branch.is_empty()
                && request.target_branch != cr.target_branch
                && cr.is_active()
            {
                // Retargeted on the forge: Gantry judges it against its new
                // target (approvals start over), never the old one's.
                db::change_requests::retarget(pool, cr.id, request.target_branch, now).await?;
                tracing::info!(change_request = cr.id, from = %cr.target_branch, to = %request.target_branch, "forge request retargeted");
            } else if let Some(sha) = request.head_sha
                && cr.head_sha.as_deref() != Some(sha)
            {
                db::change_requests::set_head(pool, cr.id, sha, now).await?;
            } else if cr.state != ChangeRequestState::Open {
                db::change_requests::set_state(pool, cr.id, ChangeRequestState::Open, None, now)
                    .await?;
            }
            crate::jobs::scan::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Merged, Some(cr)) => {
            on_forge_merge(app, app_row, &cr, request).await?;
            // The target branch moved: its pipeline runs.
            crate::jobs::scan::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Closed, Some(cr)) => {
            db::change_requests::set_state(
                pool,
                cr.id,
                ChangeRequestState::Closed,
                Some(&format!("closed on {origin}")),
                now,
            )
            .await?;
            destroy_preview(app, app_row, request.source_branch, origin).await?;
            if request.fork.is_some() {
                crate::jobs::scan::scan_app(app, app_row, "webhook").await?;
            }
        }
        (RequestAction::Merged | RequestAction::Closed, None) => {
            tracing::debug!(number = request.number, "a request Gantry never saw ended");
        }
    }
    Ok(())
}

/// The forge says a request was merged. Gantry's own merge is already
/// recorded and stays so (this is its echo). Otherwise the merge counts as
/// an approval only as far as the policy says (see [`counted_merge`]);
/// either way the request is done, and what the merge brought to the
/// target is judged like any push, by what approvals cover.
async fn on_forge_merge(
    app: &App,
    app_row: &AppRow,
    cr: &db::change_requests::CrRow,
    request: &ForgeRequest<'_>,
) -> Result<(), ForgeError> {
    let pool = app.db.pool();
    let origin = request.forge.as_str();
    if cr.state == ChangeRequestState::Merged {
        tracing::debug!(
            change_request = cr.id,
            "the forge's echo of a recorded merge"
        );
        return Ok(());
    }
    let merger = request.merged.map(|m| m.by.as_str()).unwrap_or_default();
    let commit = request.merged.and_then(|m| m.commit.as_deref());
    let now = now_millis();
    match counted_merge(app, app_row, cr, request).await? {
        Ok(who) => {
            let commit = commit.unwrap_or_default();
            let mut tx = app.db.begin().await?;
            let marked = db::change_requests::mark_merged(
                &mut *tx,
                cr.id,
                Some(commit),
                db::change_requests::MergedVia::Forge,
                &who.name,
                &format!(
                    "merged on {origin} by {merger}: counted as {}'s approval",
                    who.name
                ),
                now,
            )
            .await?;
            if marked {
                // A fast-forward's commit is the author's, parents and all:
                // only it is covered. A merge (or squash) commit the forge
                // made covers what it adds to the target.
                let fast_forward = request.head_sha == Some(commit);
                db::coverage::grant(
                    &mut *tx,
                    &db::coverage::NewGrant {
                        app_id: app_row.id,
                        branch: &cr.target_branch,
                        kind: if fast_forward {
                            "forge_ff"
                        } else {
                            "forge_merge"
                        },
                        tip_sha: commit,
                        base_sha: None,
                        change_request_id: Some(cr.id),
                        user_id: Some(who.user_id),
                    },
                    now,
                )
                .await?;
                db::audit::record(
                    &mut *tx,
                    &db::audit::NewEntry {
                        actor: &who.name,
                        action: "change_request.forge_merge",
                        target: &format!(
                            "{} change request {} ({} → {})",
                            app_row.name, cr.id, cr.source_branch, cr.target_branch
                        ),
                        reason: None,
                        source_ip: None,
                        detail: &serde_json::json!({
                            "forge": origin,
                            "merged_by": merger,
                            "merge_sha": commit,
                            "head": request.head_sha,
                        })
                        .to_string(),
                    },
                    now,
                )
                .await?;
            }
            crate::db::commit(tx).await?;
            // The merge's run may be held already (the push arrived first).
            if let Err(error) = crate::approvals::release_covered(&app.approvals()).await {
                tracing::warn!(%error, "releasing runs the forge merge covers failed");
            }
        }
        Err(why) => {
            db::change_requests::mark_merged(
                pool,
                cr.id,
                None,
                db::change_requests::MergedVia::ForgeUncounted,
                merger,
                &format!("merged on {origin} by {merger}; not an approval: {why}. What it brought to {} waits for approval like any push", request.target_branch),
                now,
            )
            .await?;
            tracing::info!(change_request = cr.id, %why, "a forge merge that does not count as an approval");
        }
    }
    Ok(())
}

/// Whether a forge merge counts as an approval: the policy of the target's
/// environment says forge merges count (`approval.forge_merge`), the merge
/// was into that branch (the request's target as Gantry knows it, and the
/// event's), its merge commit is on the branch, and the forge account that
/// merged maps to a Gantry user the policy accepts — not the request's
/// author unless the policy allows self-approval — with the other approvals
/// the policy needs given in Gantry. Otherwise why not.
async fn counted_merge(
    app: &App,
    app_row: &AppRow,
    cr: &db::change_requests::CrRow,
    request: &ForgeRequest<'_>,
) -> Result<Result<crate::auth::ForgeIdentity, String>, ForgeError> {
    let config: crate::gitops::schema::AppConfig = crate::configs::stored(app_row)?;
    let target = request.target_branch;
    let Some(policy) = crate::gitops::stack::entry_for(&config, target)
        .filter(|entry| !entry.branches.is_preview())
        .and_then(|entry| entry.approval.as_ref())
    else {
        return Ok(Err(format!(
            "{target} is not a protected environment's branch"
        )));
    };
    if !policy.forge_merge {
        return Ok(Err(format!(
            "the policy of {target} does not count forge merges (approval.forge_merge)"
        )));
    }
    if cr.target_branch != target {
        return Ok(Err(format!(
            "Gantry knew the request as one into {}, not {target}",
            cr.target_branch
        )));
    }
    let Some(merged) = request.merged else {
        return Ok(Err("the event does not say who merged it".into()));
    };
    let Some(commit) = merged.commit.as_deref() else {
        return Ok(Err("the event does not name the merge commit".into()));
    };
    let Some(who) = crate::auth::forge_identity(&app.db, &merged.by).await? else {
        return Ok(Err(format!(
            "the {} account {:?} that merged it is no Gantry user (auth.forge_login_claim)",
            request.forge.as_str(),
            merged.by
        )));
    };
    let freshness = crate::approvals::policy::Freshness {
        max_age: app.config.reauth_max_age,
        now: app.clock.now_millis(),
    };
    let caller = who.caller();
    if let Some(why) = crate::approvals::policy::refusal(freshness, &caller, policy, &app_row.name)
    {
        return Ok(Err(why));
    }
    let author = crate::auth::author_of_request(&app.db, cr).await?;
    if let Some(why) =
        crate::approvals::policy::self_approval_refusal(&caller, policy, author.as_slice())
    {
        return Ok(Err(why));
    }
    // The merge commit must be on the branch: the forge may say "merged"
    // of a merge that is not there (a retargeted request merged elsewhere
    // and its event replayed).
    let heads = app.git.fetch(&app_row.source_url).await?;
    let on_branch = match heads.get(target) {
        Some(head) => app
            .git
            .is_ancestor(&app_row.source_url, commit, head)
            .await
            .unwrap_or(false),
        None => false,
    };
    if !on_branch {
        return Ok(Err(format!("its merge commit {commit} is not on {target}")));
    }
    // Approvals given in Gantry count with the merger's.
    if policy.required > 1 {
        let environment = db::environments::find_for_branch(app.db.pool(), app_row.id, target)
            .await?
            .map(|env| env.id);
        let head = request.head_sha.unwrap_or_default();
        let others = match environment {
            Some(env) => db::change_requests::approvers_of(app.db.pool(), cr.id, head, env).await?,
            None => Vec::new(),
        };
        let count = others.iter().filter(|id| **id != who.user_id).count() + 1;
        if count < policy.required as usize {
            return Ok(Err(format!(
                "{count} of {} approvals: the merger's and {} given in Gantry",
                policy.required,
                count - 1
            )));
        }
    }
    Ok(Ok(who))
}

/// A closed request's preview goes (unless another request still uses it).
async fn destroy_preview(
    app: &App,
    app_row: &AppRow,
    branch: &str,
    origin: &str,
) -> Result<(), ForgeError> {
    let pool = app.db.pool();
    if !db::change_requests::active_from(pool, app_row.id, branch)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let config: crate::gitops::schema::AppConfig = crate::configs::stored(app_row)?;
    if let Some(env) = db::environments::find_for_branch(pool, app_row.id, branch).await?
        && env.destroyed_at.is_none()
        && crate::gitops::stack::is_preview(&config, &env.stack_entry)
    {
        crate::jobs::lifecycle::destroy(
            app,
            &env,
            &app_row.name,
            &format!("its {origin} request was closed"),
        )
        .await?;
    }
    Ok(())
}
