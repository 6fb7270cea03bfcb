//! A developer's app on the local target is as hostile as its steps: it
//! tries the same doors from its sandbox, and its limits hold.

use super::{attack_program, escapes};
use crate::on_both;
use crate::support::TestApp;
use crate::support::flow::{APP_PY, MINUTE, Repos, scan, served, start_listening, wait_for};

const PIPELINE: &str = "apiVersion: gantry.dev/v1
steps:
  - { name: build, run: \"true\" }
  - deploy
local:
  run: python3 app.py
  health: /healthz
  health_timeout: 20s
  resources: { memory: 64Mi, pids: 64 }
";

/// Runs the attack when it starts, then serves what it found.
const ATTACKING_APP: &str = r#"import http.server, os, subprocess, sys
FOUND = subprocess.run([sys.executable, "attack.py"], capture_output=True, text=True).stdout
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = FOUND.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The environment's state and detail once it has failed.
async fn failed(app: &TestApp, env: &str) -> String {
    wait_for(&format!("{env} to fail"), 2 * MINUTE, || async {
        let environments = app.get("/api/v1/environments").await.json();
        environments
            .as_array()?
            .iter()
            .find(|e| e["name"] == env && e["state"] == "failed")
            .map(|e| e["state_detail"].as_str().unwrap_or_default().to_string())
    })
    .await
}

on_both! {
    async fn a_local_app_reaches_nothing_of_gantry_and_its_limits_hold(backend) {
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
        repos.pipeline.commit("a local app with limits");
        let (app, port) = start_listening(backend, &repos, |config| config.runner_max_parallel = 4).await;

        repos.app.checkout_new("attack");
        repos.app.write("attack.py", &attack_program(app.data_path(), std::process::id(), port));
        repos.app.write("app.py", ATTACKING_APP);
        repos.app.commit("an app that tries every door");
        repos.app.checkout("master");
        repos.app.checkout_new("memory");
        repos.app.write("app.py", &format!("x = b'x' * (512 << 20)\n{APP_PY}"));
        repos.app.commit("an app that eats memory");
        repos.app.checkout("master");
        repos.app.checkout_new("bomb");
        repos.app.write("app.py", &format!("import os\nos.system('f() {{ f | f & }}; f &')\n{APP_PY}"));
        repos.app.commit("an app that forks without end");
        // An app that swaps its log for a link to Gantry's key, then fails,
        // so that Gantry quotes "its" last output where viewers read it.
        let key = app.data_path().join("secret.key");
        repos.app.checkout("master");
        repos.app.checkout_new("swap");
        repos.app.write(
            "app.py",
            &format!(
                "import os\nfor name in ['.gantry-app.log', '../1.log', '../2.log', '../3.log']:\n    try:\n        os.remove(name)\n    except OSError:\n        pass\n    try:\n        os.symlink({key:?}, name)\n    except OSError as error:\n        print('refused', name, error)\nraise SystemExit(3)\n",
                key = key.display().to_string()
            ),
        );
        repos.app.commit("an app that points its log at the key");
        scan(&app).await;

        let found = wait_for("the attacking app to serve", 2 * MINUTE, || async {
            served(&app, "preview-attack").await
        })
        .await;
        assert!(escapes(&found).is_empty(), "escaped: {found}");
        for door in ["secret key", "database", "git mirrors", "other workspaces", "gantry environ",
                     "postgres on loopback", "postgres through the gateway", "ptrace gantry",
                     "a host service on its own address"] {
            assert!(found.contains(&format!("blocked {door}:")), "{door}: {found}");
        }
        assert!(!found.contains("uid 0\n"), "{found}");

        let memory = failed(&app, "preview-memory").await;
        assert!(memory.contains("used more than its memory limit (64 MiB)"), "{memory}");
        let bomb = failed(&app, "preview-bomb").await;
        assert!(bomb.contains("more than its limit of 64 processes"), "{bomb}");

        let swap = failed(&app, "preview-swap").await;
        let key_text = std::fs::read_to_string(&key).expect("key");
        assert!(!swap.contains(key_text.trim()), "{swap}");
        let deployments = app.get("/api/v1/releases").await.text()
            + &app.get("/api/v1/environments").await.text();
        assert!(!deployments.contains(key_text.trim()));

        // The other environments serve on.
        let latest = repos.app.head("latest");
        assert!(served(&app, "staging").await.is_some_and(|text| text.contains(&latest)));
    }
}

/// An app that prints without end: its log files stay within the limit
/// (one rotated file more), while it serves on. (Files alone: one backend.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_app_printing_without_end_is_kept_to_its_log_limit() {
    Box::pin(crate::support::bounded(async {
        const LIMIT: u64 = 256 * 1024;
        let repos = Repos::new("");
        repos.pipeline.write("apps/shop/pipeline.yaml", PIPELINE);
        repos.pipeline.commit("a local app");
        let (app, _port) = start_listening("sqlite", &repos, |config| {
            config.runner_log_limit_bytes = LIMIT;
        })
        .await;
        repos.app.checkout_new("flood");
        repos.app.write(
            "app.py",
            &format!(
                "import sys, threading\ndef flood():\n    n = 0\n    while True:\n        n += 1\n        sys.stdout.write('line %d %s\\n' % (n, 'x' * 100))\n        sys.stdout.flush()\nthreading.Thread(target=flood, daemon=True).start()\n{APP_PY}"
            ),
        );
        let sha = repos.app.commit("an app that prints without end");
        scan(&app).await;
        wait_for("the flooding app to serve", 2 * MINUTE, || async {
            served(&app, "preview-flood").await.filter(|text| text.contains(&sha))
        })
        .await;
        // Until it has printed fifty times the limit.
        let logs = app.data_path().join("deploys");
        // The sizes are read as the files are found: the app goes on
        // printing, and a rotation may move either file at any moment.
        let sizes = wait_for("fifty limits of output", 2 * MINUTE, || async {
            let log = find(&logs, ".log")?;
            let rotated = find(&logs, ".log.1")?;
            let text = std::fs::read_to_string(&log).ok()?;
            let last: u64 = text
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("line ")?.split(' ').next()?.parse().ok())?;
            let sizes = [
                (log.clone(), std::fs::metadata(&log).ok()?.len()),
                (rotated.clone(), std::fs::metadata(&rotated).ok()?.len()),
            ];
            (last * 110 > 50 * LIMIT).then_some(sizes)
        })
        .await;
        for (file, size) in sizes {
            assert!(size <= LIMIT, "{} is {size} bytes", file.display());
        }
        assert!(served(&app, "preview-flood").await.is_some(), "it serves on");
    }))
    .await;
}

/// The first file under `dir` whose name ends with `suffix`.
fn find(dir: &std::path::Path, suffix: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find(&path, suffix) {
                return Some(found);
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            return Some(path);
        }
    }
    None
}
