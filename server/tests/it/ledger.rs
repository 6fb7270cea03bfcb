//! The release ledger on the local target: releases tied to commits,
//! stable after the soak, rollback that restores the previous commit and
//! pins production (in the database and as a commit in the pipeline repo),
//! pushes while pinned that build but do not deploy, promotion that
//! unpins, a rollback racing an in-flight deploy, and tracing commits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::flow::{
    MINUTE, QUICK_STEPS, Repos, pipeline_yaml, scan, served, start_with, wait_for,
};
use crate::support::git::WorkRepo;

/// The tiny web app of the flow tests, which starts slowly when the
/// commit has a `SLOW` file: its deploy is then in flight for seconds.
const SLOW_APP_PY: &str = r#"import http.server, os, time
if os.path.exists("SLOW"):
    time.sleep(4)
COMMIT = os.environ.get("GANTRY_COMMIT", "unknown")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("commit=" + COMMIT + "\n").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn app_yaml(source: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1
source: {source}
commit_url: \"https://git.example.com/shop/commit/{{{{ commit }}}}\"
stack:
  - env: staging
    branch: latest
    target: local
  - env: production
    branch: master
    target: local
    stable_after: 1s
"
    )
}

/// The app and a pipeline repo Gantry can push pins to: a bare `origin`
/// that the working copy publishes to.
struct Ledger {
    app: TestApp,
    repos: Repos,
    pipeline_origin: tempfile::TempDir,
}

impl Ledger {
    async fn start(backend: &str) -> Ledger {
        let repos = Repos::new(QUICK_STEPS);
        repos.app.write("app.py", SLOW_APP_PY);
        repos.app.commit("slow-start capable app");
        repos
            .pipeline
            .write("apps/shop/app.yaml", &app_yaml(&repos.app.path()));
        repos
            .pipeline
            .write("apps/shop/pipeline.yaml", &pipeline_yaml(QUICK_STEPS));
        repos.pipeline.commit("shop with a ledger");
        let origin = tempfile::tempdir().expect("tempdir");
        let origin_path = origin.path().display().to_string();
        repos.pipeline.git(&[
            "clone",
            "-q",
            "--bare",
            &repos.pipeline.path(),
            &origin_path,
        ]);
        repos
            .pipeline
            .git(&["remote", "add", "origin", &origin_path]);
        let app = start_with(backend, &repos, |config| {
            config.pipeline_repo = Some(origin_path);
        })
        .await;
        Ledger {
            app,
            repos,
            pipeline_origin: origin,
        }
    }

    fn work(&self) -> &WorkRepo {
        &self.repos.app
    }

