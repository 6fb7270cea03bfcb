//! One command step: its secrets, its sandbox, its output into the log,
//! its limits, timeout and cancellation, and its test reports.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use app::dto::StepState;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::builds::step::Reattach;
use crate::builds::{BuildStep, PodEnding};
use crate::db::{self, now_millis, runs::RunRow};
use crate::gitops::builds::{BuildPod, Executor, KubernetesExecutor};
use crate::gitops::schema::{CommandStep, StepNetwork};
use crate::runs::logs::{LineSplitter, LogSink};
use crate::runs::workspace::Workspace;
use crate::sandbox::{Limits, Network, Sandboxed, Spec};
use crate::secrets::mask::Masker;
use crate::state::App;

/// How a step ended, as the run records it.
pub struct StepResult {
    pub state: StepState,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub log_bytes: u64,
    pub truncated: bool,
}

impl StepResult {
    pub fn failed(error: String) -> StepResult {
        StepResult {
            state: StepState::Failed,
            exit_code: None,
            error: Some(error),
            log_bytes: 0,
            truncated: false,
        }
    }
}

/// What stops a step early.
enum Interruption {
    TimedOut,
    Cancelled,
    Limit(crate::sandbox::LimitHit),
}

/// A log sink for one step of a run, masking every secret of the app.
pub fn sink<'a>(app: &'a App, run_id: i64, step_id: i64, masker: &Masker) -> LogSink<'a> {
    LogSink::new(
        &app.db,
        &app.events,
        run_id,
        step_id,
        masker.clone(),
        app.config.runner_log_limit_bytes,
    )
}

pub fn limits(step: &CommandStep) -> Limits {
    let r = &step.resources;
    Limits {
        memory_bytes: r.memory_bytes,
        pids: r.pids,
        cpu_millis: r.cpu_millis,
        tmp_bytes: r.tmp_bytes,
    }
}

pub fn network(network: StepNetwork) -> Network {
    match network {
        StepNetwork::Default => Network::Isolated,
        StepNetwork::None => Network::None,
        StepNetwork::Host => Network::Host,
    }
}

/// Where a step finds the file to declare its outputs in.
pub const OUTPUTS_VAR: &str = "GANTRY_OUTPUTS";

/// What the step declared through `$GANTRY_OUTPUTS`, kept with the run
/// (masked as its log) once it succeeded; a bad file fails it, saying why.
/// The file goes either way.
async fn declared_outputs(
    app: &App,
    run: &RunRow,
    (step, image_is_built): (&CommandStep, bool),
    workspace: &Workspace,
    sink: &mut LogSink<'_>,
    result: StepResult,
) -> Result<StepResult, super::RunError> {
    let file = workspace.outputs();
    let read = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || crate::runs::outputs::read(&file))
            .await
            .map_err(std::io::Error::other)?
    };
    crate::runs::workspace::remove_any(&file).await;
    if result.state != StepState::Succeeded {
        return Ok(result);
    }
    // A name that holds a secret would show it: refused, as the file is.
    // So is `image` where the image step pushes the run's image.
    let read = read.and_then(|found| {
        if found.iter().any(|(name, _)| sink.mask(name) != *name) {
            Err(crate::runs::outputs::OutputsError::SecretName)
        } else if image_is_built && found.iter().any(|(name, _)| name == "image") {
            Err(crate::runs::outputs::OutputsError::ImageIsBuilt)
        } else {
            Ok(found)
        }
    });
    match read {
        Ok(found) if found.is_empty() => Ok(result),
        Ok(found) => {
            let masked: Vec<(String, String)> = found
                .into_iter()
                .map(|(name, value)| (name, sink.mask(&value)))
                .collect();
            db::artifacts::record_outputs(
                app.db.pool(),
                (run.id, run.attempt, &app.replica.id),
                &step.name,
                &masked,
            )
            .await?;
            let names: Vec<&str> = masked.iter().map(|(name, _)| name.as_str()).collect();
            sink.note(&format!("outputs: {}", names.join(", "))).await?;
            Ok(result)
        }
        Err(error) => {
            // It quotes what the step wrote: masked, as its log.
            let why = sink.mask(&error.to_string());
            sink.note(&why).await?;
            Ok(StepResult {
                exit_code: result.exit_code,
                ..StepResult::failed(why)
            })
        }
    }
}

