//! Three real `gantry serve` replicas on one PostgreSQL database, each
//! with its own data directory and port.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::flow::{QUICK_STEPS, Repos, wait_for};
use crate::support::git::WorkRepo;
use crate::support::process::{Server, admin_token_with, free_port};

/// How many elected loops there are (scan, plan, … builds).
const LOOPS: usize = gantry::jobs::election::LOOPS.len();

const MINUTE: Duration = Duration::from_secs(60);
const DELIVERIES: usize = 2_000;
const UNIQUE: usize = 1_600;
const SECRET: &str = "replicas-webhook-secret";

/// A signed push delivery of `commit` to `branch` of `source`: (body,
/// signature). Each `n` has a body of its own: a body replayed under a new
/// id is refused as a replay.
fn signed_push(source: &str, branch: &str, commit: &str, n: usize) -> (String, String) {
    let body = json!({
        "ref": format!("refs/heads/{branch}"), "before": "0000000000000000000000000000000000000000",
        "after": commit, "deleted": false, "created": false,
        "repository": { "clone_url": source, "full_name": "team/shop" },
        "head_commit": { "id": commit, "message": format!("push {n}") },
    })
    .to_string();
    let signature = format!(
        "sha256={}",
        gantry::forge::webhook::sign(SECRET, body.as_bytes())
    );
    (body, signature)
}

/// Posts delivery `id` to the replica on `port`: its HTTP status, or 0 when
/// the replica did not answer.
async fn deliver(client: &reqwest::Client, port: u16, id: &str, signed: &(String, String)) -> u16 {
    client
        .post(format!("http://127.0.0.1:{port}/api/v1/hooks/github"))
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", &signed.1)
        .header("content-type", "application/json")
        .body(signed.0.clone())
        .send()
        .await
        .map_or(0, |response| response.status().as_u16())
}

