//! One lifecycle for every deployment — a deploy of a new commit, a
//! rollback to a stored release, a self-heal, and later each step of a
//! canary:
//!
//! 1. **begin** — one transaction records the deployment (its manifests as
//!    people see them, the exact text sealed), opens its ledger entry and
//!    marks the environment `deploying`;
//! 2. **apply** — every target at once, from a [`Source`] that was either
//!    rendered now or read back from a stored deployment;
//! 3. **conclude** — one transaction records each target's outcome, ends
//!    the deployment and its ledger entry, and says what the environment
//!    serves now.
//!
//! A crash between begin and conclude leaves a deployment in `deploying`,
//! which start-up recovery concludes with [`abandon`]: never a half-written
//! one.

use std::path::Path;
use std::time::Duration;

use app::dto::{DeploymentState, EnvironmentState};
use futures_util::future::join_all;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::DeployError;
use super::cluster::{self, Applied};
use super::local::{LocalError, LocalManifest, LocalSpec};
use crate::clusters::ClusterError;
use crate::db::{
    self, Db, deployments::NewDeployment, environments::Serving, now_millis, runs::Holder,
};
use crate::delivery::Delivery;
use crate::gitops::schema::LOCAL_TARGET;
use crate::manifests::{ObjectRef, Rendered};
use crate::runs::logs::LogSink;
use crate::secrets::{Sealed, SecretError};

/// What a deployment applies to each kind of target.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub local: Option<LocalManifest>,
    pub kubernetes: Option<Kubernetes>,
}

/// The objects for the cluster targets, in apply order.
#[derive(Clone, Debug)]
pub struct Kubernetes {
    pub namespace: String,
    pub objects: Vec<Value>,
    /// The environment is a preview: its namespace is Gantry's to create
    /// and delete, so one Gantry did not create is refused, not adopted.
    pub preview: bool,
    /// What the app may create (checked again on every apply: a rollback
    /// re-applies old manifests under today's rules).
    pub guardrails: crate::gitops::guardrails::Guardrails,
    /// The pipeline repo's health rules.
    pub rules: crate::gitops::health_rules::RuleSet,
}

/// How a deployment's source is kept: what people see (Secrets redacted),
/// its digest, and the exact text sealed.
pub struct Record {
    pub shown: String,
    pub digest: String,
    pub sealed: Option<Sealed>,
}

impl Record {
    /// Records a source rendered now.
    pub fn of(source: &Source, vault: &crate::secrets::Vault) -> Result<Self, DeployError> {
        let failed = |e: &dyn std::fmt::Display| DeployError::Failed(e.to_string());
        let mut shown = serde_json::Map::new();
        if let Some(local) = &source.local {
            shown.insert(
                LOCAL_TARGET.into(),
                serde_json::to_value(local).map_err(|e| failed(&e))?,
            );
        }
        let mut exact = serde_json::Map::new();
        if let Some(kubernetes) = &source.kubernetes {
            let rendered = Rendered {
                objects: kubernetes.objects.clone(),
            };
            shown.insert("namespace".into(), serde_json::json!(kubernetes.namespace));
            shown.insert(
                "kubernetes".into(),
                serde_json::json!(Rendered::to_yaml(&rendered.redacted())),
            );
            exact.insert(
                "kubernetes".into(),
                serde_json::json!(Rendered::to_yaml(&rendered.objects)),
            );
        }
        let shown = serde_json::to_string_pretty(&shown).map_err(|e| failed(&e))?;
        let exact = serde_json::to_string(&exact).map_err(|e| failed(&e))?;
        let digest: String = Sha256::digest(exact.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sealed = vault
            .seal(&format!("deployment:{digest}"), &exact)
            .map_err(|e| failed(&e))?;
        Ok(Self {
            shown,
            digest,
            sealed: Some(sealed),
        })
    }
}

/// Where the local target's build comes from.
#[derive(Clone, Copy, Debug)]
pub enum Build<'a> {
    /// The checkout a run just built.
    Checkout(&'a Path),
    /// The build a stored deployment ran (a rollback: no rebuild).
    Stored { deployment_id: i64 },
}

/// The environment a deployment goes to.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub app_id: i64,
    pub app: &'a str,
    pub environment_id: i64,
    pub environment: &'a str,
    pub rollout_timeout: Duration,
}

/// Why a deployment is made.
#[derive(Clone, Copy, Debug)]
pub enum Kind<'a> {
    Deploy,
    /// Re-applies deployment `of` (its stored source).
    Rollback {
        of: i64,
        reason: &'a str,
    },
}

