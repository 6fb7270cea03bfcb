//! Builds on Kubernetes: command steps whose executor is a cluster run as
//! pods on an emulated build cluster, whose small kubelet runs each pod's
//! containers as sandboxed local processes (`test/shell` is `/bin/sh`, the
//! helper image is this build's `gantry`). The pods fetch their workspace
//! from Gantry over its real TCP port, send it back, and are gone when
//! the step is; deploys go to another cluster, from Gantry.

use std::time::Duration;

use kube_emulator::{Emulator, Kubelet, Options, RolloutMode};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{finished, wait_for};
use crate::support::git::WorkRepo;

const MINUTE: Duration = Duration::from_secs(60);
const SECRET: &str = "s3cret-build-token";

struct Builds {
    app: TestApp,
    repo: WorkRepo,
    _pipeline: WorkRepo,
    build: Emulator,
    prod: Emulator,
}

/// The build cluster's kubelet: `gantry-helper:test` is this build's
/// `gantry`, `test/shell` is `/bin/sh`.
pub fn kubelet() -> Kubelet {
    Kubelet {
        images: [
            (
                "gantry-helper:test".to_string(),
                vec![env!("CARGO_BIN_EXE_gantry").to_string()],
            ),
            ("test/shell".to_string(), vec!["/bin/sh".to_string()]),
        ]
        .into(),
    }
}

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: built
data:
  commit: \"{{ short_sha }}\"
";

/// Gantry on a real port, a build cluster with a kubelet (namespace
/// `builds`), a target cluster `prod`, and the app `shop` with `pipeline`.
async fn setup(pipeline_yaml: &str) -> Builds {
    setup_with(pipeline_yaml, |_| {}).await
}

/// [`setup`] with more configuration.
async fn setup_with(
    pipeline_yaml: &str,
    configure: impl FnOnce(&mut gantry::config::Config),
) -> Builds {
    let build = Emulator::start(Options {
        kubelet: Some(kubelet()),
        ..Options::default()
    })
    .await
    .expect("build cluster");
    let namespace = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces", build.url()))
        .json(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "builds" } }))
        .send()
        .await
        .expect("namespace");
    assert!(namespace.status().is_success(), "{namespace:?}");
    let prod = Emulator::start(Options {
        rollout: RolloutMode::After(Duration::from_millis(50)),
        ..Options::default()
    })
    .await
    .expect("prod cluster");
    let repo = WorkRepo::new();
    repo.write("README", "shop\n");
    repo.commit("first");
    let pipeline = WorkRepo::new();
    pipeline.write(
        "gantry.yaml",
        "apiVersion: gantry.dev/v1\nbuilds:\n  clusters: [build/builds]\n",
    );
    pipeline.write(
        "apps/shop/app.yaml",
        &format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: production\n    branch: master\n    target: prod\n",
            repo.path()
        ),
    );
    pipeline.write("apps/shop/pipeline.yaml", pipeline_yaml);
    pipeline.write("apps/shop/deploy/app.yaml", MANIFEST);
    pipeline.commit("shop builds on a cluster");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let pipeline_path = pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline_path);
        config.poll_interval = Duration::from_secs(3600);
        let url: url::Url = format!("http://127.0.0.1:{port}/").parse().expect("url");
        config.public_url = url.clone();
        config.builds_callback_url = url;
        config.builds_helper_image = "gantry-helper:test".into();
        configure(config);
    })
    .await;
    app.serve_tcp(listener);
    for (name, cluster) in [("build", &build), ("prod", &prod)] {
        let response = app
            .post_json(
                "/api/v1/clusters",
                json!({ "name": name, "kubeconfig": cluster.kubeconfig(name) }),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
    }
    let secret = axum::http::Request::put("/api/v1/secrets/API_TOKEN")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "value": SECRET }).to_string(),
        ))
        .expect("request");
    assert_eq!(app.request(secret).await.status, 204);
    app.start_flow().await;
    Builds {
        app,
        repo,
        _pipeline: pipeline,
        build,
        prod,
    }
}