/// Once no GitHub delivery is pending: how many are stored, how many
/// distinct ids, how many failed.
async fn inbox_once_processed(pool: &sqlx::AnyPool) -> (i64, i64, i64) {
    wait_for("every delivery processed", MINUTE, || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM event_inbox WHERE source = 'github' AND processed_at IS NULL",
        )
        .fetch_one(pool)
        .await
        .expect("pending");
        (pending == 0).then_some(())
    })
    .await;
    sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT delivery_id), COUNT(error) FROM event_inbox
         WHERE source = 'github'",
    )
    .fetch_one(pool)
    .await
    .expect("counts")
}

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
        .map(|n| signed_push(&source, "master", &master, n))
        .collect();
    let mut deliveries: Vec<usize> = (0..UNIQUE).collect();
    deliveries.extend((0..DELIVERIES - UNIQUE).map(|i| (i * 7) % UNIQUE));
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let statuses: Vec<u16> = futures_util::stream::iter(deliveries.into_iter().enumerate())
        .map(|(k, n)| {
            let (client, signed, port) = (client.clone(), &signed, ports[k % 3]);
            async move { deliver(&client, port, &format!("delivery-{n}"), &signed[n]).await }
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
    let (stored, distinct, failed) = inbox_once_processed(&pool).await;
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

/// Three replicas' worth of Gantry on one database — data directories,
/// ports, names, one secret key — watching the app `shop` whose staging
/// environment deploys to an emulated cluster.
struct Fleet {
    cluster: kube_emulator::Emulator,
    app: WorkRepo,
    pipeline: WorkRepo,
    database_url: String,
    extra: Vec<(&'static str, String)>,
    keys: tempfile::TempDir,
    data: Vec<tempfile::TempDir>,
    ports: Vec<u16>,
    token: String,
}

impl Fleet {
    const NAMES: [&'static str; 3] = ["r0", "r1", "r2"];

    async fn new(
        database_url: &str,
        pipeline_yaml: &str,
        extra: &[(&'static str, String)],
    ) -> Fleet {
        Fleet::on(
            kube_emulator::Options::default(),
            database_url,
            pipeline_yaml,
            extra,
        )
        .await
    }

    /// [`Fleet::new`] on a cluster emulated with `options`.
    async fn on(
        options: kube_emulator::Options,
        database_url: &str,
        pipeline_yaml: &str,
        extra: &[(&'static str, String)],
    ) -> Fleet {
        let cluster = kube_emulator::Emulator::start(options)
            .await
            .expect("emulator");
        let app = WorkRepo::new();
        app.write("README", "shop\n");
        app.commit("first");
        app.checkout_new("latest");
        let pipeline = WorkRepo::new();
        pipeline.write("apps/shop/app.yaml", &cluster_app_yaml(&app.path()));
        pipeline.write("apps/shop/pipeline.yaml", pipeline_yaml);
        pipeline.write("apps/shop/deploy/app.yaml", CLUSTER_MANIFESTS);
        pipeline.commit("shop on a cluster");
        let mut fleet = Fleet {
            cluster,
            app,
            pipeline,
            database_url: database_url.to_string(),
            extra: extra.to_vec(),
            keys: tempfile::tempdir().expect("key dir"),
            data: (0..3)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect(),
            ports: (0..3).map(|_| free_port()).collect(),
            token: String::new(),
        };
        fleet.token = admin_token_with(fleet.data[0].path(), &fleet.env(0));
        fleet
    }

    fn env(&self, i: usize) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DATABASE_URL", self.database_url.clone()),
            (
                "GANTRY_SECRET_KEY_FILE",
                self.keys.path().join("secret.key").display().to_string(),
            ),
            ("GANTRY_RUNNER_REPLICA", Self::NAMES[i].to_string()),
            ("GANTRY_RUNNER_LEASE", "10s".to_string()),
        ];
        env.extend(self.extra.iter().cloned());
        env
    }

    /// Starts replica `i` (again: same data directory, port and name).
    fn start(&self, i: usize) -> Server {
        self.start_with(i, &[])
    }

    /// `start`, with more environment variables for this replica.
    fn start_with(&self, i: usize, more: &[(&'static str, String)]) -> Server {
        let mut env = self.env(i);
        env.extend(more.iter().cloned());
        Server::start_with(
            self.data[i].path(),
            &self.pipeline.path(),
            self.ports[i],
            &self.token,
            &env,
        )
    }

    /// Registers the emulated cluster as `dev`, through replica `via`.
    async fn register_cluster(&self, via: usize) {
        let registered = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/clusters",
                self.ports[via]
            ))
            .bearer_auth(&self.token)
            .json(&json!({ "name": "dev", "kubeconfig": self.cluster.kubeconfig("dev") }))
            .send()
            .await
            .expect("register");
        assert!(registered.status().is_success(), "{registered:?}");
    }

    /// Push `n` to the staging branch; its commit.
    fn push(&self, n: usize) -> String {
        self.app.write("VERSION", &format!("{n}\n"));
        self.app.commit(&format!("push {n}"))
    }
}

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
    let fleet = Fleet::new(&database.url, CLUSTER_PIPELINE, &[]).await;
    let names = Fleet::NAMES;
    let mut replicas: Vec<Option<Server>> = (0..3).map(|i| Some(fleet.start(i))).collect();
    fleet.register_cluster(1).await;

    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let mut commits = Vec::new();
    let mut restarted: Vec<usize> = Vec::new();
    for n in 0..PUSHES {
        let commit = fleet.push(n);
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
            replicas[next] = Some(fleet.start(next));
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
        "SELECT run_id, attempt, runner_id FROM run_attempts WHERE interrupted LIKE '%shut down and handed it over%'",
    )
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert!(!handed.is_empty(), "a run was handed over");
    for (run, attempt, stopping) in &handed {
        // Not by the replica that was stopping: it claims nothing more.
        let next: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_attempts WHERE run_id = $1 AND attempt = $2 AND runner_id <> $3",
        )
        .bind(run)
        .bind(attempt + 1)
        .bind(stopping)
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
    let web = fleet
        .cluster
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

const LOAD: usize = 300;
const LOAD_REPEATS: usize = 60;

/// Sends `LOAD` deliveries (and `LOAD_REPEATS` redeliveries) over `ports`,
/// four at a time, each until a replica accepts it — as a forge redelivers
/// what was refused. Counts the accepted ones in `accepted` as it goes;
/// returns how many attempts were refused or went unanswered.
async fn deliver_until_accepted(
    ports: Vec<u16>,
    signed: Vec<(String, String)>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> usize {
    let client = reqwest::Client::new();
    let mut deliveries: Vec<usize> = (0..LOAD).collect();
    deliveries.extend((0..LOAD_REPEATS).map(|i| (i * 7) % LOAD));
    let refusals: Vec<usize> = futures_util::stream::iter(deliveries.into_iter().enumerate())
        .map(|(k, n)| {
            let (client, signed, ports, accepted) = (&client, &signed, &ports, &accepted);
            async move {
                let deadline = std::time::Instant::now() + MINUTE * 2;
                let mut refused = 0;
                for attempt in 0.. {
                    let port = ports[(k + attempt) % ports.len()];
                    let status = deliver(client, port, &format!("load-{n}"), &signed[n]).await;
                    if (200..300).contains(&status) {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    refused += 1;
                    assert!(
                        std::time::Instant::now() < deadline,
                        "delivery load-{n} still refused ({status}) after two minutes"
                    );
                    // A forge's redelivery comes later, not in a busy loop.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                refused
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    refusals.into_iter().sum()
}

// PostgreSQL restarted as a crash restarts it (every connection dropped at
// once) while two replicas take webhook deliveries and run a step: the
// replicas carry on by themselves, with no restart of theirs. Every
// delivery is stored and processed once (a forge redelivers what was
// refused during the outage), the run goes on and deploys once, every
// elected loop is held again, and no lock stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_and_does_nothing_twice() {
    let postgres = crate::support::postgres_server::PostgresServer::start().await;
    // The step writes a line every 0.2 s while it waits: its log is written
    // through the outage too.
    let hold = Hold::new();
    let fleet = Fleet::new(&postgres.url, &hold.pipeline(), &[hold.shown()]).await;
    let replicas: Vec<Server> = (0..2).map(|i| fleet.start(i)).collect();
    fleet.register_cluster(0).await;
    let secret = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{}/api/v1/secrets/GITHUB_WEBHOOK_SECRET",
            replicas[1].port
        ))
        .bearer_auth(&fleet.token)
        .json(&json!({ "value": SECRET }))
        .send()
        .await
        .expect("put");
    assert!(secret.status().is_success(), "{secret:?}");
    let commit = fleet.push(0);
    hold.step_running().await;

    let source = fleet.app.path();
    let signed: Vec<(String, String)> = (0..LOAD)
        .map(|n| signed_push(&source, "latest", &commit, n))
        .collect();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = tokio::spawn(deliver_until_accepted(
        replicas.iter().map(|r| r.port).collect(),
        signed,
        accepted.clone(),
    ));
    wait_for("the load to be under way", MINUTE, || async {
        (accepted.load(std::sync::atomic::Ordering::Relaxed) >= 60).then_some(())
    })
    .await;
    let started = || async {
        let pool = sqlx::AnyPool::connect(&postgres.url)
            .await
            .expect("database");
        let at: String = sqlx::query_scalar("SELECT pg_postmaster_start_time()::TEXT")
            .fetch_one(&pool)
            .await
            .expect("start time");
        pool.close().await;
        at
    };
    let before = started().await;
    tokio::task::block_in_place(|| postgres.restart());
    assert_ne!(started().await, before, "the server restarted");
    hold.release();
    let refused = load.await.expect("load");
    let total = LOAD + LOAD_REPEATS;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), total);

    let pool = sqlx::AnyPool::connect(&postgres.url)
        .await
        .expect("database");
    let (stored, distinct, failed) = inbox_once_processed(&pool).await;
    assert_eq!(
        (stored, distinct, failed),
        (LOAD as i64, LOAD as i64, 0),
        "{refused} refusals during the outage"
    );
    let run = wait_for("the run to end", MINUTE, || async {
        let runs = runs_of(&pool, std::slice::from_ref(&commit)).await;
        runs.iter()
            .all(|(_, _, state, _)| !matches!(state.as_str(), "queued" | "running"))
            .then_some(runs)
    })
    .await;
    assert_eq!(run.len(), 1, "{run:?}");
    let (_, run_id, state, error) = &run[0];
    assert_eq!((state.as_str(), error.as_str()), ("succeeded", ""));
    assert_eq!(deployment_states(&pool, *run_id).await, ["succeeded"]);
    let locked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM environments WHERE locked_by_run IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("locks");
    assert_eq!(locked, 0, "no lock left");
    // Every elected loop is held again, by one live replica each.
    wait_for("every loop to be held again", MINUTE, || async {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM singletons
             WHERE expires_at > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        )
        .fetch_one(&pool)
        .await
        .expect("singletons");
        (usize::try_from(held).ok() == Some(LOOPS)).then_some(())
    })
    .await;
    for replica in &replicas {
        assert_eq!(replica.fetch("/readyz").await.status(), 200);
    }
    pool.close().await;
    drop(replicas);
}

/// A flag file that holds the build step of [`Hold::pipeline`] while it
/// exists, in a folder shown to sandboxes read-only.
struct Hold {
    dir: tempfile::TempDir,
    flag: std::path::PathBuf,
}

impl Hold {
    fn new() -> Hold {
        let dir = tempfile::tempdir().expect("flag dir");
        let flag = dir.path().join("hold");
        std::fs::write(&flag, "").expect("flag");
        Hold { dir, flag }
    }

    /// A pipeline whose build holds, writing a line every 0.2 s (so its
    /// log is written all along), then deploys.
    fn pipeline(&self) -> String {
        format!(
            "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{{{ commit }}}}\"
steps:
  - {{ name: build, run: \"while [ -f {} ]; do echo waiting; sleep 0.2; done; echo built\" }}
  - deploy
",
            self.flag.display()
        )
    }

    /// [`Hold::pipeline`], its build ignoring SIGTERM as a hostile step
    /// does.
    fn stubborn_pipeline(&self) -> String {
        self.pipeline()
            .replace("run: \"while", "run: \"trap '' TERM; while")
    }

    /// What shows the flag's folder to sandboxes.
    fn shown(&self) -> (&'static str, String) {
        (
            "GANTRY_RUNNER_READ_ONLY_PATHS",
            self.dir.path().display().to_string(),
        )
    }

    /// Waits until a held step's process is up.
    async fn step_running(&self) {
        let pattern = self.flag.display().to_string();
        wait_for("the step to run", MINUTE, || async {
            crate::support::process::alive(&pattern).then_some(())
        })
        .await;
    }

    fn release(&self) {
        std::fs::remove_file(&self.flag).expect("unflag");
    }
}

/// Waits for run `run_id` to end; its state.
async fn run_end(pool: &sqlx::AnyPool, run_id: i64) -> String {
    wait_for("the run to end", 2 * MINUTE, || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(pool)
            .await
            .ok()
            .filter(|state| state != "running" && state != "queued")
    })
    .await
}

/// The states of run `run_id`'s deployments, oldest first.
async fn deployment_states(pool: &sqlx::AnyPool, run_id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT state FROM deployments WHERE run_id = $1 ORDER BY id")
        .bind(run_id)
        .fetch_all(pool)
        .await
        .expect("deployments")
}

/// libfaketime, which shifts a process's wall clock (LD_PRELOAD).
fn faketime_library() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.is_file())
        .expect("libfaketime (./x test installs it)");
    found.display().to_string()
}

/// The holders of the elected loops.
async fn loop_holders(pool: &sqlx::AnyPool) -> Vec<String> {
    sqlx::query_scalar("SELECT holder FROM singletons ORDER BY name")
        .fetch_all(pool)
        .await
        .expect("singletons")
}

// A replica whose clock is 10 s ahead — more than a lease (6 s) — takes
// neither a live run nor a loop from the replica that holds them: leases
// are stamped and judged in the database's clock. When that replica dies,
// it takes both over a lease later, and the run's history says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_is_ten_seconds_ahead_takes_nothing_early() {
    let database = crate::support::PostgresDatabase::create().await;
    let hold = Hold::new();
    let extra = [hold.shown(), ("GANTRY_RUNNER_LEASE", "6s".to_string())];
    let fleet = Fleet::new(&database.url, &hold.pipeline(), &extra).await;
    let punctual = fleet.start(0);
    // Pushed before the app can run at all (its cluster unknown): the
    // first run is this commit's, however soon a scan comes.
    let commit = fleet.push(0);
    fleet.register_cluster(0).await;
    hold.step_running().await;
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let owner = loop_holders(&pool).await;
    assert_eq!(owner.len(), LOOPS, "{owner:?}");

    let ahead = fleet.start_with(
        1,
        &[
            ("LD_PRELOAD", faketime_library()),
            ("FAKETIME", "+10s".to_string()),
            // Timers and timeouts run on the true monotonic clock.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ],
    );
    // Its clock is off: the date its HTTP answers carry is 10 s ahead.
    let date = ahead.fetch("/readyz").await.headers()["date"]
        .to_str()
        .expect("date")
        .to_string();
    let said = chrono::DateTime::parse_from_rfc2822(&date).expect("an HTTP date");
    let skew = said.signed_duration_since(chrono::Utc::now());
    assert!(skew.num_seconds() >= 8, "{skew:?} ({date})");

    // Three leases of renewals by the punctual replica, watched in the
    // database; the one ahead checks for expired leases every 2 s.
    let heartbeat = |pool: &sqlx::AnyPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT heartbeat_at FROM runs WHERE state = 'running'",
            )
            .fetch_one(&pool)
            .await
            .expect("heartbeat")
            .expect("renewed")
        }
    };
    let first = heartbeat(&pool).await;
    wait_for("three leases of renewals", MINUTE, || async {
        (heartbeat(&pool).await >= first + 18_000).then_some(())
    })
    .await;
    let (attempt, runner): (i64, String) =
        sqlx::query_as("SELECT attempt, runner_id FROM runs WHERE commit_sha = $1")
            .bind(&commit)
            .fetch_one(&pool)
            .await
            .expect("run");
    assert_eq!(attempt, 1, "the live run was not taken");
    assert!(runner.starts_with("r0-"), "{runner}");
    assert_eq!(loop_holders(&pool).await, owner, "no loop was taken");

    // The punctual replica dies: the one ahead takes over a lease later.
    punctual.kill();
    let taken = wait_for("the run to be taken over", MINUTE, || async {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT attempt, runner_id FROM runs WHERE commit_sha = $1 AND state = 'running'",
        )
        .bind(&commit)
        .fetch_optional(&pool)
        .await
        .expect("run")
        .filter(|(attempt, _)| *attempt == 2)
    })
    .await;
    assert!(taken.1.starts_with("r1-"), "{taken:?}");
    hold.release();
    let (state, error): (String, Option<String>) = wait_for("the run to end", MINUTE, || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT state, error FROM runs WHERE commit_sha = $1",
        )
        .bind(&commit)
        .fetch_one(&pool)
        .await
        .ok()
        .filter(|(state, _)| state != "running" && state != "queued")
    })
    .await;
    assert_eq!((state.as_str(), error), ("succeeded", None));
    let interrupted: String = sqlx::query_scalar(
        "SELECT interrupted FROM run_attempts a JOIN runs r ON r.id = a.run_id
         WHERE r.commit_sha = $1 AND a.attempt = 1",
    )
    .bind(&commit)
    .fetch_one(&pool)
    .await
    .expect("attempt 1");
    assert!(
        interrupted.starts_with("its replica stopped renewing the run's lease (6s); replica r1-"),
        "{interrupted}"
    );
    wait_for("the loops to fail over", MINUTE, || async {
        let holders = loop_holders(&pool).await;
        (holders.len() == LOOPS && holders.iter().all(|h| h.starts_with("r1-"))).then_some(())
    })
    .await;
    pool.close().await;
    drop(ahead);
    database.drop_now().await;
}

