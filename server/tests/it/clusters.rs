//! Deploying to Kubernetes: three emulated clusters (`dev`, `prod-eu`,
//! `prod-us`) that the real `kube` client talks to over HTTP.

use std::time::Duration;

use kube_emulator::{Denied, Emulator, Faults, Options, RolloutMode};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{finished, wait_for};
use crate::support::git::WorkRepo;

const MINUTE: Duration = Duration::from_secs(60);

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ replicas }}
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: \"{{ image }}\"
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: { app: web }
  ports: [{ port: 80 }]
";

const CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  env: \"{{ env }}\"
  commit: \"{{ short_sha }}\"
";

struct Clusters {
    dev: Emulator,
    prod_eu: Emulator,
    prod_us: Emulator,
}

impl Clusters {
    async fn start() -> Clusters {
        let options = Options {
            rollout: RolloutMode::After(Duration::from_millis(100)),
            ..Options::default()
        };
        Clusters {
            dev: Emulator::start(options.clone()).await.expect("dev"),
            prod_eu: Emulator::start(options.clone()).await.expect("prod-eu"),
            prod_us: Emulator::start(options).await.expect("prod-us"),
        }
    }
}

struct Setup {
    app: TestApp,
    repo: WorkRepo,
    pipeline: WorkRepo,
    clusters: Clusters,
}

