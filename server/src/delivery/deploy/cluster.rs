//! Applying an environment's manifests to one Kubernetes cluster: dynamic
//! discovery (any kind, custom resources included), the environment's
//! namespace, server-side apply as field manager `gantry`, prune of what the
//! previous deployment applied and this one does not, and a rollout wait.
//! Transient API errors are retried with backoff; permanent ones are not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::{ApiCapabilities, Scope, oneshot};
use serde_json::{Value, json};

use super::health::{self, Health};
use crate::manifests::{APP_LABEL, ENV_LABEL, MANAGED_BY, ObjectRef, WAIT_ANNOTATION, wave_of};

pub const FIELD_MANAGER: &str = "gantry";
const ATTEMPTS: u32 = 4;

/// One target's part of a deployment.
pub struct ClusterDeploy<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub app: &'a str,
    pub env: &'a str,
    /// Rendered objects, in apply order.
    pub objects: &'a [Value],
    /// What the environment's previous deployment applied here.
    pub previous: &'a [ObjectRef],
    pub rollout_timeout: Duration,
    /// A preview's namespace is Gantry's to create and delete.
    pub preview: bool,
}

/// What a successful apply left on the cluster.
#[derive(Debug)]
pub struct Applied {
    pub objects: Vec<ObjectRef>,
    pub pruned: Vec<ObjectRef>,
}

/// Why an apply, a discovery, a prune, a rollout or a teardown on a cluster
/// did not succeed. Each says which object on which cluster.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server answered with an error status.
    #[error("{what}: {message} ({code}){tries}")]
    Answered {
        what: String,
        code: u16,
        message: String,
        tries: String,
    },
    /// No answer: the connection failed, or the client could not ask.
    #[error("{what}: {message}{tries}")]
    Unreachable {
        what: String,
        message: String,
        tries: String,
    },
    #[error("apiVersion {0:?} is not valid")]
    BadApiVersion(String),
    #[error("kind {kind} ({api_version}) is not served by cluster {cluster}")]
    NotServed {
        kind: String,
        api_version: String,
        cluster: String,
    },
    /// What the object's status says will not come right by waiting.
    #[error("{object} on {cluster} failed: {why}")]
    Unhealthy {
        object: String,
        cluster: String,
        why: String,
    },
    #[error("{object} on {cluster} did not become ready within {timeout}: {why}")]
    NotReady {
        object: String,
        cluster: String,
        timeout: crate::config::duration::HumanDuration,
        why: String,
    },
    /// A namespace Gantry did not create (or not for this environment).
    #[error("namespace {namespace} on {cluster} is not Gantry's for {owner}; not deleting it")]
    NotOurs {
        namespace: String,
        cluster: String,
        owner: String,
    },
    /// A preview's namespace that exists and is not Gantry's: taking it over
    /// would delete it with the preview.
    #[error(
        "namespace {namespace} on {cluster} exists and Gantry did not create it for {owner}: a preview's namespace is deleted with the preview, so Gantry does not take over one it did not make. Choose another `namespace:` for the stack entry, or remove that namespace"
    )]
    Foreign {
        namespace: String,
        cluster: String,
        owner: String,
    },
    #[error("namespace {namespace} on {cluster} is still terminating after {after}")]
    StillTerminating {
        namespace: String,
        cluster: String,
        after: crate::config::duration::HumanDuration,
    },
}

impl ApplyError {
    /// The API server said the thing does not exist.
    fn is_not_found(&self) -> bool {
        matches!(self, ApplyError::Answered { code: 404, .. })
    }
}

impl crate::error::Classified for ApplyError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ApplyError::Answered { code, .. } if (400..500).contains(code) && *code != 429 => {
                Kind::Invalid
            }
            ApplyError::Answered { .. }
            | ApplyError::Unreachable { .. }
            | ApplyError::NotReady { .. }
            | ApplyError::StillTerminating { .. } => Kind::Unavailable,
            ApplyError::BadApiVersion(_)
            | ApplyError::NotServed { .. }
            | ApplyError::Unhealthy { .. } => Kind::Invalid,
            ApplyError::NotOurs { .. } | ApplyError::Foreign { .. } => Kind::Conflict,
        }
    }
}

/// True for errors worth another attempt: overload, unavailability, and
/// connections that failed or were cut.
fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `call` up to [`ATTEMPTS`] times while it fails transiently.
async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, ApplyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if transient(&error) && attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, "{what}: transient error, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) => {
                let tries = if transient(&error) {
                    format!(" (after {ATTEMPTS} attempts)")
                } else {
                    String::new()
                };
                let what = what.to_string();
                return Err(match error {
                    kube::Error::Api(status) => ApplyError::Answered {
                        what,
                        code: status.code,
                        message: status.message,
                        tries,
                    },
                    other => ApplyError::Unreachable {
                        what,
                        message: other.to_string(),
                        tries,
                    },
                });
            }
        }
    }
}

