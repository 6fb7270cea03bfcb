//! Build once, promote: production deploys the build staging verified (its
//! build step skipped, the same image and files), holds what staging has
//! not verified for the soak and releases it when the soak is over, and
//! refuses a rejected artifact — rejected by an admin, or rolled back as
//! faulty — until an admin overrides, audited.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, scan, served, start_with, wait_for};

/// Serves what the build step wrote: which run built it.
const APP_PY: &str = r#"import http.server, os
BUILT = open("BUILT").read() if os.path.exists("BUILT") else "not built\n"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = BUILT.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The build writes which run built it and declares the app's digest as
/// the image; the check after it reads the build.
const PIPELINE: &str = r#"apiVersion: gantry.dev/v1
steps:
  - name: build
    build: true
    run: |
      echo "built by run $GANTRY_RUN_ID" > BUILT
      echo "image=registry.example.com/shop@sha256:$(sha256sum app.py | cut -c1-64)" >> "$GANTRY_OUTPUTS"
  - { name: check, run: "grep -q 'built by run' BUILT" }
  - deploy
local:
  run: python3 app.py
  health: /
  health_timeout: 20s
"#;

fn app_yaml(source: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1
source: {source}
stack:
  - env: staging
    branch: latest
    target: local
    stable_after: 1s
  - env: production
    branch: master
    target: local
    promote_from: staging
    requires: {{ verified_in: staging, soak: 30m }}
"
    )
}

async fn start(backend: &str) -> (TestApp, Repos) {
    let repos = Repos::new("");
    repos.app.checkout("latest");
    repos.app.write("app.py", APP_PY);
    repos.app.commit("serve the build");
    repos.app.checkout("master");
    repos
        .pipeline
        .write("apps/shop/app.yaml", &app_yaml(&repos.app.path()));
    repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    repos.pipeline.commit("shop builds once");
    let app = start_with(backend, &repos, |_| {}).await;
    (app, repos)
}

/// The newest run of `env`, as the runs list has it, once `ready` says so.
async fn run_of(app: &TestApp, env: &str, sha: &str, states: &[&str]) -> Value {
    let id = wait_for(
        &format!("a run of {sha} in {env} to be one of {states:?}"),
        2 * MINUTE,
        || async {
            let runs = app
                .get(&format!("/api/v1/runs?environment={env}"))
                .await
                .json();
            runs.as_array()?
                .iter()
                .find(|r| {
                    r["commit_sha"] == sha && states.contains(&r["state"].as_str().unwrap_or(""))
                })
                .and_then(|r| r["id"].as_i64())
        },
    )
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}

/// The held run of `env` as the approval screen lists it.
async fn pending(app: &TestApp, env: &str, sha: &str) -> Value {
    let list = app.get("/api/v1/approvals").await.json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["environment"] == env && p["commit_sha"] == sha)
        .cloned()
        .unwrap_or_else(|| panic!("no held {env} run of {sha} in {list}"))
}

/// `latest` moves on by a commit; `master` follows it when `promote`.
fn advance_latest(repos: &Repos, message: &str) -> String {
    repos.app.checkout("latest");
    repos.app.write("CHANGES", message);
    let sha = repos.app.commit(message);
    repos.app.checkout("master");
    sha
}

fn fast_forward_master(repos: &Repos) {
    repos.app.git(&["merge", "-q", "--ff-only", "latest"]);
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run}"))
}

fn output<'a>(run: &'a Value, name: &str) -> &'a str {
    run["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .and_then(|o| o["value"].as_str())
        .unwrap_or_else(|| panic!("no output {name} in {run}"))
}

async fn release_of(app: &TestApp, env: &str, run_id: i64) -> Value {
    wait_for(
        &format!("the {env} release of run {run_id}"),
        MINUTE,
        || async {
            let list = app
                .get(&format!("/api/v1/releases?app=shop&environment={env}"))
                .await
                .json();
            list.as_array()?
                .iter()
                .find(|r| {
                    r["run_id"] == run_id
                        && ["live", "stable"].contains(&r["state"].as_str().unwrap_or(""))
                })
                .cloned()
        },
    )
    .await
}