fn app_yaml(source: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1
source: {source}
stack:
  - env: preview
    branches: \"*\"
    target: dev
  - env: staging
    branch: latest
    target: dev
    rollout_timeout: 2s
    variables: {{ REPLICAS: \"2\" }}
  - env: production
    branch: master
    targets: [prod-eu, prod-us]
    variables: {{ REPLICAS: \"3\" }}
"
    )
}

const PIPELINE: &str = "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{ commit }}\"
steps:
  - { name: build, run: \"echo would build and push $GANTRY_IMAGE\" }
  - deploy
";

async fn setup(backend: &str) -> Setup {
    setup_with(backend, "").await
}

/// [`setup`] with `extra` appended to the app's app.yaml.
async fn setup_with(backend: &str, extra: &str) -> Setup {
    setup_on(backend, extra, Clusters::start().await).await
}

/// [`setup_with`] on clusters the test prepared.
async fn setup_on(backend: &str, extra: &str, clusters: Clusters) -> Setup {
    let repo = WorkRepo::new();
    repo.write("README", "shop\n");
    repo.commit("first");
    repo.checkout_new("latest");
    repo.commit("staging");
    repo.checkout_new("feature/x");
    repo.write("x", "1");
    repo.commit("feature x");
    repo.checkout("master");
    let pipeline = WorkRepo::new();
    pipeline.write("apps/shop/app.yaml", &(app_yaml(&repo.path()) + extra));
    pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    pipeline.write("apps/shop/deploy/app.yaml", MANIFESTS);
    pipeline.write("apps/shop/deploy/config.yaml", CONFIG_MAP);
    pipeline.commit("shop on clusters");
    let pipeline_path = pipeline.path();
    let mut app = TestApp::with_config(backend, |config| {
        config.pipeline_repo = Some(pipeline_path);
        config.poll_interval = Duration::from_secs(3600);
    })
    .await;
    for (name, cluster) in [
        ("dev", &clusters.dev),
        ("prod-eu", &clusters.prod_eu),
        ("prod-us", &clusters.prod_us),
    ] {
        let response = app
            .post_json("/api/v1/clusters", json!({ "name": name, "kubeconfig": cluster.kubeconfig(&format!("{name}-context")) }))
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
        assert_eq!(response.json()["state"], "reachable");
    }
    app.start_flow().await;
    Setup {
        app,
        repo,
        pipeline,
        clusters,
    }
}

async fn scan(app: &TestApp) {
    gantry::jobs::scan::scan(&app.state, "test")
        .await
        .expect("scan");
}

async fn environment(app: &TestApp, name: &str) -> Value {
    let environments = app.get("/api/v1/environments").await.json();
    environments
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn deploy_log(app: &TestApp, run: &Value) -> String {
    let step = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deploy")
        .unwrap();
    app.get(&format!(
        "/api/v1/runs/{}/steps/{}/log",
        run["run"]["id"], step["id"]
    ))
    .await
    .text()
}

mod flows {
    use super::*;

    async fn stack_on_three_clusters(backend: &str) {
        let mut setup = setup(backend).await;
        let app = &setup.app;
        let (master, latest, feature) = (
            setup.repo.head("master"),
            setup.repo.head("latest"),
            setup.repo.head("feature/x"),
        );

        // feature/x → a preview namespace on dev, rolled out.
        let run = finished(app, &feature).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
        let preview = gantry::gitops::stack::preview_name("preview", "feature/x");
        let namespace = format!("shop-{preview}");
        let deployment = setup
            .clusters
            .dev
            .store()
            .object("apps", "deployments", &namespace, "web")
            .expect("preview deployment on dev");
        assert_eq!(deployment["status"]["availableReplicas"], json!(1));
        assert_eq!(
            deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            json!("gantry")
        );
        assert_eq!(
            deployment["metadata"]["labels"]["gantry.dev/commit"],
            json!(feature)
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            json!(format!("registry.example.com/shop:{feature}"))
        );
        let managers: Vec<&str> = deployment["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["gantry"]);
        let ns = setup
            .clusters
            .dev
            .store()
            .object("", "namespaces", "", &namespace)
            .expect("namespace created");
        assert_eq!(ns["metadata"]["labels"]["gantry.dev/env"], json!(preview));

        // latest → staging on dev, with its variables.
        let run = finished(app, &latest).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
        let staging = setup
            .clusters
            .dev
            .store()
            .object("apps", "deployments", "shop-staging", "web")
            .expect("staging on dev");
        assert_eq!(staging["spec"]["replicas"], json!(2));
        assert_eq!(
            setup
                .clusters
                .dev
                .store()
                .object("", "configmaps", "shop-staging", "settings")
                .unwrap()["data"]["env"],
            json!("staging")
        );

        // master → production on both prod clusters, concurrently, recorded per target.
        let run = finished(app, &master).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
        for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
            let web = cluster
                .store()
                .object("apps", "deployments", "shop-production", "web")
                .expect("production deployment");
            assert_eq!(web["spec"]["replicas"], json!(3));
            assert_eq!(web["status"]["availableReplicas"], json!(3));
        }
        assert!(
            setup
                .clusters
                .dev
                .store()
                .object("apps", "deployments", "shop-production", "web")
                .is_none()
        );
        let log = deploy_log(app, &run).await;
        assert!(
            log.contains("prod-eu: applied 3 objects to namespace shop-production, rolled out"),
            "{log}"
        );
        assert!(
            log.contains("prod-us: applied 3 objects to namespace shop-production, rolled out"),
            "{log}"
        );
        let releases = app.get("/api/v1/releases").await.json();
        assert_eq!(releases[0]["version"], master.as_str());

        // The stored manifests are what was applied (the Secret-free view).
        let production = environment(app, "production").await;
        assert_eq!(production["state"], "live");

        // Prune: a ConfigMap dropped from the manifests is deleted.
        setup.pipeline.remove("apps/shop/deploy/config.yaml");
        setup.pipeline.commit("no more settings");
        setup.repo.checkout("latest");
        setup.repo.write("v2", "2");
        let v2 = setup.repo.commit("v2");
        scan(app).await;
        let run = finished(app, &v2).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
        assert!(
            setup
                .clusters
                .dev
                .store()
                .object("", "configmaps", "shop-staging", "settings")
                .is_none(),
            "pruned"
        );
        assert!(
            deploy_log(app, &run)
                .await
                .contains("pruned configmap/settings in shop-staging")
        );

        // Merging feature/x into latest deletes the preview namespace.
        setup
            .repo
            .git(&["merge", "-q", "--no-ff", "-m", "merge x", "feature/x"]);
        scan(app).await;
        wait_for("the preview namespace to be deleted", MINUTE, || async {
            setup
                .clusters
                .dev
                .store()
                .object("", "namespaces", "", &namespace)
                .is_none()
                .then_some(())
        })
        .await;
        assert!(
            setup
                .clusters
                .dev
                .store()
                .object("apps", "deployments", &namespace, "web")
                .is_none()
        );
        let teardown = wait_for("the teardown to be recorded", MINUTE, || async {
            let audit = app.get("/api/v1/audit").await.json();
            audit
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["action"] == "environment.destroy")
                .cloned()
        })
        .await;
        assert_eq!(teardown["reason"], "feature/x was merged into latest");
        let detail = app
            .db_value(
                "SELECT state_detail FROM environments WHERE name = $1",
                &preview,
            )
            .await;
        assert!(
            detail.contains(&format!(
                "namespace {namespace} on dev deleted and verified gone"
            )),
            "{detail}"
        );
        setup.app.stop().await;
    }

    async fn failures_are_contained_per_target(backend: &str) {
        let mut setup = setup(backend).await;
        let app = &setup.app;
        let master = setup.repo.head("master");
        let latest = setup.repo.head("latest");
        assert_eq!(finished(app, &master).await["run"]["state"], "succeeded");
        assert_eq!(finished(app, &latest).await["run"]["state"], "succeeded");

        // A rollout that never becomes ready fails with the reason.
        setup.clusters.dev.set_rollout(RolloutMode::Never);
        setup.repo.checkout("latest");
        setup.repo.write("stuck", "1");
        let stuck = setup.repo.commit("never ready");
        scan(app).await;
        let run = finished(app, &stuck).await;
        assert_eq!(run["run"]["state"], "failed");
        let log = deploy_log(app, &run).await;
        assert!(log.contains("deployment/web on dev did not become ready within 2s: 0/2 replicas available (MinimumReplicasUnavailable"), "{log}");
        assert_eq!(
            environment(app, "staging").await["state"],
            "live",
            "the previous version still serves"
        );

        // An unreachable cluster fails its target; the other succeeds.
        setup.clusters.prod_us.stop().await;
        setup.repo.checkout("master");
        setup.repo.write("hotfix", "1");
        let hotfix = setup.repo.commit("hotfix");
        scan(app).await;
        let run = finished(app, &hotfix).await;
        assert_eq!(run["run"]["state"], "failed");
        let log = deploy_log(app, &run).await;
        assert!(log.contains("prod-eu: applied 3 objects"), "{log}");
        assert!(log.contains("prod-us: "), "{log}");
        let production = environment(app, "production").await;
        assert_eq!(production["state"], "partially_failed");
        assert!(
            production["state_detail"]
                .as_str()
                .unwrap()
                .contains("1 of 2 targets failed — prod-us:"),
            "{production}"
        );
        let eu = setup
            .clusters
            .prod_eu
            .store()
            .object("apps", "deployments", "shop-production", "web")
            .unwrap();
        assert_eq!(
            eu["metadata"]["labels"]["gantry.dev/commit"],
            json!(hotfix),
            "prod-eu got the hotfix"
        );

        // A kind the cluster does not serve is a permanent error: no retries.
        setup.clusters.prod_us.restart().await.expect("restart");
        setup
            .clusters
            .dev
            .set_rollout(RolloutMode::After(Duration::from_millis(50)));
        setup.pipeline.write(
            "apps/shop/deploy/widget.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: { name: w }\n",
        );
        setup.pipeline.commit("a widget");
        setup.repo.checkout("latest");
        setup.repo.write("w", "1");
        let widget = setup.repo.commit("with widget");
        scan(app).await;
        let run = finished(app, &widget).await;
        let log = deploy_log(app, &run).await;
        assert!(
            log.contains("kind Widget (example.com/v1) is not served by cluster dev"),
            "{log}"
        );

        // With its CRD in the same release, the custom resource is applied
        // (discovered again after the CRD), and transient 503s are retried.
        setup.pipeline.write(
            "apps/shop/deploy/crd.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: widgets.example.com }\nspec:\n  group: example.com\n  scope: Namespaced\n  names: { plural: widgets, singular: widget, kind: Widget }\n  versions: [{ name: v1, served: true, storage: true }]\n",
        );
        // An app creates cluster-scoped kinds only as the admin file allows.
        setup.pipeline.write(
            "gantry.yaml",
            "apiVersion: gantry.dev/v1\napps:\n  shop:\n    cluster_kinds: [CustomResourceDefinition]\n",
        );
        setup.pipeline.commit("the widget CRD");
        setup.clusters.dev.set_faults(kube_emulator::Faults {
            latency: Duration::ZERO,
            fail_next: 3,
            ..Default::default()
        });
        setup.repo.write("crd", "1");
        let with_crd = setup.repo.commit("with the CRD");
        scan(app).await;
        let run = finished(app, &with_crd).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
        assert!(
            setup
                .clusters
                .dev
                .store()
                .object("example.com", "widgets", "shop-staging", "w")
                .is_some()
        );
        assert_eq!(
            setup.clusters.dev.store().faults().fail_next,
            0,
            "the injected failures were met and retried"
        );
        setup.app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stack_on_three_clusters_sqlite() {
        stack_on_three_clusters("sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stack_on_three_clusters_postgres() {
        stack_on_three_clusters("postgres").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failures_are_contained_per_target_sqlite() {
        failures_are_contained_per_target("sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failures_are_contained_per_target_postgres() {
        failures_are_contained_per_target("postgres").await;
    }

    /// Credentials that lack what Gantry needs on a cluster: the check
    /// names each missing permission — the kinds in use included — before
    /// a deploy fails on it, and clears once they are granted.
    async fn a_check_names_the_permissions_the_credentials_lack(backend: &str) {
        let setup = setup(backend).await;
        let app = &setup.app;
        let master = setup.repo.head("master");
        assert_eq!(finished(app, &master).await["run"]["state"], "succeeded");
        let check = |name: &'static str| async move {
            let response = app
                .post_json(&format!("/api/v1/clusters/{name}/check"), json!({}))
                .await;
            assert_eq!(response.status, 200, "{}", response.text());
            response.json()
        };
        assert_eq!(check("prod-eu").await["missing_permissions"], json!([]));

        setup.clusters.prod_eu.set_denied(vec![
            Denied::new("patch", "apps", "deployments"),
            Denied::new("delete", "", "namespaces"),
        ]);
        let checked = check("prod-eu").await;
        assert_eq!(checked["state"], "reachable");
        assert_eq!(
            checked["missing_permissions"],
            json!([
                "delete namespaces (to tear down previews)",
                "patch deployments.apps (to apply them; for shop/production)",
            ]),
            "production deploys a Deployment to prod-eu"
        );
        let listed = app.get("/api/v1/clusters").await.json();
        let prod_us = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "prod-us")
            .unwrap();
        assert_eq!(prod_us["missing_permissions"], json!([]), "{listed}");

        // What the check said is what the next deploy runs into.
        setup.repo.write("fix", "1");
        let fix = setup.repo.commit("a fix");
        scan(app).await;
        let run = finished(app, &fix).await;
        assert_eq!(run["run"]["state"], "failed");
        let log = deploy_log(app, &run).await;
        assert!(
            log.contains("cannot patch resource \"deployments\" in API group \"apps\""),
            "{log}"
        );

        setup.clusters.prod_eu.set_denied(Vec::new());
        assert_eq!(check("prod-eu").await["missing_permissions"], json!([]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_check_names_the_permissions_the_credentials_lack_sqlite() {
        a_check_names_the_permissions_the_credentials_lack("sqlite").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_check_names_the_permissions_the_credentials_lack_postgres() {
        a_check_names_the_permissions_the_credentials_lack("postgres").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_clusters_is_validated_and_credentials_never_come_back() {
    let cluster = Emulator::start(Options::default()).await.expect("emulator");
    let app = TestApp::sqlite().await;
    let kubeconfig = cluster.kubeconfig("ctx");

    let bad = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "dev", "kubeconfig": "not: [a kubeconfig" }),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the kubeconfig is not valid")
    );
    let no_context = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "dev", "kubeconfig": kubeconfig, "context": "other" }),
        )
        .await;
    assert_eq!(
        no_context.json()["error"]["message"],
        "the kubeconfig has no context \"other\" (it has: ctx)"
    );
    let bad_name = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "Dev_1", "kubeconfig": kubeconfig }),
        )
        .await;
    assert_eq!(bad_name.status, 400);
    let both = app.post_json("/api/v1/clusters", json!({ "name": "dev", "kubeconfig": kubeconfig, "server": cluster.url(), "token": "t" })).await;
    assert_eq!(both.status, 400);
    // A kubeconfig that would run a command or read a file on the server is
    // refused before anything runs, and the answer echoes no server path.
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let exec = kubeconfig.replace(
        "  user:\n",
        &format!("  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: sh\n      args: [\"-c\", \"touch {}\"]\n", pwned.display()),
    );
    assert_ne!(exec, kubeconfig, "the user entry was found");
    let refused = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "evil", "kubeconfig": exec }),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("exec"), "{}", refused.text());
    let reads = kubeconfig.replace("  user:\n", "  user:\n    tokenFile: /etc/shadow\n");
    let refused = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "evil", "kubeconfig": reads }),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        !refused.text().contains("/etc/shadow"),
        "{}",
        refused.text()
    );
    assert!(!pwned.exists(), "the command never ran");
    assert!(
        app.get("/api/v1/clusters")
            .await
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    let created = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "dev", "kubeconfig": kubeconfig }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["server_version"], "v1.33.0-gantry-emulator");
    let with_token = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "prod", "server": cluster.url(), "token": "s3cr3t-token" }),
        )
        .await;
    assert_eq!(with_token.status, 201, "{}", with_token.text());
    let again = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "dev", "kubeconfig": kubeconfig }),
        )
        .await;
    assert_eq!(again.status, 409);

    let listed = app.get("/api/v1/clusters").await.text();
    assert!(
        !listed.contains("emulator-token") && !listed.contains("s3cr3t-token"),
        "{listed}"
    );
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT credentials FROM clusters WHERE name = 'prod'")
            .fetch_one(app.db().pool())
            .await
            .unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains("s3cr3t"),
        "sealed at rest"
    );

    let mut cluster = cluster;
    cluster.stop().await;
    // The emulator's listener closes as its task ends: ask until it has.
    let checked = wait_for("the stopped cluster to be unreachable", MINUTE, || async {
        let checked = app
            .post_json("/api/v1/clusters/dev/check", json!({}))
            .await
            .json();
        (checked["state"] == "unreachable").then_some(checked)
    })
    .await;
    assert!(!checked["last_error"].as_str().unwrap().is_empty());
    assert_eq!(
        app.request(
            axum::http::Request::delete("/api/v1/clusters/dev")
                .body(axum::body::Body::empty())
                .unwrap()
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.post_json("/api/v1/clusters/dev/check", json!({}))
            .await
            .status,
        404
    );
}

