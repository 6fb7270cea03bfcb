//! Whether an applied object is healthy, from what the cluster says of it:
//! first by the pipeline repo's health rules ([`Judge`],
//! [`crate::gitops::health_rules`]), else the workload kinds by their own status
//! (replicas available, a Job's completions), Pods by their phase,
//! autoscalers by their conditions, CronJobs by their last run,
//! PersistentVolumeClaims by their phase, load-balanced Services and
//! Ingresses by the address they were given, and every other
//! kind — custom resources included — by the community's conventions, as
//! kstatus reads them: a controller that has not seen the object's
//! generation yet is still working; `Stalled=True` has failed;
//! `Reconciling=True`, `Ready=False` or `Available=False` are still in
//! progress (and fail the deploy at its deadline, with their message); an
//! object with no status (a ConfigMap, a Service) is healthy as applied.

use serde_json::Value;

use crate::gitops::health_rules::Compiled;
pub use crate::gitops::health_rules::Health;

/// Health with the pipeline repo's rules first, then the built-in reading.
#[derive(Clone, Debug, Default)]
pub struct Judge {
    pub rules: Compiled,
}

impl Judge {
    /// The health of `object` (whole: apiVersion, metadata, status) of
    /// `api_version`/`kind`, applied at `generation`.
    pub fn health(&self, api_version: &str, kind: &str, object: &Value, generation: i64) -> Health {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        self.rules
            .evaluate(group, kind, object)
            .unwrap_or_else(|| of(kind, object, generation))
    }
}

/// The health of `object` (a `kind`) that was applied at `generation`.
pub fn of(kind: &str, object: &Value, generation: i64) -> Health {
    let status = &object["status"];
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            workload(kind, object, generation)
        }
        // Its kind is served once the apiserver established it.
        "CustomResourceDefinition" => {
            let established = status["conditions"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
            if established {
                Health::Healthy
            } else {
                Health::InProgress("the API server has not established it yet".into())
            }
        }
        "Service" if object["spec"]["type"] == "LoadBalancer" => addressed(status),
        "Ingress" => addressed(status),
        "Pod" => pod(status),
        "HorizontalPodAutoscaler" => autoscaler(status),
        "CronJob" => cron_job(object),
        "PersistentVolumeClaim" => match status["phase"].as_str() {
            Some("Bound") => Health::Healthy,
            Some("Lost") => Health::Failed("the claim lost its volume".into()),
            phase => Health::InProgress(format!(
                "the claim is {}",
                phase.unwrap_or("not bound yet").to_lowercase()
            )),
        },
        _ => conventional(status, generation),
    }
}

/// A pod: ready while it runs, done once it succeeded; failed with its
/// container's reason and exit code.
fn pod(status: &Value) -> Health {
    let terminated = status["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            let t = &c["state"]["terminated"];
            (t["exitCode"].as_i64().unwrap_or(0) != 0).then(|| {
                format!(
                    "container {} exited with code {} ({})",
                    c["name"].as_str().unwrap_or("?"),
                    t["exitCode"],
                    t["reason"].as_str().unwrap_or("Error")
                )
            })
        });
    match status["phase"].as_str() {
        Some("Succeeded") => Health::Healthy,
        Some("Failed") => Health::Failed(terminated.unwrap_or_else(|| "the pod failed".into())),
        Some("Running")
            if status["conditions"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }) =>
        {
            Health::Healthy
        }
        phase => Health::InProgress(format!(
            "the pod is {}",
            phase.unwrap_or("pending").to_lowercase()
        )),
    }
}

/// An autoscaler, as its conditions say: able to scale and reading its
/// metrics (a metric it cannot read fails; the first reading is waited
/// for).
fn autoscaler(status: &Value) -> Health {
    let conditions = status["conditions"].as_array();
    let Some(conditions) = conditions.filter(|all| !all.is_empty()) else {
        return Health::InProgress("waiting for the autoscaler's first reading".into());
    };
    for kind in ["AbleToScale", "ScalingActive"] {
        if let Some(not) = conditions
            .iter()
            .find(|c| c["type"] == kind && c["status"] == "False")
        {
            let reason = not["reason"].as_str().unwrap_or_default();
            // Scaling turned off (replicas: 0) is the owner's choice.
            if reason == "ScalingDisabled" {
                continue;
            }
            return Health::Failed(format!(
                "{kind}=False: {reason}: {}",
                not["message"].as_str().unwrap_or_default()
            ));
        }
    }
    Health::Healthy
}

/// A CronJob is healthy as applied (its runs are not the deploy's) unless
/// its last scheduled run failed and none runs now.
fn cron_job(object: &Value) -> Health {
    let status = &object["status"];
    if object["spec"]["suspend"] == true {
        return Health::Healthy;
    }
    let running = status["active"].as_array().is_some_and(|a| !a.is_empty());
    let scheduled = status["lastScheduleTime"].as_str();
    let succeeded = status["lastSuccessfulTime"].as_str();
    match (scheduled, succeeded) {
        // RFC 3339 in UTC: the text orders as the time does.
        (Some(scheduled), succeeded) if !running && succeeded.is_none_or(|s| s < scheduled) => {
            Health::Failed(format!(
                "its last run, scheduled at {scheduled}, did not succeed"
            ))
        }
        _ => Health::Healthy,
    }
}

