//! The whole flow on the local target, with real git repositories: push →
//! run → deploy → the proxy serves the new commit; supersede; approval hold
//! and release; preview teardown; invalid configuration.

use std::time::Duration;

use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, scan, served, start, wait_for};

async fn run_states(app: &TestApp) -> Vec<(String, String, String)> {
    let runs = app.get("/api/v1/runs").await.json();
    runs.as_array()
        .expect("runs")
        .iter()
        .map(|run| {
            (
                run["environment"].as_str().unwrap_or_default().to_string(),
                run["commit_sha"].as_str().unwrap_or_default().to_string(),
                run["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

on_both! {
    async fn a_push_runs_the_pipeline_and_the_proxy_serves_the_new_commit(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let mut app = start(backend, &repos).await;
        let latest = repos.app.head("latest");
        wait_for("staging to serve latest", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&latest))
        })
        .await;

        // The environment records both commits it was built with (once the
        // deploy step has finished, just after the proxy switched).
        let staging = wait_for("staging to record its commit", MINUTE, || async {
            let environments = app.get("/api/v1/environments").await.json();
            environments.as_array().unwrap().iter().find(|e| e["name"] == "staging" && e["commit_sha"] == latest.as_str()).cloned()
        })
        .await;
        assert_eq!(staging["commit_sha"], latest.as_str());
        assert_eq!(staging["pipeline_sha"], repos.pipeline.head("master").as_str());
        assert_eq!(staging["commit_message"], "staging work");
        assert_eq!(staging["commit_author"], "Ada Tester");
        assert_eq!(staging["state"], "live");

        // A new commit, announced through the trigger endpoint.
        repos.app.checkout("latest");
        repos.app.write("CHANGES", "v2\n");
        let v2 = repos.app.commit("second staging change");
        let token = app.post_json("/api/v1/apps/shop/hook-token", serde_json::json!({})).await.json()["token"]
            .as_str()
            .expect("token")
            .to_string();
        let request = axum::http::Request::post("/api/v1/hooks/git")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"app":"shop"}"#))
            .expect("request");
        assert_eq!(app.request(request).await.status, 202);
        wait_for("staging to serve the new commit", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&v2))
        })
        .await;

        // The path-prefix form moves to the environment's own host, path
        // and query kept: its code never runs on the dashboard's origin.
        let prefixed = app.get("/env/shop/staging/hello?x=1").await;
        assert_eq!(prefixed.status, 302);
        assert_eq!(
            prefixed.header("location"),
            Some("http://staging--shop.localhost:0/hello?x=1")
        );
        let moved = app.get_host("staging--shop.localhost:0", "/hello?x=1").await;
        assert_eq!(moved.text(), format!("commit={v2} path=/hello?x=1\n"));

        // The run is fully recorded: steps, logs, who and what.
        let run = wait_for("the run to succeed", MINUTE, || async {
            let runs = app.get("/api/v1/runs").await.json();
            runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == v2.as_str() && r["state"] == "succeeded").cloned()
        })
        .await;
        let detail = app.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
        assert_eq!(detail["commit_message"], "second staging change");
        let steps: Vec<(&str, &str)> = detail["steps"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap())).collect();
        assert_eq!(steps, [("build", "succeeded"), ("deploy", "succeeded")]);
        let build = &detail["steps"][0];
        let log = app.get(&format!("/api/v1/runs/{}/steps/{}/log", run["id"], build["id"])).await.text();
        assert_eq!(log, format!("building {}\n", &v2[..7]));

        // Production is held for approval.
        let pending = app.get("/api/v1/approvals").await.json();
        assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
        assert_eq!(pending[0]["environment"], "production");
        assert!(served(&app, "production").await.is_none());
        app.stop().await;
    }

    async fn approval_holds_a_run_until_the_policy_is_met(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let mut app = start(backend, &repos).await;
        let pending = wait_for("the production run to wait", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array().filter(|a| !a.is_empty()).map(|a| a[0]["run_id"].as_i64().unwrap())
        })
        .await;
        let outcome = app.post_json(&format!("/api/v1/runs/{pending}/approve"), serde_json::json!({ "comment": "ship it" })).await;
        assert_eq!(outcome.status, 200, "{}", outcome.text());
        assert_eq!(outcome.json(), serde_json::json!({ "outcome": "released", "approvals": 1, "required": 1 }));
        let master = repos.app.head("master");
        wait_for("production to serve master", MINUTE, || async {
            served(&app, "production").await.filter(|text| text.contains(&master))
        })
        .await;
        // A second decision on a run that is no longer held is a conflict.
        let again = app.post_json(&format!("/api/v1/runs/{pending}/approve"), serde_json::json!({})).await;
        assert_eq!(again.status, 409);
        // Production deployments are releases in the ledger.
        let releases = wait_for("the release to be recorded", MINUTE, || async {
            let releases = app.get("/api/v1/releases").await.json();
            (!releases.as_array().unwrap().is_empty()).then_some(releases)
        })
        .await;
        assert_eq!(releases[0]["version"], master.as_str());
        assert_eq!(releases[0]["state"], "live");
        // Approved: nothing it took live is flagged.
        let one = app.get(&format!("/api/v1/releases/{}", releases[0]["id"])).await.json();
        assert!(one["uncovered"].is_null(), "{one}");
        let audit = app.get("/api/v1/audit").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "run.approve" && e["actor"] == "test-admin" && e["reason"] == "ship it"));

        // A rejected run never runs.
        repos.app.write("x", "1");
        repos.app.commit("risky");
        scan(&app).await;
        let held = wait_for("the next production run to wait", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array().filter(|a| !a.is_empty()).map(|a| a[0]["run_id"].as_i64().unwrap())
        })
        .await;
        let rejected = app.post_json(&format!("/api/v1/runs/{held}/reject"), serde_json::json!({ "comment": "not today" })).await;
        assert_eq!(rejected.json()["outcome"], "rejected");
        let detail = app.get(&format!("/api/v1/runs/{held}")).await.json();
        assert_eq!(detail["run"]["state"], "cancelled");
        assert_eq!(detail["error"], "rejected by test-admin: not today");
        assert!(served(&app, "production").await.is_some_and(|text| text.contains(&master)), "still the approved version");

        // A re-run is planned like a push: the rejected commit is held
        // again, never deployed on a developer's word.
        let dev = app.token("dev", app::dto::Role::Developer, Some("shop")).await;
        let viewer = app.token("watcher", app::dto::Role::Viewer, Some("shop")).await;
        let rerun_of = |id: i64| format!("/api/v1/runs/{id}/rerun");
        let refused = app.post_as(&viewer, &rerun_of(held), serde_json::json!({})).await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let again = app.post_as(&dev, &rerun_of(held), serde_json::json!({})).await;
        assert_eq!(again.status, 201, "{}", again.text());
        let rerun = again.json()["run_id"].as_i64().unwrap();
        let detail = app.get(&format!("/api/v1/runs/{rerun}")).await.json();
        assert_eq!(detail["run"]["state"], "waiting_for_approval", "{detail}");
        assert_eq!(detail["trigger"], "rerun");
        assert_eq!(detail["run"]["actor"], "dev");
        assert_eq!(detail["run"]["commit_sha"], repos.app.head("master").as_str());
        let theirs = app.get("/api/v1/runs?actor=dev").await.json();
        assert_eq!(theirs[0]["id"], rerun, "{theirs}");
        // Once is enough while it waits; an older commit is a rollback's job.
        let twice = app.post_as(&dev, &rerun_of(held), serde_json::json!({})).await;
        assert_eq!(twice.status, 409, "{}", twice.text());
        assert!(twice.text().contains("already on its way"), "{}", twice.text());
        let older = app.post_as(&dev, &rerun_of(pending), serde_json::json!({})).await;
        assert_eq!(older.status, 409, "{}", older.text());
        assert!(older.text().contains("has moved on"), "{}", older.text());
        let audit = app.get("/api/v1/audit").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "run.rerun" && e["actor"] == "dev"), "{audit}");
        assert!(served(&app, "production").await.is_some_and(|text| text.contains(&master)), "still the approved version");
        app.stop().await;
    }

    async fn a_release_flags_the_commits_an_override_took_live(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let mut app = start(backend, &repos).await;
        let held = wait_for("the production run to wait", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array().filter(|a| !a.is_empty()).map(|a| a[0]["run_id"].as_i64().unwrap())
        })
        .await;
        let run = app.get(&format!("/api/v1/runs/{held}")).await.json();
        let total = run["uncovered"]["total"].as_i64().unwrap();
        assert!(total >= 1, "{run}");
        let released = app.post_json(&format!("/api/v1/runs/{held}/override"), serde_json::json!({ "comment": "board demo, no time for review" })).await;
        assert_eq!(released.status, 200, "{}", released.text());
        let master = repos.app.head("master");
        let release = crate::support::flow::live_release(&app, "production", &master).await;
        let one = app.get(&format!("/api/v1/releases/{}", release["id"])).await.json();
        assert_eq!(one["uncovered"]["total"].as_i64(), Some(total), "{one}");
        assert!(one["uncovered"]["commits"].as_array().unwrap().iter().any(|c| c["sha"] == master.as_str()), "{one}");
        let page = app.get(&format!("/releases/{}", release["id"])).await.text();
        assert!(page.contains("went live with no approval covering them"), "the release page flags them");
        assert!(page.contains("release-uncovered"));
        app.stop().await;
    }

    async fn a_newer_push_supersedes_the_running_run(backend) {
        let repos = Repos::new("  - { name: slow, run: \"if [ -f SLOW ]; then sleep 60; fi\" }\n");
        repos.app.checkout("latest");
        repos.app.write("SLOW", "1");
        let slow = repos.app.commit("slow one");
        let mut app = start(backend, &repos).await;
        wait_for("the slow run to be running", MINUTE, || async {
            run_states(&app).await.into_iter().find(|(env, sha, state)| env == "staging" && sha == &slow && state == "running")
        })
        .await;
        repos.app.remove("SLOW");
        let fast = repos.app.commit("fast one");
        scan(&app).await;
        wait_for("staging to serve the newer commit", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&fast))
        })
        .await;
        wait_for("the slow run to end as superseded", MINUTE, || async {
            run_states(&app).await.into_iter().find(|(env, sha, state)| env == "staging" && sha == &slow && state == "superseded")
        })
        .await;
        let runs = app.get("/api/v1/runs").await.json();
        let old = runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == slow.as_str()).unwrap();
        let detail = app.get(&format!("/api/v1/runs/{}", old["id"])).await.json();
        assert_eq!(detail["steps"][0]["state"], "cancelled");
        assert_eq!(detail["steps"][1]["state"], "skipped");
        app.stop().await;
    }

    async fn previews_are_destroyed_on_merge_and_on_branch_deletion(backend) {
        let repos = Repos::new(QUICK_STEPS);
        repos.app.checkout("latest");
        repos.app.checkout_new("feature/hello");
        repos.app.write("hello.txt", "hi");
        let hello = repos.app.commit("hello");
        repos.app.checkout("latest");
        repos.app.checkout_new("feature/bye");
        repos.app.write("bye.txt", "bye");
        let bye = repos.app.commit("bye");
        let mut app = start(backend, &repos).await;
        let hello_env = gantry::gitops::stack::preview_name("preview", "feature/hello");
        let bye_env = gantry::gitops::stack::preview_name("preview", "feature/bye");
        wait_for("both previews live", MINUTE, || async {
            let a = served(&app, &hello_env).await.filter(|t| t.contains(&hello));
            let b = served(&app, &bye_env).await.filter(|t| t.contains(&bye));
            (a.is_some() && b.is_some()).then_some(())
        })
        .await;

        // Merge feature/hello into latest: its preview goes.
        repos.app.checkout("latest");
        repos.app.git(&["merge", "-q", "--no-ff", "-m", "merge hello", "feature/hello"]);
        scan(&app).await;
        wait_for("the merged preview to be destroyed", MINUTE, || async {
            let environments = app.get("/api/v1/environments").await.json();
            (!environments.as_array().unwrap().iter().any(|e| e["name"] == hello_env.as_str())).then_some(())
        })
        .await;
        assert!(served(&app, &hello_env).await.is_none());

        // Delete feature/bye: its preview goes too.
        repos.app.git(&["branch", "-D", "feature/bye"]);
        scan(&app).await;
        wait_for("the deleted branch's preview to be destroyed", MINUTE, || async {
            served(&app, &bye_env).await.is_none().then_some(())
        })
        .await;
        // Both teardowns are recorded (just after the routes went away).
        wait_for("both teardowns in the audit log", MINUTE, || async {
            let audit = app.get("/api/v1/audit").await.json();
            let reasons: Vec<String> = audit
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "environment.destroy")
                .map(|e| e["reason"].as_str().unwrap().to_string())
                .collect();
            (reasons.contains(&"feature/hello was merged into latest".to_string())
                && reasons.contains(&"branch feature/bye was deleted".to_string()))
            .then_some(())
        })
        .await;
        let leftovers = std::fs::read_dir(app.data_path().join("deploys/shop")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 1, "only staging's files remain");
        app.stop().await;
    }

    async fn an_invalid_pipeline_repo_keeps_the_previous_configuration(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let mut app = start(backend, &repos).await;
        wait_for("staging to be live", MINUTE, || async { served(&app, "staging").await }).await;
        let good = repos.pipeline.head("master");

        let broken = crate::support::flow::pipeline_yaml(QUICK_STEPS).replace("health: /healthz", "health: /healthz\n  helth: typo");
        repos.pipeline.write("apps/shop/pipeline.yaml", &broken);
        let bad = repos.pipeline.commit("typo");
        scan(&app).await;
        let status = app.get("/api/v1/config").await.json();
        assert_eq!(status["pipeline_sha"], bad.as_str());
        assert_eq!(status["state"], "rejected");
        assert_eq!(status["issues"][0]["file"], "apps/shop/pipeline.yaml");
        assert_eq!(status["issues"][0]["line"], 8);
        assert_eq!(status["issues"][0]["field"], "helth");
        // The app still runs with the last valid configuration.
        repos.app.checkout("latest");
        repos.app.write("CHANGES", "v3");
        let v3 = repos.app.commit("after the typo");
        scan(&app).await;
        wait_for("staging to deploy with the old configuration", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&v3))
        })
        .await;
        let runs = app.get("/api/v1/runs").await.json();
        let run = runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == v3.as_str()).unwrap();
        let detail = app.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
        assert_eq!(detail["pipeline_sha"], good.as_str());
        // The dashboard shows the problem.
        let html = app.get("/").await.text();
        assert!(html.contains("apps/shop/pipeline.yaml:8"), "the error is on the dashboard");
        app.stop().await;
    }
}

