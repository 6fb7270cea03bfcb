//! Rollback that stays put. One admin action re-applies the exact stored
//! manifests of the last stable release (or a chosen one) to every target
//! it ran on — no rebuild — records "rollback of X to Y" in the ledger and
//! pins the environment, so the next commit on its branch is built but not
//! deployed until an admin promotes again.
//!
//! A rollback is a run (trigger `rollback`, one step) so it shows up like
//! any other, takes the environment's deploy lock and survives restarts.
//! Ordering is deterministic: the pin is set when the rollback is asked
//! for, so a deploy that takes the lock afterwards skips; one already
//! holding it finishes first, and the rollback then replaces it.

use std::time::Duration;

use app::dto::{
    Promotion, ReleaseKind, ReleaseState, ReleaseSummary, Role, RollbackAccepted, RollbackRequest,
    RunState,
};
use app::port::Caller;

use super::LedgerError;
use super::pin::{self, PinFile};
use crate::approvals::policy;
use crate::db::{self, environments::Serving, now_millis, runs::NewRun};
use crate::delivery::Delivery;
use crate::delivery::deploy::lifecycle::{
    self, Begin, Build, Conclusion, Kind, Kubernetes, Record, Source, Subject,
};
use crate::delivery::deploy::{self, DeployError};
use crate::gitops::schema::{AppConfig, ApprovalPolicy, DEFAULT_ROLLOUT_TIMEOUT, LOCAL_TARGET};
use crate::runs::logs::LogSink;

/// The trigger of rollback runs.
pub const TRIGGER: &str = "rollback";
/// The trigger of runs an admin's promotion starts.
pub const PROMOTE_TRIGGER: &str = "promote";

/// The environment a rollback goes to when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "production";

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// What both a rollback and a promotion check first: an admin of the app
/// (with a fresh sign-in where the environment's policy demands one).
fn require_admin(
    app: &Delivery<'_>,
    caller: &Caller,
    config: &AppConfig,
    env: &str,
) -> Result<(), LedgerError> {
    let reauth = config
        .stack
        .iter()
        .find(|entry| entry.env == env)
        .and_then(|entry| entry.approval.as_ref())
        .is_some_and(|policy| policy.reauth);
    let admins = ApprovalPolicy {
        self_approval: true,
        reauth,
        ..ApprovalPolicy::one_admin()
    };
    match policy::refusal(app.freshness(), caller, &admins, &config.name) {
        Some(refusal) => Err(LedgerError::Forbidden(refusal)),
        None => Ok(()),
    }
}

/// The app, its configuration and its fixed environment `env`.
async fn environment(
    app: &Delivery<'_>,
    app_name: &str,
    env: &str,
) -> Result<(db::apps::AppRow, AppConfig, db::environments::EnvRow), LedgerError> {
    let pool = app.db.pool();
    let row = db::apps::find_active_by_name(pool, app_name)
        .await?
        .ok_or_else(|| LedgerError::NotFound(format!("no app named {app_name}")))?;
    let config: AppConfig =
        crate::configs::stored(&row).map_err(|e| LedgerError::Config(e.to_string()))?;
    if !super::records(&config, env) {
        let fixed: Vec<&str> = config
            .stack
            .iter()
            .filter(|entry| !entry.branches.is_preview())
            .map(|entry| entry.env.as_str())
            .collect();
        return Err(LedgerError::NotFound(format!(
            "{app_name} has no environment {env} with a release history (it has: {})",
            fixed.join(", ")
        )));
    }
    let env_row = db::environments::find_by_name(pool, row.id, env)
        .await?
        .filter(|e| e.destroyed_at.is_none())
        .ok_or_else(|| LedgerError::NotFound(format!("{env} of {app_name} was never deployed")))?;
    Ok((row, config, env_row))
}

/// Why a release someone chose cannot be rolled back to in environment
/// `environment_id` (named `place`): it is another environment's, or it
/// never went live.
fn chosen_refusal(
    target: &ReleaseSummary,
    environment_id: i64,
    place: &str,
) -> Option<LedgerError> {
    if target.environment_id != environment_id {
        return Some(LedgerError::Invalid(format!(
            "release {} is of {}/{}, not {place}",
            target.id, target.app, target.environment
        )));
    }
    if matches!(target.state, ReleaseState::Deploying | ReleaseState::Failed) {
        return Some(LedgerError::Invalid(format!(
            "release {} is {}: only a release that went live can be rolled back to",
            target.id, target.state
        )));
    }
    None
}

