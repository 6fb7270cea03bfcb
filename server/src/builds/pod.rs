//! A build step's pod: one pod per step, its workspace fetched by an init
//! container, the step in its own image, the checkout sent back by a
//! `collect` container once the step's script has ended. Nothing of the
//! cluster is reachable from it (no service-account token, no service
//! links); it runs as a non-root user with a read-only root filesystem, no
//! privilege escalation and no capabilities — the `restricted` pod security
//! level — unless an admin relaxes it in `gantry.yaml`.

use serde_json::{Value, json};

use crate::gitops::builds::{BuildPod, PodSecurity};
use crate::gitops::resources::Resources;

/// Where a build pod's folders are mounted.
pub const WORKSPACE: &str = "/workspace";
pub const PIPELINE: &str = "/pipeline";
pub const HOME: &str = "/home/gantry";
/// Where the `fetch` container unpacks (the workspace and pipeline
/// volumes, under the archive's prefixes).
pub const FETCH_ROOT: &str = "/gantry/fetch";
/// The step's exit status, written when its script ends: `collect` waits
/// for it.
pub const EXIT_FILE: &str = "/gantry/signal/exit";
/// `$GANTRY_OUTPUTS` in the pod: beside the exit status, where `collect`
/// finds it to send back with the checkout.
pub const OUTPUTS_FILE: &str = "/gantry/signal/outputs";
/// Where `fetch` and `collect` find their one-time URLs (the pod's
/// Secret, mounted into them only: the pod's spec, which whoever may read
/// pods in the namespace sees, holds no URL).
pub const TICKETS: &str = "/gantry/tickets";
/// The Secret's keys of the URLs (a dash: never a secret's name, which is
/// an environment variable's).
pub const FETCH_KEY: &str = "fetch-url";
pub const UPLOAD_KEY: &str = "upload-url";

/// The uid and gid a build runs as (unless the image's own user is kept).
pub const USER: i64 = 65532;

/// The container running the step's script, and the two of Gantry's own.
pub const STEP: &str = "step";
pub const FETCH: &str = "fetch";
pub const COLLECT: &str = "collect";

/// Labels tying a build pod to its app, run and step (the clean-up loop
/// finds its pods by them).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gantry-builds");
pub const RUN_LABEL: &str = "gantry.dev/run";
pub const ATTEMPT_LABEL: &str = "gantry.dev/attempt";
/// The step's place in the pipeline.
pub const POSITION_LABEL: &str = "gantry.dev/position";
pub const INSTANCE_LABEL: &str = "gantry.dev/instance";

/// The Secret a pod owns: its step's secrets and its workspace URLs.
pub fn secret_name(pod: &str) -> String {
    format!("{pod}-step")
}

/// Everything a build pod is made of.
pub struct PodPlan<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub app: &'a str,
    pub run_id: i64,
    pub attempt: i64,
    pub step: &'a str,
    /// The step's place in the pipeline.
    pub position: usize,
    /// The installation's tag: which Gantry made it (any of its replicas).
    pub instance: &'a str,
    pub image: &'a str,
    pub helper_image: &'a str,
    pub script: &'a str,
    pub env: &'a [(String, String)],
    /// The pod's Secret: the step's secrets (given to the step, by name)
    /// and its workspace URLs (mounted into `fetch` and `collect` only).
    pub secret: &'a str,
    /// The names of the step's secrets in it.
    pub secret_names: &'a [String],
    pub resources: &'a Resources,
    pub timeout_seconds: u64,
    pub settings: &'a BuildPod,
}

/// How much longer than the step's timeout its pod may live: the image
/// pull and the workspace's way in and out. Gantry stops the step at its
/// timeout; this is the cluster's own backstop when Gantry is gone.
pub const DEADLINE_MARGIN_SECONDS: u64 = 300;

