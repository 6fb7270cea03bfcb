//! A sandbox's way out: `slirp4netns` gives its network namespace a TAP
//! device with outbound TCP/UDP through user-mode networking, and no way to
//! the host's loopback services (`--disable-host-loopback`: PostgreSQL on
//! 127.0.0.1:5432 with trust authentication would otherwise be one connect
//! away). A local app's port is published on the host's loopback through
//! slirp4netns's API socket.
//!
//! slirp4netns parses packets a hostile process writes, so it runs in its
//! own sandbox and seccomp filter, and ends when the descriptor Gantry holds
//! closes (`--exit-fd`), which includes Gantry being killed.

use super::SetupFailed;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spawner::Spawner;

/// The guest address slirp4netns gives the sandbox, and its DNS forwarder.
pub const GUEST_DNS: &str = "10.0.2.3";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running slirp4netns for one sandbox.
#[derive(Debug)]
pub struct Slirp {
    child: tokio::process::Child,
    /// Closing this ends slirp4netns.
    _exit: OwnedFd,
    api_socket: Option<PathBuf>,
}

impl Slirp {
    /// Connects the network namespace of `pid` and waits until its
    /// interface is up. `api_socket` is needed to publish ports.
    pub async fn start(
        spawner: &Spawner,
        program: &Path,
        pid: u32,
        api_socket: Option<PathBuf>,
        as_root: bool,
    ) -> Result<Slirp, SetupFailed> {
        let (ready_read, ready_write) = super::pipe()?;
        let (exit_read, exit_write) = super::pipe()?;
        let mut command = tokio::process::Command::new(program);
        command
            .args([
                "--configure",
                "--disable-host-loopback",
                "--mtu=65520",
                "--enable-seccomp",
                "--ready-fd=3",
                "--exit-fd=4",
            ])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(socket) = &api_socket {
            let _ = std::fs::remove_file(socket);
            command.arg(format!("--api-socket={}", socket.display()));
        }
        if as_root {
            // slirp4netns's own mount sandbox: it needs to be root where
            // it runs, which it is only when Gantry is.
            command.arg("--enable-sandbox");
        } else {
            // Without root, the sandbox's network is reached through its
            // user namespace (Gantry's uid owns it).
            command.arg(format!("--userns-path=/proc/{pid}/ns/user"));
        }
        command.arg(pid.to_string()).arg("tap0");
        command
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: ready_write,
                    child_fd: 3,
                },
                FdMapping {
                    parent_fd: exit_read,
                    child_fd: 4,
                },
            ])
            .map_err(|e| e.to_string())?;
        let mut child = spawner
            .spawn(command)
            .await
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_read)
            .map_err(|e| e.to_string())?;
        let mut byte = [0_u8; 1];
        let outcome = tokio::time::timeout(READY_TIMEOUT, ready.read(&mut byte)).await;
        if !matches!(outcome, Ok(Ok(1))) {
            let _ = child.start_kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), pipe.read_to_string(&mut stderr))
                        .await;
            }
            let last = stderr.lines().last().unwrap_or("no message").to_string();
            return Err(format!("slirp4netns did not bring the network up: {last}").into());
        }
        Ok(Slirp {
            child,
            _exit: exit_write,
            api_socket,
        })
    }

    /// Publishes `port` of the sandbox on the host's `127.0.0.1:<port>`.
    pub async fn publish(&self, port: u16) -> Result<(), SetupFailed> {
        let socket = self
            .api_socket
            .as_ref()
            .ok_or_else(|| "slirp4netns was started without an API socket".to_string())?;
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": "tcp",
                "host_addr": "127.0.0.1",
                "host_port": port,
                "guest_port": port,
            }
        });
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("slirp4netns API {}: {e}", socket.display()))?;
        stream
            .write_all(request.to_string().as_bytes())
            .await
            .map_err(|e| format!("slirp4netns API: {e}"))?;
        stream
            .shutdown()
            .await
            .map_err(|e| format!("slirp4netns API: {e}"))?;
        let mut answer = String::new();
        tokio::time::timeout(READY_TIMEOUT, stream.read_to_string(&mut answer))
            .await
            .map_err(|_| "slirp4netns API did not answer".to_string())?
            .map_err(|e| format!("slirp4netns API: {e}"))?;
        let answer: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|_| format!("slirp4netns API answered {answer:?}"))?;
        match answer.get("error") {
            Some(error) => Err(format!("cannot publish port {port}: {error}").into()),
            None => Ok(()),
        }
    }

    /// Ends slirp4netns (its namespace is gone or about to be). Its exit
    /// takes the kernel ~20 ms (closing a TAP device waits for an RCU grace
    /// period), so it is reaped in the background: a step's end does not
    /// wait for it.
    pub fn stop(mut self) {
        let _ = self.child.start_kill();
        let socket = self.api_socket.take();
        tokio::spawn(async move {
            let _ = self.child.wait().await;
            if let Some(socket) = socket {
                let _ = std::fs::remove_file(socket);
            }
        });
    }
}
