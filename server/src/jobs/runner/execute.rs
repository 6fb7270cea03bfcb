//! Executing one run: workspace, steps in order, logs, reports, the deploy
//! step, and a clear terminal state whatever happens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::dto::{RunState, StepState};
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::cache;
use super::command::{self, StepResult, sink};
use crate::db::{self, now_millis, runs::RunRow, steps::StepOutcome};
use crate::delivery::deploy::{self, DeployError, DeployOutcome, DeployRequest};
use crate::forge::api::StatusState;
use crate::forge::feedback;
use crate::git::Export;
use crate::gitops::schema::{LOCAL_TARGET, StackEntry, Step};
use crate::gitops::template;
use crate::jobs::forge_report as report;
use crate::runs::logs::{LogSink, RunEvent};
use crate::runs::workspace::Workspace;
use crate::state::App;

/// Why a local step or deploy is refused where `builds.local` is `refuse`.
pub const LOCAL_REFUSED: &str = "refused: this Gantry does not run anything on its own machine (builds.local = refuse: it runs in a cluster, without the privileges a sandbox needs); steps run on the Kubernetes executor, and the local target is not available here";

/// How a run ended.
enum Ending {
    Succeeded,
    Failed(String),
    Cancelled,
}

pub async fn execute(app: Arc<App>, run: RunRow) {
    let cancel = CancellationToken::new();
    let lost = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_cancel(
        app.clone(),
        run.clone(),
        cancel.clone(),
        lost.clone(),
    ));
    let mut workspace = Workspace::new(&app.work_dir(), run.id, run.attempt);
    workspace.user = app.sandbox.lease_user();
    tracing::info!(run = run.id, attempt = run.attempt, commit = %run.commit_sha, "run started");
    if let Err(error) = db::run_attempts::start(
        app.db.pool(),
        run.id,
        run.attempt,
        &app.replica.id,
        0,
        now_millis(),
    )
    .await
    {
        tracing::warn!(run = run.id, %error, "cannot record the run's attempt");
    }

    report::status(&app, run.id, None, StatusState::Pending, "running".into());
    report::comment(&app, run.id);
    let ending = match run_steps(&app, &run, &workspace, &cancel, &lost).await {
        Ok(ending) => ending,
        // The shared database went away mid-run (a restart, a cut): what
        // this attempt did is not all recorded, so it is not ended here.
        // Its lease runs out and the run resumes as its next attempt, here
        // or on another replica. (SQLite is this process's own file.)
        Err(RunError::Db(error))
            if error.is_transient() && app.db.backend() != db::Backend::Sqlite =>
        {
            tracing::warn!(run = run.id, attempt = run.attempt, %error, "the database went away mid-run; leaving the run to its lease");
            watcher.abort();
            workspace.remove().await;
            app.events.close(run.id);
            return;
        }
        // Cancelled while Gantry prepared it (a checkout stops between
        // entries): the cancel, not the interrupted work, is the ending.
        Err(_) if cancel.is_cancelled() => Ending::Cancelled,
        Err(error) => Ending::Failed(format!("gantry could not run the pipeline: {error}")),
    };
    watcher.abort();
    workspace.remove().await;
    // Its build pods' URLs end with it (unless it went to another
    // attempt, maybe on this very replica, whose URLs they are now).
    if !lost.load(Ordering::Relaxed) {
        app.build_archives.revoke_run(run.id);
    }

    let now = now_millis();
    let pool = app.db.pool();
    let (state, error) = match &ending {
        Ending::Succeeded => (RunState::Succeeded, None),
        Ending::Failed(reason) => (RunState::Failed, Some(reason.clone())),
        Ending::Cancelled => match db::runs::cancel_state(pool, run.id).await {
            Ok((_, true)) => (
                RunState::Superseded,
                Some("superseded by a newer push".to_string()),
            ),
            _ => (RunState::Cancelled, Some("cancelled".to_string())),
        },
    };
    // Retried for up to a lease: a database that is briefly away must not
    // leave a finished run to be taken over and run again.
    let deadline = tokio::time::Instant::now() + app.config.runner_lease;
    let finished = loop {
        match finish(&app, &run, state, error.as_deref(), now).await {
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(run = run.id, %error, "cannot record the end of a run yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    match finished {
        Ok(true) => {}
        // Nothing else ends a running run: another replica took it over
        // (this one lost the database for longer than a lease), and its
        // attempt says how the run ends — no notice, no status from here.
        Ok(false) => {
            let seen = lost.load(Ordering::Relaxed);
            tracing::warn!(
                run = run.id,
                attempt = run.attempt,
                seen,
                "run lost to another replica"
            );
            app.events.close(run.id);
            return;
        }
        // Unknown: whether this replica still holds the run. Its lease
        // settles that (taken over and resumed elsewhere); announcing an
        // end that was never recorded would be wrong either way.
        Err(error) => {
            tracing::error!(run = run.id, %error, "cannot record the end of a run");
            app.events.close(run.id);
            return;
        }
    }
    crate::notify::run_ended(&app.notifier(), run.id, state, error.as_deref()).await;
    report::status(
        &app,
        run.id,
        None,
        feedback::run_state(state),
        error.clone().unwrap_or_else(|| state.as_str().to_string()),
    );
    report::comment(&app, run.id);
    app.events.send(
        run.id,
        RunEvent::Run {
            state: state.as_str().into(),
        },
    );
    app.events.close(run.id);
    tracing::info!(
        run = run.id,
        state = state.as_str(),
        error = error.as_deref().unwrap_or(""),
        "run ended"
    );
}

/// Ends the run and its attempt; false when this replica no longer holds
/// the run. A retry after an unacknowledged commit that did go through
/// finds the run ended as this attempt ended it: true.
async fn finish(
    app: &App,
    run: &RunRow,
    state: RunState,
    error: Option<&str>,
    now: i64,
) -> Result<bool, crate::db::QueryError> {
    let mut tx = app.db.begin().await?;
    let ended = db::runs::finish_attempt(
        &mut *tx,
        run.id,
        &app.replica.id,
        run.attempt,
        state,
        error,
        now,
    )
    .await?;
    if !ended {
        return db::runs::ended_as(&mut *tx, run.id, &app.replica.id, run.attempt, state, now)
            .await;
    }
    db::steps::skip_pending(&mut *tx, run.id).await?;
    db::run_attempts::finish(&mut *tx, run.id, None, now).await?;
    crate::db::commit(tx).await?;
    Ok(true)
}

/// Polls the database for a cancel request (it may come from another
/// replica or a newer push) and renews the run's lease every third of
/// `runner.lease`, so no other replica takes it over while this one lives.
/// A renewal that finds the run taken over sets `lost` and cancels: the
/// attempt stops, writing nothing over the one that took over.
async fn watch_cancel(
    app: Arc<App>,
    run: RunRow,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let run_id = run.id;
    let renew_every = u64::try_from((app.config.runner_lease / 3).as_millis() / 250)
        .unwrap_or(1)
        .max(1);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            // Handed over as this replica stops: the run is another's now.
            () = app.replica.handed_over.cancelled() => {
                lost.store(true, Ordering::Relaxed);
                cancel.cancel();
                return;
            }
        }
        ticks += 1;
        if matches!(
            db::runs::cancel_state(app.db.pool(), run_id).await,
            Ok((true, _))
        ) {
            cancel.cancel();
        }
        if ticks.is_multiple_of(renew_every)
            && let Ok(false) =
                db::runs::heartbeat(&app.db, run_id, &app.replica.id, run.attempt).await
        {
            tracing::warn!(
                run = run_id,
                "the run's lease was taken over; stopping this attempt"
            );
            lost.store(true, Ordering::Relaxed);
            cancel.cancel();
            return;
        }
    }
}