impl Kind<'_> {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback { .. } => "rollback",
        }
    }
}

/// What begin records.
pub struct Begin<'a> {
    /// The run deploying, as this replica holds it (none for a deployment
    /// outside a run).
    pub run: Option<Holder<'a>>,
    pub kind: Kind<'a>,
    pub commit_sha: &'a str,
    pub pipeline_sha: &'a str,
    pub image: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub record: &'a Record,
    pub namespace: Option<&'a str>,
    /// The ledger entry to open (its deployment is filled in).
    pub release: Option<db::releases::NewRelease<'a>>,
}

/// A deployment under way.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    pub deployment_id: i64,
    pub release_id: Option<i64>,
}

/// Step 1: records the deployment, opens its ledger entry and marks the
/// environment deploying, in one transaction — only while the replica
/// still holds the run, which it keeps locked meanwhile: a take-over then
/// sees the deployment and concludes it, and a replica that lost its run
/// begins nothing.
pub async fn begin(
    db: &Db,
    subject: &Subject<'_>,
    begin: Begin<'_>,
    now: i64,
) -> Result<Begun, DeployError> {
    let mut tx = db.begin().await?;
    if let Some(run) = begin.run
        && !db::runs::lock_held(&mut *tx, run).await?
    {
        return Err(DeployError::Lost {
            run: run.run_id,
            attempt: run.attempt,
        });
    }
    let deployment_id = db::deployments::insert(
        &mut *tx,
        &NewDeployment {
            environment_id: subject.environment_id,
            run_id: begin.run.map(|run| run.run_id),
            kind: begin.kind.as_str(),
            commit_sha: begin.commit_sha,
            pipeline_sha: begin.pipeline_sha,
            image: begin.image,
            manifests: &begin.record.shown,
            manifests_digest: &begin.record.digest,
            created_by: begin.created_by,
        },
        now,
    )
    .await?;
    if let Some(sealed) = &begin.record.sealed {
        db::deployments::store_sealed(&mut *tx, deployment_id, sealed).await?;
    }
    if let Kind::Rollback { of, reason } = begin.kind {
        db::deployments::set_rollback_of(&mut *tx, deployment_id, of, reason).await?;
    }
    let release_id = match begin.release {
        Some(release) => Some(
            db::releases::insert(
                &mut *tx,
                &db::releases::NewRelease {
                    deployment_id,
                    ..release
                },
                now,
            )
            .await?,
        ),
        None => None,
    };
    if let Some(namespace) = begin.namespace {
        db::environments::set_namespace(&mut *tx, subject.environment_id, namespace).await?;
    }
    db::environments::set_state(
        &mut *tx,
        subject.environment_id,
        EnvironmentState::Deploying,
        None,
        now,
    )
    .await?;
    crate::db::commit(tx).await?;
    Ok(Begun {
        deployment_id,
        release_id,
    })
}

