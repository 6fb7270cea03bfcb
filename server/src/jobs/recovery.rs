//! Recovery after a crash, a kill or a lost replica: processes left behind
//! by the previous Gantry are stopped, interrupted runs end in a clear state
//! (and resume when they had not deployed yet), half-done deployments are
//! marked failed and never re-applied, locks are released, and every live
//! environment of the local target is started again. On SQLite (one
//! process) that is everything running at start-up; on PostgreSQL, where
//! replicas share the work, only runs whose lease expired — at start-up and
//! then every third of `runner.lease` (`take_over_lapsed`, the `takeover` job).

use std::path::Path;

use app::dto::{EnvironmentState, RunState};
use nix::sys::signal::Signal;

use crate::db::{self, Backend, now_millis, runs::Orphans, runs::TakeOver};
use crate::delivery::deploy::local::{LocalSpec, parse_manifest};
use crate::sandbox::process::{INSTANCE_VAR, signal_group};
use crate::state::App;

pub async fn recover(app: &App) -> anyhow::Result<()> {
    let killed = kill_orphans(&app.instance_tag);
    if killed > 0 {
        tracing::warn!(killed, "stopped process groups left by a previous gantry");
    }
    let pool = app.db.pool();
    let now = now_millis();
    if app.db.backend() == Backend::Sqlite {
        // SQLite is one process's (`storage::DatabaseLock`): whatever is
        // running or deploying was this Gantry's before it stopped.
        take_over(app, Orphans::All, "interrupted by a restart of gantry").await?;
        // Deployments no run of it is resuming.
        for deployment in db::deployments::list_deploying(pool).await? {
            let mut tx = app.db.begin().await?;
            crate::delivery::deploy::lifecycle::abandon(
                &mut tx,
                &deployment,
                "interrupted by a restart of gantry; not re-applied",
                now,
            )
            .await?;
            crate::db::commit(tx).await?;
        }
        for env in db::environments::list_all_active(pool).await? {
            // A deploying environment whose deployment was concluded above
            // (or that never got one) says so too.
            if env.state == EnvironmentState::Deploying {
                conclude_interrupted(app, env.id, env.deployment_id.is_some(), now).await?;
            }
        }
    } else {
        // Other replicas may be running runs right now: only those whose
        // lease expired are taken over.
        take_over_expired(app).await?;
    }
    db::environments::release_stale_locks(pool).await?;
    sweep_workspaces(app).await?;
    // The processes of the local target live on the replica that runs it.
    if app.runs_local() {
        restore_local(app).await?;
    }
    Ok(())
}

/// Removes the workspaces in this replica's work folder that no attempt
/// will go on in: a finished run's, and one whose run went on elsewhere
/// (taken over by another replica while this one was down). Kept: the
/// workspace of an attempt still running by the database's account (this
/// replica's, killed: its lease runs out and this replica may resume it in
/// place), and the one a queued run's next attempt resumes from.
async fn sweep_workspaces(app: &App) -> anyhow::Result<usize> {
    let dir = app.work_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((id, attempt)) = name.to_str().and_then(workspace_of) else {
            continue;
        };
        // Only this replica ever ran an attempt whose folder is here.
        // (A queued run's attempt counts up when it is claimed.)
        let keep = db::runs::get(app.db.pool(), id).await?.is_some_and(|run| {
            (run.state == RunState::Running && run.attempt == attempt)
                || (run.state == RunState::Queued
                    && (run.attempt == attempt || run.attempt == attempt + 1))
        });
        if !keep {
            crate::runs::workspace::Workspace::new(&dir, id, attempt)
                .remove()
                .await;
            swept += 1;
        }
    }
    if swept > 0 {
        tracing::info!(swept, "removed workspaces no attempt goes on in");
    }
    Ok(swept)
}

