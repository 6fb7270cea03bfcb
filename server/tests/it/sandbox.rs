//! The sandbox on its own: what a hostile script inside sees and reaches.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use gantry::sandbox::{Ending, Limits, Mount, Network, Sandbox, Settings, Spec, Status};
use tokio::io::AsyncReadExt;

pub fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gantry-sandbox"))
}

fn settings(data: &Path) -> Settings {
    Settings {
        enabled: true,
        user: (65534, 65534),
        helper: helper(),
        read_only: Vec::new(),
        private: vec![data.to_path_buf()],
        preview_socket: data.join("run/preview.sock"),
        run_dir: data.join("run"),
        tag: "test".into(),
        relay_port: None,
    }
}

const LIMITS: Limits = Limits {
    memory_bytes: 256 << 20,
    pids: 64,
    cpu_millis: 1000,
    tmp_bytes: 16 << 20,
};

/// Runs `script` in a sandbox with a workspace of its own; its output and exit.
async fn run(
    sandbox: &Sandbox,
    workspace: &Path,
    script: &str,
    network: Network,
) -> (String, gantry::sandbox::Exit) {
    sandbox.hand_over(workspace).await.expect("hand over");
    let cwd = Mount::writable(workspace, "/workspace");
    let mut sandboxed = sandbox
        .spawn(Spec {
            script: script.into(),
            mounts: vec![cwd.clone()],
            cwd,
            env: vec![("HOME".into(), "/workspace".into())],
            limits: LIMITS,
            network,
            publish: None,
            hosts: Vec::new(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
        })
        .await
        .expect("the sandbox starts");
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = sandboxed.child.stdout.take().expect("stdout");
    let mut stderr = sandboxed.child.stderr.take().expect("stderr");
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.expect("stdout");
    b.expect("stderr");
    let exit = sandboxed.wait().await.expect("wait");
    sandboxed.finish().await;
    (format!("{out}{err}"), exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_sees_only_its_workspace_and_the_system() {
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("secret.key"), "KEY").expect("key");
    let workspace = data.path().join("work/run-1");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let sandbox = Sandbox::start(settings(data.path())).await;
    assert!(
        matches!(sandbox.status(), Status::On { .. }),
        "{:?}",
        sandbox.status()
    );
    let key = data.path().join("secret.key");
    let script = format!(
        "id -u; cat {} || echo no-key; ls /proc | grep -c '^[0-9]'; echo hi > /workspace/f && echo wrote; echo x > /usr/x || echo ro-usr",
        key.display()
    );
    let (output, exit) = run(&sandbox, &workspace, &script, Network::None).await;
    assert_eq!(exit.ending, Ending::Exited(0), "{output}");
    println!("{output}");
    assert!(output.contains("no-key"), "{output}");
    assert!(output.contains("wrote"), "{output}");
    assert!(output.contains("ro-usr"), "{output}");
}

/// Without a working sandbox nothing runs, and the run says why in one
/// line; with sandboxing turned off by an admin, pages say so.
mod refusals {
    use crate::support::flow::{MINUTE, QUICK_STEPS, Repos, start_with, wait_for};

    crate::on_both! {
        async fn no_sandbox_no_steps_and_turned_off_is_said_everywhere(backend) {
            let repos = Repos::new(QUICK_STEPS);
            let broken = start_with(backend, &repos, |config| {
                config.sandbox_helper = "/nonexistent/gantry-sandbox".into();
            })
            .await;
            let run = wait_for("the staging run to fail", MINUTE, || async {
                let runs = broken.get("/api/v1/runs").await.json();
                runs.as_array()?.iter().find(|r| r["state"] == "failed").cloned()
            })
            .await;
            let detail = broken.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
            let error = detail["error"].as_str().unwrap_or_default();
            assert!(error.contains("the sandbox is unavailable"), "{detail}");
            assert!(error.contains("/nonexistent/gantry-sandbox"), "{detail}");
            assert!(!error.contains('\n'), "one line: {error}");

            let off = start_with(backend, &repos, |config| config.sandbox = false).await;
            let run = wait_for("a run without the sandbox", MINUTE, || async {
                let runs = off.get("/api/v1/runs").await.json();
                runs.as_array()?.iter().find(|r| r["state"] == "succeeded").cloned()
            })
            .await;
            let detail = off.get(&format!("/api/v1/runs/{}", run["id"])).await.json();
            let warnings = detail["warnings"].to_string();
            assert!(warnings.contains("sandboxing is off"), "{detail}");
            let settings = off.get("/api/v1/settings").await.json();
            assert!(
                settings["sandbox_warning"].as_str().unwrap_or_default().contains("runner.sandbox"),
                "{settings}"
            );
            let page = off.get(&format!("/runs/{}", run["id"])).await.text();
            assert!(page.contains("isolation-warning"), "the run page shows the banner");
        }
    }
}