/// The pod's manifest.
pub fn manifest(plan: &PodPlan<'_>) -> Value {
    let restricted = plan.settings.security == PodSecurity::Restricted;
    let container_security = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "readOnlyRootFilesystem": plan.settings.read_only_root,
        "runAsNonRoot": true,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    let mount = |volume: &str, path: &str, read_only: bool| json!({ "name": volume, "mountPath": path, "readOnly": read_only });
    let mut env: Vec<Value> = plan
        .env
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    // Each of the step's secrets by name: never the whole Secret, which
    // holds the workspace URLs too.
    env.extend(plan.secret_names.iter().map(|name| {
        json!({ "name": name, "valueFrom": { "secretKeyRef": { "name": plan.secret, "key": name } } })
    }));
    env.push(json!({ "name": "GANTRY_STEP_SCRIPT", "value": plan.script }));
    env.push(json!({ "name": "HOME", "value": HOME }));
    let step = json!({
        "name": STEP,
        "image": plan.image,
        // The script runs in a shell of its own, as a local step's does;
        // its status is left for `collect` and is the container's own.
        "command": ["/bin/sh", "-c", format!(
            "/bin/sh -c \"$GANTRY_STEP_SCRIPT\"; status=$?; echo \"$status\" > {EXIT_FILE}; exit \"$status\""
        )],
        "workingDir": WORKSPACE,
        "env": env,
        "resources": resources(plan.resources),
        "securityContext": container_security,
        "volumeMounts": [
            mount("workspace", WORKSPACE, false),
            mount("pipeline", PIPELINE, true),
            mount("home", HOME, false),
            mount("tmp", "/tmp", false),
            mount("signal", "/gantry/signal", false),
        ],
    });
    let helper_resources = json!({
        "requests": { "cpu": "50m", "memory": "32Mi" },
        "limits": { "memory": "256Mi" },
    });
    let fetch = json!({
        "name": FETCH,
        "image": plan.helper_image,
        "args": ["build-helper", "fetch", "--url-file", format!("{TICKETS}/{FETCH_KEY}"), "--into", FETCH_ROOT],
        "resources": helper_resources,
        "securityContext": container_security,
        "volumeMounts": [
            mount("workspace", &format!("{FETCH_ROOT}/workspace"), false),
            mount("pipeline", &format!("{FETCH_ROOT}/pipeline"), false),
            mount("tickets", TICKETS, true),
        ],
    });
    let collect = json!({
        "name": COLLECT,
        "image": plan.helper_image,
        "args": ["build-helper", "collect", "--url-file", format!("{TICKETS}/{UPLOAD_KEY}"), "--from", WORKSPACE, "--after", EXIT_FILE, "--outputs", OUTPUTS_FILE],
        "resources": helper_resources,
        "securityContext": container_security,
        "volumeMounts": [
            mount("workspace", WORKSPACE, true),
            mount("signal", "/gantry/signal", true),
            mount("tickets", TICKETS, true),
        ],
    });
    let labels = json!({
        MANAGED_BY.0: MANAGED_BY.1,
        "gantry.dev/app": plan.app,
        RUN_LABEL: plan.run_id.to_string(),
        ATTEMPT_LABEL: plan.attempt.to_string(),
        POSITION_LABEL: plan.position.to_string(),
        "gantry.dev/step": label_value(plan.step),
        INSTANCE_LABEL: label_value(plan.instance),
    });
    let empty = |name: &str| json!({ "name": name, "emptyDir": {} });
    let mut spec = json!({
        "restartPolicy": "Never",
        "activeDeadlineSeconds": plan.timeout_seconds + DEADLINE_MARGIN_SECONDS,
        "terminationGracePeriodSeconds": 10,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "hostNetwork": false,
        "hostPID": false,
        "hostIPC": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": USER,
            "runAsGroup": USER,
            "fsGroup": USER,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumes": [empty("workspace"), empty("pipeline"), empty("home"), empty("tmp"), empty("signal"),
            // The URLs, as files readable by the pod's group (fsGroup).
            { "name": "tickets", "secret": { "secretName": plan.secret, "defaultMode": 0o440,
                "items": [{ "key": FETCH_KEY, "path": FETCH_KEY }, { "key": UPLOAD_KEY, "path": UPLOAD_KEY }] } }],
        "initContainers": [fetch],
        "containers": [step, collect],
    });
    let settings = plan.settings;
    if !settings.node_selector.is_empty() {
        spec["nodeSelector"] = json!(settings.node_selector);
    }
    if !settings.tolerations.is_empty() {
        spec["tolerations"] = json!(settings.tolerations);
    }
    if let Some(class) = &settings.runtime_class {
        spec["runtimeClassName"] = json!(class);
    }
    if let Some(account) = &settings.service_account {
        spec["serviceAccountName"] = json!(account);
    }
    if !restricted {
        // `baseline`: the image's own user (root, maybe) — still no
        // privilege escalation, no host namespaces, no token.
        spec["securityContext"] = json!({ "seccompProfile": { "type": "RuntimeDefault" } });
        for container in ["initContainers", "containers"] {
            for c in spec[container].as_array_mut().into_iter().flatten() {
                c["securityContext"]["runAsNonRoot"] = json!(false);
            }
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": plan.name, "namespace": plan.namespace, "labels": labels },
        "spec": spec,
    })
}