/// Why one target did not take the deployment.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("pipeline.yaml has no `local` section")]
    NoLocalManifest,
    #[error("the deployment has no Kubernetes manifests")]
    NoManifests,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Local(#[from] LocalError),
    /// A canary stopped before it was promoted: why, and what it measured;
    /// `judged`: it was found bad (an analysis, an admin, its exit), not
    /// merely cancelled with its run.
    #[error("canary aborted: {why}")]
    Aborted { why: String, judged: bool },
    /// The manifests cannot have a canary (no Deployment to go beside).
    #[error("{0}")]
    Canary(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Apply(#[from] super::cluster::ApplyError),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// What one target did: a sentence for the log and the record, and for
/// clusters the objects now there.
#[derive(Debug)]
pub struct TargetDone {
    pub detail: String,
    pub objects: Option<Vec<ObjectRef>>,
}

/// One target's outcome and when it started.
#[derive(Debug)]
pub struct TargetOutcome {
    pub target: String,
    pub started: i64,
    pub result: Result<TargetDone, TargetError>,
}

/// Step 2: applies `source` to every target at once; each outcome is kept
/// on its own (one failing target leaves the others alone).
pub async fn apply(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    deployment_id: i64,
    source: &Source,
    build: Build<'_>,
    targets: &[String],
) -> Vec<TargetOutcome> {
    join_all(targets.iter().map(|target| async move {
        let started = now_millis();
        let result = if target == LOCAL_TARGET {
            apply_local(app, subject, deployment_id, source, build).await
        } else {
            apply_cluster(app, subject, target, deployment_id, source, build).await
        };
        TargetOutcome {
            target: target.clone(),
            started,
            result,
        }
    }))
    .await
}

async fn apply_local(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    deployment_id: i64,
    source: &Source,
    build: Build<'_>,
) -> Result<TargetDone, TargetError> {
    let manifest = source.local.clone().ok_or(TargetError::NoLocalManifest)?;
    let secret_values = app
        .secrets()
        .resolve(subject.app_id, &manifest.secrets)
        .await?;
    let spec = LocalSpec {
        app: subject.app.to_string(),
        env: subject.environment.to_string(),
        environment_id: subject.environment_id,
        deployment_id,
        manifest,
        secret_values,
        instance_tag: String::new(),
    };
    let detail = match build {
        Build::Checkout(checkout) => {
            let started = app.local.deploy(app.db, spec, checkout).await?;
            format!("healthy on 127.0.0.1:{}, now serving", started.port)
        }
        Build::Stored { deployment_id: of } => {
            let started = app.local.redeploy(app.db, spec, of).await?;
            format!(
                "re-started the build of deployment {of} on 127.0.0.1:{}, now serving",
                started.port
            )
        }
    };
    Ok(TargetDone {
        detail,
        objects: None,
    })
}

async fn apply_cluster(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    target: &str,
    deployment_id: i64,
    source: &Source,
    build: Build<'_>,
) -> Result<TargetDone, TargetError> {
    let kubernetes = source.kubernetes.as_ref().ok_or(TargetError::NoManifests)?;
    // Prune compares with what the last successful deployment left here.
    let previous = db::deployments::previous_objects(
        app.db.pool(),
        subject.environment_id,
        target,
        deployment_id,
    )
    .await?;
    let run = match build {
        Build::Checkout(_) => cluster::Run::Deploy,
        Build::Stored { .. } => cluster::Run::Rollback,
    };
    let applied = apply_objects(app, subject, target, kubernetes, &previous, run).await?;
    let pruned = if applied.pruned.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = applied.pruned.iter().map(ToString::to_string).collect();
        format!("; pruned {}", names.join(", "))
    };
    let what = match build {
        Build::Checkout(_) => format!("applied {} objects", applied.objects.len()),
        Build::Stored { .. } => format!("re-applied {} stored objects", applied.objects.len()),
    };
    let hooks = if applied.hooks.is_empty() {
        String::new()
    } else {
        format!("; {}", applied.hooks.join("; "))
    };
    Ok(TargetDone {
        detail: format!(
            "{what} to namespace {}, rolled out{pruned}{hooks}",
            kubernetes.namespace
        ),
        objects: Some(applied.objects),
    })
}

/// Applies objects to one cluster and waits for their rollout; prunes what
/// `previous` has and they do not. Self-heal calls it with the objects
/// themselves as `previous` (nothing to prune) and `Run::Repair` (no hooks).
pub async fn apply_objects(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    target: &str,
    kubernetes: &Kubernetes,
    previous: &[ObjectRef],
    run: cluster::Run,
) -> Result<Applied, TargetError> {
    let (client, served) = app.cluster_registry().connection(target).await?;
    cluster::deploy(
        &client,
        served,
        &cluster::ClusterDeploy {
            run,
            cluster: target,
            namespace: &kubernetes.namespace,
            app: subject.app,
            env: subject.environment,
            objects: &kubernetes.objects,
            previous,
            rollout_timeout: subject.rollout_timeout,
            preview: kubernetes.preview,
            guardrails: &kubernetes.guardrails,
            rules: &kubernetes.rules,
        },
    )
    .await
    .map_err(TargetError::Apply)
}

/// What a deployment's outcome means for it and its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub deployment: DeploymentState,
    pub environment: EnvironmentState,
    /// Whether the environment now serves this deployment (some target
    /// took it).
    pub serves: bool,
    /// Why not every target took it: on the deployment.
    pub summary: Option<String>,
    /// What the environment says about it.
    pub detail: Option<String>,
}

/// Maps the targets' outcomes to the deployment's and the environment's
/// states. `failures` are (target, first line of its error), already
/// masked; `still_serving` says whether an earlier deployment serves.
pub fn verdict(
    label: &str,
    total: usize,
    failures: &[(String, String)],
    still_serving: bool,
) -> Verdict {
    if failures.is_empty() {
        return Verdict {
            deployment: DeploymentState::Succeeded,
            environment: EnvironmentState::Live,
            serves: true,
            summary: None,
            detail: None,
        };
    }
    let listed: Vec<String> = failures.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    let summary = format!(
        "{} of {total} targets failed — {}",
        failures.len(),
        listed.join("; ")
    );
    let (deployment, environment, serves, detail) = if failures.len() < total {
        // The healthy targets run the new version: it is what serves.
        (
            DeploymentState::PartiallyFailed,
            EnvironmentState::PartiallyFailed,
            true,
            format!("{label}: {summary}"),
        )
    } else if still_serving {
        (
            DeploymentState::Failed,
            EnvironmentState::Live,
            false,
            format!("{label} failed ({summary}); the previous version is still serving"),
        )
    } else {
        (
            DeploymentState::Failed,
            EnvironmentState::Failed,
            false,
            format!("{label} failed: {summary}"),
        )
    };
    Verdict {
        deployment,
        environment,
        serves,
        summary: Some(summary),
        detail: Some(detail),
    }
}

/// What conclude needs besides the outcomes.
pub struct Conclusion<'a> {
    pub begun: Begun,
    /// How the deployment is named in the environment's detail, e.g.
    /// "deploy #12 of 1a2b3c4".
    pub label: &'a str,
    /// What the environment serves if some target took it.
    pub serving: Serving<'a>,
    pub outcomes: &'a [TargetOutcome],
}

