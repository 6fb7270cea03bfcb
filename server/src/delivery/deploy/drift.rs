//! Comparing what runs on a cluster with what Gantry applies: drift (live
//! state versus the last deployment, periodically, with optional
//! self-heal) and the diff shown before a promotion (live state versus what
//! a held run would apply). Both ask the API server for a server-side
//! dry-run apply, so defaults and field ownership count exactly as they
//! would in a real apply.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::{Value, json};

use super::cluster::{FIELD_MANAGER, Kinds};
use crate::clusters::ClusterError;
use crate::db::{self, environments::EnvRow, now_millis};
use crate::delivery::Delivery;
use crate::error::{Classified, Kind};
use crate::gitops::schema::AppConfig;
use crate::manifests::{self, ManifestError, ObjectRef, Rendered};

/// Why live state could not be compared with what Gantry applies.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// What a cluster answered (or that it did not).
    #[error("{0}")]
    Unreachable(String),
    /// The configuration or manifests at the commit do not render.
    #[error("{0}")]
    Config(String),
    /// The environment has no such cluster, object or pod.
    #[error("{0}")]
    NotOnCluster(String),
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    #[error(transparent)]
    Apply(#[from] super::cluster::ApplyError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// A stored deployment that cannot be read back (key, format).
    #[error("deployment {deployment}: {message}")]
    Stored { deployment: i64, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for DriftError {
    fn kind(&self) -> Kind {
        match self {
            DriftError::Cluster(error) => error.kind(),
            DriftError::Apply(error) => error.kind(),
            DriftError::Unreachable(_) | DriftError::Git(_) => Kind::Unavailable,
            DriftError::Config(_) | DriftError::Manifests(_) => Kind::Invalid,
            DriftError::NotOnCluster(_) => Kind::NotFound,
            DriftError::Stored { .. } | DriftError::Io(_) => Kind::Internal,
            DriftError::Db(error) => error.kind(),
        }
    }
}

/// Fields the server owns, or that change on every write.
fn normalize(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    object
}

/// The leaf fields where `live` and `applied` differ: (path, live, applied).
fn differences(
    live: &Value,
    applied: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(String, Value, Value)>,
) {
    match (live, applied) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                path.push(key.clone());
                differences(
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    path,
                    out,
                );
                path.pop();
            }
        }
        (a, b) if a != b => out.push((path.join("."), a.clone(), b.clone())),
        _ => {}
    }
}

/// One object as the cluster holds it and as an apply would leave it.
struct Comparison {
    reference: ObjectRef,
    live: Option<Value>,
    after: Value,
}

