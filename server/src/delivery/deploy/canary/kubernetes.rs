//! A canary on Kubernetes: beside each Deployment the app renders, a
//! second one, `<name>-canary`, runs the new version with the same pod
//! labels plus `gantry.dev/track: canary` — so the app's Service, which
//! selects on the shared labels, sends it requests in proportion to its
//! ready pods. The stable Deployment is never touched: an abort deletes
//! the canary and every request is the stable version's again, and a
//! rollback has nothing to wait for.
//!
//! A weight is met by replica ratio: `canary = ⌈stable × w / (100 − w)⌉`,
//! at least one pod and at most nine times the stable count (90 %); the
//! share this gives is what the run page shows. A traffic router (Gateway
//! API `HTTPRoute` weights, a service mesh) would plug in here, setting
//! exact weights on one canary pod instead of scaling it (docs/src/promotion.md).

use futures_util::future::join_all;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use super::super::cluster::Run;
use super::super::lifecycle::{self, Kubernetes, Subject, TargetError};
use crate::delivery::Delivery;
use crate::manifests::{APP_LABEL, ENV_LABEL, ObjectRef};

/// The label that tells the canary's pods from the stable ones.
pub const TRACK_LABEL: &str = "gantry.dev/track";
const CANARY: &str = "canary";

/// Canary pods for `weight` percent beside `stable` untouched ones.
pub fn replicas(stable: i64, weight: u8) -> i64 {
    // Within what a Deployment's replicas can be (an int32).
    let stable = stable.clamp(1, i64::from(i32::MAX) / 9);
    let weight = i64::from(weight.min(90));
    let wanted = (stable * weight + (100 - weight) - 1) / (100 - weight);
    wanted.clamp(1, stable * 9)
}

/// The canary's share of pods, in percent.
pub fn share(stable: i64, canary: i64) -> u8 {
    let total = (stable.max(0) + canary.max(0)).max(1);
    u8::try_from(canary.max(0) * 100 / total).unwrap_or(100)
}

/// A Deployment among the rendered objects, with its stable replica count.
pub struct Workload {
    pub name: String,
    pub stable: i64,
}

/// The rendered Deployments a canary goes beside (hooks are not workloads).
pub fn workloads(objects: &[Value]) -> Vec<Workload> {
    objects
        .iter()
        .filter(|o| o["apiVersion"] == "apps/v1" && o["kind"] == "Deployment")
        .filter(|o| matches!(crate::manifests::hooks::of(o), Ok(None)))
        .filter_map(|o| {
            Some(Workload {
                name: o["metadata"]["name"].as_str()?.to_string(),
                stable: o["spec"]["replicas"].as_i64().unwrap_or(1),
            })
        })
        .collect()
}

/// The canary copies of `objects`' Deployments at `weight`.
pub fn objects(objects: &[Value], weight: u8) -> Vec<Value> {
    let names: Vec<String> = workloads(objects).into_iter().map(|w| w.name).collect();
    objects
        .iter()
        .filter(|o| {
            o["apiVersion"] == "apps/v1"
                && o["kind"] == "Deployment"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|w| w == n))
        })
        .map(|stable| canary_of(stable, weight))
        .collect()
}

fn canary_of(stable: &Value, weight: u8) -> Value {
    let mut canary = stable.clone();
    let name = stable["metadata"]["name"].as_str().unwrap_or_default();
    let stable_replicas = stable["spec"]["replicas"].as_i64().unwrap_or(1);
    canary["metadata"]["name"] = json!(format!("{name}-{CANARY}"));
    for path in [
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ] {
        let mut labels = canary.pointer(path).cloned().unwrap_or_else(|| json!({}));
        if !labels.is_object() {
            labels = json!({});
        }
        labels[TRACK_LABEL] = json!(CANARY);
        let mut at = &mut canary;
        for part in path.trim_start_matches('/').split('/') {
            at = &mut at[part];
        }
        *at = labels;
    }
    canary["spec"]["replicas"] = json!(replicas(stable_replicas, weight));
    canary
}