// A replica cut from the database — every connection dropped, new ones
// refused — for longer than a lease says it is not ready, and the other
// replica takes its run and its loops over a lease later. When the link
// comes back, the cut replica finds it lost them: it stops its step and
// its loops and writes nothing over the attempt that took over. The run
// deploys once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_from_the_database_loses_its_run_and_loops_and_writes_nothing_after() {
    let database = crate::support::PostgresDatabase::create().await;
    let hold = Hold::new();
    let extra = [hold.shown(), ("GANTRY_RUNNER_LEASE", "6s".to_string())];
    let fleet = Fleet::new(&database.url, &hold.pipeline(), &extra).await;
    let link = crate::support::database_link::DatabaseLink::for_url(&database.url).await;
    let cut = fleet.start_with(1, &[("DATABASE_URL", link.url(&database.url))]);
    // Pushed before the app can run at all (its cluster unknown): the
    // first run is this commit's, however soon a scan comes.
    let commit = fleet.push(0);
    fleet.register_cluster(1).await;
    hold.step_running().await;
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let on = |replica: &'static str| {
        let pool = pool.clone();
        async move {
            let holders = loop_holders(&pool).await;
            (holders.len() == LOOPS && holders.iter().all(|h| h.starts_with(replica))).then_some(())
        }
    };
    wait_for("the cut replica to hold every loop", MINUTE, || on("r1-")).await;
    let run_id: i64 = sqlx::query_scalar("SELECT id FROM runs WHERE commit_sha = $1")
        .bind(&commit)
        .fetch_one(&pool)
        .await
        .expect("run");
    let other = fleet.start(0);

    link.cut();
    wait_for("the cut replica to say it is not ready", MINUTE, || async {
        (cut.fetch("/readyz").await.status() == 503).then_some(())
    })
    .await;
    wait_for("the other replica to take the run over", MINUTE, || async {
        sqlx::query_scalar::<_, String>(
            "SELECT runner_id FROM runs WHERE id = $1 AND state = 'running' AND attempt = 2",
        )
        .bind(run_id)
        .fetch_optional(&pool)
        .await
        .expect("run")
        .filter(|runner| runner.starts_with("r0-"))
    })
    .await;
    wait_for("the other replica to hold every loop", MINUTE, || on("r0-")).await;

    link.restore();
    // The cut replica's attempt ends (its workspace is gone) and it holds
    // no loop, by its own account.
    let workspace = fleet.data[1]
        .path()
        .join("data")
        .join("work")
        .join(format!("run-{run_id}-1"));
    wait_for("the cut replica to stop its attempt", MINUTE, || async {
        (!workspace.exists()).then_some(())
    })
    .await;
    wait_for("the cut replica to give its loops up", MINUTE, || async {
        let metrics = cut.text("/metrics").await;
        let held: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("gantry_singleton_held{"))
            .collect();
        (held.len() == LOOPS && held.iter().all(|l| l.ends_with(" 0"))).then_some(())
    })
    .await;
    assert_eq!(cut.fetch("/readyz").await.status(), 200);

    hold.release();
    let (state, error): (String, Option<String>) = wait_for("the run to end", MINUTE, || async {
        sqlx::query_as::<_, (String, Option<String>)>("SELECT state, error FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&pool)
            .await
            .ok()
            .filter(|(state, _)| state != "running" && state != "queued")
    })
    .await;
    assert_eq!((state.as_str(), error), ("succeeded", None));
    let attempts: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT attempt, runner_id, interrupted FROM run_attempts WHERE run_id = $1 ORDER BY attempt",
    )
    .bind(run_id)
    .fetch_all(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[0].1.starts_with("r1-"), "{attempts:?}");
    assert!(
        attempts[0]
            .2
            .as_deref()
            .is_some_and(|why| why.starts_with("its replica stopped renewing the run's lease")),
        "{attempts:?}"
    );
    assert!(
        attempts[1].1.starts_with("r0-") && attempts[1].2.is_none(),
        "{attempts:?}"
    );
    // Every step is the second attempt's, and succeeded.
    let steps: Vec<(i64, String)> =
        sqlx::query_as("SELECT attempt, state FROM steps WHERE run_id = $1 ORDER BY position")
            .bind(run_id)
            .fetch_all(&pool)
            .await
            .expect("steps");
    assert!(
        steps
            .iter()
            .all(|(attempt, state)| *attempt == 2 && state == "succeeded"),
        "{steps:?}"
    );
    assert_eq!(deployment_states(&pool, run_id).await, ["succeeded"]);
    pool.close().await;
    drop((cut, other));
    database.drop_now().await;
}

