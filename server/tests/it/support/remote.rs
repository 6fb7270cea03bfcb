//! An app whose source is a bare `origin`, as on a git server: developers
//! commit in the work tree and push; Gantry merges and pushes into the bare
//! repository.

use serde_json::{Value, json};

use super::TestApp;
use super::flow::{MINUTE, QUICK_STEPS, Repos, app_yaml, wait_for};
use super::git::WorkRepo;

/// The app's repos with a bare `origin` as Gantry's source, as on a git
/// server: developers commit in the work tree and push; Gantry merges and
/// pushes into the bare repository.
pub struct Remote {
    pub repos: Repos,
    pub bare: tempfile::TempDir,
}

impl Remote {
    pub fn new() -> Remote {
        Remote::with_app_yaml(|yaml| yaml)
    }

    /// `edit` changes the generated `app.yaml` (policies, freezes, merge).
    pub fn with_app_yaml(edit: impl FnOnce(String) -> String) -> Remote {
        let repos = Repos::new(QUICK_STEPS);
        let bare = tempfile::tempdir().expect("tempdir");
        let path = bare.path().display().to_string();
        repos
            .app
            .git(&["clone", "-q", "--bare", &repos.app.path(), &path]);
        repos.app.git(&["remote", "add", "origin", &path]);
        repos
            .pipeline
            .write("apps/shop/app.yaml", &edit(app_yaml(&path, "")));
        repos.pipeline.commit("shop from its origin");
        Remote { repos, bare }
    }

    pub fn work(&self) -> &WorkRepo {
        &self.repos.app
    }

    pub fn push(&self, branch: &str) {
        self.work().git(&["push", "-q", "origin", branch]);
    }

    /// A branch's head on the server.
    pub fn head(&self, branch: &str) -> String {
        self.bare_git(&["rev-parse", branch])
    }

    pub fn bare_git(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(self.bare.path())
            .output()
            .expect("git");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    pub fn parents(&self, branch: &str) -> Vec<String> {
        self.bare_git(&["rev-list", "--parents", "-n", "1", branch])
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    }

    /// `branch` from `from` with one new file, pushed; returns its head.
    pub fn feature(&self, branch: &str, from: &str, file: &str) -> String {
        self.work().git(&["checkout", "-q", "-b", branch, from]);
        self.work().write(file, &format!("{branch}\n"));
        let sha = self.work().commit(&format!("add {branch}"));
        self.push(branch);
        sha
    }
}

/// Waits until the pipeline repo has given Gantry the app `shop`.
pub async fn ready(app: TestApp) -> TestApp {
    gantry::jobs::plan::wait_for_app(&app.state, "shop", MINUTE)
        .await
        .expect("app shop");
    app
}

pub async fn open(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post_as(token, "/api/v1/change-requests", body).await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()
}

pub async fn decide(
    app: &TestApp,
    token: &str,
    id: i64,
    action: &str,
    comment: &str,
) -> (u16, Value) {
    let response = app
        .post_as(
            token,
            &format!("/api/v1/change-requests/{id}/{action}"),
            json!({ "comment": comment }),
        )
        .await;
    (response.status.as_u16(), response.json())
}

/// The run of `env` held for approval (a protected environment's first
/// commit: no approval covers it until its run is approved).
pub async fn held_run(app: &TestApp, env: &str) -> i64 {
    wait_for(&format!("the held {env} run"), MINUTE, || async {
        let pending = app.get("/api/v1/approvals").await.json();
        pending
            .as_array()?
            .iter()
            .find(|p| p["environment"] == env)
            .and_then(|p| p["run_id"].as_i64())
    })
    .await
}

/// Approves the held run of `env` once with each token.
pub async fn approve_held(app: &TestApp, env: &str, tokens: &[&str]) {
    let run = held_run(app, env).await;
    for token in tokens {
        let response = app
            .post_as(token, &format!("/api/v1/runs/{run}/approve"), json!({}))
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
}