async fn drift_and_diff(backend: &str) {
    let mut setup = setup(backend).await;
    let app = &setup.app;
    let latest = setup.repo.head("latest");
    let run = finished(app, &latest).await;
    assert_eq!(run["run"]["state"], "succeeded");
    gantry::delivery::deploy::drift::check_all(&app.state.delivery())
        .await
        .expect("check");
    assert_eq!(
        environment(app, "staging").await["drift"],
        Value::Null,
        "in sync after the deploy"
    );
    // Admins hear of drift through a channel.
    let (receiver, base) = crate::support::receiver::Receiver::start().await;
    let secret = axum::http::Request::put("/api/v1/secrets/DRIFT_HOOK_URL")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "value": format!("{base}/drift") }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(secret).await.status, 204);
    let channel = axum::http::Request::put("/api/v1/channels/drift")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "kind": "webhook", "url_secret": "DRIFT_HOOK_URL", "rules": [{ "events": ["drift"] }] }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(channel).await.status, 204);

    // Someone scales the deployment by hand.
    let deployments = setup
        .clusters
        .dev
        .store()
        .find("apps", "v1", "deployments")
        .expect("resource");
    setup
        .clusters
        .dev
        .store()
        .merge_patch(
            &deployments,
            "shop-staging",
            "web",
            &json!({"spec": {"replicas": 5}}),
            "kubectl-edit",
            false,
            false,
        )
        .expect("out-of-band change");
    gantry::delivery::deploy::drift::check_all(&app.state.delivery())
        .await
        .expect("check");
    let staging = environment(app, "staging").await;
    assert_eq!(
        staging["drift"],
        "dev: deployment/web in shop-staging spec.replicas is 5, Gantry applied 2",
        "{staging}"
    );
    assert!(
        app.get("/").await.text().contains("drifted"),
        "the stack view shows it"
    );
    let told = wait_for("the drift notification", MINUTE, || async {
        receiver.at("/drift").into_iter().next()
    })
    .await;
    assert_eq!(told.body["event"], "drift");
    assert_eq!(told.body["environment"], "staging");
    assert!(
        told.body["text"]
            .as_str()
            .unwrap()
            .contains("spec.replicas is 5"),
        "{:?}",
        told.body
    );
    // Checked again, the same drift is not told twice.
    gantry::delivery::deploy::drift::check_all(&app.state.delivery())
        .await
        .expect("check");
    // Queued once: the second check found the deployment already told.
    let deliveries = app.get("/api/v1/channels/drift/deliveries").await.json();
    assert_eq!(deliveries.as_array().unwrap().len(), 1, "{deliveries}");

    // The diff says what an apply of the run's manifests would change.
    let diffs = app
        .get(&format!("/api/v1/runs/{}/diff", run["run"]["id"]))
        .await
        .json();
    let web = diffs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["object"] == "deployment/web in shop-staging")
        .expect("web")
        .clone();
    assert_eq!(web["change"], "update");
    let diff = web["diff"].as_str().unwrap();
    assert!(
        diff.contains("-  replicas: 5") && diff.contains("+  replicas: 2"),
        "{diff}"
    );
    let service = diffs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["object"] == "service/web in shop-staging")
        .expect("svc")
        .clone();
    assert_eq!(service["change"], "unchanged");

    // With self-heal, the next check puts it back.
    let healing = app_yaml(&setup.repo.path()).replace(
        "    rollout_timeout: 2s\n",
        "    rollout_timeout: 2s\n    self_heal: true\n",
    );
    setup.pipeline.write("apps/shop/app.yaml", &healing);
    setup.pipeline.commit("self-heal staging");
    gantry::jobs::reconcile::reconcile(&app.state)
        .await
        .expect("reconcile");
    gantry::delivery::deploy::drift::check_all(&app.state.delivery())
        .await
        .expect("check");
    let web = setup
        .clusters
        .dev
        .store()
        .object("apps", "deployments", "shop-staging", "web")
        .unwrap();
    assert_eq!(web["spec"]["replicas"], json!(2), "healed");
    assert_eq!(environment(app, "staging").await["drift"], Value::Null);
    let audit = app.get("/api/v1/audit").await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "environment.self_heal"),
        "{audit}"
    );
    setup.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_detected_diffed_and_healed_sqlite() {
    drift_and_diff("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_detected_diffed_and_healed_postgres() {
    drift_and_diff("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_production_run_shows_its_diff_to_the_approver() {
    let mut setup = setup("sqlite").await;
    let app = &setup.app;
    let master = setup.repo.head("master");
    assert_eq!(finished(app, &master).await["run"]["state"], "succeeded");
    let guarded = app_yaml(&setup.repo.path()).replace(
        "    targets: [prod-eu, prod-us]\n",
        "    targets: [prod-eu, prod-us]\n    approval: { required: 1 }\n",
    );
    setup.pipeline.write("apps/shop/app.yaml", &guarded);
    setup.pipeline.commit("guard production");
    setup.repo.write("next", "1");
    let next = setup.repo.commit("next release");
    scan(app).await;
    let held = wait_for("the production run to wait", MINUTE, || async {
        let pending = app.get("/api/v1/approvals").await.json();
        pending
            .as_array()
            .and_then(|a| a.first())
            .map(|p| p["run_id"].as_i64().unwrap())
    })
    .await;
    let diffs = app.get(&format!("/api/v1/runs/{held}/diff")).await.json();
    let web: Vec<&Value> = diffs
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["object"] == "deployment/web in shop-production")
        .collect();
    assert_eq!(web.len(), 2, "one per production cluster: {diffs}");
    assert!(web.iter().all(|d| d["change"] == "update"));
    let diff = web[0]["diff"].as_str().unwrap();
    let line = |sign: char, sha: &str| {
        diff.lines().any(|l| {
            l.starts_with(sign) && l.contains(&format!("image: registry.example.com/shop:{sha}"))
        })
    };
    assert!(line('+', &next) && line('-', &master), "{diff}");
    let page = app.get(&format!("/runs/{held}")).await.text();
    assert!(
        page.contains("What this run would change"),
        "shown on the run page"
    );
    assert!(
        page.contains("change-update")
            && page.contains("prod-eu · deployment/web in shop-production")
    );

    // A cluster that does not answer is an outage (503), not the admin's
    // mistake, and the answer does not carry the cause (the cluster's
    // address, the client's error chain).
    let address = setup.clusters.prod_us.url();
    setup.clusters.prod_us.stop().await;
    let down = app.get(&format!("/api/v1/runs/{held}/diff")).await;
    assert_eq!(down.status, 503, "{}", down.text());
    let port = address.rsplit(':').next().unwrap().to_string();
    assert!(
        !down.text().contains(&port) && !down.text().contains("prod-us"),
        "{}",
        down.text()
    );
    setup.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_request_shows_what_merging_would_change_on_its_target() {
    let mut setup = setup("sqlite").await;
    let app = &setup.app;
    let latest = setup.repo.head("latest");
    let feature = setup.repo.head("feature/x");
    wait_for("staging to run latest", MINUTE, || async {
        let env = environment(app, "staging").await;
        (env["commit_sha"] == latest.as_str() && env["state"] == "live").then_some(())
    })
    .await;
    let opened = app
        .post_json(
            "/api/v1/change-requests",
            json!({ "app": "shop", "source_branch": "feature/x" }),
        )
        .await;
    assert_eq!(opened.status, 201, "{}", opened.text());
    let id = opened.json()["id"].as_i64().unwrap();
    let diffs = app
        .get(&format!("/api/v1/change-requests/{id}/diff"))
        .await
        .json();
    let web = diffs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["object"] == "deployment/web in shop-staging")
        .unwrap_or_else(|| panic!("the staging deployment: {diffs}"));
    assert_eq!(web["target"], "dev");
    assert_eq!(web["change"], "update");
    let diff = web["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!("+    image: registry.example.com/shop:{feature}"))
            || diff
                .lines()
                .any(|l| l.starts_with('+') && l.contains(&feature)),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains(&format!("shop:{latest}"))),
        "{diff}"
    );
    let page = app.get(&format!("/change-requests/{id}")).await.text();
    assert!(
        page.contains("What merging would change"),
        "shown to admins"
    );
    assert!(page.contains("dev · deployment/web in shop-staging"));
    setup.app.stop().await;
}

/// `forge: { comment_diff: true }`: the forge request's one comment carries
/// what merging it would change on its target's cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forge_comment_carries_the_manifest_diff_where_configured() {
    let (forge, api) = crate::support::receiver::Receiver::start().await;
    let extra = format!(
        "forge: {{ kind: github, api: \"{api}\", repo: acme/shop, token_secret: FORGE_TOKEN, comment_diff: true }}\n"
    );
    let mut setup = setup_with("sqlite", &extra).await;
    let app = &setup.app;
    crate::forge::register_secrets(app).await;
    let token = app
        .request(
            axum::http::Request::put("/api/v1/secrets/FORGE_TOKEN")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({ "value": "forge-test-token" }).to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(token.status, 204);
    let latest = setup.repo.head("latest");
    let feature = setup.repo.head("feature/x");
    wait_for("staging to run latest", MINUTE, || async {
        let env = environment(app, "staging").await;
        (env["commit_sha"] == latest.as_str() && env["state"] == "live").then_some(())
    })
    .await;
    let opened =
        crate::forge::github_pull_request("opened", &setup.repo.path(), 7, "feature/x", &feature);
    let delivered =
        crate::forge::deliver(app, "github", "pull_request", "d-1", &opened, None).await;
    assert_eq!(delivered.status, 202, "{}", delivered.text());
    let comment = wait_for("the comment with the diff", MINUTE, || async {
        forge
            .at("/repos/acme/shop/issues/comments/555")
            .into_iter()
            .chain(forge.at("/repos/acme/shop/issues/7/comments"))
            .filter_map(|c| c.body["body"].as_str().map(str::to_string))
            .find(|b| b.contains("Manifest diff:</b>"))
    })
    .await;
    assert!(
        comment.contains("`dev · deployment/web in shop-staging` (update)"),
        "{comment}"
    );
    assert!(
        comment
            .lines()
            .any(|l| l.starts_with('-') && l.contains(&format!("shop:{latest}"))),
        "{comment}"
    );
    assert!(
        comment
            .lines()
            .any(|l| l.starts_with('+') && l.contains(&feature)),
        "{comment}"
    );
    setup.app.stop().await;
}

