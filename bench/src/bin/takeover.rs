//! Takeover after a replica dies: two real `gantry serve` replicas on one
//! PostgreSQL database (one secret key, `runner.lease` = 3 s); the one
//! running a step is killed with SIGKILL, and the time until the other has
//! started the resumed run's step is measured — the lease running out, the
//! takeover, the new claim, the checkout. Rounds of fresh replicas.
//!
//! cargo run --release -p bench --bin takeover -- <path to gantry>

// A benchmark's job is to print its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::Context;
use bench::{BenchDatabase, Gantry, commit, init_work, row, wait_until};
use serde_json::Value;

const ROUNDS: usize = 8;
const LEASE: &str = "3s";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: takeover <gantry binary>")?;
    sqlx::any::install_default_drivers();
    let mut takeovers = Vec::new();
    for round in 0..ROUNDS {
        takeovers.push(round_trip(&gantry, round).await?);
    }
    println!(
        "takeover after SIGKILL, two replicas on PostgreSQL, runner.lease = {LEASE}, {ROUNDS} rounds"
    );
    println!("| phase (ms) | p50 | p95 |");
    println!("|---|---|---|");
    println!(
        "{}",
        row(
            "SIGKILL of the running replica → the other has started the resumed step",
            &takeovers
        )
    );
    Ok(())
}

async fn runs(server: &Gantry) -> anyhow::Result<Vec<Value>> {
    let list: Value = server
        .api(reqwest::Method::GET, "/runs")
        .send()
        .await?
        .json()
        .await?;
    let mut out = Vec::new();
    for run in list.as_array().cloned().unwrap_or_default() {
        let detail: Value = server
            .api(reqwest::Method::GET, &format!("/runs/{}", run["id"]))
            .send()
            .await?
            .json()
            .await?;
        out.push(detail);
    }
    Ok(out)
}

/// A run whose first step has started: (trigger, run id).
fn started(runs: &[Value], trigger: &str) -> Option<i64> {
    runs.iter()
        .find(|r| r["trigger"] == trigger && r["steps"][0]["started_at"].is_i64())
        .and_then(|r| r["run"]["id"].as_i64())
}

async fn round_trip(binary: &str, round: usize) -> anyhow::Result<f64> {
    let root = tempfile::tempdir()?;
    // The step's flag is in a folder of its own, shown to the sandbox
    // read-only (as in the crash tests).
    let flag_dir = tempfile::tempdir()?;
    let (work, pipeline, flags) = (
        root.path().join("shop"),
        root.path().join("pipeline"),
        flag_dir.path().to_path_buf(),
    );
    for dir in [&work, &pipeline] {
        std::fs::create_dir_all(dir)?;
    }
    init_work(&work)?;
    std::fs::write(work.join("README"), "shop\n")?;
    commit(&work, "shop")?;
    bench::git(&work, &["checkout", "-q", "-b", "latest"])?;
    let flag = flags.join("hold");
    std::fs::write(&flag, "")?;
    bench::staging_pipeline(
        &pipeline,
        &work,
        &format!(
            "  - {{ name: hold, run: \"while [ -f {} ]; do sleep 0.05; done\" }}\n",
            flag.display()
        ),
    )?;

    let database = BenchDatabase::create(
        "postgres",
        &root.path().join("db"),
        &format!("takeover{round}"),
    )
    .await?;
    let key = root.path().join("secret.key").display().to_string();
    let flags_shown = flags.display().to_string();
    let env = [
        ("GANTRY_SECRET_KEY_FILE", key.as_str()),
        ("GANTRY_RUNNER_LEASE", LEASE),
        ("GANTRY_RUNNER_READ_ONLY_PATHS", flags_shown.as_str()),
    ];
    let pipeline_arg = pipeline.display().to_string();
    let args = [
        "--pipeline-repo",
        pipeline_arg.as_str(),
        "--database-url",
        database.url.as_str(),
    ];
    let first = Gantry::start_with_env(binary, &root.path().join("one"), &args, &env).await?;
    wait_until(
        "the step to start on the first replica",
        Duration::from_secs(60),
        || async { Ok(started(&runs(&first).await?, "push")) },
    )
    .await?;
    let second = Gantry::start_with_env(binary, &root.path().join("two"), &args, &env).await?;
    let killed = Instant::now();
    first.kill();
    let resumed = wait_until(
        "the resumed step to start",
        Duration::from_secs(60),
        || async { Ok(started(&runs(&second).await?, "resume")) },
    )
    .await;
    if let Err(error) = resumed {
        let seen: Vec<String> = runs(&second)
            .await?
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r["trigger"], r["run"]["state"], r["error"], r["steps"]
                )
            })
            .collect();
        anyhow::bail!("{error}; the runs: {seen:?}");
    }
    let took = killed.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_file(&flag)?;
    drop(second);
    database.drop_now().await?;
    Ok(took)
}