/// `run-<id>-<attempt>`, as `Workspace::new` names a run's folder.
fn workspace_of(name: &str) -> Option<(i64, i64)> {
    let (id, attempt) = name.strip_prefix("run-")?.split_once('-')?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

/// Runs whose replica stopped renewing their lease (it died, or lost the
/// database) are taken over (PostgreSQL, every third of the lease).
pub async fn take_over_lapsed(app: &App) -> anyhow::Result<()> {
    let taken = take_over_expired(app).await?;
    if taken > 0 {
        let _ = db::environments::release_stale_locks(app.db.pool()).await;
        app.flow.runner_wake.notify_one();
        tracing::warn!(
            taken,
            "took over runs whose replica stopped renewing their lease"
        );
    }
    Ok(())
}

/// Takes over the runs whose lease expired; how many this replica took.
async fn take_over_expired(app: &App) -> anyhow::Result<usize> {
    let lease = app.config.runner_lease;
    let reason = format!(
        // Which replica resumes it is the next attempt's to say: any may
        // claim it once it is queued.
        "its replica stopped renewing the run's lease ({}); replica {} queued it again for any replica to resume",
        crate::config::duration::HumanDuration(lease),
        app.replica.id
    );
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    take_over(app, Orphans::LeaseExpired(lease_ms), &reason).await
}

/// As a replica shuts down (PostgreSQL; its runner has stopped claiming):
/// its running runs are queued again at once, for another replica to
/// resume, instead of a lease later. Then their executors are told to stop
/// (`App::handed_over`); none holds its run any more, so they write
/// nothing. SQLite keeps them: the one process resumes them in place when
/// it starts again, with their workspaces.
pub async fn hand_over(app: &App) -> anyhow::Result<usize> {
    if app.db.backend() == Backend::Sqlite {
        return Ok(0);
    }
    let reason = format!(
        "its replica {} shut down and handed it over",
        app.replica.id
    );
    let handed = take_over(app, Orphans::Of(&app.replica.id), &reason).await;
    app.replica.handed_over.cancel();
    handed
}

/// A run interrupted this many times is not resumed again: something in
/// it (a step, a deploy) may be what brings its replicas down.
const MAX_ATTEMPTS: i64 = 3;

/// Takes each running run whose lease (ms, in the database's clock;
/// `None`: every running run) ran out away from its replica — atomically,
/// so of replicas racing for a run one takes it — and queues it again: its
/// next attempt resumes at the step it was in (see `runner::execute`), and
/// a deployment it had started is concluded and applied again by that
/// attempt. It ends as failed instead when a newer run of its environment
/// is waiting, or after `MAX_ATTEMPTS`.
async fn take_over(app: &App, which: Orphans<'_>, reason: &str) -> anyhow::Result<usize> {
    let pool = app.db.pool();
    let mut taken = 0;
    let expired = db::runs::list_orphans(&app.db, which).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    for run in expired {
        let now = now_millis();
        let newer = db::runs::list_unfinished_for_environment(pool, run.environment_id)
            .await?
            .into_iter()
            .any(|r| r.id > run.id);
        // Why it is not resumed, and the state it ends in then.
        let ended = if run.cancel_requested != 0 {
            if db::runs::cancel_state(pool, run.id).await?.1 {
                Some((
                    RunState::Superseded,
                    format!("{reason}; not resumed: superseded by a newer push"),
                ))
            } else {
                Some((
                    RunState::Cancelled,
                    format!("{reason}; not resumed: it was asked to stop"),
                ))
            }
        } else if newer {
            Some((
                RunState::Superseded,
                format!("{reason}; not resumed: a newer run of its environment is waiting"),
            ))
        } else if run.attempt >= MAX_ATTEMPTS {
            Some((
                RunState::Failed,
                format!("{reason}; not resumed: interrupted {MAX_ATTEMPTS} times"),
            ))
        } else {
            None
        };
        let what = match &ended {
            Some((state, why)) => TakeOver::End(*state, why),
            None => TakeOver::Resume,
        };
        // One transaction: until it commits, no replica can claim the run
        // whose steps and deployment are being put in order.
        let mut tx = app.db.begin().await?;
        if !db::runs::take_over(&app.db, &mut tx, run.id, which, what, now).await? {
            continue;
        }
        taken += 1;
        db::run_attempts::finish(&mut *tx, run.id, Some(reason), now).await?;
        if ended.is_some() {
            db::steps::interrupt_running(&mut *tx, run.id, reason, now).await?;
            db::steps::skip_pending(&mut *tx, run.id).await?;
        } else {
            // Its next attempt runs the step from its start.
            db::steps::pause_running(&mut *tx, run.id).await?;
        }
        let detail = match ended {
            Some(_) => format!("interrupted ({reason}); not re-applied"),
            None => format!(
                "interrupted ({reason}); attempt {} of run {} applies it again",
                run.attempt + 1,
                run.id
            ),
        };
        // Read once the run is taken, not before: a deployment its replica
        // began meanwhile is concluded too.
        let deploying = db::deployments::list_deploying(&mut *tx).await?;
        for deployment in deploying.iter().filter(|d| d.run_id == Some(run.id)) {
            crate::delivery::deploy::lifecycle::abandon(&mut tx, deployment, &detail, now).await?;
        }
        if let Some(env) = db::environments::get(&mut *tx, run.environment_id).await?
            && env.state == EnvironmentState::Deploying
            && env.locked_by_run == Some(run.id)
        {
            let (state, detail) =
                crate::delivery::deploy::lifecycle::interrupted(env.deployment_id.is_some());
            db::environments::set_state(&mut *tx, env.id, state, Some(detail), now).await?;
        }
        db::environments::release_lock_of(&mut *tx, run.environment_id, run.id).await?;
        crate::db::commit(tx).await?;
        match ended {
            Some((state, why)) => tracing::warn!(
                run = run.id,
                state = state.as_str(),
                why,
                "run interrupted; ended, not resumed"
            ),
            None => tracing::warn!(
                run = run.id,
                attempt = run.attempt + 1,
                reason,
                "run interrupted; queued to resume as its next attempt"
            ),
        }
    }
    if taken > 0 {
        app.flow.runner_wake.notify_one();
    }
    Ok(taken)
}

/// An environment left `deploying` says what became of it.
async fn conclude_interrupted(
    app: &App,
    environment_id: i64,
    had_deployment: bool,
    now: i64,
) -> Result<(), crate::db::QueryError> {
    let (state, detail) = crate::delivery::deploy::lifecycle::interrupted(had_deployment);
    db::environments::set_state(app.db.pool(), environment_id, state, Some(detail), now).await
}

/// Starts the recorded process of every live local environment again.
async fn restore_local(app: &App) -> anyhow::Result<()> {
    let pool = app.db.pool();
    for row in db::local_processes::list(pool).await? {
        let Some(env) = db::environments::get(pool, row.environment_id).await? else {
            continue;
        };
        let Some(app_row) = db::apps::get(pool, env.app_id).await? else {
            continue;
        };
        let manifest = db::deployments::get(pool, row.deployment_id)
            .await?
            .and_then(|deployment| {
                serde_json::from_str::<serde_json::Value>(&deployment.manifests).ok()
            })
            .and_then(|targets| {
                targets
                    .get(crate::gitops::schema::LOCAL_TARGET)
                    .map(ToString::to_string)
            })
            .and_then(|text| parse_manifest(&text));
        let Some(manifest) = manifest else {
            db::environments::set_state(
                pool,
                env.id,
                EnvironmentState::Failed,
                Some("cannot restart: the deployment's manifest is unreadable"),
                now_millis(),
            )
            .await?;
            continue;
        };
        let secret_values = match app.secrets().resolve(app_row.id, &manifest.secrets).await {
            Ok(values) => values,
            Err(error) => {
                db::environments::set_state(
                    pool,
                    env.id,
                    EnvironmentState::Failed,
                    Some(&format!("cannot restart: {error}")),
                    now_millis(),
                )
                .await?;
                continue;
            }
        };
        let spec = LocalSpec {
            app: app_row.name.clone(),
            env: env.name.clone(),
            environment_id: env.id,
            deployment_id: row.deployment_id,
            manifest,
            secret_values,
            instance_tag: String::new(),
        };
        match app
            .local
            .start(&app.db, spec, row.workdir.clone().into())
            .await
        {
            Ok(started) => {
                tracing::info!(app = %app_row.name, env = %env.name, port = started.port, "local environment restarted")
            }
            Err(error) => {
                tracing::error!(app = %app_row.name, env = %env.name, %error, "cannot restart a local environment");
                db::environments::set_state(
                    pool,
                    env.id,
                    EnvironmentState::Failed,
                    Some(&format!("restart failed: {error}")),
                    now_millis(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Kills every process group whose leader carries this instance's tag.
pub fn kill_orphans(tag: &str) -> usize {
    let wanted = format!("{INSTANCE_VAR}={tag}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let own = std::process::id();
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(environ) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"))
        else {
            continue;
        };
        let tagged = environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes());
        if tagged && signal_group(pid, Signal::SIGKILL) {
            killed += 1;
        }
    }
    killed
}
