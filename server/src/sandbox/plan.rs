//! What a sandbox sees, as bubblewrap arguments: a read-only system
//! (`/usr`, `/etc` without anything of Gantry's, the `/bin` and `/lib`
//! links), its own `/proc`, a minimal `/dev`, a private `/tmp`, the
//! directories it was given — and nothing else of the host. Pure, so the
//! view can be checked without starting anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Mount, Network};

/// Where the helper and Gantry's preview socket appear inside.
pub const HELPER: &str = "/.gantry/init";
pub const PREVIEW_SOCKET: &str = "/.gantry/preview.sock";
/// Descriptors bubblewrap and the helper are given.
pub const INFO_FD: i32 = 3;
/// The helper waits on it before starting the command (see the `gantry_sandbox` crate).
pub const GO_FD: i32 = 4;
pub const STATUS_FD: i32 = 5;
pub const LIFELINE_FD: i32 = 6;
/// The command's own environment (a step's variables and secrets), read by
/// the helper: never bubblewrap's or the helper's own, where a variable
/// like `LD_PRELOAD` would run code before the sandbox is set up.
pub const ENV_FD: i32 = 7;

/// System directories shown read-only (those that exist on the host).
const SYSTEM: &[&str] = &["/usr", "/etc"];
/// What the image builder sees of the system: `/usr` and the parts of
/// `/etc` buildah and TLS need — never the whole of `/etc`. The builder
/// is root of its namespace and could lift any mount that masks one of
/// Gantry's files there, so nothing is masked: what is not needed is not
/// shown (`builder_conflict`).
pub const BUILDER_SYSTEM: &[&str] = &[
    "/usr",
    "/etc/containers",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/localtime",
];

/// A file of Gantry's the image builder would be shown (it lies under what
/// the builder sees, where no mask would hold): the builder does not
/// start while there is one.
pub fn builder_conflict(private: &[PathBuf]) -> Option<&Path> {
    private
        .iter()
        .map(PathBuf::as_path)
        .find(|path| BUILDER_SYSTEM.iter().any(|shown| path.starts_with(shown)))
}
/// The devices a sandbox gets (what bubblewrap's `--dev` gives).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];
const DEVICE_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];
/// Top-level links or directories of merged-/usr and older layouts.
pub const SYSTEM_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

#[derive(Debug)]
pub struct Plan<'a> {
    /// Gantry runs as root: no user namespace, the helper drops to the
    /// runner user itself.
    pub as_root: bool,
    /// The image builder, as root: bubblewrap runs as root of the build's
    /// own user namespace (see `gantry_sandbox::UserRange`) and gives the
    /// helper every capability of it; the helper keeps them but the
    /// network's.
    pub builder: bool,
    pub network: Network,
    pub mounts: &'a [Mount],
    pub cwd: &'a Path,
    /// Extra read-only host paths (`runner.read_only_paths`).
    pub read_only: &'a [PathBuf],
    /// Gantry's own files: masked wherever they fall inside what is shown.
    pub private: &'a [PathBuf],
    pub tmp_bytes: u64,
    /// Files generated for this sandbox: `/etc/hosts`, `/etc/resolv.conf`,
    /// and (as root, where it runs as a uid of its own) `/etc/passwd` and
    /// `/etc/group`.
    pub hosts_file: &'a Path,
    pub identity: Option<(&'a Path, &'a Path)>,
    pub resolv_file: Option<&'a Path>,
    pub helper: &'a Path,
    pub preview_socket: Option<&'a Path>,
    /// The builder's view of the system (`BUILDER_SYSTEM`, staged): host
    /// path and where it shows.
    pub builder_system: &'a [(PathBuf, PathBuf)],
    /// The helper's instructions (JSON).
    pub instructions: &'a str,
}

