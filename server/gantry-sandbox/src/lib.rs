//! The first process inside every sandbox (`gantry-sandbox`, started by
//! bubblewrap as the sandbox's pid 1; the server's `sandbox` module starts
//! it). Before the step or app runs it sets
//! the resource limits, gives up root (when Gantry runs as root) and adds a
//! Landlock fence; then it starts the command, reaps every process of the
//! sandbox, passes a stop signal on, and relays the environment URLs a step
//! may reach to Gantry's preview socket. When it exits, the kernel ends
//! every process of the sandbox with it.
//!
//! It reads its [`Instructions`] as JSON from its first argument and says
//! how the command ended on the status descriptor Gantry handed it, so a
//! step that exits 137 is not mistaken for one killed by a signal.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setgid, setgroups, setuid};
use serde::{Deserialize, Serialize};

/// Why a sandbox could not be set up, in words for the Settings page and
/// the log (nobody branches on the cause: the sandbox works or it does not).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupFailed(pub String);

impl From<String> for SetupFailed {
    fn from(reason: String) -> SetupFailed {
        SetupFailed(reason)
    }
}

impl From<&str> for SetupFailed {
    fn from(reason: &str) -> SetupFailed {
        SetupFailed(reason.to_string())
    }
}

/// The exit code of a sandbox whose setup failed before the command ran.
pub const SETUP_FAILED: i32 = 125;

/// The status line that says the sandbox is set up.
pub const READY: &str = "ready\n";

/// What the helper is asked to do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Instructions {
    /// The command and its arguments (`sh -c <script>`).
    pub argv: Vec<String>,
    /// Become this uid/gid (Gantry runs as root; bubblewrap left the
    /// helper only the capabilities to do this).
    pub user: Option<(u32, u32)>,
    /// Limits set with `setrlimit`, when no cgroup holds the sandbox.
    pub rlimits: Vec<Rlimit>,
    /// The Landlock fence; `None` when the kernel has no Landlock.
    pub landlock: Option<Fence>,
    /// Relays `127.0.0.1:<port>` (and `[::1]`) inside the sandbox to a
    /// Unix socket of Gantry's, which serves only environments.
    pub forward: Option<Forward>,
    /// Networks made unreachable inside (the host's own addresses, cloud
    /// metadata), set as `prohibit` routes before giving up root: through
    /// slirp4netns they would be reached from the host itself.
    #[serde(default)]
    pub unreachable: Vec<String>,
    /// The inherited descriptor to report on: `ready` once the namespaces
    /// are up (the rest of the set-up goes on while Gantry starts the
    /// network), then how the command ended.
    pub status_fd: Option<i32>,
    /// The inherited descriptor to wait on, after `ready`, before the
    /// command starts: Gantry brings the sandbox's network up meanwhile.
    /// (bubblewrap's own `--block-fd` comes too early: slirp4netns would
    /// race bubblewrap's loopback set-up.)
    pub go_fd: Option<i32>,
    /// The descriptor to read the command's own variables from (JSON pairs):
    /// they are the command's only, never this helper's or `ip`'s.
    #[serde(default)]
    pub env_fd: Option<i32>,
    /// The read end of a pipe whose write end only Gantry holds: when it
    /// reads end-of-file, Gantry is gone (however it died) and the sandbox
    /// ends. The kernel's parent-death signal alone is not enough: giving
    /// up root clears it.
    pub lifeline_fd: Option<i32>,
    /// The image builder (Gantry runs as root and started bubblewrap in a
    /// user namespace of the build's own, see [`UserRange`]): the command
    /// stays root of that namespace with every capability but the
    /// network's, which go once the routes are set, and no Landlock fence
    /// (buildah mounts and chroots inside; the namespace's mounts of the
    /// host are locked). `user` and `landlock` are then `None`.
    #[serde(default)]
    pub builder: bool,
}

