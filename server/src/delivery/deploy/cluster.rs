//! Applying an environment's manifests to one Kubernetes cluster: dynamic
//! discovery (any kind, custom resources included), the environment's
//! namespace, server-side apply as field manager `gantry`, prune of what the
//! previous deployment applied and this one does not, and a rollout wait.
//! Transient API errors are retried with backoff; permanent ones are not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::{ApiCapabilities, Scope, oneshot};
use serde_json::{Value, json};

use super::health::{Health, Judge};
use super::hooks;
use crate::clusters::Served;
use crate::gitops::guardrails::Guardrails;
use crate::gitops::health_rules::RuleSet;
use crate::manifests::Capabilities;
use crate::manifests::hooks::{Hook, Occasion, Phase};
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
    /// Which hooks run.
    pub run: Run,
    /// What the app may create.
    pub guardrails: &'a Guardrails,
    /// The pipeline repo's health rules.
    pub rules: &'a RuleSet,
}

/// What a successful apply left on the cluster.
#[derive(Debug)]
pub struct Applied {
    pub objects: Vec<ObjectRef>,
    pub pruned: Vec<ObjectRef>,
    /// A sentence per hook that ran.
    pub hooks: Vec<String>,
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
    #[error("{0}")]
    BadHook(String),
    /// A health rule that does not compile (it did when it was loaded).
    #[error("health rule {0}")]
    BadRule(String),
    /// The app's guardrails refuse an object.
    #[error("{0}")]
    Guardrail(String),
    /// A hook ended in failure: its reason, and the end of its log (for
    /// the run's log, read by the app's developers — not in the record).
    #[error("{phase} hook {object} on {cluster} failed: {why}")]
    HookFailed {
        phase: &'static str,
        object: String,
        cluster: String,
        why: String,
        log: String,
    },
    /// Another Gantry environment's namespace.
    #[error(
        "namespace {namespace} on {cluster} is Gantry's for {holder}: {owner} may not deploy into it; choose another `namespace:` for the stack entry"
    )]
    Taken {
        namespace: String,
        cluster: String,
        owner: String,
        holder: String,
    },
    /// A hook named like an object that is not a hook of this environment.
    #[error(
        "hook {object} on {cluster} would replace an object that is not a hook of {owner}: running a hook deletes its last run first, so Gantry refuses; rename the hook"
    )]
    HookClash {
        object: String,
        cluster: String,
        owner: String,
    },
    /// A failure, and what the hooks that ran meanwhile did.
    #[error("{error} (hooks: {})", hooks.join("; "))]
    AfterHooks {
        error: Box<ApplyError>,
        hooks: Vec<String>,
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
    /// What goes to the run's log only (a failed hook's log).
    pub fn log(&self) -> Option<&str> {
        match self {
            ApplyError::HookFailed { log, .. } if !log.is_empty() => Some(log),
            ApplyError::AfterHooks { error, .. } => error.log(),
            _ => None,
        }
    }

    /// The API server said the thing does not exist.
    pub(super) fn is_not_found(&self) -> bool {
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
            ApplyError::NotOurs { .. }
            | ApplyError::Foreign { .. }
            | ApplyError::HookClash { .. }
            | ApplyError::Taken { .. } => Kind::Conflict,
            ApplyError::BadHook(_)
            | ApplyError::BadRule(_)
            | ApplyError::HookFailed { .. }
            | ApplyError::Guardrail(_) => Kind::Invalid,
            ApplyError::AfterHooks { error, .. } => error.kind(),
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
pub(super) async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, ApplyError>
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

/// Discovery, one API group version at a time, kept per cluster across
/// deploys ([`Served`]) and asked again on a miss.
pub struct Kinds<'c> {
    client: &'c kube::Client,
    cluster: &'c str,
    served: Arc<Served>,
}

impl<'c> Kinds<'c> {
    pub fn new(client: &'c kube::Client, cluster: &'c str, served: Arc<Served>) -> Self {
        Kinds {
            client,
            cluster,
            served,
        }
    }

    /// Forgets what is known of `api_version` (an apply answered 404).
    pub fn forget(&self, api_version: &str) {
        self.served.forget(api_version);
    }

    /// The resource serving `apiVersion` + `kind`: from what is known of
    /// the cluster, else from discovery (a kind not found among what is
    /// known is asked for again: its CRD may be new).
    pub async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let find = |resources: &[(ApiResource, ApiCapabilities)]| {
            resources.iter().find(|(ar, _)| ar.kind == kind).cloned()
        };
        if let Some(found) = self.served.get(api_version).as_deref().and_then(find) {
            return Ok(found);
        }
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
        self.served.put(api_version, resources.clone());
        find(&resources).ok_or_else(|| ApplyError::NotServed {
            kind: kind.to_string(),
            api_version: api_version.to_string(),
            cluster: self.cluster.to_string(),
        })
    }
}