async fn step_log(app: &TestApp, run: &Value, name: &str) -> String {
    let step = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {run}"));
    app.get(&format!(
        "/api/v1/runs/{}/steps/{}/log",
        run["run"]["id"], step["id"]
    ))
    .await
    .text()
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

/// What Gantry left on the build cluster: pods and secrets.
fn left_on(cluster: &Emulator) -> Vec<String> {
    ["pods", "secrets"]
        .iter()
        .flat_map(|plural| cluster.store().objects_of("", plural))
        .map(|(key, _)| format!("{}/{}", key.plural, key.name))
        .collect()
}

const PIPELINE: &str = r#"apiVersion: gantry.dev/v1
executor: { kubernetes: { cluster: build, namespace: builds, image: test/shell } }
steps:
  - name: build
    secrets: [API_TOKEN]
    run: |
      echo "building $GANTRY_APP in $(pwd), workspace $GANTRY_WORKSPACE"
      echo "token=$API_TOKEN"
      if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then echo "a service account token"; else echo "no service account token"; fi
      mkdir -p out && echo "artifact-$GANTRY_SHORT_SHA" > out/app.bin
      ls /pipeline
  - name: test
    run: |
      cat out/app.bin
      echo "token in test: [$API_TOKEN]"
      printf '<testsuite name="unit" tests="2" failures="1"><testcase name="adds"/><testcase name="subtracts"><failure message="2-1 is not 3"/></testcase></testsuite>' > report.xml
    reports: [report.xml]
  - deploy
"#;

#[tokio::test]
async fn a_push_builds_on_the_build_cluster_and_deploys_to_the_target() {
    crate::support::bounded(async {
        let mut setup = setup(PIPELINE).await;
        let sha = setup.repo.head("master");
        let run = finished(&setup.app, &sha).await;
        let build_log = step_log(&setup.app, &run, "build").await;
        let test_log = step_log(&setup.app, &run, "test").await;
        assert_eq!(
            run["run"]["state"], "succeeded",
            "{build_log}\n{test_log}\n{run}"
        );
        assert!(
            build_log.contains("runs as pod gantry-shop-"),
            "{build_log}"
        );
        assert!(
            build_log.contains("building shop in /workspace, workspace /workspace"),
            "{build_log}"
        );
        // Its secret, masked; never any other step's.
        assert!(
            build_log.contains("token=") && !build_log.contains(SECRET),
            "{build_log}"
        );
        assert!(test_log.contains("token in test: []"), "{test_log}");
        assert!(
            build_log.contains("no service account token"),
            "{build_log}"
        );
        // What steps may see of the pipeline folder, and nothing else.
        assert!(build_log.contains("pipeline.yaml"), "{build_log}");
        assert!(
            !build_log.contains("app.yaml") && !build_log.contains("deploy"),
            "{build_log}"
        );
        // The workspace went from one pod to the next, through Gantry.
        let short: String = sha.chars().take(7).collect();
        assert!(
            test_log.contains(&format!("artifact-{short}")),
            "{test_log}"
        );
        // The test pod's JUnit report was read once the checkout came back.
        let report = &run["reports"][0];
        assert_eq!(
            (report["passed"].as_i64(), report["failed"].as_i64()),
            (Some(1), Some(1)),
            "{run}"
        );
        // Deployed by Gantry to the target, not from a pod.
        let config_map = setup
            .prod
            .store()
            .object("", "configmaps", "shop-production", "built")
            .or_else(|| {
                setup
                    .prod
                    .store()
                    .object("", "configmaps", "default", "built")
            });
        assert!(config_map.is_some(), "deployed to prod");
        assert!(step(&run, "deploy")["state"] == "succeeded");
        // Nothing left behind on the build cluster.
        wait_for("the build cluster to be clean", MINUTE, || async {
            left_on(&setup.build).is_empty().then_some(())
        })
        .await;
        setup.app.stop().await;
    })
    .await;
}

/// The `build` step of a one-step pipeline on the build cluster.
fn one_step(step: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nexecutor: {{ kubernetes: {{ cluster: build, namespace: builds, image: test/shell }} }}\nsteps:\n{step}"
    )
}

