//! Re-attaching to a build pod an earlier attempt of the run started. A
//! replica that dies (or stops, or loses its lease) mid-step leaves its
//! pod running; the replica that takes the run over finds it by label,
//! takes it as its own (the attempt label moves on, so the clean-up loop
//! leaves it), writes a one-time URL of its own into the pod's Secret —
//! `collect` reads it again until a Gantry takes the checkout — and
//! follows its log on from the last line the earlier attempt stored.
//! A pod that cannot be followed any more (its checkout already went to
//! the dead replica, its node failed it) is deleted, and the run starts
//! over from its first step.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

use std::time::Duration;

use super::pod::{self, ATTEMPT_LABEL, INSTANCE_LABEL, MANAGED_BY, POSITION_LABEL, RUN_LABEL};
use super::{BuildError, Builds, verdict};
use crate::gitops::builds::KubernetesExecutor;
use crate::runs::logs::NOTE;

/// Whether a pod of an earlier attempt can be followed on: its script
/// started (the workspace reached it), nothing failed it, and its checkout
/// has not been sent back yet (`collect` still runs, waiting for a Gantry
/// to take it).
pub fn attachable(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && verdict::step_started(pod)
        && !verdict::ended_container(pod, pod::COLLECT)
        && !matches!(verdict::of(Some(pod)), verdict::Verdict::Failed(_))
}

/// How long one question to the build cluster may take (its client
/// retries a failing API server for a minute).
const ASK: Duration = Duration::from_secs(10);

/// The pod an earlier attempt of run `run_id` started for the step at
/// `position`, when it can be followed on — taken as this attempt's at
/// once (its attempt label), so the clean-up loop leaves it whatever the
/// checkout takes meanwhile. This installation's other pods of earlier
/// attempts of the run in that namespace are deleted (nothing will follow
/// them). Another Gantry's pods, whose run numbers are its own, are never
/// looked at.
pub async fn find(
    builds: &Builds<'_>,
    executor: &KubernetesExecutor,
    run_id: i64,
    attempt: i64,
    position: usize,
) -> Result<Option<String>, BuildError> {
    let client = builds.clusters.client(&executor.cluster).await?;
    let pods = super::step::pods(&client, &executor.namespace);
    let selector = format!(
        "{}={},{INSTANCE_LABEL}={},{RUN_LABEL}={run_id}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        pod::label_value(builds.instance)
    );
    let list_failed = |message: String| BuildError::List {
        cluster: executor.cluster.clone(),
        namespace: executor.namespace.clone(),
        message,
    };
    // Bounded: its client retries a failing API server for a minute.
    let listed = tokio::time::timeout(ASK, pods.list(&ListParams::default().labels(&selector)))
        .await
        .map_err(|_| list_failed(format!("no answer in {} s", ASK.as_secs())))?
        .map_err(|e| list_failed(e.to_string()))?;
    let mut found = None;
    for earlier in listed {
        let labels = earlier.metadata.labels.clone().unwrap_or_default();
        let number = |key: &str| labels.get(key).and_then(|v| v.parse::<i64>().ok());
        if number(ATTEMPT_LABEL).is_none_or(|a| a >= attempt) {
            continue;
        }
        let name = earlier.metadata.name.clone().unwrap_or_default();
        let value = serde_json::to_value(&earlier).unwrap_or_default();
        let here = number(POSITION_LABEL) == i64::try_from(position).ok();
        if found.is_none() && here && attachable(&value) && adopt(&pods, &name, attempt).await {
            found = Some(name);
        } else {
            let _ = tokio::time::timeout(ASK, pods.delete(&name, &DeleteParams::default())).await;
        }
    }
    Ok(found)
}