/// The first argument that asks the helper to enter a user namespace of
/// the build's own and run bubblewrap in it:
/// `gantry-sandbox --enter-userns <UserRange JSON> <bwrap> <args…>`.
pub const ENTER_USERNS: &str = "--enter-userns";

/// The users of a build's namespace: its root is the run's uid (so the
/// checkout and home are the build's own), and 1…`count` are a block of
/// host uids no one else has, so an image's files may belong to anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRange {
    pub root: (u32, u32),
    pub first: u32,
    pub count: u32,
    /// Host paths bubblewrap binds that the build's root may not reach
    /// (they lie in Gantry's private data directory): opened here while
    /// still root, and shown to bubblewrap at [`staged`]`(i)`.
    #[serde(default)]
    pub stage: Vec<Staged>,
}

/// One source for bubblewrap, staged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub path: PathBuf,
    /// Made read-only here, before the build's user namespace exists: the
    /// kernel then locks it so, and the build's root cannot remount it
    /// writable (a read-only bind bubblewrap made inside could be).
    pub read_only: bool,
}

/// Where the `i`th of [`UserRange::stage`] appears to bubblewrap.
pub fn staged(index: usize) -> PathBuf {
    PathBuf::from(format!("/tmp/gantry-stage/{index}"))
}

impl UserRange {
    /// The `uid_map` (and `gid_map`) text.
    pub fn map(&self, gid: bool) -> String {
        let root = if gid { self.root.1 } else { self.root.0 };
        format!("0 {root} 1\n1 {} {}\n", self.first, self.count)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rlimit {
    /// Processes (per user namespace).
    Processes(u64),
    /// Writable private memory, in bytes.
    Data(u64),
    /// Core dumps (always 0: a dump could hold secrets).
    Core(u64),
}

/// Paths inside the sandbox: read (and execute) only, or writable too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub read_only: Vec<PathBuf>,
    pub writable: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub port: u16,
    pub socket: PathBuf,
}

/// How the command ended, as written on the status descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signalled(i32),
}

impl Ending {
    pub fn line(self) -> String {
        match self {
            Ending::Exited(code) => format!("exited {code}\n"),
            Ending::Signalled(signal) => format!("signalled {signal}\n"),
        }
    }

    pub fn parse(text: &str) -> Option<Ending> {
        let (kind, number) = text.trim().split_once(' ')?;
        let number = number.parse().ok()?;
        match kind {
            "exited" => Some(Ending::Exited(number)),
            "signalled" => Some(Ending::Signalled(number)),
            _ => None,
        }
    }
}

/// The helper's `main`: returns the exit code.
pub fn main(args: &[String]) -> i32 {
    if args.get(1).map(String::as_str) == Some(MAP_USERNS) {
        return match map_userns(args) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("[gantry] cannot map the build's users: {error}");
                SETUP_FAILED
            }
        };
    }
    if args.get(1).map(String::as_str) == Some(ENTER_USERNS) {
        let error = match args
            .get(2)
            .map(|text| serde_json::from_str::<UserRange>(text))
        {
            Some(Ok(range)) => match (enter_userns(&range), args.get(3)) {
                (Ok(()), Some(program)) => {
                    let error = Command::new(program).args(&args[4..]).exec();
                    format!("cannot run {program}: {error}")
                }
                (Ok(()), None) => "nothing to run in the build's namespace".to_string(),
                (Err(error), _) => error.0,
            },
            _ => "expected the build's users as JSON after --enter-userns".to_string(),
        };
        eprintln!("[gantry] the build's sandbox could not be set up: {error}");
        return SETUP_FAILED;
    }
    let Some(instructions) = args
        .get(1)
        .and_then(|text| serde_json::from_str::<Instructions>(text).ok())
    else {
        eprintln!(
            "gantry-sandbox: expected the sandbox instructions as JSON in the first argument"
        );
        return SETUP_FAILED;
    };
    match run(&instructions) {
        Ok(ending) => match ending {
            Ending::Exited(code) => code,
            Ending::Signalled(signal) => 128 + signal,
        },
        Err(message) => {
            eprintln!("[gantry] the sandbox could not be set up: {message}");
            SETUP_FAILED
        }
    }
}