/// Step 3: records every target's outcome, ends the deployment and its
/// ledger entry, and sets what the environment serves, in one
/// transaction; then logs each outcome and announces a release that went
/// live.
pub async fn conclude(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    conclusion: Conclusion<'_>,
    log: &mut LogSink<'_>,
) -> Result<Verdict, DeployError> {
    let Begun {
        deployment_id,
        release_id,
    } = conclusion.begun;
    // A detail may quote the app's own output: viewers read it.
    let details: Vec<(DeploymentState, String, Option<String>)> = conclusion
        .outcomes
        .iter()
        .map(|outcome| match &outcome.result {
            Ok(done) => (
                DeploymentState::Succeeded,
                log.mask(&done.detail),
                done.objects
                    .as_ref()
                    .map(|o| serde_json::to_string(o).unwrap_or_default()),
            ),
            Err(error) => (DeploymentState::Failed, log.mask(&error.to_string()), None),
        })
        .collect();
    let failures: Vec<(String, String)> = conclusion
        .outcomes
        .iter()
        .zip(&details)
        .filter(|(_, (state, ..))| *state == DeploymentState::Failed)
        .map(|(outcome, (_, detail, _))| {
            let first = detail.lines().next().unwrap_or_default().to_string();
            (outcome.target.clone(), first)
        })
        .collect();

    let now = now_millis();
    let mut tx = app.db.begin().await?;
    for (outcome, (state, detail, objects)) in conclusion.outcomes.iter().zip(&details) {
        db::deployments::record_target(
            &mut *tx,
            deployment_id,
            &outcome.target,
            *state,
            Some(detail),
            objects.as_deref(),
            outcome.started,
            now,
        )
        .await?;
    }
    let still_serving = db::environments::get(&mut *tx, subject.environment_id)
        .await?
        .and_then(|env| env.deployment_id)
        .is_some();
    let verdict = verdict(
        conclusion.label,
        conclusion.outcomes.len(),
        &failures,
        still_serving,
    );
    let concluded = db::deployments::finish(
        &mut *tx,
        deployment_id,
        verdict.deployment,
        verdict.summary.as_deref(),
        now,
    )
    .await?;
    if !concluded {
        // Its run was taken over meanwhile: the deployment was abandoned and
        // the attempt that took over applies it again. Nothing of this
        // verdict is recorded.
        return Err(DeployError::Failed(format!(
            "{} was concluded while it was being applied: its run was taken over",
            conclusion.label
        )));
    }
    if verdict.serves {
        let serving = Serving {
            deployment_id,
            ..conclusion.serving
        };
        db::environments::set_serving(
            &mut *tx,
            subject.environment_id,
            &serving,
            verdict.environment,
            verdict.detail.as_deref(),
            now,
        )
        .await?;
        db::environments::set_drift(&mut *tx, subject.environment_id, None, now).await?;
    } else {
        db::environments::set_state(
            &mut *tx,
            subject.environment_id,
            verdict.environment,
            verdict.detail.as_deref(),
            now,
        )
        .await?;
    }
    let live = verdict.deployment == DeploymentState::Succeeded;
    // On Gantry's clock, as the soak and promotion read it (the same as
    // the system's in service; a test moves it on).
    if let Some(release) = release_id {
        db::releases::finish(&mut tx, release, live, app.clock.now_millis()).await?;
    }
    crate::db::commit(tx).await?;

    for (outcome, (_, detail, _)) in conclusion.outcomes.iter().zip(&details) {
        // A failed hook's log is the run log's (developers read it), not
        // the record's (viewers read that).
        let extra = match &outcome.result {
            Err(TargetError::Apply(error)) => error.log().map(|text| log.mask(text)),
            _ => None,
        };
        let detail = match extra {
            Some(more) => format!("{detail}{more}"),
            None => detail.clone(),
        };
        log.note(&format!(
            "{}: {}",
            outcome.target,
            detail.replace('\n', "\n[gantry]   ")
        ))
        .await?;
    }
    if live && let Some(release) = release_id {
        crate::delivery::ledger::announce(app, release).await?;
    }
    Ok(verdict)
}