    fn origin_git(&self, args: &[&str]) -> Option<String> {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(self.pipeline_origin.path())
            .output()
            .expect("git");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// A new commit on master, seen by Gantry.
    async fn release(&self, file: &str, message: &str) -> String {
        self.work().write(file, message);
        let sha = self.work().commit(message);
        scan(&self.app).await;
        sha
    }

    async fn releases(&self) -> Vec<Value> {
        let response = self
            .app
            .get("/api/v1/releases?app=shop&environment=production")
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json().as_array().cloned().unwrap_or_default()
    }

    /// The production entry for `version` once it is in `state` (`live`
    /// also matches `stable`: the soak is a second here).
    async fn release_in(&self, version: &str, state: &str) -> Value {
        let states: &[&str] = if state == "live" {
            &["live", "stable"]
        } else {
            &[state]
        };
        wait_for(
            &format!("release {version} to be {state}"),
            MINUTE,
            || async {
                self.releases().await.into_iter().find(|r| {
                    r["version"] == version && states.contains(&r["state"].as_str().unwrap_or(""))
                })
            },
        )
        .await
    }

    async fn run_ended(&self, id: i64) -> Value {
        wait_for(&format!("run {id} to end"), MINUTE, || async {
            let detail = self.app.get(&format!("/api/v1/runs/{id}")).await.json();
            let state = detail["run"]["state"].as_str().unwrap_or("").to_string();
            ["succeeded", "failed", "cancelled", "superseded"]
                .contains(&state.as_str())
                .then_some(detail)
        })
        .await
    }

    async fn run_of(&self, sha: &str) -> Value {
        let id = wait_for("the run of the commit", MINUTE, || async {
            let runs = self.app.get("/api/v1/runs").await.json();
            runs.as_array()?
                .iter()
                .find(|r| r["commit_sha"] == sha && r["environment"] == "production")
                .and_then(|r| r["id"].as_i64())
        })
        .await;
        self.run_ended(id).await
    }

    async fn production(&self) -> Value {
        let environments = self.app.get("/api/v1/environments").await.json();
        environments
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "production")
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn serves(&self, sha: &str) {
        wait_for(&format!("production to serve {sha}"), MINUTE, || async {
            served(&self.app, "production")
                .await
                .filter(|body| body.contains(sha))
        })
        .await;
    }
}

fn short(sha: &str) -> &str {
    &sha[..7]
}

crate::on_both! {
    async fn rollback_restores_the_last_stable_release_and_stays_put(backend) {
        let ledger = Ledger::start(backend).await;
        let app = &ledger.app;
        scan(app).await;
        let v1 = ledger.work().head("master");
        ledger.serves(&v1).await;
        // Stable after the one-second soak, by Gantry.
        let r1 = ledger.release_in(&v1, "stable").await;
        assert_eq!(r1["stable_by"], "gantry");
        assert_eq!(r1["kind"], "release");
        assert_eq!(r1["targets"][0]["target"], "local");
        assert_eq!(r1["targets"][0]["state"], "succeeded");

        // v2 goes live: its changelog is the commit since v1, with its link.
        let v2 = ledger.release("feature.txt", "Add a feature").await;
        ledger.serves(&v2).await;
        let r2 = ledger.release_in(&v2, "live").await;
        assert_eq!(r2["previous_version"], v1.as_str());
        let changelog = r2["changelog"].as_array().unwrap();
        assert_eq!(changelog.len(), 1, "{changelog:?}");
        assert_eq!(changelog[0]["sha"], v2.as_str());
        assert_eq!(changelog[0]["summary"], "Add a feature");
        assert_eq!(changelog[0]["author"], "Ada Tester");
        assert_eq!(
            changelog[0]["url"],
            format!("https://git.example.com/shop/commit/{v2}").as_str()
        );

        // A developer may not roll back; a reason is mandatory.
        let developer = app.token("dev", app::dto::Role::Developer, None).await;
        let refused = app
            .post_as(&developer, "/api/v1/apps/shop/rollback", json!({ "reason": "it is broken" }))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let no_reason = app.post_json("/api/v1/apps/shop/rollback", json!({ "reason": "" })).await;
        assert_eq!(no_reason.status, 400, "{}", no_reason.text());
        assert!(no_reason.text().contains("reason"), "{}", no_reason.text());

        // The rollback goes to the last stable release: v1, as it was.
        let accepted = app
            .post_json("/api/v1/apps/shop/rollback", json!({ "reason": "checkout is broken" }))
            .await;
        assert_eq!(accepted.status, 202, "{}", accepted.text());
        let accepted = accepted.json();
        assert_eq!(accepted["to_release"], r1["id"]);
        assert_eq!(accepted["from_release"], r2["id"]);
        let run = ledger.run_ended(accepted["run_id"].as_i64().unwrap()).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        assert_eq!(run["trigger"], "rollback");
        ledger.serves(&v1).await;

        let entries = ledger.releases().await;
        let newest = &entries[0];
        assert_eq!(newest["kind"], "rollback");
        assert_eq!(newest["version"], v1.as_str());
        assert_eq!(
            newest["label"],
            format!("rollback of {} to {}", short(&v2), short(&v1)).as_str()
        );
        assert_eq!(newest["reason"], "checkout is broken");
        assert_eq!(newest["created_by"], "test-admin");
        assert_eq!(newest["rollback_of"], r2["id"]);
        assert_eq!(newest["rollback_to"], r1["id"]);
        let state_of = |id: &Value| {
            entries
                .iter()
                .find(|r| &r["id"] == id)
                .map(|r| r["state"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(state_of(&r2["id"]).as_deref(), Some("rolled_back"));
        assert_eq!(state_of(&r1["id"]).as_deref(), Some("superseded"));
        // The exact manifests of v1 were re-applied: same digest, no rebuild.
        let digest = |release: &Value| {
            let id = release["deployment_id"].as_i64().unwrap().to_string();
            async move {
                app.db_value(
                    "SELECT manifests_digest FROM deployments WHERE id = CAST($1 AS BIGINT)",
                    &id,
                )
                .await
            }
        };
        assert_eq!(digest(newest).await, digest(&r1).await);

        // Pinned, in the database and in the pipeline repo, by the admin.
        let production = ledger.production().await;
        assert_eq!(production["pin"]["version"], v1.as_str());
        assert_eq!(production["pin"]["pinned_by"], "test-admin");
        let pin_file = wait_for("the pin commit in the pipeline repo", MINUTE, || async {
            ledger.origin_git(&["show", "master:apps/shop/pins/production.yaml"])
        })
        .await;
        assert!(pin_file.contains(&v1), "{pin_file}");
        assert!(pin_file.contains("checkout is broken"), "{pin_file}");
        let message = ledger.origin_git(&["log", "-1", "--format=%B", "master"]).unwrap();
        assert!(message.contains("Gantry-Actor: test-admin"), "{message}");

        // The dashboard shows the rollback on the timeline and the pin in
        // the stack; only admins get the rollback form.
        let timeline = app.get("/releases?app=shop&environment=production").await.text();
        assert!(timeline.contains(&format!("rollback of {} to {}", short(&v2), short(&v1))), "{timeline}");
        assert!(timeline.contains("Roll production back to this release"), "{timeline}");
        assert!(timeline.contains("checkout is broken"), "{timeline}");
        let stack = app.get("/").await.text();
        assert!(stack.contains(&format!("Pinned to {} by test-admin: checkout is broken", short(&v1))), "{stack}");
        let request = axum::http::Request::get("/releases?app=shop&environment=production")
            .body(axum::body::Body::empty())
            .expect("request");
        let as_developer = app.request_as(Some(&developer), request).await.text();
        assert!(as_developer.contains("rollback of"), "{as_developer}");
        assert!(!as_developer.contains("Roll production back"), "developers cannot roll back");

        // A push while pinned is built but not deployed.
        let v3 = ledger.release("fix.txt", "Fix checkout").await;
        let run = ledger.run_of(&v3).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let deploy = run["steps"].as_array().unwrap().iter().find(|s| s["name"] == "deploy").unwrap().clone();
        assert_eq!(deploy["state"], "skipped", "{deploy}");
        assert!(deploy["error"].as_str().unwrap_or("").contains("pinned"), "{deploy}");
        ledger.serves(&v1).await;
        assert!(ledger.releases().await.iter().all(|r| r["version"] != v3.as_str()));

        // Promoting again unpins and deploys the branch head.
        let promoted = app
            .post_json("/api/v1/apps/shop/promote", json!({ "environment": "production", "reason": "fix is in" }))
            .await;
        assert_eq!(promoted.status, 200, "{}", promoted.text());
        assert_eq!(promoted.json()["unpinned"], true);
        ledger.serves(&v3).await;
        assert!(ledger.production().await["pin"].is_null());
        wait_for("the pin file to be removed", MINUTE, || async {
            ledger
                .origin_git(&["show", "master:apps/shop/pins/production.yaml"])
                .is_none()
                .then_some(())
        })
        .await;
        let r3 = ledger.release_in(&v3, "live").await;
        assert_eq!(r3["previous_version"], v1.as_str());

        // Both decisions are in the audit log.
        let audit = app.get("/api/v1/audit?action=release").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "release.rollback" && e["reason"] == "checkout is broken"), "{audit}");
        let audit = app.get("/api/v1/audit?action=environment").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "environment.promote"), "{audit}");
    }

