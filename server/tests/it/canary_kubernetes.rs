//! Canaries on Kubernetes: an emulated cluster the real `kube` client
//! talks to, and a real Prometheus scraping an exporter whose error ratio
//! the test sets. The canary runs as a second Deployment beside the
//! untouched stable one; a good metric lets it be promoted, a bad one
//! aborts it — the canary deleted, the stable version as it was, the
//! release recorded as aborted with its measurements and the environment
//! pinned (`on_abort: rollback`). A rollout across three clusters goes
//! ring by ring, each ring analysed before the next; aborted in its
//! second ring, it leaves every cluster on the stable version.

use std::time::Duration;

use kube_emulator::{Emulator, Options, RolloutMode};
use serde_json::{Value, json};

use crate::canary::{deploy_says, ended, production_environment, production_release};
use crate::support::TestApp;
use crate::support::git::WorkRepo;
use crate::support::prometheus::{Exporter, Prometheus};

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
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

const PIPELINE: &str = "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{ commit }}\"
steps:
  - { name: build, run: \"true\" }
  - deploy
";

const NAMESPACE: &str = "shop-production";

struct Setup {
    dev: Emulator,
    repo: WorkRepo,
    /// Kept for as long as Gantry reads it (dropped, its folder goes).
    _pipeline: WorkRepo,
    app: TestApp,
}

async fn setup(prometheus: &Prometheus) -> Setup {
    setup_leased(prometheus, None).await
}

/// [`setup`] with the runner's lease set to `lease`.
async fn setup_leased(prometheus: &Prometheus, lease: Option<Duration>) -> Setup {
    let dev = cluster().await;
    let repo = WorkRepo::new();
    repo.write("README", "shop\n");
    repo.commit("first");
    let pipeline = WorkRepo::new();
    pipeline.write(
        "apps/shop/app.yaml",
        &format!(
            "apiVersion: gantry.dev/v1
source: {}
stack:
  - env: production
    branch: master
    target: dev
    strategy:
      canary:
        steps:
          - weight: 25
          - pause: {{}}
          - analysis:
              prometheus:
                url: {}
                query: 'max(canary_error_ratio{{app=\"{{{{ app }}}}\"}})'
                threshold: 0.05
              interval: 1s
              count: 2
          - weight: 50
        on_abort: rollback
",
            repo.path(),
            prometheus.url
        ),
    );
    pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    pipeline.write("apps/shop/deploy/app.yaml", MANIFESTS);
    pipeline.commit("shop rolls out as a canary on dev");
    let pipeline_path = pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline_path);
        config.poll_interval = Duration::from_secs(3600);
        if let Some(lease) = lease {
            config.runner_lease = lease;
        }
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
    Setup {
        dev,
        repo,
        _pipeline: pipeline,
        app,
    }
}

/// An emulated cluster whose workloads become ready soon after a change.
async fn cluster() -> Emulator {
    Emulator::start(Options {
        rollout: RolloutMode::After(Duration::from_millis(100)),
        ..Options::default()
    })
    .await
    .expect("an emulated cluster")
}

async fn scan(app: &TestApp) {
    gantry::jobs::scan::scan(&app.state, "test")
        .await
        .expect("scan");
}

fn deployment(dev: &Emulator, name: &str) -> Option<Value> {
    dev.store().object("apps", "deployments", NAMESPACE, name)
}