/// The API for one object: namespaced or cluster-wide.
pub(super) fn api_for(
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

/// Applies `request.objects` and waits for them to roll out, running their
/// hooks: pre-deploy hooks first, then each wave (its objects applied at
/// once, then waited for together), prune, post-deploy hooks; on any
/// failure the on-failure hooks, with the failure kept as the outcome.
pub async fn deploy(
    client: &kube::Client,
    served: Arc<Served>,
    request: &ClusterDeploy<'_>,
) -> Result<Applied, ApplyError> {
    let kinds = Kinds::new(client, request.cluster, served);
    let mut hooks = Vec::new();
    let mut objects = Vec::new();
    for object in request.objects {
        match crate::manifests::hooks::of(object) {
            Ok(Some(hook)) => hooks.push((object, hook)),
            Ok(None) => objects.push(object),
            // Rendered manifests were checked; a stored one from before
            // hooks existed is named.
            Err(why) => return Err(ApplyError::BadHook(why.0)),
        }
    }
    let occasion = match request.run {
        Run::Deploy if request.previous.is_empty() => Some(Occasion::Install),
        Run::Deploy => Some(Occasion::Upgrade),
        Run::Rollback => Some(Occasion::Rollback),
        Run::Repair => None,
    };
    let judge = Judge {
        rules: request
            .rules
            .compile()
            .map_err(|e| ApplyError::BadRule(e.to_string()))?,
    };
    let place = hooks::Place {
        client,
        cluster: request.cluster,
        namespace: request.namespace,
        app: request.app,
        env: request.env,
        judge,
    };
    let mut rollout = Rollout {
        client,
        request,
        kinds,
        place,
        // One deadline for the hooks and every wave.
        deadline: Instant::now() + request.rollout_timeout,
        ran: Vec::new(),
    };
    rollout.check(request.objects).await?;
    let foreign =
        ensure_namespace(client, &mut rollout.kinds, request).await? == Namespace::Foreign;
    let outcome = rollout.run(&hooks, &objects, foreign, occasion).await;
    match (outcome, occasion) {
        (Ok((applied, pruned)), _) => Ok(Applied {
            objects: applied,
            pruned,
            hooks: rollout.ran,
        }),
        (Err(error), None) => Err(error),
        (Err(error), Some(occasion)) => {
            // The failure hooks get a deadline of their own: the deploy's
            // may be what ran out.
            rollout.deadline = Instant::now() + request.rollout_timeout;
            let after = rollout.hooks(&hooks, Phase::OnFailure, occasion).await;
            if let Err(hook_error) = after {
                rollout.ran.push(format!("then {hook_error}"));
            }
            if rollout.ran.is_empty() {
                Err(error)
            } else {
                Err(ApplyError::AfterHooks {
                    error: Box::new(error),
                    hooks: rollout.ran,
                })
            }
        }
    }
}

/// The CustomResourceDefinition among `objects` that serves `kind` of
/// `api_version`.
fn crd_for<'v>(objects: &'v [Value], api_version: &str, kind: &str) -> Option<&'v Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    objects.iter().find(|o| {
        o["kind"] == "CustomResourceDefinition"
            && o["spec"]["group"] == group
            && o["spec"]["names"]["kind"] == kind
            && o["spec"]["versions"]
                .as_array()
                .is_some_and(|all| all.iter().any(|v| v["name"] == version))
    })
}