/// Dry-runs `objects` on one cluster and reads the live objects.
async fn compare(
    app: &Delivery<'_>,
    cluster: &str,
    namespace: &str,
    objects: &[Value],
) -> Result<Vec<Comparison>, DriftError> {
    let (client, served) = app.cluster_registry().connection(cluster).await?;
    let mut kinds = Kinds::new(&client, cluster, served);
    let mut out = Vec::new();
    // Hooks are run, not kept: a finished migration Job deleted by its
    // policy has not drifted.
    for object in objects
        .iter()
        .filter(|o| !crate::manifests::hooks::is_hook(o))
    {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (ar, caps) = kinds.resolve(api_version, kind).await?;
        let mut object = object.clone();
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            object["metadata"]["namespace"] = json!(namespace);
            Api::namespaced_with(client.clone(), namespace, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let live = api.get_opt(&name).await.map_err(|e| {
            DriftError::Unreachable(format!("reading {kind}/{name} on {cluster}: {e}"))
        })?;
        let live_value = live.map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
        // A missing namespace makes a dry run fail; the object is simply new.
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        let after = match api.patch(&name, &params, &Patch::Apply(&object)).await {
            Ok(result) => serde_json::to_value(result).unwrap_or(Value::Null),
            Err(_) if live_value.is_none() => object.clone(),
            Err(error) => {
                return Err(DriftError::Unreachable(format!(
                    "dry-run of {kind}/{name} on {cluster}: {error}"
                )));
            }
        };
        out.push(Comparison {
            reference: ObjectRef::of(&object),
            live: live_value,
            after,
        });
    }
    Ok(out)
}

/// The manifests the environment's current deployment applied.
pub(crate) async fn deployed_objects(
    app: &Delivery<'_>,
    deployment_id: i64,
) -> Result<Option<Vec<Value>>, DriftError> {
    let stored = |message: String| DriftError::Stored {
        deployment: deployment_id,
        message,
    };
    let Some((digest, nonce, ciphertext, key_id)) =
        db::deployments::sealed(app.db.pool(), deployment_id).await?
    else {
        return Ok(None);
    };
    let (Some(nonce), Some(ciphertext), Some(key_id)) = (nonce, ciphertext, key_id) else {
        return Ok(None);
    };
    let text = app
        .vault
        .open_value(
            &format!("deployment:{digest}"),
            &crate::db::Sealed {
                nonce,
                ciphertext,
                key_id,
            },
        )
        .map_err(|e| stored(e.to_string()))?;
    let exact: Value = serde_json::from_str(&text).map_err(|e| stored(e.to_string()))?;
    let Some(yaml) = exact["kubernetes"].as_str() else {
        return Ok(None);
    };
    Rendered::from_yaml(yaml)
        .map(|r| Some(r.objects))
        .map_err(|e| stored(e.0))
}

/// Checks one environment; `Some(summary)` when live state differs.
pub async fn check(
    app: &Delivery<'_>,
    env: &EnvRow,
    config: &AppConfig,
) -> Result<Option<String>, DriftError> {
    let (Some(deployment_id), Some(namespace)) = (env.deployment_id, env.namespace.as_deref())
    else {
        return Ok(None);
    };
    let Some(entry) = config.stack.iter().find(|e| e.env == env.stack_entry) else {
        return Ok(None);
    };
    let Some(objects) = deployed_objects(app, deployment_id).await? else {
        return Ok(None);
    };
    let mut findings = Vec::new();
    for cluster in entry.cluster_targets() {
        for comparison in compare(app, cluster, namespace, &objects).await? {
            let Some(live) = &comparison.live else {
                findings.push(format!("{cluster}: {} is missing", comparison.reference));
                continue;
            };
            let mut found = Vec::new();
            differences(
                &normalize(live),
                &normalize(&comparison.after),
                &mut Vec::new(),
                &mut found,
            );
            for (path, live, applied) in found.into_iter().take(3) {
                findings.push(format!(
                    "{cluster}: {} {path} is {live}, Gantry applied {applied}",
                    comparison.reference
                ));
            }
        }
    }
    Ok((!findings.is_empty()).then(|| findings.join("; ")))
}

/// Checks each live environment on clusters, records the drift, and
/// re-applies where the stack entry opted in to self-heal.
pub async fn check_all(app: &Delivery<'_>) -> Result<(), DriftError> {
    for env in db::environments::list_all_active(app.db.pool()).await? {
        if env.namespace.is_none() || env.deployment_id.is_none() || env.locked_by_run.is_some() {
            continue;
        }
        let Some(app_row) = db::apps::get(app.db.pool(), env.app_id).await? else {
            continue;
        };
        let config: AppConfig = crate::configs::stored(&app_row).map_err(|e| {
            DriftError::Config(format!("{}: stored configuration: {e}", app_row.name))
        })?;
        let drift = match check(app, &env, &config).await {
            Ok(drift) => drift,
            Err(error) => {
                tracing::warn!(app = %app_row.name, env = %env.name, %error, "cannot check drift");
                continue;
            }
        };
        let self_heal = config
            .stack
            .iter()
            .any(|e| e.env == env.stack_entry && e.self_heal);
        match (&drift, self_heal) {
            (Some(found), true) => {
                let outcome = heal(app, &env, &config).await;
                let (action, detail) = match &outcome {
                    Ok(()) => (
                        "environment.self_heal",
                        format!(
                            "re-applied deployment #{}: {found}",
                            env.deployment_id.unwrap_or_default()
                        ),
                    ),
                    Err(error) => (
                        "environment.self_heal_failed",
                        format!("{found}; self-heal failed: {error}"),
                    ),
                };
                db::audit::record(
                    app.db.pool(),
                    &db::audit::NewEntry {
                        actor: "gantry",
                        action,
                        target: &format!("{}/{}", app_row.name, env.name),
                        reason: Some(&detail),
                        source_ip: None,
                        detail: "{}",
                    },
                    now_millis(),
                )
                .await?;
                let remaining = if outcome.is_ok() {
                    None
                } else {
                    Some(found.as_str())
                };
                db::environments::set_drift(app.db.pool(), env.id, remaining, now_millis()).await?;
            }
            _ => {
                db::environments::set_drift(app.db.pool(), env.id, drift.as_deref(), now_millis())
                    .await?;
                // Told once per deployment that drifted, not at every check.
                if let (Some(found), Some(deployment)) = (&drift, env.deployment_id) {
                    crate::notify::emit(
                        &app.notifier(),
                        crate::notify::Notice {
                            event: crate::notify::Event::Drift,
                            app: app_row.name.clone(),
                            environment: env.name.clone(),
                            subject: format!("deployment:{deployment}"),
                            title: format!(
                                "{} {} drifted from its deployment",
                                app_row.name, env.name
                            ),
                            text: found.clone(),
                            url: Some(crate::notify::link(&app.notifier(), "")),
                        },
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

/// Re-applies the environment's current deployment, unchanged.
async fn heal(app: &Delivery<'_>, env: &EnvRow, config: &AppConfig) -> Result<(), DriftError> {
    let (Some(deployment_id), Some(namespace)) = (env.deployment_id, env.namespace.as_deref())
    else {
        return Ok(());
    };
    let Some(entry) = config.stack.iter().find(|e| e.env == env.stack_entry) else {
        return Ok(());
    };
    let objects = deployed_objects(app, deployment_id)
        .await?
        .unwrap_or_default();
    let app_row = db::apps::get(app.db.pool(), env.app_id).await?;
    let subject = super::lifecycle::Subject {
        app_id: env.app_id,
        app: app_row.as_ref().map_or("", |a| a.name.as_str()),
        environment_id: env.id,
        environment: &env.name,
        rollout_timeout: Duration::from_secs(entry.rollout_timeout_seconds),
    };
    let kubernetes = super::lifecycle::Kubernetes {
        namespace: namespace.to_string(),
        objects,
        preview: entry.branches.is_preview(),
        guardrails: config.guardrails.clone(),
        rules: config.health_rules.clone(),
    };
    // Repair never prunes; the deployment's own objects (hooks aside) as
    // `previous` all the same.
    let refs: Vec<ObjectRef> = kubernetes
        .objects
        .iter()
        .filter(|o| !crate::manifests::hooks::is_hook(o))
        .map(ObjectRef::of)
        .collect();
    for cluster in entry.cluster_targets() {
        super::lifecycle::apply_objects(
            app,
            &subject,
            cluster,
            &kubernetes,
            &refs,
            super::cluster::Run::Repair,
        )
        .await
        .map_err(|e| DriftError::Unreachable(e.to_string()))?;
    }
    Ok(())
}

pub use app::dto::ObjectDiff;

/// The diff between what runs in the run's environment and what the run
/// would apply, rendered from the run's commits.
pub async fn diff_for_run(
    app: &Delivery<'_>,
    run_id: i64,
) -> Result<Option<Vec<ObjectDiff>>, DriftError> {
    let pool = app.db.pool();
    let Some(run) = db::runs::get(pool, run_id).await? else {
        return Ok(None);
    };
    let env = db::environments::get(pool, run.environment_id)
        .await?
        .ok_or_else(|| DriftError::Config(format!("run {run_id}: its environment is gone")))?;
    let app_row = db::apps::get(pool, run.app_id)
        .await?
        .ok_or_else(|| DriftError::Config(format!("run {run_id}: its app is gone")))?;
    diff_for(
        app,
        &app_row,
        &env,
        &run.branch,
        &run.commit_sha,
        &run.pipeline_sha,
    )
    .await
    .map(Some)
}

/// What merging a change request would change on its target environment's
/// clusters: the target's manifests rendered at the request's head, with
/// the current pipeline repo. `None`: no such request, or the target has
/// never been deployed.
pub async fn diff_for_change_request(
    app: &Delivery<'_>,
    id: i64,
) -> Result<Option<Vec<ObjectDiff>>, DriftError> {
    let pool = app.db.pool();
    let Some(cr) = db::change_requests::get(pool, id).await? else {
        return Ok(None);
    };
    let Some(head) = cr.head_sha.as_deref() else {
        return Ok(None);
    };
    let Some(env) = db::environments::find_for_branch(pool, cr.app_id, &cr.target_branch).await?
    else {
        return Ok(None);
    };
    let app_row = db::apps::get(pool, cr.app_id)
        .await?
        .ok_or_else(|| DriftError::Config(format!("change request {id}: its app is gone")))?;
    let pipeline_sha = app_row.pipeline_sha.clone();
    diff_for(app, &app_row, &env, &cr.target_branch, head, &pipeline_sha)
        .await
        .map(Some)
}

/// The diff of deploying `commit` of `branch` to `env`, with the pipeline
/// repo at `pipeline_sha`.
async fn diff_for(
    app: &Delivery<'_>,
    app_row: &db::apps::AppRow,
    env: &db::environments::EnvRow,
    branch: &str,
    commit: &str,
    pipeline_sha: &str,
) -> Result<Vec<ObjectDiff>, DriftError> {
    let pool = app.db.pool();
    let config = crate::configs::at(app.db, app.git, app.pipeline.repo, app_row, pipeline_sha)
        .await
        .map_err(|e| DriftError::Config(e.to_string()))?;
    let entry = config
        .stack
        .iter()
        .find(|e| e.env == env.stack_entry)
        .ok_or_else(|| {
            DriftError::Config(format!(
                "{} has no stack entry {} at pipeline commit {pipeline_sha}",
                app_row.name, env.stack_entry
            ))
        })?;
    if entry.cluster_targets().next().is_none() {
        return Ok(Vec::new());
    }
    let repo = app
        .pipeline
        .repo
        .ok_or_else(|| DriftError::Config("no pipeline repo is configured".into()))?;
    let folder = tempfile::tempdir()?;
    app.git
        .export(
            repo,
            pipeline_sha,
            folder.path(),
            crate::git::Export::folder(&format!("apps/{}", app_row.name)),
        )
        .await?;
    let namespace = entry
        .namespace_for(&app_row.name, &env.name, branch)
        .map_err(|e| DriftError::Config(e.into()))?;
    let context_values = crate::gitops::template::context(
        &app_row.name,
        &env.name,
        branch,
        commit,
        &entry.variables,
    );
    let image = config
        .pipeline
        .image
        .as_ref()
        .map(|t| crate::gitops::template::render(t, &context_values))
        .transpose()
        .map_err(|e| DriftError::Config(format!("pipeline.yaml image: {e}")))?;
    let chart = entry.chart.is_some() || manifests::helm::is_chart(&folder.path().join("deploy"));
    let capabilities = if chart {
        super::cluster::capabilities(&app.cluster_registry(), entry.cluster_targets()).await
    } else {
        None
    };
    let context = manifests::RenderContext {
        app: app_row.name.clone(),
        env: env.name.clone(),
        namespace: namespace.clone(),
        branch: branch.to_string(),
        commit: commit.to_string(),
        image,
        url: env.url.clone(),
        variables: entry.variables.clone(),
        pipeline_sha: pipeline_sha.to_string(),
        stack_entry: entry.env.clone(),
        values: entry.values.clone(),
        helm: app.helm.to_path_buf(),
        chart: entry.chart.clone(),
        guardrails: config.guardrails.clone(),
        capabilities,
    };
    let (dir, name) = (
        folder.path().join("deploy"),
        format!("apps/{}/deploy", app_row.name),
    );
    // Helm and kustomize are programs that take their time: not on the
    // async workers.
    let rendered = tokio::task::spawn_blocking(move || manifests::render(&dir, &name, &context))
        .await
        .map_err(|e| DriftError::Config(format!("rendering stopped: {e}")))??;
    let mut diffs = Vec::new();
    for cluster in entry.cluster_targets() {
        let comparisons = compare(app, cluster, &namespace, &rendered.objects).await?;
        let applied: Vec<ObjectRef> = comparisons.iter().map(|c| c.reference.clone()).collect();
        for comparison in comparisons {
            let before = comparison
                .live
                .as_ref()
                .map(|live| yaml(&normalize(&manifests::redact(live))))
                .unwrap_or_default();
            let after = yaml(&normalize(&manifests::redact(&comparison.after)));
            let change = match (&comparison.live, before == after) {
                (None, _) => "create",
                (Some(_), true) => "unchanged",
                (Some(_), false) => "update",
            };
            diffs.push(ObjectDiff {
                target: cluster.clone(),
                object: comparison.reference.to_string(),
                change: change.into(),
                diff: unified(&before, &after),
            });
        }
        let previous: Vec<ObjectRef> = match env.deployment_id {
            Some(id) => db::deployments::previous_objects(pool, env.id, cluster, id + 1).await?,
            None => Vec::new(),
        };
        for gone in previous.iter().filter(|old| {
            !applied.iter().any(|new| {
                new.kind == old.kind && new.name == old.name && new.namespace == old.namespace
            })
        }) {
            diffs.push(ObjectDiff {
                target: cluster.clone(),
                object: gone.to_string(),
                change: "delete".into(),
                diff: String::new(),
            });
        }
    }
    Ok(diffs)
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn unified(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("live", "after apply")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_fields() {
        let live = json!({"metadata": {"name": "web", "resourceVersion": "9"}, "spec": {"replicas": 5, "x": 1}});
        let applied = json!({"metadata": {"name": "web", "resourceVersion": "10"}, "spec": {"replicas": 2, "x": 1}});
        let mut found = Vec::new();
        differences(
            &normalize(&live),
            &normalize(&applied),
            &mut Vec::new(),
            &mut found,
        );
        assert_eq!(
            found,
            vec![("spec.replicas".to_string(), json!(5), json!(2))]
        );
    }
}