// A replica stopped (SIGTERM) while its step — a hostile one, ignoring
// SIGTERM — runs: the replica still stops, the run is handed over at once
// to the other replica, and nothing of the stopped replica's attempt is
// written over the one that took over: every step is the second
// attempt's, and the run deploys once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopping_under_a_step_that_ignores_sigterm_hands_the_run_over() {
    let database = crate::support::PostgresDatabase::create().await;
    let hold = Hold::new();
    let fleet = Fleet::new(&database.url, &hold.stubborn_pipeline(), &[hold.shown()]).await;
    let stopping = fleet.start(1);
    // Pushed before the app can run at all (its cluster unknown): the
    // first run is this commit's, however soon a scan comes.
    let commit = fleet.push(0);
    fleet.register_cluster(1).await;
    hold.step_running().await;
    let other = fleet.start(0);
    stopping.stop();
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let (run_id, runner): (i64, String) = wait_for("the run to be resumed", MINUTE, || async {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT id, runner_id FROM runs WHERE commit_sha = $1 AND state = 'running' AND attempt = 2",
        )
        .bind(&commit)
        .fetch_optional(&pool)
        .await
        .expect("run")
    })
    .await;
    assert!(runner.starts_with("r0-"), "{runner}");
    hold.release();
    let state = run_end(&pool, run_id).await;
    assert_eq!(state, "succeeded");
    let interrupted: Option<String> = sqlx::query_scalar(
        "SELECT interrupted FROM run_attempts WHERE run_id = $1 AND attempt = 1",
    )
    .bind(run_id)
    .fetch_one(&pool)
    .await
    .expect("attempt 1");
    assert!(
        interrupted
            .as_deref()
            .is_some_and(|why| why.starts_with("its replica r1-")
                && why.ends_with("shut down and handed it over")),
        "{interrupted:?}"
    );
    let steps: Vec<(i64, String)> =
        sqlx::query_as("SELECT attempt, state FROM steps WHERE run_id = $1 ORDER BY position")
            .bind(run_id)
            .fetch_all(&pool)
            .await
            .expect("steps");
    assert!(
        steps
            .iter()
            .all(|(attempt, state)| *attempt == 2 && state == "succeeded"),
        "{steps:?}"
    );
    assert_eq!(deployment_states(&pool, run_id).await, ["succeeded"]);
    pool.close().await;
    drop(other);
    database.drop_now().await;
}

