//! The deploy step: render what each target runs, record the deployment,
//! apply to every target of the environment concurrently, and record each
//! target's outcome. One deploy per environment at a time (a lock in the
//! database, so it holds across replicas and restarts).

pub mod local;

use std::time::Duration;

use app::dto::{DeploymentState, EnvironmentState};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::db::{self, deployments::NewDeployment, environments::Serving, now_millis};
use crate::gitops::schema::{AppConfig, LOCAL_TARGET};
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
    pub targets: &'a [String],
    pub config: &'a AppConfig,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub commit_message: &'a str,
    pub commit_author: &'a str,
    pub image: Option<&'a str>,
    pub url: Option<&'a str>,
    /// `GANTRY_*` and stack variables, as the app sees them.
    pub vars: &'a [(String, String)],
    /// The built checkout to run from.
    pub checkout: &'a std::path::Path,
}

pub async fn deploy(
    app: &App,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    acquire_lock(app, request, log, cancel).await?;
    let outcome = deploy_locked(app, request, log).await;
    db::environments::unlock(app.db.pool(), request.environment_id, request.run_id).await?;
    outcome
}

async fn acquire_lock(
    app: &App,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(), DeployError> {
    let mut told = false;
    loop {
        if db::environments::try_lock(app.db.pool(), request.environment_id, request.run_id).await?
        {
            return Ok(());
        }
        if !told {
            log.note(&format!(
                "waiting for another deploy to {} to finish",
                request.environment
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

async fn deploy_locked(
    app: &App,
    request: &DeployRequest<'_>,
    log: &mut LogSink<'_>,
) -> Result<(), DeployError> {
    let local = request.config.pipeline.local.as_ref();
    let local_manifest = local.map(|local| {
        let mut env = request.vars.to_vec();
        env.extend(local.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        LocalManifest {
            run: local.run.clone(),
            health: local.health.clone(),
            health_timeout_seconds: local.health_timeout_seconds,
            env,
            secrets: local.secrets.clone(),
        }
    });
    let mut rendered = serde_json::Map::new();
    for target in request.targets {
        let value = if target == LOCAL_TARGET {
            serde_json::to_value(&local_manifest).map_err(|e| DeployError::Failed(e.to_string()))?
        } else {
            serde_json::Value::Null
        };
        rendered.insert(target.clone(), value);
    }
    let manifests =
        serde_json::to_string_pretty(&rendered).map_err(|e| DeployError::Failed(e.to_string()))?;
    let digest: String = Sha256::digest(manifests.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

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
        request.targets.join(", ")
    ))
    .await?;

    let mut results = Vec::new();
    for target in request.targets {
        let started = now_millis();
        let result =
            deploy_target(app, request, target, deployment_id, local_manifest.as_ref()).await;
        let (state, detail) = match &result {
            Ok(detail) => (DeploymentState::Succeeded, detail.clone()),
            Err(error) => (DeploymentState::Failed, error.clone()),
        };
        db::deployments::record_target(
            app.db.pool(),
            deployment_id,
            target,
            state,
            Some(&detail),
            started,
            now_millis(),
        )
        .await?;
        log.note(&format!(
            "{target}: {}",
            detail.replace('\n', "\n[gantry]   ")
        ))
        .await?;
        results.push(result);
    }

    let failed = results.iter().filter(|r| r.is_err()).count();
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
        if request.stack_entry == "production" {
            db::releases::insert(
                app.db.pool(),
                &db::releases::NewRelease {
                    app_id: request.app_id,
                    environment_id: request.environment_id,
                    deployment_id,
                    version: request.commit_sha,
                    pipeline_sha: request.pipeline_sha,
                    image: request.image,
                    created_by: None,
                },
                now,
            )
            .await?;
        }
        return Ok(());
    }

    let summary = format!("{failed} of {} targets failed", results.len());
    let state = if failed == results.len() {
        DeploymentState::Failed
    } else {
        DeploymentState::PartiallyFailed
    };
    db::deployments::finish(app.db.pool(), deployment_id, state, Some(&summary), now).await?;
    let environment = db::environments::get(app.db.pool(), request.environment_id).await?;
    let still_serving = environment.as_ref().and_then(|e| e.deployment_id).is_some();
    let (env_state, detail) = match (state, still_serving) {
        (DeploymentState::PartiallyFailed, _) => (
            EnvironmentState::PartiallyFailed,
            format!("deploy #{deployment_id}: {summary}"),
        ),
        (_, true) => (
            EnvironmentState::Live,
            format!(
                "deploy #{deployment_id} of {} failed; the previous version is still serving",
                &request.commit_sha[..7.min(request.commit_sha.len())]
            ),
        ),
        (_, false) => (
            EnvironmentState::Failed,
            format!("deploy #{deployment_id} failed"),
        ),
    };
    db::environments::set_state(
        app.db.pool(),
        request.environment_id,
        env_state,
        Some(&detail),
        now,
    )
    .await?;
    Err(DeployError::Failed(summary))
}

/// Applies to one target; the text says what happened, for the log and
/// the target's record.
async fn deploy_target(
    app: &App,
    request: &DeployRequest<'_>,
    target: &str,
    deployment_id: i64,
    manifest: Option<&LocalManifest>,
) -> Result<String, String> {
    if target != LOCAL_TARGET {
        return Err(format!(
            "cluster target {target:?}: Kubernetes deployment is not available in this version"
        ));
    }
    let Some(manifest) = manifest else {
        return Err("pipeline.yaml has no `local` section".into());
    };
    let secret_values = crate::secrets::resolve(app, request.app_id, &manifest.secrets)
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
    app.local
        .deploy(&app.db, spec, request.checkout)
        .await
        .map(|started| format!("healthy on 127.0.0.1:{}, now serving", started.port))
        .map_err(|error| error.to_string())
}