fn run(instructions: &Instructions) -> Result<Ending, SetupFailed> {
    let mut status = match instructions.status_fd {
        Some(fd) => Some(inherited(fd, true)?),
        None => None,
    };
    let command_env: Vec<(String, String)> = match instructions.env_fd {
        Some(fd) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut inherited(fd, false)?, &mut text)
                .map_err(|e| format!("the command's variables: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("the command's variables: {e}"))?
        }
        None => Vec::new(),
    };
    // Opened while still root: after setuid, /proc/self/fd is root's.
    let go = match instructions.go_fd {
        Some(fd) => Some(inherited(fd, false)?),
        None => None,
    };
    if let Some(fd) = instructions.lifeline_fd {
        let mut lifeline = inherited(fd, false)?;
        std::thread::spawn(move || {
            let mut byte = [0_u8; 1];
            // Nothing is ever written: this returns when Gantry is gone.
            let _ = std::io::Read::read(&mut lifeline, &mut byte);
            std::process::exit(SETUP_FAILED);
        });
    }
    for limit in &instructions.rlimits {
        let (resource, value) = match *limit {
            Rlimit::Processes(n) => (Resource::RLIMIT_NPROC, n),
            Rlimit::Data(n) => (Resource::RLIMIT_DATA, n),
            Rlimit::Core(n) => (Resource::RLIMIT_CORE, n),
        };
        setrlimit(resource, value, value).map_err(|e| format!("setrlimit {resource:?}: {e}"))?;
    }
    // Listeners are bound before root is given up (ports below 1024 work).
    let listeners = match &instructions.forward {
        Some(forward) => bind_forward(forward.port)?,
        None => Vec::new(),
    };
    // Registered before Gantry may stop the sandbox (after "ready"): the
    // kernel drops a signal to a namespace's pid 1 that has no handler, so
    // a stop sent before the command starts is kept and passed on to it,
    // and the command's end cannot be missed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGCHLD,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("signal handlers: {e}"))?;
    // The namespaces exist and loopback is up: Gantry may start the
    // sandbox's network now, while the rest is set up here. Nothing of the
    // command runs before it says go, and the helper reads go only once the
    // routes, the user switch and the fence are in place.
    if let Some(status) = status.as_mut() {
        status
            .write_all(READY.as_bytes())
            .map_err(|e| format!("status: {e}"))?;
    }
    if !instructions.unreachable.is_empty() {
        prohibit(&instructions.unreachable)?;
    }
    // Without root, bubblewrap left the helper CAP_NET_ADMIN (ambient) for
    // the routes above: nothing started from here keeps it — nor does the
    // helper, unless it still has to become the runner user (as root,
    // giving up root takes its capabilities with it).
    drop_ambient_capabilities()?;
    if instructions.builder {
        drop_network_capabilities()?;
    } else if instructions.user.is_none() {
        drop_all_capabilities()?;
    }
    if let Some((uid, gid)) = instructions.user {
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        setgid(Gid::from_raw(gid)).map_err(|e| format!("setgid {gid}: {e}"))?;
        setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid {uid}: {e}"))?;
        if Uid::effective().is_root() {
            return Err("still root after setuid".into());
        }
    }
    if let Some(fence) = &instructions.landlock {
        fence_in(fence)?;
    }
    if let Some(forward) = &instructions.forward {
        for listener in listeners {
            let socket = forward.socket.clone();
            std::thread::spawn(move || relay_all(listener, socket));
        }
    }
    if let Some(mut go) = go {
        let mut byte = [0_u8; 1];
        match std::io::Read::read(&mut go, &mut byte) {
            Ok(1) => {}
            _ => return Err("Gantry went away before the sandbox started".into()),
        }
    }
    let (program, rest) = instructions
        .argv
        .split_first()
        .ok_or_else(|| "no command".to_string())?;
    let child = Command::new(program)
        .args(rest)
        .envs(command_env)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let main = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let ending = supervise(&mut signals, main);
    // What the command left behind ends with the sandbox.
    let _ = killpg(main, Signal::SIGKILL);
    if let Some(status) = status.as_mut() {
        let _ = status.write_all(ending.line().as_bytes());
    }
    Ok(ending)
}

