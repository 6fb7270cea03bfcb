//! Running the real `gantry` binary, for what only a process shows: exit
//! codes, one-line errors, signals, ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn gantry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gantry")
}

/// A `gantry` command with a clean environment: no inherited `GANTRY_*` or
/// `DATABASE_URL` from the developer's shell.
pub fn gantry(cwd: &Path) -> Command {
    let mut command = Command::new(gantry_bin());
    command.current_dir(cwd).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("GANTRY_LOG", "warn");
    command
}

/// Runs to completion, with a generous limit so a hang fails the test.
pub fn run(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gantry did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port (released for the caller to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Waits until `gantry serve` answers `/healthz` on `port`.
pub fn wait_until_serving(child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("gantry exited early with {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gantry did not start listening on {port}");
}

/// stderr as text, for assertions on messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `gantry serve` on a data directory and a pipeline repo, with an admin
/// token; killed when dropped, with whatever it started.
pub struct Server {
    child: Child,
    pub port: u16,
    pub token: String,
    data_dir: PathBuf,
    /// Killed as by a crash: what it started keeps running.
    crashed: bool,
}

/// An admin token for the data directory (created before the server runs).
pub fn admin_token(data: &Path) -> String {
    admin_token_with(data, &[])
}

/// `admin_token`, with more environment variables (`DATABASE_URL`).
pub fn admin_token_with(data: &Path, env: &[(&str, String)]) -> String {
    token_with(data, env, "admin", "admin")
}

/// A token of `role` for `user` (created if missing), with `gantry token
/// create` on the data directory `data`.
pub fn token_with(data: &Path, env: &[(&str, String)], user: &str, role: &str) -> String {
    let output = gantry(data)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "token",
            "create",
            "--name",
            "crash-test",
            "--role",
            role,
            "--user",
            user,
            "--data-dir",
            &data.join("data").display().to_string(),
        ])
        .output()
        .expect("gantry token create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

impl Server {
    pub fn start(data: &Path, pipeline: &str, port: u16, token: &str) -> Server {
        Server::start_with(data, pipeline, port, token, &[])
    }

    /// `start`, with more environment variables.
    pub fn start_with(
        data: &Path,
        pipeline: &str,
        port: u16,
        token: &str,
        env: &[(&str, String)],
    ) -> Server {
        let data_dir = data.join("data");
        let mut child = gantry(data)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                &data_dir.display().to_string(),
                "--pipeline-repo",
                pipeline,
            ])
            .env("GANTRY_POLL_INTERVAL", "1s")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log_file(data))
            .spawn()
            .expect("spawn gantry");
        wait_until_serving(&mut child, port);
        Server {
            child,
            port,
            token: token.to_string(),
            data_dir,
            crashed: false,
        }
    }

    /// Kills gantry with SIGKILL, as a crash does: its steps and local apps
    /// stay behind for the next start on the data directory to find.
    pub fn kill(mut self) {
        self.crashed = true;
        drop(self);
    }

    /// Stops gantry as a service manager does in a rolling restart
    /// (SIGTERM), and waits until it has exited.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub async fn fetch(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
    }

    pub async fn get(&self, path: &str) -> Value {
        self.fetch(path).await.json().await.expect("json")
    }

    /// A page as text (`/metrics`).
    pub async fn text(&self, path: &str) -> String {
        self.fetch(path).await.text().await.expect("text")
    }

    /// What `<env>--shop` serves through the proxy on its own host, when
    /// it answers 200.
    pub async fn served(&self, env: &str) -> Option<String> {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/", self.port))
            .header("host", format!("{env}--shop.localhost:{}", self.port))
            .send()
            .await
            .ok()?;
        if response.status() == 200 {
            response.text().await.ok()
        } else {
            None
        }
    }

    pub async fn run_of(&self, sha: &str) -> Vec<Value> {
        let runs = self.get("/api/v1/runs").await;
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["commit_sha"] == sha)
            .cloned()
            .collect()
    }
}

/// Where a server started on `data` writes its log, appended to across
/// restarts: shown when a test fails while the server runs.
fn log_file(data: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("gantry.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(data) = self.data_dir.parent()
            && let Ok(log) = std::fs::read_to_string(data.join("gantry.log"))
        {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!("--- the log of gantry on port {} ---\n{tail}", self.port);
        }
        if !self.crashed {
            // The test is over: nothing gantry started may outlive it
            // (leftover apps slowed later tests down).
            gantry::jobs::recovery::kill_orphans(&gantry::state::instance_tag(&self.data_dir));
        }
    }
}

/// Whether a process whose command line holds `pattern` is running.
pub fn alive(pattern: &str) -> bool {
    let output = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("pgrep");
    !String::from_utf8_lossy(&output.stdout).trim().is_empty()
}