/// Where a command step runs, as its pipeline says.
pub struct Placement<'a> {
    pub executor: Executor,
    pub pod: &'a BuildPod,
    /// Its place in the pipeline.
    pub position: usize,
    /// The build pod an earlier attempt of the run started for the step,
    /// followed on instead of starting the step again.
    pub follow_on: Option<&'a str>,
    /// Set when this replica lost the run: a build pod is left running
    /// for the attempt that took the run over.
    pub lost: &'a AtomicBool,
    /// The pipeline has an image step: the image it pushed is the run's,
    /// and no step may declare another.
    pub image_is_built: bool,
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    app: &App,
    run: &RunRow,
    step_id: i64,
    step: &CommandStep,
    placement: &Placement<'_>,
    vars: &[(String, String)],
    hosts: &[String],
    workspace: &Workspace,
    cancel: &CancellationToken,
) -> Result<StepResult, super::RunError> {
    // A fork's code is a stranger's: it gets none of the app's secrets.
    let (names, left_out): (&[String], _) = match &run.from_fork {
        Some(fork) if !step.secrets.is_empty() => (
            &[],
            Some(format!(
                "this build comes from the fork {fork}: its steps get no secrets ({} left out)",
                step.secrets.join(", ")
            )),
        ),
        Some(_) => (&[], None),
        None => (&step.secrets, None),
    };
    let secret_values = match app.secrets().resolve(run.app_id, names).await {
        Ok(values) => values,
        Err(error) => {
            let mut sink = sink(app, run.id, step_id, &Masker::default());
            sink.note(&error.to_string()).await?;
            return Ok(StepResult::failed(error.to_string()));
        }
    };
    // Masked with what the step was given, and only that: masking other
    // secrets would tell a step which of its guesses is one.
    let masker = Masker::new(secret_values.iter().map(|(_, value)| value));
    let mut sink = sink(app, run.id, step_id, &masker);
    // What an earlier step declared is not this one's.
    crate::runs::workspace::remove_any(&workspace.outputs()).await;
    if let Some(note) = left_out {
        sink.note(&note).await?;
    }

    if let Executor::Kubernetes(executor) = &placement.executor {
        let mut env: Vec<(String, String)> = vars
            .iter()
            .filter(|(key, _)| key != crate::sandbox::process::INSTANCE_VAR)
            .map(|(key, value)| match key.as_str() {
                "GANTRY_WORKSPACE" => (key.clone(), crate::builds::pod::WORKSPACE.to_string()),
                "GANTRY_PIPELINE_DIR" => (key.clone(), crate::builds::pod::PIPELINE.to_string()),
                _ => (key.clone(), value.clone()),
            })
            .collect();
        env.push((
            OUTPUTS_VAR.into(),
            crate::builds::pod::OUTPUTS_FILE.to_string(),
        ));
        env.extend(step.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let on = OnCluster {
            step_id,
            step,
            executor,
            placement,
            env: &env,
            secrets: &secret_values,
        };
        return on_cluster(app, run, &on, workspace, sink, cancel).await;
    }
    if !app.config.builds_local {
        sink.note(super::execute::LOCAL_REFUSED).await?;
        sink.finish().await?;
        return Ok(StepResult::failed(
            super::execute::LOCAL_REFUSED.to_string(),
        ));
    }
    let mut env: Vec<(String, String)> = vars.to_vec();
    env.extend(step.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(secret_values);
    let home = app.sandbox.seen(&workspace.home_mount());
    env.push(("HOME".into(), home.display().to_string()));
    env.push((
        OUTPUTS_VAR.into(),
        home.join(crate::runs::workspace::OUTPUTS_FILE)
            .display()
            .to_string(),
    ));
    if step.network == StepNetwork::Host {
        db::steps::set_network(app.db.pool(), step_id, "host").await?;
        sink.note("this step runs on the host's network (network: host in pipeline.yaml)")
            .await?;
    }
    let limits = limits(step);
    let spawned = app
        .sandbox
        .spawn(Spec {
            script: step.run.clone(),
            mounts: workspace.mounts(),
            cwd: workspace.app_mount(),
            env,
            limits,
            network: network(step.network),
            publish: None,
            hosts: hosts.to_vec(),
            user: workspace.user_ids(),
            builder: step.image_build.is_some(),
            stdout: std::process::Stdio::piped(),
            stderr: std::process::Stdio::piped(),
        })
        .await;
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            sink.note(&format!("cannot start the step: {error}"))
                .await?;
            return Ok(StepResult::failed(error.to_string()));
        }
    };
    let interruption = follow_output(&mut child, &mut sink, step.timeout_seconds, cancel).await?;

    let result = match interruption {
        Some(Interruption::TimedOut) => {
            child.terminate(Duration::from_secs(5)).await;
            let message = format!(
                "timed out after {}",
                crate::config::duration::HumanDuration(Duration::from_secs(step.timeout_seconds))
            );
            sink.note(&format!("step {message}; its processes were stopped"))
                .await?;
            StepResult::failed(message)
        }
        Some(Interruption::Cancelled) => {
            child.terminate(Duration::from_secs(5)).await;
            sink.note("cancelled; the step's processes were stopped")
                .await?;
            StepResult {
                state: StepState::Cancelled,
                ..StepResult::failed("cancelled".into())
            }
        }
        Some(Interruption::Limit(limit)) => {
            child.kill();
            let _ = child.wait().await;
            let message = crate::sandbox::limit_message(limit, &limits);
            sink.note(&format!("the step {message}")).await?;
            StepResult::failed(message)
        }
        None => {
            let exit = child.wait().await?;
            match exit.problem(&limits) {
                None => StepResult {
                    state: StepState::Succeeded,
                    exit_code: exit.code().map(i64::from),
                    error: None,
                    log_bytes: 0,
                    truncated: false,
                },
                Some(problem) => {
                    if exit.limit.is_some() {
                        sink.note(&format!("the step {problem}")).await?;
                    }
                    StepResult {
                        exit_code: exit.code().map(i64::from),
                        ..StepResult::failed(problem)
                    }
                }
            }
        }
    };
    child.finish().await;
    read_reports(app, step_id, step, workspace, &mut sink).await?;
    let result = declared_outputs(
        app,
        run,
        (step, placement.image_is_built),
        workspace,
        &mut sink,
        result,
    )
    .await?;
    let result = match &step.image_build {
        Some(build) => {
            super::image::push(
                app,
                run,
                (step, build),
                workspace,
                &mut sink,
                (result, cancel),
            )
            .await?
        }
        None => result,
    };
    sink.finish().await?;
    Ok(StepResult {
        log_bytes: sink.total_bytes(),
        truncated: sink.truncated(),
        ..result
    })
}

