//! The planner: turns inbox events into environments and runs. One new
//! branch head → one run for its environment; an older unfinished run of
//! that environment is superseded; protected environments hold the run for
//! approval.

use std::time::Duration;

use app::dto::RunState;

use super::lifecycle;
use crate::coverage;
use crate::db::inbox::BranchEvent;
use crate::db::{
    self, environments::EnvRow, environments::NewEnvironment, now_millis, runs::NewRun,
};
use crate::gitops::schema::{AppConfig, LOCAL_TARGET, StackEntry};
use crate::gitops::stack::{entry_for, preview_name, staging_branch};
use crate::gitops::template;
use crate::state::App;

/// An event that keeps failing is given up after this many attempts.
const MAX_ATTEMPTS: i64 = 5;

/// What a re-run's row says started it.
pub const RERUN_TRIGGER: &str = "rerun";

/// Acts on every pending inbox event, oldest first.
pub async fn plan_pending(app: &App) -> Result<usize, super::FlowError> {
    let pool = app.db.pool();
    let events = db::inbox::pending(pool, 100).await?;
    let count = events.len();
    for event in events {
        let outcome = match event.kind.as_str() {
            "push" => on_push(app, serde_json::from_str(&event.payload)?).await,
            "branch_deleted" => on_delete(app, serde_json::from_str(&event.payload)?).await,
            kind if kind.starts_with(crate::forge::KIND_PREFIX) => {
                crate::jobs::forge_inbound::process(app, &event.source, kind, &event.payload)
                    .await
                    .map_err(super::FlowError::from)
            }
            other => Err(super::FlowError::Config(format!(
                "unknown event kind {other:?} in the inbox"
            ))),
        };
        match outcome {
            Ok(()) => db::inbox::mark_processed(pool, event.id, None, now_millis()).await?,
            Err(error) if event.attempts + 1 < MAX_ATTEMPTS => {
                tracing::warn!(event = event.id, %error, "event failed; will retry");
                db::inbox::mark_attempt(pool, event.id, &error.to_string()).await?;
            }
            Err(error) => {
                tracing::error!(event = event.id, %error, "event failed for good");
                db::inbox::mark_processed(pool, event.id, Some(&error.to_string()), now_millis())
                    .await?;
            }
        }
    }
    Ok(count)
}

async fn on_push(app: &App, event: BranchEvent) -> Result<(), super::FlowError> {
    let Some(sha) = event.after.clone() else {
        return Ok(());
    };
    plan_head(app, event.app_id, &event.branch, &sha, &Cause::Push)
        .await
        .map(|_| ())
}

/// Why a branch head is planned.
pub enum Cause {
    /// It was pushed (or first seen).
    Push,
    /// A person asked to run it again (`jobs::rerun`): the same planning as
    /// a push — approvals, freezes and forks hold it alike — recorded as
    /// theirs.
    Rerun { by: String },
}

/// What planning a head came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// Run `id`, queued or held for approval.
    Run(i64),
    /// Nothing to run, and why (said to whoever asked for a re-run).
    Nothing(&'static str),
}

