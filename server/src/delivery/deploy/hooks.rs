//! Running a phase's hooks on one cluster (what a hook is:
//! [`crate::manifests::hooks`]). Each hook, lowest weight first: the object
//! left by its last run is deleted and gone, the new one applied, and
//! waited for until it completed (a Job) or succeeded (a Pod) or is healthy
//! (any other kind). A hook that fails says why, in its own words, with the
//! end of its log; one that never completes is bounded by the deadline.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::{Value, json};

use super::cluster::{ApplyError, FIELD_MANAGER, Kinds, Watch, api_for, retry, whole};
use super::health::{Health, Judge};
use crate::manifests::hooks::{Hook, Occasion, Phase};
use crate::manifests::{APP_LABEL, ENV_LABEL, MANAGED_BY};

/// Lines of a failed hook's log shown with its failure.
const LOG_LINES: i64 = 20;
/// And at most this many bytes of them.
const LOG_BYTES: usize = 4096;

/// Where hooks run.
pub struct Place<'a> {
    pub client: &'a kube::Client,
    pub cluster: &'a str,
    pub namespace: &'a str,
    /// Whose hooks these are: only their own last runs are deleted.
    pub app: &'a str,
    pub env: &'a str,
    /// How health is read (the pipeline repo's rules, then the built-in).
    pub judge: Judge,
}