async fn run_steps(
    app: &Arc<App>,
    run: &RunRow,
    workspace: &Workspace,
    cancel: &CancellationToken,
    lost: &AtomicBool,
) -> Result<Ending, RunError> {
    if run.trigger == crate::delivery::ledger::rollback::TRIGGER {
        return run_rollback(app, run, cancel).await;
    }
    let pool = app.db.pool();
    let app_row = db::apps::get(pool, run.app_id)
        .await?
        .ok_or_else(|| RunError::Gone(format!("app {} is gone", run.app_id)))?;
    let env = db::environments::get(pool, run.environment_id)
        .await?
        .ok_or_else(|| RunError::Gone(format!("environment {} is gone", run.environment_id)))?;
    let config = crate::configs::at(
        &app.db,
        &app.git,
        app.config.pipeline_repo.as_deref(),
        &app_row,
        &run.pipeline_sha,
    )
    .await?;
    let entry = config
        .stack
        .iter()
        .find(|entry| entry.env == env.stack_entry)
        .cloned()
        .ok_or_else(|| {
            RunError::Gone(format!(
                "the stack of {} has no entry {:?} any more",
                app_row.name, env.stack_entry
            ))
        })?;

    // Steps are recorded first, so the run page shows the whole plan.
    let names: Vec<&str> = config.pipeline.steps.iter().map(Step::name).collect();
    let step_ids = db::steps::create_all(pool, run.id, &names).await?;
    // What the run builds: recorded when it was planned; a run planned
    // before artifacts were, or whose tree could not be read then, tries now.
    let artifact = match run.artifact_id {
        Some(artifact) => Some(artifact),
        None => {
            let artifact = crate::promotion::artifact_of(
                &app.db,
                (&app.git, app.config.pipeline_repo.as_deref()),
                &app_row,
                &run.commit_sha,
            )
            .await?;
            if let Some(artifact) = artifact {
                db::artifacts::set_for_run(pool, run.id, artifact).await?;
            }
            artifact
        }
    };
    let from = resume_point(app, run, workspace, &config).await?;
    // Judged again now: an artifact rejected (or no longer verified) since
    // the run was released does not go on, unless an admin overrode.
    if let Some(why) = unpromotable(app, run, artifact, &entry).await? {
        return Ok(Ending::Failed(format!("refused: {why}")));
    }
    // After the resume point, which clears what earlier attempts' steps
    // declared: the upstream build's outputs are copied for this attempt.
    let (promoted, not_promoted) =
        promoted_source(app, run, artifact, &entry, &app_row.name).await?;
    let kept = promoted.as_ref().and_then(|p| p.kept.clone());
    if from.reused {
        tracing::info!(
            run = run.id,
            step = from.step,
            "resuming in the earlier attempt's workspace"
        );
    } else {
        // A fresh workspace: what a crashed attempt left is never written into.
        workspace.remove().await;
        tokio::fs::create_dir_all(workspace.home()).await?;
        app.git
            .export(
                &app_row.source_url,
                &run.commit_sha,
                &workspace.app(),
                Export::all().cancelled_by(cancel),
            )
            .await?;
        if let Some(repo) = app.config.pipeline_repo.as_deref() {
            let folder = format!("apps/{}", app_row.name);
            // Steps see their scripts and pipeline.yaml; never the admins'
            // manifests, the app's environments nor what is marked private.
            app.git
                .export(
                    repo,
                    &run.pipeline_sha,
                    &workspace.pipeline(),
                    Export::folder(&folder)
                        .skipping(config.pipeline.hidden_from_steps())
                        .cancelled_by(cancel),
                )
                .await?;
            // The manifests go where only Gantry's deploy step reads them.
            if app
                .git
                .list_dirs(repo, &run.pipeline_sha, &folder)
                .await?
                .iter()
                .any(|dir| dir == "deploy")
            {
                app.git
                    .export(
                        repo,
                        &run.pipeline_sha,
                        &workspace.manifests(),
                        Export::folder(&format!("{folder}/deploy")).cancelled_by(cancel),
                    )
                    .await?;
            }
        }
        if let Some(kept) = &kept {
            let (from, to) = (kept.clone(), workspace.app());
            tokio::task::spawn_blocking(move || {
                std::fs::remove_dir_all(&to)?;
                crate::delivery::deploy::local::copy_tree(&from, &to)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .await
            .map_err(std::io::Error::other)??;
        }
    }
    hand_over(app, workspace).await?;
    let hosts = environment_hosts(app, run.app_id, &app_row.name).await?;
    // The deploy's log quotes the app's output: it is masked with the
    // secrets the app is given (a fork's app gets none).
    let masker = match (&config.pipeline.local, &run.from_fork) {
        (Some(local), None) => app.secrets().masker_of(run.app_id, &local.secrets).await?,
        _ => crate::secrets::mask::Masker::default(),
    };

    let context = template::context(
        &app_row.name,
        &env.name,
        &run.branch,
        &run.commit_sha,
        &entry.variables,
    );
    let image = match &config.pipeline.image {
        Some(template) => Some(
            template::render(template, &context)
                .map_err(|e| RunError::Config(format!("pipeline.yaml image: {e}")))?,
        ),
        None => None,
    };
    let url = env.url.clone();
    let vars = gantry_vars(
        app,
        run,
        &app_row.name,
        &env.name,
        &entry,
        image.as_deref(),
        url.as_deref(),
        workspace,
    );

    for (position, (step, step_id)) in config
        .pipeline
        .steps
        .iter()
        .zip(step_ids)
        .enumerate()
        .skip(from.step)
    {
        if cancel.is_cancelled() {
            return Ok(Ending::Cancelled);
        }
        let again = match &from.follow_on {
            Some((_, note)) if position == from.step => Some(note),
            _ => from.again.as_ref(),
        };
        if let Some(why) = again {
            sink(
                app,
                run.id,
                step_id,
                &crate::secrets::mask::Masker::default(),
            )
            .note(why)
            .await?;
        }
        db::steps::start(pool, step_id, (&app.replica.id, run.attempt), now_millis()).await?;
        app.events.send(
            run.id,
            RunEvent::Step {
                step_id,
                state: StepState::Running.as_str().into(),
            },
        );
        report::status(
            app,
            run.id,
            Some(step.name().to_string()),
            StatusState::Pending,
            "running".into(),
        );
        let result = match (step, &promoted) {
            (Step::Command(step), Some(Promoted { source, .. })) if step.build => {
                let mut sink = sink(app, run.id, step_id, &masker);
                let files = match &kept {
                    Some(_) => format!(
                        "the checkout is the build run {} deployed to {}",
                        source.run_id, source.environment
                    ),
                    None => "its image is deployed".to_string(),
                };
                let why = format!(
                    "built once: run {} built this artifact and it was verified in {}; this build step is skipped ({files})",
                    source.run_id, source.environment
                );
                sink.note(&why).await?;
                sink.finish().await?;
                StepResult {
                    state: StepState::Skipped,
                    exit_code: None,
                    error: Some(why),
                    log_bytes: sink.total_bytes(),
                    truncated: sink.truncated(),
                }
            }
            (Step::Command(step), _) => {
                if step.build
                    && let Some(why) = &not_promoted
                {
                    sink(
                        app,
                        run.id,
                        step_id,
                        &crate::secrets::mask::Masker::default(),
                    )
                    .note(why)
                    .await?;
                }
                let placement = command::Placement {
                    executor: config.executor_of(step, &app.default_executor()),
                    pod: &config.builds.pod,
                    position,
                    follow_on: from
                        .follow_on
                        .as_ref()
                        .filter(|_| position == from.step)
                        .map(|(pod, _)| pod.as_str()),
                    lost,
                    image_is_built: config.pipeline.steps.iter().any(
                        |step| matches!(step, Step::Command(step) if step.image_build.is_some()),
                    ),
                };
                // A step followed on gets its checkout back from its pod.
                if placement.follow_on.is_none() {
                    cache::restore(app, run, &config, step, step_id, workspace).await?;
                }
                let result = command::run(
                    app, run, step_id, step, &placement, &vars, &hosts, workspace, cancel,
                )
                .await?;
                if result.state == StepState::Succeeded {
                    cache::save(app, run, step, step_id, workspace).await?;
                }
                result
            }
            (Step::Deploy, _)
                if !app.config.builds_local && entry.targets.iter().any(|t| t == LOCAL_TARGET) =>
            {
                let mut sink = sink(app, run.id, step_id, &masker);
                let why = LOCAL_REFUSED.to_string();
                sink.note(&why).await?;
                sink.finish().await?;
                command::StepResult::failed(why)
            }
            (Step::Deploy, _) => {
                let mut sink = sink(app, run.id, step_id, &masker);
                if let Some(why) = unpromotable(app, run, artifact, &entry).await? {
                    let why = format!("refused: {why}");
                    sink.note(&why).await?;
                    sink.finish().await?;
                    return finish_refused_deploy(app, run, step_id, why).await;
                }
                let promoted_image = promoted.as_ref().and_then(|p| p.source.image.as_deref());
                let image =
                    match deploy_image(app, run, (promoted_image, image.as_deref()), &mut sink)
                        .await?
                    {
                        Ok(image) => image,
                        Err(why) => {
                            sink.note(&why).await?;
                            sink.finish().await?;
                            return finish_refused_deploy(app, run, step_id, why).await;
                        }
                    };
                let request = DeployRequest {
                    run: held(app, run),
                    app_id: run.app_id,
                    app_name: &app_row.name,
                    environment_id: env.id,
                    environment: &env.name,
                    stack_entry: &env.stack_entry,
                    entry: &entry,
                    config: &config,
                    branch: &run.branch,
                    commit_sha: &run.commit_sha,
                    pipeline_sha: &run.pipeline_sha,
                    commit_message: run.commit_message.as_deref().unwrap_or_default(),
                    commit_author: run.commit_author.as_deref().unwrap_or_default(),
                    image: image.as_deref(),
                    url: url.as_deref(),
                    vars: &vars,
                    checkout: &workspace.app(),
                    manifests_dir: &workspace.manifests(),
                    untrusted: run.from_fork.is_some(),
                };
                let outcome = deploy::deploy(&app.delivery(), &request, &mut sink, cancel).await;
                deploy_step_result(outcome, &mut sink).await?
            }
        };
        // A step this replica no longer holds is not reported: the
        // attempt that took the run over reports it.
        let recorded = finish_step(app, run, step_id, &result).await?;
        if recorded && let Some(state) = feedback::step_state(result.state) {
            report::status(
                app,
                run.id,
                Some(step.name().to_string()),
                state,
                result
                    .error
                    .clone()
                    .unwrap_or_else(|| result.state.as_str().to_string()),
            );
        }
        match result.state {
            // A pinned environment: built, tested, not deployed.
            StepState::Succeeded | StepState::Skipped => {}
            StepState::Cancelled => return Ok(Ending::Cancelled),
            _ => {
                let why = result.error.unwrap_or_else(|| "failed".to_string());
                return Ok(Ending::Failed(format!("step {} {why}", step.name())));
            }
        }
    }
    Ok(Ending::Succeeded)
}

/// Why the run's artifact may not go into its entry now, unless an admin
/// overrode the hold: rejected, or not (or no longer) verified upstream.
async fn unpromotable(
    app: &App,
    run: &RunRow,
    artifact: Option<i64>,
    entry: &StackEntry,
) -> Result<Option<String>, RunError> {
    let Some(why) =
        crate::promotion::hold(&app.db, artifact, entry, app.clock.now_millis()).await?
    else {
        return Ok(None);
    };
    if db::approvals::overridden(app.db.pool(), run.id).await? {
        return Ok(None);
    }
    Ok(Some(why))
}

/// The verified upstream build a promoted run deploys.
struct Promoted {
    source: db::artifacts::VerificationRow,
    /// Its files, on the local target (where it is kept).
    kept: Option<std::path::PathBuf>,
}

/// The verified upstream build a run deploys instead of building, where
/// its stack entry says `promote_from`, its artifact passed there and that
/// build is at hand — its files kept on this machine for the local target,
/// its image for clusters: recorded on the run with what that build's steps
/// declared. Otherwise `None`, and why it is built here (for the log).
async fn promoted_source(
    app: &App,
    run: &RunRow,
    artifact: Option<i64>,
    entry: &StackEntry,
    app_name: &str,
) -> Result<(Option<Promoted>, Option<String>), RunError> {
    let (Some(upstream), Some(artifact)) = (entry.promote_from.as_deref(), artifact) else {
        return Ok((None, None));
    };
    // A fork's build never stands in for anything.
    if run.from_fork.is_some() {
        return Ok((None, None));
    }
    let soak = entry.requires.as_ref().map_or(0, |r| {
        i64::try_from(r.soak_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    });
    let now = app.clock.now_millis();
    let Some(source) = crate::promotion::source(&app.db, artifact, upstream, soak, now).await?
    else {
        return Ok((
            None,
            Some(format!(
                "not promoted: artifact {artifact} was not verified in {upstream}; it is built here"
            )),
        ));
    };
    let local = entry.targets.iter().any(|t| t == LOCAL_TARGET);
    // On the local target the verified build is kept where it was
    // deployed: the checkout is a copy of it, so the steps after the build
    // and the deploy see the very files it ran.
    let kept = local
        .then(|| {
            app.local
                .kept_build(app_name, &source.environment, source.deployment_id)
        })
        .flatten();
    let missing = if local && kept.is_none() {
        Some(format!(
            "the build run {} deployed to {upstream} is not kept on this machine (the local target keeps the last 10 per environment)",
            source.run_id
        ))
    } else if !local && source.image.is_none() {
        Some(format!(
            "run {} in {upstream} deployed no image",
            source.run_id
        ))
    } else {
        None
    };
    if let Some(missing) = missing {
        return Ok((
            None,
            Some(format!("not promoted: {missing}; it is built here")),
        ));
    }
    let pool = app.db.pool();
    db::artifacts::set_promoted_from(pool, run.id, source.run_id).await?;
    db::artifacts::copy_outputs(pool, (run.id, run.attempt, &app.replica.id), source.run_id)
        .await?;
    tracing::info!(
        run = run.id,
        artifact,
        from = source.run_id,
        "deploys the build verified upstream"
    );
    Ok((Some(Promoted { source, kept }), None))
}

/// The image the deploy renders as `{{ image }}`: for a promoted run, the
/// image its upstream build deployed (whatever its own steps declared);
/// else what a step declared as the output `image` (the pushed digest),
/// else the pipeline's `image` template. A fork's declaration is not
/// taken, and one that is not a plain image reference fails the deploy (it
/// is pasted into manifests): the inner `Err` says why.
async fn deploy_image(
    app: &App,
    run: &RunRow,
    (promoted, template): (Option<&str>, Option<&str>),
    sink: &mut LogSink<'_>,
) -> Result<Result<Option<String>, String>, RunError> {
    if let Some(image) = promoted {
        let pinned = if image.contains("@sha256:") {
            ""
        } else {
            " (a tag, not a digest: what it names can change; declare `image=<repository>@sha256:…`)"
        };
        sink.note(&format!(
            "deploys the image the verified build deployed: {image}{pinned}"
        ))
        .await?;
        return Ok(Ok(Some(image.to_string())));
    }
    let outputs = db::artifacts::outputs_of_run(app.db.pool(), run.id).await?;
    let Some(declared) = outputs.iter().find(|o| o.name == "image") else {
        return Ok(Ok(template.map(str::to_string)));
    };
    if run.from_fork.is_some() {
        sink.note(
            "the output `image` a fork's step declared is not deployed; the pipeline's image is",
        )
        .await?;
        return Ok(Ok(template.map(str::to_string)));
    }
    Ok(match crate::promotion::image_reference(&declared.value) {
        Ok(image) => {
            sink.note(&format!(
                "deploys the image step {} declared: {image}",
                declared.step
            ))
            .await?;
            Ok(Some(image.to_string()))
        }
        Err(why) => Err(format!(
            "refused: the output `image` step {} declared: {}",
            declared.step, why.0
        )),
    })
}

/// Ends a deploy refused before it began: the step fails with `why`, the
/// run with it.
async fn finish_refused_deploy(
    app: &App,
    run: &RunRow,
    step_id: i64,
    why: String,
) -> Result<Ending, RunError> {
    let result = StepResult::failed(why.clone());
    finish_step(app, run, step_id, &result).await?;
    Ok(Ending::Failed(format!("step deploy {why}")))
}

/// Where an attempt of a run starts.
struct ResumePoint {
    /// The position of its first step.
    step: usize,
    /// It carries on in the earlier attempt's workspace.
    reused: bool,
    /// What each step it runs says first, in a later attempt.
    again: Option<String>,
    /// The build pod of the earlier attempt its first step follows on,
    /// and what that step says first instead.
    follow_on: Option<(String, String)>,
}

/// A first attempt starts at the first step. A later one (the run was taken
/// over) starts at the step the run was in, in the earlier attempt's
/// workspace, when this replica has it (it ran that attempt and
/// restarted), or when that step runs on a cluster and its build pod still
/// runs: the step follows that pod on, and the checkout comes back from it.
/// Otherwise it starts from the first step in a fresh workspace: what the
/// earlier steps built is on another replica's disk, a per-replica cache.
/// The other steps it runs start from their start; a deploy is applied
/// again (idempotently, as a new deployment).
async fn resume_point(
    app: &App,
    run: &RunRow,
    workspace: &Workspace,
    config: &crate::gitops::schema::AppConfig,
) -> Result<ResumePoint, RunError> {
    if run.attempt <= 1 {
        return Ok(ResumePoint {
            step: 0,
            reused: false,
            again: None,
            follow_on: None,
        });
    }
    let pool = app.db.pool();
    let done = db::steps::progress(pool, run.id)
        .await?
        .iter()
        .take_while(|(_, state)| matches!(state, StepState::Succeeded | StepState::Skipped))
        .count();
    let earlier = Workspace::new(&app.work_dir(), run.id, run.attempt - 1);
    let reused = done > 0 && earlier.app().is_dir() && workspace.take_from(&earlier).await.is_ok();
    if !reused {
        earlier.remove().await;
    }
    // A build pod still running the step: it carries the whole checkout,
    // whatever disk the earlier steps' work was on.
    let follow_on = earlier_pod(app, run, config, done).await;
    let step = if reused || follow_on.is_some() {
        done
    } else {
        0
    };
    let position = i64::try_from(step).unwrap_or(i64::MAX);
    db::steps::again(pool, run.id, position).await?;
    db::run_attempts::start(
        pool,
        run.id,
        run.attempt,
        &app.replica.id,
        position,
        now_millis(),
    )
    .await?;
    let ended = db::run_attempts::of_run(pool, run.id)
        .await?
        .into_iter()
        .rev()
        .find(|a| a.attempt < run.attempt)
        .and_then(|a| a.interrupted)
        .unwrap_or_else(|| "interrupted".to_string());
    let replayed = if step == 0 && done > 0 {
        "; the steps before the one it was in run again too, since what they built stayed on the replica that ran them"
    } else {
        ""
    };
    let follow_on = follow_on.map(|pod| {
        let note = format!(
            "attempt {} on replica {}: follows on the step's build pod {pod} (attempt {} ended: {ended})",
            run.attempt,
            app.replica.id,
            run.attempt - 1
        );
        (pod, note)
    });
    Ok(ResumePoint {
        step,
        reused,
        follow_on,
        again: Some(format!(
            "attempt {} on replica {}: this step runs from its start (attempt {} ended: {ended}){replayed}",
            run.attempt,
            app.replica.id,
            run.attempt - 1
        )),
    })
}

/// The build pod an earlier attempt left running the step at `position`,
/// when that step runs on a cluster and the pod can be followed on.
async fn earlier_pod(
    app: &App,
    run: &RunRow,
    config: &crate::gitops::schema::AppConfig,
    position: usize,
) -> Option<String> {
    let Some(Step::Command(step)) = config.pipeline.steps.get(position) else {
        return None;
    };
    let crate::gitops::builds::Executor::Kubernetes(executor) =
        config.executor_of(step, &app.default_executor())
    else {
        return None;
    };
    match crate::builds::reattach::find(&app.builds(), &executor, run.id, run.attempt, position)
        .await
    {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(run = run.id, %error, "cannot look for the earlier attempt's build pod; the step starts anew");
            None
        }
    }
}

/// Gives the workspace to this attempt's sandbox user: it writes the
/// checkout and its home, nothing else, and reads the pipeline's scripts
/// (read-only inside) whatever Gantry's umask. A resumed attempt runs as a
/// uid of its own: the earlier attempt's files become its.
async fn hand_over(app: &App, workspace: &Workspace) -> std::io::Result<()> {
    for dir in [workspace.app(), workspace.home(), workspace.pipeline()] {
        if dir.is_dir() {
            app.sandbox.hand_over(&dir, workspace.user_ids()).await?;
        }
    }
    Ok(())
}

/// A deploy-like step's outcome as the step records it.
async fn deploy_step_result(
    outcome: Result<DeployOutcome, DeployError>,
    sink: &mut LogSink<'_>,
) -> Result<StepResult, RunError> {
    sink.finish().await?;
    let (state, error) = match outcome {
        Ok(DeployOutcome::Deployed) => (StepState::Succeeded, None),
        Ok(DeployOutcome::Pinned(why)) => (StepState::Skipped, Some(why)),
        Err(DeployError::Cancelled) => (StepState::Cancelled, Some("cancelled".to_string())),
        // Not written: the attempt that took over owns the step now.
        Err(lost @ DeployError::Lost { .. }) => (StepState::Cancelled, Some(lost.to_string())),
        Err(error) => (StepState::Failed, Some(error.to_string())),
    };
    Ok(StepResult {
        state,
        exit_code: None,
        error,
        log_bytes: sink.total_bytes(),
        truncated: sink.truncated(),
    })
}

/// A rollback run: one step that re-applies a stored release (see
/// `delivery::ledger::rollback`).
async fn run_rollback(
    app: &App,
    run: &RunRow,
    cancel: &CancellationToken,
) -> Result<Ending, RunError> {
    let pool = app.db.pool();
    let step_id = db::steps::create_all(pool, run.id, &["rollback"])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RunError::Gone("the rollback step was not recorded".into()))?;
    db::steps::start(pool, step_id, (&app.replica.id, run.attempt), now_millis()).await?;
    app.events.send(
        run.id,
        RunEvent::Step {
            step_id,
            state: StepState::Running.as_str().into(),
        },
    );
    let masker = app.secrets().masker(run.app_id).await?;
    let mut sink = sink(app, run.id, step_id, &masker);
    let outcome = crate::delivery::ledger::rollback::execute(
        &app.delivery(),
        run,
        held(app, run),
        &mut sink,
        cancel,
    )
    .await
    .map(|()| DeployOutcome::Deployed);
    let result = deploy_step_result(outcome, &mut sink).await?;
    finish_step(app, run, step_id, &result).await?;
    Ok(match result.state {
        StepState::Succeeded => Ending::Succeeded,
        StepState::Cancelled => Ending::Cancelled,
        _ => Ending::Failed(format!(
            "step rollback {}",
            result.error.unwrap_or_else(|| "failed".into())
        )),
    })
}

/// Records a step's end and tells the run page.
async fn finish_step(
    app: &App,
    run: &RunRow,
    step_id: i64,
    result: &StepResult,
) -> Result<bool, crate::db::QueryError> {
    let run_id = run.id;
    let recorded = db::steps::finish(
        app.db.pool(),
        step_id,
        (&app.replica.id, run.attempt),
        &StepOutcome {
            state: result.state,
            exit_code: result.exit_code,
            error: result.error.as_deref(),
            log_bytes: i64::try_from(result.log_bytes).unwrap_or(i64::MAX),
            log_truncated: result.truncated,
        },
        now_millis(),
    )
    .await?;
    if recorded {
        app.events.send(
            run_id,
            RunEvent::Step {
                step_id,
                state: result.state.as_str().into(),
            },
        );
    }
    Ok(recorded)
}

/// The `GANTRY_*` variables and the stack entry's variables.
#[allow(clippy::too_many_arguments)]
fn gantry_vars(
    app: &App,
    run: &RunRow,
    app_name: &str,
    env_name: &str,
    entry: &StackEntry,
    image: Option<&str>,
    url: Option<&str>,
    workspace: &Workspace,
) -> Vec<(String, String)> {
    let mut vars: BTreeMap<String, String> = entry.variables.clone();
    let mut set = |key: &str, value: String| {
        vars.insert(key.to_string(), value);
    };
    set("GANTRY_APP", app_name.into());
    set("GANTRY_ENV", env_name.into());
    set("GANTRY_BRANCH", run.branch.clone());
    set(
        "GANTRY_BRANCH_SLUG",
        crate::gitops::stack::branch_slug(&run.branch),
    );
    set("GANTRY_COMMIT", run.commit_sha.clone());
    set("GANTRY_SHORT_SHA", run.commit_sha.chars().take(7).collect());
    set("GANTRY_PIPELINE_SHA", run.pipeline_sha.clone());
    set("GANTRY_RUN_ID", run.id.to_string());
    let seen = |mount| app.sandbox.seen(&mount).display().to_string();
    set("GANTRY_PIPELINE_DIR", seen(workspace.pipeline_mount()));
    set("GANTRY_WORKSPACE", seen(workspace.app_mount()));
    set(
        crate::sandbox::process::INSTANCE_VAR,
        app.instance_tag.clone(),
    );
    if let Some(image) = image {
        set("GANTRY_IMAGE", image.into());
    }
    if let Some(url) = url {
        set("GANTRY_URL", url.into());
    }
    if entry.targets.iter().any(|t| t == LOCAL_TARGET) {
        set(
            "GANTRY_PREFIX_URL",
            template::local_prefix_url(&app.config.public_url, app_name, env_name),
        );
    }
    vars.into_iter().collect()
}

/// The hosts of the app's environments on the local target: inside a
/// sandbox they resolve to the relay that reaches them (and only them).
async fn environment_hosts(
    app: &App,
    app_id: i64,
    name: &str,
) -> Result<Vec<String>, crate::db::QueryError> {
    let mut hosts = vec![app.config.preview_domain.clone()];
    if let Some(host) = app.config.public_url.host_str() {
        hosts.push(host.to_string());
    }
    for env in db::environments::list_for_app(app.db.pool(), app_id).await? {
        hosts.push(format!(
            "{}--{name}.{}",
            env.name, app.config.preview_domain
        ));
    }
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// `run`'s current attempt as this replica holds it.
fn held<'a>(app: &'a App, run: &RunRow) -> db::runs::Holder<'a> {
    db::runs::Holder {
        run_id: run.id,
        runner: &app.replica.id,
        attempt: run.attempt,
    }
}