/// Plans `sha`, the head of `branch`, onto its environment: one run,
/// held when approvals do not cover it, a freeze is in force or it comes
/// from a fork; older unfinished runs of the environment are superseded.
pub async fn plan_head(
    app: &App,
    app_id: i64,
    branch: &str,
    sha: &str,
    cause: &Cause,
) -> Result<Planned, super::FlowError> {
    let pool = app.db.pool();
    let sha = sha.to_string();
    let Some(app_row) = db::apps::get(pool, app_id).await? else {
        return Ok(Planned::Nothing("the app is gone"));
    };
    let config: AppConfig = crate::configs::stored(&app_row)?;
    let Some(entry) = entry_for(&config, branch) else {
        tracing::debug!(app = %app_row.name, branch = %branch, "no environment for this branch");
        return Ok(Planned::Nothing("no environment deploys this branch"));
    };

    let staging = staging_branch(&config).map(str::to_string);
    if entry.branches.is_preview()
        && let Some(staging) = staging.as_deref()
        && staging != branch
        && let Some(staging_head) = db::branch_heads::list(pool, app_row.id).await?.get(staging)
        && app
            .git
            .is_ancestor(&app_row.source_url, &sha, staging_head)
            .await?
    {
        // Already merged: no preview for it (an existing one is torn down).
        if let Some(env) = db::environments::find_for_branch(pool, app_row.id, branch).await? {
            lifecycle::destroy(
                app,
                &env,
                &app_row.name,
                &format!("{branch} was merged into {staging}"),
            )
            .await?;
        }
        return Ok(Planned::Nothing(
            "the branch is merged into staging: its preview is gone",
        ));
    }

    let env = ensure_environment(app, &app_row, entry, branch).await?;
    let commit = app.git.commit_info(&app_row.source_url, &sha).await?;
    // Gantry's own merge of an approved request: the merge waited out any
    // freeze already, so a freeze does not hold it again (its re-run, asked
    // for later, is held like any other run).
    let merged_by_request = db::change_requests::merged_as(pool, app_row.id, branch, &sha).await?;
    let merge_waited_out_freeze = merged_by_request.is_some() && matches!(cause, Cause::Push);
    let from_request = crate::change_requests::on_source_push(
        &app.change_request_service(),
        app_row.id,
        branch,
        &sha,
    )
    .await?;
    // A fork's head waits for an admin to allow it, every new head again.
    // The mirror's own record decides (a request whose row is not written
    // yet is no less a fork's).
    let mut fork = db::change_requests::fork_behind(pool, app_row.id, branch).await?;
    if fork.is_none() && app.git.is_fork_head(&app_row.source_url, branch).await? {
        fork = Some("a fork".to_string());
    }
    // Who pushed it, where a forge said: the run's author for the
    // no-self-approval rule, and on a branch whose policy counts pushes,
    // an approval of what the push adds.
    let pusher = pushed_by(app, &app_row, branch, &sha).await?;
    // A protected environment deploys only what approvals cover.
    let uncovered = match &entry.approval {
        Some(policy) if fork.is_none() => {
            let target = coverage::Protected {
                app_id: app_row.id,
                source_url: &app_row.source_url,
                branch,
                environment_id: Some(env.id),
                policy,
            };
            // A push counts once, when it is planned; a re-run of it does
            // not count it again under today's grants and policy.
            if let Some((push, who)) = &pusher
                && matches!(cause, Cause::Push)
            {
                count_push(app, target, &app_row.name, &sha, push, who).await?;
            }
            let mut view =
                coverage::view(&coverage::uncovered(&app.db, &app.git, target, &sha).await?);
            view.rewinds_from = coverage::rewinds(
                &app.git,
                &app_row.source_url,
                env.commit_sha.as_deref(),
                &sha,
            )
            .await?;
            Some(view)
        }
        _ => None,
    };
    let frozen = crate::approvals::policy::freeze_now(Some(entry), app.clock.now_millis())
        .is_some()
        && !merge_waited_out_freeze;
    // What it builds: the app's tree at the commit, by today's pipeline
    // (one artifact for every commit with that tree). A rejected artifact,
    // or one not verified where the entry `requires`, is held.
    let artifact = crate::promotion::artifact_of(
        &app.db,
        (&app.git, app.config.pipeline_repo.as_deref()),
        &app_row,
        &sha,
    )
    .await?;
    let unpromotable =
        crate::promotion::hold(&app.db, artifact, entry, app.clock.now_millis()).await?;
    if let Some(why) = &unpromotable {
        tracing::info!(app = %app_row.name, env = %env.name, commit = %sha, %why, "held for its artifact");
    }
    let held = uncovered
        .as_ref()
        .is_some_and(|u| u.total > 0 || u.rewinds_from.is_some())
        || frozen
        || fork.is_some()
        || unpromotable.is_some();
    let state = if held {
        RunState::WaitingForApproval
    } else {
        RunState::Queued
    };
    let trigger = match cause {
        Cause::Rerun { .. } => RERUN_TRIGGER,
        Cause::Push if merged_by_request.is_some() => "change_request",
        Cause::Push => "push",
    };
    let now = now_millis();
    let mut tx = app.db.begin().await?;
    // A re-run is of the branch's current head: a push seen since it was
    // asked for wins (its run would otherwise be superseded by an older
    // commit's).
    if matches!(cause, Cause::Rerun { .. })
        && db::branch_heads::list(&mut *tx, app_id).await?.get(branch) != Some(&sha)
    {
        return Ok(Planned::Nothing(
            "the branch moved on meanwhile: re-run its newest run",
        ));
    }
    // The same commit of the branch already on its way to this environment
    // — its branch event seen twice, as when a scan is retried after the
    // database went away — is not planned again (that would supersede the
    // run that is deploying it).
    if db::runs::list_unfinished_for_environment(&mut *tx, env.id)
        .await?
        .iter()
        .any(|run| run.commit_sha == sha && run.branch == branch)
    {
        tracing::info!(app = %app_row.name, env = %env.name, commit = %sha, "already planned; not again");
        return Ok(Planned::Nothing(
            "a run of this commit is already on its way to the environment",
        ));
    }
    let run_id = db::runs::insert(
        &mut *tx,
        &NewRun {
            app_id: app_row.id,
            environment_id: env.id,
            branch,
            commit_sha: &sha,
            pipeline_sha: &app_row.pipeline_sha,
            state,
            trigger,
            local_target: entry.targets.iter().any(|t| t == LOCAL_TARGET),
        },
        now,
    )
    .await?;
    if let Some(request) = merged_by_request.or(from_request) {
        db::runs::set_change_request(&mut *tx, run_id, request).await?;
    }
    db::runs::set_commit_info(&mut *tx, run_id, &commit.summary, &commit.author).await?;
    if let Some(artifact) = artifact {
        db::artifacts::set_for_run(&mut *tx, run_id, artifact).await?;
    }
    if held && let Some(uncovered) = &uncovered {
        db::runs::set_uncovered(&mut *tx, run_id, Some(uncovered)).await?;
    }
    if let Some((_, who)) = &pusher {
        db::runs::set_pushed_by(&mut *tx, run_id, who.user_id).await?;
    }
    if let Cause::Rerun { by } = cause {
        db::runs::set_requested_by(&mut *tx, run_id, by).await?;
    }
    if let Some(fork) = &fork {
        db::runs::set_from_fork(&mut *tx, run_id, fork).await?;
    }
    db::runs::supersede_older(&mut tx, env.id, run_id, now).await?;
    crate::db::commit(tx).await?;
    tracing::info!(app = %app_row.name, env = %env.name, run = run_id, commit = %sha, state = state.as_str(), "run planned");
    app.flow.runner_wake.notify_one();

    if staging.as_deref() == Some(branch) {
        lifecycle::destroy_merged_previews(app, &app_row, &config, &sha).await?;
    }
    Ok(Planned::Run(run_id))
}

