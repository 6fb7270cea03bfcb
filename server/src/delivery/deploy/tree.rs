//! The live resource tree of an environment on one of its clusters: every
//! object its current deployment applied there, read live — its health (the
//! pipeline repo's rules, then the built-in reading), whether it is still
//! what Gantry applied (in sync, drifted, missing) — and, for the objects of
//! the page shown, their children through owner references (a Deployment's
//! ReplicaSets and their Pods, a Job's Pods, a CronJob's Jobs) and their
//! newest events.
//!
//! Built to stay usable at thousands of objects: the live objects come from
//! one LIST per applied kind (not one GET per object), children and events
//! from one LIST each, and only after filtering and paging on the server;
//! the browser gets one page.

use std::collections::{BTreeMap, HashMap};

use app::dto::{
    HealthCount, PodLog, RESOURCES_PER_PAGE, ResourceDetail, ResourceEvent, ResourceHealth,
    ResourceNode, ResourcePage, ResourceQuery, ResourceRef, SyncState,
};
use kube::api::{Api, ListParams, LogParams};
use kube::discovery::Scope;
use serde_json::Value;

use super::cluster::{Kinds, api_for, retry, whole};
use super::drift::{DriftError, deployed_objects};
use super::health::{Health, Judge};
use crate::db::environments::EnvRow;
use crate::delivery::Delivery;
use crate::gitops::schema::{AppConfig, StackEntry};
use crate::manifests::{self, ObjectRef};

/// Events shown per object.
const EVENTS: usize = 5;
/// Lines of a pod's log shown.
const LOG_LINES: i64 = 1000;
const LOG_BYTES: i64 = 1 << 20;

/// Which environment, as the caller may see it.
pub struct EnvScope<'a> {
    pub env: &'a EnvRow,
    pub app: &'a str,
    pub config: &'a AppConfig,
}

/// The environment's stack entry and the cluster asked for (its first by
/// default); `None` when it has no cluster or names another.
fn place<'e>(
    scope: &'e EnvScope<'_>,
    cluster: Option<&str>,
) -> Result<(&'e StackEntry, String), DriftError> {
    let entry = scope
        .config
        .stack
        .iter()
        .find(|e| e.env == scope.env.stack_entry)
        .ok_or_else(|| {
            DriftError::Config(format!(
                "{} has no stack entry {}",
                scope.app, scope.env.stack_entry
            ))
        })?;
    let clusters: Vec<&String> = entry.cluster_targets().collect();
    let chosen = match cluster {
        Some(name) => clusters.iter().find(|c| c.as_str() == name).copied(),
        None => clusters.first().copied(),
    };
    match chosen {
        Some(cluster) => Ok((entry, cluster.clone())),
        None => Err(DriftError::NotOnCluster(format!(
            "{}/{} does not deploy to {}",
            scope.app,
            scope.env.name,
            cluster.unwrap_or("a cluster")
        ))),
    }
}

/// What the environment's current deployment applied (hooks are run, not
/// kept: not in the tree).
async fn applied(app: &Delivery<'_>, env: &EnvRow) -> Result<Vec<Value>, DriftError> {
    let Some(deployment) = env.deployment_id else {
        return Ok(Vec::new());
    };
    Ok(deployed_objects(app, deployment)
        .await?
        .unwrap_or_default()
        .into_iter()
        .filter(|o| !manifests::hooks::is_hook(o))
        .collect())
}

/// The live objects of `applied` on the cluster, by reference: one LIST
/// per kind.
async fn live_objects(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    cluster: &str,
    namespace: &str,
    applied: &[Value],
) -> Result<HashMap<ObjectRef, Value>, DriftError> {
    let mut by_kind: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for object in applied {
        let reference = ObjectRef::of(object);
        by_kind
            .entry((reference.api_version, reference.kind))
            .or_default()
            .push(reference.name);
    }
    let mut live = HashMap::new();
    for ((api_version, kind), names) in by_kind {
        let Ok((ar, caps)) = kinds.resolve(&api_version, &kind).await else {
            // Not served (its CRD is gone): every one of them is missing.
            continue;
        };
        let namespaced = caps.scope == Scope::Namespaced;
        let api = api_for(client, &ar, &caps, namespaced.then_some(namespace));
        let listed = retry(&format!("listing {kind} on {cluster}"), || {
            let api = api.clone();
            async move { api.list(&ListParams::default()).await }
        })
        .await?;
        for item in listed.items {
            let name = item.metadata.name.clone().unwrap_or_default();
            if names.contains(&name) {
                let reference = ObjectRef {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                    namespace: None,
                    name,
                };
                // A real API server leaves the kind out of a list's items:
                // without it a Secret would not be known to be one.
                let mut object = whole(&item);
                object["apiVersion"] = api_version.clone().into();
                object["kind"] = kind.clone().into();
                live.insert(reference, object);
            }
        }
    }
    Ok(live)
}

