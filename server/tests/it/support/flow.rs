//! A pipeline repo and an app repo for flow tests, and waiting for the
//! flow to reach a state.

use std::future::Future;
use std::time::{Duration, Instant};

use gantry::config::Config;

use super::TestApp;
use super::git::WorkRepo;

pub const MINUTE: Duration = Duration::from_secs(60);

/// Gantry on `backend`, watching `repos`, with the flow running.
pub async fn start(backend: &str, repos: &Repos) -> TestApp {
    start_with(backend, repos, |_| {}).await
}

pub async fn start_with(
    backend: &str,
    repos: &Repos,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let pipeline = repos.pipeline.path();
    let mut app = TestApp::with_config(backend, |config| {
        config.pipeline_repo = Some(pipeline);
        // Tests move the flow on explicitly (trigger endpoint, scans).
        config.poll_interval = Duration::from_secs(3600);
        configure(config);
    })
    .await;
    app.start_flow().await;
    app
}

/// Gantry on a real loopback port that its public URL names, so
/// environment URLs are `http://<env>--shop.localhost:<port>/` as in the
/// demo. Returns the port.
pub async fn start_listening(
    backend: &str,
    repos: &Repos,
    configure: impl FnOnce(&mut Config),
) -> (TestApp, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut app = start_with(backend, repos, |config| {
        config.public_url = format!("http://localhost:{port}/").parse().expect("url");
        configure(config);
    })
    .await;
    app.serve_tcp(listener);
    (app, port)
}

/// What the proxy answers for `<env>--shop`, if it answers 200.
pub async fn served(app: &TestApp, env: &str) -> Option<String> {
    let response = app
        .get_host(&format!("{env}--shop.localhost:3000"), "/")
        .await;
    (response.status == 200).then(|| response.text())
}

/// One pass of the git watcher, now.
pub async fn scan(app: &TestApp) {
    gantry::jobs::scan::scan(&app.state, "test")
        .await
        .expect("scan");
}

/// A tiny web app on the local target: answers with the commit it runs.
pub const APP_PY: &str = r#"import http.server, os
COMMIT = os.environ.get("GANTRY_COMMIT", "unknown")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("commit=" + COMMIT + " path=" + self.path + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
"#;

pub fn app_yaml(source: &str, extra_stack: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nsource: {source}\nstack:\n  - env: preview\n    branches: \"*\"\n    target: local\n  - env: staging\n    branch: latest\n    target: local\n  - env: production\n    branch: master\n    target: local\n    approval: {{ required: 1 }}\n{extra_stack}"
    )
}

pub fn pipeline_yaml(steps: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nsteps:\n{steps}  - deploy\nlocal:\n  run: python3 app.py\n  health: /healthz\n  health_timeout: 20s\n"
    )
}

pub const QUICK_STEPS: &str = "  - { name: build, run: \"echo building $GANTRY_SHORT_SHA\" }\n";

/// The repos of one app `shop`: `app` has `master` and `latest`.
pub struct Repos {
    pub pipeline: WorkRepo,
    pub app: WorkRepo,
}

impl Repos {
    pub fn new(steps: &str) -> Repos {
        let app = WorkRepo::new();
        app.write("app.py", APP_PY);
        app.commit("first version");
        app.checkout_new("latest");
        app.write("CHANGES", "staging\n");
        app.commit("staging work");
        app.checkout("master");
        let pipeline = WorkRepo::new();
        pipeline.write("apps/shop/app.yaml", &app_yaml(&app.path(), ""));
        pipeline.write("apps/shop/pipeline.yaml", &pipeline_yaml(steps));
        pipeline.commit("shop");
        Repos { pipeline, app }
    }
}

/// The ledger entry of `version` in `env` once it is live.
pub async fn live_release(app: &TestApp, env: &str, version: &str) -> serde_json::Value {
    wait_for(
        &format!("the {env} release of {version}"),
        MINUTE,
        || async {
            let list = app
                .get(&format!("/api/v1/releases?environment={env}"))
                .await
                .json();
            list.as_array()?
                .iter()
                .find(|r| r["version"] == version && r["state"] == "live")
                .cloned()
        },
    )
    .await
}

/// Polls `check` until it returns `Some`, or fails the test with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The run of `sha` (as the runs list has it), once it has ended.
pub async fn finished(app: &TestApp, sha: &str) -> serde_json::Value {
    let id = wait_for("the run to finish", 2 * MINUTE, || async {
        let runs = app.get("/api/v1/runs").await.json();
        runs.as_array()?
            .iter()
            .find(|r| {
                r["commit_sha"] == sha
                    && ["succeeded", "failed", "cancelled"]
                        .contains(&r["state"].as_str().unwrap_or(""))
            })
            .map(|r| r["id"].as_i64().unwrap())
    })
    .await;
    app.get(&format!("/api/v1/runs/{id}")).await.json()
}
