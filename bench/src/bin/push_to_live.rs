//! Push to live on the local target: a real `gantry serve` (the release
//! binary), a bare app repo with a post-receive-style trigger, no-op steps;
//! 20 pushes to `latest`, each timed from `git push` until the proxy serves
//! the new commit, and split into phases from Gantry's own timestamps.
//! Run twice in one go, with the sandbox on and off (`runner.sandbox =
//! "none"`), so the sandbox's cost per step is measured against a baseline
//! of the same run.
//!
//! cargo run --release -p bench --bin push_to_live -- <path to gantry>

// A benchmark's job is to print its figures.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{git, init_work, percentile};

const PUSHES: usize = 20;

const APP_PY: &str = r#"import http.server, os
COMMIT = os.environ.get("GANTRY_COMMIT", "unknown")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = COMMIT.encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), H).serve_forever()
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: push_to_live <gantry binary>")?;
    let sandboxed = push_to_live(&gantry, "bwrap").await?;
    let plain = push_to_live(&gantry, "none").await?;
    println!(
        "push to live, local target, no-op steps, {PUSHES} pushes, trigger endpoint; sandbox on (bwrap) and off (none)"
    );
    println!("| phase (ms) | p50 on | p95 on | p50 off | p95 off |");
    println!("|---|---|---|---|---|");
    let both = |name: &str, on: &[f64], off: &[f64]| {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            percentile(on, 50.0),
            percentile(on, 95.0),
            percentile(off, 50.0),
            percentile(off, 95.0)
        );
    };
    both(
        "total: git push → proxy serves the new commit",
        &sandboxed.totals,
        &plain.totals,
    );
    both(
        "detect → plan (inbox event → run created)",
        &sandboxed.detect_to_plan,
        &plain.detect_to_plan,
    );
    both(
        "queue + checkout (run created → first step starts)",
        &sandboxed.queue_checkout,
        &plain.queue_checkout,
    );
    both(
        "one no-op shell step (start → end)",
        &sandboxed.step,
        &plain.step,
    );
    both(
        "deploy (copy, start process, health check, switch)",
        &sandboxed.deploy,
        &plain.deploy,
    );
    println!(
        "\nsandbox cost per step at p50: {:.1} ms (goal ≤ 20 ms)",
        percentile(&sandboxed.step, 50.0) - percentile(&plain.step, 50.0)
    );
    Ok(())
}

/// The figures of one round of pushes.
#[derive(Default)]
struct Figures {
    totals: Vec<f64>,
    detect_to_plan: Vec<f64>,
    queue_checkout: Vec<f64>,
    step: Vec<f64>,
    deploy: Vec<f64>,
}