/// Discovery, one API group version at a time, remembered for the deploy.
pub struct Kinds<'c> {
    client: &'c kube::Client,
    cluster: &'c str,
    groups: HashMap<String, Vec<(ApiResource, ApiCapabilities)>>,
}

impl<'c> Kinds<'c> {
    pub fn new(client: &'c kube::Client, cluster: &'c str) -> Self {
        Kinds {
            client,
            cluster,
            groups: HashMap::new(),
        }
    }

    /// The resource serving `apiVersion` + `kind`. `refresh` asks the
    /// cluster again (after a CRD was applied).
    pub async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
        refresh: bool,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        if refresh || !self.groups.contains_key(api_version) {
            let gv: GroupVersion = api_version
                .parse()
                .map_err(|_| ApplyError::BadApiVersion(api_version.to_string()))?;
            let client = self.client.clone();
            let found = retry(
                &format!("discovering {api_version} on {}", self.cluster),
                || {
                    let (client, gv) = (client.clone(), gv.clone());
                    async move { oneshot::pinned_group(&client, &gv).await }
                },
            )
            .await;
            let resources = match found {
                Ok(group) => group.versioned_resources(&gv.version),
                Err(error) if error.is_not_found() => Vec::new(),
                Err(error) => return Err(error),
            };
            self.groups.insert(api_version.to_string(), resources);
        }
        self.groups
            .get(api_version)
            .and_then(|resources| resources.iter().find(|(ar, _)| ar.kind == kind).cloned())
            .ok_or_else(|| ApplyError::NotServed {
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                cluster: self.cluster.to_string(),
            })
    }
}

/// The API for one object: namespaced or cluster-wide.
fn api_for(
    client: &kube::Client,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (caps.scope == Scope::Namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    }
}

/// Applies `request.objects` and waits for them to roll out.
pub async fn deploy(
    client: &kube::Client,
    request: &ClusterDeploy<'_>,
) -> Result<Applied, ApplyError> {
    let mut kinds = Kinds::new(client, request.cluster);
    let foreign = ensure_namespace(client, &mut kinds, request).await? == Namespace::Foreign;

    let mut applied = Vec::new();
    let mut workloads = Vec::new();
    let mut refresh = false;
    // One deadline for every wave's rollout.
    let deadline = Instant::now() + request.rollout_timeout;
    let mut wave = request.objects.first().map(wave_of);
    for object in request.objects {
        // A wave is healthy before the next is applied (the objects come
        // sorted by wave).
        let next = wave_of(object);
        if wave != Some(next) {
            wait_for_rollout(
                &workloads,
                deadline,
                request.rollout_timeout,
                request.cluster,
            )
            .await?;
            workloads.clear();
            wave = Some(next);
        }
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if foreign && kind == "Namespace" && name == request.namespace {
            // Applied, it would carry Gantry's labels: adopted after all.
            continue;
        }
        let (ar, caps) = match kinds.resolve(api_version, kind, false).await {
            Ok(found) => found,
            // A kind from a CRD applied just before: ask again once.
            Err(_) if refresh => kinds.resolve(api_version, kind, true).await?,
            Err(error) => return Err(error),
        };
        let mut object = object.clone();
        let namespace = if caps.scope == Scope::Namespaced {
            object["metadata"]["namespace"] = json!(request.namespace);
            Some(request.namespace)
        } else {
            if let Some(map) = object["metadata"].as_object_mut() {
                map.remove("namespace");
            }
            None
        };
        let api = api_for(client, &ar, &caps, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = retry(
            &format!("applying {kind}/{name} to {}", request.cluster),
            || {
                let (api, object, params, name) =
                    (api.clone(), object.clone(), params.clone(), name.clone());
                async move { api.patch(&name, &params, &Patch::Apply(&object)).await }
            },
        )
        .await?;
        if kind == "CustomResourceDefinition" {
            refresh = true;
        }
        // Whatever the apply's answer does not already show healthy is
        // waited for, any kind (custom resources by their conditions).
        let generation = result.metadata.generation.unwrap_or(1);
        let waited = object["metadata"]["annotations"][WAIT_ANNOTATION] != "false";
        match health::of(kind, &result.data, generation) {
            _ if !waited => {}
            Health::Healthy => {}
            Health::InProgress(_) => {
                workloads.push((api.clone(), kind.to_string(), name.clone(), generation));
            }
            Health::Failed(why) => {
                return Err(ApplyError::Unhealthy {
                    object: format!("{}/{name}", kind.to_ascii_lowercase()),
                    cluster: request.cluster.to_string(),
                    why,
                });
            }
        }
        applied.push(ObjectRef::of(&object));
    }

    let pruned = prune(client, &mut kinds, request, &applied).await?;
    wait_for_rollout(
        &workloads,
        deadline,
        request.rollout_timeout,
        request.cluster,
    )
    .await?;
    Ok(Applied {
        objects: applied,
        pruned,
    })
}

/// Whose the environment's namespace is, once it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Namespace {
    Gantrys,
    /// Someone else's, deployed into as found (never labelled, never deleted).
    Foreign,
}