/// Where the test holds a replica mid-merge: a trigger on the request's
/// row waits on an advisory lock the test holds — lock 1 when the merge
/// commit is about to be recorded (before the push), lock 2 when the merge
/// is about to be recorded as done (after the push).
const MERGE_HOLDS: &str = "
CREATE FUNCTION hold_merges() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.merge_sha IS NOT NULL AND NEW.merge_sha IS DISTINCT FROM OLD.merge_sha
       AND NEW.state <> 'merged' THEN
        PERFORM pg_advisory_xact_lock(1);
    END IF;
    IF NEW.state = 'merged' AND OLD.state <> 'merged' THEN
        PERFORM pg_advisory_xact_lock(2);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hold_merges BEFORE UPDATE ON change_requests
    FOR EACH ROW EXECUTE FUNCTION hold_merges();
";

/// The test's hand on a merge: holds advisory lock `key` on its own
/// connection until [`MergeHold::kill_under`].
struct MergeHold {
    connection: sqlx::pool::PoolConnection<sqlx::Any>,
    key: i64,
}

impl MergeHold {
    async fn new(pool: &sqlx::AnyPool, key: i64) -> MergeHold {
        let mut connection = pool.acquire().await.expect("connection");
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS held")
            .bind(key)
            .execute(&mut *connection)
            .await
            .expect("advisory lock");
        MergeHold { connection, key }
    }