/// Going back to what serves now makes sense only while a newer version
/// is on its way in (the rollback then stops it).
fn serves_already(current: Option<i64>, target: i64, deploying: bool) -> bool {
    current == Some(target) && !deploying
}

/// Asks for a rollback: checks, pins, queues the rollback run and writes
/// the pin to the pipeline repo.
pub async fn request(
    app: &Delivery<'_>,
    caller: &Caller,
    app_name: &str,
    request: RollbackRequest,
) -> Result<RollbackAccepted, LedgerError> {
    let env_name = request
        .environment
        .clone()
        .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_string());
    caller
        .require(Role::Admin, Some(app_name))
        .map_err(|e| LedgerError::Forbidden(e.to_string()))?;
    let (row, config, env) = environment(app, app_name, &env_name).await?;
    require_admin(app, caller, &config, &env_name)?;
    let reason = policy::override_reason(&request.reason)
        .map_err(|_| {
            LedgerError::Invalid(
                "a rollback needs a reason (at least 5 characters); it is kept with the release and in the audit log"
                    .into(),
            )
        })?
        .to_string();

    let mut conn = app.db.acquire().await?;
    let current = match env.deployment_id {
        Some(deployment) => db::releases::id_of_deployment(&mut *conn, deployment).await?,
        None => None,
    };
    let target = match request.to {
        Some(id) => {
            let target = db::releases::get(&mut conn, id)
                .await?
                .ok_or_else(|| LedgerError::NotFound(format!("release {id} does not exist")))?;
            if let Some(refused) =
                chosen_refusal(&target, env.id, &format!("{app_name}/{env_name}"))
            {
                return Err(refused);
            }
            target
        }
        None => {
            let id = db::releases::last_stable(&mut *conn, env.id, current)
                .await?
                .ok_or_else(|| {
                    LedgerError::Conflict(format!(
                        "{app_name}/{env_name} has no stable release to roll back to{}; choose one with `to` (--to)",
                        current.map(|c| format!(" other than the current one ({c})")).unwrap_or_default()
                    ))
                })?;
            db::releases::get(&mut conn, id)
                .await?
                .ok_or_else(|| LedgerError::NotFound(format!("release {id} does not exist")))?
        }
    };
    let deploying = db::releases::deploying_in(&mut *conn, env.id).await?;
    if serves_already(current, target.id, deploying) {
        return Err(LedgerError::Conflict(format!(
            "{app_name}/{env_name} already serves release {} ({})",
            target.id,
            short(&target.version)
        )));
    }
    if let Some(run) = db::runs::unfinished_with_trigger(&mut *conn, env.id, TRIGGER).await? {
        return Err(LedgerError::Conflict(format!(
            "a rollback of {app_name}/{env_name} is already under way (run {run})"
        )));
    }
    drop(conn);

    let now = now_millis();
    let pin_row = db::pins::PinRow {
        environment_id: env.id,
        release_id: Some(target.id),
        version: target.version.clone(),
        pinned_by: caller.me.name.clone(),
        reason: reason.clone(),
        pin_commit: None,
        git_error: None,
        created_at: now,
    };
    let commit = app
        .git
        .commit_info(&row.source_url, &target.version)
        .await
        .ok();
    let local_target = db::environments::on_local_target(app.db.pool(), env.id).await?;
    let mut tx = app.db.begin().await?;
    db::pins::set(&mut *tx, &pin_row).await?;
    let run_id = db::runs::insert(
        &mut *tx,
        &NewRun {
            app_id: row.id,
            environment_id: env.id,
            branch: env.branch.as_deref().unwrap_or_default(),
            commit_sha: &target.version,
            pipeline_sha: &target.pipeline_sha,
            state: RunState::Queued,
            trigger: TRIGGER,
            local_target,
        },
        now,
    )
    .await?;
    db::runs::set_rollback(&mut *tx, run_id, target.id, &caller.me.name, &reason).await?;
    if let Some(commit) = &commit {
        db::runs::set_commit_info(&mut *tx, run_id, &commit.summary, &commit.author).await?;
    }
    db::audit::record(
        &mut *tx,
        &db::audit::NewEntry {
            actor: &caller.me.name,
            action: "release.rollback",
            target: &format!("environment:{app_name}/{env_name}"),
            reason: Some(&reason),
            source_ip: caller.source_ip.as_deref(),
            detail: &serde_json::json!({
                "run": run_id,
                "from_release": current,
                "to_release": target.id,
                "version": target.version,
                "faulty": request.faulty,
            })
            .to_string(),
        },
        now,
    )
    .await?;
    // Rolled back as faulty: what it deployed is never promoted again
    // without an override.
    if request.faulty
        && let Some(current) = current
        && let Some(artifact) = db::artifacts::of_release(&mut *tx, current).await?
    {
        let why = format!("rolled back as faulty: {reason}");
        if db::artifacts::reject(&mut *tx, artifact, &caller.me.name, &why, now).await? {
            db::audit::record(
                &mut *tx,
                &db::audit::NewEntry {
                    actor: &caller.me.name,
                    action: "artifact.reject",
                    target: &format!("{app_name} artifact {artifact}"),
                    reason: Some(&why),
                    source_ip: caller.source_ip.as_deref(),
                    detail: &serde_json::json!({ "rollback_run": run_id }).to_string(),
                },
                now,
            )
            .await?;
        }
    }
    crate::db::commit(tx).await?;
    app.flow.runner_wake.notify_one();
    tracing::info!(app = %app_name, env = %env_name, run = run_id, to = target.id, "rollback queued");

    let (pin_commit, git_error) = write_pin(
        app,
        &env,
        app_name,
        Some((
            PinFile {
                version: target.version.clone(),
                release: Some(target.id),
                pinned_by: caller.me.name.clone(),
                reason: reason.clone(),
            },
            now,
        )),
        &caller.me.name,
    )
    .await?;
    Ok(RollbackAccepted {
        run_id,
        environment: env_name,
        from_release: current,
        to_release: target.id,
        version: target.version,
        pin_commit,
        git_error,
    })
}