async fn releases(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/releases?app=shop&environment=production")
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Rollback on two emulated production clusters: the exact stored objects
/// of the stable release come back on both — an object the newer release
/// added is pruned — and production is pinned even though this pipeline
/// repo (a working copy) cannot take Gantry's pin commit.
async fn rollback_on_clusters(backend: &str) {
    let mut setup = setup(backend).await;
    let app = &setup.app;
    let v1 = setup.repo.head("master");
    let run = finished(app, &v1).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    let r1 = wait_for("v1's release to go live", MINUTE, || async {
        releases(app)
            .await
            .into_iter()
            .find(|r| r["version"] == v1.as_str() && r["state"] == "live")
    })
    .await;
    assert_eq!(r1["targets"].as_array().unwrap().len(), 2, "{r1}");
    let marked = app
        .post_json(
            &format!("/api/v1/releases/{}/stable", r1["id"]),
            json!({ "reason": "smoke-tested" }),
        )
        .await;
    assert_eq!(marked.status, 200, "{}", marked.text());

    // v2 comes with an extra object from a newer pipeline commit.
    setup.pipeline.write(
        "apps/shop/deploy/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  added: \"in v2\"\n",
    );
    setup.pipeline.commit("extra config");
    scan(app).await;
    wait_for("the new pipeline commit", MINUTE, || async {
        let config = app.get("/api/v1/config").await.json();
        (config["pipeline_sha"] == setup.pipeline.head("master").as_str()).then_some(())
    })
    .await;
    setup.repo.write("v2.txt", "2");
    let v2 = setup.repo.commit("v2");
    scan(app).await;
    let run = finished(app, &v2).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
        assert!(
            cluster
                .store()
                .object("", "configmaps", "shop-production", "extra")
                .is_some()
        );
    }

    let accepted = app
        .post_json(
            "/api/v1/apps/shop/rollback",
            json!({ "reason": "v2 misbehaves" }),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let accepted = accepted.json();
    assert_eq!(accepted["to_release"], r1["id"]);
    assert!(accepted["git_error"].as_str().is_some(), "{accepted}");
    let id = accepted["run_id"].as_i64().unwrap();
    let run = wait_for("the rollback run", MINUTE, || async {
        let run = app.get(&format!("/api/v1/runs/{id}")).await.json();
        (!["queued", "running"].contains(&run["run"]["state"].as_str().unwrap_or("")))
            .then_some(run)
    })
    .await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");

    let short = &v1[..7];
    for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
        let store = cluster.store();
        let web = store
            .object("apps", "deployments", "shop-production", "web")
            .unwrap();
        assert_eq!(
            web["spec"]["template"]["spec"]["containers"][0]["image"],
            json!(format!("registry.example.com/shop:{v1}"))
        );
        assert_eq!(web["metadata"]["labels"]["gantry.dev/commit"], json!(v1));
        assert_eq!(web["status"]["availableReplicas"], json!(3));
        let settings = store
            .object("", "configmaps", "shop-production", "settings")
            .unwrap();
        assert_eq!(settings["data"]["commit"], json!(short));
        assert!(
            store
                .object("", "configmaps", "shop-production", "extra")
                .is_none(),
            "v2's extra object is pruned"
        );
    }
    let entries = releases(app).await;
    assert_eq!(
        entries[0]["label"],
        format!("rollback of {} to {short}", &v2[..7]).as_str()
    );
    assert_eq!(entries[0]["targets"].as_array().unwrap().len(), 2);
    assert_eq!(entries[0]["pipeline_sha"], r1["pipeline_sha"]);
    let production = environment(app, "production").await;
    assert_eq!(production["commit_sha"], v1.as_str());
    assert_eq!(production["pin"]["version"], v1.as_str());
    assert!(
        production["pin"]["git_error"].as_str().is_some(),
        "{production}"
    );

    // A push while pinned is built, not deployed: the clusters keep v1.
    setup.repo.write("v3.txt", "3");
    let v3 = setup.repo.commit("v3");
    scan(app).await;
    let run = finished(app, &v3).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    let deploy = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deploy")
        .unwrap()
        .clone();
    assert_eq!(deploy["state"], "skipped", "{deploy}");
    for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
        let web = cluster
            .store()
            .object("apps", "deployments", "shop-production", "web")
            .unwrap();
        assert_eq!(web["metadata"]["labels"]["gantry.dev/commit"], json!(v1));
    }

    // Promoting again unpins and rolls v3 out on both clusters — slowly,
    // so a rollback asked for meanwhile meets a deploy in flight: it waits
    // for the lock and wins, whatever the timing.
    for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
        cluster.set_faults(Faults {
            latency: Duration::from_millis(150),
            fail_next: 0,
            ..Default::default()
        });
    }
    let promoted = app
        .post_json(
            "/api/v1/apps/shop/promote",
            json!({ "environment": "production" }),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.text());
    assert_eq!(promoted.json()["unpinned"], true);
    let in_flight = wait_for("v3 to be deploying", MINUTE, || async {
        releases(app)
            .await
            .into_iter()
            .find(|r| r["version"] == v3.as_str() && r["state"] == "deploying")
    })
    .await;
    let accepted = app
        .post_json(
            "/api/v1/apps/shop/rollback",
            json!({ "reason": "not v3 either", "to": r1["id"] }),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["run_id"].as_i64().unwrap();
    let run = wait_for("the second rollback", MINUTE, || async {
        let run = app.get(&format!("/api/v1/runs/{id}")).await.json();
        (!["queued", "running"].contains(&run["run"]["state"].as_str().unwrap_or("")))
            .then_some(run)
    })
    .await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    for cluster in [&setup.clusters.prod_eu, &setup.clusters.prod_us] {
        let web = cluster
            .store()
            .object("apps", "deployments", "shop-production", "web")
            .unwrap();
        assert_eq!(web["metadata"]["labels"]["gantry.dev/commit"], json!(v1));
    }
    let entries = releases(app).await;
    assert_eq!(
        entries[0]["label"],
        format!("rollback of {} to {short}", &v3[..7]).as_str()
    );
    let v3_entry = entries.iter().find(|r| r["id"] == in_flight["id"]).unwrap();
    assert_eq!(v3_entry["state"], "rolled_back");
    assert_eq!(
        environment(app, "production").await["commit_sha"],
        v1.as_str()
    );
    setup.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_restores_the_stored_objects_on_every_cluster_sqlite() {
    Box::pin(crate::support::bounded(rollback_on_clusters("sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_restores_the_stored_objects_on_every_cluster_postgres() {
    Box::pin(crate::support::bounded(rollback_on_clusters("postgres"))).await;
}

/// An app that targets a cluster nobody registered yet is refused; once an
/// admin registers it, the app is validated anew without a pipeline commit
/// — even when the replica that read the commit has a clock far ahead of
/// the one that registers the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registering_a_cluster_revalidates_the_apps_waiting_for_it() {
    use crate::support::flow::{QUICK_STEPS, Repos, app_yaml, scan, start};
    let repos = Repos::new(QUICK_STEPS);
    let waiting = app_yaml(
        &repos.app.path(),
        "  - env: edge\n    branch: edge\n    target: late\n",
    );
    repos.pipeline.write("apps/shop/app.yaml", &waiting);
    repos
        .pipeline
        .commit("edge goes to a cluster not registered yet");
    let mut app = start("sqlite", &repos).await;
    scan(&app).await;
    let issues = |config: &Value| config["issues"].as_array().cloned().unwrap_or_default();
    let refused = app.get("/api/v1/config").await.json();
    assert!(
        issues(&refused).iter().any(|i| i
            .to_string()
            .contains("\\\"late\\\" is not a registered cluster")),
        "{refused}"
    );

    // Read by a replica whose clock is an hour ahead.
    sqlx::query("UPDATE config_revisions SET created_at = created_at + 3600000")
        .execute(app.db().pool())
        .await
        .expect("skew");
    let cluster = Emulator::start(Options::default()).await.expect("emulator");
    let registered = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "late", "kubeconfig": cluster.kubeconfig("late") }),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    wait_for("the app to be validated anew", MINUTE, || async {
        let config = app.get("/api/v1/config").await.json();
        issues(&config).is_empty().then_some(())
    })
    .await;
    app.stop().await;
}

/// A namespace someone else made on `cluster`, labelled as theirs.
fn foreign_namespace(cluster: &Emulator, name: &str) {
    let namespaces = cluster
        .store()
        .find("", "v1", "namespaces")
        .expect("namespaces");
    cluster
        .store()
        .create(
            &namespaces,
            "",
            &json!({ "apiVersion": "v1", "kind": "Namespace",
                    "metadata": { "name": name, "labels": { "team": "payments" } } }),
            "kubectl",
            false,
        )
        .expect("created");
}

/// A preview's namespace is deleted with the preview: Gantry never takes
/// over one it did not create (a same-named namespace of another team
/// would be labelled Gantry's, then deleted). Staging deploys into a
/// namespace a platform team made, as it finds it, and never claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_gantry_did_not_create_is_never_taken_over() {
    Box::pin(crate::support::bounded(async {
        let clusters = Clusters::start().await;
        let preview = gantry::gitops::stack::preview_name("preview", "feature/x");
        let theirs = format!("shop-{preview}");
        foreign_namespace(&clusters.dev, &theirs);
        foreign_namespace(&clusters.dev, "shop-staging");
        let setup = setup_on("sqlite", "", clusters).await;
        let app = &setup.app;

        let run = finished(app, &setup.repo.head("feature/x")).await;
        assert_eq!(run["run"]["state"], "failed", "{run}");
        let log = deploy_log(app, &run).await;
        assert!(
            log.contains(&format!(
                "namespace {theirs} on dev exists and Gantry did not create it"
            )),
            "{log}"
        );
        let staging = finished(app, &setup.repo.head("latest")).await;
        assert_eq!(
            staging["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &staging).await
        );
        let store = setup.clusters.dev.store();
        assert!(
            store
                .object("apps", "deployments", "shop-staging", "web")
                .is_some()
        );
        for name in [theirs.as_str(), "shop-staging"] {
            let namespace = store
                .object("", "namespaces", "", name)
                .expect("still there");
            let labels = &namespace["metadata"]["labels"];
            assert_eq!(labels["team"], "payments", "{namespace}");
            assert!(
                labels["app.kubernetes.io/managed-by"].is_null(),
                "not claimed: {namespace}"
            );
        }

        // The preview goes (its branch is deleted): their namespace stays.
        setup.repo.git(&["branch", "-D", "feature/x"]);
        scan(app).await;
        wait_for("the preview to be destroyed", MINUTE, || async {
            environment(app, &preview).await.is_null().then_some(())
        })
        .await;
        assert!(
            store.object("", "namespaces", "", &theirs).is_some(),
            "their namespace survives"
        );
    }))
    .await;
}

/// Every file under `from`, written into `repo` under `to`.
fn copy_tree(from: &std::path::Path, repo: &WorkRepo, to: &str) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let name = format!("{to}/{}", entry.file_name().to_string_lossy());
        if path.is_dir() {
            copy_tree(&path, repo, &name);
        } else {
            repo.write(&name, &std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// `helm` with `args`, run in `dir` (its home too).
fn helm_in(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(crate::support::helm())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .expect("helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An app.yaml deploying `latest` of `source` to staging on `dev`, with
/// `extra` lines in the entry.
fn staging_on_dev(source: &str, extra: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nsource: {source}\nstack:\n  - env: staging\n    branch: latest\n    target: dev\n{extra}"
    )
}

/// Shop on one emulated cluster, `dev`: its repo (on `latest`), a pipeline
/// repo that `fill` completes (app.yaml from `entry`), Gantry running.
struct OneCluster {
    dev: Emulator,
    repo: WorkRepo,
    pipeline: WorkRepo,
    app: TestApp,
    latest: String,
}

async fn on_one_cluster(entry: &str, fill: impl FnOnce(&WorkRepo)) -> OneCluster {
    let dev = Emulator::start(Options {
        rollout: RolloutMode::After(Duration::from_millis(100)),
        ..Options::default()
    })
    .await
    .expect("dev");
    let repo = WorkRepo::new();
    repo.write("README", "shop\n");
    repo.commit("first");
    repo.checkout_new("latest");
    let latest = repo.commit("staging");
    let pipeline = WorkRepo::new();
    pipeline.write("apps/shop/app.yaml", &staging_on_dev(&repo.path(), entry));
    pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    fill(&pipeline);
    pipeline.commit("shop on dev");
    let pipeline_path = pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline_path);
        config.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let registered = app
        .post_json(
            "/api/v1/clusters",
            json!({ "name": "dev", "kubeconfig": dev.kubeconfig("dev-context") }),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    app.start_flow().await;
    OneCluster {
        dev,
        repo,
        pipeline,
        app,
        latest,
    }
}

// A chart as `helm create` makes it, in the app's deploy folder: rendered
// by the real helm with `values-staging.yaml` and the stack entry's
// `values:`, applied by Gantry; the next release, whose values turn the
// ServiceAccount off, prunes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_helm_chart_deploys_with_its_values_per_environment_and_prunes() {
    let made = tempfile::tempdir().unwrap();
    helm_in(made.path(), &["create", "shop"]);
    let OneCluster {
        dev,
        repo,
        pipeline,
        mut app,
        latest,
    } = on_one_cluster(
        "    values: { podAnnotations: { team: payments } }\n",
        |pipeline| {
            copy_tree(&made.path().join("shop"), pipeline, "apps/shop/deploy");
            pipeline.write(
                "apps/shop/deploy/values-staging.yaml",
                "replicaCount: 2\nservice:\n  port: 8080\n",
            );
        },
    )
    .await;

    let run = finished(&app, &latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(&app, &run).await
    );
    let store = dev.store();
    let web = store
        .object("apps", "deployments", "shop-staging", "shop")
        .expect("the chart's Deployment");
    assert_eq!(web["spec"]["replicas"], json!(2), "values-staging.yaml");
    assert_eq!(
        web["spec"]["template"]["metadata"]["annotations"]["team"],
        json!("payments"),
        "the entry's values"
    );
    assert_eq!(web["metadata"]["labels"]["gantry.dev/app"], json!("shop"));
    assert_eq!(
        web["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        json!("gantry"),
        "Gantry's, not Helm's"
    );
    let service = store
        .object("", "services", "shop-staging", "shop")
        .expect("the chart's Service");
    assert_eq!(service["spec"]["ports"][0]["port"], json!(8080));
    assert!(
        store
            .object("", "serviceaccounts", "shop-staging", "shop")
            .is_some()
    );
    assert!(
        store
            .object("", "pods", "shop-staging", "shop-test-connection")
            .is_none(),
        "no helm test pod"
    );

    // The next release turns the ServiceAccount off: it is pruned.
    pipeline.write(
        "apps/shop/deploy/values-staging.yaml",
        "replicaCount: 2
service:
  port: 8080
serviceAccount:
  create: false
",
    );
    pipeline.commit("no service account");
    repo.write("v2", "2");
    let v2 = repo.commit("v2");
    scan(&app).await;
    let run = finished(&app, &v2).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(&app, &run).await
    );
    assert!(
        store
            .object("", "serviceaccounts", "shop-staging", "shop")
            .is_none(),
        "pruned"
    );
    let web = store
        .object("apps", "deployments", "shop-staging", "shop")
        .expect("still there");
    assert_eq!(web["metadata"]["labels"]["gantry.dev/commit"], json!(v2));
    app.stop().await;
}

// A chart from a chart repository (a real `helm repo index`, served over
// loopback) at its pinned version, with values from `deploy/`; a version
// the repository lacks fails the deploy, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chart_from_a_chart_repository_deploys_at_its_pinned_version() {
    use axum::response::IntoResponse;
    let made = tempfile::tempdir().unwrap();
    helm_in(made.path(), &["create", "shop"]);
    helm_in(made.path(), &["package", "shop", "-d", "repo"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    helm_in(made.path(), &["repo", "index", "repo", "--url", &address]);
    let files = made.path().join("repo");
    let served = axum::Router::new().route(
        "/{file}",
        axum::routing::get(
            move |axum::extract::Path(file): axum::extract::Path<String>| {
                let files = files.clone();
                async move {
                    match std::fs::read(files.join(file)) {
                        Ok(bytes) => bytes.into_response(),
                        Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, served).await });

    let chart = |version: &str| {
        format!("    chart: {{ repo: \"{address}\", name: shop, version: \"{version}\" }}\n")
    };
    let OneCluster {
        dev,
        repo,
        pipeline,
        mut app,
        latest,
    } = on_one_cluster(&chart("0.1.0"), |pipeline| {
        pipeline.write("apps/shop/deploy/values-staging.yaml", "replicaCount: 3\n");
    })
    .await;

    let run = finished(&app, &latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(&app, &run).await
    );
    let web = dev
        .store()
        .object("apps", "deployments", "shop-staging", "shop")
        .expect("the chart's Deployment");
    assert_eq!(
        web["spec"]["replicas"],
        json!(3),
        "values-staging.yaml from deploy/"
    );
    assert_eq!(
        web["metadata"]["labels"]["helm.sh/chart"],
        json!("shop-0.1.0")
    );

    pipeline.write(
        "apps/shop/app.yaml",
        &staging_on_dev(&repo.path(), &chart("9.9.9")),
    );
    pipeline.commit("a version nobody published");
    repo.write("v2", "2");
    let v2 = repo.commit("v2");
    scan(&app).await;
    let run = finished(&app, &v2).await;
    let log = deploy_log(&app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(log.contains("9.9.9"), "{log}");
    let web = dev
        .store()
        .object("apps", "deployments", "shop-staging", "shop")
        .expect("still there");
    assert_eq!(
        web["metadata"]["labels"]["gantry.dev/commit"],
        json!(latest),
        "nothing applied"
    );
    app.stop().await;
}

// Waves: each is applied and healthy before the next. With the first
// wave's Deployment never rolling out, the second wave is never applied
// and the deploy says which object held it; once the cluster rolls out
// again, a new release applies both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wave_is_healthy_before_the_next_is_applied() {
    let setup = setup("sqlite").await;
    let app = &setup.app;
    let latest = setup.repo.head("latest");
    finished(app, &latest).await;
    setup.clusters.dev.set_rollout(RolloutMode::Never);
    setup.pipeline.write(
        "apps/shop/deploy/later.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-web\n  annotations: { gantry.dev/wave: \"1\" }\ndata: { ready: \"yes\" }\n",
    );
    setup.pipeline.commit("a second wave");
    setup.repo.checkout("latest");
    setup.repo.write("v2", "2");
    let v2 = setup.repo.commit("v2");
    scan(app).await;
    let run = finished(app, &v2).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("deployment/web") && log.contains("did not become ready"),
        "{log}"
    );
    let store = setup.clusters.dev.store();
    assert!(
        store
            .object("", "configmaps", "shop-staging", "after-web")
            .is_none(),
        "wave 1 waited for wave 0: {log}"
    );

    setup
        .clusters
        .dev
        .set_rollout(RolloutMode::After(Duration::from_millis(100)));
    setup.repo.write("v3", "3");
    let v3 = setup.repo.commit("v3");
    scan(app).await;
    let run = finished(app, &v3).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    assert!(
        store
            .object("", "configmaps", "shop-staging", "after-web")
            .is_some()
    );
}

// Health of any kind: a custom resource whose controller says
// `Ready=False` holds the rollout and fails it at the deadline with its
// own words; once it says `Ready=True`, the next release succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_custom_resource_that_is_not_ready_fails_the_rollout_with_its_message() {
    let setup = setup("sqlite").await;
    let app = &setup.app;
    finished(app, &setup.repo.head("latest")).await;
    setup.pipeline.write(
        "apps/shop/deploy/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: buckets.example.com }\nspec:\n  group: example.com\n  scope: Namespaced\n  names: { plural: buckets, singular: bucket, kind: Bucket }\n  versions: [{ name: v1, served: true, storage: true }]\n",
    );
    setup.pipeline.write(
        "apps/shop/deploy/bucket.yaml",
        "apiVersion: example.com/v1\nkind: Bucket\nmetadata: { name: assets }\nspec: { size: 10Gi }\n",
    );
    setup.pipeline.write(
        "gantry.yaml",
        "apiVersion: gantry.dev/v1\napps:\n  shop:\n    cluster_kinds: [apiextensions.k8s.io/CustomResourceDefinition]\n",
    );
    setup.pipeline.commit("a bucket");
    setup.repo.checkout("latest");
    setup.repo.write("b", "1");
    let first = setup.repo.commit("with a bucket");
    scan(app).await;
    let run = finished(app, &first).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );

    // Its controller now says it is not ready.
    let key = kube_emulator::Key {
        group: "example.com".into(),
        plural: "buckets".into(),
        namespace: "shop-staging".into(),
        name: "assets".into(),
    };
    let store = setup.clusters.dev.store();
    store.set_status(&key, json!({ "conditions": [{ "type": "Ready", "status": "False", "reason": "NameTaken", "message": "the bucket name is taken" }] }));
    setup.repo.write("b", "2");
    let second = setup.repo.commit("again");
    scan(app).await;
    let run = finished(app, &second).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("bucket/assets on dev did not become ready"),
        "{log}"
    );
    assert!(
        log.contains("Ready=False: NameTaken: the bucket name is taken"),
        "{log}"
    );

    // Stalled: failed at once, in its words.
    store.set_status(&key, json!({ "conditions": [{ "type": "Stalled", "status": "True", "reason": "QuotaExceeded", "message": "no more buckets" }] }));
    setup.repo.write("b", "3");
    let third = setup.repo.commit("once more");
    scan(app).await;
    let run = finished(app, &third).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("bucket/assets on dev failed: Stalled: QuotaExceeded: no more buckets"),
        "{log}"
    );

    store.set_status(
        &key,
        json!({ "conditions": [{ "type": "Ready", "status": "True" }] }),
    );
    setup.repo.write("b", "4");
    let fourth = setup.repo.commit("ready now");
    scan(app).await;
    let run = finished(app, &fourth).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
}

/// A hook Job of `phase` that runs `script` (the emulator runs `sh -c`
/// scripts of `echo` and `exit`), with extra annotations.
fn hook_job(name: &str, annotations: &str, script: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations: {{ {annotations} }}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: {name}\n          image: \"{{{{ image }}}}\"\n          command: [sh, -c, \"{script}\"]\n"
    )
}