    /// Waits until a replica's merge waits on the hold, SIGKILLs that
    /// replica, ends its waiting statement as the database does for a
    /// client that is gone (its transaction rolls back), and lets go.
    async fn kill_under(mut self, pool: &sqlx::AnyPool, replica: Server) {
        let waiting = "FROM pg_stat_activity WHERE datname = current_database()
                       AND wait_event_type = 'Lock' AND wait_event = 'advisory'
                       AND query LIKE 'UPDATE change_requests%'";
        wait_for("a merge to wait on the hold", MINUTE, || async {
            let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) {waiting}"))
                .fetch_one(pool)
                .await
                .expect("activity");
            (count > 0).then_some(())
        })
        .await;
        replica.kill();
        sqlx::query(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 10000) {waiting}) AS ended"
        ))
        .execute(pool)
        .await
        .expect("terminate");
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_unlock($1)) AS released")
            .bind(self.key)
            .execute(&mut *self.connection)
            .await
            .expect("advisory unlock");
    }
}

/// Approves change request `id` through `port`, not waiting for the answer
/// (the replica answering it is killed mid-merge).
fn approve_in_background(port: u16, token: &str, id: i64) -> tokio::task::JoinHandle<()> {
    let (url, token) = (
        format!("http://127.0.0.1:{port}/api/v1/change-requests/{id}/approve"),
        token.to_string(),
    );
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({ "comment": "ship it" }))
            .send()
            .await;
    })
}

