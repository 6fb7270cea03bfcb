//! A stand-in for the controllers: workloads become available a while
//! after their spec changes — or never —, Deployments get ReplicaSets and
//! pods (`deployments`), Jobs a pod that runs (`jobs`), and namespaces being deleted
//! go away with their content.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::RolloutMode;
use crate::store::Store;

pub fn spawn(store: Arc<Store>) {
    let weak = Arc::downgrade(&store);
    drop(store);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Stops once the emulator (and its store) is gone.
            let Some(store) = weak.upgrade() else { return };
            store.finish_terminating();
            let mode = store.rollout();
            let ready = |age: Duration| match mode {
                RolloutMode::After(delay) => age >= delay,
                RolloutMode::Never => false,
            };
            for (key, object, age) in store.workloads() {
                if key.plural != "jobs" {
                    store.set_status(&key, status(&key.plural, &object, ready(age)));
                }
            }
            crate::deployments::reconcile(&store, ready);
            crate::jobs::reconcile(&store, ready);
        }
    });
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({ "type": kind, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message })
}

fn status(plural: &str, object: &Value, ready: bool) -> Value {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let available = if ready { replicas } else { 0 };
    match plural {
        "deployments" => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": replicas - available,
            "conditions": [
                if ready {
                    condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.")
                } else {
                    condition("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
                },
                condition("Progressing", true, if ready { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }, "ReplicaSet is progressing."),
            ],
        }),
        "statefulsets" => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
        }),
        _ => json!({
            "observedGeneration": generation,
            "numberReady": i64::from(ready),
            "numberAvailable": i64::from(ready),
            "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberMisscheduled": 0,
        }),
    }
}
