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

const PUSHES: usize = 20;

/// The staging environment deploys to an emulated cluster: any replica
/// may run its deploys (a `local` one belongs to one replica).
fn cluster_app_yaml(source: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nsource: {source}\nstack:\n  - env: staging\n    branch: latest\n    target: dev\n"
    )
}

const CLUSTER_PIPELINE: &str = "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{ commit }}\"
steps:
  - { name: build, run: \"sleep 2; echo built $GANTRY_SHORT_SHA\" }
  - deploy
";

const CLUSTER_MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: \"{{ image }}\"
";

/// What became of the runs of `commits`: (commit, run id, state, error).
async fn runs_of(pool: &sqlx::AnyPool, commits: &[String]) -> Vec<(String, i64, String, String)> {
    let mut found = Vec::new();
    for commit in commits {
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, state, error FROM runs WHERE commit_sha = $1 ORDER BY id")
                .bind(commit)
                .fetch_all(pool)
                .await
                .expect("runs");
        for (id, state, error) in rows {
            found.push((commit.clone(), id, state, error.unwrap_or_default()));
        }
    }
    found
}

// A rolling restart — each of the three replicas stopped as a service
// manager stops it (SIGTERM) and started again, one after the other —
// during 20 pushes loses no push and deploys each planned run once: a run
// running on a replica that stops is handed over at once and resumed on
// another as its next attempt, and its deploy is applied by one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_during_twenty_pushes_loses_no_push_and_deploys_each_run_once() {
    let database = crate::support::PostgresDatabase::create().await;
    let cluster = kube_emulator::Emulator::start(kube_emulator::Options::default())
        .await
        .expect("emulator");
    let keys = tempfile::tempdir().expect("key dir");
    let app = crate::support::git::WorkRepo::new();
    app.write("README", "shop\n");
    app.commit("first");
    app.checkout_new("latest");
    let pipeline = crate::support::git::WorkRepo::new();
    pipeline.write("apps/shop/app.yaml", &cluster_app_yaml(&app.path()));
    pipeline.write("apps/shop/pipeline.yaml", CLUSTER_PIPELINE);
    pipeline.write("apps/shop/deploy/app.yaml", CLUSTER_MANIFESTS);
    pipeline.commit("shop on a cluster");
    let env = |name: &str| {
        vec![
            ("DATABASE_URL", database.url.clone()),
            (
                "GANTRY_SECRET_KEY_FILE",
                keys.path().join("secret.key").display().to_string(),
            ),
            ("GANTRY_RUNNER_REPLICA", name.to_string()),
            ("GANTRY_RUNNER_LEASE", "10s".to_string()),
        ]
    };
    let names = ["r0", "r1", "r2"];
    let data: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let token = admin_token_with(data[0].path(), &env(names[0]));
    let start = |i: usize| {
        Server::start_with(
            data[i].path(),
            &pipeline.path(),
            ports[i],
            &token,
            &env(names[i]),
        )
    };
    let mut replicas: Vec<Option<Server>> = (0..3).map(|i| Some(start(i))).collect();
    let registered = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/clusters", ports[1]))
        .bearer_auth(&token)
        .json(&json!({ "name": "dev", "kubeconfig": cluster.kubeconfig("dev") }))
        .send()
        .await
        .expect("register");
    assert!(registered.status().is_success(), "{registered:?}");

    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let mut commits = Vec::new();
    let mut restarted: Vec<usize> = Vec::new();
    for n in 0..PUSHES {
        app.write("VERSION", &format!("{n}\n"));
        let commit = app.commit(&format!("push {n}"));
        commits.push(commit.clone());
        // Each push is planned before the next: a push is lost only if it
        // never gets a run.
        wait_for(&format!("push {n} to be planned"), MINUTE, || async {
            let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE commit_sha = $1")
                .bind(&commit)
                .fetch_one(&pool)
                .await
                .expect("runs");
            (runs > 0).then_some(())
        })
        .await;
        if [4, 10, 16].contains(&n) {
            // The replica running a run is the one to restart, when it was
            // not restarted yet: at least the first restart hands a run
            // over mid-step.
            let running: String = wait_for("a run to be running", MINUTE, || async {
                sqlx::query_scalar("SELECT runner_id FROM runs WHERE state = 'running'")
                    .fetch_optional(&pool)
                    .await
                    .expect("running")
            })
            .await;
            let owner = names
                .iter()
                .position(|name| running.starts_with(&format!("{name}-")))
                .filter(|i| !restarted.contains(i));
            let next = owner
                .or_else(|| (0..3).find(|i| !restarted.contains(i)))
                .expect("a replica left to restart");
            replicas[next].take().expect("running").stop();
            replicas[next] = Some(start(next));
            restarted.push(next);
        }
    }
    assert_eq!(restarted.len(), 3, "each replica restarted once");

    let last = commits.last().expect("pushed").clone();
    wait_for(
        "every run to end and the last push to deploy",
        MINUTE * 2,
        || async {
            let runs = runs_of(&pool, &commits).await;
            let ended = runs
                .iter()
                .all(|(_, _, state, _)| !matches!(state.as_str(), "queued" | "running"));
            let deployed = runs
                .iter()
                .any(|(commit, _, state, _)| *commit == last && state == "succeeded");
            (ended && deployed).then_some(())
        },
    )
    .await;
    let runs = runs_of(&pool, &commits).await;
    // No push lost, none planned twice.
    assert_eq!(runs.len(), PUSHES, "{runs:#?}");
    for commit in &commits {
        assert_eq!(
            runs.iter().filter(|(c, ..)| c == commit).count(),
            1,
            "{runs:#?}"
        );
    }
    for (commit, run, state, error) in &runs {
        // A run ends succeeded, or superseded by a newer push (also when
        // that push came while its replica was handing it over).
        assert!(
            state == "succeeded" || state == "superseded",
            "run {run} of {commit}: {state} {error}"
        );
        let deployments: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reason FROM deployments WHERE run_id = $1")
                .bind(run)
                .fetch_all(&pool)
                .await
                .expect("deployments");
        let succeeded = deployments.iter().filter(|(s, _)| s == "succeeded").count();
        assert_eq!(
            succeeded,
            usize::from(state == "succeeded"),
            "run {run} ({state}): {deployments:?}"
        );
        // Any other deployment of it is one a take-over concluded.
        for (deployment_state, reason) in &deployments {
            assert!(
                deployment_state == "succeeded"
                    || reason.as_deref().is_some_and(|r| r.contains("interrupted")),
                "run {run}: {deployments:?}"
            );
        }
    }
    // The stopped replicas said so in the history of the runs they held.
    let handed: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT run_id, attempt, interrupted FROM run_attempts WHERE interrupted LIKE '%shut down and handed it over%'",
    )
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert!(!handed.is_empty(), "a run was handed over");
    for (run, attempt, _) in &handed {
        let next: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_attempts WHERE run_id = $1 AND attempt = $2",
        )
        .bind(run)
        .bind(attempt + 1)
        .fetch_one(&pool)
        .await
        .expect("next attempt");
        let superseded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE id = $1 AND state <> 'succeeded'")
                .bind(run)
                .fetch_one(&pool)
                .await
                .expect("run");
        assert!(
            next == 1 || superseded == 1,
            "run {run} resumed after attempt {attempt}"
        );
    }
    let (deploying, locked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM deployments WHERE state = 'deploying'),
                (SELECT COUNT(*) FROM environments WHERE locked_by_run IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .expect("leftovers");
    assert_eq!((deploying, locked), (0, 0), "no deployment or lock left");
    let web = cluster
        .store()
        .object("apps", "deployments", "shop-staging", "web")
        .expect("the staging deployment");
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!("registry.example.com/shop:{last}")),
    );
    pool.close().await;
    drop(replicas);
    database.drop_now().await;
}
