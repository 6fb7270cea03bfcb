//! A pull request from a fork is a stranger's code: its head branch name
//! (`latest`) maps onto nothing of ours, its builds wait for an admin and
//! get no secrets, and a replayed delivery does nothing.

use serde_json::json;

use super::steps::{ended_run, step_log};
use crate::forge::{app_known, deliver, github_pull_request, register_secrets};
use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{MINUTE, Repos, start, wait_for};

const STEPS: &str =
    "  - { name: build, run: \"echo secret=${DEPLOY_TOKEN:-none}\", secrets: [DEPLOY_TOKEN] }\n";

/// A fork's pull request `number` from its branch `latest` at `sha`, into
/// our `master`: as GitHub sends it, the head in another repository.
fn fork_pull_request(action: &str, path: &str, number: i64, sha: &str) -> serde_json::Value {
    let mut pr = github_pull_request(action, path, number, "latest", sha);
    pr["pull_request"]["base"]["ref"] = json!("master");
    pr["pull_request"]["head"]["repo"]["id"] = json!(999_999);
    pr["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/shop");
    pr["pull_request"]["head"]["repo"]["fork"] = json!(true);
    pr["pull_request"]["title"] = json!("Harmless typo fix");
    pr
}

/// A commit only the forge's request ref points at (`refs/pull/<n>/head`),
/// as GitHub keeps a fork's head in the base repository.
fn fork_commit(repos: &Repos, number: i64, file: &str) -> String {
    repos.app.checkout("master");
    repos.app.checkout_new("fork-work");
    repos.app.write(file, "from the fork\n");
    let sha = repos.app.commit("a fork's change");
    repos
        .app
        .git(&["update-ref", &format!("refs/pull/{number}/head"), &sha]);
    repos.app.checkout("master");
    repos.app.git(&["branch", "-D", "fork-work"]);
    sha
}

async fn runs_of(app: &TestApp, sha: &str) -> Vec<serde_json::Value> {
    let runs = app.get("/api/v1/runs").await.json();
    runs.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["commit_sha"] == sha)
        .cloned()
        .collect()
}

on_both! {
    async fn a_fork_request_named_latest_gets_its_own_preview_and_no_secrets(backend) {
        let repos = Repos::new(STEPS);
        let app = start(backend, &repos).await;
        app_known(&app).await;
        register_secrets(&app).await;
        let put = axum::http::Request::put("/api/v1/secrets/DEPLOY_TOKEN")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(json!({ "value": "tok-3f9a-secret" }).to_string()))
            .unwrap();
        assert_eq!(app.request(put).await.status, 204);
        // Staging's own run for `latest` is planned first (or the count
        // below would race it).
        let staging_runs = wait_for("staging's own run", MINUTE, || async {
            let runs = runs_of(&app, &repos.app.head("latest")).await;
            (!runs.is_empty()).then_some(runs.len())
        })
        .await;

        let path = repos.app.path();
        let sha = fork_commit(&repos, 7, "typo.txt");
        let opened = fork_pull_request("opened", &path, 7, &sha);
        assert_eq!(deliver(&app, "github", "pull_request", "d-1", &opened, None).await.status, 202);

        // Its own name, not our latest.
        let cr = wait_for("the fork's change request", MINUTE, || async {
            let list = app.get("/api/v1/change-requests").await.json();
            list.as_array()?.iter().find(|c| c["title"] == "Harmless typo fix").cloned()
        })
        .await;
        assert_eq!(cr["source_branch"], "pr-7", "{cr}");
        let detail = app.get(&format!("/api/v1/change-requests/{}", cr["id"])).await.json();
        assert_eq!(detail["fork_of"], "mallory/shop", "{detail}");
        let run = wait_for("the fork's run", MINUTE, || async {
            runs_of(&app, &sha).await.into_iter().next()
        })
        .await;
        assert_eq!(run["branch"], "pr-7");
        assert_eq!(run["environment"], "preview-pr-7");
        assert_eq!(run["state"], "waiting_for_approval", "held until an admin allows it");
        assert_eq!(
            runs_of(&app, &repos.app.head("latest")).await.len(),
            staging_runs,
            "staging is not touched"
        );

        // A developer cannot allow it; an admin can, and it runs without secrets.
        let developer = app.token("dev", app::dto::Role::Developer, None).await;
        let refused = app.post_as(&developer, &format!("/api/v1/runs/{}/approve", run["id"]), json!({})).await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let allowed = app.post_json(&format!("/api/v1/runs/{}/approve", run["id"]), json!({})).await;
        assert_eq!(allowed.status, 200, "{}", allowed.text());
        let ended = ended_run(&app, &sha).await;
        assert_eq!(ended["from_fork"], "mallory/shop");
        let log = step_log(&app, &ended, "build").await;
        assert!(log.contains("secret=none"), "{log}");
        assert!(!log.contains("tok-3f9a"), "{log}");
        assert!(log.contains("get no secrets (DEPLOY_TOKEN left out)"), "{log}");

        // A new head is held again.
        let second = fork_commit(&repos, 7, "typo2.txt");
        let synchronized = fork_pull_request("synchronize", &path, 7, &second);
        assert_eq!(deliver(&app, "github", "pull_request", "d-2", &synchronized, None).await.status, 202);
        let again = wait_for("the new head's run", MINUTE, || async {
            runs_of(&app, &second).await.into_iter().next()
        })
        .await;
        assert_eq!(again["state"], "waiting_for_approval");

        // The same signed body under a new delivery id is a replay.
        let replayed = deliver(&app, "github", "pull_request", "d-3", &synchronized, None).await;
        assert_eq!(replayed.status, 200, "{}", replayed.text());
        assert_eq!(replayed.json()["duplicate"], true);
    }
}

