//! Bad input must be harmless: each case gives a precise error or a
//! contained failure, nothing outside the workspace is touched, and the
//! server keeps serving.

use std::time::Duration;

use crate::support::TestApp;
use crate::support::flow::{Repos, pipeline_yaml, wait_for};

const MINUTE: Duration = Duration::from_secs(60);

async fn start(repos: &Repos, configure: impl FnOnce(&mut gantry::config::Config)) -> TestApp {
    let pipeline = repos.pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline);
        config.poll_interval = Duration::from_secs(3600);
        configure(config);
    })
    .await;
    app.start_flow().await;
    app
}

/// The finished run of `branch` (by commit), as the API returns it.
async fn finished_run(app: &TestApp, sha: &str) -> serde_json::Value {
    let id = wait_for("the run to finish", MINUTE, || async {
        let runs = app.get("/api/v1/runs").await.json();
        runs.as_array()?
            .iter()
            .find(|r| {
                r["commit_sha"] == sha
                    && !["queued", "running", "waiting_for_approval"]
                        .contains(&r["state"].as_str().unwrap_or(""))
            })
            .map(|r| r["id"].as_i64().unwrap())
    })
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_step_times_out_and_its_processes_are_stopped() {
    // A command line of this test's own: nothing else on the machine (a
    // second copy of the suite, a shell) matches it.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let sleeper = format!("sleep 300.{nonce}");
    let repos = Repos::new(&format!(
        "  - {{ name: hang, run: \"{sleeper} & wait\", timeout: 1s }}\n"
    ));
    let mut app = start(&repos, |_| {}).await;
    let run = finished_run(&app, &repos.app.head("latest")).await;
    assert_eq!(run["run"]["state"], "failed");
    assert_eq!(run["steps"][0]["state"], "failed");
    assert_eq!(run["steps"][0]["error"], "timed out after 1s");
    assert_eq!(run["steps"][1]["state"], "skipped");
    assert_eq!(run["error"], "step hang timed out after 1s");
    // The background `sleep` of the step was in its sandbox: it was
    // stopped with it (on a busy machine, a moment after the run ended).
    wait_for("the step's background process to stop", MINUTE, || async {
        let sleepers = std::process::Command::new("pgrep")
            .args(["-fx", &sleeper])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&sleepers.stdout)
            .trim()
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(app.get("/healthz").await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_printing_without_end_is_capped_with_a_visible_notice() {
    // 40 MB without a newline, then a line.
    let repos = Repos::new(
        "  - { name: noisy, run: \"head -c 40000000 /dev/zero | tr '\\\\0' x; echo; echo done\" }\n",
    );
    let mut app = start(&repos, |config| config.runner_log_limit_bytes = 256 * 1024).await;
    let run = finished_run(&app, &repos.app.head("latest")).await;
    assert_eq!(run["steps"][0]["state"], "succeeded", "{run}");
    assert_eq!(run["steps"][0]["log_truncated"], true);
    assert!(run["steps"][0]["log_bytes"].as_i64().unwrap() >= 40_000_000);
    let log = app
        .get(&format!(
            "/api/v1/runs/{}/steps/{}/log",
            run["run"]["id"], run["steps"][0]["id"]
        ))
        .await
        .text();
    assert!(
        log.len() < 300 * 1024,
        "stored log stays near the limit: {} bytes",
        log.len()
    );
    assert!(
        log.contains("[gantry] log truncated:"),
        "the cut is visible"
    );
    assert!(log.contains("(limit 262144 bytes)"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branch_names_and_commit_messages_are_data_not_code() {
    let repos =
        Repos::new("  - { name: echo, run: \"printf 'branch=%s\\\\n' \\\"$GANTRY_BRANCH\\\"\" }\n");
    let marker = std::path::PathBuf::from(format!("/tmp/gantry_pwned_{}", std::process::id()));
    let branch = format!("feature/$(touch${{IFS}}{})", marker.display());
    repos.app.checkout("latest");
    repos.app.git(&["checkout", "-q", "-b", &branch]);
    repos.app.write("x", "1");
    let sha = repos
        .app
        .commit("<script>alert('x')</script> & <b>bold</b>");
    let mut app = start(&repos, |_| {}).await;
    let run = finished_run(&app, &sha).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert!(!marker.exists(), "the branch name was executed");
    let log = app
        .get(&format!(
            "/api/v1/runs/{}/steps/{}/log",
            run["run"]["id"], run["steps"][0]["id"]
        ))
        .await
        .text();
    assert_eq!(log, format!("branch={branch}\n"));
    let env = gantry::gitops::stack::preview_name("preview", &branch);
    assert!(gantry::gitops::load::valid_name(&env), "{env}");
    let html = app.get("/").await.text();
    assert!(
        !html.contains("<script>alert"),
        "the commit message is escaped"
    );
    assert!(html.contains("&lt;script&gt;alert"), "and shown");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_whose_repo_cannot_be_fetched_is_reported_and_others_keep_working() {
    let repos = Repos::new("  - { name: build, run: \"true\" }\n");
    repos.pipeline.write(
        "apps/ghost/app.yaml",
        "apiVersion: gantry.dev/v1\nsource: /nonexistent/ghost.git\n",
    );
    repos.pipeline.write(
        "apps/ghost/pipeline.yaml",
        &pipeline_yaml("  - { name: build, run: \"true\" }\n"),
    );
    repos.pipeline.commit("ghost app");
    let mut app = start(&repos, |_| {}).await;
    wait_for("staging of shop to be live", MINUTE, || async {
        let response = app.get_host("staging--shop.localhost", "/").await;
        (response.status == 200).then_some(())
    })
    .await;
    let status = app.get("/api/v1/config").await.json();
    let issue = status["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"] == "apps/ghost/app.yaml")
        .unwrap_or_else(|| panic!("ghost not reported: {status}"))
        .clone();
    assert_eq!(issue["field"], "source");
    assert!(
        issue["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot fetch /nonexistent/ghost.git"),
        "{issue}"
    );
    assert!(
        app.get("/")
            .await
            .text()
            .contains("apps/ghost/app.yaml source: cannot fetch")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_reach_the_step_and_never_its_log() {
    let repos = Repos::new(
        "  - { name: use-secret, run: \"echo token is $NPM_TOKEN; test \\\"$NPM_TOKEN\\\" = s3cr3t-value\", secrets: [NPM_TOKEN] }\n",
    );
    let pipeline = repos.pipeline.path();
    let mut app = TestApp::with_config("sqlite", |config| {
        config.pipeline_repo = Some(pipeline);
        config.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let request = axum::http::Request::put("/api/v1/secrets/NPM_TOKEN")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"value":"s3cr3t-value"}"#))
        .expect("request");
    assert_eq!(app.request(request).await.status, 204);
    app.start_flow().await;
    let run = finished_run(&app, &repos.app.head("latest")).await;
    assert_eq!(
        run["steps"][0]["state"], "succeeded",
        "the step saw the value: {run}"
    );
    let log = app
        .get(&format!(
            "/api/v1/runs/{}/steps/{}/log",
            run["run"]["id"], run["steps"][0]["id"]
        ))
        .await
        .text();
    assert_eq!(log, "token is ***\n");
    let listed = app.get("/api/v1/secrets").await.text();
    assert!(!listed.contains("s3cr3t"), "{listed}");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM secrets")
        .fetch_one(app.db().pool())
        .await
        .expect("row");
    assert!(!String::from_utf8_lossy(&stored).contains("s3cr3t"));
    app.stop().await;
}