/// An applied object's reference without its namespace (applied and live
/// objects are compared by kind and name within the environment).
fn key(object: &Value) -> ObjectRef {
    ObjectRef {
        namespace: None,
        ..ObjectRef::of(object)
    }
}

fn health_of(judge: &Judge, object: &Value) -> (ResourceHealth, Option<String>) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    match judge.health(api_version, kind, object, generation) {
        Health::Healthy => (ResourceHealth::Healthy, None),
        Health::InProgress(why) => (ResourceHealth::Progressing, Some(why)),
        Health::Failed(why) => (ResourceHealth::Degraded, Some(why)),
        Health::Unknown(why) => (ResourceHealth::Unknown, Some(why)),
    }
}

/// Whether every field Gantry applied has the same value live (what the
/// cluster added — defaults, status, its own metadata — is not drift).
pub fn in_sync(applied: &Value, live: &Value) -> bool {
    match (applied, live) {
        (Value::Object(applied), Value::Object(live)) => applied.iter().all(|(key, value)| {
            matches!(key.as_str(), "status")
                || live.get(key).is_some_and(|other| in_sync(value, other))
                || (value.is_null() && live.get(key).is_none())
        }),
        (Value::Array(applied), Value::Array(live)) => {
            applied.len() == live.len() && applied.iter().zip(live).all(|(a, l)| in_sync(a, l))
        }
        // A quantity or a number may be written either way (`"1"`, `1`).
        (Value::String(a), Value::Number(n)) | (Value::Number(n), Value::String(a)) => {
            *a == n.to_string()
        }
        _ => applied == live,
    }
}

/// `live` with only the fields `applied` has: what to compare it with.
fn projected(applied: &Value, live: &Value) -> Value {
    match (applied, live) {
        (Value::Object(applied), Value::Object(live)) => Value::Object(
            applied
                .iter()
                .filter_map(|(key, value)| {
                    live.get(key)
                        .map(|other| (key.clone(), projected(value, other)))
                })
                .collect(),
        ),
        (Value::Array(applied), Value::Array(live)) if applied.len() == live.len() => Value::Array(
            applied
                .iter()
                .zip(live)
                .map(|(a, l)| projected(a, l))
                .collect(),
        ),
        (_, live) => live.clone(),
    }
}

/// The controllers' objects in the namespace that may be children: one
/// LIST per kind that the page's objects can own.
async fn owned(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    cluster: &str,
    namespace: &str,
    parents: &[&str],
) -> Result<Vec<Value>, DriftError> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    let owns = |kind: &str| parents.contains(&kind);
    if owns("Deployment") {
        wanted.push(("apps/v1", "ReplicaSet"));
    }
    if owns("CronJob") {
        wanted.push(("batch/v1", "Job"));
    }
    if [
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
    ]
    .iter()
    .any(|k| owns(k))
    {
        wanted.push(("v1", "Pod"));
    }
    let mut out = Vec::new();
    for (api_version, kind) in wanted {
        let (ar, caps) = kinds.resolve(api_version, kind).await?;
        let api = api_for(client, &ar, &caps, Some(namespace));
        let listed = retry(&format!("listing {kind} on {cluster}"), || {
            let api = api.clone();
            async move { api.list(&ListParams::default()).await }
        })
        .await?;
        out.extend(listed.items.iter().map(|item| {
            let mut object = whole(item);
            object["apiVersion"] = api_version.into();
            object["kind"] = kind.into();
            object
        }));
    }
    Ok(out)
}

