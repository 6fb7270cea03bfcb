//! Rollback time: a real `gantry serve` (the release binary) deploying one
//! app's production to 1 and then 3 emulated clusters; each round promotes
//! a new commit, then times `POST /api/v1/apps/shop/rollback` until the
//! rollback run has rolled out on every target (the run ends only when each
//! cluster reports the rollout done). The pin commit to the (bare)
//! pipeline repo is part of the request, as in production.
//!
//! cargo run --release -p bench --bin rollback -- <path to gantry>

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::{Gantry, commit, git, init_work, row, wait_until};
use kube_emulator::{Emulator, Faults, Options, RolloutMode};
use reqwest::Method;
use serde_json::{Value, json};

const ROUNDS: usize = 8;
/// Every API request to a cluster takes this long, as over a real network.
const LATENCY: Duration = Duration::from_millis(5);
const MINUTE: Duration = Duration::from_secs(60);

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: web, image: \"{{ image }}\" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ port: 80 }] }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings }
data: { commit: \"{{ short_sha }}\" }
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: rollback <gantry binary>")?;
    println!(
        "rollback, request → every target rolled out, {ROUNDS} rounds, {} ms API latency per cluster request",
        LATENCY.as_millis()
    );
    println!("| clusters | p50 (ms) | p95 (ms) |");
    println!("|---|---|---|");
    for clusters in [1, 3] {
        let times = measure(&gantry, clusters).await?;
        println!("{}", row(&clusters.to_string(), &times));
    }
    Ok(())
}

async fn measure(binary: &str, count: usize) -> anyhow::Result<Vec<f64>> {
    let root = tempfile::tempdir()?;
    let (work, pipeline, origin) = (
        root.path().join("shop"),
        root.path().join("pipeline"),
        root.path().join("pipeline.git"),
    );
    init_work(&work)?;
    std::fs::write(work.join("README"), "shop\n")?;
    commit(&work, "first")?;
    let mut emulators = Vec::new();
    for _ in 0..count {
        let emulator = Emulator::start(Options {
            rollout: RolloutMode::After(Duration::ZERO),
            ..Options::default()
        })
        .await
        .context("emulator")?;
        emulator.set_faults(Faults {
            latency: LATENCY,
            fail_next: 0,
            ..Default::default()
        });
        emulators.push(emulator);
    }
    let targets: Vec<String> = (0..count).map(|i| format!("c{i}")).collect();
    write_pipeline(&pipeline, &origin, &work, &targets)?;
    let data = root.path().join("data");
    let origin_arg = origin.display().to_string();
    let server = Gantry::start(binary, &data, &["--pipeline-repo", &origin_arg]).await?;
    for (name, emulator) in targets.iter().zip(&emulators) {
        server
            .api(Method::POST, "/clusters")
            .json(&json!({ "name": name, "kubeconfig": emulator.kubeconfig(name) }))
            .send()
            .await?
            .error_for_status()?;
    }

    let first = git(&work, &["rev-parse", "HEAD"])?;
    let stable = release_of(&server, &first, "stable").await?;
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        std::fs::write(work.join("CHANGES"), format!("{round}\n"))?;
        let sha = commit(&work, &format!("change {round}"))?;
        // After a rollback production is pinned: promote to deploy again.
        server
            .api(Method::POST, "/apps/shop/promote")
            .json(&json!({ "environment": "production" }))
            .send()
            .await?;
        release_of(&server, &sha, "live").await?;
        let started = Instant::now();
        let accepted: Value = server
            .api(Method::POST, "/apps/shop/rollback")
            .json(&json!({ "to": stable, "reason": "benchmark rollback" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let run = accepted["run_id"].as_i64().context("run id")?;
        wait_until("the rollback run", MINUTE, || async {
            let detail: Value = server
                .api(Method::GET, &format!("/runs/{run}"))
                .send()
                .await?
                .json()
                .await?;
            match detail["run"]["state"].as_str() {
                Some("succeeded") => Ok(Some(())),
                Some("failed" | "cancelled") => anyhow::bail!("rollback failed: {detail}"),
                _ => Ok(None),
            }
        })
        .await?;
        // The first round warms up (mirrors, discovery caches).
        if round > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

/// The production release of `version` once it is in `state`; its id.
async fn release_of(server: &Gantry, version: &str, state: &str) -> anyhow::Result<i64> {
    wait_until(&format!("{version} to be {state}"), MINUTE, || async {
        let list: Value = server
            .api(Method::GET, "/releases?app=shop&environment=production")
            .send()
            .await?
            .json()
            .await?;
        Ok(list.as_array().and_then(|list| {
            list.iter()
                .find(|r| r["version"] == version && r["state"] == state)
                .and_then(|r| r["id"].as_i64())
        }))
    })
    .await
}

fn write_pipeline(
    pipeline: &Path,
    origin: &Path,
    work: &Path,
    targets: &[String],
) -> anyhow::Result<()> {
    init_work(pipeline)?;
    let dir = pipeline.join("apps/shop");
    std::fs::create_dir_all(dir.join("deploy"))?;
    std::fs::write(
        dir.join("app.yaml"),
        format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: production\n    branch: master\n    targets: [{}]\n    stable_after: 1s\n",
            work.display(),
            targets.join(", ")
        ),
    )?;
    std::fs::write(
        dir.join("pipeline.yaml"),
        "apiVersion: gantry.dev/v1\nimage: \"registry.example.com/shop:{{ commit }}\"\nsteps:\n  - { name: build, run: \"true\" }\n  - deploy\n",
    )?;
    std::fs::write(dir.join("deploy/app.yaml"), MANIFESTS)?;
    commit(pipeline, "shop")?;
    let origin = origin.display().to_string();
    git(pipeline, &["clone", "-q", "--bare", ".", &origin])?;
    Ok(())
}
