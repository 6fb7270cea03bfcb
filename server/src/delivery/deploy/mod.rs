//! The deploy step: render what each target runs, record the deployment
//! (manifests sealed as applied, redacted for people), apply to every target
//! of the environment concurrently, and record each target's outcome. One
//! failing target leaves the others alone and marks the environment
//! partially failed. One deploy per environment at a time (a lock in the
//! database, so it holds across replicas and restarts).

pub mod app_log;
pub mod canary;
pub mod cluster;
pub mod drift;
pub mod health;
pub mod hooks;
pub mod lifecycle;
pub mod local;
pub mod rings;
pub mod tree;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{self, environments::Serving, now_millis, runs::Holder};
use crate::delivery::Delivery;
use crate::gitops::schema::{AppConfig, LOCAL_TARGET, StackEntry};
use crate::gitops::strategy::OnAbort;
use crate::manifests::{self, RenderContext};
use crate::runs::logs::LogSink;
use lifecycle::{Begin, Build, Conclusion, Kind, Kubernetes, Record, Source, Subject};
use local::LocalManifest;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cancelled while waiting to deploy")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
    /// This replica lost the run (another took it over): nothing applied.
    #[error(
        "attempt {attempt} of run {run} is no longer this replica's (another took the run over); nothing was applied"
    )]
    Lost { run: i64, attempt: i64 },
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// Everything the deploy step needs to know about its run.
pub struct DeployRequest<'a> {
    /// The run's attempt, as this replica holds it.
    pub run: Holder<'a>,
    pub app_id: i64,
    pub app_name: &'a str,
    pub environment_id: i64,
    pub environment: &'a str,
    pub stack_entry: &'a str,
    pub entry: &'a StackEntry,
    pub config: &'a AppConfig,
    pub branch: &'a str,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub commit_message: &'a str,
    pub commit_author: &'a str,
    pub image: Option<&'a str>,
    pub url: Option<&'a str>,
    /// `GANTRY_*` and stack variables, as the app sees them.
    pub vars: &'a [(String, String)],
    /// The built checkout to run from (local target).
    pub checkout: &'a Path,
    /// The app's `deploy/` folder at the run's pipeline commit.
    pub manifests_dir: &'a Path,
    /// A fork's build: its app runs without the app's secrets.
    pub untrusted: bool,
}

/// What the deploy step did.
#[derive(Debug, PartialEq, Eq)]
pub enum DeployOutcome {
    Deployed,
    /// The environment is pinned: nothing was applied; the text says by
    /// whom and how to lift it.
    Pinned(String),
}