async fn run_id(app: &TestApp, sha: &str) -> i64 {
    wait_for("the run to start", MINUTE, || async {
        let runs = app.get("/api/v1/runs").await.json();
        runs.as_array()?
            .iter()
            .find(|r| r["commit_sha"] == sha)
            .and_then(|r| r["id"].as_i64())
    })
    .await
}

#[tokio::test]
async fn an_out_of_memory_step_says_oomkilled_and_a_missing_image_says_so_at_once() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step(
            "  - name: hog\n    resources: { memory: 64Mi }\n    run: \"echo filling; tail /dev/zero\"\n    timeout: 10m\n",
        ))
        .await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let hog = step(&run, "hog");
        assert_eq!(hog["state"], "failed", "{run}");
        assert_eq!(
            hog["error"],
            "was stopped: it used more than its memory limit (OOMKilled)"
        );
        let log = step_log(&setup.app, &run, "hog").await;
        assert!(log.contains("filling") && log.contains("OOMKilled"), "{log}");
        assert!(left_on(&setup.build).is_empty(), "{:?}", left_on(&setup.build));
        setup.app.stop().await;

        let mut setup = setup_missing_image().await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let error = step(&run, "build")["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.starts_with("image registry.example.com/nope:1 cannot be pulled (ErrImagePull"),
            "{error}"
        );
        assert!(left_on(&setup.build).is_empty(), "{:?}", left_on(&setup.build));
        setup.app.stop().await;
    })
    .await;
}

async fn setup_missing_image() -> Builds {
    setup(&one_step(
        "  - name: build\n    image: registry.example.com/nope:1\n    run: \"echo never\"\n",
    ))
    .await
}