/// How a deploy came about, for the hooks that run on some only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// A new version (an install when nothing was applied here before).
    Deploy,
    /// A stored release again.
    Rollback,
    /// The live objects put back as recorded (self-heal): no hooks.
    Repair,
}

/// One deploy to one cluster under way.
struct Rollout<'r, 'c> {
    client: &'c kube::Client,
    request: &'r ClusterDeploy<'r>,
    kinds: Kinds<'c>,
    place: hooks::Place<'c>,
    deadline: Instant,
    /// What each hook that ran did.
    ran: Vec<String>,
}

/// An object of a wave, ready to apply.
struct Prepared {
    api: Api<DynamicObject>,
    kind: String,
    name: String,
    object: Value,
}

impl Rollout<'_, '_> {
    /// Every object's kind, resolved before anything is applied: a kind
    /// the cluster does not serve (unless a CRD of this release defines
    /// it) or a cluster-scoped kind the app may not create stops the
    /// deploy here.
    async fn check(&mut self, objects: &[Value]) -> Result<(), ApplyError> {
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            match self.kinds.resolve(api_version, kind).await {
                Ok((ar, caps)) => self.guard(&ar, &caps, name)?,
                // Its CRD comes with this release: the CRD says its scope.
                Err(error @ ApplyError::NotServed { .. }) => {
                    match crd_for(objects, api_version, kind) {
                        Some(crd) => {
                            let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind {
                                group: crd["spec"]["group"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                version: String::new(),
                                kind: kind.to_string(),
                            });
                            let scope = if crd["spec"]["scope"] == "Cluster" {
                                Scope::Cluster
                            } else {
                                Scope::Namespaced
                            };
                            let caps = ApiCapabilities {
                                scope,
                                subresources: Vec::new(),
                                operations: Vec::new(),
                            };
                            self.guard(&ar, &caps, name)?;
                        }
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Refuses a cluster-scoped object the app may not create.
    fn guard(
        &self,
        ar: &ApiResource,
        caps: &ApiCapabilities,
        name: &str,
    ) -> Result<(), ApplyError> {
        if caps.scope != Scope::Cluster {
            return Ok(());
        }
        match self.request.guardrails.kind_refusal(
            self.request.app,
            &ar.group,
            &ar.kind,
            name,
            self.request.namespace,
        ) {
            Some(why) => Err(ApplyError::Guardrail(format!(
                "{why} (on {})",
                self.request.cluster
            ))),
            None => Ok(()),
        }
    }

    async fn run(
        &mut self,
        hooks: &[(&Value, Hook)],
        objects: &[&Value],
        foreign: bool,
        occasion: Option<Occasion>,
    ) -> Result<(Vec<ObjectRef>, Vec<ObjectRef>), ApplyError> {
        if let Some(occasion) = occasion {
            self.hooks(hooks, Phase::PreDeploy, occasion).await?;
        }
        let mut applied = Vec::new();
        // The objects come sorted by wave.
        for wave in objects.chunk_by(|a, b| wave_of(a) == wave_of(b)) {
            applied.extend(self.wave(wave, foreign).await?);
        }
        // Self-heal puts back what is there; it never deletes.
        let pruned = if self.request.run == Run::Repair {
            Vec::new()
        } else {
            prune(self.client, &mut self.kinds, self.request, &applied).await?
        };
        if let Some(occasion) = occasion {
            self.hooks(hooks, Phase::PostDeploy, occasion).await?;
        }
        Ok((applied, pruned))
    }

    async fn hooks(
        &mut self,
        hooks: &[(&Value, Hook)],
        phase: Phase,
        occasion: Occasion,
    ) -> Result<(), ApplyError> {
        let ran = hooks::run(
            &self.place,
            &mut self.kinds,
            hooks,
            phase,
            occasion,
            self.deadline,
            self.request.rollout_timeout,
        )
        .await?;
        self.ran.extend(ran);
        Ok(())
    }

    /// Applies one wave's objects at once and waits until all are healthy.
    async fn wave(&mut self, wave: &[&Value], foreign: bool) -> Result<Vec<ObjectRef>, ApplyError> {
        let request = self.request;
        let mut prepared = Vec::new();
        for object in wave {
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
            let (ar, caps) = self.kinds.resolve(api_version, kind).await?;
            self.guard(&ar, &caps, &name)?;
            let mut object = (*object).clone();
            let namespace = if caps.scope == Scope::Namespaced {
                object["metadata"]["namespace"] = json!(request.namespace);
                Some(request.namespace)
            } else {
                if let Some(map) = object["metadata"].as_object_mut() {
                    map.remove("namespace");
                }
                None
            };
            prepared.push(Prepared {
                api: api_for(self.client, &ar, &caps, namespace),
                kind: kind.to_string(),
                name,
                object,
            });
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let results = join_all(prepared.iter().map(|p| {
            let params = params.clone();
            async move {
                retry(
                    &format!("applying {}/{} to {}", p.kind, p.name, request.cluster),
                    || {
                        let params = params.clone();
                        async move {
                            p.api
                                .patch(&p.name, &params, &Patch::Apply(&p.object))
                                .await
                        }
                    },
                )
                .await
            }
        }))
        .await;
        let mut waiting = Vec::new();
        let mut applied = Vec::new();
        for (p, result) in prepared.iter().zip(results) {
            if let Err(error) = &result
                && error.is_not_found()
            {
                // What discovery said is stale: the kind went away.
                self.kinds
                    .forget(p.object["apiVersion"].as_str().unwrap_or_default());
            }
            let result = result?;
            // Whatever the apply's answer does not already show healthy
            // is waited for, any kind (custom resources by their
            // conditions).
            let generation = result.metadata.generation.unwrap_or(1);
            let waited = p.object["metadata"]["annotations"][WAIT_ANNOTATION] != "false";
            let api_version = p.object["apiVersion"].as_str().unwrap_or_default();
            match self
                .place
                .judge
                .health(api_version, &p.kind, &whole(&result), generation)
            {
                _ if !waited => {}
                Health::Healthy => {}
                Health::InProgress(why) | Health::Unknown(why) => {
                    let version = result.metadata.resource_version.clone().unwrap_or_default();
                    waiting.push((p, version, generation, why));
                }
                Health::Failed(why) => {
                    return Err(ApplyError::Unhealthy {
                        object: format!("{}/{}", p.kind.to_ascii_lowercase(), p.name),
                        cluster: request.cluster.to_string(),
                        why,
                    });
                }
            }
            applied.push(ObjectRef::of(&p.object));
        }
        let judge = &self.place.judge;
        let watched = join_all(waiting.into_iter().map(|(p, version, generation, why)| {
            let api_version = p.object["apiVersion"].as_str().unwrap_or_default();
            let watch = Watch {
                api: &p.api,
                kind: &p.kind,
                name: &p.name,
                cluster: request.cluster,
                deadline: self.deadline,
                timeout: request.rollout_timeout,
            };
            async move {
                let verdict = |object: &Value, generation: i64| {
                    judge.health(api_version, &p.kind, object, generation)
                };
                watch.until(version, generation, why, &verdict).await
            }
        }))
        .await;
        watched.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(applied)
    }
}

/// An object as the API gave it, whole (apiVersion, kind, metadata and
/// the rest): what health rules read.
pub(super) fn whole(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Waiting for one object to become healthy, by watching it.
pub(super) struct Watch<'w> {
    pub api: &'w Api<DynamicObject>,
    pub kind: &'w str,
    pub name: &'w str,
    pub cluster: &'w str,
    pub deadline: Instant,
    pub timeout: Duration,
}

impl Watch<'_> {
    /// Watches the object from `version` (where it was `why` not healthy
    /// yet) until `verdict` says it is healthy or failed, or the deadline.
    /// A watch that ends or expires is picked up again from the object as
    /// it is then.
    pub async fn until(
        &self,
        mut version: String,
        generation: i64,
        mut why: String,
        verdict: &(dyn Fn(&Value, i64) -> Health + Sync),
    ) -> Result<(), ApplyError> {
        let described = format!("{}/{}", self.kind.to_ascii_lowercase(), self.name);
        let failed = |why: String| ApplyError::Unhealthy {
            object: described.clone(),
            cluster: self.cluster.to_string(),
            why,
        };
        // A watch that keeps ending at once is not asked again at once.
        let mut pause = Duration::from_millis(20);
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApplyError::NotReady {
                    object: described,
                    cluster: self.cluster.to_string(),
                    timeout: crate::config::duration::HumanDuration(self.timeout),
                    why,
                });
            }
            let params = WatchParams::default()
                .fields(&format!("metadata.name={}", self.name))
                .timeout(left.as_secs().clamp(1, 290) as u32);
            let watched = tokio::time::timeout(left, async {
                let stream = retry(&format!("watching {described} on {}", self.cluster), || {
                    let (params, version) = (params.clone(), version.clone());
                    async move { self.api.watch(&params, &version).await }
                })
                .await?;
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let object = match event {
                        Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => object,
                        Ok(WatchEvent::Bookmark(mark)) => {
                            version = mark.metadata.resource_version;
                            continue;
                        }
                        Ok(WatchEvent::Deleted(_)) => {
                            why = "it was deleted".into();
                            continue;
                        }
                        // Expired or cut: read it again below.
                        Ok(WatchEvent::Error(_)) | Err(_) => break,
                    };
                    version = object.metadata.resource_version.clone().unwrap_or_default();
                    match verdict(&whole(&object), generation) {
                        Health::Healthy => return Ok(true),
                        Health::Failed(why) => return Err(failed(why)),
                        Health::InProgress(now) | Health::Unknown(now) => why = now,
                    }
                }
                Ok::<bool, ApplyError>(false)
            })
            .await;
            match watched {
                Ok(Ok(true)) => return Ok(()),
                Ok(Err(error)) => return Err(error),
                // The deadline: said at the top of the loop.
                Err(_) => continue,
                Ok(Ok(false)) => {}
            }
            // The watch ended without a verdict: the object as it is now.
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            let object = retry(&format!("reading {described} on {}", self.cluster), || {
                let name = self.name.to_string();
                async move { self.api.get(&name).await }
            })
            .await?;
            version = object.metadata.resource_version.clone().unwrap_or_default();
            match verdict(&whole(&object), generation) {
                Health::Healthy => return Ok(()),
                Health::Failed(why) => return Err(failed(why)),
                Health::InProgress(now) | Health::Unknown(now) => why = now,
            }
        }
    }
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
    let (ar, caps) = kinds.resolve("v1", "Namespace").await?;
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
        // Another environment's: never shared (its pods, its prune).
        if labels.get(MANAGED_BY).map(String::as_str) == Some("gantry") {
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
            return Err(ApplyError::Taken {
                namespace: request.namespace.to_string(),
                cluster: request.cluster.to_string(),
                owner: format!("{}/{}", request.app, request.env),
                holder: format!("{}/{}", label(APP_LABEL), label(ENV_LABEL)),
            });
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
        let Ok((ar, caps)) = kinds.resolve(&old.api_version, &old.kind).await else {
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

/// What all of `clusters` serve, for rendering a chart (see
/// [`Capabilities`]). A cluster that does not answer is left out: its
/// apply fails anyway, saying why.
pub async fn capabilities(
    registry: &crate::clusters::Registry<'_>,
    clusters: impl Iterator<Item = &String>,
) -> Option<Capabilities> {
    let mut found: Option<Capabilities> = None;
    for cluster in clusters {
        let Ok(client) = registry.client(cluster).await else {
            continue;
        };
        // A cluster that does not answer soon is left out (its apply will
        // say why); the others are not held up.
        let asked = tokio::time::timeout(Duration::from_secs(10), async {
            (
                client.apiserver_version().await,
                client.list_core_api_versions().await,
                client.list_api_groups().await,
            )
        })
        .await;
        let Ok((Ok(version), Ok(core), Ok(groups))) = asked else {
            continue;
        };
        let kube_version = release_of(&version);
        let mut served: Vec<String> = core.versions;
        for group in groups.groups {
            served.extend(group.versions.into_iter().map(|v| v.group_version));
        }
        found = Some(match found {
            None => Capabilities {
                kube_version,
                api_versions: served,
            },
            Some(before) => Capabilities {
                kube_version: lowest(before.kube_version, kube_version),
                api_versions: before
                    .api_versions
                    .into_iter()
                    .filter(|v| served.contains(v))
                    .collect(),
            },
        });
    }
    found.map(|mut found| {
        found.api_versions.sort();
        found.api_versions.dedup();
        found
    })
}

/// `v1.33.0` from `/version` (`v1.33.0-eks-a737599` → `v1.33.0`).
fn release_of(info: &k8s_openapi::apimachinery::pkg::version::Info) -> String {
    let plain = info
        .git_version
        .split(['-', '+'])
        .next()
        .unwrap_or_default()
        .to_string();
    if plain.starts_with('v') && plain.matches('.').count() == 2 {
        plain
    } else {
        let minor: String = info
            .minor
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        format!("v{}.{minor}.0", info.major)
    }
}

/// The lower of two `vX.Y.Z` versions.
fn lowest(a: String, b: String) -> String {
    let parts = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    if parts(&b) < parts(&a) { b } else { a }
}

/// An environment about to be deleted from one cluster.
pub struct Teardown<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub app: &'a str,
    pub env: &'a str,
    /// What the environment's current deployment applied.
    pub objects: &'a [Value],
    pub timeout: Duration,
    pub guardrails: &'a Guardrails,
    pub rules: &'a RuleSet,
}

/// Runs the pre-delete hooks among the environment's objects, before its
/// namespace is deleted, under today's guardrails.
pub async fn pre_delete(
    client: &kube::Client,
    served: Arc<Served>,
    teardown: &Teardown<'_>,
) -> Result<Vec<String>, ApplyError> {
    let mut found = Vec::new();
    for object in teardown.objects {
        if let Ok(Some(hook)) = crate::manifests::hooks::of(object)
            && hook.runs(Phase::PreDelete, Occasion::Upgrade)
        {
            found.push((object, hook));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut kinds = Kinds::new(client, teardown.cluster, served);
    for (object, _) in &found {
        let (ar, caps) = kinds
            .resolve(
                object["apiVersion"].as_str().unwrap_or_default(),
                object["kind"].as_str().unwrap_or_default(),
            )
            .await?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if caps.scope == Scope::Cluster
            && let Some(why) = teardown.guardrails.kind_refusal(
                teardown.app,
                &ar.group,
                &ar.kind,
                name,
                teardown.namespace,
            )
        {
            return Err(ApplyError::Guardrail(why));
        }
    }
    let place = hooks::Place {
        client,
        cluster: teardown.cluster,
        namespace: teardown.namespace,
        app: teardown.app,
        env: teardown.env,
        judge: Judge {
            rules: teardown
                .rules
                .compile()
                .map_err(|e| ApplyError::BadRule(e.to_string()))?,
        },
    };
    hooks::run(
        &place,
        &mut kinds,
        &found,
        Phase::PreDelete,
        // A pre-delete hook runs whatever the environment's history.
        Occasion::Upgrade,
        Instant::now() + teardown.timeout,
        teardown.timeout,
    )
    .await
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
    let mut kinds = Kinds::new(client, cluster, Arc::default());
    let (ar, caps) = kinds.resolve("v1", "Namespace").await?;
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
        let readiness = |kind: &str, object: &Value, generation: i64| match super::super::health::of(
            kind, object, generation,
        ) {
            Health::Healthy => Ok(()),
            Health::InProgress(why) | Health::Failed(why) | Health::Unknown(why) => Err(why),
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
