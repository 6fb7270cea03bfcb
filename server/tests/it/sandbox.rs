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
