//! A pipeline repo and an app repo for flow tests, and waiting for the
//! flow to reach a state.

use std::future::Future;
use std::time::{Duration, Instant};

use super::git::WorkRepo;

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
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
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