/// Counts the dependency caches kept in a data directory.
fn caches_kept(app: &TestApp) -> usize {
    let root = app.data_path().join("caches");
    std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|app_dir| {
            std::fs::read_dir(app_dir.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|file| file.path().extension().is_some_and(|e| e == "tar"))
        .count()
}

// A fork's build neither reads the app's dependency caches (what they hold
// may have been fetched with a secret) nor writes one (the next trusted
// build would run what it left).
#[tokio::test]
async fn a_fork_build_reads_no_dependency_cache_and_leaves_none() {
    let repos = Repos::new(
        "  - name: build\n    cache: [deps]\n    run: \"if [ -f deps/mark ]; then echo warm from $(cat deps/mark); else echo cold; fi; mkdir -p deps; echo $GANTRY_BRANCH > deps/mark\"\n",
    );
    let app = start("sqlite", &repos).await;
    app_known(&app).await;
    register_secrets(&app).await;
    let trusted = ended_run(&app, &repos.app.head("latest")).await;
    assert_eq!(trusted["run"]["state"], "succeeded", "{trusted}");
    assert!(
        step_log(&app, &trusted, "build")
            .await
            .contains("kept for branch latest")
    );
    let kept = caches_kept(&app);
    assert!(kept >= 1, "the trusted build kept its cache");

    let sha = fork_commit(&repos, 9, "typo.txt");
    let opened = fork_pull_request("opened", &repos.app.path(), 9, &sha);
    assert_eq!(
        deliver(&app, "github", "pull_request", "c-1", &opened, None)
            .await
            .status,
        202
    );
    let run = wait_for("the fork's run", MINUTE, || async {
        runs_of(&app, &sha).await.into_iter().next()
    })
    .await;
    let allowed = app
        .post_json(&format!("/api/v1/runs/{}/approve", run["id"]), json!({}))
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let ended = ended_run(&app, &sha).await;
    let log = step_log(&app, &ended, "build").await;
    assert!(
        log.contains("cache: not used: this build comes from the fork mallory/shop"),
        "{log}"
    );
    assert!(log.lines().any(|l| l == "cold"), "{log}");
    assert!(!log.contains("warm from"), "{log}");
    assert_eq!(caches_kept(&app), kept, "the fork kept nothing");
}

/// A step declares the `image` the deploy renders. A fork's declaration is
/// never taken (its preview deploys the pipeline's image), and a trusted
/// step's that is more than an image reference — YAML smuggled into the
/// manifests — fails the deploy before anything is rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forks_declared_image_is_never_deployed_and_a_smuggled_one_never_rendered() {
    let repos = Repos::new(
        "  - { name: build, run: \"if [ -f IMAGE ]; then cat IMAGE >> \\\"$GANTRY_OUTPUTS\\\"; fi\" }\n",
    );
    repos.app.checkout("latest");
    let digest = format!("registry.example.com/shop@sha256:{}", "a".repeat(64));
    repos.app.write("IMAGE", &format!("image={digest}\n"));
    let trusted = repos.app.commit("declare the pushed image");
    repos.app.checkout("master");
    let app = start("sqlite", &repos).await;
    app_known(&app).await;
    register_secrets(&app).await;
    let staging = ended_run(&app, &trusted).await;
    assert_eq!(staging["run"]["state"], "succeeded", "{staging}");
    let log = step_log(&app, &staging, "deploy").await;
    assert!(
        log.contains(&format!("deploys the image step build declared: {digest}")),
        "{log}"
    );

    // The fork declares an image of its own: built, never deployed.
    repos.app.checkout_new("fork-work");
    repos
        .app
        .write("IMAGE", "image=mallory.example/miner:latest\n");
    let sha = repos.app.commit("a fork's change");
    repos.app.git(&["update-ref", "refs/pull/11/head", &sha]);
    repos.app.checkout("master");
    repos.app.git(&["branch", "-D", "fork-work"]);
    let opened = fork_pull_request("opened", &repos.app.path(), 11, &sha);
    assert_eq!(
        deliver(&app, "github", "pull_request", "i-1", &opened, None)
            .await
            .status,
        202
    );
    let run = wait_for("the fork's run", MINUTE, || async {
        runs_of(&app, &sha).await.into_iter().next()
    })
    .await;
    let allowed = app
        .post_json(&format!("/api/v1/runs/{}/approve", run["id"]), json!({}))
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let forked = ended_run(&app, &sha).await;
    let log = step_log(&app, &forked, "deploy").await;
    assert!(
        log.contains("the output `image` a fork's step declared is not deployed"),
        "{log}"
    );
    assert!(!log.contains("mallory.example/miner"), "{log}");

    // A trusted branch's step smuggling YAML: the deploy is refused.
    repos.app.checkout("latest");
    repos.app.write(
        "IMAGE",
        "image=shop:1, securityContext: {privileged: true}\n",
    );
    let smuggled = repos.app.commit("privileged, please");
    repos.app.checkout("master");
    crate::support::flow::scan(&app).await;
    let refused = ended_run(&app, &smuggled).await;
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let deploy = refused["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deploy")
        .cloned()
        .unwrap();
    assert_eq!(deploy["state"], "failed", "{refused}");
    assert!(
        deploy["error"]
            .as_str()
            .unwrap()
            .contains("is not an image reference"),
        "{deploy}"
    );
    // Staging still serves what it served.
    let staging_env = app.get("/api/v1/environments").await.json();
    let served = staging_env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "staging")
        .cloned()
        .unwrap();
    assert_eq!(served["commit_sha"], trusted.as_str(), "{served}");
}