#[tokio::test]
async fn a_log_stream_cut_again_and_again_loses_no_line_and_repeats_none() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step(
            "  - name: talk\n    run: \"for i in $(seq 1 60); do echo line $i; sleep 0.03; done\"\n",
        ))
        .await;
        // Every followed log breaks off 150 ms after it opened.
        setup.build.set_faults(kube_emulator::Faults {
            cut_logs_after: Duration::from_millis(150),
            ..Default::default()
        });
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let log = step_log(&setup.app, &run, "talk").await;
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("line ")).collect();
        let expected: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected, "{log}");
        setup.app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_build_keeps_its_log_leaves_no_pod_and_its_urls_die_with_it() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step(
            "  - name: wait\n    secrets: [API_TOKEN]\n    run: \"echo started; sleep 120\"\n",
        ))
        .await;
        let sha = setup.repo.head("master");
        let id = run_id(&setup.app, &sha).await;
        // The pod, as the cluster has it, with its one-time URLs.
        let pod = wait_for("the build pod", MINUTE, || async {
            setup
                .build
                .store()
                .objects_of("", "pods")
                .into_iter()
                .map(|(_, pod)| pod)
                .find(|pod| pod["status"]["phase"] == "Running")
        })
        .await;
        // The pod's spec holds no URL: whoever may read pods in the
        // namespace learns nothing of them.
        assert!(!pod.to_string().contains("token="), "{pod}");
        // They are in its Secret, with its secret, which the pod owns.
        let secret = setup
            .build
            .store()
            .objects_of("", "secrets")
            .into_iter()
            .map(|(_, secret)| secret)
            .next()
            .expect("the pod's secret");
        let value = |key: &str| {
            use base64::Engine as _;
            let encoded = secret["data"][key].as_str().unwrap_or_default();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap(),
            )
            .unwrap()
        };
        let (fetch_url, upload_url) = (value("fetch-url"), value("upload-url"));
        assert_eq!(value("API_TOKEN"), SECRET);
        // Its secret exists, owned by the pod.
        let secrets = setup.build.store().objects_of("", "secrets");
        assert_eq!(secrets.len(), 1, "{secrets:?}");
        assert_eq!(
            secrets[0].1["metadata"]["ownerReferences"][0]["kind"],
            "Pod"
        );
        let http = reqwest::Client::new();
        // Used already (by the pod's fetch), it does not open again.
        assert_eq!(http.get(&fetch_url).send().await.unwrap().status(), 404);
        wait_for("the step to print", MINUTE, || async {
            let detail = setup.app.get(&format!("/api/v1/runs/{id}")).await.json();
            let log = step_log(&setup.app, &detail, "wait").await;
            log.contains("started").then_some(())
        })
        .await;
        // The upload URL under another run's number is refused.
        let elsewhere = upload_url.replace(&format!("/runs/{id}/"), &format!("/runs/{}/", id + 1));
        assert_eq!(
            http.put(&elsewhere)
                .body("x")
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        let cancel = setup
            .app
            .post_json(&format!("/api/v1/runs/{id}/cancel"), json!({}))
            .await;
        assert_eq!(cancel.status, 202);
        let run = finished(&setup.app, &sha).await;
        assert_eq!(run["run"]["state"], "cancelled", "{run}");
        let log = step_log(&setup.app, &run, "wait").await;
        assert!(log.contains("started"), "the log it had: {log}");
        assert!(log.contains("the step's pod was deleted"), "{log}");
        // Gone when the step was over, its secret with it.
        assert!(
            left_on(&setup.build).is_empty(),
            "{:?}",
            left_on(&setup.build)
        );
        // Its URLs died with the run.
        assert_eq!(
            http.put(&upload_url)
                .body("x")
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        setup.app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn orphaned_build_pods_are_collected_and_another_gantrys_are_left_alone() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step("  - name: build\n    run: \"echo built\"\n")).await;
        let sha = setup.repo.head("master");
        let run = finished(&setup.app, &sha).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let id = run["run"]["id"].as_i64().unwrap();
        // Left by a Gantry that crashed mid-step, and one of another Gantry
        // building in the same namespace.
        let instance = gantry::builds::pod::label_value(&setup.app.state.installation);
        for (name, instance) in [("orphan", instance.as_str()), ("theirs", "another-gantry")] {
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": name, "labels": {
                    "app.kubernetes.io/managed-by": "gantry-builds", "gantry.dev/instance": instance,
                    "gantry.dev/run": id.to_string(), "gantry.dev/attempt": "1" } },
                "spec": { "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                    "containers": [{ "name": "step", "image": "test/shell", "args": ["-c", "sleep 60"] }] },
            });
            let created = reqwest::Client::new()
                .post(format!("{}/api/v1/namespaces/builds/pods", setup.build.url()))
                .json(&pod)
                .send()
                .await
                .unwrap();
            assert!(created.status().is_success());
        }
        let collected = gantry::builds::cleanup::collect(&setup.app.state.builds(), &setup.app.state.db)
            .await
            .expect("collect");
        assert_eq!(collected, 1);
        wait_for("the orphan to go", MINUTE, || async {
            (left_on(&setup.build) == ["pods/theirs"]).then_some(())
        })
        .await;
        setup.app.stop().await;
    })
    .await;
}

// A Gantry in a cluster (`builds.local = refuse`) runs nothing on its own
// machine: a step that asks to run locally is refused, saying why, while
// the server's default executor sends the others to the build cluster.
#[tokio::test]
async fn where_local_work_is_refused_a_local_step_fails_saying_why() {
    crate::support::bounded(async {
        let pipeline = "apiVersion: gantry.dev/v1\nsteps:\n  - { name: remote, run: \"echo on the cluster\", image: test/shell }\n  - { name: here, run: \"echo here\", executor: local }\n";
        let mut setup = setup_with(pipeline, |config| {
            config.builds_local = false;
            config.builds_executor = Some(gantry::config::BuildCluster {
                cluster: "build".into(),
                namespace: "builds".into(),
            });
        })
        .await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        assert_eq!(step(&run, "remote")["state"], "succeeded", "{run}");
        assert!(step_log(&setup.app, &run, "remote").await.contains("on the cluster"));
        let here = step(&run, "here");
        assert_eq!(here["state"], "failed");
        assert!(
            here["error"].as_str().unwrap_or_default().contains("builds.local = refuse"),
            "{here}"
        );
        assert!(!step_log(&setup.app, &run, "here").await.contains("\nhere"));
        setup.app.stop().await;
    })
    .await;
}

