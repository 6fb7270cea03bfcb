//! The deploy step: render what each target runs, record the deployment
//! (manifests sealed as applied, redacted for people), apply to every target
//! of the environment concurrently, and record each target's outcome. One
//! failing target leaves the others alone and marks the environment
//! partially failed. One deploy per environment at a time (a lock in the
//! database, so it holds across replicas and restarts).

pub mod cluster;
pub mod drift;
pub mod local;

use std::path::Path;
use std::time::Duration;

use app::dto::{DeploymentState, EnvironmentState};
use futures_util::future::join_all;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::db::{self, deployments::NewDeployment, environments::Serving, now_millis};
use crate::gitops::schema::{AppConfig, LOCAL_TARGET, StackEntry};
use crate::manifests::{self, ObjectRef, RenderContext, Rendered};
use crate::runner::logs::LogSink;
use crate::state::App;
use local::{LocalManifest, LocalSpec};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cancelled while waiting to deploy")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Everything the deploy step needs to know about its run.
pub struct DeployRequest<'a> {
    pub run_id: i64,
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
    /// The app's folder of the pipeline repo (its `deploy/` manifests).
    pub pipeline_dir: &'a Path,
    /// A fork's build: its app runs without the app's secrets.
    pub untrusted: bool,
}

/// What was rendered for the targets of one deployment.
struct Plan {
    local: Option<LocalManifest>,
    kubernetes: Option<(String, Rendered)>,
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
    app: &App,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<DeployOutcome, DeployError> {
    acquire_lock(
        app,
        request.environment_id,
        request.environment,
        request.run_id,
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
        Ok(None) => deploy_locked(app, request, log)
            .await
            .map(|()| DeployOutcome::Deployed),
        Err(error) => Err(error.into()),
    };
    db::environments::unlock(app.db.pool(), request.environment_id, request.run_id).await?;
    outcome
}

/// Takes the environment's deploy lock for `run_id`, waiting (and saying
/// so once in the log) while another run holds it.
pub(crate) async fn acquire_lock(
    app: &App,
    environment_id: i64,
    environment: &str,
    run_id: i64,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    let mut told = false;
    loop {
        if db::environments::try_lock(app.db.pool(), environment_id, run_id).await? {
            return Ok(());
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
fn plan(request: &DeployRequest<'_>) -> Result<Plan, DeployError> {
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
            .map_err(DeployError::Failed)?;
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
        };
        let folder = format!("apps/{}/deploy", request.app_name);
        let rendered = manifests::render(&request.pipeline_dir.join("deploy"), &folder, &context)
            .map_err(|e| DeployError::Failed(e.to_string()))?;
        Some((namespace, rendered))
    } else {
        None
    };
    Ok(Plan { local, kubernetes })
}

async fn deploy_locked(
    app: &App,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
) -> Result<(), DeployError> {
    let plan = match plan(request) {
        Ok(plan) => plan,
        Err(error) => {
            log.note(&format!("nothing was applied: {error}")).await?;
            return Err(error);
        }
    };
    // What people see (Secrets redacted), and the exact text, sealed.
    let mut shown = serde_json::Map::new();
    if let Some(local) = &plan.local {
        shown.insert(
            LOCAL_TARGET.into(),
            serde_json::to_value(local).map_err(|e| DeployError::Failed(e.to_string()))?,
        );
    }
    let mut exact = serde_json::Map::new();
    if let Some((namespace, rendered)) = &plan.kubernetes {
        shown.insert("namespace".into(), serde_json::json!(namespace));
        shown.insert(
            "kubernetes".into(),
            serde_json::json!(Rendered::to_yaml(&rendered.redacted())),
        );
        exact.insert(
            "kubernetes".into(),
            serde_json::json!(Rendered::to_yaml(&rendered.objects)),
        );
    }
    let manifests =
        serde_json::to_string_pretty(&shown).map_err(|e| DeployError::Failed(e.to_string()))?;
    let exact_text =
        serde_json::to_string(&exact).map_err(|e| DeployError::Failed(e.to_string()))?;
    let digest: String = Sha256::digest(exact_text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sealed = app
        .vault
        .seal(&format!("deployment:{digest}"), &exact_text)
        .map_err(|e| DeployError::Failed(e.to_string()))?;

    let now = now_millis();
    let deployment_id = db::deployments::insert(
        app.db.pool(),
        &NewDeployment {
            environment_id: request.environment_id,
            run_id: Some(request.run_id),
            kind: "deploy",
            commit_sha: request.commit_sha,
            pipeline_sha: request.pipeline_sha,
            image: request.image,
            manifests: &manifests,
            manifests_digest: &digest,
            created_by: None,
        },
        now,
    )
    .await?;
    db::deployments::store_sealed(app.db.pool(), deployment_id, &sealed).await?;
    let release = open_release(app, request, deployment_id, now).await?;
    if let Some((namespace, _)) = &plan.kubernetes {
        db::environments::set_namespace(app.db.pool(), request.environment_id, namespace).await?;
    }
    db::environments::set_state(
        app.db.pool(),
        request.environment_id,
        EnvironmentState::Deploying,
        None,
        now,
    )
    .await?;
    log.note(&format!(
        "deploying {} to {} ({}), deployment #{deployment_id}",
        &request.commit_sha[..request.commit_sha.len().min(7)],
        request.environment,
        request.entry.targets.join(", ")
    ))
    .await?;

    // Every target at once; each outcome is recorded on its own.
    let outcomes = join_all(request.entry.targets.iter().map(|target| {
        let plan = &plan;
        async move {
            let started = now_millis();
            let result = deploy_target(app, request, target, deployment_id, plan).await;
            (target.clone(), started, result)
        }
    }))
    .await;
    let failed = record_outcomes(app, deployment_id, &outcomes, log).await?;

    let now = now_millis();
    if failed == 0 {
        db::deployments::finish(
            app.db.pool(),
            deployment_id,
            DeploymentState::Succeeded,
            None,
            now,
        )
        .await?;
        db::environments::set_serving(
            app.db.pool(),
            request.environment_id,
            &Serving {
                deployment_id,
                commit_sha: request.commit_sha,
                pipeline_sha: request.pipeline_sha,
                commit_message: request.commit_message,
                commit_author: request.commit_author,
                url: request.url,
            },
            EnvironmentState::Live,
            None,
            now,
        )
        .await?;
        db::environments::set_drift(app.db.pool(), request.environment_id, None, now).await?;
        if let Some(release) = release {
            crate::ledger::close(app, release, true, now).await?;
        }
        return Ok(());
    }
    if let Some(release) = release {
        crate::ledger::close(app, release, false, now).await?;
    }

    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(target, _, result)| {
            result
                .as_ref()
                .err()
                .map(|e| format!("{target}: {}", e.lines().next().unwrap_or_default()))
        })
        .collect();
    let summary = log.mask(&format!(
        "{failed} of {} targets failed — {}",
        outcomes.len(),
        failures.join("; ")
    ));
    let state = if failed == outcomes.len() {
        DeploymentState::Failed
    } else {
        DeploymentState::PartiallyFailed
    };
    db::deployments::finish(app.db.pool(), deployment_id, state, Some(&summary), now).await?;
    let environment = db::environments::get(app.db.pool(), request.environment_id).await?;
    let still_serving = environment.as_ref().and_then(|e| e.deployment_id).is_some();
    let short = &request.commit_sha[..7.min(request.commit_sha.len())];
    let (env_state, detail) = match (state, still_serving) {
        (DeploymentState::PartiallyFailed, _) => (
            EnvironmentState::PartiallyFailed,
            format!("deploy #{deployment_id} of {short}: {summary}"),
        ),
        (_, true) => (
            EnvironmentState::Live,
            format!(
                "deploy #{deployment_id} of {short} failed ({summary}); the previous version is still serving"
            ),
        ),
        (_, false) => (
            EnvironmentState::Failed,
            format!("deploy #{deployment_id} of {short} failed: {summary}"),
        ),
    };
    if state == DeploymentState::PartiallyFailed {
        // The healthy targets run the new commit: record it as serving.
        db::environments::set_serving(
            app.db.pool(),
            request.environment_id,
            &Serving {
                deployment_id,
                commit_sha: request.commit_sha,
                pipeline_sha: request.pipeline_sha,
                commit_message: request.commit_message,
                commit_author: request.commit_author,
                url: request.url,
            },
            env_state,
            Some(&detail),
            now,
        )
        .await?;
    } else {
        db::environments::set_state(
            app.db.pool(),
            request.environment_id,
            env_state,
            Some(&detail),
            now,
        )
        .await?;
    }
    Err(DeployError::Failed(summary))
}

/// Opens the ledger entry of a deployment to a fixed environment.
async fn open_release(
    app: &App,
    request: &DeployRequest<'_>,
    deployment_id: i64,
    now: i64,
) -> Result<Option<i64>, DeployError> {
    if !crate::ledger::records(request.config, request.stack_entry) {
        return Ok(None);
    }
    let pool = app.db.pool();
    let env = db::environments::get(pool, request.environment_id).await?;
    let source = db::apps::get(pool, request.app_id)
        .await?
        .map(|row| row.source_url)
        .unwrap_or_else(|| request.config.source.clone());
    let opening = crate::ledger::Opening {
        app_id: request.app_id,
        source_url: &source,
        config: request.config,
        environment_id: request.environment_id,
        deployment_id,
        run_id: Some(request.run_id),
        version: request.commit_sha,
        previous_version: env.as_ref().and_then(|e| e.commit_sha.as_deref()),
        pipeline_sha: request.pipeline_sha,
        image: request.image,
    };
    Ok(Some(crate::ledger::open(app, &opening, now).await?))
}

/// One target's outcome: when it started, and its detail and objects (or
/// what went wrong).
pub(crate) type TargetResult = (
    String,
    i64,
    Result<(String, Option<Vec<ObjectRef>>), String>,
);

/// Records each target's outcome on the deployment and in the log; returns
/// how many failed.
pub(crate) async fn record_outcomes(
    app: &App,
    deployment_id: i64,
    outcomes: &[TargetResult],
    log: &mut LogSink<'_>,
) -> Result<usize, DeployError> {
    let mut failed = 0;
    for (target, started, result) in outcomes {
        let (state, detail, objects) = match result {
            Ok((detail, objects)) => (DeploymentState::Succeeded, detail.clone(), objects.clone()),
            Err(error) => {
                failed += 1;
                (DeploymentState::Failed, error.clone(), None)
            }
        };
        // A detail may quote the app's own output: viewers read it.
        let detail = log.mask(&detail);
        let objects = objects.map(|o| serde_json::to_string(&o).unwrap_or_default());
        db::deployments::record_target(
            app.db.pool(),
            deployment_id,
            target,
            state,
            Some(&detail),
            objects.as_deref(),
            *started,
            now_millis(),
        )
        .await?;
        log.note(&format!(
            "{target}: {}",
            detail.replace('\n', "\n[gantry]   ")
        ))
        .await?;
    }
    Ok(failed)
}

/// Applies to one target: a text for the log and record, and for
/// clusters the objects now there.
async fn deploy_target(
    app: &App,
    request: &DeployRequest<'_>,
    target: &str,
    deployment_id: i64,
    plan: &Plan,
) -> Result<(String, Option<Vec<ObjectRef>>), String> {
    if target == LOCAL_TARGET {
        let Some(manifest) = &plan.local else {
            return Err("pipeline.yaml has no `local` section".into());
        };
        let secret_values = app
            .secrets()
            .resolve(request.app_id, &manifest.secrets)
            .await
            .map_err(|e| e.to_string())?;
        let spec = LocalSpec {
            app: request.app_name.to_string(),
            env: request.environment.to_string(),
            environment_id: request.environment_id,
            deployment_id,
            manifest: manifest.clone(),
            secret_values,
            instance_tag: String::new(),
        };
        return app
            .local
            .deploy(&app.db, spec, request.checkout)
            .await
            .map(|started| {
                (
                    format!("healthy on 127.0.0.1:{}, now serving", started.port),
                    None,
                )
            })
            .map_err(|error| error.to_string());
    }
    let Some((namespace, rendered)) = &plan.kubernetes else {
        return Err("no manifests were rendered".into());
    };
    let client = crate::clusters::client(app, target)
        .await
        .map_err(|e| e.to_string())?;
    let previous = db::deployments::previous_objects(
        app.db.pool(),
        request.environment_id,
        target,
        deployment_id,
    )
    .await
    .map_err(|e| e.to_string())?;
    let applied = cluster::deploy(
        &client,
        &cluster::ClusterDeploy {
            cluster: target,
            namespace,
            app: request.app_name,
            env: request.environment,
            objects: &rendered.objects,
            previous: &previous,
            rollout_timeout: Duration::from_secs(request.entry.rollout_timeout_seconds),
        },
    )
    .await?;
    let pruned = if applied.pruned.is_empty() {
        String::new()
    } else {
        format!(
            "; pruned {}",
            applied
                .pruned
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok((
        format!(
            "applied {} objects to namespace {namespace}, rolled out{pruned}",
            applied.objects.len()
        ),
        Some(applied.objects),
    ))
}
