//! The sandbox every step and every local app runs in (DESIGN.md §5b).
//! App code is written by developers, so whatever it can reach, a developer
//! can reach: it gets its own user, mount, pid, ipc, uts and network
//! namespaces (bubblewrap), runs as an unprivileged user, sees a read-only
//! system and the directories it was given, is fenced by Landlock and held
//! by a cgroup (or rlimits), reaches the outside through slirp4netns but not
//! the host's loopback services — and ends with the Gantry that started it.
//!
//! When the sandbox cannot be set up, nothing runs unless an admin turned
//! it off (`runner.sandbox = "none"`), which every run page then says.

pub mod cgroup;
mod plan;
pub mod process;
mod slirp;
mod spawner;
pub mod users;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::process::GroupChild;
use cgroup::{Cgroup, CgroupParent};
pub use gantry_sandbox::{Ending, SetupFailed};
use slirp::Slirp;
use spawner::Spawner;

/// The unix socket, in the data directory, through which a sandbox reaches
/// the environments it tests (its relay forwards loopback there).
pub fn preview_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("preview.sock")
}

/// Where a sandbox's workspace and home appear.
pub const WORKSPACE: &str = "/workspace";
pub const PIPELINE: &str = "/pipeline";
pub const HOME: &str = "/home/gantry";
pub const APP_DIR: &str = "/app";

/// How long a sandbox may take to start before it is given up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How Gantry is configured to isolate child processes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `runner.sandbox`: false only when an admin turned it off.
    pub enabled: bool,
    /// `runner.user`: who sandboxed processes run as when Gantry is root
    /// and no uid of `uids` was leased (a directory handed over alone).
    pub user: (u32, u32),
    /// `runner.uids`: the range each sandbox's own uid comes from.
    pub uids: (u32, u32),
    /// `runner.build_uids`: the blocks of 65536 uids image builds map their
    /// namespace's users to (one block per build at a time).
    pub build_uids: (u32, u32),
    /// The `gantry-sandbox` helper.
    pub helper: PathBuf,
    /// `runner.read_only_paths`: more host paths shown read-only.
    pub read_only: Vec<PathBuf>,
    /// `runner.blocked_networks`: networks no sandbox reaches, beyond
    /// [`BLOCKED_NETWORKS`] and the host's own addresses.
    pub blocked_networks: Vec<String>,
    /// Gantry's own files (data directory, key, config file), masked
    /// wherever they fall inside what a sandbox sees.
    pub private: Vec<PathBuf>,
    /// Gantry's socket that serves environments only (see `http::preview`).
    pub preview_socket: PathBuf,
    /// Per-sandbox scratch files (hosts, resolv.conf, API sockets).
    pub run_dir: PathBuf,
    /// Names this Gantry's cgroups.
    pub tag: String,
    /// The loopback port environment URLs use, relayed to the preview
    /// socket inside sandboxes (none when environments are not served on
    /// this host's loopback).
    pub relay_port: Option<u16>,
}

/// What a sandbox may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPU time per second of wall time, in thousandths of a core.
    pub cpu_millis: u64,
    /// Size of the private `/tmp`.
    pub tmp_bytes: u64,
}

/// A sandbox's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Its own namespace with outbound access and no way to the host's
    /// loopback, except environment URLs (through the relay).
    Isolated,
    /// Only its own loopback.
    None,
    /// The host's network (an admin's explicit choice).
    Host,
}

/// A host directory shown inside a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub inside: PathBuf,
    pub writable: bool,
}

impl Mount {
    pub fn writable(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Mount {
        Mount {
            host: host.into(),
            inside: inside.into(),
            writable: true,
        }
    }

    pub fn read_only(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Mount {
        Mount {
            writable: false,
            ..Mount::writable(host, inside)
        }
    }
}

/// One process tree to start.
#[derive(Debug)]
pub struct Spec {
    /// Run by `sh -c`.
    pub script: String,
    pub mounts: Vec<Mount>,
    /// The working directory: one of `mounts`.
    pub cwd: Mount,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub network: Network,
    /// A port of the sandbox to publish on the host's `127.0.0.1`.
    pub publish: Option<u16>,
    /// Host names that resolve to the sandbox's loopback (environment
    /// hosts, reached through the relay).
    pub hosts: Vec<String>,
    /// Who it runs as when Gantry is root: a leased uid (see
    /// [`Sandbox::lease_user`]); `runner.user` when none.
    pub user: Option<(u32, u32)>,
    /// The image builder: as root, the sandbox is root of a user namespace
    /// of its own (its root is `user`, its other users a block of
    /// `runner.build_uids`), keeps that namespace's capabilities but the
    /// network's, and has no Landlock fence — what buildah needs to unpack
    /// images and run their `RUN` lines. Without root, a plain sandbox.
    pub builder: bool,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// Which limit stopped a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    Memory,
    Processes,
}

/// How a sandboxed process tree ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub ending: Ending,
    pub limit: Option<LimitHit>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.ending == Ending::Exited(0) && self.limit.is_none()
    }

