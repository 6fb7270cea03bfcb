//! The job controller and a container runtime, as far as clients see them:
//! each Job gets one pod (`<job>-<suffix>`, labelled `job-name` and
//! `controller-uid`, owned by the Job), which runs once the rollout delay
//! has passed (never, in `RolloutMode::Never`). The runtime understands
//! what test Jobs say: a container whose command is `sh -c <script>` runs
//! the script's `echo` lines (into the pod's log) up to an `exit N`, so a
//! test writes a migration that fails as a real one does:
//!
//! ```yaml
//! command: [sh, -c, "echo applying 0042_orders; echo relation orders exists >&2; exit 1"]
//! ```
//!
//! A pod that exits non-zero fails its Job at once (as a Job with
//! `backoffLimit: 0` does: the emulator does not retry), with the
//! conditions and events a real controller writes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::deployments::{controller_uid, encode, fnv, record};
use crate::store::{Key, Store, now_rfc3339};

/// One pass over every Job: `ready` says whether a Job created that long
/// ago has run.
pub fn reconcile(store: &Store, ready: impl Fn(Duration) -> bool) {
    let pods = store.objects_of("", "pods");
    for (key, job, age) in store.workloads() {
        if key.group != "batch" || key.plural != "jobs" {
            continue;
        }
        let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
        let pod = pods
            .iter()
            .find(|(k, pod)| k.namespace == key.namespace && controller_uid(pod) == Some(uid));
        match pod {
            None => start(store, &key, &job),
            Some((_, pod)) if ready(age) && !finished(pod) => run(store, &key, &job, pod),
            Some((_, pod)) => store.set_status(&key, job_status(&job, pod)),
        }
    }
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Creates the Job's pod, pending.
fn start(store: &Store, key: &Key, job: &Value) {
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    let seed = store.resource_version() * 37 + u64::from(fnv(&key.name));
    let name = format!("{}-{}", key.name, encode(seed, 5));
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (label, value) in [
        ("job-name", key.name.as_str()),
        ("batch.kubernetes.io/job-name", key.name.as_str()),
        ("controller-uid", uid),
        ("batch.kubernetes.io/controller-uid", uid),
    ] {
        labels[label] = json!(value);
    }
    let mut pod = json!({
        "metadata": {
            "name": name,
            "namespace": key.namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": key.name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"],
        "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "True" }] },
    });
    pod["spec"]["nodeName"] = json!("emulated-node");
    if store.put_if("", "pods", pod, None) {
        record(
            store,
            job,
            "Job",
            "job-controller",
            "SuccessfulCreate",
            &format!("Created pod: {name}"),
        );
    }
    store.set_status(
        key,
        json!({ "active": 1, "ready": 0, "startTime": now_rfc3339() }),
    );
}

/// Runs the pod's first container and records how it ended.
fn run(store: &Store, key: &Key, job: &Value, pod: &Value) {
    let container = &pod["spec"]["containers"][0];
    let container_name = container["name"].as_str().unwrap_or("main");
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let (log, code) = script(container);
    store.write_log(&key.namespace, pod_name, container_name, &log);
    let now = now_rfc3339();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let mut finished = pod.clone();
    finished["status"] = json!({
        "phase": phase,
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Ready", "status": "False", "reason": "PodCompleted" },
        ],
        "containerStatuses": [{
            "name": container_name, "image": container["image"], "ready": false, "started": false,
            "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now } },
        }],
    });
    let expected = pod["metadata"]["resourceVersion"].as_str();
    if !store.put_if("", "pods", finished.clone(), expected) {
        return;
    }
    store.set_status(key, job_status(job, &finished));
    let (event, message) = if code == 0 {
        ("Completed", "Job completed".to_string())
    } else {
        (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_string(),
        )
    };
    record(store, job, "Job", "job-controller", event, &message);
}

/// The Job's status once its pod is in `pod`'s state.
fn job_status(job: &Value, pod: &Value) -> Value {
    let start = job["status"]["startTime"].clone();
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({ "type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": now_rfc3339(), "lastProbeTime": now_rfc3339() })
    };
    match pod["status"]["phase"].as_str() {
        Some("Succeeded") => {
            let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
            let mut status = json!({
                "startTime": start, "succeeded": completions, "ready": 0,
                "conditions": [
                    condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                ],
            });
            keep_times(job, &mut status, true);
            status
        }
        Some("Failed") => {
            let backoff = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
            let mut status = json!({
                "startTime": start, "failed": backoff + 1, "ready": 0,
                "conditions": [
                    condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                    condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                ],
            });
            keep_times(job, &mut status, false);
            status
        }
        _ => json!({ "active": 1, "ready": 0, "startTime": start }),
    }
}

/// The times a finished Job's status already has stay as they were, so a
/// pass that changes nothing writes nothing.
fn keep_times(job: &Value, status: &mut Value, completed: bool) {
    let old = &job["status"];
    if let (Some(new), Some(old)) = (
        status["conditions"].as_array_mut(),
        old["conditions"].as_array(),
    ) {
        for condition in new.iter_mut() {
            if let Some(before) = old.iter().find(|c| c["type"] == condition["type"]) {
                condition["lastTransitionTime"] = before["lastTransitionTime"].clone();
                condition["lastProbeTime"] = before["lastProbeTime"].clone();
            }
        }
    }
    if completed {
        status["completionTime"] = match &old["completionTime"] {
            Value::Null => json!(now_rfc3339()),
            kept => kept.clone(),
        };
    }
}

/// What the container prints and its exit code: `sh -c` scripts of `echo`
/// and `exit` statements; anything else runs and exits 0 silently.
fn script(container: &Value) -> (String, i64) {
    let words: Vec<&str> = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let text = match words.as_slice() {
        [shell, "-c", script, ..] if shell.ends_with("sh") => *script,
        _ => return (String::new(), 0),
    };
    let mut log = String::new();
    for statement in text.split(['\n', ';']).flat_map(|s| s.split("&&")) {
        let statement = statement.trim();
        if let Some(rest) = statement.strip_prefix("echo ") {
            let rest = rest.trim().trim_end_matches(">&2").trim();
            log.push_str(rest.trim_matches(['"', '\'']));
            log.push('\n');
        } else if let Some(code) = statement.strip_prefix("exit") {
            return (log, code.trim().parse().unwrap_or(1));
        }
    }
    (log, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_script_prints_its_echoes_and_exits_with_its_code() {
        let container = json!({ "command": ["sh", "-c"], "args": ["echo applying 0042; echo 'relation orders exists' >&2; exit 3; echo never"] });
        assert_eq!(
            script(&container),
            ("applying 0042\nrelation orders exists\n".to_string(), 3)
        );
        assert_eq!(
            script(&json!({ "command": ["/bin/sh", "-c", "echo ok"] })),
            ("ok\n".to_string(), 0)
        );
        assert_eq!(script(&json!({ "image": "busybox" })), (String::new(), 0));
    }
}
