//! A 40-object Helm chart (a Deployment, a Service and 38 ConfigMaps)
//! rendered and applied to one emulated cluster whose every API request
//! takes 50 ms, three ways, in one run: Gantry (`helm template`, then its
//! own server-side apply of each wave at once and a watched rollout), the
//! same rendered manifests applied by `kubectl apply --server-side`, and
//! `helm template | kubectl apply --server-side`. Each round changes a
//! value, so every way applies a real change. Needs `helm` and `kubectl` on
//! the PATH (`./x bench` puts .tools/bin there).
//!
//! cargo run --release -p bench --bin chart_apply

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::percentile;
use gantry::clusters::Served;
use gantry::delivery::deploy::cluster::{ClusterDeploy, Run, deploy};
use gantry::gitops::guardrails::Guardrails;
use gantry::gitops::health_rules::RuleSet;
use gantry::manifests::{self, RenderContext};
use kube_emulator::Emulator;

const LATENCY: Duration = Duration::from_millis(50);
const ROUNDS: usize = 5;
const CONFIG_MAPS: usize = 38;

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The chart: `round` is a value, so each round changes every object.
fn chart(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).expect("chart dir");
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(dir.join("values.yaml"), "round: \"0\"\n").expect("values");
    std::fs::write(
        dir.join("templates/web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: { round: \"{{ .Values.round }}\" }\nspec:\n  replicas: 2\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec:\n      containers:\n        - name: web\n          image: \"registry.example.com/web:{{ .Values.round }}\"\n---\napiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec:\n  selector: { app: web }\n  ports: [{ port: 80 }]\n",
    )
    .expect("web");
    std::fs::write(
        dir.join("templates/config.yaml"),
        format!(
            "{{{{- range $i := until {CONFIG_MAPS} }}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: \"config-{{{{ $i }}}}\" }}\ndata: {{ round: \"{{{{ $.Values.round }}}}\" }}\n{{{{- end }}}}\n"
        ),
    )
    .expect("config");
}

fn context(helm: &Path, round: usize) -> RenderContext {
    RenderContext {
        app: "bench".into(),
        env: "bench".into(),
        namespace: "bench".into(),
        branch: "main".into(),
        commit: format!("{round:040}"),
        image: None,
        url: None,
        variables: Default::default(),
        pipeline_sha: "0".repeat(40),
        stack_entry: "bench".into(),
        values: Some(serde_json::json!({ "round": round.to_string() })),
        helm: helm.to_path_buf(),
        chart: None,
        guardrails: Guardrails::default(),
        capabilities: None,
    }
}

async fn cluster() -> (Emulator, kube::Client) {
    bench::emulated_cluster(LATENCY)
        .await
        .expect("emulated cluster")
}

/// Gantry: render the chart, then deploy it. Milliseconds.
async fn gantry_round(
    client: &kube::Client,
    served: &Arc<Served>,
    chart: &Path,
    helm: &Path,
    round: usize,
) -> f64 {
    let started = Instant::now();
    let rendered =
        manifests::render(chart, "apps/bench/deploy", &context(helm, round)).expect("renders");
    assert_eq!(rendered.objects.len(), CONFIG_MAPS + 2);
    let (guardrails, rules) = (Guardrails::default(), RuleSet::default());
    deploy(
        client,
        served.clone(),
        &ClusterDeploy {
            cluster: "bench",
            namespace: "bench",
            app: "bench",
            env: "bench",
            objects: &rendered.objects,
            previous: &[],
            rollout_timeout: Duration::from_secs(60),
            preview: false,
            run: Run::Deploy,
            guardrails: &guardrails,
            rules: &rules,
        },
    )
    .await
    .expect("deploy");
    started.elapsed().as_secs_f64() * 1000.0
}

/// `helm template` of the chart at `round`, as text.
fn helm_template(helm: &Path, chart: &Path, round: usize) -> Vec<u8> {
    let output = Command::new(helm)
        .args(["template", "bench"])
        .arg(chart)
        .args(["--namespace", "bench", "--set"])
        .arg(format!("round={round}"))
        .output()
        .expect("helm");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `kubectl apply --server-side` of `manifests` (stdin). Milliseconds.
fn kubectl_apply(kubectl: &Path, kubeconfig: &Path, manifests: &[u8]) -> f64 {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-n",
            "bench",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifests)
        .expect("write");
    let output = child.wait_with_output().expect("kubectl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (Some(helm), Some(kubectl)) = (on_path("helm"), on_path("kubectl")) else {
        println!("chart apply: helm and kubectl must be on the PATH; skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let chart_dir = dir.path().join("chart");
    chart(&chart_dir);
    println!(
        "chart apply: a {}-object chart, one cluster, {} ms per API request, {ROUNDS} rounds after a warm-up, p50",
        CONFIG_MAPS + 2,
        LATENCY.as_millis()
    );

    let (gantry_cluster, client) = cluster().await;
    let served = Arc::new(Served::default());
    gantry_round(&client, &served, &chart_dir, &helm, 0).await;
    let before = gantry_cluster.store().requests();
    let mut gantry = Vec::new();
    for round in 1..=ROUNDS {
        gantry.push(gantry_round(&client, &served, &chart_dir, &helm, round).await);
    }
    let requests = (gantry_cluster.store().requests() - before) as f64 / ROUNDS as f64;

    // kubectl on a cluster of its own (the namespace made first).
    let (kubectl_cluster, _) = cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubectl_cluster.kubeconfig("bench")).expect("kubeconfig");
    let namespace = b"apiVersion: v1\nkind: Namespace\nmetadata: { name: bench }\n";
    kubectl_apply(&kubectl, &kubeconfig, namespace);
    let rendered: Vec<Vec<u8>> = (0..=ROUNDS)
        .map(|round| helm_template(&helm, &chart_dir, round))
        .collect();
    let (kubectl_path, config_path) = (kubectl.clone(), kubeconfig.clone());
    let kubectl_times = tokio::task::spawn_blocking(move || {
        kubectl_apply(&kubectl_path, &config_path, &rendered[0]);
        (1..=ROUNDS)
            .map(|round| kubectl_apply(&kubectl_path, &config_path, &rendered[round]))
            .collect::<Vec<f64>>()
    })
    .await
    .expect("kubectl rounds");

    let (helm_path, chart_path) = (helm.clone(), chart_dir.clone());
    let piped = tokio::task::spawn_blocking(move || {
        let round = |n: usize| {
            let started = Instant::now();
            let text = helm_template(&helm_path, &chart_path, n + 100);
            kubectl_apply(&kubectl, &kubeconfig, &text);
            started.elapsed().as_secs_f64() * 1000.0
        };
        round(0);
        (1..=ROUNDS).map(round).collect::<Vec<f64>>()
    })
    .await
    .expect("helm | kubectl rounds");

    let (gantry, kubectl, piped) = (
        percentile(&gantry, 50.0),
        percentile(&kubectl_times, 50.0),
        percentile(&piped, 50.0),
    );
    println!("| way | p50 (ms) | Gantry's time as a share |");
    println!("|---|---|---|");
    println!(
        "| Gantry: helm template, apply (each wave at once), rollout watched | {gantry:.0} | 1.00 |"
    );
    println!(
        "| kubectl apply --server-side of the rendered manifests (no rollout wait) | {kubectl:.0} | {:.2} |",
        gantry / kubectl
    );
    println!(
        "| helm template \\| kubectl apply --server-side (no rollout wait) | {piped:.0} | {:.2} |",
        gantry / piped
    );
    println!("Gantry's API requests per deploy: {requests:.1}");
}
