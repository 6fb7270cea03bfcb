//! Ledger latency: 10,000 production releases (each with its run,
//! deployment, two targets, an approval and a three-commit changelog)
//! seeded into SQLite and into PostgreSQL, then a real `gantry serve` (the
//! release binary) answering the timeline: the API's first page, a page
//! deep in the history, and the server-rendered `/releases` page.
//!
//! cargo run --release -p bench --bin ledger -- <path to gantry>

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use anyhow::{Context, bail};
use bench::{BenchDatabase, Gantry, percentile};
use reqwest::Method;
use serde_json::json;
use sqlx::Any;

const RELEASES: i64 = 10_000;
const REQUESTS: usize = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: ledger <gantry binary>")?;
    sqlx::any::install_default_drivers();
    println!(
        "ledger latency with {RELEASES} releases, {REQUESTS} sequential requests each, one client"
    );
    println!("| backend | request | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|---|");
    for backend in ["sqlite", "postgres"] {
        measure(&gantry, backend).await?;
    }
    Ok(())
}

async fn measure(binary: &str, backend: &str) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    let database = BenchDatabase::create(backend, &data, "gantry_ledger_bench").await?;
    let url = database.url.clone();
    bench::migrate(binary, &data, &url)?;
    let pool = sqlx::AnyPool::connect(&url).await?;
    let started = Instant::now();
    let newest = seed(&pool).await?;
    let seeded = started.elapsed();
    pool.close().await;

    let server = Gantry::start(binary, &data, &["--database-url", &url]).await?;
    let deep = newest - RELEASES / 2;
    let cases = [
        (
            "API first page (50)",
            "/api/v1/releases?app=shop&environment=production".to_string(),
        ),
        (
            "API page 100 of 200",
            format!("/api/v1/releases?app=shop&environment=production&before={deep}"),
        ),
        (
            "dashboard /releases (SSR)",
            "/releases?app=shop&environment=production".to_string(),
        ),
    ];
    let client = reqwest::Client::new();
    for (name, path) in &cases {
        let mut times = Vec::new();
        for _ in 0..REQUESTS {
            let started = Instant::now();
            let response = client
                .get(format!("{}{path}", server.base))
                .bearer_auth(&server.token)
                .send()
                .await?;
            let status = response.status();
            let body = response.text().await?;
            if !status.is_success()
                || !body.contains("rollback of") && !body.contains("\"version\"")
            {
                bail!("{path}: {status} {}", &body[..body.len().min(300)]);
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "| {backend} | {name} | {:.1} | {:.1} |",
            percentile(&times, 50.0),
            percentile(&times, 99.0)
        );
    }
    // A sanity check that the page really is the seeded ledger.
    let first: serde_json::Value = server
        .api(
            Method::GET,
            "/releases?app=shop&environment=production&limit=1",
        )
        .send()
        .await?
        .json()
        .await?;
    if first[0]["id"] != json!(newest) {
        bail!("the newest release is not {newest}: {first}");
    }
    println!(
        "| {backend} | (seeding {RELEASES} releases) | {:.0} s | |",
        seeded.as_secs_f64()
    );
    drop(server);
    database.drop_now().await?;
    Ok(())
}

/// Seeds the ledger; returns the newest release's id.
#[allow(clippy::disallowed_methods)] // the seeder is the database's only writer
async fn seed(pool: &sqlx::AnyPool) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await?;
    let now: i64 = 1_790_000_000_000;
    let app: i64 = sqlx::query_scalar(
        "INSERT INTO apps (name, source_url, config, pipeline_sha, created_at, updated_at)
         VALUES ('shop', '/nowhere', '{}', 'p', $1, $1) RETURNING id",
    )
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let env: i64 = sqlx::query_scalar(
        "INSERT INTO environments (app_id, name, stack_entry, branch, state, created_at, updated_at)
         VALUES ($1, 'production', 'production', 'master', 'live', $2, $2) RETURNING id",
    )
    .bind(app)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (issuer, subject, display_name, created_at)
         VALUES ('bench', 'ada', 'Ada', $1) RETURNING id",
    )
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let mut newest = 0;
    for n in 0..RELEASES {
        let at = now + n * 60_000;
        let version = format!("{n:040x}");
        let run: i64 = sqlx::query_scalar(
            "INSERT INTO runs (app_id, environment_id, branch, commit_sha, pipeline_sha, state, trigger, created_at)
             VALUES ($1, $2, 'master', $3, 'p', 'succeeded', 'push', $4) RETURNING id",
        )
        .bind(app)
        .bind(env)
        .bind(&version)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let deployment: i64 = sqlx::query_scalar(
            "INSERT INTO deployments (environment_id, run_id, kind, commit_sha, pipeline_sha, state, manifests, manifests_digest, created_at, finished_at)
             VALUES ($1, $2, 'deploy', $3, 'p', 'succeeded', '{}', 'd', $4, $4) RETURNING id",
        )
        .bind(env)
        .bind(run)
        .bind(&version)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        for target in ["prod-eu", "prod-us"] {
            sqlx::query(
                "INSERT INTO deployment_targets (deployment_id, target, state, detail, started_at, finished_at)
                 VALUES ($1, $2, 'succeeded', 'applied 3 objects, rolled out', $3, $3)",
            )
            .bind(deployment)
            .bind(target)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO approvals (environment_id, run_id, user_id, decision, comment, created_at)
             VALUES ($1, $2, $3, 'approved', 'ship it', $4)",
        )
        .bind(env)
        .bind(run)
        .bind(user)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let changelog = json!([0, 1, 2].map(|i| json!({
            "sha": format!("{n:038x}{i:02x}"), "summary": format!("change {n}.{i}"),
            "author": "Ada", "author_email": "ada@example.com", "time": at, "url": null
        })))
        .to_string();
        let (kind, label, state) = match n {
            n if n == RELEASES - 1 => ("rollback", Some("rollback of aaaaaaa to bbbbbbb"), "live"),
            n if n % 500 == 499 => (
                "rollback",
                Some("rollback of aaaaaaa to bbbbbbb"),
                "superseded",
            ),
            _ => ("release", None, "superseded"),
        };
        newest = insert_release(
            &mut tx, app, env, deployment, run, &version, kind, label, state, &changelog, at,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(newest)
}

#[allow(clippy::too_many_arguments)]
async fn insert_release(
    tx: &mut sqlx::Transaction<'_, Any>,
    app: i64,
    env: i64,
    deployment: i64,
    run: i64,
    version: &str,
    kind: &str,
    label: Option<&str>,
    state: &str,
    changelog: &str,
    at: i64,
) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO releases (app_id, environment_id, deployment_id, run_id, kind, version, pipeline_sha,
             state, label, changelog, created_by, created_at, finished_at, stable_at, stable_by)
         VALUES ($1, $2, $3, $4, $5, $6, 'p', $7, $8, $9, 'Ada', $10, $10, $10, 'gantry') RETURNING id",
    )
    .bind(app)
    .bind(env)
    .bind(deployment)
    .bind(run)
    .bind(kind)
    .bind(version)
    .bind(state)
    .bind(label)
    .bind(changelog)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?)
}