/// The namespace's events, by the uid of what they are about, newest
/// first.
async fn events(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    cluster: &str,
    namespace: &str,
) -> Result<HashMap<String, Vec<ResourceEvent>>, DriftError> {
    let (ar, caps) = kinds.resolve("v1", "Event").await?;
    let api = api_for(client, &ar, &caps, Some(namespace));
    let listed = retry(&format!("listing events on {cluster}"), || {
        let api = api.clone();
        async move { api.list(&ListParams::default()).await }
    })
    .await?;
    let mut by_uid: HashMap<String, Vec<(String, ResourceEvent)>> = HashMap::new();
    for item in &listed.items {
        let event = whole(item);
        let Some(uid) = event["involvedObject"]["uid"].as_str() else {
            continue;
        };
        let seen = ["lastTimestamp", "eventTime", "firstTimestamp"]
            .iter()
            .find_map(|f| event[*f].as_str())
            .or_else(|| event["metadata"]["creationTimestamp"].as_str())
            .map(str::to_string);
        by_uid.entry(uid.to_string()).or_default().push((
            seen.clone().unwrap_or_default(),
            ResourceEvent {
                kind: event["type"].as_str().unwrap_or("Normal").to_string(),
                reason: event["reason"].as_str().unwrap_or_default().to_string(),
                message: event["message"].as_str().unwrap_or_default().to_string(),
                count: event["count"].as_i64().unwrap_or(1),
                last_seen: seen,
            },
        ));
    }
    Ok(by_uid
        .into_iter()
        .map(|(uid, mut list)| {
            list.sort_by(|a, b| b.0.cmp(&a.0));
            (uid, list.into_iter().take(EVENTS).map(|(_, e)| e).collect())
        })
        .collect())
}

/// The uid of `object`'s controller, if it has one.
fn controller(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)?["uid"]
        .as_str()
}