/// A load balancer's address, once one was given.
fn addressed(status: &Value) -> Health {
    let given = status["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|ingress| !ingress.is_empty());
    if given {
        Health::Healthy
    } else {
        Health::InProgress("waiting for a load-balancer address".into())
    }
}

/// kstatus's reading of any kind.
fn conventional(status: &Value, generation: i64) -> Health {
    if !status.is_object() {
        return Health::Healthy;
    }
    if let Some(observed) = status["observedGeneration"].as_i64()
        && observed < generation
    {
        return Health::InProgress(format!(
            "the controller has not seen generation {generation} yet"
        ));
    }
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == kind))
    };
    let said = |c: &Value| {
        let reason = c["reason"].as_str().unwrap_or_default();
        let message = c["message"].as_str().unwrap_or_default();
        match (reason.is_empty(), message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(": {reason}"),
            (true, false) => format!(": {message}"),
            (false, false) => format!(": {reason}: {message}"),
        }
    };
    if let Some(stalled) = condition("Stalled").filter(|c| c["status"] == "True") {
        return Health::Failed(format!("Stalled{}", said(stalled)));
    }
    if let Some(reconciling) = condition("Reconciling").filter(|c| c["status"] == "True") {
        return Health::InProgress(format!("Reconciling{}", said(reconciling)));
    }
    for kind in ["Ready", "Available"] {
        if let Some(not) = condition(kind).filter(|c| c["status"] == "False") {
            return Health::InProgress(format!("{kind}=False{}", said(not)));
        }
    }
    Health::Healthy
}