/// Concludes a deployment a crash left in `deploying`, inside the caller's
/// transaction: failed (with `detail`), its ledger entry failed, its
/// environment back to what served before. It is never re-applied itself;
/// a resumed run applies its manifests again as a new deployment.
pub async fn abandon(
    tx: &mut sqlx::AnyConnection,
    deployment: &db::deployments::DeploymentRow,
    detail: &str,
    now: i64,
) -> Result<(), crate::db::QueryError> {
    if !db::deployments::finish(
        &mut *tx,
        deployment.id,
        DeploymentState::Failed,
        Some(detail),
        now,
    )
    .await?
    {
        // Concluded meanwhile by its own replica: its verdict stands.
        return Ok(());
    }
    if let Some(release) = db::releases::id_of_deployment(&mut *tx, deployment.id).await? {
        db::releases::finish(tx, release, false, now).await?;
    }
    if let Some(env) = db::environments::get(&mut *tx, deployment.environment_id).await?
        && env.state == EnvironmentState::Deploying
    {
        let (state, detail) = interrupted(env.deployment_id.is_some());
        db::environments::set_state(&mut *tx, env.id, state, Some(detail), now).await?;
    }
    Ok(())
}

/// What an environment whose deploy a restart interrupted is now: live
/// if an earlier deployment still serves, else failed.
pub fn interrupted(still_serving: bool) -> (EnvironmentState, &'static str) {
    if still_serving {
        (
            EnvironmentState::Live,
            "a deploy was interrupted by a restart; the previous version is serving",
        )
    } else {
        (
            EnvironmentState::Failed,
            "the first deploy was interrupted by a restart",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(target: &str, error: &str) -> (String, String) {
        (target.to_string(), error.to_string())
    }

    #[test]
    fn every_target_took_it() {
        let v = verdict("deploy #3 of abc1234", 2, &[], true);
        assert_eq!(v.deployment, DeploymentState::Succeeded);
        assert_eq!(v.environment, EnvironmentState::Live);
        assert!(v.serves);
        assert_eq!((v.summary, v.detail), (None, None));
    }

    #[test]
    fn some_targets_failed_the_rest_serve_it() {
        let v = verdict(
            "deploy #3 of abc1234",
            3,
            &[failed("prod-us", "timed out")],
            true,
        );
        assert_eq!(v.deployment, DeploymentState::PartiallyFailed);
        assert_eq!(v.environment, EnvironmentState::PartiallyFailed);
        assert!(v.serves, "the healthy targets run the new version");
        assert_eq!(
            v.summary.as_deref(),
            Some("1 of 3 targets failed — prod-us: timed out")
        );
        assert_eq!(
            v.detail.as_deref(),
            Some("deploy #3 of abc1234: 1 of 3 targets failed — prod-us: timed out")
        );
    }

    #[test]
    fn all_failed_while_an_earlier_version_serves() {
        let failures = [failed("local", "unhealthy"), failed("prod", "forbidden")];
        let v = verdict("deploy #4 of abc1234", 2, &failures, true);
        assert_eq!(v.deployment, DeploymentState::Failed);
        assert_eq!(v.environment, EnvironmentState::Live);
        assert!(!v.serves);
        let detail = v.detail.unwrap();
        assert!(
            detail.ends_with("the previous version is still serving"),
            "{detail}"
        );
        assert!(
            detail.contains("local: unhealthy; prod: forbidden"),
            "{detail}"
        );
    }

    #[test]
    fn all_failed_with_nothing_serving() {
        let v = verdict(
            "deploy #1 of abc1234",
            1,
            &[failed("local", "exited")],
            false,
        );
        assert_eq!(v.deployment, DeploymentState::Failed);
        assert_eq!(v.environment, EnvironmentState::Failed);
        assert!(!v.serves);
        assert_eq!(
            v.detail.as_deref(),
            Some("deploy #1 of abc1234 failed: 1 of 1 targets failed — local: exited")
        );
    }
}