/// What the newest pod of Job `job` in `namespace` printed.
fn job_log(cluster: &Emulator, namespace: &str, job: &str) -> String {
    let store = cluster.store();
    let mut pods: Vec<Value> = store
        .objects_of("", "pods")
        .into_iter()
        .map(|(_, pod)| pod)
        .filter(|pod| {
            pod["metadata"]["namespace"] == namespace
                && pod["metadata"]["labels"]["job-name"] == job
        })
        .collect();
    pods.sort_by_key(|pod| {
        pod["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
    });
    let Some(pod) = pods.last() else {
        return String::new();
    };
    store.log(namespace, pod["metadata"]["name"].as_str().unwrap(), job)
}

// Hooks: a pre-deploy migration Job completes before anything is applied
// and its failure stops the deploy with its log, the on-failure hook then
// runs; a post-deploy smoke Job (Helm's annotations) runs after and is
// deleted by its policy; a rollback runs the migration of the release it
// goes back to, and its record shows it; a preview's pre-delete hook runs
// before its namespace goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_run_in_their_phases_on_deploys_rollbacks_and_deletes() {
    let good = "echo migrating to {{ commit }}";
    let one = on_one_cluster(
        "    rollout_timeout: 20s\n  - env: preview\n    branches: \"feature/*\"\n    target: dev\n",
        |pipeline| {
            pipeline.write(
                "apps/shop/deploy/web.yaml",
                MANIFESTS.replace("{{ replicas }}", "1").as_str(),
            );
            pipeline.write(
                "apps/shop/deploy/migrate.yaml",
                &hook_job("migrate", "gantry.dev/hook: pre-deploy", good),
            );
            pipeline.write(
                "apps/shop/deploy/smoke.yaml",
                &hook_job(
                    "smoke",
                    "helm.sh/hook: \"post-install,post-upgrade\", helm.sh/hook-delete-policy: hook-succeeded",
                    "echo smoke ok",
                ),
            );
            pipeline.write(
                "apps/shop/deploy/cleanup.yaml",
                &hook_job("cleanup", "gantry.dev/hook: on-failure", "echo cleaning up"),
            );
            pipeline.write(
                "apps/shop/deploy/farewell.yaml",
                &hook_job("farewell", "gantry.dev/hook: pre-delete", "echo goodbye"),
            );
        },
    )
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let v1 = one.latest.clone();
    let run = finished(app, &v1).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "succeeded", "{log}");
    assert!(
        log.contains("pre-deploy hook job/migrate completed"),
        "{log}"
    );
    assert!(
        log.contains("post-deploy hook job/smoke completed"),
        "{log}"
    );
    assert!(
        !log.contains("cleanup") && !log.contains("farewell"),
        "{log}"
    );
    assert_eq!(
        job_log(&one.dev, "shop-staging", "migrate"),
        format!("migrating to {v1}\n")
    );
    assert!(
        store
            .object("batch", "jobs", "shop-staging", "smoke")
            .is_none(),
        "hook-succeeded: deleted once it succeeded"
    );
    assert!(
        store
            .object("batch", "jobs", "shop-staging", "migrate")
            .is_some()
    );
    for never in ["cleanup", "farewell"] {
        assert!(
            store
                .object("batch", "jobs", "shop-staging", never)
                .is_none()
        );
    }

    // The migration fails: nothing else is applied, its log says why, and
    // the on-failure hook runs.
    one.pipeline.write(
        "apps/shop/deploy/migrate.yaml",
        &hook_job(
            "migrate",
            "gantry.dev/hook: pre-deploy",
            "echo migrating to {{ commit }}; echo relation orders already exists; exit 1",
        ),
    );
    one.pipeline.commit("a migration that fails");
    scan(app).await;
    wait_for("the new pipeline commit", MINUTE, || async {
        let config = app.get("/api/v1/config").await.json();
        (config["pipeline_sha"] == one.pipeline.head("master").as_str()).then_some(())
    })
    .await;
    one.repo.checkout("latest");
    one.repo.write("v2", "2");
    let v2 = one.repo.commit("v2");
    scan(app).await;
    let run = finished(app, &v2).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains(
            "pre-deploy hook job/migrate on dev failed: the job failed: BackoffLimitExceeded"
        ),
        "{log}"
    );
    assert!(log.contains("relation orders already exists"), "{log}");
    assert!(
        log.contains("on-failure hook job/cleanup completed"),
        "{log}"
    );
    let web = store
        .object("apps", "deployments", "shop-staging", "web")
        .unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!("registry.example.com/shop:{v1}")),
        "nothing applied after the failed migration"
    );

    one.pipeline.write(
        "apps/shop/deploy/migrate.yaml",
        &hook_job("migrate", "gantry.dev/hook: pre-deploy", good),
    );
    one.pipeline.commit("the migration fixed");
    scan(app).await;
    wait_for("the fixed pipeline commit", MINUTE, || async {
        let config = app.get("/api/v1/config").await.json();
        (config["pipeline_sha"] == one.pipeline.head("master").as_str()).then_some(())
    })
    .await;
    one.repo.write("v3", "3");
    let v3 = one.repo.commit("v3");
    scan(app).await;
    let run = finished(app, &v3).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    assert_eq!(
        job_log(&one.dev, "shop-staging", "migrate"),
        format!("migrating to {v3}\n")
    );

    // Back to v1: its own migration runs again, and the record says so.
    let staging_releases = || async {
        app.get("/api/v1/releases?app=shop&environment=staging")
            .await
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let r1 = staging_releases()
        .await
        .into_iter()
        .find(|r| r["version"] == v1.as_str())
        .expect("v1's release");
    let accepted = app
        .post_json(
            "/api/v1/apps/shop/rollback",
            json!({ "environment": "staging", "to": r1["id"], "reason": "v3 is slow" }),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["run_id"].as_i64().unwrap();
    let run = wait_for("the rollback run", MINUTE, || async {
        let run = app.get(&format!("/api/v1/runs/{id}")).await.json();
        (!["queued", "running"].contains(&run["run"]["state"].as_str().unwrap_or("")))
            .then_some(run)
    })
    .await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert_eq!(
        job_log(&one.dev, "shop-staging", "migrate"),
        format!("migrating to {v1}\n"),
        "the rollback ran the migration of the release it went back to"
    );
    let rollback = &staging_releases().await[0];
    let detail = rollback["targets"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("pre-deploy hook job/migrate completed")
            && detail.contains("post-deploy hook job/smoke completed"),
        "{rollback}"
    );

    // A preview's pre-delete hook runs before its namespace goes.
    one.repo.checkout_new("feature/x");
    one.repo.write("x", "x");
    let x = one.repo.commit("x");
    scan(app).await;
    let run = finished(app, &x).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    one.repo.checkout("latest");
    one.repo
        .git(&["merge", "-q", "--no-ff", "-m", "merge x", "feature/x"]);
    scan(app).await;
    let detail = wait_for("the preview's teardown", MINUTE, || async {
        let detail = app
            .db_value(
                "SELECT state_detail FROM environments WHERE stack_entry = $1",
                "preview",
            )
            .await;
        detail
            .contains("deleted and verified gone")
            .then_some(detail)
    })
    .await;
    assert!(
        detail.contains("pre-delete hook job/farewell completed"),
        "{detail}"
    );
}

/// Commits the pipeline repo and waits until Gantry read that commit;
/// the configuration status it then reports.
async fn pipeline_committed(one: &OneCluster, message: &str) -> Value {
    let sha = one.pipeline.commit(message);
    scan(&one.app).await;
    wait_for("the pipeline commit to be read", MINUTE, || async {
        let config = one.app.get("/api/v1/config").await.json();
        (config["pipeline_sha"] == sha.as_str()).then_some(config)
    })
    .await
}

// Guardrails from the pipeline repo's admin file: a ClusterRole (and a
// cluster-scoped custom kind, whose CRD the release brings) is refused
// before anything is applied, naming file, object and rule; so is a
// namespace outside the app's patterns; a cluster the app may not use
// refuses its configuration, which keeps the one it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guardrails_refuse_cluster_kinds_foreign_namespaces_and_clusters() {
    let rails = "apiVersion: gantry.dev/v1\napps:\n  shop:\n    clusters: [dev]\n    namespaces: [\"{app}-*\"]\n    cluster_kinds: [CustomResourceDefinition]\n";
    let one = on_one_cluster("", |pipeline| {
        pipeline.write(
            "apps/shop/deploy/web.yaml",
            MANIFESTS.replace("{{ replicas }}", "1").as_str(),
        );
        pipeline.write("gantry.yaml", rails);
    })
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let run = finished(app, &one.latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    let push = |name: &'static str| {
        one.repo.checkout("latest");
        one.repo.write(name, name);
        one.repo.commit(name)
    };

    // A ClusterRole: refused while rendering, with its file.
    one.pipeline.write(
        "apps/shop/deploy/role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: { name: reader }\nrules: []\n",
    );
    pipeline_committed(&one, "a cluster role").await;
    let sha = push("role");
    scan(app).await;
    let run = finished(app, &sha).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("apps/shop/deploy/role.yaml: document 1: ClusterRole/reader is cluster-scoped and shop may not create it: gantry.yaml apps.shop.cluster_kinds allows CustomResourceDefinition"),
        "{log}"
    );
    assert!(
        store
            .object("rbac.authorization.k8s.io", "clusterroles", "", "reader")
            .is_none()
    );

    // A cluster-scoped custom kind, known from its CRD in the same release:
    // refused before anything is applied, the CRD included.
    one.pipeline.remove("apps/shop/deploy/role.yaml");
    one.pipeline.write(
        "apps/shop/deploy/tenant.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: tenants.example.com }\nspec:\n  group: example.com\n  scope: Cluster\n  names: { plural: tenants, singular: tenant, kind: Tenant }\n  versions: [{ name: v1, served: true, storage: true }]\n---\napiVersion: example.com/v1\nkind: Tenant\nmetadata: { name: acme }\nspec: {}\n",
    );
    pipeline_committed(&one, "a tenant").await;
    let sha = push("tenant");
    scan(app).await;
    let run = finished(app, &sha).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("Tenant/acme is cluster-scoped and shop may not create it")
            && log.contains("(on dev)"),
        "{log}"
    );
    assert!(
        store
            .object(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "tenants.example.com"
            )
            .is_none(),
        "nothing was applied"
    );

    // A namespace outside the app's patterns.
    one.pipeline.remove("apps/shop/deploy/tenant.yaml");
    one.pipeline.write(
        "apps/shop/app.yaml",
        &staging_on_dev(&one.repo.path(), "    namespace: kube-system\n"),
    );
    pipeline_committed(&one, "into kube-system").await;
    let sha = push("kube-system");
    scan(app).await;
    let run = finished(app, &sha).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("shop may not deploy into namespace kube-system: gantry.yaml apps.shop.namespaces allows {app}-*"),
        "{log}"
    );
    assert!(
        store
            .object("apps", "deployments", "kube-system", "web")
            .is_none()
    );

    // A cluster the app may not use: the configuration is refused.
    one.pipeline
        .write("apps/shop/app.yaml", &staging_on_dev(&one.repo.path(), ""));
    one.pipeline.write(
        "gantry.yaml",
        &rails.replace("clusters: [dev]", "clusters: [prod-eu]"),
    );
    let config = pipeline_committed(&one, "dev is off limits").await;
    assert_eq!(config["state"], "rejected", "{config}");
    assert_eq!(
        config["issues"][0]["file"], "apps/shop/app.yaml",
        "{config}"
    );
    assert_eq!(
        config["issues"][0]["field"], "stack.staging.targets",
        "{config}"
    );
    assert!(
        config["issues"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(
                "shop may not deploy to cluster dev: gantry.yaml apps.shop.clusters allows prod-eu"
            ),
        "{config}"
    );

    // A broken admin file names its line; no app takes the commit.
    one.pipeline.write(
        "gantry.yaml",
        "apiVersion: gantry.dev/v1\napps:\n  shop:\n    cluster_kind: [ClusterRole]\n",
    );
    let config = pipeline_committed(&one, "a typo").await;
    assert_eq!(config["state"], "rejected", "{config}");
    assert_eq!(config["issues"][0]["file"], "gantry.yaml", "{config}");
    assert_eq!(config["issues"][0]["line"], 4, "{config}");
}