/// A step bound for a build cluster.
struct OnCluster<'a> {
    step_id: i64,
    step: &'a CommandStep,
    executor: &'a KubernetesExecutor,
    placement: &'a Placement<'a>,
    env: &'a [(String, String)],
    secrets: &'a [(String, String)],
}

/// Runs the step as a pod on its build cluster (`builds`): its log, its
/// ending and its test reports as a local step's.
async fn on_cluster(
    app: &App,
    run: &RunRow,
    on: &OnCluster<'_>,
    workspace: &Workspace,
    mut sink: LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<StepResult, super::RunError> {
    let step = on.step;
    let Some(image) = step.image.as_deref().or(on.executor.image.as_deref()) else {
        let why = "names no image to run in on the Kubernetes executor: set `image:` on the step or `executor.kubernetes.image` in pipeline.yaml".to_string();
        sink.note(&format!("step {} {why}", step.name)).await?;
        sink.finish().await?;
        return Ok(StepResult::failed(why));
    };
    if step.network != StepNetwork::Default {
        sink.note("`network:` is not applied to build pods: the build namespace's NetworkPolicies decide what they reach")
            .await?;
    }
    let app_name = crate::db::apps::get(app.db.pool(), run.app_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    let reattach = match on.placement.follow_on {
        Some(pod) => {
            let log: String = db::steps::log_chunks(app.db.pool(), on.step_id, 0)
                .await?
                .into_iter()
                .map(|(_, text)| text)
                .collect();
            Some(Reattach {
                pod,
                logged: crate::builds::reattach::lines_logged(&log, pod),
            })
        }
        None => None,
    };
    let build = BuildStep {
        app: &app_name,
        run_id: run.id,
        attempt: run.attempt,
        step_id: on.step_id,
        position: on.placement.position,
        step,
        executor: on.executor,
        settings: on.placement.pod,
        image,
        env: on.env,
        secrets: on.secrets,
        workspace,
        reattach,
        lost: on.placement.lost,
    };
    let ending = crate::builds::step::run(&app.builds(), &build, &mut sink, cancel).await;
    let timeout = || {
        format!(
            "timed out after {}",
            crate::config::duration::HumanDuration(Duration::from_secs(step.timeout_seconds))
        )
    };
    let result = match ending {
        Ok(PodEnding::Exited(0)) => StepResult {
            state: StepState::Succeeded,
            exit_code: Some(0),
            error: None,
            log_bytes: 0,
            truncated: false,
        },
        Ok(PodEnding::Exited(code)) => StepResult {
            exit_code: Some(code),
            ..StepResult::failed(format!("exited with code {code}"))
        },
        Ok(PodEnding::Failed(why)) => {
            sink.note(&format!("the step {why}")).await?;
            StepResult::failed(why)
        }
        Ok(PodEnding::TimedOut) => {
            sink.note(&format!("step {}; its pod was deleted", timeout()))
                .await?;
            StepResult::failed(timeout())
        }
        Ok(PodEnding::Cancelled) => {
            sink.note("cancelled; the step's pod was deleted").await?;
            StepResult {
                state: StepState::Cancelled,
                ..StepResult::failed("cancelled".into())
            }
        }
        Err(error) => {
            sink.note(&error.to_string()).await?;
            StepResult::failed(error.to_string())
        }
    };
    if matches!(result.state, StepState::Succeeded | StepState::Failed)
        && result.exit_code.is_some()
    {
        app.sandbox
            .hand_over(&workspace.app(), workspace.user_ids())
            .await?;
        read_reports(app, on.step_id, step, workspace, &mut sink).await?;
    }
    let result = declared_outputs(
        app,
        run,
        (step, on.placement.image_is_built),
        workspace,
        &mut sink,
        result,
    )
    .await?;
    sink.finish().await?;
    Ok(StepResult {
        log_bytes: sink.total_bytes(),
        truncated: sink.truncated(),
        ..result
    })
}

/// Copies the step's output into its log until both streams close, or
/// until it times out, is cancelled or runs into a limit.
async fn follow_output(
    child: &mut Sandboxed,
    sink: &mut LogSink<'_>,
    timeout_seconds: u64,
    cancel: &CancellationToken,
) -> Result<Option<Interruption>, super::RunError> {
    let mut stdout = child
        .child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("the step's stdout was not captured"))?;
    let mut stderr = child
        .child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("the step's stderr was not captured"))?;
    let (mut out_lines, mut err_lines) = (
        LineSplitter::masked_by(sink.masker()),
        LineSplitter::masked_by(sink.masker()),
    );
    let (mut out_buf, mut err_buf) = (vec![0_u8; 16 * 1024], vec![0_u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    let timeout = tokio::time::sleep(Duration::from_secs(timeout_seconds));
    tokio::pin!(timeout);
    let mut flush = tokio::time::interval(Duration::from_millis(250));
    let mut interruption = None;
    while out_open || err_open {
        tokio::select! {
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => for line in out_lines.feed(&out_buf[..n]) { sink.line(&line).await?; },
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => for line in err_lines.feed(&err_buf[..n]) { sink.line(&line).await?; },
            },
            _ = flush.tick() => {
                sink.flush().await?;
                // A fork bomb or a memory hog is stopped as soon as its
                // cgroup says so, not when the timeout comes.
                if let Some(limit) = child.limit_hit() {
                    interruption = Some(Interruption::Limit(limit));
                    break;
                }
            }
            () = &mut timeout => { interruption = Some(Interruption::TimedOut); break; }
            () = cancel.cancelled() => { interruption = Some(Interruption::Cancelled); break; }
        }
    }
    for rest in [out_lines.rest(), err_lines.rest()].into_iter().flatten() {
        sink.line(&rest).await?;
    }
    Ok(interruption)
}

/// Reads a report the step wrote: opened without following a link and
/// without blocking (a FIFO), checked to be a regular file on the handle
/// itself, read up to `max` bytes.
async fn read_report_file(path: &std::path::Path, max: u64) -> Result<String, ReportFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits())
            .open(&path)
            .map_err(ReportFileError::Open)?;
        let metadata = file.metadata().map_err(ReportFileError::Read)?;
        if !metadata.is_file() {
            return Err(ReportFileError::NotAFile);
        }
        if metadata.len() > max {
            return Err(ReportFileError::TooLarge);
        }
        let mut text = String::new();
        file.take(max)
            .read_to_string(&mut text)
            .map_err(ReportFileError::Read)?;
        Ok(text)
    })
    .await
    .map_err(|e| ReportFileError::Read(std::io::Error::other(e)))?
}