/// Creates the environment's namespace, labelled as Gantry's for it. One
/// that exists and is not Gantry's for this environment is never adopted
/// (labelled, it would be deleted with the environment): a preview refuses
/// it; staging and production deploy into it as they find it (a platform
/// team's namespace with its quotas), and Gantry never deletes it.
async fn ensure_namespace(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    request: &ClusterDeploy<'_>,
) -> Result<Namespace, ApplyError> {
    let (ar, caps) = kinds.resolve("v1", "Namespace", false).await?;
    let api = api_for(client, &ar, &caps, None);
    let existing = retry(
        &format!(
            "reading namespace {} on {}",
            request.namespace, request.cluster
        ),
        || {
            let api = api.clone();
            let name = request.namespace.to_string();
            async move { api.get_opt(&name).await }
        },
    )
    .await?;
    if let Some(existing) = existing {
        let labels = existing.metadata.labels.unwrap_or_default();
        let ours = labels.get(MANAGED_BY).map(String::as_str) == Some("gantry")
            && labels.get(APP_LABEL).map(String::as_str) == Some(request.app)
            && labels.get(ENV_LABEL).map(String::as_str) == Some(request.env);
        if ours {
            return Ok(Namespace::Gantrys);
        }
        if !request.preview {
            return Ok(Namespace::Foreign);
        }
        return Err(ApplyError::Foreign {
            namespace: request.namespace.to_string(),
            cluster: request.cluster.to_string(),
            owner: format!("{}/{}", request.app, request.env),
        });
    }
    if request
        .objects
        .iter()
        .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == request.namespace)
    {
        return Ok(Namespace::Gantrys);
    }
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": request.namespace, "labels": { MANAGED_BY: "gantry", APP_LABEL: request.app, ENV_LABEL: request.env } },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    retry(
        &format!(
            "creating namespace {} on {}",
            request.namespace, request.cluster
        ),
        || {
            let (api, namespace, params) = (api.clone(), namespace.clone(), params.clone());
            let name = request.namespace.to_string();
            async move { api.patch(&name, &params, &Patch::Apply(&namespace)).await }
        },
    )
    .await
    .map(|_| Namespace::Gantrys)
}

/// Deletes what the previous deployment applied and this one did not.
async fn prune(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    request: &ClusterDeploy<'_>,
    applied: &[ObjectRef],
) -> Result<Vec<ObjectRef>, ApplyError> {
    let mut pruned = Vec::new();
    for old in request.previous {
        if applied.iter().any(|new| same_object(new, old)) {
            continue;
        }
        let Ok((ar, caps)) = kinds.resolve(&old.api_version, &old.kind, false).await else {
            continue;
        };
        let api = api_for(client, &ar, &caps, old.namespace.as_deref());
        let name = old.name.clone();
        let outcome = retry(&format!("pruning {old} on {}", request.cluster), || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
            }
        })
        .await;
        match outcome {
            Ok(()) => pruned.push(old.clone()),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(pruned)
}