fn image(dev: &Emulator, name: &str) -> String {
    deployment(dev, name).expect(name)["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The run of `sha` at its `pause: {}`, with the canary beside stable:
/// checks what runs, then promotes it past the pause.
async fn at_the_gate(setup: &Setup, sha: &str, stable_sha: &str) -> i64 {
    let Setup { dev, app, .. } = setup;
    let id = deploy_says(app, sha, "paused until an admin promotes").await;
    let canary = deployment(dev, "web-canary").expect("the canary Deployment");
    assert_eq!(canary["spec"]["replicas"], 1, "{canary}");
    assert_eq!(
        canary["spec"]["template"]["metadata"]["labels"],
        json!({ "app": "web", "gantry.dev/track": "canary" }),
        "the Service's selector (app: web) matches the canary's pods"
    );
    assert_eq!(
        image(dev, "web-canary"),
        format!("registry.example.com/shop:{sha}")
    );
    // The stable Deployment is untouched while the canary runs.
    assert_eq!(
        image(dev, "web"),
        format!("registry.example.com/shop:{stable_sha}")
    );
    assert_eq!(deployment(dev, "web").unwrap()["spec"]["replicas"], 3);
    let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
    assert_eq!(detail["rollout"]["weight"], 25, "{detail}");
    let promoted = app
        .post_json(
            &format!("/api/v1/runs/{id}/rollout"),
            json!({ "action": "promote" }),
        )
        .await;
    assert_eq!(promoted.status, 202, "{}", promoted.text());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prometheus_analysed_canary_completes_on_a_good_metric_and_aborts_on_a_bad_one() {
    let exporter = Exporter::start(0.0).await;
    let prometheus = Prometheus::start(&exporter).await;
    prometheus.until_it_reads(0.0).await;
    let mut setup = setup(&prometheus).await;
    let first = setup.repo.head("master");
    scan(&setup.app).await;
    let run = ended(&setup.app, &first).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert!(
        deployment(&setup.dev, "web-canary").is_none(),
        "the first version has nothing to be a canary beside"
    );

    // A good metric: the canary walks every step and is promoted.
    setup.repo.write("feature", "good\n");
    let good = setup.repo.commit("a good change");
    scan(&setup.app).await;
    at_the_gate(&setup, &good, &first).await;
    let run = ended(&setup.app, &good).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert_eq!(run["rollout"]["phase"], "promoted", "{run}");
    let checks = run["rollout"]["checks"].to_string();
    assert!(
        checks.contains("prometheus 0 (threshold 0.05) → success"),
        "{checks}"
    );
    assert_eq!(
        image(&setup.dev, "web"),
        format!("registry.example.com/shop:{good}")
    );
    assert!(
        deployment(&setup.dev, "web-canary").is_none(),
        "the canary goes once stable runs the new version"
    );

    // A bad metric: the analysis fails and the canary is aborted.
    exporter.set(0.5);
    prometheus.until_it_reads(0.5).await;
    setup.repo.write("feature", "bad\n");
    let bad = setup.repo.commit("a bad change");
    scan(&setup.app).await;
    at_the_gate(&setup, &bad, &good).await;
    let run = ended(&setup.app, &bad).await;
    assert_eq!(run["run"]["state"], "failed", "{run}");
    assert_eq!(run["rollout"]["phase"], "aborted", "{run}");
    assert!(
        deployment(&setup.dev, "web-canary").is_none(),
        "an abort removes the canary"
    );
    assert_eq!(
        image(&setup.dev, "web"),
        format!("registry.example.com/shop:{good}"),
        "stable serves as it did"
    );
    let aborted = production_release(&setup.app, bad.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let reason = aborted["reason"].as_str().unwrap();
    assert!(reason.contains("prometheus 0.5 > 0.05"), "{reason}");
    let production = production_environment(&setup.app).await;
    assert_eq!(production["pin"]["version"], good.as_str(), "{production}");
    assert_eq!(production["commit_sha"], good.as_str(), "{production}");
    setup.app.stop().await;
}

// A replica that lost its run (another took it over) stops walking the
// canary and touches no cluster: the canary is the attempt that took the
// run over's to remove or walk on, not this one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_lost_its_run_leaves_the_canary_to_the_attempt_that_took_it_over() {
    let exporter = Exporter::start(0.0).await;
    let prometheus = Prometheus::start(&exporter).await;
    let mut setup = setup_leased(&prometheus, Some(Duration::from_secs(3))).await;
    let first = setup.repo.head("master");
    scan(&setup.app).await;
    let run = ended(&setup.app, &first).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    setup.repo.write("feature", "taken over\n");
    let change = setup.repo.commit("a change whose run is taken over");
    scan(&setup.app).await;
    let id = deploy_says(&setup.app, &change, "paused until an admin promotes").await;
    assert!(deployment(&setup.dev, "web-canary").is_some());
    // Replica B took the run over, as attempt 2.
    let pool = setup.app.db().pool().clone();
    sqlx::query("UPDATE runs SET runner_id = 'replica-b-1', attempt = attempt + 1 WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("take over");
    // This replica's attempt ends once it sees its lease gone.
    let workspace = setup
        .app
        .data_path()
        .join("work")
        .join(format!("run-{id}-1"));
    crate::support::flow::wait_for(
        "the lost attempt to end",
        crate::support::flow::MINUTE,
        || async { (!workspace.exists()).then_some(()) },
    )
    .await;
    assert!(
        deployment(&setup.dev, "web-canary").is_some(),
        "the canary is left to the attempt that took the run over"
    );
    assert_eq!(
        image(&setup.dev, "web"),
        format!("registry.example.com/shop:{first}"),
        "stable untouched"
    );
    setup.app.stop().await;
}

/// Production on three clusters, rolled out ring by ring: each ring serves
/// for 30 minutes (Gantry's clock) and passes a Prometheus analysis before
/// the next.
/// Gantry, the app's repo, the pipeline repo (kept for as long as Gantry
/// reads it) and the three clusters.
async fn three_rings(prometheus: &Prometheus) -> (TestApp, WorkRepo, WorkRepo, Vec<Emulator>) {
    let mut clusters = Vec::new();
    for _ in 0..3 {
        clusters.push(cluster().await);
    }
    let repo = WorkRepo::new();
    repo.write("README", "shop\n");
    repo.commit("first");
    let pipeline = WorkRepo::new();
    pipeline.write(
        "apps/shop/app.yaml",
        &format!(
            "apiVersion: gantry.dev/v1
source: {}
stack:
  - env: production
    branch: master
    targets: [eu-1, eu-2, us-1]
    rollout:
      rings: [[eu-1], [eu-2], [us-1]]
      pause_between: 30m
      analysis:
        prometheus:
          url: {}
          query: 'max(canary_error_ratio{{app=\"{{{{ app }}}}\"}})'
          threshold: 0.05
        interval: 1s
        count: 1
",
            repo.path(),
            prometheus.url
        ),
    );
    pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    pipeline.write("apps/shop/deploy/app.yaml", MANIFESTS);
    pipeline.commit("shop rolls out in rings");
    let pipeline_path = pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline_path);
        config.poll_interval = Duration::from_secs(3600);
    })
    .await;
    for (name, cluster) in ["eu-1", "eu-2", "us-1"].iter().zip(&clusters) {
        let registered = app
            .post_json(
                "/api/v1/clusters",
                json!({ "name": name, "kubeconfig": cluster.kubeconfig(&format!("{name}-context")) }),
            )
            .await;
        assert_eq!(registered.status, 201, "{}", registered.text());
    }
    app.start_flow().await;
    (app, repo, pipeline, clusters)
}

/// Moves Gantry's clock past the pause of the ring `soaking` says (by
/// index; any ring when `None`) — only while that ring soaks, so no other
/// ring's pause is cut short — until `done` says the run got where it is
/// awaited.
async fn moving_the_clock(
    app: &TestApp,
    sha: &str,
    soaking: Option<usize>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    crate::support::flow::wait_for(
        "the rollout to get on",
        2 * crate::support::flow::MINUTE,
        || async {
            let runs = app.get("/api/v1/runs?environment=production").await.json();
            let id = runs.as_array()?.iter().find(|r| r["commit_sha"] == sha)?["id"].as_i64()?;
            let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
            if done(&detail) {
                return Some(detail);
            }
            let rings = detail["rollout"]["rings"].as_array()?;
            let soaks = |ring: &Value| ring["state"] == "soaking";
            if match soaking {
                Some(n) => rings.get(n).is_some_and(soaks),
                None => rings.iter().any(soaks),
            } {
                app.state.clock.advance(Duration::from_secs(31 * 60));
            }
            None
        },
    )
    .await
}

fn ring_state(detail: &Value, n: usize) -> &str {
    detail["rollout"]["rings"][n]["state"]
        .as_str()
        .unwrap_or("")
}

fn ended_run(detail: &Value) -> bool {
    ["succeeded", "failed"].contains(&detail["run"]["state"].as_str().unwrap_or(""))
}

fn web_image(cluster: &Emulator) -> String {
    cluster
        .store()
        .object("apps", "deployments", NAMESPACE, "web")
        .expect("web")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_ring_rollout_aborted_in_its_second_ring_leaves_every_cluster_on_stable() {
    let exporter = Exporter::start(0.0).await;
    let prometheus = Prometheus::start(&exporter).await;
    prometheus.until_it_reads(0.0).await;
    let (mut app, repo, _pipeline, clusters) = three_rings(&prometheus).await;
    let stable = repo.head("master");
    // A canary a crash left behind on the first cluster, taking requests
    // through the app's Service: whatever deploys next removes it.
    let leftover = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web-canary", "namespace": NAMESPACE,
                      "labels": { "gantry.dev/track": "canary", "gantry.dev/app": "shop", "gantry.dev/env": "production" } },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web", "gantry.dev/track": "canary" } },
                  "template": { "metadata": { "labels": { "app": "web", "gantry.dev/track": "canary" } },
                                "spec": { "containers": [{ "name": "web", "image": "registry.example.com/shop:aborted" }] } } } });
    assert!(
        clusters[0]
            .store()
            .put_if("apps", "deployments", leftover, None)
    );
    scan(&app).await;
    moving_the_clock(&app, &stable, None, ended_run).await;
    let run = ended(&app, &stable).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    let stable_image = format!("registry.example.com/shop:{stable}");
    for cluster in &clusters {
        assert_eq!(web_image(cluster), stable_image);
    }
    assert!(
        clusters[0]
            .store()
            .object("apps", "deployments", NAMESPACE, "web-canary")
            .is_none(),
        "the leftover canary is gone"
    );

    repo.write("feature", "bad\n");
    let bad = repo.commit("a change that goes bad in the second ring");
    scan(&app).await;
    // Ring 1 serves it and passes its analysis; ring 2 takes it and soaks
    // (its pause is not moved past until the metric went bad).
    moving_the_clock(&app, &bad, Some(0), |run| ring_state(run, 1) == "soaking").await;
    let new_image = format!("registry.example.com/shop:{bad}");
    assert_eq!(web_image(&clusters[0]), new_image, "ring 1 took it");
    assert_eq!(web_image(&clusters[1]), new_image, "ring 2 took it");
    assert_eq!(web_image(&clusters[2]), stable_image, "ring 3 not yet");
    // Ring 2's analysis finds the error ratio over its threshold.
    exporter.set(0.5);
    prometheus.until_it_reads(0.5).await;
    moving_the_clock(&app, &bad, Some(1), ended_run).await;
    let run = ended(&app, &bad).await;
    assert_eq!(run["run"]["state"], "failed", "{run}");
    assert_eq!(run["rollout"]["phase"], "aborted", "{run}");
    let states: Vec<&str> = run["rollout"]["rings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["returned to stable", "aborted", "not reached"],
        "{run}"
    );
    assert!(
        run["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains("ring 2 of 3: analysis failed"),
        "{run}"
    );
    for (n, cluster) in clusters.iter().enumerate() {
        assert_eq!(
            web_image(cluster),
            stable_image,
            "cluster {n} is back on stable"
        );
    }
    let production = production_environment(&app).await;
    assert_eq!(production["commit_sha"], stable.as_str(), "{production}");
    let aborted = production_release(&app, bad.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    app.stop().await;
}