/// Moves this process (root, single-threaded: it has just started) into a
/// new user namespace mapped as `range` says, and becomes its root. A
/// namespace may not write its own map of more than one id: a second
/// helper, started before and still root outside, writes it
/// ([`MAP_USERNS`]).
fn enter_userns(range: &UserRange) -> Result<(), SetupFailed> {
    use nix::sched::{CloneFlags, unshare};
    use nix::unistd::{getpid, setresgid, setresuid};
    let me = getpid();
    stage(&range.stage)?;
    let program = std::env::current_exe().map_err(|e| format!("the helper's path: {e}"))?;
    let mut mapper = Command::new(program)
        .arg(MAP_USERNS)
        .arg(me.to_string())
        .arg(serde_json::to_string(range).map_err(|e| e.to_string())?)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the helper that maps the build's users: {e}"))?;
    let unshared = unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare(user): {e}"));
    // The mapper waits for this line (or for the end of its input, when
    // the unshare failed: then it maps nothing).
    if let Some(mut go) = mapper.stdin.take()
        && unshared.is_ok()
    {
        let _ = go.write_all(b"mapped\n");
    }
    let mapped = mapper.wait().map_err(|e| format!("the mapper: {e}"))?;
    unshared?;
    if !mapped.success() {
        return Err(format!(
            "cannot map the build's users {range:?}: are they another user's, or is this not root?"
        )
        .into());
    }
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let root_gid = Gid::from_raw(0);
    setresgid(root_gid, root_gid, root_gid).map_err(|e| format!("setresgid: {e}"))?;
    let root = Uid::from_raw(0);
    setresuid(root, root, root).map_err(|e| format!("setresuid: {e}"))?;
    Ok(())
}