    pub fn code(&self) -> Option<i32> {
        match self.ending {
            Ending::Exited(code) => Some(code),
            Ending::Signalled(_) => None,
        }
    }

    /// What went wrong, for a step's or an app's error (`None` on success).
    pub fn problem(&self, limits: &Limits) -> Option<String> {
        if let Some(limit) = self.limit {
            return Some(limit_message(limit, limits));
        }
        match self.ending {
            Ending::Exited(0) => None,
            Ending::Exited(code) => Some(format!("exited with code {code}")),
            Ending::Signalled(signal) => Some(match Signal::try_from(signal) {
                Ok(name) => format!("was killed by signal {signal} ({name})"),
                Err(_) => format!("was killed by signal {signal}"),
            }),
        }
    }
}

/// "was stopped: …" for a limit a sandbox ran into.
pub fn limit_message(limit: LimitHit, limits: &Limits) -> String {
    match limit {
        LimitHit::Memory => format!(
            "was stopped: it used more than its memory limit ({})",
            human_bytes(limits.memory_bytes)
        ),
        LimitHit::Processes => format!(
            "was stopped: it tried to run more than its limit of {} processes (pids)",
            limits.pids
        ),
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox is unavailable: {0}")]
    Unavailable(String),
    #[error("the sandbox's network is unavailable: {0}")]
    NoNetwork(String),
    #[error("cannot start the sandbox: {0}")]
    Start(String),
}

/// Whether sandboxes can be made here, for the Settings and run pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Sandboxing works. `network` names a problem with the isolated
    /// network (steps with `network: none` or `host` still run);
    /// `cgroups` names the hierarchy the limits are set in (`cgroup v2`,
    /// `cgroup v1`), none when they are rlimits.
    On {
        network: Option<String>,
        cgroups: Option<&'static str>,
    },
    /// An admin set `runner.sandbox = "none"`.
    Off,
    /// Sandboxing was asked for and cannot work: nothing runs.
    Unavailable(String),
}

/// How steps and local apps are isolated, for the Settings page.
pub fn describe(status: &Status) -> String {
    match status {
        Status::On { network, cgroups } => format!(
            "bubblewrap: own user, mount, pid, ipc, uts and network namespaces, Landlock; limits by {}; network {}",
            cgroups.unwrap_or("rlimits"),
            if network.is_none() {
                "through slirp4netns, without the host's loopback"
            } else {
                "unavailable (only network: none or host)"
            }
        ),
        Status::Off => "off (runner.sandbox = \"none\")".into(),
        Status::Unavailable(_) => "unavailable: nothing runs".into(),
    }
}

/// What is weaker when limits are rlimits (no cgroups could be managed):
/// for the Settings page and every run page.
pub fn limits_warning(status: &Status) -> Option<String> {
    match status {
        Status::On { cgroups: None, .. } => Some(format!(
            "{}. On cgroup v2, give Gantry a delegated group (systemd: Delegate=yes; the Helm chart sets it up) to get them",
            cgroup::weaker_without_cgroups()
        )),
        _ => None,
    }
}

/// The banner text for a status that weakens isolation, if it does.
pub fn warning(status: &Status) -> Option<String> {
    match status {
        Status::Off => Some(
            "sandboxing is off (runner.sandbox = \"none\"): steps and local apps run as Gantry's own user and can read its key, database and sessions".into(),
        ),
        Status::Unavailable(reason) => Some(format!(
            "the sandbox is unavailable, so no step or local app runs: {reason}"
        )),
        Status::On { network: Some(problem), .. } => Some(format!(
            "sandboxed steps have no network of their own ({problem}); only steps with network: none or host run"
        )),
        Status::On { network: None, .. } => None,
    }
}

/// Starts sandboxes. One per Gantry.
#[derive(Debug)]
pub struct Sandbox {
    settings: Settings,
    status: Status,
    as_root: bool,
    bwrap: PathBuf,
    slirp: PathBuf,
    cgroups: Option<CgroupParent>,
    spawner: Option<Spawner>,
    counter: AtomicU64,
    users: Arc<users::UserPool>,
    /// Indices of the blocks of `runner.build_uids`.
    build_blocks: Arc<users::UserPool>,
}

/// The uids of one build's namespace besides its root.
pub const BUILD_BLOCK: u32 = 65536;

