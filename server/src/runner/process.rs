//! Child processes for steps and local apps: `sh -c` in its own process
//! group, with only the environment Gantry gives it (never Gantry's own,
//! which may hold a database password), so stopping it stops everything it
//! started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Variables passed through from Gantry's environment to every child.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Starts `script` with `sh -c` in `cwd`, in a new process group.
pub fn spawn_shell(
    script: &str,
    cwd: &Path,
    env: &[(String, String)],
    stdout: Stdio,
    stderr: Stdio,
) -> std::io::Result<Child> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).current_dir(cwd).env_clear();
    for name in INHERITED {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    command.spawn()
}

/// Sends `signal` to the whole process group led by `pid`.
pub fn signal_group(pid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    killpg(Pid::from_raw(raw), signal).is_ok()
}

/// True while any process of the group led by `pid` is alive.
pub fn group_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    killpg(Pid::from_raw(raw), None).is_ok()
}

/// Stops the process group: SIGTERM, then SIGKILL after `grace`. Waits for
/// the leader so no zombie is left.
pub async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Children of the leader may outlive it; make sure the group is gone.
    if group_alive(pid) {
        signal_group(pid, Signal::SIGKILL);
    }
}