// Health rules from the pipeline repo decide custom kinds: a CEL rule (as
// Flux writes them) holds the deploy until the Widget's phase is Ready and
// fails it when it is Error; an Argo CD Lua script fails it with the
// Gadget's own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cel_and_lua_health_rules_decide_custom_kinds() {
    let crd = |plural: &str, kind: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{ name: {plural}.example.com }}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {{ plural: {plural}, singular: {}, kind: {kind} }}\n  versions: [{{ name: v1, served: true, storage: true }}]\n",
            kind.to_lowercase()
        )
    };
    let one = on_one_cluster("    rollout_timeout: 20s\n", |pipeline| {
        pipeline.write(
            "gantry.yaml",
            "apiVersion: gantry.dev/v1\napps:\n  shop: { cluster_kinds: [CustomResourceDefinition] }\nhealth:\n  - apiVersion: example.com/v1\n    kind: Widget\n    current: \"status.phase == 'Ready'\"\n    failed: \"status.phase == 'Error'\"\n",
        );
        pipeline.write(
            "health/example.com/Gadget/health.lua",
            "hs = {}\nif obj.status ~= nil and obj.status.broken then\n  hs.status = \"Degraded\"\n  hs.message = obj.status.reason\n  return hs\nend\nhs.status = \"Healthy\"\nreturn hs\n",
        );
        pipeline.write(
            "apps/shop/deploy/kinds.yaml",
            &format!("{}---\n{}", crd("widgets", "Widget"), crd("gadgets", "Gadget")),
        );
        pipeline.write(
            "apps/shop/deploy/objects.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: { name: w }\nspec: { size: 1 }\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: { name: g }\nspec: { teeth: 12 }\n",
        );
    })
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let key = |plural: &str, name: &str| kube_emulator::Key {
        group: "example.com".into(),
        plural: plural.into(),
        namespace: "shop-staging".into(),
        name: name.into(),
    };
    // The Widget has no phase yet: the deploy waits for it, by the rule.
    wait_for("the widget to be applied", MINUTE, || async {
        store
            .object("example.com", "widgets", "shop-staging", "w")
            .map(|_| ())
    })
    .await;
    let deploying = app.get("/api/v1/environments").await.text();
    assert!(deploying.contains("deploying"), "{deploying}");
    store.set_status(&key("widgets", "w"), json!({ "phase": "Ready" }));
    let run = finished(app, &one.latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );

    // The Lua rule: the Gadget says it is broken.
    store.set_status(
        &key("gadgets", "g"),
        json!({ "broken": true, "reason": "the gear slipped" }),
    );
    one.repo.checkout("latest");
    one.repo.write("v2", "2");
    let v2 = one.repo.commit("v2");
    scan(app).await;
    let run = finished(app, &v2).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("gadget/g on dev failed: the gear slipped"),
        "{log}"
    );

    // The CEL rule: the Widget's phase is Error.
    store.set_status(&key("gadgets", "g"), json!({ "broken": false }));
    store.set_status(&key("widgets", "w"), json!({ "phase": "Error" }));
    one.repo.write("v3", "3");
    let v3 = one.repo.commit("v3");
    scan(app).await;
    let run = finished(app, &v3).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("widget/w on dev failed: the health rule's failed expression is true"),
        "{log}"
    );
}

