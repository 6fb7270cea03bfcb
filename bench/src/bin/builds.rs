//! Builds as pods against builds as local sandboxes, in one run: 20 runs at
//! once on the Kubernetes executor (an emulated build cluster whose kubelet
//! runs each pod's containers as sandboxed local processes, the helper
//! image being this `gantry`), then 20 on the local executor. Measured:
//! queue → first log line (the run's creation to its step's first line in
//! the API), and Gantry's CPU and memory per running build while all 20 run.
//!
//! cargo run --release -p bench --bin builds -- <path to gantry>

// A benchmark's job is to print its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bench::{Gantry, commit, git, init_work, percentile};
use serde_json::{Value, json};

const RUNS: usize = 20;
/// How long each step sleeps after its first line: the window in which
/// all 20 run and Gantry's cost is sampled.
const STEP_SECONDS: u64 = 10;

struct Figures {
    first_line_ms: Vec<f64>,
    cpu_per_build: f64,
    rss_per_build_kib: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let gantry = std::env::args()
        .nth(1)
        .context("usage: builds <gantry binary>")?;
    let pods = measure(&gantry, true).await?;
    let local = measure(&gantry, false).await?;
    println!(
        "{RUNS} concurrent runs, one step (`echo`, then sleep {STEP_SECONDS} s), Kubernetes executor (emulated build cluster, one pod per step) against the local executor (bubblewrap)"
    );
    println!("| figure | Kubernetes executor | local executor |");
    println!("|---|---|---|");
    let row = |name: &str, a: String, b: String| println!("| {name} | {a} | {b} |");
    for p in [50.0, 95.0] {
        row(
            &format!("queue → first log line, p{p:.0} (ms)"),
            format!("{:.0}", percentile(&pods.first_line_ms, p)),
            format!("{:.0}", percentile(&local.first_line_ms, p)),
        );
    }
    row(
        "Gantry's CPU per running build (% of a core)",
        format!("{:.2}", pods.cpu_per_build * 100.0),
        format!("{:.2}", local.cpu_per_build * 100.0),
    );
    row(
        "Gantry's memory per running build (RSS, KiB)",
        format!("{:.0}", pods.rss_per_build_kib),
        format!("{:.0}", local.rss_per_build_kib),
    );
    Ok(())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or_default()
}

/// Gantry's CPU time (user + system, seconds) and RSS (KiB), from /proc.
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After `pid (comm)`: state is field 0, utime 11, stime 12 (in ticks).
    let ticks = |at: usize| {
        fields
            .get(at)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(((ticks(11) + ticks(12)) / hz, rss))
}

async fn measure(binary: &str, on_cluster: bool) -> anyhow::Result<Figures> {
    let tmp = tempfile::tempdir()?;
    let work = tmp.path().join("shop");
    init_work(&work)?;
    std::fs::write(work.join("README"), "shop\n")?;
    commit(&work, "first")?;
    let pipeline = tmp.path().join("pipeline");
    init_work(&pipeline)?;
    std::fs::create_dir_all(pipeline.join("apps/shop"))?;
    std::fs::write(
        pipeline.join("gantry.yaml"),
        "apiVersion: gantry.dev/v1\nbuilds:\n  clusters: [build/builds]\n",
    )?;
    std::fs::write(
        pipeline.join("apps/shop/app.yaml"),
        format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: ci\n    branches: \"b*\"\n    target: local\n",
            work.display()
        ),
    )?;
    let executor = if on_cluster {
        "executor: { kubernetes: { cluster: build, namespace: builds, image: test/shell } }\n"
    } else {
        ""
    };
    std::fs::write(
        pipeline.join("apps/shop/pipeline.yaml"),
        format!(
            "apiVersion: gantry.dev/v1\n{executor}steps:\n  - {{ name: build, run: \"echo first-line; sleep {STEP_SECONDS}\" }}\n"
        ),
    )?;
    commit(&pipeline, "shop")?;

    let emulator = kube_emulator::Emulator::start(kube_emulator::Options {
        kubelet: Some(kube_emulator::Kubelet {
            images: [
                ("gantry-helper:bench".to_string(), vec![binary.to_string()]),
                ("test/shell".to_string(), vec!["/bin/sh".to_string()]),
            ]
            .into(),
        }),
        ..kube_emulator::Options::default()
    })
    .await?;
    reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces", emulator.url()))
        .json(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "builds" } }))
        .send()
        .await?
        .error_for_status()?;

    let data = tmp.path().join("data");
    let pipeline_arg = pipeline.display().to_string();
    let gantry = Gantry::start_with_env(
        binary,
        &data,
        &["--pipeline-repo", &pipeline_arg],
        &[
            ("GANTRY_RUNNER_MAX_PARALLEL", "20"),
            ("GANTRY_BUILDS_HELPER_IMAGE", "gantry-helper:bench"),
        ],
    )
    .await?;
    let registered = gantry
        .api(reqwest::Method::POST, "/clusters")
        .json(&json!({ "name": "build", "kubeconfig": emulator.kubeconfig("build") }))
        .send()
        .await?;
    anyhow::ensure!(
        registered.status().is_success(),
        "register: {}",
        registered.text().await?
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, idle_rss) = usage(gantry.pid())?;

    for i in 1..=RUNS {
        git(&work, &["branch", &format!("b{i}")])?;
    }
    // Each run's first line, seen through the API.
    let mut first: std::collections::BTreeMap<i64, f64> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while first.len() < RUNS {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {RUNS} runs printed",
            first.len()
        );
        let runs: Value = gantry
            .api(reqwest::Method::GET, "/runs")
            .send()
            .await?
            .json()
            .await?;
        for run in runs.as_array().into_iter().flatten() {
            let id = run["id"].as_i64().unwrap_or_default();
            if first.contains_key(&id) || run["state"] == "queued" {
                continue;
            }
            let created = run["created_at"].as_f64().unwrap_or_default();
            let detail: Value = gantry
                .api(reqwest::Method::GET, &format!("/runs/{id}"))
                .send()
                .await?
                .json()
                .await?;
            let Some(step) = detail["steps"][0]["id"].as_i64() else {
                continue;
            };
            let log = gantry
                .api(
                    reqwest::Method::GET,
                    &format!("/runs/{id}/steps/{step}/log"),
                )
                .send()
                .await?
                .text()
                .await?;
            if log.contains("first-line") {
                first.insert(id, now_ms() - created);
            }
            anyhow::ensure!(run["state"] != "failed", "run {id} failed: {log}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // All 20 run: Gantry's cost over two seconds of it.
    let (cpu0, _) = usage(gantry.pid())?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu1, rss) = usage(gantry.pid())?;
    let cpu = (cpu1 - cpu0) / started.elapsed().as_secs_f64();
    // And every run ends well.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs: Value = gantry
            .api(reqwest::Method::GET, "/runs")
            .send()
            .await?
            .json()
            .await?;
        let states: Vec<String> = runs
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .collect();
        if states.len() == RUNS && states.iter().all(|s| s == "succeeded") {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline && !states.iter().any(|s| s == "failed"),
            "runs did not all succeed: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if on_cluster {
        anyhow::ensure!(
            emulator.store().objects_of("", "pods").is_empty(),
            "pods were left behind"
        );
    }
    drop(gantry);
    Ok(Figures {
        first_line_ms: first.into_values().collect(),
        cpu_per_build: cpu / RUNS as f64,
        rss_per_build_kib: (rss - idle_rss).max(0.0) / RUNS as f64,
    })
}