crate::on_both! {
    async fn production_deploys_the_build_staging_verified_after_the_soak(backend) {
        let (mut app, repos) = start(backend).await;
        scan(&app).await;
        let first = repos.app.head("master");
        let verified = repos.app.head("latest");

        // Master's first commit never ran in staging: held, with the reason.
        run_of(&app, "production", &first, &["waiting_for_approval"]).await;
        let held = pending(&app, "production", &first).await;
        assert_eq!(held["promotion"]["gate"]["state"], "unverified", "{held}");
        assert!(held["promotion"]["gate"]["reason"].as_str().unwrap().contains("has not been live and healthy in staging"), "{held}");

        // Staging builds and verifies `latest`.
        let staging = run_of(&app, "staging", &verified, &["succeeded", "failed"]).await;
        assert_eq!(staging["run"]["state"], "succeeded", "{staging}");
        let staging_id = staging["run"]["id"].as_i64().unwrap();
        let digest = output(&staging, "image").to_string();
        assert!(digest.starts_with("registry.example.com/shop@sha256:"), "{digest}");
        let staged = release_of(&app, "staging", staging_id).await;
        assert_eq!(staged["image"], digest.as_str(), "{staged}");

        // Another app's change in the pipeline repo meanwhile: a new
        // pipeline commit, the same build of shop.
        repos.pipeline.write("apps/billing/NOTES.md", "not an app yet\n");
        repos.pipeline.commit("notes for billing");
        // Master fast-forwards to it: the same tree, one artifact, soaking.
        fast_forward_master(&repos);
        scan(&app).await;
        let production = run_of(&app, "production", &verified, &["waiting_for_approval"]).await;
        assert_ne!(production["pipeline_sha"], staging["pipeline_sha"], "{production}");
        let production_id = production["run"]["id"].as_i64().unwrap();
        assert_eq!(production["promotion"]["id"], staging["artifact"]["id"], "{production}");
        let gate = &production["promotion"]["gate"];
        assert_eq!(gate["state"], "soaking", "{production}");
        assert!(gate["reason"].as_str().unwrap().contains("of the 30m required"), "{gate}");
        assert!(gate["opens_at"].as_i64().is_some(), "{gate}");
        assert_eq!(production["promotion"]["verified"][0]["environment"], "staging");
        // An approval does not cut the soak short (none is needed here).
        let refused = app.post_json(&format!("/api/v1/runs/{production_id}/approve"), json!({})).await;
        assert_eq!(refused.status, 409, "{}", refused.text());
        assert!(refused.text().contains("soaking in staging"), "{}", refused.text());
        // The older held run of master's first commit is superseded.
        assert_eq!(app.get("/api/v1/approvals").await.json().as_array().unwrap().len(), 1);
        // The app's promotion graph: staging serves the artifact, production
        // holds it, soaking, and says what it asks.
        let graph = app.get("/api/v1/apps/shop").await.json()["promotion"]["stages"].clone();
        let stage = |env: &str| graph.as_array().unwrap().iter().find(|s| s["environment"] == env).cloned().unwrap();
        assert_eq!(stage("staging")["serving"]["id"], staging["artifact"]["id"], "{graph}");
        let production_stage = stage("production");
        assert_eq!((production_stage["promote_from"].as_str(), production_stage["requires"].as_str()), (Some("staging"), Some("staging")));
        assert_eq!(production_stage["soak_millis"], 30 * 60 * 1000);
        assert_eq!(production_stage["held"][0]["run_id"], production_id, "{graph}");
        assert_eq!(production_stage["held"][0]["promotion"]["gate"]["state"], "soaking", "{graph}");

        // The soak ends: the stability check releases it.
        app.state.clock.advance(Duration::from_secs(31 * 60));
        let done = run_of(&app, "production", &verified, &["succeeded", "failed"]).await;
        assert_eq!(done["run"]["state"], "succeeded", "{done}");
        // Built once: the build step did not run, its build went live.
        let build = step(&done, "build");
        assert_eq!(build["state"], "skipped", "{done}");
        assert!(build["error"].as_str().unwrap().contains(&format!("run {staging_id} built this artifact")), "{build}");
        assert_eq!(step(&done, "check")["state"], "succeeded");
        assert_eq!(done["promotion"]["promoted_from_run"], staging_id);
        assert_eq!(output(&done, "image"), digest);
        let released = release_of(&app, "production", production_id).await;
        assert_eq!(released["image"], digest.as_str(), "the same digest: {released}");
        assert_eq!(released["artifact"]["id"], staging["artifact"]["id"], "{released}");
        let production_body = served(&app, "production").await.expect("production serves");
        assert_eq!(production_body.trim(), format!("built by run {staging_id}"));
        assert_eq!(served(&app, "staging").await.expect("staging serves"), production_body);
        // The ledger says where the artifact was verified and for how long.
        let verified_at = released["artifact"]["verified"].as_array().unwrap();
        let in_staging = verified_at.iter().find(|v| v["environment"] == "staging").expect("staging");
        assert!(in_staging["healthy_for_millis"].as_i64().unwrap() >= 30 * 60 * 1000, "{in_staging}");
        assert_eq!(released["artifact"]["gate"]["state"], "passed", "{released}");
        let graph = app.get("/api/v1/apps/shop").await.json()["promotion"]["stages"].clone();
        let production_stage = graph.as_array().unwrap().iter().find(|s| s["environment"] == "production").cloned().unwrap();
        assert_eq!(production_stage["serving"]["id"], staging["artifact"]["id"], "{graph}");
        assert_eq!(production_stage["serving"]["promoted_from_run"], staging_id, "{graph}");
        assert_eq!(production_stage["held"], json!([]), "{graph}");
        app.stop().await;
    }

    async fn a_rejected_artifact_is_never_promoted_without_an_audited_override(backend) {
        let (mut app, repos) = start(backend).await;
        scan(&app).await;
        let good = repos.app.head("latest");
        let staging = run_of(&app, "staging", &good, &["succeeded", "failed"]).await;
        release_of(&app, "staging", staging["run"]["id"].as_i64().unwrap()).await;
        wait_for("the staging release to be stable", MINUTE, || async {
            let list = app.get("/api/v1/releases?app=shop&environment=staging").await.json();
            list.as_array()?.iter().any(|r| r["state"] == "stable").then_some(())
        })
        .await;

        // A faulty release rolled back: its artifact is rejected with it.
        let faulty = advance_latest(&repos, "breaks the cart");
        scan(&app).await;
        let broken = run_of(&app, "staging", &faulty, &["succeeded", "failed"]).await;
        release_of(&app, "staging", broken["run"]["id"].as_i64().unwrap()).await;
        let rollback = app
            .post_json("/api/v1/apps/shop/rollback", json!({ "environment": "staging", "reason": "carts vanish", "faulty": true }))
            .await;
        assert_eq!(rollback.status, 202, "{}", rollback.text());
        let artifact = broken["artifact"]["id"].as_i64().unwrap();
        let after = app.get(&format!("/api/v1/runs/{}", broken["run"]["id"])).await.json();
        assert_eq!(after["promotion"]["rejected"]["reason"], "rolled back as faulty: carts vanish", "{after}");

        // An admin rejects another artifact; who may not, cannot.
        let promoted = app.post_json("/api/v1/apps/shop/promote", json!({ "environment": "staging", "reason": "unpin" })).await;
        assert_eq!(promoted.status, 200, "{}", promoted.text());
        let suspect = advance_latest(&repos, "suspect change");
        scan(&app).await;
        let run = run_of(&app, "staging", &suspect, &["succeeded", "failed"]).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let suspect_artifact = run["artifact"]["id"].as_i64().unwrap();
        assert_ne!(suspect_artifact, artifact);
        let developer = app.token("dev", app::dto::Role::Developer, Some("shop")).await;
        let path = format!("/api/v1/artifacts/{suspect_artifact}/reject");
        let forbidden = app.post_as(&developer, &path, json!({ "reason": "I do not like it" })).await;
        assert_eq!(forbidden.status, 403, "{}", forbidden.text());
        let no_reason = app.post_json(&path, json!({ "reason": " " })).await;
        assert_eq!(no_reason.status, 400, "{}", no_reason.text());
        let unknown = app.post_json("/api/v1/artifacts/999999/reject", json!({ "reason": "no such thing" })).await;
        assert_eq!(unknown.status, 404, "{}", unknown.text());
        let rejected = app.post_json(&path, json!({ "reason": "leaks sessions" })).await;
        assert_eq!(rejected.status, 200, "{}", rejected.text());
        assert_eq!(rejected.json()["rejected"]["by"], "test-admin");
        let again = app.post_json(&path, json!({ "reason": "leaks sessions" })).await;
        assert_eq!(again.status, 409, "{}", again.text());

        // Production is held for it, however long staging ran it.
        fast_forward_master(&repos);
        scan(&app).await;
        let held = run_of(&app, "production", &suspect, &["waiting_for_approval"]).await;
        let held_id = held["run"]["id"].as_i64().unwrap();
        assert_eq!(held["promotion"]["gate"]["state"], "rejected", "{held}");
        assert!(held["promotion"]["gate"]["reason"].as_str().unwrap().contains("rejected by test-admin: leaks sessions"), "{held}");
        app.state.clock.advance(Duration::from_secs(31 * 60));
        let released = gantry::approvals::release_verified(&app.state.approvals()).await.expect("release pass");
        assert_eq!(released, 0);
        let refused = app.post_json(&format!("/api/v1/runs/{held_id}/approve"), json!({})).await;
        assert_eq!(refused.status, 409, "{}", refused.text());
        assert_eq!(app.get(&format!("/api/v1/runs/{held_id}")).await.json()["run"]["state"], "waiting_for_approval");

        // An admin's override, with a reason, lets it through: audited.
        let overridden = app.post_json(&format!("/api/v1/runs/{held_id}/override"), json!({ "comment": "the leak is in a feature flag that is off" })).await;
        assert_eq!(overridden.status, 200, "{}", overridden.text());
        let done = run_of(&app, "production", &suspect, &["succeeded", "failed"]).await;
        assert_eq!(done["run"]["state"], "succeeded", "{done}");
        let audit = app.get("/api/v1/audit").await.json();
        let actions: Vec<(&str, &str)> = audit.as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap(), e["reason"].as_str().unwrap_or(""))).collect();
        assert!(actions.contains(&("artifact.reject", "leaks sessions")), "{actions:?}");
        assert!(actions.contains(&("run.override", "the leak is in a feature flag that is off")), "{actions:?}");
        app.stop().await;
    }
}