    async fn a_rollback_during_a_deploy_waits_and_wins(backend) {
        let ledger = Ledger::start(backend).await;
        let app = &ledger.app;
        scan(app).await;
        let v1 = ledger.work().head("master");
        let r1 = ledger.release_in(&v1, "stable").await;

        // v2 starts slowly: its deploy holds the environment for seconds.
        ledger.work().write("SLOW", "1");
        let v2 = ledger.release("slow.txt", "Slow start").await;
        wait_for("v2 to be deploying", MINUTE, || async {
            ledger
                .releases()
                .await
                .into_iter()
                .find(|r| r["version"] == v2.as_str() && r["state"] == "deploying")
        })
        .await;
        let accepted = app
            .post_json("/api/v1/apps/shop/rollback", json!({ "reason": "stop v2 now", "to": r1["id"] }))
            .await;
        assert_eq!(accepted.status, 202, "{}", accepted.text());
        let run = ledger.run_ended(accepted.json()["run_id"].as_i64().unwrap()).await;
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
        let step = &run["steps"][0];
        let log = app
            .get(&format!("/api/v1/runs/{}/steps/{}/log", run["run"]["id"], step["id"]))
            .await
            .text();
        assert!(log.contains("waiting for another deploy"), "{log}");

        // Whatever the timing, the rollback ends last: v1 serves, v2 is
        // rolled back, and the ledger says so.
        ledger.serves(&v1).await;
        let entries = ledger.releases().await;
        assert_eq!(entries[0]["kind"], "rollback");
        assert_eq!(
            entries[0]["label"],
            format!("rollback of {} to {}", short(&v2), short(&v1)).as_str()
        );
        let r2 = entries.iter().find(|r| r["version"] == v2.as_str()).unwrap();
        assert_eq!(r2["state"], "rolled_back");
        assert_eq!(ledger.production().await["commit_sha"], v1.as_str());
    }