/// Runs the hooks of `phase` that run on `occasion`, in weight order, until
/// `deadline`. Returns a sentence per hook that ran.
pub async fn run(
    place: &Place<'_>,
    kinds: &mut Kinds<'_>,
    hooks: &[(&Value, Hook)],
    phase: Phase,
    occasion: Occasion,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<String>, ApplyError> {
    let mut chosen: Vec<&(&Value, Hook)> = hooks
        .iter()
        .filter(|(_, hook)| hook.runs(phase, occasion))
        .collect();
    chosen.sort_by_key(|(_, hook)| hook.weight);
    let mut done = Vec::new();
    for (object, hook) in chosen {
        let started = Instant::now();
        let name = one(place, kinds, object, hook, phase, deadline, timeout).await?;
        done.push(format!(
            "{} hook {name} completed in {:.1}s",
            phase.as_str(),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(done)
}

/// Runs one hook; its `kind/name` when it completed.
async fn one(
    place: &Place<'_>,
    kinds: &mut Kinds<'_>,
    object: &Value,
    hook: &Hook,
    phase: Phase,
    deadline: Instant,
    timeout: Duration,
) -> Result<String, ApplyError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let described = format!("{kind}/{name}").to_ascii_lowercase();
    let (ar, caps) = kinds.resolve(api_version, kind).await?;
    let mut object = object.clone();
    let namespace = if caps.scope == Scope::Namespaced {
        object["metadata"]["namespace"] = json!(place.namespace);
        Some(place.namespace)
    } else {
        None
    };
    let api = api_for(place.client, &ar, &caps, namespace);

    // The last run's object goes first: a Job cannot be changed, and its
    // old completion must not count as this run's. Only a hook of this
    // environment is: a hook named like anything else is refused, never
    // deleted in its place.
    let existing = retry(
        &format!("reading hook {described} on {}", place.cluster),
        || {
            let (api, name) = (api.clone(), name.clone());
            async move { api.get_opt(&name).await }
        },
    )
    .await?;
    if let Some(existing) = existing {
        let labels = existing.metadata.labels.unwrap_or_default();
        let annotations = existing.metadata.annotations.unwrap_or_default();
        let label = |key: &str| labels.get(key).map(String::as_str);
        let ours = label(MANAGED_BY) == Some("gantry")
            && label(APP_LABEL) == Some(place.app)
            && label(ENV_LABEL) == Some(place.env)
            && crate::manifests::hooks::is_hook(&serde_json::json!({
                "metadata": { "annotations": annotations }
            }));
        if !ours {
            return Err(ApplyError::HookClash {
                object: described,
                cluster: place.cluster.to_string(),
                owner: format!("{}/{}", place.app, place.env),
            });
        }
        delete_and_wait(place, &api, &name, &described, deadline, timeout).await?;
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = retry(
        &format!(
            "applying {} hook {described} to {}",
            phase.as_str(),
            place.cluster
        ),
        || {
            let (api, object, params, name) =
                (api.clone(), object.clone(), params.clone(), name.clone());
            async move { api.patch(&name, &params, &Patch::Apply(&object)).await }
        },
    )
    .await?;
    let generation = applied.metadata.generation.unwrap_or(1);
    let uid = applied.metadata.uid.clone().unwrap_or_default();
    let verdict = |object: &Value, generation: i64| {
        verdict(&place.judge, api_version, kind, object, generation)
    };
    let outcome = match verdict(&whole(&applied), generation) {
        Health::Healthy => Ok(()),
        Health::Failed(why) => Err(why),
        Health::InProgress(why) | Health::Unknown(why) => {
            let watch = Watch {
                api: &api,
                kind,
                name: &name,
                cluster: place.cluster,
                deadline,
                timeout,
            };
            let version = applied
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            match watch.until(version, generation, why, &verdict).await {
                Ok(()) => Ok(()),
                Err(ApplyError::Unhealthy { why, .. }) => Err(why),
                Err(ApplyError::NotReady { why, .. }) => {
                    return Err(ApplyError::NotReady {
                        object: format!("{} hook {described}", phase.as_str()),
                        cluster: place.cluster.to_string(),
                        timeout: crate::config::duration::HumanDuration(timeout),
                        why,
                    });
                }
                Err(other) => return Err(other),
            }
        }
    };
    match outcome {
        Ok(()) => {
            if hook.delete.on_success {
                delete(place, &api, &name, &described).await?;
            }
            Ok(described)
        }
        Err(why) => {
            let log = log_of(place, kind, &name, &uid).await;
            if hook.delete.on_failure {
                delete(place, &api, &name, &described).await?;
            }
            Err(ApplyError::HookFailed {
                phase: phase.as_str(),
                object: described,
                cluster: place.cluster.to_string(),
                why,
                log,
            })
        }
    }
}

/// A hook is done when it finished, not when it runs: a Pod hook has
/// succeeded, any other kind is healthy.
fn verdict(
    judge: &Judge,
    api_version: &str,
    kind: &str,
    object: &Value,
    generation: i64,
) -> Health {
    if kind == "Pod" && object["status"]["phase"] == "Running" {
        return Health::InProgress("the pod is running".into());
    }
    judge.health(api_version, kind, object, generation)
}

/// Deletes a hook object; false when there was none.
async fn delete(
    place: &Place<'_>,
    api: &Api<DynamicObject>,
    name: &str,
    described: &str,
) -> Result<bool, ApplyError> {
    let outcome = retry(
        &format!("deleting hook {described} on {}", place.cluster),
        || {
            let (api, name) = (api.clone(), name.to_string());
            // Its pods go with it.
            async move {
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
            }
        },
    )
    .await;
    match outcome {
        Ok(()) => Ok(true),
        Err(ApplyError::Answered { code: 404, .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

async fn delete_and_wait(
    place: &Place<'_>,
    api: &Api<DynamicObject>,
    name: &str,
    described: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ApplyError> {
    if !delete(place, api, name, described).await? {
        return Ok(());
    }
    let mut pause = Duration::from_millis(20);
    loop {
        let left = retry(
            &format!("reading hook {described} on {}", place.cluster),
            || {
                let (api, name) = (api.clone(), name.to_string());
                async move { api.get_opt(&name).await }
            },
        )
        .await?;
        if left.is_none() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ApplyError::NotReady {
                object: format!("the last run of hook {described}"),
                cluster: place.cluster.to_string(),
                timeout: crate::config::duration::HumanDuration(timeout),
                why: "it is still being deleted".into(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The end of a failed hook's log: a Pod's own, a Job's newest pod's.
/// Empty when there is none to read (a failure to read it is not the
/// hook's failure).
async fn log_of(place: &Place<'_>, kind: &str, name: &str, uid: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(place.client.clone(), place.namespace);
    let pod = match kind {
        "Pod" => Some(name.to_string()),
        "Job" => {
            let selector = format!("batch.kubernetes.io/controller-uid={uid}");
            pods.list(&ListParams::default().labels(&selector))
                .await
                .ok()
                .and_then(|list| {
                    list.items
                        .into_iter()
                        .max_by_key(|p| p.metadata.creation_timestamp.clone())
                })
                .and_then(|p| p.metadata.name)
        }
        _ => None,
    };
    let Some(pod) = pod else {
        return String::new();
    };
    let params = LogParams {
        tail_lines: Some(LOG_LINES),
        limit_bytes: Some(LOG_BYTES as i64),
        ..LogParams::default()
    };
    let text = pods.logs(&pod, &params).await.unwrap_or_default();
    let text = text.trim_end();
    if text.is_empty() {
        return String::new();
    }
    let mut cut = text.len().min(LOG_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("; pod {pod}'s log ends:\n{}", &text[..cut])
}