impl Sandbox {
    /// Checks what works here by starting a trial sandbox (a few ms).
    pub async fn start(settings: Settings) -> Sandbox {
        let as_root = nix::unistd::Uid::effective().is_root();
        let mut sandbox = Sandbox {
            status: Status::Off,
            as_root,
            bwrap: find_program("bwrap"),
            slirp: find_program("slirp4netns"),
            cgroups: None,
            spawner: None,
            counter: AtomicU64::new(0),
            users: users::UserPool::new(settings.uids),
            build_blocks: users::UserPool::new((
                0,
                ((settings.build_uids.1 - settings.build_uids.0).saturating_add(1) / BUILD_BLOCK)
                    .saturating_sub(1),
            )),
            settings,
        };
        if !sandbox.settings.enabled {
            return sandbox;
        }
        sandbox.status = match sandbox.probe().await {
            Ok(status) => status,
            Err(reason) => Status::Unavailable(reason.0),
        };
        match &sandbox.status {
            Status::Unavailable(reason) => {
                tracing::error!(%reason, "the sandbox is unavailable: no step or local app will run until it is fixed (or runner.sandbox = \"none\" is set)");
            }
            Status::On { network, cgroups } => {
                if let Some(problem) = network {
                    tracing::warn!(%problem, "sandboxed steps get no network of their own: only `network: none` and `network: host` steps run");
                }
                if cgroups.is_none() {
                    tracing::warn!(
                        weaker = cgroup::weaker_without_cgroups(),
                        "sandbox limits are rlimits (no cgroups here)"
                    );
                }
            }
            Status::Off => {}
        }
        sandbox
    }