/// `object`'s children among `candidates`, each with its own, as nodes.
fn children(
    object: &Value,
    candidates: &[Value],
    judge: &Judge,
    events: &HashMap<String, Vec<ResourceEvent>>,
    depth: usize,
) -> Vec<ResourceNode> {
    let Some(uid) = object["metadata"]["uid"].as_str() else {
        return Vec::new();
    };
    if depth > 3 {
        return Vec::new();
    }
    let mut found: Vec<&Value> = candidates
        .iter()
        .filter(|c| controller(c) == Some(uid))
        .collect();
    // The newest first: the current ReplicaSet before the old ones.
    found.sort_by(|a, b| {
        let made = |o: &Value| {
            o["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        };
        made(b).cmp(&made(a)).then_with(|| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        })
    });
    found
        .into_iter()
        .map(|child| {
            let mut node = node(child, judge, events, SyncState::Owned);
            node.children = children(child, candidates, judge, events, depth + 1);
            node
        })
        .collect()
}

fn node(
    object: &Value,
    judge: &Judge,
    events: &HashMap<String, Vec<ResourceEvent>>,
    sync: SyncState,
) -> ResourceNode {
    let (health, message) = health_of(judge, object);
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let containers = if kind == "Pod" {
        object["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    } else {
        Vec::new()
    };
    ResourceNode {
        api_version: object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        kind,
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        health,
        message,
        sync,
        children: Vec::new(),
        events: object["metadata"]["uid"]
            .as_str()
            .and_then(|uid| events.get(uid))
            .cloned()
            .unwrap_or_default(),
        containers,
    }
}

/// What the caller may do beyond looking.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allowed {
    pub inspect: bool,
    pub read_logs: bool,
}

/// One page of the environment's tree on one cluster.
pub async fn page(
    app: &Delivery<'_>,
    scope: &EnvScope<'_>,
    query: &ResourceQuery,
    allowed: Allowed,
) -> Result<ResourcePage, DriftError> {
    let (entry, cluster) = place(scope, query.cluster.as_deref())?;
    let clusters: Vec<String> = entry.cluster_targets().cloned().collect();
    let namespace = scope.env.namespace.clone().unwrap_or_default();
    let applied = applied(app, scope.env).await?;
    let judge = Judge {
        rules: scope
            .config
            .health_rules
            .compile()
            .map_err(|e| DriftError::Config(e.to_string()))?,
    };
    let mut page = ResourcePage {
        app: scope.app.to_string(),
        environment: scope.env.name.clone(),
        cluster: cluster.clone(),
        clusters,
        namespace: namespace.clone(),
        deployment_id: scope.env.deployment_id,
        total: 0,
        page: query.page.unwrap_or(1).max(1),
        pages: 1,
        counts: Vec::new(),
        drifted: 0,
        kinds: Vec::new(),
        objects: Vec::new(),
        unreachable: None,
        can_inspect: allowed.inspect,
        can_read_logs: allowed.read_logs,
    };
    let mut kinds_applied: Vec<String> = applied
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_string))
        .collect();
    kinds_applied.sort();
    kinds_applied.dedup();
    page.kinds = kinds_applied;
    if applied.is_empty() {
        return Ok(page);
    }

    let connection = app.cluster_registry().connection(&cluster).await;
    let read = match &connection {
        Ok((client, served)) => {
            let mut kinds = Kinds::new(client, &cluster, served.clone());
            live_objects(client, &mut kinds, &cluster, &namespace, &applied)
                .await
                .map(|live| (live, kinds))
        }
        Err(error) => Err(DriftError::Unreachable(error.to_string())),
    };
    let (live, mut kinds) = match read {
        Ok(found) => (found.0, Some(found.1)),
        Err(error) => {
            page.unreachable = Some(error.to_string());
            (HashMap::new(), None)
        }
    };

    // Every applied object's standing, for the counts and the filters: the
    // health rules run off the async workers (a Lua rule may take its
    // 200 ms, and there may be thousands of objects).
    let unreachable = page.unreachable.clone();
    let rules = judge.clone();
    let mut all: Vec<(ResourceNode, Option<Value>)> = tokio::task::spawn_blocking(move || {
        let mut live = live;
        applied
            .iter()
            .map(|object| {
                let found = live.remove(&key(object));
                let mut node = match &found {
                    Some(live_object) => {
                        let sync = if in_sync(object, live_object) {
                            SyncState::InSync
                        } else {
                            SyncState::Drifted
                        };
                        node(live_object, &rules, &HashMap::new(), sync)
                    }
                    None => {
                        let mut node = node(object, &rules, &HashMap::new(), SyncState::Missing);
                        node.health = if unreachable.is_some() {
                            ResourceHealth::Unknown
                        } else {
                            ResourceHealth::Missing
                        };
                        node.message = unreachable.clone();
                        node
                    }
                };
                node.api_version = object["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (node, found)
            })
            .collect()
    })
    .await
    .map_err(|e| DriftError::Unreachable(format!("reading the tree stopped: {e}")))?;
    for health in ResourceHealth::ALL {
        let count = all.iter().filter(|(n, _)| n.health == health).count();
        if count > 0 {
            page.counts.push(HealthCount { health, count });
        }
    }
    page.drifted = all
        .iter()
        .filter(|(n, _)| n.sync == SyncState::Drifted)
        .count();

    let wanted_health = query.health.as_deref().and_then(ResourceHealth::parse);
    let needle = query.q.as_deref().map(str::to_lowercase);
    all.retain(|(n, _)| {
        query.kind.as_deref().is_none_or(|k| n.kind == k)
            && wanted_health.is_none_or(|h| n.health == h)
            && needle
                .as_deref()
                .is_none_or(|q| n.name.to_lowercase().contains(q))
    });
    page.total = all.len();
    page.pages = all.len().div_ceil(RESOURCES_PER_PAGE).max(1) as u32;
    page.page = page.page.min(page.pages);
    let start = (page.page as usize - 1) * RESOURCES_PER_PAGE;
    let shown: Vec<(ResourceNode, Option<Value>)> = all
        .into_iter()
        .skip(start)
        .take(RESOURCES_PER_PAGE)
        .collect();

    // Children and events of the page's objects only.
    let (candidates, events) = match (&connection, kinds.as_mut()) {
        (Ok((client, _)), Some(kinds)) if page.unreachable.is_none() => {
            let parents: Vec<&str> = shown.iter().map(|(n, _)| n.kind.as_str()).collect();
            let candidates = owned(client, kinds, &cluster, &namespace, &parents).await?;
            let events = events(client, kinds, &cluster, &namespace).await?;
            (candidates, events)
        }
        _ => (Vec::new(), HashMap::new()),
    };
    page.objects = shown
        .into_iter()
        .map(|(mut node, live_object)| {
            if let Some(live_object) = &live_object {
                node.children = children(live_object, &candidates, &judge, &events, 0);
                node.events = live_object["metadata"]["uid"]
                    .as_str()
                    .and_then(|uid| events.get(uid))
                    .cloned()
                    .unwrap_or_default();
            }
            node
        })
        .collect();
    Ok(page)
}

/// YAML of `object` as people see it: Secret values redacted, the
/// server's bookkeeping out.
fn shown(object: &Value) -> String {
    let mut object = manifests::redact(object);
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("managedFields");
        // kubectl's copy of what it applied: a Secret's values in clear.
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    manifests::Rendered::to_yaml(&[object])
}