/// The step's requests and limits: memory and CPU as asked, requested as
/// much as limited (a build is not to be squeezed below what it declared).
fn resources(resources: &Resources) -> Value {
    let limits = json!({
        "memory": resources.memory_bytes.to_string(),
        "cpu": format!("{}m", resources.cpu_millis),
        "ephemeral-storage": resources.tmp_bytes.to_string(),
    });
    json!({ "requests": limits.clone(), "limits": limits })
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// A pod name for a step's attempt: `gantry-<app>-<run>-<attempt>-<n>-<random>`,
/// a DNS label.
pub fn name(app: &str, run_id: i64, attempt: i64, position: usize) -> String {
    // Run, attempt and position make it unique; the suffix keeps a step
    // run again from meeting its earlier pod still terminating.
    let mut random = [0_u8; 3];
    let _ = getrandom::fill(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let app: String = app.chars().take(20).collect();
    format!("gantry-{app}-{run_id}-{attempt}-{position}-{suffix}")
}

/// The `restricted` level's checks, as the Pod Security Standards
/// write them, on every container and the pod.
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let spec = &pod["spec"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[field] == true {
            found.push(format!("spec.{field}"));
        }
    }
    if spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["hostPath"].is_object())
    {
        found.push("a hostPath volume".into());
    }
    let pod_non_root = spec["securityContext"]["runAsNonRoot"] == true;
    let pod_seccomp = spec["securityContext"]["seccompProfile"]["type"].as_str();
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            let sc = &c["securityContext"];
            if sc["allowPrivilegeEscalation"] != false {
                found.push(format!("{name}: allowPrivilegeEscalation"));
            }
            if sc["privileged"] == true {
                found.push(format!("{name}: privileged"));
            }
            let dropped = sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL"));
            if !dropped
                || sc["capabilities"]["add"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            {
                found.push(format!("{name}: capabilities"));
            }
            if !(pod_non_root || sc["runAsNonRoot"] == true) || sc["runAsNonRoot"] == false {
                found.push(format!("{name}: runAsNonRoot"));
            }
            if sc["runAsUser"] == 0 || spec["securityContext"]["runAsUser"] == 0 {
                found.push(format!("{name}: runAsUser 0"));
            }
            let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_seccomp);
            if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
                found.push(format!("{name}: seccompProfile"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(settings: &BuildPod) -> Value {
        manifest(&PodPlan {
            name: "gantry-shop-1-1-0-abcdef",
            namespace: "builds",
            app: "shop",
            run_id: 1,
            attempt: 1,
            step: "test",
            position: 0,
            instance: "replica-a",
            image: "rust:1.95",
            helper_image: "gantry:1.0.0",
            script: "cargo test",
            env: &[("GANTRY_APP".into(), "shop".into())],
            secret: "gantry-shop-1-1-0-abcdef",
            secret_names: &["NPM_TOKEN".to_string()],
            resources: &Resources {
                memory_bytes: 512 << 20,
                cpu_millis: 1500,
                ..Resources::default()
            },
            timeout_seconds: 600,
            settings,
        })
    }

    #[test]
    fn a_build_pod_meets_the_restricted_level_and_carries_no_token() {
        let pod = plan_with(&BuildPod::default());
        assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{pod:#}");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(pod["spec"]["enableServiceLinks"], false);
        assert_eq!(
            pod["spec"]["activeDeadlineSeconds"],
            600 + DEADLINE_MARGIN_SECONDS
        );
        let step = &pod["spec"]["containers"][0];
        assert_eq!(step["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            step["resources"]["limits"]["memory"],
            (512_u64 << 20).to_string()
        );
        assert_eq!(step["resources"]["limits"]["cpu"], "1500m");
        let npm = step["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "NPM_TOKEN")
            .expect("the step's secret");
        assert_eq!(npm["valueFrom"]["secretKeyRef"]["key"], "NPM_TOKEN");
        // The step gets its secrets by name, never the URLs' keys.
        assert!(step["envFrom"].is_null());
        assert!(!step.to_string().contains(FETCH_KEY) && !step.to_string().contains("tickets"));
        assert_eq!(pod["metadata"]["labels"][RUN_LABEL], "1");
        assert_eq!(pod["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        // The helpers see no secret.
        for helper in [
            &pod["spec"]["initContainers"][0],
            &pod["spec"]["containers"][1],
        ] {
            assert!(
                helper["envFrom"].is_null() && helper["env"].is_null(),
                "{helper}"
            );
        }
    }

    #[test]
    fn only_an_admin_setting_relaxes_the_pod() {
        let relaxed = plan_with(&BuildPod {
            security: PodSecurity::Baseline,
            read_only_root: false,
            runtime_class: Some("gvisor".into()),
            service_account: Some("builder".into()),
            ..BuildPod::default()
        });
        assert!(!restricted_violations(&relaxed).is_empty());
        assert_eq!(relaxed["spec"]["runtimeClassName"], "gvisor");
        assert_eq!(relaxed["spec"]["serviceAccountName"], "builder");
        // Still no token and no escalation.
        assert_eq!(relaxed["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            relaxed["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
            false
        );
    }

    #[test]
    fn names_and_labels_are_what_kubernetes_accepts() {
        let name = name("a-very-long-app-name-indeed-it-is", 123_456, 2, 7);
        assert!(
            name.len() <= 63 && name.starts_with("gantry-a-very-long-app-name-"),
            "{name}"
        );
        assert_eq!(label_value("build/test step!"), "build-test-step");
        assert_eq!(label_value("--x--"), "x");
    }
}