// A chart's capability checks render for what the target cluster serves:
// its Kubernetes version and API versions (a CRD's group once installed),
// from discovery, not Helm's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chart_renders_for_the_target_clusters_capabilities() {
    let one = on_one_cluster("", |pipeline| {
        pipeline.write(
            "apps/shop/deploy/Chart.yaml",
            "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
        );
        pipeline.write(
            "apps/shop/deploy/templates/caps.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: caps }\ndata:\n  kube: \"{{ .Capabilities.KubeVersion.Version }}\"\n  widgets: \"{{ .Capabilities.APIVersions.Has \"example.com/v1\" }}\"\n  batch: \"{{ .Capabilities.APIVersions.Has \"batch/v1\" }}\"\n",
        );
        pipeline.write(
            "gantry.yaml",
            "apiVersion: gantry.dev/v1\napps:\n  shop: { cluster_kinds: [CustomResourceDefinition] }\n",
        );
    })
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let run = finished(app, &one.latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    let caps = || {
        store
            .object("", "configmaps", "shop-staging", "caps")
            .expect("caps")["data"]
            .clone()
    };
    assert_eq!(
        caps(),
        json!({ "kube": "v1.33.0", "widgets": "false", "batch": "true" })
    );

    // A CRD installed (by this chart, say): the next render sees its group.
    one.pipeline.write(
        "apps/shop/deploy/templates/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: widgets.example.com }\nspec:\n  group: example.com\n  scope: Namespaced\n  names: { plural: widgets, singular: widget, kind: Widget }\n  versions: [{ name: v1, served: true, storage: true }]\n",
    );
    pipeline_committed(&one, "the widget CRD").await;
    for name in ["v2", "v3"] {
        one.repo.checkout("latest");
        one.repo.write(name, name);
        let sha = one.repo.commit(name);
        scan(app).await;
        let run = finished(app, &sha).await;
        assert_eq!(
            run["run"]["state"],
            "succeeded",
            "{}",
            deploy_log(app, &run).await
        );
    }
    assert_eq!(caps()["widgets"], "true");
}

