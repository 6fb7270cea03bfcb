//! Canaries on the local target: Gantry's proxy splits traffic by weight
//! and measures each version. A canary answering 5xx is aborted by its
//! analysis with no more than its share of requests failed; a canary with
//! no traffic stays inconclusive and aborts at its limit (and, with
//! `on_abort: rollback`, pins the environment); a healthy one walks every
//! step, its pauses and an admin's promote included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, start_with, wait_for};

/// Answers 500 everywhere but its health check when its build has BROKEN,
/// and never answers there when it has HANG; says its commit and which
/// process it is.
const APP_PY: &str = r#"import http.server, os, time
BROKEN = os.path.exists("BROKEN")
HANG = os.path.exists("HANG")
COMMIT = os.environ.get("GANTRY_COMMIT", "")
# Which process answers: a restarted one says something new.
PROCESS = os.urandom(6).hex()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if HANG and self.path != "/healthz":
            time.sleep(3600)
        code = 200 if self.path == "/healthz" or not BROKEN else 500
        body = (("broken " if BROKEN else "fine ") + COMMIT + " " + PROCESS + "\n").encode()
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
"#;

const PIPELINE: &str = "apiVersion: gantry.dev/v1
steps:
  - { name: build, run: \"true\" }
  - deploy
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
";

async fn start(strategy: &str) -> (TestApp, Repos) {
    start_configured(strategy, |_| {}).await
}

/// [`start`], with the server's configuration changed by `configure`.
async fn start_configured(
    strategy: &str,
    configure: impl FnOnce(&mut gantry::config::Config),
) -> (TestApp, Repos) {
    let repos = Repos::new("");
    repos.app.write("app.py", APP_PY);
    repos.app.commit("an app that can break");
    let app_yaml = format!(
        "apiVersion: gantry.dev/v1
source: {}
stack:
  - env: staging
    branch: latest
    target: local
  - env: production
    branch: master
    target: local
    strategy:
{strategy}",
        repos.app.path()
    );
    repos.pipeline.write("apps/shop/app.yaml", &app_yaml);
    repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    repos.pipeline.commit("shop rolls out as a canary");
    let app = start_with("sqlite", &repos, configure).await;
    scan(&app).await;
    // The first version has nothing to be a canary beside: it goes whole.
    let first = repos.app.head("master");
    let run = ended(&app, &first).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    (app, repos)
}

/// The production run of `sha`, once it has ended.
pub(crate) async fn ended(app: &TestApp, sha: &str) -> Value {
    let id = wait_for("the production run to end", 3 * MINUTE, || async {
        let runs = app.get("/api/v1/runs?environment=production").await.json();
        runs.as_array()?
            .iter()
            .find(|r| {
                r["commit_sha"] == sha
                    && ["succeeded", "failed", "cancelled", "superseded"]
                        .contains(&r["state"].as_str().unwrap_or(""))
            })
            .and_then(|r| r["id"].as_i64())
    })
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}

/// The production run of `sha` while it runs, once its deploy log says `text`.
pub(crate) async fn deploy_says(app: &TestApp, sha: &str, text: &str) -> i64 {
    wait_for(
        &format!("the deploy to say {text:?}"),
        2 * MINUTE,
        || async {
            let runs = app.get("/api/v1/runs?environment=production").await.json();
            let run = runs
                .as_array()?
                .iter()
                .find(|r| r["commit_sha"] == sha)?
                .clone();
            let id = run["id"].as_i64()?;
            let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
            let step = detail["steps"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "deploy")?
                .clone();
            let log = app
                .get(&format!("/api/v1/runs/{id}/steps/{}/log", step["id"]))
                .await
                .text();
            log.contains(text).then_some(id)
        },
    )
    .await
}

/// Sends requests to production until `stop`, counting from when `go`:
/// (answered, 5xx).
async fn traffic(app: &TestApp, go: &AtomicBool, stop: &AtomicBool) -> (u64, u64) {
    let (mut total, mut failed) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let response = app.get_host("production--shop.localhost:3000", "/").await;
        if go.load(Ordering::Relaxed) {
            total += 1;
            failed += u64::from(response.status.is_server_error());
        }
        tokio::task::yield_now().await;
    }
    (total, failed)
}