on_both! {
    async fn a_failed_health_check_keeps_the_old_version_serving(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let mut app = start(backend, &repos).await;
        let v1 = repos.app.head("latest");
        wait_for("v1 on staging", MINUTE, || async { served(&app, "staging").await.filter(|t| t.contains(&v1)) }).await;

        repos.app.checkout("latest");
        repos.app.write("app.py", "import sys\nprint('boom: missing config', file=sys.stderr)\nsys.exit(3)\n");
        let broken = repos.app.commit("broken start");
        scan(&app).await;
        let run = wait_for("the broken run to fail", MINUTE, || async {
            run_states(&app).await.into_iter().find(|(_, sha, state)| sha == &broken && state == "failed")
        })
        .await;
        assert_eq!(run.0, "staging");
        assert!(served(&app, "staging").await.is_some_and(|t| t.contains(&v1)), "v1 still serves");
        let environments = app.get("/api/v1/environments").await.json();
        let staging = environments.as_array().unwrap().iter().find(|e| e["name"] == "staging").unwrap().clone();
        assert_eq!(staging["state"], "live");
        assert_eq!(staging["commit_sha"], v1.as_str());
        assert!(staging["state_detail"].as_str().unwrap().contains("the previous version is still serving"), "{staging}");
        let runs = app.get("/api/v1/runs").await.json();
        let failed = runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == broken.as_str()).unwrap();
        let detail = app.get(&format!("/api/v1/runs/{}", failed["id"])).await.json();
        let deploy = detail["steps"].as_array().unwrap().iter().find(|s| s["name"] == "deploy").unwrap();
        let log = app.get(&format!("/api/v1/runs/{}/steps/{}/log", failed["id"], deploy["id"])).await.text();
        assert!(log.contains("the app exited before it became healthy"), "{log}");
        assert!(log.contains("boom: missing config"), "the app's own output explains it: {log}");
        // Workspaces of finished runs are gone.
        let left: Vec<_> = std::fs::read_dir(app.data_path().join("work")).unwrap().collect();
        assert!(left.is_empty(), "workspaces left behind: {left:?}");
        app.stop().await;
    }

    async fn a_preview_past_its_ttl_is_destroyed(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app_yaml = crate::support::flow::app_yaml(&repos.app.path(), "").replace("    branches: \"*\"\n", "    branches: \"*\"\n    ttl: 1h\n");
        repos.pipeline.write("apps/shop/app.yaml", &app_yaml);
        repos.pipeline.commit("short-lived previews");
        repos.app.checkout_new("feature/short");
        let sha = repos.app.commit("short");
        let mut app = start(backend, &repos).await;
        let env = gantry::gitops::stack::preview_name("preview", "feature/short");
        wait_for("the preview to be live", MINUTE, || async { served(&app, &env).await.filter(|t| t.contains(&sha)) }).await;
        // Its run ends (and lets go of the deploy lock, which holds expiry
        // off) after the new version already serves.
        wait_for("the preview's run to end", MINUTE, || async {
            let runs = app.get("/api/v1/runs").await.json();
            runs.as_array()?.iter().find(|r| r["commit_sha"] == sha.as_str() && r["state"] == "succeeded").cloned()
        })
        .await;
        // Not yet: the TTL counts from the preview's last deploy.
        gantry::jobs::lifecycle::expire(&app.state).await.expect("expire");
        assert!(served(&app, &env).await.is_some(), "destroyed before its TTL");
        app.state.clock.advance(Duration::from_secs(3601));
        gantry::jobs::lifecycle::expire(&app.state).await.expect("expire");
        assert!(served(&app, &env).await.is_none());
        let audit = app.get("/api/v1/audit").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "environment.destroy" && e["reason"] == "its TTL of 1h passed"), "{audit}");
        app.stop().await;
    }

    async fn a_running_run_can_be_cancelled(backend) {
        let repos = Repos::new("  - { name: wait, run: \"sleep 120\" }\n");
        let mut app = start(backend, &repos).await;
        let latest = repos.app.head("latest");
        wait_for("the run to be running", MINUTE, || async {
            run_states(&app).await.into_iter().find(|(_, sha, state)| sha == &latest && state == "running")
        })
        .await;
        let runs = app.get("/api/v1/runs").await.json();
        let id = runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == latest.as_str()).unwrap()["id"].as_i64().unwrap();
        assert_eq!(app.post_json(&format!("/api/v1/runs/{id}/cancel"), serde_json::json!({})).await.status, 202);
        wait_for("the run to be cancelled", MINUTE, || async {
            let detail = app.get(&format!("/api/v1/runs/{id}")).await.json();
            (detail["run"]["state"] == "cancelled").then_some(())
        })
        .await;
        let again = app.post_json(&format!("/api/v1/runs/{id}/cancel"), serde_json::json!({})).await;
        assert_eq!(again.status, 409);
        app.stop().await;
    }
}