/// Why a report file the step names was not read (said after its path).
#[derive(Debug, thiserror::Error)]
enum ReportFileError {
    #[error("cannot be opened ({0})")]
    Open(std::io::Error),
    #[error("cannot be read ({0})")]
    Read(std::io::Error),
    #[error("is not a regular file")]
    NotAFile,
    #[error("is larger than 20 MiB")]
    TooLarge,
}

/// Reads the step's JUnit files; a missing or broken one is noted in the
/// log, not fatal (the exit code decides the step). The checkout was
/// written by the step, so only regular files inside it are read (a link
/// out of it, a FIFO or a device is refused).
async fn read_reports(
    app: &App,
    step_id: i64,
    step: &CommandStep,
    workspace: &Workspace,
    sink: &mut LogSink<'_>,
) -> Result<(), super::RunError> {
    const MAX_REPORT: u64 = 20 * 1024 * 1024;
    for report in &step.reports {
        let Some(path) = workspace.inside_app(report) else {
            sink.note(&format!(
                "test report {report} was not written (or points outside the checkout)"
            ))
            .await?;
            continue;
        };
        let xml = match read_report_file(&path, MAX_REPORT).await {
            Ok(xml) => xml,
            Err(why) => {
                sink.note(&format!("test report {report} {why}; not read"))
                    .await?;
                continue;
            }
        };
        match crate::runs::junit::parse(report, &step.name, &xml) {
            Ok(summary) => {
                sink.note(&format!(
                    "tests in {report}: {} passed, {} failed, {} skipped",
                    summary.passed, summary.failed, summary.skipped
                ))
                .await?;
                db::steps::insert_report(app.db.pool(), step_id, &summary, now_millis()).await?;
            }
            Err(error) => sink.note(&error.to_string()).await?,
        }
    }
    Ok(())
}