    async fn probe(&mut self) -> Result<Status, SetupFailed> {
        if !self.bwrap.is_file() {
            return Err(
                "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`"
                    .into(),
            );
        }
        if !self.settings.helper.is_file() {
            return Err(format!(
                "the helper {} is missing; it is built beside gantry (cargo build -p gantry-sandbox) and installed next to it, or named by runner.helper",
                self.settings.helper.display()
            ).into());
        }
        std::fs::create_dir_all(&self.settings.run_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.settings.run_dir.display()))?;
        self.spawner =
            Some(Spawner::new().map_err(|e| format!("cannot start the spawner thread: {e}"))?);
        self.cgroups = match CgroupParent::create(&self.settings.tag) {
            Ok(parent) => Some(parent),
            Err(reason) => {
                tracing::info!(reason = %reason.0, "no cgroups for sandboxes");
                None
            }
        };
        let cgroups = self.cgroups.as_ref().map(CgroupParent::describe);
        // Trial runs: the plain sandbox, then its network. A trial is tried
        // a few times: a passing hiccup must not disable sandboxing (or its
        // network) for the whole life of the process.
        self.trial_again(Network::None).await?;
        let network = if self.slirp.is_file() {
            self.trial_again(Network::Isolated).await.err().map(|e| e.0)
        } else {
            Some(
                "slirp4netns is not installed; install it with `apt-get install slirp4netns`"
                    .into(),
            )
        };
        Ok(Status::On { network, cgroups })
    }

    async fn trial_again(&self, network: Network) -> Result<(), SetupFailed> {
        let mut outcome = self.trial(network).await;
        for _ in 1..3 {
            let Err(error) = &outcome else { break };
            tracing::warn!(%error, ?network, "a trial sandbox failed; trying again");
            outcome = self.trial(network).await;
        }
        outcome
    }

    async fn trial(&self, network: Network) -> Result<(), SetupFailed> {
        let dir = self.settings.run_dir.join("trial");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cwd = Mount::read_only(&dir, "/trial");
        let spec = Spec {
            script: "exit 0".into(),
            mounts: vec![cwd.clone()],
            cwd,
            env: Vec::new(),
            limits: Limits {
                memory_bytes: 256 << 20,
                pids: 16,
                cpu_millis: 1000,
                tmp_bytes: 1 << 20,
            },
            network,
            publish: None,
            hosts: Vec::new(),
            user: None,
            builder: false,
            stdout: Stdio::null(),
            stderr: Stdio::piped(),
        };
        let mut sandboxed = self
            .spawn_sandboxed(spec)
            .await
            .map_err(|e| e.to_string())?;
        let mut stderr = String::new();
        if let Some(mut pipe) = sandboxed.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        let exit = sandboxed.wait().await.map_err(|e| e.to_string())?;
        sandboxed.finish().await;
        if exit.success() {
            Ok(())
        } else {
            let why = stderr.lines().last().unwrap_or("no message").trim();
            Err(format!("a trial sandbox failed ({exit:?}): {why}").into())
        }
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The loopback port a sandbox on its own network reaches environments
    /// at (relayed to the preview socket), when there is one.
    pub fn relay_port(&self) -> Option<u16> {
        self.settings.relay_port
    }

    /// True when child processes run sandboxed.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The path a process sees for `mount`: inside the sandbox, or the host
    /// path when sandboxing is off.
    pub fn seen(&self, mount: &Mount) -> PathBuf {
        if self.settings.enabled {
            mount.inside.clone()
        } else {
            mount.host.clone()
        }
    }

    /// A uid of its own for a run or a local app, when Gantry runs as root
    /// (without root, sandboxes run as Gantry's own uid); none when the
    /// whole range is in use (then `runner.user`, shared).
    pub fn lease_user(&self) -> Option<users::UserLease> {
        if !(self.settings.enabled && self.as_root) {
            return None;
        }
        let lease = self.users.lease();
        if lease.is_none() {
            tracing::warn!(
                uids = self.users.size(),
                "every uid of runner.uids is in use: this sandbox shares runner.user"
            );
        }
        lease
    }

    /// Gives a directory Gantry prepared (a checkout, a deploy) to the
    /// sandbox's user, so the sandbox may write to it.
    pub async fn hand_over(&self, path: &Path, user: Option<(u32, u32)>) -> std::io::Result<()> {
        if !(self.settings.enabled && self.as_root) {
            return Ok(());
        }
        let (uid, gid) = user.unwrap_or(self.settings.user);
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || chown_tree(&path, uid, gid))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Starts `spec`: sandboxed, or as a plain process group when an admin
    /// turned sandboxing off.
    pub async fn spawn(&self, spec: Spec) -> Result<Sandboxed, SandboxError> {
        match &self.status {
            // The builder is root of what it runs: never without a sandbox.
            Status::Off if spec.builder => Err(SandboxError::Unavailable(
                "the image step builds only in a sandbox, and runner.sandbox is \"none\"".into(),
            )),
            Status::Off => {
                let child = process::spawn_shell(
                    &spec.script,
                    &spec.cwd.host,
                    &spec.env,
                    spec.stdout,
                    spec.stderr,
                )
                .map_err(|e| SandboxError::Start(e.to_string()))?;
                Ok(Sandboxed { child, inner: None })
            }
            Status::Unavailable(reason) => Err(SandboxError::Unavailable(reason.clone())),
            Status::On { network, .. } => {
                if let (Network::Isolated, Some(problem)) = (spec.network, network) {
                    return Err(SandboxError::NoNetwork(problem.clone()));
                }
                self.spawn_sandboxed(spec).await
            }
        }
    }

    async fn spawn_sandboxed(&self, spec: Spec) -> Result<Sandboxed, SandboxError> {
        let spawner = self
            .spawner
            .as_ref()
            .ok_or_else(|| start("the sandbox spawner is not running"))?;
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let began = std::time::Instant::now();
        let scratch = self
            .settings
            .run_dir
            .join(format!("sandbox-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(|e| start(e.to_string()))?;
        let mut guard = ScratchGuard(Some(scratch.clone()));

        let resolv_file = (spec.network == Network::Isolated).then(|| scratch.join("resolv.conf"));
        if let Some(path) = &resolv_file {
            std::fs::write(path, format!("nameserver {}\n", slirp::GUEST_DNS))
                .map_err(|e| start(e.to_string()))?;
        }
        let relay = match (spec.network, self.settings.relay_port) {
            (Network::Isolated, Some(port)) if self.settings.preview_socket.exists() => {
                Some(gantry_sandbox::Forward {
                    port,
                    socket: PathBuf::from(plan::PREVIEW_SOCKET),
                })
            }
            _ => None,
        };
        // Environment hosts resolve to the relay, and only when there is one.
        let hosts_file = scratch.join("hosts");
        let names = if relay.is_some() {
            &spec.hosts[..]
        } else {
            &[]
        };
        std::fs::write(&hosts_file, hosts_text(names)).map_err(|e| start(e.to_string()))?;
        let user = spec.user.unwrap_or(self.settings.user);
        if spec.builder && !self.as_root {
            // Without root there is no user namespace of several users to
            // give the build, and the sandbox's fence forbids the mounts
            // buildah's own would need.
            return Err(start(
                "the image step needs Gantry to run as root (the build gets a user namespace of its own)",
            ));
        }
        let mut builder = match (spec.builder && self.as_root, self.settings.build_uids) {
            (false, _) => None,
            (true, (first, last)) => {
                if let Some(path) = plan::builder_conflict(&self.settings.private) {
                    return Err(start(format!(
                        "the image builder would see {}, one of Gantry's own files: keep Gantry's files outside /usr and /etc/containers, /etc/ssl, /etc/pki",
                        path.display()
                    )));
                }
                let block = self
                    .build_blocks
                    .lease()
                    .filter(|_| last >= first.saturating_add(BUILD_BLOCK - 1))
                    .ok_or_else(|| {
                        start("every block of runner.build_uids is in use by another build")
                    })?;
                let index = block.ids().0;
                let range = gantry_sandbox::UserRange {
                    root: user,
                    first: first + index * BUILD_BLOCK + 1,
                    count: BUILD_BLOCK - 1,
                    stage: Vec::new(),
                };
                Some((block, range))
            }
        };
        let identity = self.as_root.then(|| {
            let (passwd, group) = (scratch.join("passwd"), scratch.join("group"));
            (passwd, group)
        });
        if let Some((passwd, group)) = &identity {
            std::fs::write(passwd, users::passwd_file(user)).map_err(|e| start(e.to_string()))?;
            std::fs::write(group, users::group_file(user)).map_err(|e| start(e.to_string()))?;
        }
        let cgroup = match &self.cgroups {
            Some(parent) => Some(
                parent
                    .child(&format!("s{}-{id}", std::process::id()), &spec.limits)
                    .map_err(|e| start(format!("cannot create its cgroup: {e}")))?,
            ),
            None => None,
        };
        if builder.is_some() && cgroup.is_none() {
            // Rlimits count processes per uid, and the build has 65536 of
            // them; its tmpfs it could mount again larger.
            return Err(start(
                "the image step needs cgroups to hold its limits (see the Settings page: sandbox limits are rlimits here)",
            ));
        }
        let mut rlimits = vec![gantry_sandbox::Rlimit::Core(0)];
        if cgroup.is_none() {
            rlimits.push(gantry_sandbox::Rlimit::Processes(spec.limits.pids));
            rlimits.push(gantry_sandbox::Rlimit::Data(spec.limits.memory_bytes));
        }
        let mut writable: Vec<PathBuf> = spec
            .mounts
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.inside.clone())
            .collect();
        writable.extend(["/tmp", "/dev"].map(PathBuf::from));
        let instructions = gantry_sandbox::Instructions {
            argv: vec!["sh".into(), "-c".into(), spec.script.clone()],
            user: (self.as_root && builder.is_none()).then_some(user),
            rlimits,
            // The builder mounts and chroots, which a fence forbids; its
            // view of the host is bubblewrap's, locked in its namespace.
            landlock: builder.is_none().then(|| gantry_sandbox::Fence {
                read_only: vec![PathBuf::from("/")],
                writable,
            }),
            builder: builder.is_some(),
            forward: relay.clone(),
            // Root or not: a network of its own reaches none of these.
            unreachable: if spec.network == Network::Isolated {
                unreachable_networks(&self.settings.blocked_networks)
            } else {
                Vec::new()
            },
            env_fd: Some(plan::ENV_FD),
            status_fd: Some(plan::STATUS_FD),
            go_fd: Some(plan::GO_FD),
            lifeline_fd: Some(plan::LIFELINE_FD),
        };
        let instructions =
            serde_json::to_string(&instructions).map_err(|e| start(e.to_string()))?;
        // What bubblewrap binds from the host. The builder's bubblewrap is
        // root of its own namespace only and may not traverse Gantry's
        // data directory: each source is staged by the helper (opened as
        // root, shown at a path anyone may traverse) and named by that.
        let mut sources = Sources {
            mounts: spec.mounts.clone(),
            hosts_file: hosts_file.clone(),
            identity: identity.clone(),
            resolv_file: resolv_file.clone(),
            helper: self.settings.helper.clone(),
            preview_socket: relay.as_ref().map(|_| self.settings.preview_socket.clone()),
            system: if builder.is_some() {
                // Without a merged /usr, /bin and /lib are folders of
                // their own: staged, and locked read-only, as /usr is.
                plan::BUILDER_SYSTEM
                    .iter()
                    .chain(plan::SYSTEM_LINKS)
                    .map(PathBuf::from)
                    // A link (`/etc/localtime`) is left out: what it
                    // names would need binding too.
                    .filter(|path| {
                        path.symlink_metadata()
                            .is_ok_and(|m| !m.file_type().is_symlink())
                    })
                    .map(|path| (path.clone(), path))
                    .collect()
            } else {
                Vec::new()
            },
        };
        if let Some((_, range)) = builder.as_mut() {
            range.stage = sources.stage();
        }
        let args = plan::arguments(&plan::Plan {
            as_root: self.as_root,
            builder: builder.is_some(),
            network: spec.network,
            mounts: &sources.mounts,
            cwd: &spec.cwd.inside,
            read_only: &self.settings.read_only,
            private: &self.settings.private,
            tmp_bytes: spec.limits.tmp_bytes,
            hosts_file: &sources.hosts_file,
            identity: sources
                .identity
                .as_ref()
                .map(|(p, g)| (p.as_path(), g.as_path())),
            resolv_file: sources.resolv_file.as_deref(),
            helper: &sources.helper,
            preview_socket: sources.preview_socket.as_deref(),
            builder_system: &sources.system,
            instructions: &instructions,
        });

        // The command's variables go to the helper through a file of
        // Gantry's (unlinked once open), never through bubblewrap's
        // environment.
        let env_path = scratch.join("env.json");
        std::fs::write(
            &env_path,
            serde_json::to_string(&spec.env).map_err(|e| start(e.to_string()))?,
        )
        .map_err(|e| start(e.to_string()))?;
        let env_file = std::fs::File::open(&env_path).map_err(|e| start(e.to_string()))?;
        let _ = std::fs::remove_file(&env_path);
        let (info_read, info_write) = pipe().map_err(start)?;
        let (go_read, go_write) = pipe().map_err(start)?;
        let (status_read, status_write) = pipe().map_err(start)?;
        let (lifeline_read, lifeline_write) = pipe().map_err(start)?;
        if builder.is_some() {
            // The helper reopens what it inherits through /proc/self/fd:
            // in the build's namespace only an owner it maps may.
            let (uid, gid) = (
                nix::unistd::Uid::from_raw(user.0),
                nix::unistd::Gid::from_raw(user.1),
            );
            for fd in [&go_read, &status_write, &lifeline_read] {
                nix::unistd::fchown(fd, Some(uid), Some(gid)).map_err(|e| start(e.to_string()))?;
            }
            nix::unistd::fchown(&env_file, Some(uid), Some(gid))
                .map_err(|e| start(e.to_string()))?;
        }
        let mut command = match &builder {
            // The helper enters the build's namespace, then becomes
            // bubblewrap (the same process: bubblewrap's pid stays ours).
            Some((_, range)) => {
                let mut command = tokio::process::Command::new(&self.settings.helper);
                command
                    .arg(gantry_sandbox::ENTER_USERNS)
                    .arg(serde_json::to_string(range).map_err(|e| start(e.to_string()))?)
                    .arg(&self.bwrap);
                command
            }
            None => tokio::process::Command::new(&self.bwrap),
        };
        command
            .args(&args)
            .env_clear()
            .envs(process::inherited_env())
            .stdin(Stdio::null())
            .stdout(spec.stdout)
            .stderr(spec.stderr)
            .process_group(0)
            .kill_on_drop(true);
        command
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: info_write,
                    child_fd: plan::INFO_FD,
                },
                FdMapping {
                    parent_fd: go_read,
                    child_fd: plan::GO_FD,
                },
                FdMapping {
                    parent_fd: status_write,
                    child_fd: plan::STATUS_FD,
                },
                FdMapping {
                    parent_fd: lifeline_read,
                    child_fd: plan::LIFELINE_FD,
                },
                FdMapping {
                    parent_fd: std::os::fd::OwnedFd::from(env_file),
                    child_fd: plan::ENV_FD,
                },
            ])
            .map_err(|e| start(e.to_string()))?;
        let prepared_at = began.elapsed();
        let child = spawner
            .spawn(command)
            .await
            .map_err(|e| start(format!("cannot run {}: {e}", self.bwrap.display())))?;
        let spawned_at = began.elapsed();
        let mut sandboxed = Sandboxed {
            child: GroupChild::new(child),
            inner: None,
        };

        let mut status = tokio::net::unix::pipe::Receiver::from_owned_fd(status_read)
            .map_err(|e| start(e.to_string()))?;
        // The helper joins its cgroup while bubblewrap sets up its mounts.
        let started = async {
            let pid = read_child_pid(info_read).await?;
            let joined = cgroup.as_ref().map(|cgroup| cgroup.add(pid));
            wait_ready(&mut status).await?;
            Ok::<_, SetupFailed>((pid, joined))
        };
        let (helper_pid, joined) = match started.await {
            Ok(started) => started,
            Err(error) => {
                let mut output = String::new();
                if let Some(mut pipe) = sandboxed.child.stderr.take() {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        pipe.read_to_string(&mut output),
                    )
                    .await;
                }
                let why = output.lines().last().unwrap_or(&error.0).to_string();
                return Err(start(why));
            }
        };
        let ready_at = began.elapsed();
        // Its network comes up while the cgroup move (a blocking task,
        // which may wait for an RCU grace period) finishes.
        let slirp = if spec.network == Network::Isolated {
            let api = spec.publish.map(|_| scratch.join("slirp.sock"));
            let slirp = Slirp::start(spawner, &self.slirp, helper_pid, api, self.as_root)
                .await
                .map_err(|e| SandboxError::NoNetwork(e.0))?;
            if let Some(port) = spec.publish {
                slirp.publish(port).await.map_err(start)?;
            }
            Some(slirp)
        } else {
            None
        };
        let network_at = began.elapsed();
        // The helper waits for go: nothing of the command runs before the
        // cgroup holds it and its network is up.
        if let Some(joined) = joined {
            joined
                .await
                .map_err(|e| start(e.to_string()))?
                .map_err(|e| start(format!("cannot move it into its cgroup: {e}")))?;
        }
        sandboxed.inner = Some(Inner {
            helper_pid,
            status: Some(status),
            cgroup,
            slirp,
            scratch: guard.0.take(),
            limits: spec.limits,
            _build_block: builder.map(|(block, _)| block),
            _lifeline: lifeline_write,
        });
        // Everything is in place: let the helper start the command.
        let mut go = tokio::net::unix::pipe::Sender::from_owned_fd(go_write)
            .map_err(|e| start(e.to_string()))?;
        go.write_all(b"1")
            .await
            .map_err(|e| start(format!("cannot release the sandbox: {e}")))?;
        tracing::debug!(
            prepared_us = prepared_at.as_micros() as u64,
            spawned_us = spawned_at.as_micros() as u64,
            ready_us = ready_at.as_micros() as u64,
            network_us = network_at.as_micros() as u64,
            started_us = began.elapsed().as_micros() as u64,
            "sandbox started"
        );
        Ok(sandboxed)
    }
}