/// The Gantry user who pushed `sha` to `branch`, where a forge's signed
/// push event named an account that maps to one (`auth.forge_login_claim`).
async fn pushed_by(
    app: &App,
    app_row: &db::apps::AppRow,
    branch: &str,
    sha: &str,
) -> Result<Option<(db::coverage::ForgePush, crate::auth::ForgeIdentity)>, super::FlowError> {
    let Some(push) = db::coverage::pusher(app.db.pool(), app_row.id, branch, sha).await? else {
        return Ok(None);
    };
    Ok(crate::auth::forge_identity(&app.db, &push.login)
        .await?
        .map(|who| (push, who)))
}

/// A push counts as its pusher's approval of what it adds where the
/// policy says so (`approval.forge_push`) and the pusher may approve.
async fn count_push(
    app: &App,
    target: coverage::Protected<'_>,
    app_name: &str,
    sha: &str,
    push: &db::coverage::ForgePush,
    who: &crate::auth::ForgeIdentity,
) -> Result<(), super::FlowError> {
    if !target.policy.forge_push {
        return Ok(());
    }
    let freshness = crate::approvals::policy::Freshness {
        max_age: app.config.reauth_max_age,
        now: app.clock.now_millis(),
    };
    if let Some(why) =
        crate::approvals::policy::refusal(freshness, &who.caller(), target.policy, app_name)
    {
        tracing::info!(app = app_name, branch = target.branch, pusher = %push.login, %why, "a push that does not count as an approval");
        return Ok(());
    }
    coverage::grant_push(
        &app.db,
        target,
        sha,
        push.before_sha.as_deref(),
        who.user_id,
    )
    .await?;
    Ok(())
}