pub async fn deploy(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<DeployOutcome, DeployError> {
    acquire_lock(
        app,
        request.environment_id,
        request.environment,
        request.run,
        log,
        cancel,
    )
    .await?;
    // Read under the lock: a rollback pins before it queues, so a deploy
    // that gets the lock after a rollback was asked for never undoes it.
    let outcome = match db::pins::get(app.db.pool(), request.environment_id).await {
        Ok(Some(pin)) => {
            let text = format!(
                "{} is pinned to {} by {} ({}); built but not deployed — an admin promotes to unpin",
                request.environment,
                &pin.version[..pin.version.len().min(7)],
                pin.pinned_by,
                pin.reason
            );
            log.note(&text)
                .await
                .map(|()| DeployOutcome::Pinned(text))
                .map_err(DeployError::from)
        }
        Ok(None) => match db::deployments::serving_of_run(
            app.db.pool(),
            request.environment_id,
            request.run.run_id,
        )
        .await
        {
            // An earlier attempt of this run deployed, and the environment
            // still serves it (the attempt was resumed from its first step
            // on another replica): not applied twice.
            Ok(Some(deployment)) => log
                .note(&format!(
                    "{} already serves deployment #{deployment} of this run (an earlier attempt); not applied again",
                    request.environment
                ))
                .await
                .map(|()| DeployOutcome::Deployed)
                .map_err(DeployError::from),
            Ok(None) => deploy_locked(app, request, log, cancel)
                .await
                .map(|()| DeployOutcome::Deployed),
            Err(error) => Err(error.into()),
        },
        Err(error) => Err(error.into()),
    };
    db::environments::unlock(app.db.pool(), request.environment_id, request.run).await?;
    outcome
}

/// Takes the environment's deploy lock for `run`, waiting (and saying so
/// once in the log) while another run holds it.
pub(crate) async fn acquire_lock(
    app: &Delivery<'_>,
    environment_id: i64,
    environment: &str,
    run: Holder<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    let mut told = false;
    loop {
        if db::environments::try_lock(app.db.pool(), environment_id, run).await? {
            return Ok(());
        }
        if !db::runs::holds(app.db.pool(), run).await? {
            return Err(DeployError::Lost {
                run: run.run_id,
                attempt: run.attempt,
            });
        }
        if !told {
            log.note(&format!(
                "waiting for another deploy to {environment} to finish"
            ))
            .await?;
            told = true;
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(DeployError::Cancelled),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Renders what every target of the environment will receive.
async fn plan(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
    capabilities: Option<manifests::Capabilities>,
) -> Result<Source, DeployError> {
    let local = (request.entry.targets.iter().any(|t| t == LOCAL_TARGET))
        .then_some(request.config.pipeline.local.as_ref())
        .flatten()
        .map(|local| {
            let mut env = request.vars.to_vec();
            env.extend(local.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            LocalManifest {
                run: local.run.clone(),
                health: local.health.clone(),
                health_timeout_seconds: local.health_timeout_seconds,
                env,
                secrets: if request.untrusted {
                    Vec::new()
                } else {
                    local.secrets.clone()
                },
                resources: local.resources,
                network: local.network,
            }
        });
    let kubernetes = if request.entry.cluster_targets().next().is_some() {
        let namespace = request
            .entry
            .namespace_for(request.app_name, request.environment, request.branch)
            .map_err(|e| DeployError::Failed(e.into()))?;
        let guardrails = &request.config.guardrails;
        if let Some(why) = guardrails.namespace_refusal(request.app_name, &namespace) {
            return Err(DeployError::Failed(why));
        }
        let context = RenderContext {
            app: request.app_name.to_string(),
            env: request.environment.to_string(),
            namespace: namespace.clone(),
            branch: request.branch.to_string(),
            commit: request.commit_sha.to_string(),
            image: request.image.map(str::to_string),
            url: request.url.map(str::to_string),
            variables: request.entry.variables.clone(),
            pipeline_sha: request.pipeline_sha.to_string(),
            stack_entry: request.stack_entry.to_string(),
            values: request.entry.values.clone(),
            helm: app.helm.to_path_buf(),
            chart: request.entry.chart.clone(),
            guardrails: guardrails.clone(),
            capabilities,
        };
        let folder = format!("apps/{}/deploy", request.app_name);
        // Helm and kustomize are programs that take their time: not on
        // the async workers.
        let dir = request.manifests_dir.to_path_buf();
        let rendered =
            tokio::task::spawn_blocking(move || manifests::render(&dir, &folder, &context))
                .await
                .map_err(|e| DeployError::Failed(format!("rendering stopped: {e}")))?
                .map_err(|e| DeployError::Failed(e.to_string()))?;
        Some(Kubernetes {
            namespace,
            objects: rendered.objects,
            preview: request.entry.branches.is_preview(),
            guardrails: guardrails.clone(),
            rules: request.config.health_rules.clone(),
        })
    } else {
        None
    };
    Ok(Source { local, kubernetes })
}

async fn deploy_locked(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    // A chart's capability checks render for what the targets serve.
    let chart = request.entry.chart.is_some() || manifests::helm::is_chart(request.manifests_dir);
    let capabilities = if chart {
        cluster::capabilities(&app.cluster_registry(), request.entry.cluster_targets()).await
    } else {
        None
    };
    let source = match plan(app, request, capabilities).await {
        Ok(source) => source,
        Err(error) => {
            log.note(&format!("nothing was applied: {error}")).await?;
            return Err(error);
        }
    };
    let record = Record::of(&source, app.vault)?;
    let subject = Subject {
        app_id: request.app_id,
        app: request.app_name,
        environment_id: request.environment_id,
        environment: request.environment,
        rollout_timeout: Duration::from_secs(request.entry.rollout_timeout_seconds),
    };
    let entry = ledger_entry(app, request).await?;
    let begun = lifecycle::begin(
        app.db,
        &subject,
        Begin {
            run: Some(request.run),
            kind: Kind::Deploy,
            commit_sha: request.commit_sha,
            pipeline_sha: request.pipeline_sha,
            image: request.image,
            created_by: None,
            record: &record,
            namespace: source.kubernetes.as_ref().map(|k| k.namespace.as_str()),
            release: entry.as_ref().map(|(entry, previous, source)| {
                entry.release(&opening(request, source, previous.as_deref()))
            }),
        },
        now_millis(),
    )
    .await?;
    let short = &request.commit_sha[..request.commit_sha.len().min(7)];
    log.note(&format!(
        "deploying {short} to {} ({}), deployment #{}",
        request.environment,
        request.entry.targets.join(", "),
        begun.deployment_id
    ))
    .await?;

    // A canary needs a stable version beside it: the first deploy of an
    // environment goes whole.
    let stable = stable_serves(app, request).await?;
    let canary = match request.entry.strategy.walked() {
        Some(plan) if stable.is_some() => Some(plan),
        Some(plan) => {
            let what = if plan.blue_green {
                "blue/green"
            } else {
                "canary"
            };
            log.note(&format!(
                "{what}: nothing serves here yet, so this first version is deployed whole"
            ))
            .await?;
            None
        }
        None => None,
    };
    if canary.is_none()
        && let Some(kubernetes) = &source.kubernetes
    {
        // A canary a crash (or a failed removal) left behind takes its
        // share of requests until it goes: whatever this deploy is, it
        // goes first. (A canary's walk removes it itself.)
        remove_leftover_canaries(app, &subject, kubernetes, &request.entry.targets, log).await?;
    }
    let outcomes = match (&canary, &request.entry.rings) {
        (_, Some(rings)) => {
            let rollout = rings::Rollout {
                deployment_id: begun.deployment_id,
                run: request.run,
                source: &source,
                checkout: request.checkout,
                canary: canary.as_ref(),
                rings,
                stable: stable.flatten(),
            };
            Box::pin(rings::walk(app, &subject, &rollout, log, cancel)).await?
        }
        (Some(plan), None) => {
            Box::pin(canary::walk(
                app,
                &subject,
                (begun.deployment_id, request.run),
                &source,
                (request.checkout, &request.entry.targets),
                plan,
                (log, Vec::new()),
                cancel,
            ))
            .await?
        }
        (None, None) => {
            lifecycle::apply(
                app,
                &subject,
                begun.deployment_id,
                &source,
                Build::Checkout(request.checkout),
                &request.entry.targets,
            )
            .await
        }
    };
    let aborted = outcomes.iter().find_map(|o| match &o.result {
        Err(lifecycle::TargetError::Aborted { why, judged }) => Some((why.clone(), *judged)),
        _ => None,
    });
    let label = format!("deploy #{} of {short}", begun.deployment_id);
    let verdict = lifecycle::conclude(
        app,
        &subject,
        Conclusion {
            begun,
            label: &label,
            serving: Serving {
                deployment_id: begun.deployment_id,
                commit_sha: request.commit_sha,
                pipeline_sha: request.pipeline_sha,
                commit_message: request.commit_message,
                commit_author: request.commit_author,
                url: request.url,
            },
            outcomes: &outcomes,
        },
        log,
    )
    .await?;
    if let Some((why, judged)) = &aborted {
        // In the ledger as what it was: an aborted canary or rollout, with
        // what it measured; and with `on_abort: rollback`, the environment
        // stays on its stable version until an admin promotes again.
        if let Some(release) = begun.release_id {
            db::releases::mark_aborted(app.db.pool(), release, why).await?;
        }
        if canary
            .as_ref()
            .is_some_and(|plan| plan.on_abort == OnAbort::Rollback)
            && *judged
        {
            pin_stable(app, request, why, log).await?;
        }
        // Stopped with its run (cancelled, superseded by a newer push):
        // the run ends so, not as a failed deploy.
        if !judged {
            return Err(DeployError::Cancelled);
        }
    }
    match verdict.summary {
        None => Ok(()),
        Some(summary) => Err(DeployError::Failed(summary)),
    }
}

/// Deletes the environment's canary Deployments on `targets`, saying in the
/// log what could not be.
pub(crate) async fn remove_leftover_canaries(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    kubernetes: &Kubernetes,
    targets: &[String],
    log: &mut LogSink<'_>,
) -> Result<(), DeployError> {
    let clusters: Vec<String> = targets
        .iter()
        .filter(|t| *t != LOCAL_TARGET)
        .cloned()
        .collect();
    for error in canary::kubernetes::remove(app, subject, &kubernetes.namespace, &clusters).await {
        log.note(&format!(
            "a canary left behind could not be removed: {error}"
        ))
        .await?;
    }
    Ok(())
}

/// Whether a stable version serves that a canary can go beside — the
/// local target's process, or on clusters the environment's last
/// deployment — and that deployment (what an aborted rollout returns to).
async fn stable_serves(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
) -> Result<Option<Option<i64>>, DeployError> {
    let env = db::environments::get(app.db.pool(), request.environment_id).await?;
    let deployment = env
        .filter(|env| env.commit_sha.is_some())
        .and_then(|env| env.deployment_id);
    if request.entry.targets == [LOCAL_TARGET] {
        let serves = app
            .local
            .route(request.app_name, request.environment)
            .is_some();
        return Ok(serves.then_some(deployment));
    }
    Ok(deployment.map(Some))
}

/// Pins the environment to what it serves (the stable version, after an
/// aborted canary), in the database and in the pipeline repo, as a
/// rollback does: the next commit is built but not deployed until an admin
/// promotes.
async fn pin_stable(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
    why: &str,
    log: &mut LogSink<'_>,
) -> Result<(), DeployError> {
    let pool = app.db.pool();
    let Some(env) = db::environments::get(pool, request.environment_id).await? else {
        return Ok(());
    };
    let Some(version) = env.commit_sha.clone() else {
        return Ok(());
    };
    // An admin's pin (a rollback asked for meanwhile) stands; and a
    // replica that lost the run writes nothing.
    if db::pins::get(pool, env.id).await?.is_some() || !db::runs::holds(pool, request.run).await? {
        return Ok(());
    }
    let release = match env.deployment_id {
        Some(deployment) => db::releases::id_of_deployment(pool, deployment).await?,
        None => None,
    };
    let short = &request.commit_sha[..request.commit_sha.len().min(7)];
    let reason = format!("the canary of {short} was aborted (on_abort: rollback): {why}");
    let now = now_millis();
    db::pins::set(
        pool,
        &db::pins::PinRow {
            environment_id: env.id,
            release_id: release,
            version: version.clone(),
            pinned_by: "gantry".into(),
            reason: reason.clone(),
            pin_commit: None,
            git_error: None,
            created_at: now,
        },
    )
    .await?;
    let file = crate::delivery::ledger::pin::PinFile {
        version: version.clone(),
        release,
        pinned_by: "gantry".into(),
        reason,
    };
    let written = crate::delivery::ledger::pin::write(
        app,
        request.app_name,
        request.environment,
        Some(&file),
        "gantry",
    )
    .await;
    let (commit, error) = match written {
        Ok(commit) => (commit, None),
        Err(error) => (None, Some(error.to_string())),
    };
    db::pins::set_git_outcome(pool, env.id, now, commit.as_deref(), error.as_deref()).await?;
    log.note(&format!(
        "{} is pinned to {} (on_abort: rollback): an admin promotes to deploy again",
        request.environment,
        &version[..version.len().min(7)]
    ))
    .await?;
    Ok(())
}

/// The ledger entry of a deployment to a fixed environment (none for
/// previews), read before the deployment begins.
async fn ledger_entry(
    app: &Delivery<'_>,
    request: &DeployRequest<'_>,
) -> Result<Option<(crate::delivery::ledger::Entry, Option<String>, String)>, DeployError> {
    if !crate::delivery::ledger::records(request.config, request.stack_entry) {
        return Ok(None);
    }
    let pool = app.db.pool();
    let previous = db::environments::get(pool, request.environment_id)
        .await?
        .and_then(|env| env.commit_sha);
    let source = db::apps::get(pool, request.app_id)
        .await?
        .map(|row| row.source_url)
        .unwrap_or_else(|| request.config.source.clone());
    let entry =
        crate::delivery::ledger::entry(app, &opening(request, &source, previous.as_deref()))
            .await?;
    Ok(Some((entry, previous, source)))
}

fn opening<'a>(
    request: &'a DeployRequest<'a>,
    source_url: &'a str,
    previous_version: Option<&'a str>,
) -> crate::delivery::ledger::Opening<'a> {
    crate::delivery::ledger::Opening {
        app_id: request.app_id,
        source_url,
        config: request.config,
        environment_id: request.environment_id,
        run_id: Some(request.run.run_id),
        version: request.commit_sha,
        previous_version,
        pipeline_sha: request.pipeline_sha,
        image: request.image,
    }
}