/// The host paths a sandbox's bubblewrap binds.
struct Sources {
    mounts: Vec<Mount>,
    hosts_file: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    resolv_file: Option<PathBuf>,
    helper: PathBuf,
    preview_socket: Option<PathBuf>,
    /// The builder's view of the system: (host path, where it shows).
    system: Vec<(PathBuf, PathBuf)>,
}

impl Sources {
    /// Replaces every path with its staged one
    /// (`gantry_sandbox::staged`); the originals, in that order, each
    /// read-only unless the sandbox writes to it.
    fn stage(&mut self) -> Vec<gantry_sandbox::Staged> {
        let mut originals = Vec::new();
        let mut swap = |path: &mut PathBuf, read_only: bool| {
            let staged = gantry_sandbox::staged(originals.len());
            originals.push(gantry_sandbox::Staged {
                path: std::mem::replace(path, staged),
                read_only,
            });
        };
        for (source, _) in &mut self.system {
            swap(source, true);
        }
        for mount in &mut self.mounts {
            swap(&mut mount.host, !mount.writable);
        }
        swap(&mut self.hosts_file, true);
        if let Some((passwd, group)) = self.identity.as_mut() {
            swap(passwd, true);
            swap(group, true);
        }
        if let Some(resolv) = self.resolv_file.as_mut() {
            swap(resolv, true);
        }
        swap(&mut self.helper, true);
        // Connecting to a socket is writing to it.
        if let Some(socket) = self.preview_socket.as_mut() {
            swap(socket, false);
        }
        originals
    }
}

