//! The deployment and replica set controllers, as far as clients see them:
//! each pod template of a Deployment gets a ReplicaSet (`<name>-<hash>`,
//! labelled `pod-template-hash`, owned by the Deployment) with a revision,
//! the current one is scaled to the Deployment's replicas and the others to
//! zero, each ReplicaSet has its pods, and the scaling is recorded as
//! events. `kubectl rollout history|undo`, `get rs|pods` and `logs` read
//! what this leaves. The garbage collector deletes what lost its owner.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::store::{Key, Store, now_rfc3339};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: [&str; 2] = [REVISION, "kubectl.kubernetes.io/last-applied-configuration"];

/// The characters Kubernetes uses for generated names (no vowels, no
/// look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// A name-safe rendering of `value`, `length` characters long.
pub(crate) fn encode(mut value: u64, length: usize) -> String {
    (0..length)
        .map(|_| {
            let c = ALPHABET[(value % ALPHABET.len() as u64) as usize] as char;
            value /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The `pod-template-hash` of a pod template. A real controller hashes the
/// typed template, where an absent field, `null` and an empty object are
/// one and the same; so does this (`kubectl rollout undo` sends back the
/// template with `creationTimestamp: null` and `resources: {}` added).
fn template_hash(template: &Value) -> String {
    encode(u64::from(fnv(&pruned(template).to_string())) * 7919, 10)
}

/// `value` without nulls, empty objects and empty arrays, at any depth.
fn pruned(value: &Value) -> Value {
    let empty = |v: &Value| {
        v.is_null()
            || v.as_object().is_some_and(serde_json::Map::is_empty)
            || v.as_array().is_some_and(Vec::is_empty)
    };
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pruned(v)))
                .filter(|(_, v)| !empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn revision(set: &Value) -> i64 {
    set["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The uid of the object's controller (its owner with `controller: true`)
/// when that is a Deployment, a ReplicaSet or a Job — what these
/// controllers and their garbage collection look after.
pub(crate) fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| {
            o["controller"] == true
                && match o["apiVersion"].as_str() {
                    Some("apps/v1") => {
                        matches!(o["kind"].as_str(), Some("Deployment" | "ReplicaSet"))
                    }
                    Some("batch/v1") => o["kind"] == "Job",
                    _ => false,
                }
        })?["uid"]
        .as_str()
}

fn owner_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!([{
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// What a controller compares before writing: the object without the
/// fields the store stamps.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            meta.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    object
}

/// Writes `wanted` unless `current` already is it; true when written.
fn converge(
    store: &Store,
    group: &str,
    plural: &str,
    current: Option<&Value>,
    wanted: Value,
) -> bool {
    if current.is_some_and(|c| comparable(c) == comparable(&wanted)) {
        return false;
    }
    let expected = current.and_then(|c| c["metadata"]["resourceVersion"].as_str());
    store.put_if(group, plural, wanted, expected)
}

/// One pass of both controllers and the garbage collector. `ready` says
/// whether a workload whose spec changed that long ago is available.
pub fn reconcile(store: &Store, ready: impl Fn(Duration) -> bool) {
    let sets = store.objects_of("apps", "replicasets");
    for (key, deployment, age) in store.workloads() {
        if key.group == "apps" && key.plural == "deployments" {
            deploy(store, &key, &deployment, &sets, ready(age));
        }
    }
    // Pods read once per pass, not once per ReplicaSet.
    let all_pods = store.objects_of("", "pods");
    for (key, set) in store.objects_of("apps", "replicasets") {
        pods(store, &key, &set, &all_pods);
        // Seen: the controller has reconciled this generation.
        let generation = int(&set["metadata"]["generation"]);
        if int(&set["status"]["observedGeneration"]) < generation {
            let mut status = set["status"].clone();
            status["observedGeneration"] = json!(generation);
            store.set_status(&key, status);
        }
    }
    collect_garbage(store);
}

/// The Deployment's ReplicaSets: the current template's, scaled up, with
/// the newest revision; the others scaled to zero, oldest beyond
/// `revisionHistoryLimit` deleted.
fn deploy(store: &Store, key: &Key, deployment: &Value, sets: &[(Key, Value)], ready: bool) {
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or_default();
    let owned: Vec<&Value> = sets
        .iter()
        .filter(|(k, set)| k.namespace == key.namespace && controller_uid(set) == Some(uid))
        .map(|(_, set)| set)
        .collect();
    let template = deployment["spec"]["template"].clone();
    let hash = template_hash(&template);
    let name = format!("{}-{hash}", key.name);
    let current = owned
        .iter()
        .copied()
        .find(|s| s["metadata"]["name"] == name);
    let newest = owned.iter().map(|s| revision(s)).max().unwrap_or(0);
    let revision_now = match current {
        Some(set) if revision(set) == newest && newest > 0 => newest,
        _ => newest + 1,
    };
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);

    let mut annotations = serde_json::Map::new();
    if let Some(from) = deployment["metadata"]["annotations"].as_object() {
        for (k, v) in from {
            if !NOT_COPIED.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    annotations.insert(REVISION.into(), json!(revision_now.to_string()));
    annotations.insert(
        "deployment.kubernetes.io/desired-replicas".into(),
        json!(replicas.to_string()),
    );
    annotations.insert(
        "deployment.kubernetes.io/max-replicas".into(),
        json!((replicas + 1).to_string()),
    );
    let mut pod_template = template.clone();
    pod_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut labels = template["metadata"]["labels"].clone();
    labels[HASH_LABEL] = json!(hash);
    let available = if ready { replicas } else { 0 };
    let wanted = json!({
        "metadata": {
            "name": name,
            "namespace": key.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owner_reference(deployment, "apps/v1", "Deployment"),
        },
        "spec": { "replicas": replicas, "selector": selector, "template": pod_template },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "observedGeneration": current.map_or(1, |c| int(&c["status"]["observedGeneration"]).max(1)),
        },
    });
    let from = current.map_or(0, |c| int(&c["spec"]["replicas"]));
    if converge(store, "apps", "replicasets", current, wanted) && from != replicas {
        scaled(store, deployment, &name, from, replicas);
    }

    let mut old: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|s| s["metadata"]["name"] != name)
        .collect();
    for set in &old {
        let from = int(&set["spec"]["replicas"]);
        if from == 0 {
            continue;
        }
        let mut wanted = (*set).clone();
        wanted["spec"]["replicas"] = json!(0);
        wanted["status"] = json!({ "replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "fullyLabeledReplicas": 0 });
        let set_name = set["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if converge(store, "apps", "replicasets", Some(set), wanted) {
            scaled(store, deployment, &set_name, from, 0);
        }
    }
    let limit = deployment["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    old.sort_by_key(|s| revision(s));
    let excess = old.len().saturating_sub(limit);
    for set in old.into_iter().take(excess) {
        store.remove(&Key {
            group: "apps".into(),
            plural: "replicasets".into(),
            namespace: key.namespace.clone(),
            name: set["metadata"]["name"].as_str().unwrap_or_default().into(),
        });
    }

    if deployment["metadata"]["annotations"][REVISION] != json!(revision_now.to_string()) {
        let mut annotated = deployment.clone();
        annotated["metadata"]["annotations"][REVISION] = json!(revision_now.to_string());
        let expected = deployment["metadata"]["resourceVersion"].as_str();
        store.put_if("apps", "deployments", annotated, expected);
    }
}

/// Records `ScalingReplicaSet`, as the deployment controller does.
fn scaled(store: &Store, deployment: &Value, set: &str, from: i64, to: i64) {
    let direction = if to > from { "up" } else { "down" };
    record(
        store,
        deployment,
        "Deployment",
        "deployment-controller",
        "ScalingReplicaSet",
        &format!("Scaled {direction} replica set {set} from {from} to {to}"),
    );
}

/// A core/v1 Event about `object`.
pub fn record(
    store: &Store,
    object: &Value,
    kind: &str,
    component: &str,
    reason: &str,
    message: &str,
) {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let now = now_rfc3339();
    let event = json!({
        "metadata": {
            "name": format!("{name}.{}", encode(store.resource_version() * 104_729 + u64::from(fnv(message)), 16)),
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": object["apiVersion"],
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "source": { "component": component },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": "Normal",
        "reportingComponent": component,
        "reportingInstance": "",
    });
    store.put_if("", "events", event, None);
}

/// The ReplicaSet's pods: as many as it wants, `Running` and ready once it
/// counts them ready.
fn pods(store: &Store, key: &Key, set: &Value, all_pods: &[(Key, Value)]) {
    let uid = set["metadata"]["uid"].as_str().unwrap_or_default();
    let mine: Vec<&(Key, Value)> = all_pods
        .iter()
        .filter(|(k, pod)| k.namespace == key.namespace && controller_uid(pod) == Some(uid))
        .collect();
    let wanted = int(&set["spec"]["replicas"]).max(0) as usize;
    let ready = int(&set["status"]["readyReplicas"]) >= wanted as i64;
    for (pod_key, _) in mine.iter().skip(wanted) {
        store.remove(pod_key);
    }
    for (_, pod) in mine.iter().take(wanted) {
        let mut updated = pod.clone();
        updated["status"] = pod_status(pod, ready);
        converge(store, "", "pods", Some(pod), updated);
    }
    for index in mine.len()..wanted {
        // The index keeps names apart even when no write moved the version.
        let seed = store.resource_version() * 31 + index as u64 * 7 + u64::from(fnv(&key.name));
        let suffix = encode(seed, 5);
        let name = format!("{}-{suffix}", key.name);
        let template = &set["spec"]["template"];
        let mut pod = json!({
            "metadata": {
                "name": name,
                "namespace": key.namespace,
                "labels": template["metadata"]["labels"],
                "ownerReferences": owner_reference(set, "apps/v1", "ReplicaSet"),
            },
            "spec": template["spec"],
        });
        if let Some(annotations) = template["metadata"].get("annotations") {
            pod["metadata"]["annotations"] = annotations.clone();
        }
        pod["spec"]["nodeName"] = json!("emulated-node");
        pod["status"] = pod_status(&pod, ready);
        if store.put_if("", "pods", pod.clone(), None) {
            record(
                store,
                set,
                "ReplicaSet",
                "replicaset-controller",
                "SuccessfulCreate",
                &format!("Created pod: {name}"),
            );
        }
    }
}

fn pod_status(pod: &Value, ready: bool) -> Value {
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let state = if ready {
                json!({ "running": { "startedAt": pod["metadata"]["creationTimestamp"] } })
            } else {
                json!({ "waiting": { "reason": "ContainerCreating" } })
            };
            json!({ "name": c["name"], "image": c["image"], "ready": ready, "started": ready, "restartCount": 0, "state": state })
        })
        .collect();
    let condition = if ready { "True" } else { "False" };
    json!({
        "phase": if ready { "Running" } else { "Pending" },
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Ready", "status": condition },
            { "type": "ContainersReady", "status": condition },
        ],
        "containerStatuses": containers,
        "podIP": "10.244.0.10",
        "hostIP": "10.0.0.1",
    })
}

/// Deletes ReplicaSets and pods whose controller is gone (background
/// cascading deletion).
fn collect_garbage(store: &Store) {
    let owners: BTreeSet<String> = [
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
    ]
    .iter()
    .flat_map(|(group, plural)| store.objects_of(group, plural))
    .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_string))
    .collect();
    for (group, plural) in [("apps", "replicasets"), ("", "pods")] {
        for (key, object) in store.objects_of(group, plural) {
            if controller_uid(&object).is_some_and(|uid| !owners.contains(uid)) {
                store.remove(&key);
            }
        }
    }
    // A Secret or ConfigMap that pods own (a build step's secrets) goes
    // once every pod owning it has.
    let pods: BTreeSet<String> = store
        .objects_of("", "pods")
        .into_iter()
        .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    for plural in ["secrets", "configmaps"] {
        for (key, object) in store.objects_of("", plural) {
            let owners: Vec<&Value> = object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| o["kind"] == "Pod")
                .collect();
            if !owners.is_empty()
                && owners
                    .iter()
                    .all(|o| o["uid"].as_str().is_none_or(|uid| !pods.contains(uid)))
            {
                store.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_hash_is_stable_and_name_safe() {
        let template = json!({ "metadata": { "labels": { "app": "web" } }, "spec": {} });
        let hash = template_hash(&template);
        assert_eq!(hash, template_hash(&template.clone()));
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| ALPHABET.contains(&b)));
        let typed = json!({ "metadata": { "labels": { "app": "web" }, "creationTimestamp": null }, "spec": { "containers": [] } });
        assert_eq!(hash, template_hash(&typed), "as the typed template");
        let other = json!({ "metadata": { "labels": { "app": "api" } }, "spec": {} });
        assert_ne!(hash, template_hash(&other));
    }
}
