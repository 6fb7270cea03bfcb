//! Change requests on plain git remotes: opened by a developer, previewed,
//! approved by admins under the target environment's policy, merged with
//! git2 and pushed; conflicts, fast-forward only, two-of-N, no
//! self-approval, freezes and overrides, fresh sign-in for production.

use std::time::Duration;

use app::dto::Role;
use serde_json::{Value, json};

use crate::cli::gantry_cli;
use crate::on_both;
use crate::support::flow::{MINUTE, scan, served, start, start_with, wait_for};
use crate::support::process::{Server, admin_token, free_port, stderr};
use crate::support::remote::{Remote, approve_held, decide, held_run, open, ready};

fn production_policy(policy: &str) -> impl FnOnce(String) -> String {
    move |yaml: String| yaml.replace("    approval: { required: 1 }\n", &format!("{policy}\n"))
}

fn audit_actions(audit: &Value) -> Vec<String> {
    audit
        .as_array()
        .expect("audit")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

on_both! {
    async fn an_approved_change_request_is_merged_and_its_target_deploys(backend) {
        let remote = Remote::new();
        // The branch also carries a file whose text is markup.
        remote.work().write("evil.html", "<img src=x onerror=alert(1)>\n");
        let feature = remote.feature("feature-x", "latest", "feature.txt");
        let old_latest = remote.head("latest");
        let mut app = ready(start(backend, &remote.repos).await).await;
        let dev = app.token("dev", Role::Developer, Some("shop")).await;
        let admin = app.admin_token.clone();

        let opened = open(&app, &dev, json!({ "app": "shop", "source_branch": "feature-x" })).await;
        assert_eq!(opened["target_branch"], "latest");
        assert_eq!(opened["state"], "open");
        assert_eq!(opened["author"], "dev");
        assert_eq!(opened["head_sha"], feature.as_str());
        assert_eq!(opened["title"], "add feature-x");
        let id = opened["id"].as_i64().unwrap();

        // Its preview is built and shown on the request.
        let detail = wait_for("the preview run of the request", MINUTE, || async {
            let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
            (detail["run"]["state"] == "succeeded").then_some(detail)
        })
        .await;
        assert_eq!(detail["preview"]["name"], "preview-feature-x");
        assert_eq!(detail["run"]["commit_sha"], feature.as_str());
        assert_eq!(detail["required_approvals"], 1);
        assert_eq!(detail["approver_roles"], json!(["admin"]));
        assert!(served(&app, "preview-feature-x").await.is_some_and(|t| t.contains(&feature)));

        // Why a preview failed is for testers and up: a viewer reading the
        // request sees that it failed, not the reason.
        {
            use gantry::db;
            let pool = app.db().pool();
            let shop = db::apps::find_active_by_name(pool, "shop").await.unwrap().unwrap();
            let preview = db::environments::find_by_name(pool, shop.id, "preview-feature-x").await.unwrap().unwrap();
            let why = "deploy failed: secret DB_PASSWORD=hunter2 rejected";
            db::environments::set_state(pool, preview.id, app::dto::EnvironmentState::Failed, Some(why), 1_795_846_500_000).await.unwrap();
            let viewer = app.token("watcher", Role::Viewer, Some("shop")).await;
            let seen = app.get_as(&viewer, &format!("/api/v1/change-requests/{id}")).await.json();
            assert_eq!(seen["preview"]["state"], "failed", "{seen}");
            assert!(seen["preview"]["state_detail"].is_null(), "{seen}");
            assert!(!seen.to_string().contains("hunter2"), "{seen}");
            let page = app.get_as(&viewer, &format!("/change-requests/{id}")).await.text();
            assert!(!page.contains("hunter2"), "the page hides it too");
            let tester = app.token("qa", Role::Tester, Some("shop")).await;
            let told = app.get_as(&tester, &format!("/api/v1/change-requests/{id}")).await.json();
            assert_eq!(told["preview"]["state_detail"], why);
            db::environments::set_state(pool, preview.id, app::dto::EnvironmentState::Live, None, 1_795_846_500_001).await.unwrap();

            // What it changes, file by file: the lines for developers, the
            // names for a viewer; the author's text stays text.
            let files = app.get_as(&dev, &format!("/api/v1/change-requests/{id}/files")).await.json();
            let paths: Vec<&str> = files["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert_eq!(paths, ["evil.html", "feature.txt"], "{files}");
            let evil = &files["files"][0];
            assert_eq!((evil["status"].as_str(), evil["additions"].as_i64()), (Some("added"), Some(1)));
            assert!(evil["lines"][0].as_str().unwrap().starts_with("@@ -0,0 +1 @@"), "{evil}");
            assert_eq!(evil["lines"][1], "+<img src=x onerror=alert(1)>");
            let withheld = app.get_as(&viewer, &format!("/api/v1/change-requests/{id}/files")).await.json();
            assert_eq!(withheld["lines_withheld"], true);
            assert!(withheld["files"].as_array().unwrap().iter().all(|f| f["lines"].as_array().unwrap().is_empty()), "{withheld}");
            assert_eq!(withheld["files"][0]["path"], "evil.html", "names are shown");
            assert!(withheld["files"][0]["additions"].is_null(), "no file is read for a viewer: {withheld}");
            let page = app.get_as(&dev, &format!("/change-requests/{id}")).await.text();
            assert!(page.contains("+&lt;img src=x onerror=alert(1)&gt;"), "the diff is on the page, escaped");
            assert!(!page.contains("<img src=x"), "never as markup");
        }

        // Opening it twice is a conflict; a developer cannot approve.
        let twice = app.post_as(&dev, "/api/v1/change-requests", json!({ "app": "shop", "source_branch": "feature-x" })).await;
        assert_eq!(twice.status, 409, "{}", twice.text());
        let (status, body) = decide(&app, &dev, id, "approve", "lgtm").await;
        assert_eq!(status, 403, "{body}");

        // An admin approves: Gantry merges with a merge commit and pushes.
        let (status, merged) = decide(&app, &admin, id, "approve", "ship it").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        let latest = remote.head("latest");
        assert_eq!(remote.parents("latest"), [old_latest, feature.clone()]);
        let message = remote.bare_git(&["log", "-1", "--format=%B", "latest"]);
        assert!(message.starts_with("Merge branch 'feature-x' into latest"), "{message}");
        assert!(message.contains("Approved-by: test-admin"), "{message}");

        // The target branch's pipeline runs the merge, tied to the request.
        wait_for("staging to serve the merge", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&latest))
        })
        .await;
        let runs = app.get("/api/v1/runs").await.json();
        let run = runs.as_array().unwrap().iter().find(|r| r["commit_sha"] == latest.as_str()).expect("the merge's run").clone();
        let run = app.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
        assert_eq!(run["trigger"], "change_request");

        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["merge_sha"], latest.as_str());
        assert_eq!(detail["merged_by"], "test-admin");
        let decisions: Vec<(&str, &str)> = detail["decisions"].as_array().unwrap().iter().map(|d| (d["who"].as_str().unwrap(), d["decision"].as_str().unwrap())).collect();
        assert_eq!(decisions, [("test-admin", "approved")]);

        // Nothing left to decide; the audit log has the whole story.
        let (status, _) = decide(&app, &admin, id, "reject", "too late").await;
        assert_eq!(status, 409);
        let actions = audit_actions(&app.get("/api/v1/audit").await.json());
        for action in ["change_request.open", "change_request.approve", "change_request.merge"] {
            assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
        }
        app.stop().await;
    }

    async fn promotion_needs_two_approvers_and_never_the_author(backend) {
        let remote = Remote::with_app_yaml(production_policy("    approval: { required: 2, roles: [admin] }"));
        let mut app = ready(start(backend, &remote.repos).await).await;
        let ada = app.admin_token.clone();
        let bo = app.token("bo", Role::Admin, None).await;
        let master_before = remote.head("master");
        // Production's first commit is covered by approving its run.
        approve_held(&app, "production", &[&ada, &bo]).await;

        // An admin proposes promoting latest into production.
        let opened = open(&app, &ada, json!({ "app": "shop", "source_branch": "latest" })).await;
        assert_eq!(opened["target_branch"], "master");
        let id = opened["id"].as_i64().unwrap();

        // The author cannot approve their own change.
        let (status, body) = decide(&app, &ada, id, "approve", "mine").await;
        assert_eq!(status, 403, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("wrote this change"), "{body}");

        // One of two approvals: still open, and saying so.
        let (status, after_one) = decide(&app, &bo, id, "approve", "ok").await;
        assert_eq!(status, 200, "{after_one}");
        assert_eq!(after_one["state"], "open");
        assert_eq!(after_one["state_detail"], "1 of 2 approvals");
        let (status, _) = decide(&app, &bo, id, "approve", "again").await;
        assert_eq!(status, 409, "the same person twice does not count twice");

        let cy = app.token("cy", Role::Admin, None).await;
        let (status, merged) = decide(&app, &cy, id, "approve", "ok").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        let master = remote.head("master");
        assert_eq!(remote.parents("master"), [master_before, remote.head("latest")]);

        // The approved merge deploys to production without a second hold.
        wait_for("production to serve the promotion", MINUTE, || async {
            served(&app, "production").await.filter(|text| text.contains(&master))
        })
        .await;
        let pending = app.get("/api/v1/approvals").await.json();
        assert!(pending.as_array().unwrap().iter().all(|p| p["commit_sha"] != master.as_str()), "{pending}");
        app.stop().await;
    }

    async fn a_conflict_leaves_the_request_open_for_its_author(backend) {
        let remote = Remote::new();
        let work = remote.work();
        work.git(&["checkout", "-q", "-b", "feature-y", "latest"]);
        work.write("CHANGES", "feature y\n");
        work.commit("feature y changes CHANGES");
        remote.push("feature-y");
        work.checkout("latest");
        work.write("CHANGES", "someone else\n");
        work.commit("latest changes CHANGES too");
        remote.push("latest");
        let mut app = ready(start(backend, &remote.repos).await).await;
        let dev = app.token("dev", Role::Developer, Some("shop")).await;
        let admin = app.admin_token.clone();
        let latest_before = remote.head("latest");

        let id = open(&app, &dev, json!({ "app": "shop", "source_branch": "feature-y", "title": "Y" })).await["id"].as_i64().unwrap();
        let (status, conflict) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(status, 200, "{conflict}");
        assert_eq!(conflict["state"], "conflict");
        let detail = conflict["state_detail"].as_str().unwrap();
        assert!(detail.contains("CHANGES") && detail.contains("Merge latest into feature-y"), "{detail}");
        assert_eq!(remote.head("latest"), latest_before, "nothing was pushed");

        // The author resolves and pushes: the request moves to the new head,
        // approvals start over, and the next approval merges.
        work.checkout("feature-y");
        let _ = std::process::Command::new("git").args(["merge", "-q", "latest"]).current_dir(work.dir.path()).output();
        work.write("CHANGES", "feature y\nsomeone else\n");
        let resolved = work.commit("merge latest, resolve CHANGES");
        remote.push("feature-y");
        scan(&app).await;
        wait_for("the request to follow the new head", MINUTE, || async {
            let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
            (detail["summary"]["head_sha"] == resolved.as_str() && detail["summary"]["state"] == "open").then_some(())
        })
        .await;
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert_eq!(detail["approvals_of_head"], 0, "approvals of the old head do not count");
        let (status, merged) = decide(&app, &admin, id, "approve", "resolved").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        assert_eq!(remote.bare_git(&["show", "latest:CHANGES"]), "feature y\nsomeone else");
        app.stop().await;
    }

    async fn fast_forward_only_asks_for_a_rebase(backend) {
        let remote = Remote::with_app_yaml(|yaml| yaml + "merge: fast-forward\n");
        let feature = remote.feature("feature-x", "latest", "feature.txt");
        let mut app = ready(start(backend, &remote.repos).await).await;
        let dev = app.token("dev", Role::Developer, Some("shop")).await;
        let admin = app.admin_token.clone();

        // A fast-forward makes the source's commit the target's head.
        let id = open(&app, &dev, json!({ "app": "shop", "source_branch": "feature-x" })).await["id"].as_i64().unwrap();
        let (_, merged) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(merged["state"], "merged", "{merged}");
        assert_eq!(remote.head("latest"), feature);

        // A branch that is behind its target cannot be fast-forwarded.
        remote.feature("feature-z", "master", "z.txt");
        let id = open(&app, &dev, json!({ "app": "shop", "source_branch": "feature-z" })).await["id"].as_i64().unwrap();
        let (_, refused) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(refused["state"], "conflict", "{refused}");
        assert!(refused["state_detail"].as_str().unwrap().contains("Rebase feature-z onto latest"), "{refused}");
        assert_eq!(remote.head("latest"), feature, "nothing was pushed");
        app.stop().await;
    }

    async fn a_freeze_blocks_promotion_until_an_audited_override(backend) {
        // Frozen now: a window starts every minute and lasts an hour.
        let remote = Remote::with_app_yaml(production_policy(
            "    approval: { required: 1 }\n    freeze:\n      - { start: \"* * * * *\", for: 1h, reason: \"release train boarding\" }",
        ));
        let mut app = ready(start(backend, &remote.repos).await).await;
        let dev = app.token("dev", Role::Developer, Some("shop")).await;
        let admin = app.admin_token.clone();
        let master_before = remote.head("master");

        let id = open(&app, &dev, json!({ "app": "shop", "source_branch": "latest" })).await["id"].as_i64().unwrap();
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        assert!(detail["freeze"].as_str().unwrap().ends_with("release train boarding"), "{detail}");
        let (status, held) = decide(&app, &admin, id, "approve", "ok").await;
        assert_eq!(status, 200, "{held}");
        assert_eq!(held["state"], "approved");
        let why = held["state_detail"].as_str().unwrap();
        assert!(why.contains("frozen until") && why.contains("release train boarding"), "{why}");
        assert_eq!(remote.head("master"), master_before, "nothing merged during the freeze");

        // The override needs a reason and an admin; it merges and is audited.
        let (status, body) = decide(&app, &admin, id, "override", "").await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = decide(&app, &dev, id, "override", "I am in a hurry").await;
        assert_eq!(status, 403, "{body}");
        let (status, merged) = decide(&app, &admin, id, "override", "hotfix for the checkout outage").await;
        assert_eq!(status, 200, "{merged}");
        assert_eq!(merged["state"], "merged", "{merged}");
        assert_ne!(remote.head("master"), master_before);
        let audit = app.get("/api/v1/audit").await.json();
        let entry = audit.as_array().unwrap().iter().find(|e| e["action"] == "change_request.override").expect("override audited");
        assert_eq!(entry["actor"], "test-admin");
        assert_eq!(entry["reason"], "hotfix for the checkout outage");
        app.stop().await;
    }

    async fn a_frozen_environment_holds_direct_pushes_too(backend) {
        let remote = Remote::with_app_yaml(|yaml| yaml.replace(
            "    branch: latest\n    target: local\n",
            "    branch: latest\n    target: local\n    freeze:\n      - { start: \"* * * * *\", for: 1h, reason: \"quiet hours\" }\n",
        ));
        let mut app = ready(start(backend, &remote.repos).await).await;
        let held = wait_for("the staging run to be held", MINUTE, || async {
            let pending = app.get("/api/v1/approvals").await.json();
            pending.as_array().unwrap().iter().find(|p| p["environment"] == "staging").map(|p| p["run_id"].as_i64().unwrap())
        })
        .await;
        let approve = app.post_json(&format!("/api/v1/runs/{held}/approve"), json!({})).await;
        assert_eq!(approve.status, 409, "{}", approve.text());
        assert!(approve.text().contains("quiet hours"), "{}", approve.text());
        let short = app.post_json(&format!("/api/v1/runs/{held}/override"), json!({ "comment": "" })).await;
        assert_eq!(short.status, 400, "{}", short.text());
        let released = app.post_json(&format!("/api/v1/runs/{held}/override"), json!({ "comment": "demo for the board" })).await;
        assert_eq!(released.status, 200, "{}", released.text());
        assert_eq!(released.json()["outcome"], "released");
        let latest = remote.head("latest");
        wait_for("staging to serve after the override", MINUTE, || async {
            served(&app, "staging").await.filter(|text| text.contains(&latest))
        })
        .await;
        let audit = app.get("/api/v1/audit").await.json();
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "run.override" && e["reason"] == "demo for the board"), "{audit}");
        app.stop().await;
    }

    async fn production_approval_demands_a_fresh_sign_in(backend) {
        let remote = Remote::with_app_yaml(production_policy("    approval: { required: 1, reauth: true }"));
        let mut app = ready(start_with(backend, &remote.repos, |config| {
            config.dev_login = true;
            config.reauth_max_age = Duration::from_secs(60);
        })
        .await)
        .await;
        let dev = app.token("dev", Role::Developer, Some("shop")).await;
        let id = open(&app, &dev, json!({ "app": "shop", "source_branch": "latest" })).await["id"].as_i64().unwrap();

        // An API token carries no sign-in time: refused.
        let (status, body) = decide(&app, &app.admin_token.clone(), id, "approve", "ok").await;
        assert_eq!(status, 403, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("fresh sign-in"), "{body}");

        // A sign-in older than the limit: refused.
        let stale = app.sign_in("eve", "admin").await;
        app.state.clock.advance(Duration::from_secs(61));
        let response = app.post_as_browser(&stale, &format!("/api/v1/change-requests/{id}/approve"), json!({ "comment": "ok" })).await;
        assert_eq!(response.status, 403, "{}", response.text());

        // Signing in again makes it fresh; the approval records when.
        let fresh = app.sign_in("eve", "admin").await;
        let before = app.state.clock.now_millis();
        // Production's first commit is covered by approving its run.
        let first = held_run(&app, "production").await;
        let response = app.post_as_browser(&fresh, &format!("/api/v1/runs/{first}/approve"), json!({})).await;
        assert_eq!(response.status, 200, "{}", response.text());
        let response = app.post_as_browser(&fresh, &format!("/api/v1/change-requests/{id}/approve"), json!({ "comment": "ok" })).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["state"], "merged");
        let detail = app.get(&format!("/api/v1/change-requests/{id}")).await.json();
        let auth_time = detail["decisions"][0]["auth_time"].as_i64().expect("auth time recorded");
        assert!(auth_time <= before && before - auth_time < 60_000, "{detail}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_opens_shows_and_approves_a_change_request() {
    crate::support::bounded(async {
        let remote = Remote::new();
        remote.feature("feature-x", "latest", "feature.txt");
        let data = tempfile::tempdir().expect("tempdir");
        let admin = admin_token(data.path());
        let data_arg = data.path().join("data").display().to_string();
        let port = free_port();
        let server = Server::start(data.path(), &remote.repos.pipeline.path(), port, &admin);
        let url = format!("http://127.0.0.1:{port}");
        wait_for("the app to be read", MINUTE, || async {
            let envs = server.get("/api/v1/environments").await;
            (!envs.as_array().unwrap().is_empty()).then_some(())
        })
        .await;
        let created = gantry_cli(
            data.path(),
            &url,
            "",
            &[
                "token",
                "create",
                "--name",
                "laptop",
                "--role",
                "developer",
                "--app",
                "shop",
                "--user",
                "dev",
                "--data-dir",
                &data_arg,
            ],
        )
        .await;
        assert!(created.status.success(), "{}", stderr(&created));
        let dev = String::from_utf8_lossy(&created.stdout).trim().to_string();

        let opened = gantry_cli(
            data.path(),
            &url,
            &dev,
            &[
                "cr",
                "open",
                "--app",
                "shop",
                "--source",
                "feature-x",
                "--title",
                "Feature X",
            ],
        )
        .await;
        assert!(opened.status.success(), "{}", stderr(&opened));
        let line = String::from_utf8_lossy(&opened.stdout).to_string();
        assert!(
            line.starts_with("opened #1\tshop\tfeature-x → latest\topen\tdev\tFeature X"),
            "{line}"
        );

        // A developer is refused approval with the server's reason.
        let refused = gantry_cli(data.path(), &url, &dev, &["cr", "approve", "1"]).await;
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            stderr(&refused).contains("needs the admin role"),
            "{}",
            stderr(&refused)
        );

        let approved = gantry_cli(
            data.path(),
            &url,
            &admin,
            &["cr", "approve", "1", "--comment", "ship it"],
        )
        .await;
        assert!(approved.status.success(), "{}", stderr(&approved));
        assert!(String::from_utf8_lossy(&approved.stdout).contains("\tmerged\t"));
        let shown = gantry_cli(data.path(), &url, &dev, &["cr", "show", "1"]).await;
        let text = String::from_utf8_lossy(&shown.stdout).to_string();
        assert!(text.contains("approvals\t1 of 1 (admin)"), "{text}");
        assert!(text.contains("admin\tapproved\tship it"), "{text}");
        let listed = gantry_cli(data.path(), &url, &dev, &["cr", "list"]).await;
        assert!(String::from_utf8_lossy(&listed.stdout).contains("#1\tshop"));
        drop(server);
    })
    .await;
}