/// The workload kinds, by their own status.
fn workload(kind: &str, object: &Value, generation: i64) -> Health {
    let status = &object["status"];
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let waiting = |text: String| Health::InProgress(text);
    match kind {
        "Job" => {
            let failed = status["conditions"].as_array().and_then(|all| {
                all.iter()
                    .find(|c| c["type"] == "Failed" && c["status"] == "True")
            });
            if let Some(failed) = failed {
                return Health::Failed(format!(
                    "the job failed: {}: {}",
                    failed["reason"].as_str().unwrap_or("Failed"),
                    failed["message"].as_str().unwrap_or_default()
                ));
            }
            let completions = object["spec"]["completions"].as_i64().unwrap_or(1);
            let backoff = object["spec"]["backoffLimit"].as_i64().unwrap_or(6);
            if count("succeeded") >= completions {
                Health::Healthy
            } else if count("failed") > backoff {
                Health::Failed(format!(
                    "the job failed {} times (backoffLimit {backoff})",
                    count("failed")
                ))
            } else {
                waiting(format!("{}/{completions} completions", count("succeeded")))
            }
        }
        _ if observed < generation => waiting(format!(
            "the controller has not seen generation {generation} yet"
        )),
        "DaemonSet" => {
            let desired = count("desiredNumberScheduled");
            if count("numberAvailable") >= desired && count("updatedNumberScheduled") >= desired {
                Health::Healthy
            } else {
                waiting(format!(
                    "{}/{desired} pods available",
                    count("numberAvailable")
                ))
            }
        }
        "ReplicaSet" => {
            if count("availableReplicas") >= wanted {
                Health::Healthy
            } else {
                waiting(format!(
                    "{}/{wanted} replicas available",
                    count("availableReplicas")
                ))
            }
        }
        "StatefulSet" => {
            if count("readyReplicas") >= wanted && count("updatedReplicas") >= wanted {
                Health::Healthy
            } else {
                waiting(format!(
                    "{}/{wanted} replicas ready",
                    count("readyReplicas")
                ))
            }
        }
        _ => {
            if count("updatedReplicas") >= wanted && count("availableReplicas") >= wanted {
                Health::Healthy
            } else {
                let why = status["conditions"]
                    .as_array()
                    .and_then(|all| all.iter().find(|c| c["status"] == "False"))
                    .map(|c| {
                        format!(
                            " ({}: {})",
                            c["reason"].as_str().unwrap_or(""),
                            c["message"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_default();
                waiting(format!(
                    "{}/{wanted} replicas available{why}",
                    count("availableReplicas")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with(conditions: Value) -> Value {
        json!({ "status": { "observedGeneration": 2, "conditions": conditions } })
    }

    #[test]
    fn any_kind_is_read_by_its_conditions_as_kstatus_does() {
        assert_eq!(of("ConfigMap", &json!({ "data": {} }), 1), Health::Healthy);
        let ready = with(json!([{ "type": "Ready", "status": "True" }]));
        assert_eq!(of("Widget", &ready, 2), Health::Healthy);
        assert_eq!(
            of("Widget", &ready, 3),
            Health::InProgress("the controller has not seen generation 3 yet".into())
        );
        let not_ready = with(
            json!([{ "type": "Ready", "status": "False", "reason": "BadConfig", "message": "the bucket name is taken" }]),
        );
        assert_eq!(
            of("Widget", &not_ready, 2),
            Health::InProgress("Ready=False: BadConfig: the bucket name is taken".into())
        );
        let stalled = with(json!([
            { "type": "Ready", "status": "False" },
            { "type": "Stalled", "status": "True", "reason": "QuotaExceeded", "message": "no more buckets" }
        ]));
        assert_eq!(
            of("Widget", &stalled, 2),
            Health::Failed("Stalled: QuotaExceeded: no more buckets".into())
        );
        let reconciling =
            with(json!([{ "type": "Reconciling", "status": "True", "message": "creating" }]));
        assert_eq!(
            of("Widget", &reconciling, 2),
            Health::InProgress("Reconciling: creating".into())
        );
        let unavailable = with(json!([{ "type": "Available", "status": "False" }]));
        assert_eq!(
            of("Widget", &unavailable, 2),
            Health::InProgress("Available=False".into())
        );
    }

    #[test]
    fn built_in_kinds_by_their_own_status() {
        let claim = |phase: &str| json!({ "status": { "phase": phase } });
        assert_eq!(
            of("PersistentVolumeClaim", &claim("Bound"), 1),
            Health::Healthy
        );
        assert!(matches!(
            of("PersistentVolumeClaim", &claim("Pending"), 1),
            Health::InProgress(_)
        ));
        assert!(matches!(
            of("PersistentVolumeClaim", &claim("Lost"), 1),
            Health::Failed(_)
        ));
        let job = json!({ "spec": { "backoffLimit": 1 }, "status": { "failed": 2 } });
        assert_eq!(
            of("Job", &job, 1),
            Health::Failed("the job failed 2 times (backoffLimit 1)".into())
        );
        let balanced = |ingress: Value| json!({ "spec": { "type": "LoadBalancer" }, "status": { "loadBalancer": { "ingress": ingress } } });
        assert_eq!(
            of("Service", &balanced(json!([{ "ip": "203.0.113.7" }])), 1),
            Health::Healthy
        );
        assert!(matches!(
            of("Service", &balanced(json!([])), 1),
            Health::InProgress(_)
        ));
        assert_eq!(
            of("Service", &json!({ "spec": { "type": "ClusterIP" } }), 1),
            Health::Healthy
        );
        assert!(matches!(
            of("Ingress", &json!({ "status": {} }), 1),
            Health::InProgress(_)
        ));
        let crd = |established: &str| json!({ "status": { "conditions": [{ "type": "Established", "status": established }] } });
        assert_eq!(
            of("CustomResourceDefinition", &crd("True"), 1),
            Health::Healthy
        );
        assert!(matches!(
            of("CustomResourceDefinition", &crd("False"), 1),
            Health::InProgress(_)
        ));
        let fresh = json!({ "spec": { "replicas": 2 } });
        assert!(
            matches!(of("Deployment", &fresh, 1), Health::InProgress(_)),
            "no status yet is not ready"
        );
    }

    #[test]
    fn autoscalers_and_cron_jobs_by_their_own_status() {
        assert!(matches!(
            of("HorizontalPodAutoscaler", &json!({}), 1),
            Health::InProgress(_)
        ));
        let able = json!({ "status": { "conditions": [
            { "type": "AbleToScale", "status": "True" },
            { "type": "ScalingActive", "status": "True" },
        ] } });
        assert_eq!(of("HorizontalPodAutoscaler", &able, 1), Health::Healthy);
        let blind = json!({ "status": { "conditions": [
            { "type": "AbleToScale", "status": "True" },
            { "type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "no metrics for cpu" },
        ] } });
        assert_eq!(
            of("HorizontalPodAutoscaler", &blind, 1),
            Health::Failed(
                "ScalingActive=False: FailedGetResourceMetric: no metrics for cpu".into()
            )
        );

        assert_eq!(
            of("CronJob", &json!({ "spec": {} }), 1),
            Health::Healthy,
            "never ran yet"
        );
        let failed = json!({ "spec": {}, "status": { "lastScheduleTime": "2026-12-07T10:00:00Z", "lastSuccessfulTime": "2026-12-07T09:00:00Z" } });
        assert!(
            matches!(of("CronJob", &failed, 1), Health::Failed(why) if why.contains("10:00:00"))
        );
        let running = json!({ "spec": {}, "status": { "active": [{ "name": "j" }], "lastScheduleTime": "2026-12-07T10:00:00Z" } });
        assert_eq!(of("CronJob", &running, 1), Health::Healthy);
        let fine = json!({ "spec": {}, "status": { "lastScheduleTime": "2026-12-07T10:00:00Z", "lastSuccessfulTime": "2026-12-07T10:00:05Z" } });
        assert_eq!(of("CronJob", &fine, 1), Health::Healthy);
        let suspended = json!({ "spec": { "suspend": true }, "status": { "lastScheduleTime": "2026-12-07T10:00:00Z" } });
        assert_eq!(of("CronJob", &suspended, 1), Health::Healthy);
    }
}