/// One applied object, live and as applied, with the difference (admins).
pub async fn detail(
    app: &Delivery<'_>,
    scope: &EnvScope<'_>,
    reference: &ResourceRef,
) -> Result<ResourceDetail, DriftError> {
    let (_, cluster) = place(scope, reference.cluster.as_deref())?;
    let namespace = scope.env.namespace.clone().unwrap_or_default();
    let applied = applied(app, scope.env).await?;
    let wanted = ObjectRef {
        api_version: reference.api_version.clone(),
        kind: reference.kind.clone(),
        namespace: None,
        name: reference.name.clone(),
    };
    let object = applied.iter().find(|o| key(o) == wanted).ok_or_else(|| {
        DriftError::NotOnCluster(format!(
            "{}/{} is not among what {}/{} applied",
            reference.kind, reference.name, scope.app, scope.env.name
        ))
    })?;
    let (client, served) = app.cluster_registry().connection(&cluster).await?;
    let mut kinds = Kinds::new(&client, &cluster, served);
    let live = live_objects(
        &client,
        &mut kinds,
        &cluster,
        &namespace,
        std::slice::from_ref(object),
    )
    .await?
    .remove(&wanted);
    let events = match &live {
        Some(live) => {
            let uid = live["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            events(&client, &mut kinds, &cluster, &namespace)
                .await?
                .remove(&uid)
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let applied_text = shown(object);
    let diff = live.as_ref().map(|live| {
        let now = shown(&projected(object, live));
        similar::TextDiff::from_lines(&applied_text, &now)
            .unified_diff()
            .context_radius(3)
            .header("applied", "live")
            .to_string()
    });
    Ok(ResourceDetail {
        cluster,
        namespace,
        live: live.as_ref().map(shown),
        applied: Some(applied_text),
        diff: diff.filter(|d| !d.is_empty()),
        events,
    })
}

/// Whether `object` (a pod) is the environment's: it, or a controller up
/// its owner references (at most three: Pod ← ReplicaSet ← Deployment,
/// Pod ← Job ← CronJob), carries the environment's labels.
async fn belongs(
    client: &kube::Client,
    kinds: &mut Kinds<'_>,
    cluster: &str,
    namespace: &str,
    mut object: Value,
    scope: &EnvScope<'_>,
) -> Result<bool, DriftError> {
    for _ in 0..4 {
        let labels = &object["metadata"]["labels"];
        if labels[manifests::APP_LABEL] == scope.app
            && labels[manifests::ENV_LABEL] == scope.env.name.as_str()
            && labels[manifests::MANAGED_BY] == "gantry"
        {
            return Ok(true);
        }
        let Some(owner) = object["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|all| all.iter().find(|o| o["controller"] == true))
            .cloned()
        else {
            return Ok(false);
        };
        let (api_version, kind, name) = (
            owner["apiVersion"].as_str().unwrap_or_default(),
            owner["kind"].as_str().unwrap_or_default(),
            owner["name"].as_str().unwrap_or_default().to_string(),
        );
        let Ok((ar, caps)) = kinds.resolve(api_version, kind).await else {
            return Ok(false);
        };
        if caps.scope != Scope::Namespaced {
            return Ok(false);
        }
        let api = api_for(client, &ar, &caps, Some(namespace));
        let found = retry(&format!("reading {kind}/{name} on {cluster}"), || {
            let (api, name) = (api.clone(), name.clone());
            async move { api.get_opt(&name).await }
        })
        .await?;
        match found {
            Some(found) => object = whole(&found),
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The end of a pod's log in the environment's namespace.
pub async fn pod_log(
    app: &Delivery<'_>,
    scope: &EnvScope<'_>,
    pod: &str,
    cluster: Option<&str>,
    container: Option<&str>,
) -> Result<PodLog, DriftError> {
    let (_, cluster) = place(scope, cluster)?;
    // A pod's name is a DNS subdomain: anything else ("../kube-system/…")
    // would be a path on the cluster's API, not a pod of this namespace.
    let valid = (1..=253).contains(&pod.len())
        && pod
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !pod.contains("..")
        && pod.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(DriftError::NotOnCluster(format!(
            "{pod:?} is not a pod's name"
        )));
    }
    let Some(namespace) = scope.env.namespace.clone() else {
        return Err(DriftError::NotOnCluster(format!(
            "{}/{} has nothing on a cluster",
            scope.app, scope.env.name
        )));
    };
    let (client, served) = app.cluster_registry().connection(&cluster).await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &namespace);
    let found = retry(&format!("reading pod {pod} on {cluster}"), || {
        let pods = pods.clone();
        let pod = pod.to_string();
        async move { pods.get_opt(&pod).await }
    })
    .await?
    .ok_or_else(|| DriftError::NotOnCluster(format!("no pod {pod} in {namespace} on {cluster}")))?;
    // The namespace may be shared (a platform team's): the pod must be
    // this environment's — applied by it, or made by a controller of
    // something it applied.
    let mut kinds = Kinds::new(&client, &cluster, served);
    let walked = serde_json::to_value(&found).unwrap_or_default();
    if !belongs(&client, &mut kinds, &cluster, &namespace, walked, scope).await? {
        return Err(DriftError::NotOnCluster(format!(
            "pod {pod} is not {}/{}'s",
            scope.app, scope.env.name
        )));
    }
    let containers: Vec<String> = found
        .spec
        .map(|spec| spec.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    let container = match container {
        Some(name) if containers.iter().any(|c| c == name) => name.to_string(),
        Some(name) => {
            return Err(DriftError::NotOnCluster(format!(
                "pod {pod} has no container {name}"
            )));
        }
        None => containers.first().cloned().unwrap_or_default(),
    };
    let params = LogParams {
        container: Some(container.clone()),
        tail_lines: Some(LOG_LINES),
        limit_bytes: Some(LOG_BYTES),
        ..LogParams::default()
    };
    let text = retry(
        &format!("reading the log of pod {pod} on {cluster}"),
        || {
            let (pods, params, pod) = (pods.clone(), params.clone(), pod.to_string());
            async move { pods.logs(&pod, &params).await }
        },
    )
    .await?;
    Ok(PodLog {
        cluster,
        namespace,
        pod: pod.to_string(),
        container,
        containers,
        text,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_what_gantry_applied_can_drift() {
        let applied = json!({ "spec": { "replicas": 2, "template": { "spec": { "containers": [{ "name": "web", "image": "a:1" }] } } } });
        let live = json!({ "spec": { "replicas": 2, "revisionHistoryLimit": 10, "template": { "spec": { "containers": [{ "name": "web", "image": "a:1", "imagePullPolicy": "IfNotPresent" }] } } }, "status": { "replicas": 2 } });
        assert!(
            in_sync(&applied, &live),
            "defaults and status are not drift"
        );
        let scaled = json!({ "spec": { "replicas": 5, "template": { "spec": { "containers": [{ "name": "web", "image": "a:1" }] } } } });
        assert!(!in_sync(&applied, &scaled));
        assert_eq!(
            projected(&applied, &scaled),
            json!({ "spec": { "replicas": 5, "template": { "spec": { "containers": [{ "name": "web", "image": "a:1" }] } } } })
        );
        assert!(in_sync(
            &json!({ "data": { "n": "1" } }),
            &json!({ "data": { "n": 1 } })
        ));
    }

    #[test]
    fn children_follow_controller_references_newest_first() {
        let deployment = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web", "uid": "d1" } });
        let owner = |uid: &str| json!([{ "uid": uid, "controller": true }]);
        let candidates = vec![
            json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": "web-old", "uid": "r0", "creationTimestamp": "2026-12-01T00:00:00Z", "ownerReferences": owner("d1") }, "status": {} }),
            json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": "web-new", "uid": "r1", "creationTimestamp": "2026-12-07T00:00:00Z", "ownerReferences": owner("d1") }, "status": {} }),
            json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-new-x", "uid": "p1", "ownerReferences": owner("r1") }, "spec": { "containers": [{ "name": "web" }] }, "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } }),
            json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "billing-y", "uid": "p2", "ownerReferences": owner("zz") }, "spec": {}, "status": {} }),
        ];
        let tree = children(
            &deployment,
            &candidates,
            &Judge::default(),
            &HashMap::new(),
            0,
        );
        let names: Vec<&str> = tree.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["web-new", "web-old"]);
        assert_eq!(tree[0].children.len(), 1);
        let pod = &tree[0].children[0];
        assert_eq!(
            (pod.name.as_str(), pod.health, pod.sync),
            ("web-new-x", ResourceHealth::Healthy, SyncState::Owned)
        );
        assert_eq!(pod.containers, ["web"]);
        assert!(tree[1].children.is_empty());
    }
}
