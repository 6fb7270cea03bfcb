//! Home latency (issue 29's goals): the home page as the dashboard
//! server-renders it — the "needs attention" strip and the first page of
//! lanes — and the lanes API, with 1,000 apps (3 environments each) and
//! 100,000 runs, then 10,000 apps and 1,000,000 runs in the database — on
//! SQLite and on PostgreSQL, against a real `gantry serve` (the release
//! binary). Each answer's size is reported beside its latency.
//!
//! cargo run --release -p bench --bin home -- <path to gantry>

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use anyhow::{Context, bail};
use bench::{BenchDatabase, Gantry, percentile};

const RUNS_PER_APP: i64 = 100;
const REQUESTS: usize = 200;
const ENVIRONMENTS: [(&str, &str); 3] = [
    ("preview-feature-x", "feature/x"),
    ("staging", "latest"),
    ("production", "master"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: home <gantry binary>")?;
    sqlx::any::install_default_drivers();
    println!(
        "home latency, {REQUESTS} sequential requests each, one client; {RUNS_PER_APP} runs per app"
    );
    println!("| backend | apps | runs | request | p50 (ms) | p99 (ms) | bytes |");
    println!("|---|---|---|---|---|---|---|");
    // A second argument measures one backend only (`sqlite`, `postgres`).
    let only = std::env::args().nth(2);
    for backend in ["sqlite", "postgres"] {
        if only.as_deref().is_none_or(|only| only == backend) {
            measure(&gantry, backend).await?;
        }
    }
    Ok(())
}

async fn measure(binary: &str, backend: &str) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    let database = BenchDatabase::create(backend, &data, "gantry_home_bench").await?;
    let url = database.url.clone();
    bench::migrate(binary, &data, &url)?;
    // 1,000 apps first (goal: p99 <= 50 ms), then 10,000 (<= 100 ms).
    for (from, to) in [(0, 1_000), (1_000, 10_000)] {
        let pool = sqlx::AnyPool::connect(&url).await?;
        seed(&pool, from, to).await?;
        if backend == "postgres" {
            // PostgreSQL's autovacuum analyses a table after a bulk load
            // within its next naptime (a minute); measuring before that
            // would measure plans made without statistics, which a running
            // installation does not have.
            sqlx::query("ANALYZE").execute(&pool).await?;
        }
        pool.close().await;
        // The seeded apps have no repositories to poll: a long interval keeps
        // the failing fetches out of the figures.
        let server = Gantry::start_with_env(
            binary,
            &data,
            &["--database-url", &url],
            &[("GANTRY_POLL_INTERVAL", "1h")],
        )
        .await?;
        // Its first scan still visits every app once: let it pass.
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        let runs = to * RUNS_PER_APP;
        let cases: &[(&str, &str)] = &[
            ("dashboard / (SSR)", "/"),
            ("API /api/v1/lanes", "/api/v1/lanes"),
            ("API /api/v1/attention", "/api/v1/attention"),
            ("API /api/v1/environments (unpaged)", "/api/v1/environments"),
            ("dashboard /runs (SSR)", "/runs"),
            ("API /api/v1/runs", "/api/v1/runs"),
            ("API /api/v1/runs?state=failed", "/api/v1/runs?state=failed"),
        ];
        let client = reqwest::Client::new();
        for (name, path) in cases {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..REQUESTS {
                let started = Instant::now();
                let response = client
                    .get(format!("{}{path}", server.base))
                    .bearer_auth(&server.token)
                    .send()
                    .await?;
                let status = response.status();
                let body = response.text().await?;
                // A page of lanes starts at the first app; the unpaged list
                // ends with the last one's environments.
                let expected = match *path {
                    "/api/v1/attention" => "waiting_for_you".to_string(),
                    "/api/v1/environments" => format!("app-{:04}", to - 1),
                    // Runs come newest first: the last app seeded.
                    p if p.contains("runs") => format!("app-{:04}", to - 1),
                    _ => "app-0000".to_string(),
                };
                if !status.is_success() || !body.contains(&expected) {
                    bail!("{path}: {status}, {} bytes, no {expected}", body.len());
                }
                bytes = bytes.max(body.len());
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "| {backend} | {to} | {runs} | {name} | {:.1} | {:.1} | {bytes} |",
                percentile(&times, 50.0),
                percentile(&times, 99.0)
            );
        }
        drop(server);
    }
    database.drop_now().await?;
    Ok(())
}

/// Apps `from..to`, each with its three environments and `RUNS_PER_APP`
/// runs; the environments point at their newest run's commit.
#[allow(clippy::disallowed_methods)] // the seeder is the database's only writer
async fn seed(pool: &sqlx::AnyPool, from: i64, to: i64) -> anyhow::Result<()> {
    // A day ago, so the "needs attention" strip's window (14 days) holds
    // the failed runs below.
    let now: i64 = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )? - 86_400_000;
    let mut tx = pool.begin().await?;
    for n in from..to {
        let name = format!("app-{n:04}");
        let app: i64 = sqlx::query_scalar(
            "INSERT INTO apps (name, source_url, config, pipeline_sha, created_at, updated_at)
             VALUES ($1, '/nowhere', '{}', 'p', $2, $2) RETURNING id",
        )
        .bind(&name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let mut envs = Vec::new();
        for (env, branch) in ENVIRONMENTS {
            let sha = format!("{n:020x}{:020x}", env.len());
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO environments (app_id, name, stack_entry, branch, state, commit_sha,
                     commit_message, commit_author, url, created_at, updated_at)
                 VALUES ($1, $2, $2, $3, 'live', $4, 'Faster checkout', 'Ada', $5, $6, $6)
                 RETURNING id",
            )
            .bind(app)
            .bind(env)
            .bind(branch)
            .bind(&sha)
            .bind(format!("http://{env}--{name}.localhost:3000/"))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            envs.push((id, branch));
        }
        // Runs in batches: one statement per 50 rows keeps PostgreSQL's
        // round trips (and so the seeding time) down.
        for batch in (0..RUNS_PER_APP).collect::<Vec<_>>().chunks(50) {
            let mut sql = String::from(
                "INSERT INTO runs (app_id, environment_id, branch, commit_sha, pipeline_sha, state, trigger,
                     commit_message, commit_author, created_at, started_at, finished_at) VALUES ",
            );
            let mut binds = Vec::new();
            for (i, run) in batch.iter().enumerate() {
                let (env, branch) = envs[usize::try_from(*run).unwrap_or(0) % envs.len()];
                let at = now + run * 60_000;
                if i > 0 {
                    sql.push(',');
                }
                let p = binds.len();
                // One run in fifty fails (the newest of each app's preview
                // among them): the attention strip has work to do.
                let state = if run % 50 == 49 {
                    "failed"
                } else {
                    "succeeded"
                };
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, 'p', '{state}', 'push', 'a change', 'Ada', ${}, ${}, ${})",
                    p + 1, p + 2, p + 3, p + 4, p + 5, p + 5, p + 5
                ));
                binds.push(Bind::Int(app));
                binds.push(Bind::Int(env));
                binds.push(Bind::Text(branch.to_string()));
                binds.push(Bind::Text(format!("{n:020x}{run:020x}")));
                binds.push(Bind::Int(at));
            }
            let mut query = sqlx::query(&sql);
            for bind in binds {
                query = match bind {
                    Bind::Int(v) => query.bind(v),
                    Bind::Text(v) => query.bind(v),
                };
            }
            query.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

enum Bind {
    Int(i64),
    Text(String),
}