/// A sandboxed process tree (or, with sandboxing off, a process group).
#[derive(Debug)]
pub struct Sandboxed {
    /// bubblewrap (or `sh` when off): its stdout and stderr are the
    /// command's.
    pub child: GroupChild,
    inner: Option<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The helper's pid on the host (pid 1 inside).
    helper_pid: u32,
    status: Option<tokio::net::unix::pipe::Receiver>,
    cgroup: Option<Cgroup>,
    slirp: Option<Slirp>,
    scratch: Option<PathBuf>,
    limits: Limits,
    /// Closed when this Gantry goes, which ends the sandbox.
    _lifeline: OwnedFd,
    /// The build's block of uids, free again once the sandbox is over.
    _build_block: Option<users::UserLease>,
}

impl Sandboxed {
    /// The pid that stands for the tree (bubblewrap's, or the shell's).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn is_sandboxed(&self) -> bool {
        self.inner.is_some()
    }

    /// The limit the tree has run into so far.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        self.inner
            .as_ref()
            .and_then(|inner| inner.cgroup.as_ref())
            .and_then(Cgroup::limit_hit)
    }

    pub fn limits(&self) -> Option<Limits> {
        self.inner.as_ref().map(|inner| inner.limits)
    }

    /// Waits until the tree has ended.
    pub async fn wait(&mut self) -> std::io::Result<Exit> {
        let status = self.child.wait().await?;
        Ok(self.exit_of(status).await)
    }

    /// The exit if the tree has ended, without waiting.
    pub async fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        match self.child.try_wait()? {
            Some(status) => Ok(Some(self.exit_of(status).await)),
            None => Ok(None),
        }
    }

    async fn exit_of(&mut self, status: ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        let plain = match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Signalled(signal),
            (None, None) => Ending::Exited(-1),
        };
        let Some(inner) = self.inner.as_mut() else {
            return Exit {
                ending: plain,
                limit: None,
            };
        };
        let mut line = String::new();
        if let Some(mut pipe) = inner.status.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), pipe.read_to_string(&mut line)).await;
        }
        let ending = Ending::parse(&line).unwrap_or(match plain {
            // bubblewrap passes on a killed helper as 128 + signal.
            Ending::Exited(code) if code > 128 && code != gantry_sandbox::SETUP_FAILED => {
                Ending::Signalled(code - 128)
            }
            other => other,
        });
        Exit {
            ending,
            limit: inner.cgroup.as_ref().and_then(Cgroup::limit_hit),
        }
    }

    /// Stops the tree: SIGTERM to what runs inside, SIGKILL after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(inner) = &self.inner else {
            process::terminate(&mut self.child, grace).await;
            return;
        };
        if matches!(self.child.try_wait(), Ok(None))
            && let Ok(pid) = i32::try_from(inner.helper_pid)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill();
            let _ = self.child.wait().await;
        }
    }

    /// Kills the tree at once: the helper first (pid 1 inside: with it
    /// goes everything in the sandbox), while bubblewrap still waits for it
    /// (so its pid cannot have been reused), then bubblewrap.
    pub fn kill(&mut self) {
        if let Some(pid) = self
            .inner
            .as_ref()
            .and_then(|inner| i32::try_from(inner.helper_pid).ok())
            && matches!(self.child.try_wait(), Ok(None))
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(pid) = self.child.id() {
            process::signal_group(pid, Signal::SIGKILL);
        }
    }

    /// Releases what the sandbox held (its network, cgroup, scratch files)
    /// once it has ended. In the background: removing cgroup directories
    /// and files blocks, and nothing that follows a step waits on it.
    pub async fn finish(mut self) {
        if let Some(mut inner) = self.inner.take() {
            if let Some(slirp) = inner.slirp.take() {
                slirp.stop();
            }
            tokio::task::spawn_blocking(move || inner.release());
        }
    }
}