async fn on_delete(app: &App, event: BranchEvent) -> Result<(), super::FlowError> {
    let pool = app.db.pool();
    let Some(app_row) = db::apps::get(pool, event.app_id).await? else {
        return Ok(());
    };
    let config: AppConfig = crate::configs::stored(&app_row)?;
    let Some(env) = db::environments::find_for_branch(pool, app_row.id, &event.branch).await?
    else {
        return Ok(());
    };
    if crate::gitops::stack::is_preview(&config, &env.stack_entry) {
        lifecycle::destroy(
            app,
            &env,
            &app_row.name,
            &format!("branch {} was deleted", event.branch),
        )
        .await?;
    }
    Ok(())
}

/// The environment `branch` deploys to, created (or revived) on first use.
async fn ensure_environment(
    app: &App,
    app_row: &db::apps::AppRow,
    entry: &StackEntry,
    branch: &str,
) -> Result<EnvRow, super::FlowError> {
    let pool = app.db.pool();
    let now = now_millis();
    let ttl = entry.ttl_seconds.and_then(|t| i64::try_from(t).ok());
    if entry.branches.is_preview()
        && let Some(env) = db::environments::find_for_branch(pool, app_row.id, branch).await?
    {
        return Ok(env);
    }
    let mut name = if entry.branches.is_preview() {
        preview_name(&entry.env, branch)
    } else {
        entry.env.clone()
    };
    // Two branches whose names hash alike: extremely rare, but never share.
    if entry.branches.is_preview()
        && let Some(other) = db::environments::find_by_name(pool, app_row.id, &name).await?
        && other.destroyed_at.is_none()
        && other.branch.as_deref() != Some(branch)
    {
        name = format!(
            "{}-{}",
            &name[..name.len().min(27)].trim_end_matches('-'),
            app_row.id % 100
        );
    }
    let url = environment_url(app, &app_row.name, &name, branch, entry)?;
    match db::environments::find_by_name(pool, app_row.id, &name).await? {
        Some(env) if env.destroyed_at.is_some() => {
            db::environments::revive(pool, env.id, branch, url.as_deref(), ttl, now).await?;
        }
        Some(env) => return Ok(env),
        None => {
            let inserted = db::environments::insert(
                pool,
                &NewEnvironment {
                    app_id: app_row.id,
                    name: &name,
                    stack_entry: &entry.env,
                    branch: Some(branch),
                    url: url.as_deref(),
                    namespace: None,
                },
                now,
            )
            .await;
            match inserted {
                Ok(id) => db::environments::set_ttl(pool, id, ttl).await?,
                // Made meanwhile (the planner and an approved change
                // request, or another replica): that one is it.
                Err(error) if error.is_conflict() => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    db::environments::find_by_name(pool, app_row.id, &name)
        .await?
        .ok_or_else(|| super::FlowError::Gone(format!("environment {name} vanished")))
}

fn environment_url(
    app: &App,
    app_name: &str,
    env: &str,
    branch: &str,
    entry: &StackEntry,
) -> Result<Option<String>, super::FlowError> {
    if let Some(url) = &entry.url {
        let context = template::context(app_name, env, branch, "", &entry.variables);
        return template::render(url, &context)
            .map(Some)
            .map_err(|e| super::FlowError::Config(format!("stack entry {} url: {e}", entry.env)));
    }
    Ok(entry
        .targets
        .iter()
        .any(|target| target == LOCAL_TARGET)
        .then(|| {
            template::local_url(
                &app.config.public_url,
                &app.config.preview_domain,
                app_name,
                env,
            )
        }))
}

/// Waits until the pipeline repo has given Gantry the app `name`.
pub async fn wait_for_app(
    app: &App,
    name: &str,
    timeout: Duration,
) -> Result<db::apps::AppRow, super::FlowError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(row) = db::apps::find_active_by_name(app.db.pool(), name).await? {
            return Ok(row);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(super::FlowError::Gone(format!(
                "the pipeline repo did not define app {name} within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