/// The next `version` of the change feed, within a minute.
async fn next_version(stream: &mut axum::body::BodyDataStream) -> String {
    use futures_util::StreamExt;
    let mut text = String::new();
    tokio::time::timeout(MINUTE, async {
        loop {
            let chunk = stream.next().await.expect("the feed ended").expect("chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(line) = text
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
            {
                return line.trim().to_string();
            }
        }
    })
    .await
    .expect("a version event within a minute")
}

crate::on_both! {
    async fn the_change_feed_moves_when_an_environment_does(backend) {
        let repos = Repos::new(QUICK_STEPS);
        let app = start(backend, &repos).await;
        wait_for("staging live", MINUTE, || async {
            let envs = app.get("/api/v1/environments").await.json();
            envs.as_array()?.iter().find(|e| e["branch"] == "latest" && e["state"] == "live").cloned()
        })
        .await;
        let mut feed = app.stream("/api/v1/changes").await;
        let first = next_version(&mut feed).await;
        assert!(!first.is_empty());

        // A push: a new run and a redeploy move the version, without the
        // client asking again.
        repos.app.checkout("latest");
        repos.app.write("feed.txt", "1");
        repos.app.commit("moves the feed");
        scan(&app).await;
        let second = next_version(&mut feed).await;
        assert_ne!(first, second, "a new version after the push");

        // A client that reconnects starts from the current version.
        let mut again = app.stream("/api/v1/changes").await;
        let resumed = next_version(&mut again).await;
        assert!(!resumed.is_empty());
    }
}

/// An app `shop` with an environment `staging`, straight in the database
/// (for tests of the run queue itself): their ids.
async fn shop_staging(app: &TestApp) -> (i64, i64) {
    use gantry::db;
    let pool = app.db().pool();
    let app_id = db::apps::insert(
        pool,
        &db::apps::NewApp {
            name: "shop",
            source_url: "/nowhere",
            config: "{}",
            pipeline_sha: "p",
        },
        1,
    )
    .await
    .expect("app");
    let environment_id = db::environments::insert(
        pool,
        &db::environments::NewEnvironment {
            app_id,
            name: "staging",
            stack_entry: "staging",
            branch: Some("main"),
            url: None,
            namespace: None,
        },
        1,
    )
    .await
    .expect("environment");
    (app_id, environment_id)
}

/// Queues a run of `main` for the environment; its id.
async fn queue(app: &TestApp, app_id: i64, environment_id: i64, trigger: &str) -> i64 {
    queue_to(app, app_id, environment_id, trigger, false).await
}

/// Queues a run that deploys to the local target, or not.
async fn queue_to(
    app: &TestApp,
    app_id: i64,
    environment_id: i64,
    trigger: &str,
    local_target: bool,
) -> i64 {
    let run = gantry::db::runs::NewRun {
        app_id,
        environment_id,
        branch: "main",
        commit_sha: "c",
        pipeline_sha: "p",
        state: app::dto::RunState::Queued,
        trigger,
        local_target,
    };
    gantry::db::runs::insert(app.db().pool(), &run, 1)
        .await
        .expect("run")
}

// With `runner.local_replica` named, a replica that is not it never claims
// a run deploying to the local target (its processes would live on the
// wrong machine), oldest first or not; the named one does.
on_both! {
    async fn runs_of_the_local_target_are_claimed_only_by_the_replica_that_runs_it(app: TestApp) {
        use gantry::db;
        let (app_id, environment_id) = shop_staging(&app).await;
        let local = queue_to(&app, app_id, environment_id, "push", true).await;
        let cluster = queue_to(&app, app_id, environment_id, "push", false).await;
        let other = db::runs::claim_next(app.db(), "other", false, 2).await.expect("claim").expect("a run");
        assert_eq!(other.id, cluster, "the older local run is skipped, not claimed");
        assert!(db::runs::claim_next(app.db(), "other", false, 2).await.expect("claim").is_none());
        let owner = db::runs::claim_next(app.db(), "owner", true, 2).await.expect("claim").expect("a run");
        assert_eq!(owner.id, local);
    }
}

// Runners claiming at once — as replicas on one PostgreSQL do, each with
// several runners — take each queued run exactly once, rollbacks first.
on_both! {
    async fn concurrent_claims_take_each_run_once(app: TestApp) {
        use gantry::db;
        let (app_id, environment_id) = shop_staging(&app).await;
        let mut queued = Vec::new();
        for n in 0..40 {
            let trigger = if n == 39 { "rollback" } else { "push" };
            queued.push(queue(&app, app_id, environment_id, trigger).await);
        }
        let first = db::runs::claim_next(app.db(), "judge", true, 2)
            .await
            .expect("claim")
            .expect("a run");
        assert_eq!(first.id, queued[39], "the rollback first");

        let claimers: Vec<_> = (0..8)
            .map(|runner| {
                let db = app.db().clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while let Some(run) = db::runs::claim_next(&db, &format!("runner-{runner}"), true, 3)
                        .await
                        .expect("claim")
                    {
                        mine.push(run.id);
                    }
                    mine
                })
            })
            .collect();
        let mut claimed = vec![first.id];
        for claimer in claimers {
            claimed.extend(claimer.await.expect("join"));
        }
        claimed.sort_unstable();
        let mut wanted = queued.clone();
        wanted.sort_unstable();
        assert_eq!(claimed, wanted, "every run once, none twice");
    }
}

