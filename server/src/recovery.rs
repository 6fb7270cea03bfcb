//! Start-up recovery after a crash or a kill: processes left behind by the
//! previous Gantry are stopped, interrupted runs end in a clear state (and
//! resume when they had not deployed yet), half-done deployments are marked
//! failed and never re-applied, locks are released, and every live
//! environment of the local target is started again.

use std::path::Path;

use app::dto::{EnvironmentState, RunState};
use nix::sys::signal::Signal;

use crate::db::{self, now_millis, runs::NewRun};
use crate::deploy::local::{LocalSpec, parse_manifest};
use crate::sandbox::process::{INSTANCE_VAR, signal_group};
use crate::state::App;

pub async fn recover(app: &App) -> anyhow::Result<()> {
    let killed = kill_orphans(&app.instance_tag);
    if killed > 0 {
        tracing::warn!(killed, "stopped process groups left by a previous gantry");
    }
    let pool = app.db.pool();
    let now = now_millis();
    let interrupted = db::deployments::list_deploying(pool).await?;
    for deployment in &interrupted {
        crate::deploy::lifecycle::abandon(&app.db, deployment, now).await?;
    }
    for run in db::runs::list_running(pool).await? {
        let reason = "interrupted by a restart of gantry";
        db::steps::interrupt_running(pool, run.id, reason, now).await?;
        db::steps::skip_pending(pool, run.id).await?;
        db::runs::finish(pool, run.id, RunState::Failed, Some(reason), now).await?;
        let deployed = interrupted.iter().any(|d| d.run_id == Some(run.id))
            || had_deployment(app, run.id).await?;
        let newer = db::runs::list_unfinished_for_environment(pool, run.environment_id)
            .await?
            .into_iter()
            .any(|r| r.id > run.id);
        if !deployed && !newer {
            let resumed = db::runs::insert(
                pool,
                &NewRun {
                    app_id: run.app_id,
                    environment_id: run.environment_id,
                    branch: &run.branch,
                    commit_sha: &run.commit_sha,
                    pipeline_sha: &run.pipeline_sha,
                    state: RunState::Queued,
                    // A rollback resumes as the same rollback.
                    trigger: if run.trigger == crate::ledger::rollback::TRIGGER {
                        crate::ledger::rollback::TRIGGER
                    } else {
                        "resume"
                    },
                },
                now,
            )
            .await?;
            // A fork's build stays one: no secrets when it resumes either.
            if let Some(fork) = &run.from_fork {
                db::runs::set_from_fork(pool, resumed, fork).await?;
            }
            if let Some((to, by, reason)) = db::runs::rollback_of_run(pool, run.id).await? {
                db::runs::set_rollback(pool, resumed, to, &by, &reason).await?;
            }
            db::runs::set_commit_info(
                pool,
                resumed,
                run.commit_message.as_deref().unwrap_or_default(),
                run.commit_author.as_deref().unwrap_or_default(),
            )
            .await?;
            tracing::warn!(
                run = run.id,
                resumed,
                "run interrupted before deploying; resumed as a new run"
            );
        } else {
            tracing::warn!(run = run.id, "run interrupted; ended as failed");
        }
    }
    db::environments::release_stale_locks(pool).await?;

    for env in db::environments::list_all_active(pool).await? {
        // A deploying environment whose deployment was concluded above
        // (or that never got one) says so too.
        if env.state == EnvironmentState::Deploying.as_str() {
            let (state, detail) =
                crate::deploy::lifecycle::interrupted(env.deployment_id.is_some());
            db::environments::set_state(pool, env.id, state, Some(detail), now).await?;
        }
    }

    restore_local(app).await?;
    Ok(())
}

async fn had_deployment(app: &App, run_id: i64) -> Result<bool, sqlx::Error> {
    db::deployments::exists_for_run(app.db.pool(), run_id).await
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