impl Inner {
    fn release(&mut self) {
        // Dropping the group removes it.
        self.cgroup.take();
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.release();
    }
}

/// Removes a scratch directory unless it was handed on.
struct ScratchGuard(Option<PathBuf>);

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// A set-up failure of one sandbox.
fn start(reason: impl Into<SetupFailed>) -> SandboxError {
    SandboxError::Start(reason.into().0)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SetupFailed> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SetupFailed(format!("pipe: {e}")))
}

/// bubblewrap's `--info-fd` JSON: the sandbox's first process.
async fn read_child_pid(info: OwnedFd) -> Result<u32, SetupFailed> {
    let mut pipe =
        tokio::net::unix::pipe::Receiver::from_owned_fd(info).map_err(|e| e.to_string())?;
    let mut text = String::new();
    tokio::time::timeout(START_TIMEOUT, pipe.read_to_string(&mut text))
        .await
        .map_err(|_| "bubblewrap did not start in time".to_string())?
        .map_err(|e| e.to_string())?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|info| info.get("child-pid")?.as_u64())
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| "bubblewrap exited before the sandbox started".into())
}

/// Waits for the helper's `ready` line (the sandbox is set up).
async fn wait_ready(status: &mut tokio::net::unix::pipe::Receiver) -> Result<(), SetupFailed> {
    let mut line = Vec::new();
    let read = async {
        loop {
            let byte = status
                .read_u8()
                .await
                .map_err(|_| "the sandbox ended during its set-up".to_string())?;
            line.push(byte);
            if byte == b'\n' {
                return Ok::<(), SetupFailed>(());
            }
        }
    };
    tokio::time::timeout(START_TIMEOUT, read)
        .await
        .map_err(|_| "the sandbox was not set up in time".to_string())??;
    if line == gantry_sandbox::READY.as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "the sandbox said {:?} instead of ready",
            String::from_utf8_lossy(&line)
        )
        .into())
    }
}