/// Writes the pin (or its removal) to the pipeline repo and records the
/// outcome on the pin.
async fn write_pin(
    app: &Delivery<'_>,
    env: &db::environments::EnvRow,
    app_name: &str,
    pin: Option<(PinFile, i64)>,
    actor: &str,
) -> Result<(Option<String>, Option<String>), LedgerError> {
    let outcome = pin::write(
        app,
        app_name,
        &env.name,
        pin.as_ref().map(|(file, _)| file),
        actor,
    )
    .await;
    let (commit, error) = match outcome {
        Ok(commit) => (commit, None),
        Err(error) => {
            tracing::warn!(app = %app_name, env = %env.name, %error, "pin not written to the pipeline repo");
            (None, Some(error.to_string()))
        }
    };
    if let Some((_, pinned_at)) = pin {
        db::pins::set_git_outcome(
            app.db.pool(),
            env.id,
            pinned_at,
            commit.as_deref(),
            error.as_deref(),
        )
        .await?;
    }
    // The new pipeline commit is read at once.
    app.flow.scan_wake.notify_one();
    Ok((commit, error))
}

/// An admin lifts the pin and sends the branch head through the usual
/// flow (its approval policy and freezes included; the promotion counts
/// as the admin's approval).
pub async fn promote(
    app: &Delivery<'_>,
    caller: &Caller,
    app_name: &str,
    env_name: &str,
    reason: Option<&str>,
) -> Result<Promotion, LedgerError> {
    caller
        .require(Role::Admin, Some(app_name))
        .map_err(|e| LedgerError::Forbidden(e.to_string()))?;
    let (row, config, env) = environment(app, app_name, env_name).await?;
    require_admin(app, caller, &config, env_name)?;
    let pool = app.db.pool();
    let unpinned = db::pins::delete(pool, env.id).await?;
    crate::audit::record(
        app.db,
        caller,
        "environment.promote",
        &format!("environment:{app_name}/{env_name}"),
        reason,
    )
    .await?;
    if unpinned {
        write_pin(app, &env, app_name, None, &caller.me.name).await?;
    }

    let branch = env.branch.clone().unwrap_or_default();
    let heads = db::branch_heads::list(pool, row.id).await?;
    let Some(head) = heads.get(&branch).cloned() else {
        return Ok(Promotion {
            environment: env_name.to_string(),
            unpinned,
            run_id: None,
            detail: format!("unpinned; {branch} has no commit to deploy yet"),
        });
    };
    if env.commit_sha.as_deref() == Some(head.as_str()) {
        return Ok(Promotion {
            environment: env_name.to_string(),
            unpinned,
            run_id: None,
            detail: format!("unpinned; {env_name} already serves the head of {branch}"),
        });
    }
    let entry = config
        .stack
        .iter()
        .find(|entry| entry.env == env.stack_entry);
    let artifact =
        crate::promotion::artifact_of(app.db, (app.git, app.pipeline.repo), &row, &head).await?;
    let unpromotable = match entry {
        Some(entry) => {
            crate::promotion::hold(app.db, artifact, entry, app.clock.now_millis()).await?
        }
        None => None,
    };
    let held = entry.is_some_and(|e| e.approval.is_some())
        || policy::freeze_now(entry, app.clock.now_millis()).is_some()
        || unpromotable.is_some();
    let commit = app.git.commit_info(&row.source_url, &head).await?;
    let now = now_millis();
    let mut tx = app.db.begin().await?;
    let run_id = db::runs::insert(
        &mut *tx,
        &NewRun {
            app_id: row.id,
            environment_id: env.id,
            branch: &branch,
            commit_sha: &head,
            pipeline_sha: &row.pipeline_sha,
            state: if held {
                RunState::WaitingForApproval
            } else {
                RunState::Queued
            },
            trigger: PROMOTE_TRIGGER,
            local_target: entry.is_some_and(|e| e.targets.iter().any(|t| t == LOCAL_TARGET)),
        },
        now,
    )
    .await?;
    db::runs::set_commit_info(&mut *tx, run_id, &commit.summary, &commit.author).await?;
    if let Some(artifact) = artifact {
        db::artifacts::set_for_run(&mut *tx, run_id, artifact).await?;
    }
    db::runs::supersede_older(&mut tx, env.id, run_id, now).await?;
    crate::db::commit(tx).await?;
    let detail = if held {
        let comment = reason.map_or_else(|| "promoted".to_string(), |r| format!("promoted: {r}"));
        match crate::approvals::approve(&app.approvals(), caller, run_id, Some(&comment)).await {
            Ok(crate::approvals::ApprovalOutcome::Released { .. }) => {
                format!("unpinned; run {run_id} deploys {}", short(&head))
            }
            Ok(crate::approvals::ApprovalOutcome::Waiting {
                approvals,
                required,
            }) => format!(
                "unpinned; run {run_id} of {} waits for approval ({approvals} of {required})",
                short(&head)
            ),
            Ok(crate::approvals::ApprovalOutcome::Rejected) => {
                format!("unpinned; run {run_id} was rejected")
            }
            Err(error) => format!("unpinned; run {run_id} is held: {error}"),
        }
    } else {
        app.flow.runner_wake.notify_one();
        format!("unpinned; run {run_id} deploys {}", short(&head))
    };
    Ok(Promotion {
        environment: env_name.to_string(),
        unpinned,
        run_id: Some(run_id),
        detail,
    })
}