/// Shows `sources` at [`staged`] paths anyone may traverse, in a mount
/// namespace of this process's own (root still, before the user
/// namespace): bind mounts of what was opened by descriptor, so nothing
/// above them — Gantry's data directory — needs to be traversed.
fn stage(sources: &[Staged]) -> Result<(), SetupFailed> {
    use nix::mount::{MsFlags, mount};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    if sources.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(mount): {e}"))?;
    // Nothing mounted here reaches the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    // Opened in this namespace (a bind takes only its own mounts), before
    // the stage hides /tmp, where a source may lie.
    let opened = sources
        .iter()
        .map(|Staged { path, .. }| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let kind = file
                .metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .file_type();
            // A link would be followed by bubblewrap, from elsewhere.
            if kind.is_symlink() {
                return Err(format!("{} is a link", path.display()).into());
            }
            Ok::<_, SetupFailed>((file, kind.is_dir()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=65536"),
    )
    .map_err(|e| format!("the stage: {e}"))?;
    std::fs::create_dir("/tmp/gantry-stage").map_err(|e| format!("the stage: {e}"))?;
    for (index, (file, is_dir)) in opened.iter().enumerate() {
        let target = staged(index);
        if *is_dir {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        }
        .map_err(|e| format!("{}: {e}", target.display()))?;
        let source = &sources[index];
        mount(
            Some(format!("/proc/self/fd/{}", file.as_raw_fd()).as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("staging {}: {e}", source.path.display()))?;
        if source.read_only {
            // The bind and every mount under it (a `/usr/local` of its
            // own): each is locked read-only with the user namespace.
            for mounted in mounts_at_or_under(&target)? {
                mount(
                    None::<&str>,
                    &mounted,
                    None::<&str>,
                    MsFlags::MS_REMOUNT
                        | MsFlags::MS_BIND
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV,
                    None::<&str>,
                )
                .map_err(|e| format!("making {} read-only: {e}", mounted.display()))?;
            }
        }
    }
    Ok(())
}

/// `target` and every mount point beneath it, from `/proc/self/mountinfo`
/// (its fifth field; spaces and the like are octal escapes there).
fn mounts_at_or_under(target: &std::path::Path) -> Result<Vec<PathBuf>, SetupFailed> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mount_point(escaped)))
        .filter(|point| point.starts_with(target))
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// `\040` and the other octal escapes of mountinfo, undone.
fn unescape_mount_point(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        if let Some(digits) = octal {
            let value = digits
                .iter()
                .fold(0_u32, |n, d| n * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first argument of the helper that writes a build namespace's maps:
/// `gantry-sandbox --map-userns <pid> <UserRange JSON>`, once a line comes
/// on its input.
pub const MAP_USERNS: &str = "--map-userns";

fn map_userns(args: &[String]) -> Result<(), String> {
    let pid: u32 = args
        .get(2)
        .and_then(|p| p.parse().ok())
        .ok_or("expected a pid")?;
    let range: UserRange = args
        .get(3)
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or("expected the build's users as JSON")?;
    // The process is held open now, while its parent (the helper) waits
    // for this one: were it gone by the time the maps are written, its
    // pid could be another process's.
    let process = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("/proc/{pid}: {e}"))?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "mapped" {
        return Err("the build's namespace was not made".into());
    }
    for (file, gid) in [("uid_map", false), ("gid_map", true)] {
        let fd = nix::fcntl::openat(
            &process,
            file,
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("{file}: {e}"))?;
        std::fs::File::from(fd)
            .write_all(range.map(gid).as_bytes())
            .map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(())
}

/// Takes the network's capabilities from every set, the bounding set
/// too, so nothing the builder runs can undo the routes that keep it off
/// the host's addresses.
fn drop_network_capabilities() -> Result<(), SetupFailed> {
    for cap in [
        caps::Capability::CAP_NET_ADMIN,
        caps::Capability::CAP_NET_RAW,
    ] {
        for set in [
            caps::CapSet::Bounding,
            caps::CapSet::Effective,
            caps::CapSet::Inheritable,
            caps::CapSet::Permitted,
        ] {
            caps::drop(None, set, cap)
                .map_err(|e| format!("cannot drop {cap} from {set:?}: {e}"))?;
        }
    }
    Ok(())
}

/// Reaps every process that ends in the sandbox (pid 1 inherits orphans)
/// until the command itself has ended; passes stop signals on to it.
fn supervise(signals: &mut signal_hook::iterator::Signals, main: Pid) -> Ending {
    loop {
        if let Some(ending) = reap(main) {
            return ending;
        }
        for signal in signals.wait() {
            if signal != signal_hook::consts::SIGCHLD
                && let Ok(signal) = Signal::try_from(signal)
            {
                let _ = killpg(main, signal);
            }
        }
    }
}

fn reap(main: Pid) -> Option<Ending> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return Some(Ending::Exited(code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                return Some(Ending::Signalled(signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Opens an inherited pipe end anew (close-on-exec, so the command cannot
/// use it) and closes the inherited descriptor.
fn inherited(fd: i32, write: bool) -> Result<std::fs::File, SetupFailed> {
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("descriptor {fd}: {e}"))?;
    nix::unistd::close(fd).map_err(|e| format!("closing descriptor {fd}: {e}"))?;
    Ok(file)
}

fn fence_in(fence: &Fence) -> Result<(), SetupFailed> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
        Scope, path_beneath_rules,
    };
    // The newest ABI checked on these machines (DESIGN.md §5b).
    let abi = ABI::V7;
    let fail = |e: landlock::RulesetError| format!("landlock: {e}");
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .scope(Scope::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &fence.read_only,
            AccessFs::from_read(abi),
        ))
        .map_err(fail)?
        .add_rules(path_beneath_rules(&fence.writable, AccessFs::from_all(abi)))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    Ok(())
}

/// Clears the ambient capabilities, so the command (a non-root uid)
/// starts with none: a no-op where there are none.
fn drop_ambient_capabilities() -> Result<(), SetupFailed> {
    caps::clear(None, caps::CapSet::Ambient)
        .map_err(|e| format!("cannot clear the ambient capabilities: {e}").into())
}

/// Clears the helper's own capabilities (effective, permitted, inheritable).
fn drop_all_capabilities() -> Result<(), SetupFailed> {
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Inheritable,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| format!("cannot clear the {set:?} capabilities: {e}"))?;
    }
    Ok(())
}

/// `ip route add prohibit <net>` for each network, in one `ip -batch` (ip
/// tells the family from the address): a connection there fails at once,
/// whatever the default route says. IPv4 must take; IPv6 routes are left
/// out where the namespace has no IPv6 at all (then nothing reaches those
/// networks anyway).
fn prohibit(networks: &[String]) -> Result<(), SetupFailed> {
    let ipv6_off = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map(|v| v.trim() == "1")
        .unwrap_or(true);
    let networks: Vec<&String> = networks
        .iter()
        .filter(|net| net.contains('/') || net.parse::<std::net::IpAddr>().is_ok())
        .filter(|net| !(ipv6_off && net.contains(':')))
        .collect();
    route_batch(&networks)
}

fn route_batch(networks: &[&String]) -> Result<(), SetupFailed> {
    if networks.is_empty() {
        return Ok(());
    }
    let batch: String = networks
        .iter()
        .map(|net| format!("route add prohibit {net}\n"))
        .collect();
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .ok_or_else(|| "iproute2's ip is not installed".to_string())?;
    let mut child = Command::new(ip)
        .args(["-batch", "-"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| format!("ip: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("ip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip could not set the sandbox's unreachable routes ({status})").into())
    }
}

fn bind_forward(port: u16) -> Result<Vec<TcpListener>, SetupFailed> {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let mut listeners = vec![v4];
    // `localhost` may resolve to ::1 first; IPv6 may be off, which is fine.
    if let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        listeners.push(v6);
    }
    Ok(listeners)
}

fn relay_all(listener: TcpListener, socket: PathBuf) {
    for client in listener.incoming().flatten() {
        let socket = socket.clone();
        std::thread::spawn(move || relay(client, &socket));
    }
}

/// Copies bytes both ways between a client in the sandbox and Gantry.
fn relay(client: TcpStream, socket: &std::path::Path) {
    let upstream = match UnixStream::connect(socket) {
        Ok(upstream) => upstream,
        Err(error) => {
            eprintln!(
                "[gantry] cannot reach environments through Gantry's preview socket: {error}"
            );
            return;
        }
    };
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = std::io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        assert_eq!(unescape_mount_point("/usr/my\\040disk"), "/usr/my disk");
        assert_eq!(unescape_mount_point("/tmp/a\\134b"), "/tmp/a\\b");
        assert_eq!(unescape_mount_point("/x\\9"), "/x\\9");
        assert_eq!(unescape_mount_point("/ü\\0"), "/ü\\0");
    }

    #[test]
    fn endings_round_trip_through_the_status_line() {
        for ending in [Ending::Exited(0), Ending::Exited(137), Ending::Signalled(9)] {
            assert_eq!(Ending::parse(&ending.line()), Some(ending));
        }
        assert_eq!(Ending::parse("exited"), None);
        assert_eq!(Ending::parse("crashed 3"), None);
    }
}