/// Production's release of `sha`, from the ledger.
pub(crate) async fn production_release(app: &TestApp, sha: &str) -> Value {
    let releases = app
        .get("/api/v1/releases?app=shop&environment=production")
        .await
        .json();
    releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == sha)
        .cloned()
        .unwrap_or_else(|| panic!("no production release of {sha}: {releases}"))
}

/// The production environment as the environments list has it.
pub(crate) async fn production_environment(app: &TestApp) -> Value {
    let environments = app.get("/api/v1/environments").await.json();
    environments
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "production")
        .cloned()
        .unwrap_or_else(|| panic!("no production environment: {environments}"))
}

fn commit(repos: &Repos, file: &str, message: &str) -> String {
    repos.app.write(file, message);
    repos.app.commit(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_answering_5xx_is_aborted_by_its_analysis_within_its_share() {
    let (mut app, repos) = start(
        "      canary:
        steps:
          - weight: 20
          - analysis: { max_error_rate: 1%, min_requests: 20, interval: 2s, count: 2 }
          - weight: 100
",
    )
    .await;
    let broken = commit(&repos, "BROKEN", "break every answer");
    scan(&app).await;
    let (go, stop) = (AtomicBool::new(false), AtomicBool::new(false));
    let ((total, failed), run) = tokio::join!(traffic(&app, &go, &stop), async {
        // Counted from when the canary gets its share.
        deploy_says(&app, &broken, "canary step 1").await;
        go.store(true, Ordering::Relaxed);
        let run = ended(&app, &broken).await;
        stop.store(true, Ordering::Relaxed);
        run
    });
    assert_eq!(run["run"]["state"], "failed", "{run}");
    let error = run["run"]["reason"]
        .as_str()
        .or(run["error"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("canary aborted: analysis failed"), "{run}");
    // No more than the canary's share of requests failed (20 of every 100).
    assert!(total > 20, "traffic flowed: {total}");
    // (The split is exact per hundred requests: the first hundred of the
    // phase may send up to 20 more to the canary than its share.)
    assert!(
        failed * 100 <= total * 20 + 2000,
        "{failed} of {total} answered 5xx"
    );
    assert!(failed > 0, "the canary was measured with real requests");
    // Every request goes to the stable version again.
    for _ in 0..20 {
        let response = app.get_host("production--shop.localhost:3000", "/").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.text().starts_with("fine "), "{}", response.text());
    }
    // The ledger records an aborted canary with what it measured.
    let aborted = production_release(&app, broken.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    assert!(
        aborted["reason"]
            .as_str()
            .unwrap()
            .contains("measured: check 1: canary"),
        "{aborted}"
    );
    assert_eq!(run["rollout"]["phase"], "aborted", "{run}");
    assert!(
        run["rollout"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("analysis failed"),
        "{run}"
    );
    let production = production_environment(&app).await;
    assert_eq!(production["state"], "live", "{production}");
    assert_ne!(production["commit_sha"], broken.as_str());
    assert!(
        production["pin"].is_null(),
        "on_abort defaults to stay: {production}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_without_traffic_stays_inconclusive_and_aborts_at_its_limit() {
    let (mut app, repos) = start(
        "      canary:
        steps:
          - weight: 50
          - analysis: { max_error_rate: 1%, min_requests: 5, interval: 1s, count: 2, inconclusive_limit: 1 }
        on_abort: rollback
",
    )
    .await;
    let quiet = commit(&repos, "NOTES", "a change nobody visits");
    scan(&app).await;
    let run = ended(&app, &quiet).await;
    assert_eq!(run["run"]["state"], "failed", "{run}");
    let aborted = production_release(&app, quiet.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let reason = aborted["reason"].as_str().unwrap();
    assert!(
        reason.contains("2 inconclusive checks (limit 1)"),
        "{reason}"
    );
    assert!(
        reason.contains("inconclusive never counts as a success"),
        "{reason}"
    );
    // on_abort: rollback pins production to its stable version.
    let production = production_environment(&app).await;
    assert_eq!(production["pin"]["pinned_by"], "gantry", "{production}");
    let stable = repos.app.git(&["rev-parse", "HEAD~1"]);
    assert_eq!(
        production["pin"]["version"],
        stable.trim(),
        "pinned to the stable version: {production}"
    );
    assert_ne!(production["commit_sha"], quiet.as_str());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_canary_walks_every_step_and_an_admin_promotes_it() {
    let (mut app, repos) = start(
        "      canary:
        steps:
          - weight: 10
          - pause: 30m
          - analysis: { max_error_rate: 1%, max_p95: 5s, min_requests: 10, interval: 1s, count: 1 }
          - weight: 50
          - pause: {}
",
    )
    .await;
    let good = commit(&repos, "FEATURE", "a good change");
    scan(&app).await;
    let (go, stop) = (AtomicBool::new(true), AtomicBool::new(false));
    let ((total, failed), run) = tokio::join!(traffic(&app, &go, &stop), async {
        // An admin pauses it: it holds there, past the end of its pause,
        // until they promote it on.
        let id = deploy_says(&app, &good, "pause for 1800s").await;
        let paused = app
            .post_json(
                &format!("/api/v1/runs/{id}/rollout"),
                json!({ "action": "pause" }),
            )
            .await;
        assert_eq!(paused.status, 202, "{}", paused.text());
        deploy_says(&app, &good, "paused by an admin").await;
        app.state.clock.advance(Duration::from_secs(31 * 60));
        let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
        assert_eq!(detail["rollout"]["phase"], "paused", "{detail}");
        assert_eq!(
            (
                detail["rollout"]["step"].as_i64(),
                detail["rollout"]["weight"].as_i64()
            ),
            (Some(2), Some(10)),
            "{detail}"
        );
        let resumed = app
            .post_json(
                &format!("/api/v1/runs/{id}/rollout"),
                json!({ "action": "promote" }),
            )
            .await;
        assert_eq!(resumed.status, 202, "{}", resumed.text());
        deploy_says(&app, &good, "paused until an admin promotes").await;
        // The run page's view: waiting at the last step, half the traffic,
        // the analysis check that passed.
        let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
        let rollout = &detail["rollout"];
        assert_eq!(
            (
                rollout["phase"].as_str(),
                rollout["step"].as_i64(),
                rollout["steps"].as_i64(),
                rollout["weight"].as_i64()
            ),
            (Some("waiting"), Some(5), Some(5), Some(50)),
            "{detail}"
        );
        assert!(
            rollout["checks"][0]
                .as_str()
                .unwrap()
                .ends_with("→ success"),
            "{rollout}"
        );
        // Only an admin of the app may promote; a bad action is refused.
        let developer = app
            .token("dev", app::dto::Role::Developer, Some("shop"))
            .await;
        let refused = app
            .post_as(
                &developer,
                &format!("/api/v1/runs/{id}/rollout"),
                json!({ "action": "promote" }),
            )
            .await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let nonsense = app
            .post_json(
                &format!("/api/v1/runs/{id}/rollout"),
                json!({ "action": "yolo" }),
            )
            .await;
        assert_eq!(nonsense.status, 400, "{}", nonsense.text());
        let promoted = app
            .post_json(
                &format!("/api/v1/runs/{id}/rollout"),
                json!({ "action": "promote" }),
            )
            .await;
        assert_eq!(promoted.status, 202, "{}", promoted.text());
        let run = ended(&app, &good).await;
        stop.store(true, Ordering::Relaxed);
        run
    });
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert_eq!(failed, 0, "{failed} of {total} failed");
    let body = app
        .get_host("production--shop.localhost:3000", "/")
        .await
        .text();
    assert!(body.starts_with(&format!("fine {good} ")), "{body}");
    let deploy = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deploy")
        .cloned()
        .unwrap();
    let log = app
        .get(&format!(
            "/api/v1/runs/{}/steps/{}/log",
            run["run"]["id"], deploy["id"]
        ))
        .await
        .text();
    for line in [
        "canary step 1: 10 % of requests to the canary",
        "canary step 2: pause for 1800s",
        "canary: resumed by an admin",
        "→ success",
        "canary step 4: 50 % of requests to the canary",
        "canary: promoted by an admin",
        "canary: every step passed; promoting it to stable",
    ] {
        assert!(log.contains(line), "{line:?} in {log}");
    }
    let audit = app.get("/api/v1/audit").await.json();
    for action in ["run.rollout.pause", "run.rollout.promote"] {
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action),
            "{action} in {audit}"
        );
    }
    assert_eq!(run["rollout"]["phase"], "promoted", "{run}");
    app.stop().await;
}

/// A hostile canary that never answers cannot pass its analysis by
/// staying silent: a request its visitor gave up on counts as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_never_answers_is_aborted_not_passed() {
    let (mut app, repos) = start(
        "      canary:
        steps:
          - weight: 50
          - analysis: { max_error_rate: 1%, min_requests: 5, interval: 2s, count: 2 }
          - weight: 100
",
    )
    .await;
    let silent = commit(&repos, "HANG", "answer nothing");
    scan(&app).await;
    let stop = AtomicBool::new(false);
    let (gave_up, run) = tokio::join!(
        async {
            // Visitors who wait a little, then leave.
            let mut gave_up = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let visit = app.get_host("production--shop.localhost:3000", "/");
                if tokio::time::timeout(Duration::from_millis(300), visit)
                    .await
                    .is_err()
                {
                    gave_up += 1;
                }
            }
            gave_up
        },
        async {
            let run = ended(&app, &silent).await;
            stop.store(true, Ordering::Relaxed);
            run
        }
    );
    assert!(gave_up > 0, "the canary got requests it never answered");
    assert_eq!(run["run"]["state"], "failed", "{run}");
    // Failed, not merely inconclusive: the silence was counted as errors.
    let reason = run["rollout"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("analysis failed: 1 failed check") && reason.contains("5xx"),
        "{run}"
    );
    let aborted = production_release(&app, silent.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    // The stable version answers every request again.
    for _ in 0..10 {
        let response = app.get_host("production--shop.localhost:3000", "/").await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    app.stop().await;
}

/// A newer push supersedes a run whose canary waits: the canary is ended,
/// the run ends superseded (not failed), and nothing is pinned — only a
/// canary judged bad pins with `on_abort: rollback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_superseded_canary_ends_with_its_run_and_pins_nothing() {
    let (mut app, repos) = start(
        "      canary:
        steps:
          - weight: 50
          - pause: {}
        on_abort: rollback
",
    )
    .await;
    let waiting = commit(&repos, "FIRST", "waits at the gate");
    scan(&app).await;
    deploy_says(&app, &waiting, "paused until an admin promotes").await;
    let newer = commit(&repos, "SECOND", "a newer push");
    scan(&app).await;
    let run = ended(&app, &waiting).await;
    assert_eq!(run["run"]["state"], "superseded", "{run}");
    assert_eq!(run["rollout"]["phase"], "aborted", "{run}");
    // The newer run's canary waits at the same gate: an admin lets it on.
    let id = deploy_says(&app, &newer, "paused until an admin promotes").await;
    let promoted = app
        .post_json(
            &format!("/api/v1/runs/{id}/rollout"),
            json!({ "action": "promote" }),
        )
        .await;
    assert_eq!(promoted.status, 202, "{}", promoted.text());
    let done = ended(&app, &newer).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let production = production_environment(&app).await;
    assert!(production["pin"].is_null(), "{production}");
    assert_eq!(production["commit_sha"], newer.as_str(), "{production}");
    app.stop().await;
}

/// What production answers: (the commit, the process).
async fn answered_by(app: &TestApp) -> (String, String) {
    let response = app.get_host("production--shop.localhost:3000", "/").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    let mut words = text.split_whitespace().skip(1);
    (
        words.next().unwrap_or_default().to_string(),
        words.next().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blue_green_switches_every_request_and_switches_back_to_the_old_process_at_once() {
    let (mut app, repos) = start("      blue_green: { keep: 30m }\n").await;
    let first = repos.app.head("master");
    let (version, old_process) = answered_by(&app).await;
    assert_eq!(version, first);

    let change = commit(&repos, "NOTES", "a new version");
    scan(&app).await;
    let id = deploy_says(
        &app,
        &change,
        "switched: every request goes to the new version",
    )
    .await;
    let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
    assert_eq!(detail["rollout"]["kind"], "blue_green", "{detail}");
    for _ in 0..20 {
        let (version, process) = answered_by(&app).await;
        assert_eq!(version, change, "every request goes to the new version");
        assert_ne!(process, old_process);
    }
    // An admin switches back: the old process, never stopped, answers
    // again as soon as the abort is heard.
    let aborted = app
        .post_json(
            &format!("/api/v1/runs/{id}/rollout"),
            json!({ "action": "abort" }),
        )
        .await;
    assert_eq!(aborted.status, 202, "{}", aborted.text());
    let run = ended(&app, &change).await;
    assert_eq!(run["run"]["state"], "failed", "{run}");
    assert_eq!(run["rollout"]["phase"], "aborted", "{run}");
    for _ in 0..20 {
        assert_eq!(
            answered_by(&app).await,
            (first.clone(), old_process.clone()),
            "the same old process, not a restarted one"
        );
    }

    // An admin's promote ends the keep early: the new version stays.
    let next = commit(&repos, "NOTES", "a newer version");
    scan(&app).await;
    let id = deploy_says(&app, &next, "the old version is kept").await;
    let promoted = app
        .post_json(
            &format!("/api/v1/runs/{id}/rollout"),
            json!({ "action": "promote" }),
        )
        .await;
    assert_eq!(promoted.status, 202, "{}", promoted.text());
    let run = ended(&app, &next).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    assert_eq!(run["rollout"]["phase"], "promoted", "{run}");
    assert_eq!(answered_by(&app).await.0, next);
    app.stop().await;
}

/// An analysis step reaches the canary alone (never the stable version) at
/// `$CANARY_URL`, through the sandbox's relay and the preview socket: a
/// healthy canary's step passes and the canary completes; a broken one's
/// step fails and the canary is aborted with the step's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_analysis_step_checks_the_canary_alone_and_aborts_it_when_it_fails() {
    // Environment URLs on this host's loopback, as in the demo: sandboxes
    // reach them (and the canary) through their relay.
    let (mut app, repos) = start_configured(
        r#"      canary:
        steps:
          - weight: 10
          - analysis:
              step: { run: "python3 -c 'import os, urllib.request; print(urllib.request.urlopen(os.environ[\"CANARY_URL\"] + \"hello\", timeout=10).read().decode().strip())'", timeout: 30s }
              interval: 1s
              count: 2
"#,
        |config| config.public_url = "http://localhost:3000/".parse().expect("url"),
    )
    .await;
    // The stable version answers "fine <its commit>": the step's line
    // names the canary's commit, so it reached the canary and only it.
    let fine = commit(&repos, "NOTES", "a healthy change");
    scan(&app).await;
    // While the canary runs, the route to it alone is the preview
    // socket's: Gantry's own listener (the dashboard, the public proxy)
    // has none.
    deploy_says(&app, &fine, "canary step 1").await;
    let outside = app.get("/canary/shop/production/hello").await;
    assert!(
        !outside.text().contains(&format!("fine {fine}")),
        "{} {}",
        outside.status,
        outside.text()
    );
    let run = ended(&app, &fine).await;
    assert_eq!(run["run"]["state"], "succeeded", "{run}");
    let deploy = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deploy")
        .cloned()
        .unwrap();
    let log = app
        .get(&format!(
            "/api/v1/runs/{}/steps/{}/log",
            run["run"]["id"], deploy["id"]
        ))
        .await
        .text();
    let passed = format!("step passed — fine {fine}");
    assert_eq!(
        log.matches(&passed).count(),
        2,
        "two checks, each of the canary: {log}"
    );

    let broken = commit(&repos, "BROKEN", "break every answer");
    scan(&app).await;
    let run = ended(&app, &broken).await;
    assert_eq!(run["run"]["state"], "failed", "{run}");
    let aborted = production_release(&app, broken.as_str()).await;
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    let reason = aborted["reason"].as_str().unwrap();
    assert!(reason.contains("the step exited with code 1"), "{reason}");
    // Production serves the healthy version still.
    let production = production_environment(&app).await;
    assert_eq!(production["commit_sha"], fine.as_str(), "{production}");
    app.stop().await;
}