/// What the rollback step re-applies, read from the stored deployment.
struct Stored {
    release: ReleaseSummary,
    record: Record,
    source: Source,
    targets: Vec<String>,
}

async fn stored(app: &Delivery<'_>, release_id: i64) -> Result<Stored, DeployError> {
    let failed = |text: String| DeployError::Failed(text);
    let mut conn = app.db.acquire().await?;
    let release = db::releases::get(&mut conn, release_id)
        .await?
        .ok_or_else(|| failed(format!("release {release_id} no longer exists")))?;
    let deployment = db::deployments::get(&mut *conn, release.deployment_id)
        .await?
        .ok_or_else(|| failed(format!("deployment {} is gone", release.deployment_id)))?;
    let shown: serde_json::Value = serde_json::from_str(&deployment.manifests)
        .map_err(|e| failed(format!("deployment {}: {e}", deployment.id)))?;
    let local = match shown.get(LOCAL_TARGET) {
        Some(value) => Some(
            serde_json::from_value(value.clone())
                .map_err(|e| failed(format!("deployment {} local manifest: {e}", deployment.id)))?,
        ),
        None => None,
    };
    let (digest, sealed) = match db::deployments::sealed(&mut *conn, deployment.id).await? {
        Some((digest, Some(nonce), Some(ciphertext), Some(key_id))) => (
            digest,
            Some(crate::db::Sealed {
                nonce,
                ciphertext,
                key_id,
            }),
        ),
        Some((digest, ..)) => (digest, None),
        None => (String::new(), None),
    };
    let objects = crate::delivery::deploy::drift::deployed_objects(app, deployment.id)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let kubernetes = match (objects, shown["namespace"].as_str()) {
        // Releases are of staging and production, never of previews.
        (Some(objects), Some(namespace)) => Some(Kubernetes {
            namespace: namespace.to_string(),
            objects,
            preview: false,
            // Set from the app's configuration by the caller.
            guardrails: Default::default(),
            rules: Default::default(),
        }),
        _ => None,
    };
    Ok(Stored {
        targets: release.targets.iter().map(|t| t.target.clone()).collect(),
        release,
        record: Record {
            shown: deployment.manifests,
            digest,
            sealed,
        },
        source: Source { local, kubernetes },
    })
}