/// `/etc/hosts` inside: loopback, plus the environment hosts a step may
/// reach through the relay. Names are checked: a line break in one would
/// add entries of its own.
fn hosts_text(names: &[String]) -> String {
    let mut line = String::from("127.0.0.1\tlocalhost");
    for name in names {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if plain {
            line.push(' ');
            line.push_str(name);
        }
    }
    line.push('\n');
    line
}

/// Networks no sandbox reaches, whatever the admin adds: link-local (v4
/// and v6, where clouds answer metadata requests) and the other well-known
/// metadata addresses — Alibaba's, Azure's wire server, AWS's IPv6 one.
pub const BLOCKED_NETWORKS: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "100.100.100.200/32",
    "168.63.129.16/32",
    "fd00:ec2::254/128",
];

/// What a sandbox's own network must not reach although slirp4netns could
/// (it connects from the host): [`BLOCKED_NETWORKS`], every address of the
/// host itself (a service bound to `0.0.0.0` or `::` there is as close as
/// its loopback), and what the admin listed (`runner.blocked_networks`).
pub fn unreachable_networks(extra: &[String]) -> Vec<String> {
    let mut networks: Vec<String> = BLOCKED_NETWORKS.iter().map(|n| n.to_string()).collect();
    if let Ok(addresses) = nix::ifaddrs::getifaddrs() {
        for interface in addresses {
            let Some(address) = interface.address.as_ref() else {
                continue;
            };
            if let Some(v4) = address.as_sockaddr_in() {
                let ip = v4.ip();
                if !ip.is_loopback() {
                    networks.push(format!("{ip}/32"));
                }
            } else if let Some(v6) = address.as_sockaddr_in6() {
                let ip = v6.ip();
                if !ip.is_loopback() {
                    networks.push(format!("{ip}/128"));
                }
            }
        }
    }
    networks.extend(extra.iter().cloned());
    networks.sort();
    networks.dedup();
    networks
}

fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
}

/// `chown -R` without following links (a checkout may hold hostile ones).
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_take_plain_names_only() {
        let text = hosts_text(&[
            "preview--shop.localhost".into(),
            "evil\n10.0.0.1 db".into(),
            String::new(),
        ]);
        assert_eq!(text, "127.0.0.1\tlocalhost preview--shop.localhost\n");
    }

    #[test]
    fn limits_and_endings_are_told_plainly() {
        let limits = Limits {
            memory_bytes: 2 << 30,
            pids: 512,
            cpu_millis: 2000,
            tmp_bytes: 1 << 30,
        };
        let exit = |ending, limit| Exit { ending, limit };
        assert_eq!(exit(Ending::Exited(0), None).problem(&limits), None);
        assert_eq!(
            exit(Ending::Exited(3), None).problem(&limits).as_deref(),
            Some("exited with code 3")
        );
        assert_eq!(
            exit(Ending::Signalled(9), None).problem(&limits).as_deref(),
            Some("was killed by signal 9 (SIGKILL)")
        );
        assert_eq!(
            exit(Ending::Signalled(9), Some(LimitHit::Memory))
                .problem(&limits)
                .as_deref(),
            Some("was stopped: it used more than its memory limit (2 GiB)")
        );
        assert_eq!(
            exit(Ending::Exited(1), Some(LimitHit::Processes))
                .problem(&limits)
                .as_deref(),
            Some("was stopped: it tried to run more than its limit of 512 processes (pids)")
        );
        assert_eq!(human_bytes(1536 << 20), "1536 MiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