/// The arguments after `bwrap`.
pub fn arguments(plan: &Plan<'_>) -> Vec<OsString> {
    let mut args = Args::default();
    args.flags(&[
        "--die-with-parent",
        // A new session: no terminal to push keystrokes into.
        "--new-session",
        // The helper is pid 1: it reaps, and the sandbox ends with it.
        "--as-pid-1",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "gantry-sandbox",
    ]);
    if plan.network != Network::Host {
        args.flags(&["--unshare-net"]);
    }
    if plan.as_root && plan.builder {
        // Capabilities of the build's namespace only: mounts and chroot
        // for buildah, over nothing of the host's.
        args.flags(&["--cap-add", "ALL"]);
    } else if plan.as_root {
        // Only what the helper needs to become the runner user (and, with
        // a network of its own, to close off the host's addresses in it);
        // all of them go with root.
        args.flags(&["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]);
        if plan.network == Network::Isolated {
            args.flags(&["--cap-add", "CAP_NET_ADMIN"]);
        }
    } else if plan.network == Network::Isolated {
        // Without root, slirp4netns reaches the sandbox's network through
        // its user namespace: the one namespace it must be (bubblewrap's
        // `--disable-userns` would nest another, which does not own the
        // network). CAP_NET_ADMIN is for the helper to close off the host's
        // addresses and the metadata networks; it clears it before the
        // command starts.
        args.flags(&["--unshare-user", "--cap-add", "CAP_NET_ADMIN"]);
    } else {
        args.flags(&["--unshare-user", "--disable-userns"]);
    }
    if plan.builder {
        for (source, shown) in plan.builder_system {
            args.pair("--ro-bind", source, shown);
        }
    } else {
        for dir in SYSTEM {
            if Path::new(dir).is_dir() {
                args.pair("--ro-bind", dir, dir);
            }
        }
    }
    for link in SYSTEM_LINKS {
        let path = Path::new(link);
        match std::fs::read_link(path) {
            Ok(target) => args.pair("--symlink", target, path),
            // The builder's come staged, with its system.
            Err(_) if path.is_dir() && !plan.builder => args.pair("--ro-bind", path, path),
            Err(_) => {}
        }
    }
    args.one("--proc", "/proc");
    if plan.builder {
        // buildah binds `/sys` into what it runs; an empty folder, never
        // the host's.
        args.flags(&["--dir", "/sys"]);
    }
    if plan.as_root {
        args.one("--dev", "/dev");
    } else {
        // Without root, bubblewrap's `--dev` leaves a capability it was
        // given unusable for network set-up; the same devices, by hand, on
        // a tiny tmpfs made read-only below (it is the sandbox's own:
        // writable, it would be unbounded memory).
        args.flags(&["--size", "65536"]);
        args.one("--tmpfs", "/dev");
        for device in DEVICES {
            args.pair("--dev-bind", device, device);
        }
        for (link, target) in DEVICE_LINKS {
            args.pair("--symlink", target, link);
        }
    }
    // Shared memory is a tmpfs of its own, of the same size as /tmp: never
    // one without bounds (memory it holds is outside a limit set with
    // rlimits only), and anyone's to use, as /tmp.
    args.flags(&["--size", &plan.tmp_bytes.to_string()]);
    args.one("--tmpfs", "/dev/shm");
    args.pair("--chmod", "1777", "/dev/shm");
    if !plan.as_root {
        args.one("--remount-ro", "/dev");
    }
    args.flags(&["--size", &plan.tmp_bytes.to_string()]);
    args.one("--tmpfs", "/tmp");
    args.pair("--chmod", "1777", "/tmp");
    // The folders above a mount point (`/home` above `/home/gantry`) are
    // made by hand, open to all, before anything is mounted below them:
    // bubblewrap's own are closed to everyone but root, and the step runs
    // as another user.
    let mut above: Vec<&Path> = plan
        .mounts
        .iter()
        .flat_map(|mount| mount.inside.ancestors().skip(1))
        .filter(|dir| {
            *dir != Path::new("/")
                && !dir.starts_with("/tmp")
                && !SYSTEM.iter().any(|system| dir.starts_with(system))
        })
        .collect();
    above.sort();
    above.dedup();
    above.sort_by_key(|dir| dir.components().count());
    for dir in above {
        args.flags(&["--perms", "0755", "--dir", &dir.display().to_string()]);
    }
    // After /tmp, so an extra path under /tmp is not hidden by it. Never
    // the builder's: it could lift the masks below.
    let read_only: &[PathBuf] = if plan.builder { &[] } else { plan.read_only };
    for path in read_only {
        args.pair("--ro-bind-try", path, path);
    }
    for path in plan.private.iter().filter(|_| !plan.builder) {
        if !visible(path, plan.read_only) {
            continue;
        }
        if path.is_dir() {
            args.one("--tmpfs", path);
        } else if path.exists() {
            args.pair("--ro-bind", "/dev/null", path);
        }
    }
    args.pair("--ro-bind", plan.hosts_file, "/etc/hosts");
    if let Some((passwd, group)) = plan.identity {
        args.pair("--ro-bind", passwd, "/etc/passwd");
        args.pair("--ro-bind", group, "/etc/group");
    }
    if let Some(resolv) = plan.resolv_file {
        args.pair("--ro-bind", resolv, "/etc/resolv.conf");
    }
    for mount in plan.mounts {
        let flag = if mount.writable {
            "--bind"
        } else {
            "--ro-bind"
        };
        args.pair(flag, &mount.host, &mount.inside);
    }
    // Made by hand: a directory bubblewrap makes for a file's mount point
    // is closed to everyone but root.
    args.flags(&["--perms", "0755", "--dir", "/.gantry"]);
    if let Some(socket) = plan.preview_socket {
        args.pair("--bind", socket, PREVIEW_SOCKET);
    }
    args.pair("--ro-bind", plan.helper, HELPER);
    args.one("--chdir", plan.cwd);
    args.flags(&[
        "--info-fd",
        &INFO_FD.to_string(),
        "--",
        HELPER,
        plan.instructions,
    ]);
    args.0
}

/// Whether a host path shows inside: under a system directory or an extra
/// read-only path.
fn visible(path: &Path, read_only: &[PathBuf]) -> bool {
    SYSTEM
        .iter()
        .map(Path::new)
        .chain(read_only.iter().map(PathBuf::as_path))
        .any(|root| path.starts_with(root))
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn one(&mut self, flag: &str, value: impl AsRef<Path>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().as_os_str().to_owned());
    }

    fn pair(&mut self, flag: &str, from: impl AsRef<Path>, to: impl AsRef<Path>) {
        self.0.push(flag.into());
        self.0.push(from.as_ref().as_os_str().to_owned());
        self.0.push(to.as_ref().as_os_str().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(mounts: &'a [Mount], private: &'a [PathBuf], network: Network) -> Plan<'a> {
        Plan {
            as_root: true,
            builder: false,
            network,
            mounts,
            cwd: Path::new("/workspace"),
            read_only: &[],
            private,
            tmp_bytes: 1024,
            hosts_file: Path::new("/data/run/s1/hosts"),
            identity: None,
            resolv_file: None,
            helper: Path::new("/opt/gantry/gantry-sandbox"),
            preview_socket: None,
            builder_system: &[],
            instructions: "{}",
        }
    }

    fn text(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_view_holds_the_system_the_mounts_and_nothing_private() {
        let mounts = [
            Mount::writable("/data/work/run-1-1/app", "/workspace"),
            Mount::read_only("/data/work/run-1-1/pipeline", "/pipeline"),
        ];
        let private = [PathBuf::from("/etc/gantry"), PathBuf::from("/data")];
        let args = text(&arguments(&plan(&mounts, &private, Network::Isolated)));
        assert!(args.contains("--ro-bind /usr /usr"), "{args}");
        assert!(args.contains("--bind /data/work/run-1-1/app /workspace"));
        assert!(args.contains("--ro-bind /data/work/run-1-1/pipeline /pipeline"));
        assert!(args.contains("--unshare-net"));
        assert!(args.contains("--die-with-parent"));
        assert!(args.contains("--cap-add CAP_SETUID"));
        assert!(
            !args.contains("--unshare-user"),
            "root mode has no user namespace"
        );
        assert!(args.contains("--size 1024 --tmpfs /tmp --chmod 1777 /tmp"));
        // Nothing binds the host's root or the data directory itself.
        assert!(!args.contains("--bind / "), "{args}");
        assert!(!args.contains(" /data /data"), "{args}");
        assert!(args.ends_with("-- /.gantry/init {}"), "{args}");
    }

    #[test]
    fn the_builder_gets_its_namespace_s_capabilities_and_no_host_sysfs() {
        let mounts = [Mount::writable("/data/work/run-1-1/app", "/workspace")];
        let mut plan = plan(&mounts, &[], Network::Isolated);
        let system = [(PathBuf::from("/tmp/gantry-stage/0"), PathBuf::from("/usr"))];
        plan.builder = true;
        plan.builder_system = &system;
        let args = text(&arguments(&plan));
        assert!(args.contains("--cap-add ALL"), "{args}");
        assert!(!args.contains("CAP_SETUID"), "{args}");
        assert!(args.contains("--dir /sys"), "{args}");
        assert!(!args.contains("/sys /sys"), "{args}");
        assert!(args.contains("--unshare-net"), "{args}");
        // Not the whole of /etc, no extra paths, no masks to lift.
        assert!(!args.contains("--ro-bind /etc /etc"), "{args}");
        assert!(
            args.contains("--ro-bind /tmp/gantry-stage/0 /usr"),
            "{args}"
        );
        assert!(!args.contains("/dev/null"), "{args}");
        let private = [PathBuf::from("/usr/local/etc/gantry.toml")];
        assert_eq!(
            builder_conflict(&private),
            Some(Path::new("/usr/local/etc/gantry.toml"))
        );
        assert_eq!(builder_conflict(&[PathBuf::from("/var/lib/gantry")]), None);
    }

    #[test]
    fn gantry_files_under_etc_are_masked_and_host_networking_is_explicit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gantry.toml");
        std::fs::write(&config, "x").expect("write");
        let read_only = [dir.path().to_path_buf()];
        let private = [config.clone()];
        let mut plan = plan(&[], &private, Network::Host);
        plan.read_only = &read_only;
        let args = text(&arguments(&plan));
        assert!(
            args.contains(&format!("--ro-bind /dev/null {}", config.display())),
            "{args}"
        );
        assert!(!args.contains("--unshare-net"), "{args}");
    }
}