/// The rollback step of a rollback run: waits for the environment's deploy
/// lock, then re-applies the target release.
pub async fn execute(
    app: &Delivery<'_>,
    run: &db::runs::RunRow,
    held: db::runs::Holder<'_>,
    log: &mut LogSink<'_>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), DeployError> {
    let pool = app.db.pool();
    let (target_id, requested_by, reason) = db::runs::rollback_of_run(pool, run.id)
        .await?
        .ok_or_else(|| DeployError::Failed(format!("run {} is not a rollback", run.id)))?;
    let env = db::environments::get(pool, run.environment_id)
        .await?
        .ok_or_else(|| DeployError::Failed("the environment is gone".into()))?;
    deploy::acquire_lock(app, env.id, &env.name, held, log, cancel).await?;
    let outcome = reapply(app, run, held, target_id, &requested_by, &reason, log).await;
    db::environments::unlock(pool, env.id, held).await?;
    outcome
}

async fn reapply(
    app: &Delivery<'_>,
    run: &db::runs::RunRow,
    held: db::runs::Holder<'_>,
    target_id: i64,
    requested_by: &str,
    reason: &str,
    log: &mut LogSink<'_>,
) -> Result<(), DeployError> {
    let pool = app.db.pool();
    // Read again under the lock: a deploy may have finished meanwhile.
    let env = db::environments::get(pool, run.environment_id)
        .await?
        .ok_or_else(|| DeployError::Failed("the environment is gone".into()))?;
    let app_row = db::apps::get(pool, run.app_id)
        .await?
        .ok_or_else(|| DeployError::Failed("the app is gone".into()))?;
    let config: Option<AppConfig> = crate::configs::stored(&app_row).ok();
    let mut stored = stored(app, target_id).await?;
    if let (Some(kubernetes), Some(config)) = (stored.source.kubernetes.as_mut(), &config) {
        kubernetes.guardrails = config.guardrails.clone();
        kubernetes.rules = config.health_rules.clone();
    }
    // An old release goes back under today's guardrails: its clusters and
    // its namespace too, not only what it creates.
    if let Some(config) = &config {
        let rails = &config.guardrails;
        let refusal = stored
            .targets
            .iter()
            .filter(|t| *t != LOCAL_TARGET)
            .find_map(|cluster| rails.cluster_refusal(&app_row.name, cluster))
            .or_else(|| {
                stored
                    .source
                    .kubernetes
                    .as_ref()
                    .and_then(|k| rails.namespace_refusal(&app_row.name, &k.namespace))
            });
        if let Some(why) = refusal {
            log.note(&format!("nothing was applied: {why}")).await?;
            return Err(DeployError::Failed(why));
        }
    }
    let current = match env.deployment_id {
        Some(deployment) => db::releases::id_of_deployment(pool, deployment).await?,
        None => None,
    };
    let from = env.commit_sha.clone().unwrap_or_default();
    let label = format!(
        "rollback of {} to {}",
        if from.is_empty() {
            "nothing"
        } else {
            short(&from)
        },
        short(&stored.release.version)
    );
    log.note(&format!(
        "{label} (release {target_id}) on {}, asked by {requested_by}: {reason}",
        stored.targets.join(", ")
    ))
    .await?;

    let subject = Subject {
        app_id: app_row.id,
        app: &app_row.name,
        environment_id: env.id,
        environment: &env.name,
        rollout_timeout: Duration::from_secs(
            config
                .as_ref()
                .and_then(|c| c.stack.iter().find(|e| e.env == env.stack_entry))
                .map_or(DEFAULT_ROLLOUT_TIMEOUT, |e| e.rollout_timeout_seconds),
        ),
    };
    let version = &stored.release.version;
    let pipeline_sha = &stored.release.pipeline_sha;
    let image = stored.release.image.as_deref();
    let begun = lifecycle::begin(
        app.db,
        &subject,
        Begin {
            run: Some(held),
            kind: Kind::Rollback {
                of: stored.release.deployment_id,
                reason,
            },
            commit_sha: version,
            pipeline_sha,
            image,
            created_by: Some(requested_by),
            record: &stored.record,
            namespace: stored
                .source
                .kubernetes
                .as_ref()
                .map(|k| k.namespace.as_str()),
            release: Some(db::releases::NewRelease {
                app_id: app_row.id,
                environment_id: env.id,
                deployment_id: 0,
                run_id: None,
                kind: ReleaseKind::Rollback,
                version,
                previous_version: env.commit_sha.as_deref(),
                pipeline_sha,
                image,
                label: Some(&label),
                reason: Some(reason),
                rollback_of: current,
                rollback_to: Some(target_id),
                created_by: Some(requested_by),
                changelog: "[]",
            }),
        },
        now_millis(),
    )
    .await?;

    if let Some(kubernetes) = &stored.source.kubernetes {
        // A rollback never waits for a canary, and leaves none serving.
        deploy::remove_leftover_canaries(app, &subject, kubernetes, &stored.targets, log).await?;
    }
    let outcomes = lifecycle::apply(
        app,
        &subject,
        begun.deployment_id,
        &stored.source,
        Build::Stored {
            deployment_id: stored.release.deployment_id,
        },
        &stored.targets,
    )
    .await;
    let commit = app.git.commit_info(&app_row.source_url, version).await.ok();
    let verdict = lifecycle::conclude(
        app,
        &subject,
        Conclusion {
            begun,
            label: &label,
            serving: Serving {
                deployment_id: begun.deployment_id,
                commit_sha: version,
                pipeline_sha,
                commit_message: commit.as_ref().map_or("", |c| c.summary.as_str()),
                commit_author: commit.as_ref().map_or("", |c| c.author.as_str()),
                url: None,
            },
            outcomes: &outcomes,
        },
        log,
    )
    .await?;
    match verdict.detail {
        None => {
            log.note(&format!("{label}: every target serves it; the environment stays pinned until an admin promotes"))
                .await?;
            Ok(())
        }
        Some(detail) => Err(DeployError::Failed(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(id: i64, environment_id: i64, state: ReleaseState) -> ReleaseSummary {
        serde_json::from_value(serde_json::json!({
            "id": id, "app": "shop", "environment": "production",
            "environment_id": environment_id, "version": "abc1234", "state": state,
            "kind": "release", "label": null, "previous_version": null,
            "pipeline_sha": "p", "image": null, "reason": null, "rollback_of": null,
            "rollback_to": null, "run_id": null, "deployment_id": 1, "created_by": null,
            "created_at": 0, "finished_at": null, "stable_at": null, "stable_by": null,
            "changelog": [], "targets": [], "approvals": [],
        }))
        .expect("a release")
    }

    #[test]
    fn only_a_release_of_this_environment_that_went_live_is_chosen() {
        for state in [
            ReleaseState::Live,
            ReleaseState::Stable,
            ReleaseState::Superseded,
            ReleaseState::RolledBack,
        ] {
            assert!(chosen_refusal(&release(4, 7, state), 7, "shop/production").is_none());
        }
        for state in [ReleaseState::Deploying, ReleaseState::Failed] {
            let refused = chosen_refusal(&release(4, 7, state), 7, "shop/production");
            assert!(
                matches!(&refused, Some(LedgerError::Invalid(text)) if text.contains("went live")),
                "{refused:?}"
            );
        }
        let elsewhere = chosen_refusal(&release(4, 8, ReleaseState::Stable), 7, "shop/staging");
        assert!(
            matches!(&elsewhere, Some(LedgerError::Invalid(text)) if text == "release 4 is of shop/production, not shop/staging"),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn what_serves_is_a_target_only_while_a_newer_version_deploys() {
        assert!(serves_already(Some(4), 4, false));
        assert!(!serves_already(Some(4), 4, true), "stops the newer deploy");
        assert!(!serves_already(Some(5), 4, false));
        assert!(!serves_already(None, 4, false));
    }
}