/// The same object across apiVersions of one group (apps/v1 vs apps/v1beta2).
fn same_object(a: &ObjectRef, b: &ObjectRef) -> bool {
    let group = |r: &ObjectRef| {
        r.api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    group(a) == group(b) && a.kind == b.kind && a.name == b.name && a.namespace == b.namespace
}

/// Waits until every workload is available (Jobs: complete).
async fn wait_for_rollout(
    workloads: &[(Api<DynamicObject>, String, String, i64)],
    deadline: Instant,
    timeout: Duration,
    cluster: &str,
) -> Result<(), ApplyError> {
    let mut pause = Duration::from_millis(50);
    for (api, kind, name, generation) in workloads {
        loop {
            let object = retry(&format!("reading {kind}/{name} on {cluster}"), || {
                let (api, name) = (api.clone(), name.clone());
                async move { api.get(&name).await }
            })
            .await?;
            match health::of(kind, &object.data, *generation) {
                Health::Healthy => break,
                Health::Failed(why) => {
                    return Err(ApplyError::Unhealthy {
                        object: format!("{}/{name}", kind.to_ascii_lowercase()),
                        cluster: cluster.to_string(),
                        why,
                    });
                }
                Health::InProgress(why) if Instant::now() >= deadline => {
                    return Err(ApplyError::NotReady {
                        object: format!("{}/{name}", kind.to_ascii_lowercase()),
                        cluster: cluster.to_string(),
                        timeout: crate::config::duration::HumanDuration(timeout),
                        why,
                    });
                }
                Health::InProgress(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    Ok(())
}

/// Deletes an environment's namespace (only one Gantry created for it) and
/// waits until it is gone.
pub async fn delete_namespace(
    client: &kube::Client,
    cluster: &str,
    namespace: &str,
    app: &str,
    env: &str,
) -> Result<String, ApplyError> {
    let mut kinds = Kinds::new(client, cluster);
    let (ar, caps) = kinds.resolve("v1", "Namespace", false).await?;
    let api = api_for(client, &ar, &caps, None);
    let existing = retry(
        &format!("reading namespace {namespace} on {cluster}"),
        || {
            let api = api.clone();
            let namespace = namespace.to_string();
            async move { api.get_opt(&namespace).await }
        },
    )
    .await?;
    let Some(existing) = existing else {
        return Ok(format!(
            "namespace {namespace} on {cluster} was already gone"
        ));
    };
    let labels = existing.metadata.labels.unwrap_or_default();
    let ours = labels.get(MANAGED_BY).map(String::as_str) == Some("gantry")
        && labels.get(APP_LABEL).map(String::as_str) == Some(app)
        && labels.get(ENV_LABEL).map(String::as_str) == Some(env);
    if !ours {
        return Err(ApplyError::NotOurs {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            owner: format!("{app}/{env}"),
        });
    }
    retry(
        &format!("deleting namespace {namespace} on {cluster}"),
        || {
            let api = api.clone();
            let namespace = namespace.to_string();
            async move {
                api.delete(&namespace, &DeleteParams::background())
                    .await
                    .map(|_| ())
            }
        },
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = retry(
            &format!("checking namespace {namespace} on {cluster}"),
            || {
                let api = api.clone();
                let namespace = namespace.to_string();
                async move { api.get_opt(&namespace).await }
            },
        )
        .await?;
        if left.is_none() {
            return Ok(format!(
                "namespace {namespace} on {cluster} deleted and verified gone"
            ));
        }
        if Instant::now() > deadline {
            return Err(ApplyError::StillTerminating {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                after: crate::config::duration::HumanDuration(Duration::from_secs(120)),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classified, Kind};

    fn answered(code: u16) -> ApplyError {
        ApplyError::Answered {
            what: "applying deployment/web to prod".into(),
            code,
            message: "no".into(),
            tries: String::new(),
        }
    }

    /// Prune and discovery skip what is already gone by the error's code,
    /// not by its text; the kind says whose problem it is.
    #[test]
    fn cluster_answers_have_kinds() {
        assert!(answered(404).is_not_found());
        assert!(!answered(403).is_not_found());
        assert_eq!(
            answered(422).kind(),
            Kind::Invalid,
            "the manifests are wrong"
        );
        assert_eq!(
            answered(403).kind(),
            Kind::Invalid,
            "the credentials lack a permission"
        );
        assert_eq!(answered(429).kind(), Kind::Unavailable);
        assert_eq!(answered(503).kind(), Kind::Unavailable);
        assert_eq!(
            answered(422).to_string(),
            "applying deployment/web to prod: no (422)"
        );
    }

    #[test]
    fn readiness_follows_the_workload_status() {
        let readiness = |kind: &str, object: &Value, generation: i64| match health::of(
            kind, object, generation,
        ) {
            Health::Healthy => Ok(()),
            Health::InProgress(why) | Health::Failed(why) => Err(why),
        };
        let deployment = json!({"spec": {"replicas": 2}, "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(readiness("Deployment", &deployment, 2), Ok(()));
        assert_eq!(
            readiness("Deployment", &deployment, 3),
            Err("the controller has not seen generation 3 yet".into())
        );
        let stuck = json!({"spec": {"replicas": 2}, "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 0,
            "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "no"}]}});
        assert_eq!(
            readiness("Deployment", &stuck, 1),
            Err("0/2 replicas available (MinimumReplicasUnavailable: no)".into())
        );
        assert!(readiness("Job", &json!({"spec": {}, "status": {"succeeded": 1}}), 1).is_ok());
        assert!(readiness("DaemonSet", &json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "numberAvailable": 3, "updatedNumberScheduled": 3}}), 1).is_ok());
    }
}
