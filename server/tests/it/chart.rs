//! Gantry's own Helm chart (`deploy/helm/gantry`): linted and rendered by
//! the real Helm 4, applied with the real kubectl to an emulated cluster,
//! where it rolls out; its RBAC grants what `gantry cluster check` asks of
//! the cluster it runs in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube_emulator::{Emulator, Options};
use serde_json::{Value, json};

/// `.tools/bin/<name>`, as `./x tools` installs it (DESIGN.md §6).
fn tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: `./x tools` installs kubectl and helm into .tools/bin",
        path.display()
    );
    path
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/gantry")
}

fn succeeded(what: &str, output: Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// Whether some rule of a ClusterRole allows `verb` on `group`/`resource`.
fn grants(role: &Value, verb: &str, group: &str, resource: &str) -> bool {
    let has = |list: &Value, wanted: &str| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|i| i == wanted || i == "*"))
    };
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        has(&rule["apiGroups"], group)
            && has(&rule["resources"], resource)
            && has(&rule["verbs"], verb)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_lints_renders_and_rolls_out_with_the_rbac_gantry_asks_for() {
    let (helm, kubectl) = (tool("helm"), tool("kubectl"));
    let home = tempfile::tempdir().expect("home");
    let helm_run = |args: &[&str]| {
        Command::new(&helm)
            .args(args)
            .env("HOME", home.path())
            .output()
            .expect("helm")
    };
    let chart = chart().display().to_string();
    let lint = succeeded("helm lint", helm_run(&["lint", &chart]));
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    let rendered = succeeded(
        "helm template",
        helm_run(&[
            "template",
            "gantry",
            &chart,
            "--namespace",
            "gantry",
            "--set",
            "ingress.enabled=true",
        ]),
    );
    // The build namespace's Role, when asked for: what build pods need
    // there, nothing cluster-wide.
    let with_rbac = succeeded(
        "helm template (builds.rbac)",
        helm_run(&[
            "template",
            "gantry",
            &chart,
            "--namespace",
            "gantry",
            "--set",
            "builds.rbac.create=true",
        ]),
    );
    let role: Value = with_rbac
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .find(|doc| doc["kind"] == "Role")
        .expect("a Role");
    assert_eq!(role["metadata"]["namespace"], "gantry-builds");
    for (verb, resource) in [
        ("create", "pods"),
        ("delete", "pods"),
        ("list", "pods"),
        ("patch", "pods"),
        ("get", "pods/log"),
        ("create", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
    ] {
        assert!(
            grants(&role, verb, "", resource),
            "{verb} {resource}: {role}"
        );
    }
    assert!(
        !grants(&role, "get", "", "secrets"),
        "it never reads secrets back: {role}"
    );

    let cluster = Emulator::start(Options::default()).await.expect("emulator");
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig("here")).expect("kubeconfig");
    let kubectl_run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
        }
        child.wait_with_output().expect("kubectl")
    };
    tokio::task::block_in_place(|| {
        succeeded(
            "create namespace",
            kubectl_run(&["create", "namespace", "gantry"], None),
        );
        let applied = succeeded(
            "apply",
            kubectl_run(
                &["apply", "--server-side", "-n", "gantry", "-f", "-"],
                Some(&rendered),
            ),
        );
        for kind in [
            "deployment.apps/gantry",
            "service/gantry",
            "ingress.networking.k8s.io/gantry",
            "serviceaccount/gantry",
            "clusterrole.rbac.authorization.k8s.io/gantry",
            "clusterrolebinding.rbac.authorization.k8s.io/gantry",
            "poddisruptionbudget.policy/gantry",
        ] {
            assert!(
                applied.contains(&format!("{kind} serverside-applied")),
                "{kind}: {applied}"
            );
        }
        let status = succeeded(
            "rollout status",
            kubectl_run(
                &[
                    "rollout",
                    "status",
                    "deploy/gantry",
                    "-n",
                    "gantry",
                    "--timeout=60s",
                ],
                None,
            ),
        );
        assert!(status.contains("successfully rolled out"), "{status}");
    });

    let store = cluster.store();
    let deployment = store
        .object("apps", "deployments", "gantry", "gantry")
        .expect("the deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = container["env"].as_array().expect("env");
    let variable = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        variable("DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"],
        "gantry-database",
        "the database URL comes from a Secret"
    );
    assert_eq!(
        variable("GANTRY_SECRET_KEY_FILE")["value"],
        "/etc/gantry/key/secret.key"
    );
    assert!(container["resources"]["requests"]["cpu"].is_string());
    // Gantry's pod needs no privilege: builds go to pods on the cluster
    // it runs in, and nothing runs in its own pod.
    let pod = json!({ "spec": deployment["spec"]["template"]["spec"] });
    assert_eq!(
        gantry::builds::pod::restricted_violations(&pod),
        Vec::<String>::new(),
        "the restricted pod security level: {pod:#}"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        variable("GANTRY_BUILDS_EXECUTOR")["value"],
        "kubernetes:here/gantry-builds"
    );
    assert_eq!(variable("GANTRY_BUILDS_LOCAL")["value"], "refuse");
    // Gantry refuses to start on a variable it does not know: the chart
    // sets none.
    for name in env.iter().filter_map(|e| e["name"].as_str()) {
        assert!(
            !name.starts_with("GANTRY_") || gantry::config::ENV_VARS.contains(&name),
            "the chart sets {name}, which Gantry does not read"
        );
    }
    assert_eq!(
        variable("GANTRY_BUILDS_CALLBACK_URL")["value"],
        "http://$(POD_IP):3000/"
    );
    assert!(
        store
            .objects_of("rbac.authorization.k8s.io", "roles")
            .is_empty(),
        "no build namespace RBAC unless asked for"
    );
    let pods = store
        .objects_of("", "pods")
        .into_iter()
        .filter(|(key, _)| key.namespace == "gantry")
        .count();
    assert_eq!(pods, 3, "three replicas");

    // What the cluster check asks for (user guide, docs/src/targets.md, "Permissions").
    let role = store
        .object("rbac.authorization.k8s.io", "clusterroles", "", "gantry")
        .expect("the cluster role");
    let needed = [
        ("create", "", "namespaces"),
        ("patch", "", "namespaces"),
        ("get", "", "namespaces"),
        ("delete", "", "namespaces"),
        ("list", "", "events"),
        ("create", "authorization.k8s.io", "selfsubjectaccessreviews"),
        ("create", "apps", "deployments"),
        ("patch", "apps", "deployments"),
        ("get", "apps", "deployments"),
        ("delete", "apps", "deployments"),
        ("patch", "", "services"),
        ("patch", "", "configmaps"),
    ];
    for (verb, group, resource) in needed {
        assert!(
            grants(&role, verb, group, resource),
            "{verb} {resource}.{group}: {role}"
        );
    }
    let binding = store
        .object(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
            "gantry",
        )
        .expect("the binding");
    assert_eq!(binding["subjects"][0]["namespace"], "gantry");
}
