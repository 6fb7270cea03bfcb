//! Crash safety with the real binary: `gantry serve` killed with SIGKILL in
//! the middle of a run and in the middle of a deploy, then started again on
//! the same data directory — or, on PostgreSQL, another replica taking the
//! run over once its lease expired.

use std::time::Duration;

use serde_json::Value;

use crate::support::flow::{Repos, pipeline_yaml, wait_for};
use crate::support::process::{Server, admin_token, admin_token_with, alive, free_port};

/// How many elected loops there are (scan, plan, … builds).
const LOOPS: usize = gantry::jobs::election::LOOPS.len();

const MINUTE: Duration = Duration::from_secs(60);

/// Waits until no process matching `pattern` is left after gantry was
/// killed. A timeout names the survivors — pid, parent, state, age and
/// command — since which process outlived gantry is the whole question.
async fn die_with_gantry(what: &str, pattern: &str) {
    let deadline = std::time::Instant::now() + MINUTE;
    while alive(pattern) {
        if std::time::Instant::now() > deadline {
            let table = std::process::Command::new("ps")
                .args(["-eo", "pid,ppid,pgid,stat,etimes,wchan:20,args"])
                .output()
                .expect("ps");
            let table = String::from_utf8_lossy(&table.stdout);
            let survivors: Vec<&str> = table.lines().filter(|l| l.contains(pattern)).collect();
            panic!(
                "{what} outlived gantry by a minute:\n{}",
                survivors.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until the run of `sha` is running and its step's own process
/// (which hangs while `flag` exists) is up — the run is marked running
/// before its sandbox is. Returns the run.
async fn slow_step_running(server: &Server, sha: &str, flag: &std::path::Path) -> Value {
    let run = wait_for("the staging run to be running", MINUTE, || async {
        server
            .run_of(sha)
            .await
            .into_iter()
            .find(|r| r["state"] == "running")
    })
    .await;
    wait_for("the step's process", MINUTE, || async {
        alive(&flag.display().to_string()).then_some(())
    })
    .await;
    run
}

/// The log of step `position` of run `run`.
async fn step_log(server: &Server, run: &Value, position: usize) -> String {
    let step = &run["steps"][position]["id"];
    server
        .text(&format!(
            "/api/v1/runs/{}/steps/{step}/log",
            run["run"]["id"]
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_step_resumes_at_that_step_as_its_next_attempt_after_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    // The second step hangs while the flag file exists (a marker makes it
    // findable); its folder is shown to sandboxes read-only. It reads what
    // the first step built, which only the first attempt's workspace has.
    let flags = tempfile::tempdir().expect("flag dir");
    let flag = flags.path().join("slow");
    std::fs::write(&flag, "").expect("flag");
    let marker = format!("gantry-crash-{}", std::process::id());
    let steps = format!(
        "  - {{ name: build, run: \"echo built-once > built.txt\" }}\n  - {{ name: slow, run: \"while [ -f {} ]; do sleep 0.2; done; cat built.txt; echo {marker} > /dev/null\" }}\n",
        flag.display()
    );
    let repos = Repos::new(&steps);
    let latest = repos.app.head("latest");
    let port = free_port();
    let token = admin_token(data.path());
    let shown = [(
        "GANTRY_RUNNER_READ_ONLY_PATHS",
        flags.path().display().to_string(),
    )];
    let server = Server::start_with(data.path(), &repos.pipeline.path(), port, &token, &shown);
    let running = slow_step_running(&server, &latest, &flag).await;
    server.kill();
    // A sandboxed step dies with the Gantry that started it, however it
    // died (the kernel's parent-death signal), not at the next start.
    die_with_gantry("the step", &flag.display().to_string()).await;

    std::fs::remove_file(&flag).expect("unflag");
    let server = Server::start_with(data.path(), &repos.pipeline.path(), port, &token, &shown);
    let runs = wait_for("the run to resume and succeed", MINUTE, || async {
        let runs = server.run_of(&latest).await;
        runs.iter()
            .any(|r| r["state"] == "succeeded")
            .then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), 1, "the same run resumes: {runs:?}");
    assert_eq!(runs[0]["id"], running["id"]);
    let detail = server.get(&format!("/api/v1/runs/{}", running["id"])).await;
    assert_eq!(detail["error"], Value::Null, "{detail}");
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{detail}");
    assert_eq!(
        attempts[0]["interrupted"],
        "interrupted by a restart of gantry"
    );
    assert_eq!(attempts[0]["from_step"], 0);
    // The same replica kept the workspace: attempt 2 starts at the step
    // the run was in, and the step reads what attempt 1's build wrote.
    assert_eq!(attempts[1]["from_step"], 1, "{detail}");
    assert_eq!(attempts[1]["from_step_name"], "slow");
    assert_eq!(attempts[1]["interrupted"], Value::Null);
    assert!(attempts[1]["finished_at"].is_i64(), "{detail}");
    assert_eq!(detail["steps"][0]["state"], "succeeded");
    assert_eq!(detail["steps"][1]["state"], "succeeded");
    let build = step_log(&server, &detail, 0).await;
    assert!(
        !build.contains("attempt 2"),
        "the build is not run again: {build}"
    );
    let slow = step_log(&server, &detail, 1).await;
    assert!(
        slow.contains("[gantry] attempt 2 on replica ")
            && slow.contains("this step runs from its start (attempt 1 ended: interrupted by a restart of gantry)"),
        "{slow}"
    );
    assert!(slow.contains("built-once"), "{slow}");
    assert!(
        server
            .served("staging")
            .await
            .is_some_and(|text| text.contains(&latest))
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_killed_midway_is_concluded_the_old_version_comes_back_and_the_next_attempt_applies_it_again()
 {
    let data = tempfile::tempdir().expect("tempdir");
    // The app starts slowly when the commit has a SLOWSTART file (the
    // marker makes its processes findable).
    let marker = format!("gantry-app-{}", std::process::id());
    let slow_app = format!("if [ -f SLOWSTART ]; then sleep 30; fi; python3 app.py {marker}");
    let pipeline = pipeline_yaml("  - { name: build, run: \"true\" }\n")
        .replace("run: python3 app.py", &format!("run: \"{slow_app}\""));
    let repos = Repos::new("");
    repos.pipeline.write("apps/shop/pipeline.yaml", &pipeline);
    repos.pipeline.commit("slow start when asked");
    let v1 = repos.app.head("latest");
    let port = free_port();
    let token = admin_token(data.path());
    let server = Server::start(data.path(), &repos.pipeline.path(), port, &token);
    wait_for("v1 on staging", MINUTE, || async {
        server.served("staging").await.filter(|t| t.contains(&v1))
    })
    .await;

    repos.app.checkout("latest");
    repos.app.write("SLOWSTART", "1");
    let v2 = repos.app.commit("slow to start");
    wait_for("staging to be deploying v2", MINUTE, || async {
        let environments = server.get("/api/v1/environments").await;
        environments
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "staging" && e["state"] == "deploying")
            .cloned()
    })
    .await;
    assert!(alive(&marker), "the apps run");
    server.kill();
    // Its local apps (v1 serving, v2 starting) die with it, not at the
    // next start.
    die_with_gantry("the apps", &marker).await;

    let server = Server::start(data.path(), &repos.pipeline.path(), port, &token);
    let text = wait_for("v1 to serve again after the restart", MINUTE, || async {
        server.served("staging").await
    })
    .await;
    assert!(text.contains(&v1), "the previous version serves: {text}");
    // The run resumes as its next attempt, at its deploy step, which
    // applies v2 again as a new deployment (the app still starts slowly).
    let run = wait_for("the run's second attempt", MINUTE, || async {
        let runs = server.run_of(&v2).await;
        assert_eq!(runs.len(), 1, "the same run resumes: {runs:?}");
        let detail = server.get(&format!("/api/v1/runs/{}", runs[0]["id"])).await;
        (detail["attempts"].as_array().map_or(0, Vec::len) == 2).then_some(detail)
    })
    .await;
    assert_eq!(
        run["attempts"][0]["interrupted"],
        "interrupted by a restart of gantry"
    );
    assert_eq!(run["attempts"][1]["from_step_name"], "deploy", "{run}");

    // Recovery concluded the deployment it interrupted: its ledger entry
    // is failed, not left deploying, and was not applied again itself.
    let releases = server
        .get("/api/v1/releases?app=shop&environment=staging")
        .await;
    let of_v2: Vec<&Value> = releases
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["version"] == v2.as_str())
        .collect();
    assert!(
        of_v2.iter().any(|r| r["state"] == "failed"),
        "the interrupted deploy has its failed ledger entry: {of_v2:?}"
    );
    assert!(of_v2.len() <= 2, "{of_v2:?}");

    // The environment is not locked: the next push deploys.
    repos.app.remove("SLOWSTART");
    let v3 = repos.app.commit("fast again");
    wait_for("v3 on staging", MINUTE, || async {
        server.served("staging").await.filter(|t| t.contains(&v3))
    })
    .await;
    let of_v2 = server
        .get(&format!("/api/v1/runs/{}", run["run"]["id"]))
        .await;
    assert!(
        ["superseded", "failed"].contains(&of_v2["run"]["state"].as_str().unwrap_or_default()),
        "{of_v2}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_step_is_taken_over_by_another_once_its_lease_expires() {
    let database = crate::support::PostgresDatabase::create().await;
    let (one, two) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let keys = tempfile::tempdir().expect("key dir");
    let flags = tempfile::tempdir().expect("flag dir");
    let flag = flags.path().join("slow");
    std::fs::write(&flag, "").expect("flag");
    // A hostile step: it ignores SIGTERM and outlives several leases.
    let step = format!(
        "  - {{ name: build, run: \"echo built > built.txt\" }}\n  - {{ name: slow, run: \"trap '' TERM; while [ -f {} ]; do sleep 0.2; done; cat built.txt\" }}\n",
        flag.display()
    );
    let repos = Repos::new(&step);
    let latest = repos.app.head("latest");
    // Two replicas: their own data directories and ports, one database and
    // one secret key; a short lease so the takeover comes soon.
    let env = [
        (
            "GANTRY_RUNNER_READ_ONLY_PATHS",
            flags.path().display().to_string(),
        ),
        ("DATABASE_URL", database.url.clone()),
        (
            "GANTRY_SECRET_KEY_FILE",
            keys.path().join("secret.key").display().to_string(),
        ),
        ("GANTRY_RUNNER_LEASE", "3s".to_string()),
    ];
    let token = admin_token_with(one.path(), &env);
    let first = Server::start_with(
        one.path(),
        &repos.pipeline.path(),
        free_port(),
        &token,
        &env,
    );
    let running = slow_step_running(&first, &latest, &flag).await;

    // A second replica starting does not take over a run whose lease is
    // being renewed (it answers only once its start-up recovery is done).
    let second = Server::start_with(
        two.path(),
        &repos.pipeline.path(),
        free_port(),
        &token,
        &env,
    );
    // While its replica lives, a step that outlives three leases is not
    // taken over: the replica renews the lease (read from the database).
    let pool = sqlx::AnyPool::connect(&database.url)
        .await
        .expect("database");
    wait_for(
        "the lease to be renewed past three leases",
        MINUTE,
        || async {
            let held: Option<i64> =
                sqlx::query_scalar("SELECT heartbeat_at - started_at FROM runs WHERE id = $1")
                    .bind(running["id"].as_i64().unwrap())
                    .fetch_one(&pool)
                    .await
                    .expect("heartbeat");
            held.filter(|held| *held > 9_000).map(|_| ())
        },
    )
    .await;
    pool.close().await;
    let runs = second.run_of(&latest).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], running["id"]);
    assert_eq!(
        runs[0]["state"], "running",
        "the live run stays its replica's"
    );

    // The elected loops run on the first replica; the second stands by.
    let holders = |settings: Value| -> Vec<(String, bool)> {
        settings["singletons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["holder"].as_str().unwrap().to_string(), s["here"] == true))
            .collect()
    };
    let on_second = holders(second.get("/api/v1/settings").await);
    let first_name = holders(first.get("/api/v1/settings").await)[0].0.clone();
    assert_eq!(on_second.len(), LOOPS, "{on_second:?}");
    assert!(
        on_second
            .iter()
            .all(|(holder, here)| *holder == first_name && !here),
        "{on_second:?}"
    );
    assert!(
        second
            .text("/metrics")
            .await
            .contains("gantry_singleton_held{name=\"scan\"} 0"),
        "the second replica does not scan"
    );
    // Each job counts its passes where it runs: scans here, none there.
    let scans = "gantry_job_passes_total{job=\"scan\",outcome=\"ok\"}";
    assert!(
        first.text("/metrics").await.contains(scans),
        "the first replica scans"
    );
    assert!(
        !second.text("/metrics").await.contains("job=\"scan\""),
        "the second replica passes no scan"
    );

    first.kill();
    die_with_gantry("the step", &flag.display().to_string()).await;
    std::fs::remove_file(&flag).expect("unflag");
    // Within a lease, the second replica runs every elected loop.
    wait_for("the loops to fail over", MINUTE, || async {
        holders(second.get("/api/v1/settings").await)
            .iter()
            .all(|(holder, here)| *here && *holder != first_name)
            .then_some(())
    })
    .await;
    assert!(
        second
            .text("/metrics")
            .await
            .contains("gantry_singleton_held{name=\"scan\"} 1"),
        "the second replica scans now"
    );
    wait_for("the second replica's first scan", MINUTE, || async {
        second.text("/metrics").await.contains(scans).then_some(())
    })
    .await;
    let runs = wait_for("the other replica to finish the run", MINUTE, || async {
        let runs = second.run_of(&latest).await;
        runs.iter()
            .any(|r| r["state"] == "succeeded")
            .then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), 1, "the same run resumes, once: {runs:?}");
    assert_eq!(runs[0]["id"], running["id"]);
    let taken = second.get(&format!("/api/v1/runs/{}", running["id"])).await;
    let attempts = taken["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts.len(),
        2,
        "taken over once, not by each look: {taken}"
    );
    let interrupted = attempts[0]["interrupted"].as_str().unwrap_or_default();
    assert!(
        interrupted.starts_with("its replica stopped renewing the run's lease (3s); replica ")
            && interrupted.ends_with("queued it again for any replica to resume"),
        "{taken}"
    );
    assert_ne!(attempts[0]["replica"], attempts[1]["replica"], "{taken}");
    // The workspace stayed on the dead replica: attempt 2 runs from the
    // first step (the build the slow step reads), and says why in the log.
    assert_eq!(attempts[1]["from_step"], 0, "{taken}");
    assert_eq!(taken["steps"][0]["state"], "succeeded");
    assert_eq!(taken["steps"][1]["state"], "succeeded");
    let log = step_log(&second, &taken, 0).await;
    assert!(
        log.contains(&format!(
            "[gantry] attempt 2 on replica {}: this step runs from its start (attempt 1 ended: {interrupted}); the steps before the one it was in run again too",
            attempts[1]["replica"].as_str().unwrap()
        )),
        "{log}"
    );
    assert_eq!(log.matches("[gantry] attempt 2").count(), 1, "{log}");
    // The first replica's folder of attempt 1 outlived it; started again,
    // it sweeps what no attempt goes on in.
    let left = one.path().join(format!(
        "data/work/run-{}-1",
        running["id"].as_i64().unwrap()
    ));
    assert!(
        left.is_dir(),
        "the killed attempt's workspace is left behind"
    );
    let again = Server::start_with(
        one.path(),
        &repos.pipeline.path(),
        free_port(),
        &token,
        &env,
    );
    wait_for("the start-up sweep", MINUTE, || async {
        (!left.exists()).then_some(())
    })
    .await;
    drop(again);
    drop(second);
    database.drop_now().await;
}

/// Two replicas named `names` on one fresh PostgreSQL database (own data
/// directories and ports, one secret key), `local_owner` running the local
/// target; `extra` is set for both.
struct NamedReplicas {
    first: Server,
    second: Server,
    database: crate::support::PostgresDatabase,
    _dirs: [tempfile::TempDir; 3],
}

impl NamedReplicas {
    async fn start(
        repos: &Repos,
        names: [&str; 2],
        local_owner: &str,
        extra: &[(&'static str, String)],
    ) -> NamedReplicas {
        let database = crate::support::PostgresDatabase::create().await;
        let dirs = [(); 3].map(|()| tempfile::tempdir().expect("tempdir"));
        let env = |name: &str| {
            let mut env = vec![
                ("DATABASE_URL", database.url.clone()),
                (
                    "GANTRY_SECRET_KEY_FILE",
                    dirs[2].path().join("secret.key").display().to_string(),
                ),
                ("GANTRY_RUNNER_REPLICA", name.to_string()),
                ("GANTRY_RUNNER_LOCAL_REPLICA", local_owner.to_string()),
            ];
            env.extend(extra.iter().cloned());
            env
        };
        let (first_env, second_env) = (env(names[0]), env(names[1]));
        let token = admin_token_with(dirs[0].path(), &first_env);
        let start = |dir: &tempfile::TempDir, env: &[(&str, String)]| {
            Server::start_with(dir.path(), &repos.pipeline.path(), free_port(), &token, env)
        };
        let first = start(&dirs[0], &first_env);
        let second = start(&dirs[1], &second_env);
        NamedReplicas {
            first,
            second,
            database,
            _dirs: dirs,
        }
    }

    async fn stop(self) {
        drop(self.first);
        drop(self.second);
        self.database.drop_now().await;
    }
}

// With several replicas, `local` environments are owned by the replica
// `runner.local_replica` names: only it claims their runs and runs their
// processes; another replica's proxy says where they are instead of
// failing vaguely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_environments_run_on_the_named_replica_only() {
    let repos = Repos::new(crate::support::flow::QUICK_STEPS);
    let latest = repos.app.head("latest");
    // The other replica starts first and would claim the run if it could.
    let replicas = NamedReplicas::start(&repos, ["other", "owner"], "owner", &[]).await;
    let (other, owner) = (&replicas.first, &replicas.second);
    wait_for("staging to serve the latest commit", MINUTE, || async {
        owner
            .served("staging")
            .await
            .filter(|t| t.contains(&latest))
    })
    .await;
    for run in owner.get("/api/v1/runs").await.as_array().unwrap() {
        let detail = owner.get(&format!("/api/v1/runs/{}", run["id"])).await;
        for attempt in detail["attempts"].as_array().unwrap() {
            assert!(
                attempt["replica"].as_str().unwrap().starts_with("owner-"),
                "{detail}"
            );
        }
    }
    let misdirected = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/", other.port))
        .header("host", format!("staging--shop.localhost:{}", other.port))
        .send()
        .await
        .expect("proxy");
    assert_eq!(misdirected.status(), 421);
    assert_eq!(
        misdirected.text().await.unwrap(),
        "Gantry: environments of the local target run on replica owner (runner.local_replica); this is replica other. Route preview hosts to owner.\n"
    );
    replicas.stop().await;
}

// A run page on one replica follows a run another replica executes: its
// live stream (the run page's) gets the log lines and step states as the
// other replica's runner writes them (LISTEN/NOTIFY), not only what was
// stored when it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_on_one_replica_streams_a_step_another_replica_runs() {
    let flags = tempfile::tempdir().expect("flag dir");
    let flag = flags.path().join("slow");
    std::fs::write(&flag, "").expect("flag");
    let marker = format!("streamed-from-the-runner-{}", std::process::id());
    let step = format!(
        "  - {{ name: slow, run: \"echo before; while [ -f {} ]; do sleep 0.2; done; echo {marker}\" }}\n",
        flag.display()
    );
    let repos = Repos::new(&step);
    let latest = repos.app.head("latest");
    // The run deploys to the local target, which only `runner` runs: the
    // step runs there, the page is watched on `viewer`.
    let shown = [(
        "GANTRY_RUNNER_READ_ONLY_PATHS",
        flags.path().display().to_string(),
    )];
    let replicas = NamedReplicas::start(&repos, ["viewer", "runner"], "runner", &shown).await;
    let viewer = &replicas.first;
    let running = slow_step_running(viewer, &latest, &flag).await;
    let mut stream = viewer
        .fetch(&format!("/api/v1/runs/{}/events", running["id"]))
        .await;
    // Connected (the stored "before" is replayed): now the step goes on.
    let mut seen = String::new();
    while !seen.contains("before") {
        let chunk = stream.chunk().await.expect("the stream").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    std::fs::remove_file(&flag).expect("unflag");
    let streamed = async {
        while !(seen.contains(&marker) && seen.contains("\"state\":\"succeeded\"")) {
            let chunk = stream.chunk().await.expect("the stream").expect("bytes");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(MINUTE, streamed)
        .await
        .expect("the other replica's step streamed here within a minute");
    let detail = viewer.get(&format!("/api/v1/runs/{}", running["id"])).await;
    assert!(
        detail["attempts"][0]["replica"]
            .as_str()
            .unwrap_or_default()
            .starts_with("runner-"),
        "{detail}"
    );
    replicas.stop().await;
}

// A replica cut off from the database for longer than a lease loses its
// run to another replica. When it can reach the database again, its next
// renewal finds the run taken over: it stops the step and writes nothing
// over the attempt that took over (run, steps and attempts stay that
// attempt's). Here the other replica's take-over and start of the step
// are written as it writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_run_stops_and_writes_nothing_over_the_attempt_that_took_over() {
    let flags = tempfile::tempdir().expect("flag dir");
    let flag = flags.path().join("slow");
    std::fs::write(&flag, "").expect("flag");
    let step = format!(
        "  - {{ name: slow, run: \"while [ -f {} ]; do sleep 0.2; done\" }}\n",
        flag.display()
    );
    let repos = Repos::new(&step);
    let latest = repos.app.head("latest");
    let pipeline = repos.pipeline.path();
    let shown = flags.path().to_path_buf();
    let mut app = crate::support::TestApp::with_config("postgres", |config| {
        config.pipeline_repo = Some(pipeline);
        config.poll_interval = Duration::from_secs(3600);
        config.runner_lease = Duration::from_secs(3);
        config.runner_read_only_paths.push(shown);
    })
    .await;
    app.start_flow().await;
    let pool = app.db().pool().clone();
    let run: i64 = wait_for("the step to run", MINUTE, || async {
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT r.id FROM runs r JOIN steps s ON s.run_id = r.id
             WHERE r.commit_sha = $1 AND s.state = 'running'",
        )
        .bind(&latest)
        .fetch_optional(&pool)
        .await
        .expect("runs");
        running.filter(|_| alive(&flag.display().to_string()))
    })
    .await;
    // Replica B took the run over and started the step as attempt 2.
    sqlx::query(
        "UPDATE runs SET runner_id = 'replica-b-1', attempt = 2, heartbeat_at = heartbeat_at
         WHERE id = $1",
    )
    .bind(run)
    .execute(&pool)
    .await
    .expect("take over");
    sqlx::query("UPDATE steps SET attempt = 2 WHERE run_id = $1")
        .bind(run)
        .execute(&pool)
        .await
        .expect("start the step");
    wait_for("this replica to stop the step it lost", MINUTE, || async {
        (!alive(&flag.display().to_string())).then_some(())
    })
    .await;
    // Its executor has returned once its workspace is gone.
    let workspace = app.data_path().join("work").join(format!("run-{run}-1"));
    wait_for("the lost attempt to end", MINUTE, || async {
        (!workspace.exists()).then_some(())
    })
    .await;
    let (state, runner, finished): (String, String, Option<i64>) =
        sqlx::query_as("SELECT state, runner_id, finished_at FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(&pool)
            .await
            .expect("run");
    assert_eq!(
        (state.as_str(), runner.as_str(), finished),
        ("running", "replica-b-1", None),
        "the run is still attempt 2's"
    );
    let (step_state, step_attempt): (String, i64) =
        sqlx::query_as("SELECT state, attempt FROM steps WHERE run_id = $1")
            .bind(run)
            .fetch_one(&pool)
            .await
            .expect("step");
    assert_eq!((step_state.as_str(), step_attempt), ("running", 2));
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_attempts WHERE run_id = $1 AND finished_at IS NULL",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .expect("attempts");
    assert_eq!(
        open, 1,
        "attempt 1 is not closed by the replica that lost it"
    );
    std::fs::remove_file(&flag).ok();
    app.stop().await;
}

/// `method` `path` with a JSON body on `server`, as its admin; the status.
async fn send_json(server: &Server, method: reqwest::Method, path: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{}{path}", server.port))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

// Gantry killed while a notification is on its way — the receiver has it
// and has not answered — sends it again after the restart, as the same
// delivery (its `x-gantry-delivery` id says so, for the receiver to drop
// it if it did act on the first), and queues it once: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_interrupted_by_a_kill_is_sent_again_as_the_same_delivery() {
    let (receiver, base) = crate::support::receiver::Receiver::start().await;
    receiver.hold("/hook", 1);
    let data = tempfile::tempdir().expect("tempdir");
    let repos = Repos::new(crate::support::flow::QUICK_STEPS);
    let port = free_port();
    let token = admin_token(data.path());
    let server = Server::start(data.path(), &repos.pipeline.path(), port, &token);
    let put = reqwest::Method::PUT;
    let url = serde_json::json!({ "value": format!("{base}/hook") });
    assert_eq!(
        send_json(&server, put.clone(), "/api/v1/secrets/HOOK_URL", url).await,
        204
    );
    let channel = serde_json::json!({ "kind": "webhook", "url_secret": "HOOK_URL",
        "rules": [{ "events": ["run_failed"] }] });
    let stored = send_json(&server, put, "/api/v1/channels/hook", channel).await;
    assert!((200..300).contains(&stored), "{stored}");
    let test = reqwest::Method::POST;
    let queued = send_json(
        &server,
        test,
        "/api/v1/channels/hook/test",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(queued, 202);
    wait_for("the receiver to get the message", MINUTE, || async {
        (receiver.at("/hook").len() == 1).then_some(())
    })
    .await;
    server.kill();

    let server = Server::start(data.path(), &repos.pipeline.path(), port, &token);
    let got = wait_for("the message to be sent again", MINUTE, || async {
        let got = receiver.at("/hook");
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[0].body["event"], "test");
    let id = |n: usize| {
        got[n].headers["x-gantry-delivery"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(id(0), id(1), "the same delivery");
    // The id is inside what is signed, too.
    assert_eq!(got[1].body["delivery"], id(1).as_str());
    let log = wait_for("the delivery to be logged delivered", MINUTE, || async {
        let log = server.get("/api/v1/channels/hook/deliveries").await;
        (log[0]["state"] == "delivered").then_some(log)
    })
    .await;
    assert_eq!(log.as_array().unwrap().len(), 1, "queued once: {log}");
    assert_eq!(log[0]["id"].to_string(), id(0), "{log}");
    drop(server);
}