    async fn commits_are_traced_to_releases(backend) {
        let ledger = Ledger::start(backend).await;
        let app = &ledger.app;
        scan(app).await;
        let v1 = ledger.work().head("master");
        let r1 = ledger.release_in(&v1, "live").await;
        ledger.work().write("a.txt", "a");
        let a = ledger.work().commit("Add a");
        let v2 = ledger.release("b.txt", "Add b").await;
        let r2 = ledger.release_in(&v2, "live").await;
        assert_eq!(r2["changelog"].as_array().unwrap().len(), 2);
        // Pages go back in time with `before`.
        let older = app
            .get(&format!("/api/v1/releases?app=shop&environment=production&before={}", r2["id"]))
            .await
            .json();
        assert_eq!(older[0]["id"], r1["id"], "{older}");
        let one = app.get("/api/v1/releases?limit=1").await.json();
        assert_eq!(one.as_array().unwrap().len(), 1);

        let comparison = app
            .get(&format!("/api/v1/apps/shop/compare?from={}&to={}", r1["id"], r2["id"]))
            .await;
        assert_eq!(comparison.status, 200, "{}", comparison.text());
        let comparison = comparison.json();
        let shas: Vec<&str> = comparison["commits"].as_array().unwrap().iter().map(|c| c["sha"].as_str().unwrap()).collect();
        assert_eq!(shas, vec![v2.as_str(), a.as_str()]);
        assert_eq!(comparison["authors"], json!(["Ada Tester"]));
        let files: Vec<&str> = comparison["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(files, vec!["a.txt", "b.txt"]);
        // The same on a page whose address holds the pair, linked from the
        // timeline (each release against the one before it) and the release.
        let page = app.get(&format!("/releases/compare?app=shop&from={}&to={}", r1["id"], r2["id"])).await.text();
        assert!(page.contains("Add b") && page.contains("Add a") && page.contains("b.txt"), "{page}");
        assert!(page.contains("2 commit(s) by Ada Tester; 2 file(s) changed."), "{page}");
        let timeline = app.get("/releases?app=shop&environment=production").await.text();
        assert!(timeline.contains(&format!("/releases/compare?app=shop&amp;from={}&amp;to={}", r1["id"], r2["id"])), "{timeline}");
        let empty = app.get("/releases/compare").await;
        assert_eq!(empty.status, 200);
        assert!(empty.text().contains("Pick an app and two of its releases"));

        // `a` never ran on its own: it reached production with v2.
        let landings = app.get(&format!("/api/v1/apps/shop/commits/{a}/releases")).await;
        assert_eq!(landings.status, 200, "{}", landings.text());
        let landings = landings.json();
        let production = landings["landings"].as_array().unwrap().iter().find(|l| l["environment"] == "production").unwrap().clone();
        assert_eq!(production["release_id"], r2["id"]);
        assert_eq!(production["version"], v2.as_str());
        let unknown = app.get("/api/v1/apps/shop/commits/0123456789012345678901234567890123456789/releases").await;
        assert_eq!(unknown.status, 404, "{}", unknown.text());
    }

    async fn a_pin_committed_to_the_pipeline_repo_is_honoured(backend) {
        let ledger = Ledger::start(backend).await;
        let app = &ledger.app;
        scan(app).await;
        let v1 = ledger.work().head("master");
        ledger.serves(&v1).await;

        // Someone pins production in Git, by hand.
        let pipeline = &ledger.repos.pipeline;
        pipeline.write(
            "apps/shop/pins/production.yaml",
            &format!("version: \"{v1}\"\npinned_by: \"grace\"\nreason: \"release freeze for the audit\"\n"),
        );
        pipeline.commit("Pin production");
        pipeline.git(&["push", "-q", "origin", "master"]);
        scan(app).await;
        let pin = wait_for("the pin from Git", MINUTE, || async {
            let pin = ledger.production().await["pin"].clone();
            (!pin.is_null()).then_some(pin)
        })
        .await;
        assert_eq!(pin["pinned_by"], "grace");
        let v2 = ledger.release("x.txt", "x").await;
        let run = ledger.run_of(&v2).await;
        assert_eq!(run["steps"].as_array().unwrap().iter().find(|s| s["name"] == "deploy").unwrap()["state"], "skipped");
        ledger.serves(&v1).await;

        // Deleting the file in Git unpins.
        pipeline.remove("apps/shop/pins/production.yaml");
        pipeline.commit("Unpin production");
        pipeline.git(&["push", "-q", "origin", "master"]);
        scan(app).await;
        wait_for("the pin to be lifted", MINUTE, || async {
            ledger.production().await["pin"].is_null().then_some(())
        })
        .await;
        let audit = app.get("/api/v1/audit?action=unpin").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "unpin.from_git"), "{audit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_can_vouch_for_a_release_before_its_soak_ends() {
    Box::pin(crate::support::bounded(async {
        let repos = Repos::new(QUICK_STEPS);
        let app = start_with("sqlite", &repos, |_| {}).await;
        scan(&app).await;
        let v1 = repos.app.head("latest");
        // The default soak is ten minutes: the release stays live.
        let release = crate::support::flow::live_release(&app, "staging", &v1).await;
        // Nine minutes of a ten-minute soak, judged twice (the first pass
        // may be the one that starts the soak).
        gantry::delivery::ledger::stable::check(&app.state.delivery())
            .await
            .expect("check");
        app.state.clock.advance(Duration::from_secs(9 * 60));
        gantry::delivery::ledger::stable::check(&app.state.delivery())
            .await
            .expect("check");
        let id = release["id"].as_i64().unwrap();
        let read = app.get(&format!("/api/v1/releases/{id}")).await.json();
        assert_eq!(read["state"], "live");
        // Its soak, on its own answer and on its page.
        assert_eq!(read["soak"]["soak_millis"], 600_000, "{read}");
        assert!(read["soak"]["healthy_since"].is_i64(), "{read}");
        let page = app.get(&format!("/releases/{id}")).await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert!(
            html.contains(&format!(
                "<title>Release #{id} · shop / staging · Gantry</title>"
            )),
            "{html}"
        );
        assert!(
            html.contains("Soaking: healthy for") && html.contains("of 10 min 0 s"),
            "{html}"
        );
        assert!(html.contains("data-testid=\"release-soak\""));
        let missing = app.get("/releases/999999").await;
        assert_eq!(missing.status, 404);
        assert!(missing.text().contains("There is no such release."));
        let developer = app.token("dev", app::dto::Role::Developer, None).await;
        let refused = app
            .post_as(
                &developer,
                &format!("/api/v1/releases/{id}/stable"),
                json!({}),
            )
            .await;
        assert_eq!(refused.status, 403);
        let marked = app
            .post_json(
                &format!("/api/v1/releases/{id}/stable"),
                json!({ "reason": "verified by hand" }),
            )
            .await;
        assert_eq!(marked.status, 200, "{}", marked.text());
        assert_eq!(marked.json()["state"], "stable");
        assert_eq!(marked.json()["stable_by"], "test-admin");
        let again = app
            .post_json(&format!("/api/v1/releases/{id}/stable"), json!({}))
            .await;
        assert_eq!(again.status, 409, "{}", again.text());
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rolls_back_lists_releases_and_promotes() {
    use crate::cli::gantry_cli;
    use crate::support::process::{Server, admin_token, free_port, stderr};
    crate::support::bounded(async {
        let repos = Repos::new(QUICK_STEPS);
        repos
            .pipeline
            .write("apps/shop/app.yaml", &app_yaml(&repos.app.path()));
        repos.pipeline.commit("shop with a ledger");
        let data = tempfile::tempdir().expect("tempdir");
        let admin = admin_token(data.path());
        let port = free_port();
        let server = Server::start(data.path(), &repos.pipeline.path(), port, &admin);
        let url = format!("http://127.0.0.1:{port}");
        let v1 = repos.app.head("master");
        let stable = |version: String| {
            let server = &server;
            async move {
                wait_for(&format!("{version} to be stable"), MINUTE, || async {
                    let list = server.get("/api/v1/releases?environment=production").await;
                    list.as_array()?
                        .iter()
                        .any(|r| r["version"] == version.as_str() && r["state"] == "stable")
                        .then_some(())
                })
                .await
            }
        };
        stable(v1.clone()).await;
        repos.app.write("v2.txt", "2");
        let v2 = repos.app.commit("Second version");
        wait_for("v2 to be live", MINUTE, || async {
            let envs = server.get("/api/v1/environments").await;
            envs.as_array()?
                .iter()
                .any(|e| {
                    e["name"] == "production"
                        && e["commit_sha"] == v2.as_str()
                        && e["state"] == "live"
                })
                .then_some(())
        })
        .await;

        let rolled = gantry_cli(
            data.path(),
            &url,
            &admin,
            &["rollback", "shop", "--reason", "v2 breaks checkout"],
        )
        .await;
        assert!(rolled.status.success(), "{}", stderr(&rolled));
        let text = String::from_utf8_lossy(&rolled.stdout).to_string();
        assert!(
            text.contains("rolling shop/production back to release "),
            "{text}"
        );
        assert!(text.contains(&format!("({}) in run", short(&v1))), "{text}");
        assert!(text.contains(": succeeded"), "{text}");
        // The pipeline repo here is a working copy Gantry cannot push to:
        // the pin holds anyway, and the CLI says why Git lacks it.
        assert!(
            text.contains("warning: the pin is not in the pipeline repo"),
            "{text}"
        );

        let listed = gantry_cli(
            data.path(),
            &url,
            &admin,
            &["releases", "shop", "--env", "production"],
        )
        .await;
        let text = String::from_utf8_lossy(&listed.stdout).to_string();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("rollback of {} to {}", short(&v2), short(&v1))),
            "{text}"
        );
        assert!(text.contains("rolled_back"), "{text}");

        let without_reason = gantry_cli(
            data.path(),
            &url,
            &admin,
            &["rollback", "shop", "--reason", ""],
        )
        .await;
        assert_eq!(without_reason.status.code(), Some(1));
        assert!(
            stderr(&without_reason).contains("needs a reason"),
            "{}",
            stderr(&without_reason)
        );

        let promoted = gantry_cli(data.path(), &url, &admin, &["promote", "shop"]).await;
        assert!(promoted.status.success(), "{}", stderr(&promoted));
        let text = String::from_utf8_lossy(&promoted.stdout).to_string();
        assert!(text.contains("shop/production: unpinned; run"), "{text}");
        wait_for("v2 to serve again", MINUTE, || async {
            server
                .served("production")
                .await
                .filter(|body| body.contains(&v2))
        })
        .await;
        drop(server);
    })
    .await;
}

/// The nearest-rank percentile, as the delivery metrics define it.
fn nearest_rank(mut values: Vec<i64>, quantile: f64) -> Option<i64> {
    values.sort_unstable();
    let rank = ((quantile * values.len() as f64).ceil() as usize).max(1);
    values.get(rank.min(values.len()).wrapping_sub(1)).copied()
}

crate::on_both! {
    async fn delivery_metrics_match_the_ledger_worked_out_by_hand(backend) {
        let mut ledger = Ledger::start(backend).await;
        scan(&ledger.app).await;
        let v1 = ledger.work().head("master");
        ledger.release_in(&v1, "stable").await;
        // A change, then its fix at once: the change failed, the fix is rework.
        let v2 = ledger.release("prices.txt", "Show prices").await;
        ledger.release_in(&v2, "stable").await;
        let v3 = ledger.release("prices.txt", "fix: round prices to cents").await;
        ledger.release_in(&v3, "live").await;
        // And the fix is rolled back too: failed, the rollback is rework.
        let rollback = ledger
            .app
            .post_json("/api/v1/apps/shop/rollback", json!({ "reason": "cents went missing" }))
            .await;
        assert_eq!(rollback.status, 202, "{}", rollback.text());
        let rollback_run = rollback.json()["run_id"].as_i64().unwrap();
        assert_eq!(ledger.run_ended(rollback_run).await["run"]["state"], "succeeded");
        let entries = wait_for("the rollback in the ledger", MINUTE, || async {
            let entries = ledger.releases().await;
            entries
                .iter()
                .any(|r| r["kind"] == "rollback" && r["finished_at"].is_i64())
                .then_some(entries)
        })
        .await;

        // By hand, from the ledger as the API shows it.
        let live_at = |version: &str, kind: &str| {
            entries
                .iter()
                .find(|r| r["version"] == version && r["kind"] == kind)
                .and_then(|r| r["finished_at"].as_i64())
                .unwrap_or_else(|| panic!("{kind} of {version} in {entries:?}"))
        };
        let lead = |version: &str| {
            let entry = entries.iter().find(|r| r["version"] == version && r["kind"] == "release").unwrap();
            let first = entry["changelog"].as_array().unwrap().iter().filter_map(|c| c["time"].as_i64()).min();
            first.map(|first| (live_at(version, "release") - first).max(0))
        };
        let leads: Vec<i64> = [&v1, &v2, &v3].iter().filter_map(|v| lead(v)).collect();
        // The rollback went back to v2, the newest stable release before v3.
        let (at2, at3, back) = (live_at(&v2, "release"), live_at(&v3, "release"), live_at(&v2, "rollback"));
        let recoveries = vec![at3 - at2, back - at3];

        let metrics = ledger.app.get("/api/v1/metrics/delivery?app=shop&days=7").await;
        assert_eq!(metrics.status, 200, "{}", metrics.text());
        let all = metrics.json();
        assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
        let m = &all[0];
        assert_eq!((m["app"].as_str(), m["environment"].as_str()), (Some("shop"), Some("production")));
        assert_eq!(m["deployments"], 3, "{m}");
        assert!((m["per_day"].as_f64().unwrap() - 3.0 / 7.0).abs() < 1e-9, "{m}");
        assert_eq!(m["failed"], 2, "v2 was fixed at once, v3 rolled back: {m}");
        assert!((m["change_fail_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{m}");
        assert_eq!(m["rework"], 2, "the fix and the rollback: {m}");
        assert!((m["rework_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{m}");
        assert_eq!(m["lead_time_p50_millis"].as_i64(), nearest_rank(leads.clone(), 0.5), "{m}");
        assert_eq!(m["lead_time_p90_millis"].as_i64(), nearest_rank(leads, 0.9), "{m}");
        assert_eq!(m["recovery_p50_millis"].as_i64(), nearest_rank(recoveries, 0.5), "{m}");
        assert_eq!(m["unrecovered"], 0);
        assert_eq!(m["days"].as_array().unwrap().len(), 8, "7 days back, today included: {m}");

        // A range out of bounds is refused, naming it; an environment
        // nothing went live in has no figures.
        let refused = ledger.app.get("/api/v1/metrics/delivery?days=0").await;
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert!(refused.text().contains("days: 0"), "{}", refused.text());
        let none = ledger.app.get("/api/v1/metrics/delivery?environment=qa").await.json();
        assert_eq!(none, json!([]));
        // And Prometheus reads the same figures.
        let exposed = ledger.app.get("/metrics").await.text();
        for name in ["gantry_delivery_deployments{", "gantry_delivery_change_fail_rate{", "gantry_delivery_rework_rate{", "gantry_delivery_lead_time_p50_seconds{"] {
            assert!(exposed.contains(name), "{name} in /metrics");
        }
        ledger.app.stop().await;
    }
}