// A step's output is the attacker's: a line with no end is read in
// bounded pieces (never whole into Gantry's memory), bytes that are not
// UTF-8 do not stop the log.
#[tokio::test]
async fn a_huge_line_and_bytes_that_are_not_text_are_logged_in_bounded_pieces() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step(
            "  - name: noisy\n    run: \"head -c 300000 /dev/zero | tr '\\\\0' x; echo; printf '\\\\377\\\\376 not text\\\\n'; echo after\"\n",
        ))
        .await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let log = step_log(&setup.app, &run, "noisy").await;
        let xs: usize = log
            .lines()
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b == b'x'))
            .map(str::len)
            .sum();
        assert_eq!(xs, 300_000, "every byte, in pieces");
        assert!(log.lines().all(|l| l.len() <= 64 * 1024), "bounded lines");
        assert!(log.contains("not text") && log.contains("after"), "{}", &log[log.len().saturating_sub(200)..]);
        setup.app.stop().await;
    })
    .await;
}

/// The name of the build pod whose step container runs.
async fn running_pod(cluster: &Emulator) -> String {
    wait_for("the step's container to run", MINUTE, || async {
        cluster
            .store()
            .objects_of("", "pods")
            .into_iter()
            .find(|(_, pod)| {
                gantry::builds::verdict::of(Some(pod)) == gantry::builds::verdict::Verdict::Running
            })
            .map(|(key, _)| key.name)
    })
    .await
}

// A node under pressure evicts the pod: the step fails saying so, with
// the node's message, and the pod goes.
#[tokio::test]
async fn an_evicted_pod_fails_its_step_with_the_nodes_reason_and_is_gone() {
    crate::support::bounded(async {
        let mut setup = setup(&one_step(
            "  - name: build\n    run: \"echo started; sleep 60\"\n",
        ))
        .await;
        let pod = running_pod(&setup.build).await;
        let why =
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi.";
        setup.build.store().evict("builds", &pod, why);
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let build = step(&run, "build");
        let log = step_log(&setup.app, &run, "build").await;
        assert_eq!(build["state"], "failed", "{run}\n{log}");
        assert_eq!(
            build["error"],
            format!("its pod was evicted: {why}"),
            "{run}\n{log}"
        );
        assert!(log.contains("started"), "{log}");
        wait_for("the evicted pod to go", MINUTE, || async {
            left_on(&setup.build).is_empty().then_some(())
        })
        .await;
        setup.app.stop().await;
    })
    .await;
}

// A build cluster that stops answering mid-step fails the step once
// `builds.unreachable_after` has passed, saying which cluster; the pod it
// could not delete is collected once the cluster answers again.
#[tokio::test]
async fn a_build_cluster_that_stops_answering_fails_the_step_and_its_pod_is_collected_later() {
    crate::support::bounded(async {
        let mut setup = setup_with(
            &one_step("  - name: build\n    run: \"echo started; sleep 60\"\n"),
            |config| config.builds_unreachable_after = Duration::from_secs(2),
        )
        .await;
        let pod = running_pod(&setup.build).await;
        let id = run_id(&setup.app, &setup.repo.head("master")).await;
        wait_for("the step's first line", MINUTE, || async {
            let run = setup.app.get(&format!("/api/v1/runs/{id}")).await.json();
            step_log(&setup.app, &run, "build")
                .await
                .contains("started")
                .then_some(())
        })
        .await;
        setup.build.store().set_faults(kube_emulator::Faults {
            fail_next: u32::MAX,
            ..kube_emulator::Faults::default()
        });
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let build = step(&run, "build");
        let log = step_log(&setup.app, &run, "build").await;
        assert_eq!(build["state"], "failed", "{run}\n{log}");
        let error = build["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("the build cluster build did not answer for "),
            "{run}\n{log}"
        );
        assert!(log.contains("started"), "{log}");
        assert!(log.contains("the clean-up loop will collect it"), "{log}");
        assert_eq!(
            left_on(&setup.build),
            [format!("pods/{pod}"), format!("secrets/{pod}-step")]
        );
        setup
            .build
            .store()
            .set_faults(kube_emulator::Faults::default());
        let collected =
            gantry::builds::cleanup::collect(&setup.app.state.builds(), &setup.app.state.db)
                .await
                .expect("collect");
        assert_eq!(collected, 1);
        wait_for("the left pod to go", MINUTE, || async {
            left_on(&setup.build).is_empty().then_some(())
        })
        .await;
        setup.app.stop().await;
    })
    .await;
}

