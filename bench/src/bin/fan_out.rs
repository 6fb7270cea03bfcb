//! Fan-out: one 10-object release applied to 1, 5 and 10 emulated clusters
//! at once, each cluster answering with 50 ms of injected latency, all in
//! this process. Reports the 10-cluster / 1-cluster time ratio (goal ≤ 1.5)
//! and the apply time per object; and, when `kubectl` is installed, the same
//! manifests applied by `kubectl apply --server-side` to one cluster.
//!
//! cargo run --release -p bench --bin fan_out

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout, clippy::expect_used)]

use std::time::{Duration, Instant};

use bench::percentile;
use futures_util::future::join_all;
use std::sync::Arc;

use gantry::clusters::Served;
use gantry::delivery::deploy::cluster::{ClusterDeploy, Run, deploy};
use gantry::gitops::guardrails::Guardrails;
use gantry::gitops::health_rules::RuleSet;
use kube_emulator::Emulator;
use serde_json::{Value, json};

const LATENCY: Duration = Duration::from_millis(50);
const ROUNDS: usize = 5;

/// Ten objects: a Deployment, a Service, and eight ConfigMaps.
fn release(round: usize) -> Vec<Value> {
    let mut objects = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"round": round.to_string()}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": format!("registry/web:{round}")}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    ];
    for i in 0..8 {
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("config-{i}")}, "data": {"round": round.to_string()}}));
    }
    objects
}

/// An emulated cluster, a client of it, and what Gantry learnt it serves.
type Cluster = (Emulator, kube::Client, Arc<Served>);

async fn clusters(count: usize) -> Vec<Cluster> {
    let mut out = Vec::new();
    for _ in 0..count {
        let (emulator, client) = bench::emulated_cluster(LATENCY)
            .await
            .expect("emulated cluster");
        out.push((emulator, client, Arc::default()));
    }
    out
}

/// Applies one round to every cluster concurrently; the wall time.
async fn fan_out(clusters: &[Cluster], round: usize) -> Duration {
    let objects = release(round);
    let guardrails = Guardrails::default();
    let rules = RuleSet::default();
    let started = Instant::now();
    let outcomes = join_all(clusters.iter().enumerate().map(|(i, (_, client, served))| {
        let (objects, guardrails, rules) = (&objects, &guardrails, &rules);
        async move {
            let name = format!("cluster-{i}");
            deploy(
                client,
                served.clone(),
                &ClusterDeploy {
                    run: Run::Deploy,
                    guardrails,
                    rules,
                    cluster: &name,
                    namespace: "bench",
                    app: "bench",
                    env: "bench",
                    objects,
                    previous: &[],
                    rollout_timeout: Duration::from_secs(60),
                    preview: false,
                },
            )
            .await
        }
    }))
    .await;
    for outcome in outcomes {
        outcome.expect("deploy");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    println!(
        "fan-out: one 10-object release, {} ms injected latency per API request, {ROUNDS} rounds each",
        LATENCY.as_millis()
    );
    println!(
        "| clusters | p50 (ms) | sequential round trips (p50 / latency) | API requests per cluster and deploy |"
    );
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for count in [1, 5, 10] {
        let clusters = clusters(count).await;
        fan_out(&clusters, 0).await; // warm-up: namespace, discovery, connections
        let before: u64 = clusters.iter().map(|(e, ..)| e.store().requests()).sum();
        let mut times = Vec::new();
        for round in 1..=ROUNDS {
            times.push(fan_out(&clusters, round).await.as_secs_f64() * 1000.0);
        }
        let after: u64 = clusters.iter().map(|(e, ..)| e.store().requests()).sum();
        let requests = (after - before) as f64 / (ROUNDS * count) as f64;
        let p50 = percentile(&times, 50.0);
        medians.push(p50);
        println!(
            "| {count} | {p50:.0} | {:.1} | {requests:.1} |",
            p50 / LATENCY.as_millis() as f64
        );
    }
    println!(
        "\n10-cluster / 1-cluster ratio: {:.2} (goal ≤ 1.5)",
        medians[2] / medians[0]
    );
    kubectl_comparison(medians[0]).await;
}

/// The same release with `kubectl apply --server-side`, one cluster.
async fn kubectl_comparison(gantry_one: f64) {
    let Some(kubectl) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    }) else {
        println!("kubectl is not installed: no comparison");
        return;
    };
    let (emulator, ..) = clusters(1).await.remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("config");
    std::fs::write(&kubeconfig, emulator.kubeconfig("bench")).expect("kubeconfig");
    let apply = |round: usize| {
        let manifest = dir.path().join(format!("release-{round}.yaml"));
        let mut objects =
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})];
        objects.extend(release(round).into_iter().map(|mut o| {
            o["metadata"]["namespace"] = json!("bench");
            o
        }));
        let text: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
        std::fs::write(&manifest, text.join("\n---\n")).expect("manifest");
        let (kubectl, kubeconfig) = (kubectl.clone(), kubeconfig.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let output = std::process::Command::new(kubectl)
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .args(["apply", "--server-side", "--force-conflicts", "-f"])
                    .arg(manifest)
                    .output()
                    .expect("kubectl");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                started.elapsed().as_secs_f64() * 1000.0
            })
            .await
            .expect("join")
        }
    };
    apply(0).await;
    let mut times = Vec::new();
    for round in 1..=ROUNDS {
        times.push(apply(round).await);
    }
    let kubectl_p50 = percentile(&times, 50.0);
    println!(
        "kubectl apply --server-side, 1 cluster: p50 {kubectl_p50:.0} ms; Gantry (apply + rollout wait) / kubectl (apply only) = {:.2}",
        gantry_one / kubectl_p50
    );
}