/// Labels the pod as `attempt`'s; whether that went through.
async fn adopt(pods: &Api<DynamicObject>, name: &str, attempt: i64) -> bool {
    let labels = json!({ "metadata": { "labels": { ATTEMPT_LABEL: attempt.to_string() } } });
    matches!(
        tokio::time::timeout(
            ASK,
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&labels))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Writes this attempt's upload URL into the pod's Secret: `collect`
/// offers the checkout there from then on.
pub async fn take(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    upload_url: &str,
) -> Result<(), kube::Error> {
    use base64::Engine as _;
    let url = base64::engine::general_purpose::STANDARD.encode(upload_url);
    let data = json!({ "data": { pod::UPLOAD_KEY: url } });
    let secrets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
    );
    let patched = tokio::time::timeout(
        ASK,
        secrets.patch(
            &pod::secret_name(name),
            &PatchParams::default(),
            &Patch::Merge(&data),
        ),
    )
    .await
    .map_err(|_| kube::Error::Service(format!("no answer in {} s", ASK.as_secs()).into()))?;
    patched.map(|_| ())
}

/// How many of the pod's log lines the step's log already holds: those
/// after the last "runs as pod `pod`" note that are not Gantry's own notes
/// (a step's line never starts as a note does: `LogSink::line`).
/// The same splitter cuts the same lines the same way, so the follower
/// drops that many and goes on.
pub fn lines_logged(log: &str, pod: &str) -> usize {
    let start = format!("{NOTE}runs as pod {pod} ");
    let mut count = None;
    for line in log.lines() {
        if line.starts_with(&start) {
            count = Some(0);
        } else if line.starts_with(&format!("{NOTE}runs as pod ")) {
            // Another pod's lines (a later attempt that ran the step anew).
            count = None;
        } else if let Some(n) = count.as_mut()
            && !line.starts_with(NOTE)
        {
            *n += 1;
        }
    }
    count.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(step: Value, collect: Value) -> Value {
        json!({
            "metadata": { "name": "p" },
            "status": { "phase": "Running", "containerStatuses": [
                { "name": "step", "state": step },
                { "name": "collect", "state": collect },
            ] },
        })
    }

    #[test]
    fn a_pod_is_followed_on_while_its_checkout_waits_for_a_gantry() {
        let running = json!({ "running": { "startedAt": "2026-12-07T10:00:00Z" } });
        let exited = json!({ "terminated": { "exitCode": 0, "reason": "Completed" } });
        let waiting = json!({ "waiting": { "reason": "PodInitializing" } });
        assert!(attachable(&pod(running.clone(), running.clone())));
        // The script ended; `collect` still offers the checkout.
        assert!(attachable(&pod(exited.clone(), running.clone())));
        // The checkout went back to the replica that died.
        assert!(!attachable(&pod(exited.clone(), exited.clone())));
        // The workspace never reached it (the fetch went to that replica).
        assert!(!attachable(&pod(waiting.clone(), waiting)));
        let oom = json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled" } });
        assert!(!attachable(&pod(oom, running.clone())));
        let mut deleting = pod(running.clone(), running);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-07T10:00:01Z");
        assert!(!attachable(&deleting));
    }

    #[test]
    fn the_lines_logged_are_those_after_the_pods_note_without_notes() {
        let log = "[gantry] runs as pod gantry-a-1-1-0-aa in namespace b of cluster c, image i\n\
                   one\n\
                   [gantry] attempt 2: this step runs from its start\n\
                   [gantry] runs as pod gantry-a-1-2-0-bb in namespace b of cluster c, image i\n\
                   first\n\
                   [gantry] Waiting: ContainerCreating\n\
                   second\n\
                   \n\
                   third [gantry] is not a note here\n";
        assert_eq!(lines_logged(log, "gantry-a-1-2-0-bb"), 4);
        assert_eq!(lines_logged(log, "gantry-a-1-1-0-aa"), 0);
        assert_eq!(lines_logged(log, "gantry-other"), 0);
        assert_eq!(lines_logged("", "gantry-a-1-2-0-bb"), 0);
    }
}