// A step's `cache:` comes back in the app's next run, on a build pod as
// on the local executor, and each says so in its log; the checkout's own
// folder wins over a cached one.
#[tokio::test]
async fn a_dependency_cache_comes_back_in_the_apps_next_run_on_a_pod_and_locally() {
    crate::support::bounded(async {
        let script = |dir: &str| {
            format!(
                "if [ -f {dir}/fetched ]; then echo \"warm: $(cat {dir}/fetched)\"; else echo cold; mkdir -p {dir}; echo \"$GANTRY_SHORT_SHA\" > {dir}/fetched; fi"
            )
        };
        let pipeline = format!(
            "apiVersion: gantry.dev/v1\nexecutor: {{ kubernetes: {{ cluster: build, namespace: builds, image: test/shell }} }}\nsteps:\n  - name: pod\n    cache: [deps]\n    run: '{}'\n  - name: here\n    executor: local\n    cache: [.local/deps]\n    run: '{}'\n",
            script("deps"),
            script(".local/deps")
        );
        let mut setup = setup(&pipeline).await;
        let first = setup.repo.head("master");
        let run = finished(&setup.app, &first).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        for name in ["pod", "here"] {
            let log = step_log(&setup.app, &run, name).await;
            assert!(log.contains("[gantry] cache: none yet for"), "{log}");
            assert!(log.lines().any(|l| l == "cold"), "{log}");
            assert!(log.contains("kept for branch master"), "{log}");
        }
        setup.repo.write("README", "shop, again\n");
        let second = setup.repo.commit("again");
        crate::support::flow::scan(&setup.app).await;
        let run = finished(&setup.app, &second).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let short = &first[..7];
        for name in ["pod", "here"] {
            let log = step_log(&setup.app, &run, name).await;
            assert!(log.contains("restored from branch master"), "{log}");
            assert!(
                log.lines().any(|l| l == format!("warm: {short}")),
                "{name}: {log}"
            );
        }
        setup.app.stop().await;
    })
    .await;
}

// A build pod that prints without end is capped as a local step is: the
// log keeps to `runner.log_limit`, says how much more there was, and the
// step's own ending still reads.
#[tokio::test]
async fn a_pod_printing_megabytes_is_capped_as_a_local_step_is() {
    crate::support::bounded(async {
        let mut setup = setup_with(
            &one_step(
                "  - name: noisy\n    run: \"head -c 6000000 /dev/zero | tr '\\\\0' x | fold -w 1000; echo done\"\n",
            ),
            |config| config.runner_log_limit_bytes = 256 * 1024,
        )
        .await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let noisy = step(&run, "noisy");
        assert_eq!(noisy["state"], "succeeded", "{run}");
        assert_eq!(noisy["log_truncated"], true, "{run}");
        assert!(noisy["log_bytes"].as_i64().unwrap_or_default() >= 6_000_000, "{run}");
        let log = step_log(&setup.app, &run, "noisy").await;
        assert!(log.len() < 300 * 1024, "{} bytes stored", log.len());
        assert!(log.contains("[gantry] log truncated: "), "{}", &log[log.len().saturating_sub(300)..]);
        setup.app.stop().await;
    })
    .await;
}

