//! Webhook ingestion: 2,000 signed GitHub push deliveries for one app, 20%
//! of them repeats of earlier delivery ids, posted by 32 concurrent
//! clients to a real `gantry serve` (the release binary) on SQLite, on
//! PostgreSQL, and to three replicas on one PostgreSQL (deliveries spread
//! over them round-robin; the ratio to one replica is printed). Reports
//! deliveries per second, the endpoint's p50/p99, and
//! checks from the database that every unique delivery was stored and
//! processed exactly once and none was lost.
//!
//! cargo run --release -p bench --bin webhooks -- <path to gantry>

// A benchmark prints its figures, and aborts on a broken set-up.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{BenchDatabase, Gantry, commit, init_work, percentile, wait_until};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;

const DELIVERIES: usize = 2_000;
const UNIQUE: usize = 1_600;
const CLIENTS: usize = 32;
const SECRET: &str = "bench-webhook-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gantry = std::env::args()
        .nth(1)
        .context("usage: webhooks <gantry binary>")?;
    sqlx::any::install_default_drivers();
    println!(
        "webhook ingestion: {DELIVERIES} signed GitHub push deliveries ({UNIQUE} unique, {} repeats), {CLIENTS} concurrent clients",
        DELIVERIES - UNIQUE
    );
    println!(
        "| backend | replicas | deliveries/s | p50 (ms) | p99 (ms) | stored | processed once | all processed after (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    measure(&gantry, "sqlite", 1).await?;
    let one = measure(&gantry, "postgres", 1).await?;
    let three = measure(&gantry, "postgres", 3).await?;
    println!(
        "\nthroughput, 3 replicas / 1 replica on PostgreSQL: {:.2}x",
        three / one
    );
    Ok(())
}

/// Deliveries per second.
async fn measure(binary: &str, backend: &str, replicas: usize) -> anyhow::Result<f64> {
    let root = tempfile::tempdir()?;
    let (work, pipeline, data) = (
        root.path().join("shop"),
        root.path().join("pipeline"),
        root.path().join("data"),
    );
    init_work(&work)?;
    std::fs::write(work.join("README"), "shop\n")?;
    let sha = commit(&work, "first")?;
    bench::staging_pipeline(&pipeline, &work, "  - { name: build, run: \"true\" }\n")?;

    let database = BenchDatabase::create(backend, &data, "gantry_webhook_bench").await?;
    let url = database.url.clone();
    let pipeline_arg = pipeline.display().to_string();
    // Replicas share the database and the secret key, each with its own
    // data directory and port.
    let key = root.path().join("secret.key").display().to_string();
    let mut servers = Vec::new();
    for n in 0..replicas {
        let data = if n == 0 {
            data.clone()
        } else {
            root.path().join(format!("data-{n}"))
        };
        servers.push(
            Gantry::start_with_env(
                binary,
                &data,
                &["--database-url", &url, "--pipeline-repo", &pipeline_arg],
                &[("GANTRY_SECRET_KEY_FILE", key.as_str())],
            )
            .await?,
        );
    }
    let server = &servers[0];
    server
        .api(Method::PUT, "/secrets/GITHUB_WEBHOOK_SECRET")
        .json(&json!({ "value": SECRET }))
        .send()
        .await?
        .error_for_status()?;

    // Each unique delivery is a push of the app's master with a body of its
    // own (Gantry recognises a body replayed under a new id as a replay);
    // repeats are redeliveries: the same id and the same body.
    let signed: Vec<(String, String)> = (0..UNIQUE)
        .map(|n| {
            let body = json!({
                "ref": "refs/heads/master", "before": "0000000000000000000000000000000000000000",
                "after": sha, "deleted": false, "created": false,
                "repository": { "clone_url": work.display().to_string(), "full_name": "bench/shop" },
                "head_commit": { "id": sha, "message": format!("push {n}") },
            })
            .to_string();
            let signature = format!(
                "sha256={}",
                gantry::forge::webhook::sign(SECRET, body.as_bytes())
            );
            (body, signature)
        })
        .collect();
    let mut ids: Vec<usize> = (0..UNIQUE).collect();
    for i in 0..DELIVERIES - UNIQUE {
        ids.push((i * 7) % UNIQUE);
    }
    // A fixed shuffle: repeats arrive interleaved with their originals.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    let mut seed = 0x2545_f491_u64;
    for i in (1..order.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let client = reqwest::Client::new();
    let endpoints: Vec<String> = servers
        .iter()
        .map(|s| format!("{}/api/v1/hooks/github", s.base))
        .collect();
    let shared = Arc::new(signed);
    let started = Instant::now();
    let times: Vec<anyhow::Result<f64>> = futures_util::stream::iter(order.into_iter().enumerate())
        .map(|(k, i)| {
            let (client, endpoint, shared, n) = (
                client.clone(),
                endpoints[k % endpoints.len()].clone(),
                shared.clone(),
                ids[i],
            );
            async move {
                let sent = Instant::now();
                let response = client
                    .post(&endpoint)
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("delivery-{n}"))
                    .header("x-hub-signature-256", &shared[n].1)
                    .header("content-type", "application/json")
                    .body(shared[n].0.clone())
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("{}: {}", response.status(), response.text().await?);
                }
                Ok(sent.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let wall = started.elapsed();
    let times: Vec<f64> = times.into_iter().collect::<anyhow::Result<_>>()?;

    let pool = sqlx::AnyPool::connect(&url).await?;
    let processed_after = wait_until("every delivery processed", Duration::from_secs(600), || {
        let pool = pool.clone();
        async move {
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM event_inbox WHERE source = 'github' AND processed_at IS NULL",
            )
            .fetch_one(&pool)
            .await?;
            Ok((pending == 0).then(|| started.elapsed()))
        }
    })
    .await?;
    let (stored, once): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT delivery_id) FROM event_inbox
         WHERE source = 'github' AND processed_at IS NOT NULL AND error IS NULL",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    if stored != UNIQUE as i64 || once != UNIQUE as i64 {
        bail!("{backend}: {stored} stored, {once} distinct; expected {UNIQUE} each");
    }
    let rate = DELIVERIES as f64 / wall.as_secs_f64();
    println!(
        "| {backend} | {replicas} | {rate:.0} | {:.1} | {:.1} | {stored} of {UNIQUE} | yes | {:.1} |",
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        processed_after.as_secs_f64()
    );
    drop(servers);
    database.drop_now().await?;
    Ok(rate)
}