/// Puts the canary at `weight` on every target and waits until its pods
/// are ready: what it did, for the log.
pub async fn set_weight(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    kubernetes: &Kubernetes,
    targets: &[String],
    weight: u8,
) -> Result<String, super::Trouble> {
    let canaries = Kubernetes {
        objects: objects(&kubernetes.objects, weight),
        ..kubernetes.clone()
    };
    // Compared with themselves: nothing of the stable version is pruned.
    let refs: Vec<ObjectRef> = canaries.objects.iter().map(ObjectRef::of).collect();
    let applied = join_all(targets.iter().map(|target| {
        let (canaries, refs) = (&canaries, &refs);
        async move {
            lifecycle::apply_objects(app, subject, target, canaries, refs, Run::Repair)
                .await
                .map_err(|e| format!("{target}: {e}"))
        }
    }))
    .await;
    let failed: Vec<String> = applied.into_iter().filter_map(Result::err).collect();
    if !failed.is_empty() {
        return Err(super::Trouble(failed.join("; ")));
    }
    let placed: Vec<String> = workloads(&kubernetes.objects)
        .iter()
        .map(|w| {
            let canary = replicas(w.stable, weight);
            format!(
                "{}: {canary} canary pod(s) beside {} stable ({} % of pods)",
                w.name,
                w.stable,
                share(w.stable, canary)
            )
        })
        .collect();
    Ok(placed.join("; "))
}

/// Deletes the environment's canary Deployments on every target — this
/// walk's, or one a crash left behind. What could not be deleted, by
/// target.
pub async fn remove(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    namespace: &str,
    targets: &[String],
) -> Vec<String> {
    let selector = format!(
        "{TRACK_LABEL}={CANARY},{APP_LABEL}={},{ENV_LABEL}={}",
        subject.app, subject.environment
    );
    let removed = join_all(targets.iter().map(|target| {
        let selector = selector.clone();
        async move {
            let (client, _) = app
                .cluster_registry()
                .connection(target)
                .await
                .map_err(|e| format!("{target}: {e}"))?;
            let api: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client, namespace);
            let found =
                super::super::cluster::retry(&format!("listing canaries on {target}"), || {
                    let (api, selector) = (api.clone(), selector.clone());
                    async move { api.list(&ListParams::default().labels(&selector)).await }
                })
                .await
                .map_err(|e| e.to_string())?;
            for deployment in found.items {
                let Some(name) = deployment.metadata.name else {
                    continue;
                };
                let deleted = super::super::cluster::retry(
                    &format!("deleting deployment/{name} on {target}"),
                    || {
                        let (api, name) = (api.clone(), name.clone());
                        async move {
                            api.delete(&name, &DeleteParams::background())
                                .await
                                .map(|_| ())
                        }
                    },
                )
                .await;
                match deleted {
                    Ok(()) => {}
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error.to_string()),
                }
            }
            Ok::<(), String>(())
        }
    }))
    .await;
    removed.into_iter().filter_map(Result::err).collect()
}

/// Why a canary cannot go on clusters with these manifests.
pub fn unfit(kubernetes: &Kubernetes) -> Option<TargetError> {
    workloads(&kubernetes.objects).is_empty().then(|| {
        TargetError::Canary(
            "a canary on Kubernetes runs beside a Deployment (apps/v1), and the manifests render none".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_meet_the_weight_beside_untouched_stable_pods() {
        assert_eq!(replicas(3, 25), 1); // 1 of 4 = 25 %
        assert_eq!(replicas(3, 50), 3);
        assert_eq!(replicas(4, 10), 1);
        assert_eq!(replicas(1, 100), 9); // at most 90 %
        assert_eq!(replicas(0, 5), 1);
        // A hostile or mistaken replica count neither overflows nor panics.
        assert!(replicas(i64::MAX, 90) <= i64::from(i32::MAX));
        assert_eq!(replicas(-4, 50), 1);
        assert_eq!(share(3, 1), 25);
        assert_eq!(share(3, 3), 50);
    }

    #[test]
    fn the_canary_copies_each_deployment_with_its_own_track() {
        let rendered = vec![
            json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "shop" },
                    "spec": { "selector": { "app": "shop" } } }),
            json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": "shop", "labels": { "app": "shop" } },
                    "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "shop" } },
                              "template": { "metadata": { "labels": { "app": "shop" } },
                                            "spec": { "containers": [{ "name": "web", "image": "shop:2" }] } } } }),
        ];
        let canaries = objects(&rendered, 25);
        assert_eq!(canaries.len(), 1, "only Deployments get a canary");
        let canary = &canaries[0];
        assert_eq!(canary["metadata"]["name"], "shop-canary");
        assert_eq!(canary["spec"]["replicas"], 1);
        assert_eq!(
            canary["spec"]["selector"]["matchLabels"][TRACK_LABEL],
            "canary"
        );
        assert_eq!(
            canary["spec"]["template"]["metadata"]["labels"],
            json!({ "app": "shop", TRACK_LABEL: "canary" }),
            "the Service's selector still matches the canary's pods"
        );
        assert_eq!(
            canary["spec"]["template"]["spec"]["containers"][0]["image"],
            "shop:2"
        );
        assert_eq!(rendered[1]["spec"]["replicas"], 3, "stable untouched");
    }
}