/// One round: a fresh Gantry with `runner.sandbox = <sandbox>`.
async fn push_to_live(gantry: &str, sandbox: &str) -> anyhow::Result<Figures> {
    let root = tempfile::tempdir()?;
    let (bare, work, pipeline, data) = (
        root.path().join("shop.git"),
        root.path().join("shop"),
        root.path().join("pipeline"),
        root.path().join("data"),
    );
    for dir in [&work, &pipeline] {
        std::fs::create_dir_all(dir)?;
        init_work(dir)?;
    }
    git(
        root.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "master",
            &bare.display().to_string(),
        ],
    )?;
    std::fs::write(work.join("app.py"), APP_PY)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-qm", "app"])?;
    git(
        &work,
        &["remote", "add", "origin", &bare.display().to_string()],
    )?;
    git(&work, &["push", "-q", "origin", "master"])?;
    git(&work, &["checkout", "-q", "-b", "latest"])?;
    git(&work, &["push", "-q", "origin", "latest"])?;
    std::fs::create_dir_all(pipeline.join("apps/shop"))?;
    std::fs::write(
        pipeline.join("apps/shop/app.yaml"),
        format!(
            "apiVersion: gantry.dev/v1\nsource: {}\nstack:\n  - env: staging\n    branch: latest\n    target: local\n",
            bare.display()
        ),
    )?;
    std::fs::write(
        pipeline.join("apps/shop/pipeline.yaml"),
        "apiVersion: gantry.dev/v1\nsteps:\n  - { name: build, run: \"true\" }\n  - { name: test, run: \"true\" }\n  - deploy\nlocal:\n  run: python3 app.py\n  health: /\n",
    )?;
    git(&pipeline, &["add", "-A"])?;
    git(&pipeline, &["commit", "-qm", "shop"])?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // The hook token is issued by an admin (every API call needs one).
    let created = Command::new(gantry)
        .args(["token", "create", "--name", "bench", "--data-dir"])
        .arg(&data)
        .env("GANTRY_LOG", "warn")
        .output()
        .context("creating a token")?;
    if !created.status.success() {
        bail!("token create: {}", String::from_utf8_lossy(&created.stderr));
    }
    let admin = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let mut server = Command::new(gantry)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &data.display().to_string(),
            "--pipeline-repo",
            &pipeline.display().to_string(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // BENCH_GANTRY_LOG shows more of the server (e.g. the sandbox's
        // `gantry::sandbox=debug` start-up phases) without changing it.
        .env(
            "GANTRY_LOG",
            std::env::var("BENCH_GANTRY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("GANTRY_POLL_INTERVAL", "1h")
        .env("GANTRY_RUNNER_SANDBOX", sandbox)
        .stdout(Stdio::null())
        .spawn()
        .context("starting gantry")?;
    let outcome = measure(port, &work, &data, &admin).await;
    bench::stop(&mut server);
    outcome
}

async fn measure(port: u16, work: &Path, data: &Path, admin: &str) -> anyhow::Result<Figures> {
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let serving = |sha: String| {
        let client = client.clone();
        // The environment's own host, as a browser opens it.
        let url = format!("{base}/");
        let host = format!("staging--shop.localhost:{port}");
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(response) = client.get(&url).header("host", &host).send().await
                    && response.status() == 200
                    && response.text().await.unwrap_or_default() == sha
                {
                    return Ok(Instant::now());
                }
                if Instant::now() > deadline {
                    bail!("staging never served {sha}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // Wait for the app, the first deploy, and a hook token.
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let response = client
            .post(format!("{base}/api/v1/apps/shop/hook-token"))
            .bearer_auth(admin)
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 201
        {
            let body: serde_json::Value = response.json().await?;
            break body["token"].as_str().unwrap_or_default().to_string();
        }
        if Instant::now() > deadline {
            bail!("gantry did not load the app");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    serving(git(work, &["rev-parse", "HEAD"])?).await?;

    let mut totals = Vec::new();
    let mut shas = Vec::new();
    for i in 0..PUSHES {
        std::fs::write(work.join("CHANGES"), format!("{i}\n"))?;
        git(work, &["commit", "-qam", &format!("change {i}")]).or_else(|_| {
            git(work, &["add", "-A"])?;
            git(work, &["commit", "-qm", &format!("change {i}")])
        })?;
        let sha = git(work, &["rev-parse", "HEAD"])?;
        let started = Instant::now();
        git(work, &["push", "-q", "origin", "latest"])?;
        // What a post-receive hook does.
        client
            .post(format!("{base}/api/v1/hooks/git"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "app": "shop" }))
            .send()
            .await?
            .error_for_status()?;
        let live = serving(sha.clone()).await?;
        totals.push(live.duration_since(started).as_secs_f64() * 1000.0);
        shas.push(sha);
    }
    phases(&totals, &shas, data).await
}

/// Splits each push with Gantry's own timestamps (milliseconds).
async fn phases(totals: &[f64], shas: &[String], data: &Path) -> anyhow::Result<Figures> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!(
        "sqlite://{}?mode=ro",
        data.join("gantry.db").display()
    ))
    .await?;
    let mut figures = Figures {
        totals: totals.to_vec(),
        ..Figures::default()
    };
    for sha in shas {
        let received: i64 =
            sqlx::query_scalar("SELECT received_at FROM event_inbox WHERE delivery_id LIKE $1")
                .bind(format!("%:latest:{sha}"))
                .fetch_one(&pool)
                .await?;
        let (run_id, created): (i64, i64) =
            sqlx::query_as("SELECT id, created_at FROM runs WHERE commit_sha = $1")
                .bind(sha)
                .fetch_one(&pool)
                .await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT name, started_at, finished_at FROM steps WHERE run_id = $1 ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(&pool)
        .await?;
        let first = rows.first().map(|r| r.1).unwrap_or(created);
        let deploy_step = rows
            .iter()
            .find(|r| r.0 == "deploy")
            .context("deploy step")?;
        figures.detect_to_plan.push((created - received) as f64);
        figures.queue_checkout.push((first - created) as f64);
        for (_, started, finished) in rows.iter().filter(|r| r.0 != "deploy") {
            figures.step.push((finished - started) as f64);
        }
        figures.deploy.push((deploy_step.2 - deploy_step.1) as f64);
    }
    Ok(figures)
}