// The live resource tree: a Deployment with its ReplicaSet and Pods and
// their health, sync state (drifted when someone scales it by hand, missing
// when deleted), server-side filters and paging; the live object and its
// diff for admins only; pod logs for the app's developers only — a viewer,
// and a developer of another app, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_resource_tree_shows_live_objects_children_health_and_logs() {
    let one = on_one_cluster("", |pipeline| {
        pipeline.write(
            "apps/shop/deploy/web.yaml",
            MANIFESTS.replace("{{ replicas }}", "2").as_str(),
        );
        pipeline.write("apps/shop/deploy/settings.yaml", CONFIG_MAP);
        pipeline.write(
            "apps/shop/deploy/secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: { name: db }\nstringData: { password: hunter2-live }\n",
        );
        // Another app on the same cluster, whose developers are not shop's.
        let shop = std::fs::read_to_string(format!("{}/apps/shop/app.yaml", pipeline.path()))
            .expect("shop's app.yaml");
        pipeline.write("apps/billing/app.yaml", &shop);
        pipeline.write("apps/billing/pipeline.yaml", PIPELINE);
        pipeline.write("apps/billing/deploy/settings.yaml", CONFIG_MAP);
    })
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let run = finished(app, &one.latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );
    let base = "/api/v1/apps/shop/environments/staging";
    let tree = wait_for("the pods to be ready", MINUTE, || async {
        let tree = app.get(&format!("{base}/resources")).await.json();
        let web = tree["objects"]
            .as_array()?
            .iter()
            .find(|o| o["kind"] == "Deployment")?
            .clone();
        let pods: Vec<Value> = web["children"][0]["children"].as_array()?.clone();
        (pods.len() == 2 && pods.iter().all(|p| p["health"] == "healthy")).then_some(tree)
    })
    .await;
    assert_eq!(tree["cluster"], "dev");
    assert_eq!(tree["namespace"], "shop-staging");
    assert_eq!(tree["total"], 4, "{tree}");
    // A Secret's values never leave the cluster through the tree.
    let secret = app
        .get(&format!(
            "{base}/resources/object?apiVersion=v1&kind=Secret&name=db"
        ))
        .await;
    assert_eq!(secret.status, 200, "{}", secret.text());
    let shown = secret.text();
    assert!(shown.contains("<redacted sha256:"), "{shown}");
    assert!(
        !shown.contains("hunter2-live") && !shown.contains("aHVudGVyMi1saXZl"),
        "{shown}"
    );
    let web = tree["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    assert_eq!(
        (web["health"].as_str(), web["sync"].as_str()),
        (Some("healthy"), Some("in_sync"))
    );
    let replica_set = &web["children"][0];
    assert_eq!(replica_set["kind"], "ReplicaSet");
    assert_eq!(replica_set["sync"], "owned");
    assert!(
        web["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "ScalingReplicaSet"),
        "{web}"
    );
    let pod = replica_set["children"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(replica_set["children"][0]["containers"], json!(["web"]));

    // Filters and pages are the server's.
    let only = app
        .get(&format!("{base}/resources?kind=ConfigMap&q=sett"))
        .await
        .json();
    assert_eq!(only["total"], 1, "{only}");
    assert_eq!(only["objects"][0]["name"], "settings");

    // Pod logs: the app's developers; not a viewer, not another app's.
    one.dev
        .write_log("shop-staging", &pod, "web", "GET /healthz 200\n");
    let developer = app
        .token("dev", app::dto::Role::Developer, Some("shop"))
        .await;
    let log = app
        .get_as(&developer, &format!("{base}/pods/{pod}/log"))
        .await;
    assert_eq!(log.status, 200, "{}", log.text());
    assert_eq!(log.json()["text"], "GET /healthz 200\n");
    assert_eq!(log.json()["container"], "web");
    let viewer = app
        .token("viewer", app::dto::Role::Viewer, Some("shop"))
        .await;
    assert_eq!(
        app.get_as(&viewer, &format!("{base}/resources"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get_as(&viewer, &format!("{base}/pods/{pod}/log"))
            .await
            .status,
        403
    );
    let billing = app
        .token("billing-dev", app::dto::Role::Developer, Some("billing"))
        .await;
    assert_eq!(
        app.get_as(&billing, &format!("{base}/pods/{pod}/log"))
            .await
            .status,
        403
    );
    assert_eq!(
        app.get_as(&billing, &format!("{base}/resources"))
            .await
            .status,
        403
    );
    // Scaled by hand: drifted, and the admin's diff says how.
    let key = kube_emulator::Key {
        group: "apps".into(),
        plural: "deployments".into(),
        namespace: "shop-staging".into(),
        name: "web".into(),
    };
    let mut scaled = store
        .object("apps", "deployments", "shop-staging", "web")
        .unwrap();
    scaled["spec"]["replicas"] = json!(5);
    let version = scaled["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string);
    assert!(store.put_if("apps", "deployments", scaled, version.as_deref()));
    let drifted = app
        .get(&format!("{base}/resources?kind=Deployment"))
        .await
        .json();
    assert_eq!(drifted["objects"][0]["sync"], "drifted", "{drifted}");
    assert_eq!(drifted["drifted"], 1);
    let detail = app
        .get(&format!(
            "{base}/resources/object?apiVersion=apps/v1&kind=Deployment&name=web"
        ))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.text());
    let diff = detail.json()["diff"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        diff.contains("-  replicas: 2") && diff.contains("+  replicas: 5"),
        "{diff}"
    );
    // Deleted: missing.
    store.remove(&kube_emulator::Key {
        group: String::new(),
        plural: "configmaps".into(),
        namespace: "shop-staging".into(),
        name: "settings".into(),
    });
    let gone = app
        .get(&format!("{base}/resources?health=missing"))
        .await
        .json();
    assert_eq!(gone["total"], 1, "{gone}");
    assert_eq!(gone["objects"][0]["sync"], "missing");
    let _ = key;

    // The live object is the admins'.
    assert_eq!(
        app.get_as(
            &developer,
            &format!("{base}/resources/object?apiVersion=apps/v1&kind=Deployment&name=web")
        )
        .await
        .status,
        403
    );
    // A pod is looked up in this environment's namespace only: a name from
    // elsewhere is not found, a path in it is not a path.
    for pod in ["coredns-x", "..%2F..%2Fkube-system%2Fpods%2Fcoredns"] {
        let answer = app
            .get_as(&developer, &format!("{base}/pods/{pod}/log"))
            .await;
        assert_eq!(answer.status, 404, "{pod}: {}", answer.text());
    }
    // An environment or cluster it does not have.
    assert_eq!(
        app.get(&format!("{base}/resources?cluster=prod-eu"))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/apps/shop/environments/nowhere/resources")
            .await
            .status,
        404
    );
}

// A hook that never completes is bounded by the entry's rollout timeout:
// the deploy fails naming the hook, and nothing else is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hook_that_never_completes_is_stopped_at_the_timeout() {
    let one = on_one_cluster("    rollout_timeout: 1s\n", |pipeline| {
        pipeline.write("apps/shop/deploy/settings.yaml", CONFIG_MAP);
        pipeline.write(
            "apps/shop/deploy/migrate.yaml",
            &hook_job(
                "migrate",
                "gantry.dev/hook: pre-deploy",
                "echo waiting forever",
            ),
        );
    })
    .await;
    // Jobs never finish on this cluster.
    one.dev.set_rollout(RolloutMode::Never);
    let app = &one.app;
    let run = finished(app, &one.latest).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("pre-deploy hook job/migrate on dev did not become ready within 1s"),
        "{log}"
    );
    assert!(
        one.dev
            .store()
            .object("", "configmaps", "shop-staging", "settings")
            .is_none(),
        "nothing applied after the hook"
    );
}

// What a manifest may not take over: a hook named like an object that is
// not a hook of this environment is refused, never deleted in its place;
// another Gantry environment's namespace is never deployed into.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hooks_and_namespaces_never_take_over_what_is_not_theirs() {
    let one = on_one_cluster("", |pipeline| {
        pipeline.write("apps/shop/deploy/settings.yaml", CONFIG_MAP);
    })
    .await;
    let app = &one.app;
    let store = one.dev.store();
    let run = finished(app, &one.latest).await;
    assert_eq!(
        run["run"]["state"],
        "succeeded",
        "{}",
        deploy_log(app, &run).await
    );

    // The platform team's Job in the namespace; a hook named like it.
    let platform = json!({ "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "nightly-backup", "namespace": "shop-staging", "labels": { "team": "platform" } },
        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "b", "image": "backup" }] } } } });
    assert!(store.put_if("batch", "jobs", platform, None));
    one.pipeline.write(
        "apps/shop/deploy/migrate.yaml",
        &hook_job(
            "nightly-backup",
            "gantry.dev/hook: pre-deploy",
            "echo hello",
        ),
    );
    pipeline_committed(&one, "a hook named like the platform's job").await;
    one.repo.checkout("latest");
    one.repo.write("v2", "2");
    let v2 = one.repo.commit("v2");
    scan(app).await;
    let run = finished(app, &v2).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("hook job/nightly-backup on dev would replace an object that is not a hook of shop/staging"),
        "{log}"
    );
    let kept = store
        .object("batch", "jobs", "shop-staging", "nightly-backup")
        .expect("kept");
    assert_eq!(kept["metadata"]["labels"]["team"], "platform");

    // Another environment's namespace.
    one.pipeline.remove("apps/shop/deploy/migrate.yaml");
    let theirs = json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": "billing-staging", "labels": {
            "app.kubernetes.io/managed-by": "gantry", "gantry.dev/app": "billing", "gantry.dev/env": "staging" } } });
    assert!(store.put_if("", "namespaces", theirs, None));
    one.pipeline.write(
        "apps/shop/app.yaml",
        &staging_on_dev(&one.repo.path(), "    namespace: billing-staging\n"),
    );
    pipeline_committed(&one, "into billing's namespace").await;
    one.repo.write("v3", "3");
    let v3 = one.repo.commit("v3");
    scan(app).await;
    let run = finished(app, &v3).await;
    let log = deploy_log(app, &run).await;
    assert_eq!(run["run"]["state"], "failed", "{log}");
    assert!(
        log.contains("namespace billing-staging on dev is Gantry's for billing/staging: shop/staging may not deploy into it"),
        "{log}"
    );
    assert!(
        store
            .object("", "configmaps", "billing-staging", "settings")
            .is_none()
    );
}
