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

/// The variable that marks every child process with its Gantry instance
/// (start-up recovery finds a crashed instance's orphans by it).
pub const INSTANCE_VAR: &str = "GANTRY_INSTANCE";

/// Variables passed through from Gantry's environment to every child.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// A child that leads its own process group. Dropping it while the leader
/// still runs kills the whole group, not only the leader as `kill_on_drop`
/// would: `sh -c "python3 app.py"` would otherwise leave the app running
/// when its supervisor is dropped (a runtime shutting down without `stop`).
#[derive(Debug)]
pub struct GroupChild(Child);

impl GroupChild {
    /// Takes charge of `child`, which must lead its own process group.
    pub fn new(child: Child) -> GroupChild {
        GroupChild(child)
    }
}

impl std::ops::Deref for GroupChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for GroupChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // `id` is None once the leader was reaped; its group id may then
        // belong to someone else, so only a live leader's group is killed.
        if let Some(pid) = self.0.id() {
            signal_group(pid, Signal::SIGKILL);
        }
    }
}

/// The variables every child gets from Gantry's own environment.
pub fn inherited_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED
        .iter()
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env
}

/// Starts `script` with `sh -c` in `cwd`, in a new process group.
pub fn spawn_shell(
    script: &str,
    cwd: &Path,
    env: &[(String, String)],
    stdout: Stdio,
    stderr: Stdio,
) -> std::io::Result<GroupChild> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_clear()
        .envs(inherited_env())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().map(GroupChild)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` still runs (a zombie has stopped running).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[tokio::test]
    async fn dropping_a_child_stops_what_its_shell_started() {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = spawn_shell(
            "sleep 301 & echo $! > grandchild; wait",
            dir.path(),
            &[],
            Stdio::null(),
            Stdio::null(),
        )
        .expect("spawn");
        let pid_file = dir.path().join("grandchild");
        let mut pid = String::new();
        for _ in 0..100 {
            pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if pid.ends_with('\n') {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = pid.trim().to_string();
        assert!(running(&pid), "the shell's child {pid:?} is running");

        drop(child);
        for _ in 0..100 {
            if !running(&pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the shell's child {pid} still runs after the child was dropped");
    }
}
