//! Three real `gantry serve` replicas on one PostgreSQL database, each
//! with its own data directory and port.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::flow::{QUICK_STEPS, Repos, wait_for};
use crate::support::process::{Server, admin_token_with, free_port};

const MINUTE: Duration = Duration::from_secs(60);
const DELIVERIES: usize = 2_000;
const UNIQUE: usize = 1_600;
const SECRET: &str = "replicas-webhook-secret";

// 2,000 signed deliveries spread over the three replicas — a fifth of
// them redeliveries, often to another replica than the original — are
// each stored and processed exactly once: one inbox row per delivery id,
// none failed, none left, and one run for the pushed commit however many
// replicas planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_spread_over_three_replicas_are_each_processed_once() {
    let database = crate::support::PostgresDatabase::create().await;
    let keys = tempfile::tempdir().expect("key dir");
    let repos = Repos::new(QUICK_STEPS);
    let master = repos.app.head("master");
    let env = [
        ("DATABASE_URL", database.url.clone()),
        (
            "GANTRY_SECRET_KEY_FILE",
            keys.path().join("secret.key").display().to_string(),
        ),
    ];
    let data: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let token = admin_token_with(data[0].path(), &env);
    let replicas: Vec<Server> = data
        .iter()
        .map(|dir| {
            Server::start_with(
                dir.path(),
                &repos.pipeline.path(),
                free_port(),
                &token,
                &env,
            )
        })
        .collect();
    let client = reqwest::Client::new();
    client
        .put(format!(
            "http://127.0.0.1:{}/api/v1/secrets/GITHUB_WEBHOOK_SECRET",
            replicas[1].port
        ))
        .bearer_auth(&token)
        .json(&json!({ "value": SECRET }))
        .send()
        .await
        .expect("put")
        .error_for_status()
        .expect("the secret is set");

    let source = repos.app.path();
    let signed: Vec<(String, String)> = (0..UNIQUE)
        .map(|n| {
            // A body of its own per delivery: a body replayed under a new
            // id is refused as a replay.
            let body = json!({
                "ref": "refs/heads/master", "before": "0000000000000000000000000000000000000000",
                "after": master, "deleted": false, "created": false,
                "repository": { "clone_url": source, "full_name": "team/shop" },
                "head_commit": { "id": master, "message": format!("push {n}") },
            })
            .to_string();
            let signature = format!(
                "sha256={}",
                gantry::forge::webhook::sign(SECRET, body.as_bytes())
            );
            (body, signature)
        })
        .collect();
    let mut deliveries: Vec<usize> = (0..UNIQUE).collect();
    deliveries.extend((0..DELIVERIES - UNIQUE).map(|i| (i * 7) % UNIQUE));
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let statuses: Vec<u16> = futures_util::stream::iter(deliveries.into_iter().enumerate())
        .map(|(k, n)| {
            let (client, signed, port) = (client.clone(), &signed, ports[k % 3]);
            async move {
                client
                    .post(format!("http://127.0.0.1:{port}/api/v1/hooks/github"))
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("delivery-{n}"))
                    .header("x-hub-signature-256", &signed[n].1)
                    .header("content-type", "application/json")
                    .body(signed[n].0.clone())
                    .send()
                    .await
                    .expect("post")
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "{:?}",
        statuses
            .iter()
            .filter(|s| !(200..300).contains(*s))
            .collect::<Vec<_>>()
    );

    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    wait_for("every delivery processed", MINUTE, || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM event_inbox WHERE source = 'github' AND processed_at IS NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("pending");
        (pending == 0).then_some(())
    })
    .await;
    let (stored, distinct, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT delivery_id), COUNT(error) FROM event_inbox
         WHERE source = 'github'",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(
        (stored, distinct, failed),
        (UNIQUE as i64, UNIQUE as i64, 0)
    );
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE commit_sha = $1")
        .bind(&master)
        .fetch_one(&pool)
        .await
        .expect("runs");
    assert_eq!(runs, 1, "one run for the pushed commit");
    pool.close().await;
    drop(replicas);
    database.drop_now().await;
}