/// What soaked is what goes on: a rebuild of the same tree that went live
/// in staging a minute ago does not stand in for the build that soaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_that_soaked_is_promoted_not_a_later_rebuild_of_the_same_tree() {
    let repos = Repos::new("");
    repos.app.checkout("latest");
    repos.app.write("app.py", APP_PY);
    repos.app.commit("serve the build");
    repos.app.checkout("master");
    repos.pipeline.write(
        "apps/shop/app.yaml",
        &app_yaml(&repos.app.path()).replace(
            "    requires: { verified_in: staging, soak: 30m }\n",
            "    requires: { verified_in: staging, soak: 30m }\n    approval: { required: 1 }\n",
        ),
    );
    repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
    repos
        .pipeline
        .commit("shop builds once, production approved");
    let mut app = start_with("sqlite", &repos, |_| {}).await;
    scan(&app).await;
    let soaked = repos.app.head("latest");
    let first = run_of(&app, "staging", &soaked, &["succeeded", "failed"]).await;
    let first_id = first["run"]["id"].as_i64().unwrap();
    release_of(&app, "staging", first_id).await;
    fast_forward_master(&repos);
    scan(&app).await;
    let production = run_of(&app, "production", &soaked, &["waiting_for_approval"]).await;
    app.state.clock.advance(Duration::from_secs(31 * 60));

    // The same tree again on latest: a rebuild, live in staging from now.
    repos.app.checkout("latest");
    repos
        .app
        .git(&["commit", "-q", "--allow-empty", "-m", "rebuild"]);
    repos.app.checkout("master");
    scan(&app).await;
    let rebuild = run_of(
        &app,
        "staging",
        &repos.app.head("latest"),
        &["succeeded", "failed"],
    )
    .await;
    assert_eq!(
        rebuild["artifact"]["id"], first["artifact"]["id"],
        "the same artifact"
    );
    let rebuild_id = rebuild["run"]["id"].as_i64().unwrap();
    release_of(&app, "staging", rebuild_id).await;

    // Approved: production deploys the build that soaked 31 minutes.
    let production_id = production["run"]["id"].as_i64().unwrap();
    let approved = app
        .post_json(&format!("/api/v1/runs/{production_id}/approve"), json!({}))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(
        approved.json()["outcome"],
        "released",
        "{}",
        approved.text()
    );
    let done = run_of(&app, "production", &soaked, &["succeeded", "failed"]).await;
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    assert_eq!(done["promotion"]["promoted_from_run"], first_id, "{done}");
    let body = served(&app, "production").await.expect("production serves");
    assert_eq!(body.trim(), format!("built by run {first_id}"));
    assert_ne!(
        served(&app, "staging").await.expect("staging serves"),
        body,
        "staging runs the rebuild"
    );
    app.stop().await;
}