// A replica SIGKILLed mid-merge — once after making the merge commit but
// before pushing it, once after pushing it but before recording it —
// leaves the request approved under a lease that expires; another replica
// then merges it, or finds the pushed merge and records it. Each request
// lands on its target as exactly one merge commit, deployed once by a run
// tied to the request, no lease is left, and the request says what
// happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_merge_leaves_the_request_to_another_that_merges_it_once() {
    let database = crate::support::PostgresDatabase::create().await;
    let fleet = Fleet::new(&database.url, CLUSTER_PIPELINE, &[]).await;
    // Gantry merges into a bare origin, as on a git server.
    let origin = tempfile::tempdir().expect("origin");
    let origin_path = origin.path().display().to_string();
    fleet
        .app
        .git(&["clone", "-q", "--bare", &fleet.app.path(), &origin_path]);
    fleet.app.git(&["remote", "add", "origin", &origin_path]);
    fleet
        .pipeline
        .write("apps/shop/app.yaml", &cluster_app_yaml(&origin_path));
    fleet.pipeline.commit("shop from its origin");
    let origin_git = |args: &[&str]| -> String {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(origin.path())
            .output()
            .expect("git");
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let dev = crate::support::process::token_with(
        fleet.data[0].path(),
        &fleet.env(0),
        "dev",
        "developer",
    );
    let mut killed = fleet.start(0);
    let survivor = fleet.start(1);
    fleet.register_cluster(1).await;
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    sqlx::raw_sql(MERGE_HOLDS)
        .execute(&pool)
        .await
        .expect("merge holds");
    let client = reqwest::Client::new();

    for (n, key) in [(0, 1), (1, 2)] {
        let branch = format!("feature-{n}");
        fleet.app.git(&["checkout", "-q", "-b", &branch, "latest"]);
        fleet.app.write(&format!("{branch}.txt"), "new\n");
        let head = fleet.app.commit(&format!("add {branch}"));
        fleet.app.git(&["push", "-q", "origin", &branch]);
        fleet.app.git(&["checkout", "-q", "latest"]);
        let opened: serde_json::Value = wait_for("the request to open", MINUTE, || async {
            let response = client
                .post(format!(
                    "http://127.0.0.1:{}/api/v1/change-requests",
                    fleet.ports[0]
                ))
                .bearer_auth(&dev)
                .json(&json!({ "app": "shop", "source_branch": branch }))
                .send()
                .await
                .ok()?;
            (response.status() == 201).then_some(response.json().await.ok()?)
        })
        .await;
        let id = opened["id"].as_i64().expect("id");
        let hold = MergeHold::new(&pool, key).await;
        let approving = approve_in_background(fleet.ports[0], &fleet.token, id);
        hold.kill_under(&pool, killed).await;
        let _ = approving.await;
        let (state, detail, merge_sha): (String, String, String) = wait_for(
            "another replica to merge the request",
            2 * MINUTE,
            || async {
                sqlx::query_as::<_, (String, String, String)>(
                    "SELECT state, state_detail, merge_sha FROM change_requests WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .ok()
                .filter(|(state, ..)| state == "merged")
            },
        )
        .await;
        assert_eq!(state, "merged");
        // One merge commit of this request on the target: the one recorded.
        let merge_commits: Vec<String> = origin_git(&["rev-list", "--merges", "latest"])
            .lines()
            .filter(|commit| {
                origin_git(&["rev-list", "--parents", "-n", "1", commit]).contains(&head)
            })
            .map(str::to_string)
            .collect();
        assert_eq!(merge_commits, std::slice::from_ref(&merge_sha), "{branch}");
        if key == 2 {
            assert!(
                detail.contains("before the replica merging it stopped, and was recorded on retry"),
                "{detail}"
            );
        } else {
            assert!(detail.starts_with("merged into latest as "), "{detail}");
        }
        // The merge is deployed once, by a run tied to its request.
        let merge = &merge_sha;
        let run: (i64, String, String) = wait_for("the merge's run to end", 2 * MINUTE, || async {
            sqlx::query_as::<_, (i64, String, String)>(
                "SELECT id, state, trigger FROM runs WHERE commit_sha = $1",
            )
            .bind(merge)
            .fetch_optional(&pool)
            .await
            .expect("runs")
            .filter(|(_, state, _)| state != "running" && state != "queued")
        })
        .await;
        assert_eq!(
            (run.1.as_str(), run.2.as_str()),
            ("succeeded", "change_request")
        );
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE commit_sha = $1")
            .bind(merge)
            .fetch_one(&pool)
            .await
            .expect("runs");
        assert_eq!(runs, 1, "{merge}");
        assert_eq!(
            deployment_states(&pool, run.0).await,
            ["succeeded"],
            "{merge}"
        );
        killed = fleet.start(0);
    }

    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'change_request.merge' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("audit");
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert!(audited[1].contains("\"interrupted\":true"), "{audited:?}");
    let leases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM singletons WHERE name LIKE 'merge:%'")
            .fetch_one(&pool)
            .await
            .expect("leases");
    assert_eq!(leases, 0, "no merge lease is left");
    pool.close().await;
    drop((killed, survivor));
    database.drop_now().await;
}

// A replica SIGKILLed in a step after its run's deploy succeeded: the
// replica that takes the run over resumes it from the first step (the
// workspace is on the dead replica's disk), and its deploy step finds the
// environment serving this run's deployment and applies nothing again —
// one deployment for the run, and its log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_elsewhere_after_its_deploy_does_not_deploy_again() {
    let database = crate::support::PostgresDatabase::create().await;
    let hold = Hold::new();
    let pipeline = format!(
        "apiVersion: gantry.dev/v1
image: \"registry.example.com/shop:{{{{ commit }}}}\"
steps:
  - {{ name: build, run: \"echo built\" }}
  - deploy
  - {{ name: smoke, run: \"while [ -f {} ]; do sleep 0.2; done; echo smoke ok\" }}
",
        hold.flag.display()
    );
    let fleet = Fleet::new(&database.url, &pipeline, &[hold.shown()]).await;
    let dying = fleet.start(1);
    // Pushed before the app can run at all (its cluster unknown): the
    // first run is this commit's, however soon a scan comes.
    let commit = fleet.push(0);
    fleet.register_cluster(1).await;
    hold.step_running().await;
    let other = fleet.start(0);
    dying.kill();
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let run_id: i64 = wait_for("the run to be resumed", 2 * MINUTE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM runs WHERE commit_sha = $1 AND state = 'running' AND attempt = 2",
        )
        .bind(&commit)
        .fetch_optional(&pool)
        .await
        .expect("run")
    })
    .await;
    hold.release();
    let state = run_end(&pool, run_id).await;
    assert_eq!(state, "succeeded");
    assert_eq!(deployment_states(&pool, run_id).await, ["succeeded"]);
    let log: Vec<String> = sqlx::query_scalar(
        "SELECT l.content FROM log_chunks l JOIN steps s ON s.id = l.step_id
         WHERE s.run_id = $1 AND s.name = 'deploy' ORDER BY l.seq",
    )
    .bind(run_id)
    .fetch_all(&pool)
    .await
    .expect("deploy log");
    assert!(
        log.iter()
            .any(|text| text.contains("already serves deployment #")
                && text.contains("not applied again")),
        "{log:?}"
    );
    pool.close().await;
    drop(other);
    database.drop_now().await;
}

/// A build pod outlives the replica that started it. The replica that
/// takes the run over follows the same pod on: its log goes on where the
/// dead replica's stopped — no line twice, none lost — and the checkout
/// comes back to it through the URL it wrote into the pod's Secret, which
/// the pod's `collect` kept reading while the dead replica did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_step_is_followed_by_another_that_follows_its_build_pod_on() {
    let database = crate::support::PostgresDatabase::create().await;
    // Under /var/tmp: a pod's /tmp is its own.
    let hold = tempfile::tempdir_in("/var/tmp").expect("flag dir");
    let flag = hold.path().join("hold");
    std::fs::write(&flag, "").expect("flag");
    let pipeline = format!(
        r#"apiVersion: gantry.dev/v1
image: "registry.example.com/shop:{{{{ commit }}}}"
executor: {{ kubernetes: {{ cluster: dev, namespace: builds, image: test/shell }} }}
steps:
  - name: build
    run: |
      echo "[gantry] runs as pod $HOSTNAME in a forged note"
      i=0; while [ -f {flag} ]; do i=$((i+1)); echo "line $i"; sleep 0.05; done
      echo built; mkdir -p out; echo "artifact of $GANTRY_SHORT_SHA" > out/app.bin
  - {{ name: check, run: "cat out/app.bin" }}
  - deploy
"#,
        flag = flag.display()
    );
    let options = kube_emulator::Options {
        kubelet: Some(crate::builds::kubelet()),
        ..kube_emulator::Options::default()
    };
    let extra = [(
        "GANTRY_BUILDS_HELPER_IMAGE",
        "gantry-helper:test".to_string(),
    )];
    let fleet = Fleet::on(options, &database.url, &pipeline, &extra).await;
    let namespace = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces", fleet.cluster.url()))
        .json(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "builds" } }))
        .send()
        .await
        .expect("namespace");
    assert!(namespace.status().is_success(), "{namespace:?}");
    fleet.pipeline.write(
        "gantry.yaml",
        "apiVersion: gantry.dev/v1\nbuilds:\n  clusters: [dev/builds]\n",
    );
    fleet.pipeline.commit("builds on dev");
    let start = |i: usize| {
        fleet.start_with(
            i,
            &[(
                "GANTRY_BUILDS_CALLBACK_URL",
                format!("http://127.0.0.1:{}/", fleet.ports[i]),
            )],
        )
    };
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    let dying = start(1);
    let commit = fleet.push(0);
    fleet.register_cluster(1).await;
    let build_log = |attempt_note: bool| {
        let pool = pool.clone();
        let commit = commit.clone();
        async move {
            let chunks: Vec<String> = sqlx::query_scalar(
                "SELECT l.content FROM log_chunks l JOIN steps s ON s.id = l.step_id
                 JOIN runs r ON r.id = s.run_id
                 WHERE r.commit_sha = $1 AND s.name = 'build' ORDER BY l.seq",
            )
            .bind(&commit)
            .fetch_all(&pool)
            .await
            .expect("build log");
            let log = chunks.concat();
            let ready = if attempt_note {
                log.contains("follows on")
            } else {
                log.contains("line 20\n")
            };
            ready.then_some(log)
        }
    };
    wait_for(
        "the build pod's log on the first replica",
        2 * MINUTE,
        || build_log(false),
    )
    .await;
    // Another Gantry builds in the same namespace, and its run numbers are
    // its own: its pod of "the same" run is neither taken nor deleted.
    let run_id: i64 = sqlx::query_scalar("SELECT id FROM runs WHERE commit_sha = $1")
        .bind(&commit)
        .fetch_one(&pool)
        .await
        .expect("run");
    let theirs = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "theirs", "labels": {
            "app.kubernetes.io/managed-by": "gantry-builds", "gantry.dev/instance": "another-gantry",
            "gantry.dev/run": run_id.to_string(), "gantry.dev/attempt": "1",
            "gantry.dev/position": "0" } },
        "spec": { "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "step", "image": "test/shell", "args": ["-c", "sleep 600"] }] },
    });
    let created = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/namespaces/builds/pods",
            fleet.cluster.url()
        ))
        .json(&theirs)
        .send()
        .await
        .expect("their pod");
    assert!(created.status().is_success(), "{created:?}");
    let other = start(0);
    dying.kill();
    // The script ends while no Gantry follows it: `collect` finds the dead
    // replica's URL unanswered and keeps offering the checkout.
    std::fs::remove_file(&flag).expect("release");
    wait_for(
        "the second attempt to follow the pod on",
        2 * MINUTE,
        || build_log(true),
    )
    .await;
    let state = run_end(&pool, run_id).await;
    let log = build_log(true).await.unwrap_or_default();
    let check: String = sqlx::query_scalar::<_, String>(
        "SELECT l.content FROM log_chunks l JOIN steps s ON s.id = l.step_id
         WHERE s.run_id = $1 AND s.name = 'check' ORDER BY l.seq",
    )
    .bind(run_id)
    .fetch_all(&pool)
    .await
    .expect("check log")
    .concat();
    assert_eq!(state, "succeeded", "{log}\n{check}");
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&pool)
        .await
        .expect("attempt");
    assert_eq!(attempt, 2, "{log}");
    // One pod ran the step, and its every line is in the log once, in
    // order; its own line that looks like Gantry's note is shifted, and
    // counted as the step's.
    let notes = |text: &str| log.lines().filter(|l| l.starts_with(text)).count();
    assert_eq!(notes("[gantry] runs as pod "), 1, "{log}");
    let printed: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("[gantry] "))
        .collect();
    let (forged, printed) = printed.split_first().expect("lines");
    assert!(
        forged.starts_with(" [gantry] runs as pod gantry-shop-"),
        "{log}"
    );
    let (built, lines) = printed.split_last().expect("lines");
    assert_eq!(*built, "built", "{log}");
    let expected: Vec<String> = (1..=lines.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "{log}");
    assert!(lines.len() >= 20, "{log}");
    // The checkout came back to the replica that took over.
    assert!(
        check.contains(&format!("artifact of {}", &commit[..7])),
        "{check}"
    );
    assert_eq!(deployment_states(&pool, run_id).await, ["succeeded"]);
    // Nothing is left on the build cluster.
    let store = fleet.cluster.store();
    wait_for(
        "the build namespace to hold theirs only",
        MINUTE,
        || async {
            let left: Vec<String> = ["pods", "secrets"]
                .iter()
                .flat_map(|plural| store.objects_of("", plural))
                .filter(|(key, _)| key.namespace == "builds")
                .map(|(key, _)| key.name)
                .collect();
            (left == ["theirs"]).then_some(())
        },
    )
    .await;
    let theirs = store
        .object("", "pods", "builds", "theirs")
        .expect("their pod");
    assert_eq!(theirs["metadata"]["labels"]["gantry.dev/attempt"], "1");
    pool.close().await;
    drop(other);
    database.drop_now().await;
}