// A run's lease is measured in the database's clock: a replica whose own
// clock is off cannot find a live run expired. Renewed just now, it is not
// expired for a 3 s lease; its heartbeat pushed 10 s into the past (as a
// replica that stopped renewing leaves it), it is, and one take-over wins.
// The run is queued again: the replica that lost it can no longer renew
// it, and the next claim is its second attempt.
on_both! {
    async fn run_leases_expire_by_the_database_clock(app: TestApp) {
        use gantry::db;
        let pool = app.db().pool();
        let (app_id, environment_id) = shop_staging(&app).await;
        let id = queue(&app, app_id, environment_id, "push").await;
        // The claim's `now` is the replica's (here: 10 s ahead); the lease
        // is stamped by the database.
        let ahead = gantry::db::now_millis() + 10_000;
        db::runs::claim_next(app.db(), "replica-a", true, ahead).await.expect("claim").expect("a run");
        let lease = db::runs::Orphans::LeaseExpired(3_000);
        let mut conn = pool.acquire().await.expect("connection");
        let resume = db::runs::TakeOver::Resume;
        assert!(db::runs::list_orphans(app.db(), lease).await.expect("list").is_empty());
        assert!(!db::runs::take_over(app.db(), &mut conn, id, lease, resume, ahead).await.expect("take"));
        assert!(db::runs::heartbeat(app.db(), id, "replica-a", 1).await.expect("renew"), "still its replica's");
        assert_eq!(db::runs::list_orphans(app.db(), db::runs::Orphans::All).await.expect("list").len(), 1, "every running run");
        // A replica shutting down hands over its own runs only.
        let other = db::runs::Orphans::Of("replica-b");
        assert!(db::runs::list_orphans(app.db(), other).await.expect("list").is_empty());
        assert!(!db::runs::take_over(app.db(), &mut conn, id, other, resume, ahead).await.expect("take"));
        assert_eq!(db::runs::list_orphans(app.db(), db::runs::Orphans::Of("replica-a")).await.expect("list").len(), 1);

        sqlx::query("UPDATE runs SET heartbeat_at = heartbeat_at - 10000 WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .expect("age the heartbeat");
        assert_eq!(db::runs::list_orphans(app.db(), lease).await.expect("list").len(), 1);
        assert!(db::runs::take_over(app.db(), &mut conn, id, lease, resume, ahead).await.expect("take"));
        assert!(!db::runs::take_over(app.db(), &mut conn, id, lease, resume, ahead).await.expect("take"), "once");
        drop(conn);
        assert!(!db::runs::heartbeat(app.db(), id, "replica-a", 1).await.expect("renew"), "lost");
        let again = db::runs::claim_next(app.db(), "replica-b", true, ahead).await.expect("claim").expect("the run again");
        assert_eq!((again.id, again.attempt), (id, 2));
    }
}