// What steps declare through `$GANTRY_OUTPUTS` is kept with the run's
// artifact — from a build pod (sent back with the checkout) and from a
// local step alike, masked as the log is, a later step's value winning —
// and a commit with the same tree is the same artifact.
#[tokio::test]
async fn declared_outputs_are_kept_with_the_runs_artifact_and_a_same_tree_is_one_artifact() {
    crate::support::bounded(async {
        let pipeline = format!(
            "apiVersion: gantry.dev/v1\nexecutor: {{ kubernetes: {{ cluster: build, namespace: builds, image: test/shell }} }}\nsteps:\n  - name: pod\n    secrets: [API_TOKEN]\n    run: |\n      echo \"image=registry.example.com/shop@sha256:{digest}\" >> \"$GANTRY_OUTPUTS\"\n      echo \"leaked=$API_TOKEN\" >> \"$GANTRY_OUTPUTS\"\n      echo \"version=pod\" >> \"$GANTRY_OUTPUTS\"\n  - name: here\n    executor: local\n    run: |\n      printf '{{\"version\": \"1.2.3\"}}' > \"$GANTRY_OUTPUTS\"\n",
            digest = "0".repeat(64)
        );
        let mut setup = setup(&pipeline).await;
        let first = setup.repo.head("master");
        let run = finished(&setup.app, &first).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let artifact = &run["artifact"];
        let tree = std::process::Command::new("git")
            .args(["rev-parse", &format!("{first}^{{tree}}")])
            .current_dir(setup.repo.path())
            .output()
            .expect("git");
        assert_eq!(
            artifact["source_tree"],
            String::from_utf8_lossy(&tree.stdout).trim(),
            "{run}"
        );
        let outputs: Vec<(String, String, String)> = run["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| {
                let s = |k: &str| o[k].as_str().unwrap_or_default().to_string();
                (s("name"), s("value"), s("step"))
            })
            .collect();
        let digest = "0".repeat(64);
        assert_eq!(
            outputs,
            [
                ("image".into(), format!("registry.example.com/shop@sha256:{digest}"), "pod".into()),
                ("leaked".into(), "***".into(), "pod".into()),
                ("version".into(), "1.2.3".into(), "here".into()),
            ],
            "{run}"
        );
        assert!(!outputs.iter().any(|(_, value, _)| value.contains(SECRET)));
        // An empty commit keeps the tree: the same artifact.
        let second = setup.repo.commit("nothing changed");
        crate::support::flow::scan(&setup.app).await;
        let again = finished(&setup.app, &second).await;
        assert_ne!(first, second);
        assert_eq!(again["artifact"]["id"], artifact["id"], "{again}");
        setup.app.stop().await;
    })
    .await;
}

// A step's outputs file is the step's: a link to a host file is refused
// (the step fails saying so, nothing of the file is kept). Its home is
// writable; the folder above it, opened so the home can be reached, is not.
#[tokio::test]
async fn an_outputs_file_that_is_a_link_or_malformed_fails_its_step_saying_why() {
    crate::support::bounded(async {
        let pipeline = "apiVersion: gantry.dev/v1\nsteps:\n  - name: link\n    run: touch $HOME/home-is-writable && ! touch /home/beside-home 2>/dev/null && ln -s /etc/passwd \"$GANTRY_OUTPUTS\"\n";
        let mut setup = setup(pipeline).await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let link = step(&run, "link");
        let log = step_log(&setup.app, &run, "link").await;
        assert_eq!(link["state"], "failed", "{run}");
        assert_eq!(
            link["error"],
            "$GANTRY_OUTPUTS is not a regular file (a link or a folder)",
            "{log}"
        );
        assert_eq!(run["outputs"], json!([]), "{run}");
        setup.app.stop().await;
    })
    .await;
}

// An output whose name holds a secret the step was given would show it
// wherever outputs show: refused, and the error says so without it.
#[tokio::test]
async fn an_output_named_with_a_secret_fails_its_step_without_showing_it() {
    crate::support::bounded(async {
        let pipeline = "apiVersion: gantry.dev/v1\nsteps:\n  - name: leak\n    secrets: [API_TOKEN]\n    run: echo \"$API_TOKEN=1\" >> \"$GANTRY_OUTPUTS\"\n";
        let mut setup = setup(pipeline).await;
        let run = finished(&setup.app, &setup.repo.head("master")).await;
        let leak = step(&run, "leak");
        assert_eq!(leak["state"], "failed", "{run}");
        assert_eq!(
            leak["error"],
            "$GANTRY_OUTPUTS names an output with a secret in its name"
        );
        assert!(!run.to_string().contains(SECRET), "{run}");
        assert_eq!(run["outputs"], json!([]), "{run}");
        setup.app.stop().await;
    })
    .await;
}
