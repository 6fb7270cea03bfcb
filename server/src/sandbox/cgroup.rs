//! Control groups for sandboxes: one group per sandboxed process tree with
//! its memory (tmpfs pages count: they are charged to the group), process
//! and CPU limits, and the counters that say which limit a killed step ran
//! into.
//!
//! Both hierarchies (DESIGN.md §5b):
//! - **cgroup v2** (Debian 12, current Ubuntu/Fedora/RHEL, Kubernetes
//!   nodes): a delegated subtree — the systemd unit's own group with
//!   `Delegate=yes`, or inside a container the group namespace's root.
//!   Gantry moves its own processes into a leaf (`gantry`, the "no internal
//!   processes" rule), enables `memory pids cpu` for `sandboxes/`, and
//!   gives each sandbox a group there: `memory.max`, `memory.swap.max`,
//!   `pids.max`, `cpu.max`; `memory.events` and `pids.events` say which
//!   limit was hit.
//! - **cgroup v1** (these build machines): a `gantry-<tag>` group under
//!   this process's own group of each controller.
//!
//! Where neither can be managed the sandbox falls back to rlimits (see
//! the `gantry_sandbox` crate), and the Settings page and every run page say which limits are
//! weaker ([`weaker_without_cgroups`]).

use super::SetupFailed;
use std::path::{Path, PathBuf};

use super::{LimitHit, Limits};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
const CFS_PERIOD_US: u64 = 100_000;

/// What is weaker without cgroups, for the Settings page and run pages.
pub fn weaker_without_cgroups() -> &'static str {
    "limits are rlimits, not cgroups: memory is limited per process (not for all of a step's processes together), the process limit counts the runner user's processes, and CPU time is not limited"
}

/// Where this Gantry's groups are made.
#[derive(Debug)]
pub enum CgroupParent {
    /// cgroup v1: one directory per controller.
    V1 { dirs: Vec<PathBuf> },
    /// cgroup v2: the `sandboxes` group of the delegated subtree.
    V2 { dir: PathBuf },
}

impl CgroupParent {
    /// The parent for this host's hierarchy; the reason when neither can
    /// be managed here.
    pub fn create(tag: &str) -> Result<CgroupParent, SetupFailed> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if Path::new(ROOT).join("cgroup.controllers").is_file() {
            let path = own_v2_path(&own).ok_or_else(|| {
                "this process's cgroup v2 group is not in /proc/self/cgroup".to_string()
            })?;
            return CgroupParent::delegate(&Path::new(ROOT).join(path.trim_start_matches('/')));
        }
        CgroupParent::v1(tag, &own)
    }

    fn v1(tag: &str, own: &str) -> Result<CgroupParent, SetupFailed> {
        let mut dirs = Vec::new();
        for controller in CONTROLLERS {
            let base = Path::new(ROOT).join(controller);
            if !base.join("cgroup.procs").is_file() {
                return Err(
                    format!("no cgroup v1 {controller} controller at {}", base.display()).into(),
                );
            }
            let parent = own_path(own, controller)
                .map(|path| base.join(path.trim_start_matches('/')))
                .filter(|path| path.is_dir())
                .unwrap_or_else(|| base.clone());
            let dir = parent.join(format!("gantry-{tag}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            writable(&dir)?;
            dirs.push(dir);
        }
        Ok(CgroupParent::V1 { dirs })
    }

    /// Takes charge of the delegated cgroup v2 group `own`: this process
    /// (and any other in it) moves to the leaf `own/gantry`, `memory pids
    /// cpu` are enabled below `own` and below `own/sandboxes`.
    pub fn delegate(own: &Path) -> Result<CgroupParent, SetupFailed> {
        let available = std::fs::read_to_string(own.join("cgroup.controllers"))
            .map_err(|e| format!("{} is no cgroup v2 group: {e}", own.display()))?;
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !available.split_whitespace().any(|a| a == *c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the cgroup v2 group {} is not delegated the {} controller{} (systemd: Delegate=yes on Gantry's unit; in a container, its own cgroup namespace)",
                own.display(),
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" }
            )
            .into());
        }
        writable(own)?;
        // Only a group that is Gantry's own: every process in it Gantry or
        // started by it (a container's init above it included). Anyone
        // else's processes — a login session's — are not moved.
        let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
        let foreign: Vec<&str> = procs
            .split_whitespace()
            .filter(|pid| !ours(pid.parse().unwrap_or(0)))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "the cgroup v2 group {} holds processes that are not Gantry's ({}): it is not delegated to Gantry",
                own.display(),
                foreign.join(", ")
            )
            .into());
        }
        let leaf = own.join("gantry");
        std::fs::create_dir_all(&leaf)
            .map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
        // No process may stay in a group whose controllers are enabled for
        // its children: move every one (Gantry's own) to the leaf.
        for pid in procs.split_whitespace() {
            // A process that ended meanwhile is no error.
            let _ = std::fs::write(leaf.join("cgroup.procs"), pid);
        }
        let enable = CONTROLLERS.map(|c| format!("+{c}")).join(" ");
        std::fs::write(own.join("cgroup.subtree_control"), &enable)
            .map_err(|e| format!("cannot enable {enable} in {}: {e}", own.display()))?;
        let dir = own.join("sandboxes");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("cgroup.subtree_control"), &enable)
            .map_err(|e| format!("cannot enable {enable} in {}: {e}", dir.display()))?;
        Ok(CgroupParent::V2 { dir })
    }

    /// A new group `name` with `limits`.
    pub fn child(&self, name: &str, limits: &Limits) -> std::io::Result<Cgroup> {
        match self {
            CgroupParent::V1 { dirs } => {
                let group = Cgroup::V1 {
                    dirs: dirs.iter().map(|dir| dir.join(name)).collect(),
                };
                for dir in group.dirs() {
                    std::fs::create_dir_all(dir)?;
                }
                let memory = limits.memory_bytes.to_string();
                group.write(0, "memory.limit_in_bytes", &memory)?;
                // Swap counts too where the kernel accounts it; not every host does.
                let _ = group.write(0, "memory.memsw.limit_in_bytes", &memory);
                group.write(1, "pids.max", &limits.pids.to_string())?;
                group.write(2, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                group.write(2, "cpu.cfs_quota_us", &quota(limits).to_string())?;
                Ok(group)
            }
            CgroupParent::V2 { dir } => {
                let group = Cgroup::V2 {
                    dir: dir.join(name),
                };
                std::fs::create_dir_all(dir.join(name))?;
                group.write(0, "memory.max", &limits.memory_bytes.to_string())?;
                // No swap to escape the memory limit into (not every kernel
                // has swap accounting: then there is none to limit).
                let _ = group.write(0, "memory.swap.max", "0");
                group.write(0, "pids.max", &limits.pids.to_string())?;
                group.write(0, "cpu.max", &format!("{} {CFS_PERIOD_US}", quota(limits)))?;
                Ok(group)
            }
        }
    }

    /// Which hierarchy, for people: `cgroup v2` or `cgroup v1`.
    pub fn describe(&self) -> &'static str {
        match self {
            CgroupParent::V1 { .. } => "cgroup v1",
            CgroupParent::V2 { .. } => "cgroup v2",
        }
    }
}

/// Whether `pid` is this process, one it started, or the init that
/// started it (a container's `tini` as pid 1).
fn ours(pid: u32) -> bool {
    let me = std::process::id();
    if pid == 1 && nix::unistd::getppid().as_raw() == 1 {
        return true;
    }
    let mut current = pid;
    for _ in 0..64 {
        if current == me {
            return true;
        }
        if current <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid …`: the name may hold spaces or parentheses.
        let Some(parent) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse().ok())
        else {
            return false;
        };
        current = parent;
    }
    false
}

/// CPU time per period for `limits` (at least a hundredth of a core).
fn quota(limits: &Limits) -> u64 {
    (limits.cpu_millis * CFS_PERIOD_US / 1000).max(1000)
}

/// Refuses a group this process may not write: one made by another user
/// (a root Gantry before this one) is no group for it.
fn writable(dir: &Path) -> Result<(), SetupFailed> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("cannot write the cgroup {}: {e}", dir.display()).into())
}

/// The `<controller>` path of this process from `/proc/self/cgroup` (v1).
fn own_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names
            .split(',')
            .any(|name| name == controller)
            .then_some(path)
    })
}

/// This process's group in the unified hierarchy (`0::/path`).
fn own_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// One sandbox's group: in each v1 controller, or the one v2 group.
#[derive(Debug)]
pub enum Cgroup {
    V1 { dirs: Vec<PathBuf> },
    V2 { dir: PathBuf },
}

impl Cgroup {
    fn dirs(&self) -> Vec<&PathBuf> {
        match self {
            Cgroup::V1 { dirs } => dirs.iter().collect(),
            Cgroup::V2 { dir } => vec![dir],
        }
    }

    /// The directory of controller `index` of [`CONTROLLERS`] (v2: the one).
    fn dir(&self, index: usize) -> Option<&PathBuf> {
        match self {
            Cgroup::V1 { dirs } => dirs.get(index),
            Cgroup::V2 { dir } => Some(dir),
        }
    }

    fn write(&self, index: usize, file: &str, value: &str) -> std::io::Result<()> {
        let dir = self
            .dir(index)
            .ok_or_else(|| std::io::Error::other(format!("no {} group", CONTROLLERS[index])))?;
        std::fs::write(dir.join(file), value)
    }

    fn read(&self, index: usize, file: &str) -> String {
        self.dir(index)
            .and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .unwrap_or_default()
    }

    /// Moves `pid` (and so everything it starts later) into the group, on
    /// the blocking pool: on cgroup v1 each move waits for an RCU grace
    /// period, which is better spent while the sandbox sets itself up.
    pub fn add(&self, pid: u32) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let files: Vec<PathBuf> = self
            .dirs()
            .into_iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect();
        tokio::task::spawn_blocking(move || {
            for file in files {
                std::fs::write(file, pid.to_string())?;
            }
            Ok(())
        })
    }

    /// The limit the group ran into, if any: a process killed for memory,
    /// or a process that could not be started.
    /// A fork bomb also runs out of memory: the process limit, its cause,
    /// is named first.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        let (pids, memory) = match self {
            Cgroup::V1 { .. } => (
                self.read(1, "pids.events"),
                self.read(0, "memory.oom_control"),
            ),
            Cgroup::V2 { .. } => (self.read(0, "pids.events"), self.read(0, "memory.events")),
        };
        if counter(&pids, "max") > 0 {
            return Some(LimitHit::Processes);
        }
        if counter(&memory, "oom_kill") > 0 {
            return Some(LimitHit::Memory);
        }
        None
    }
}

/// A group is removed when dropped, on every path (a sandbox that failed to
/// start included), once its processes are gone: the kernel refuses while
/// any is left, so this retries briefly in the background.
impl Drop for Cgroup {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self.dirs().into_iter().cloned().collect();
        let attempt = |dirs: &[PathBuf]| dirs.iter().all(|dir| remove_dir(dir));
        if attempt(&dirs) {
            return;
        }
        std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if attempt(&dirs) {
                    return;
                }
            }
            tracing::warn!(group = ?dirs.first(), "a sandbox's cgroup could not be removed");
        });
    }
}

fn remove_dir(dir: &Path) -> bool {
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

/// `name N` from a cgroup key-value file.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_groups_and_counters_are_read() {
        let own = "9:name=systemd:/\n4:memory:/jobs/42\n1:cpu,cpuacct:/\n0::/system.slice/gantry.service\n";
        assert_eq!(own_path(own, "memory"), Some("/jobs/42"));
        assert_eq!(own_path(own, "cpu"), Some("/"));
        assert_eq!(own_path(own, "pids"), None);
        assert_eq!(own_v2_path(own), Some("/system.slice/gantry.service"));
        assert_eq!(own_v2_path("4:memory:/x\n"), None);
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            2
        );
        assert_eq!(counter("max 0\n", "max"), 0);
        assert_eq!(counter("", "max"), 0);
    }

    /// A delegated cgroup v2 group, as files (what the kernel shows): the
    /// writes Gantry makes, checked one by one. (The real hierarchy is
    /// tested where a test can mount it: see the sandbox tests.)
    #[test]
    fn a_delegated_v2_group_gets_a_leaf_for_gantry_and_limited_sandboxes() {
        let own = tempfile::tempdir().expect("dir");
        let own = own.path();
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .expect("controllers");
        let me = std::process::id().to_string();
        std::fs::write(own.join("cgroup.procs"), format!("{me}\n")).expect("procs");
        let parent = CgroupParent::delegate(own).expect("delegated");
        assert_eq!(parent.describe(), "cgroup v2");
        assert_eq!(
            std::fs::read_to_string(own.join("gantry/cgroup.procs")).unwrap(),
            me
        );
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(
            std::fs::read_to_string(own.join("sandboxes/cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );

        let limits = Limits {
            memory_bytes: 64 << 20,
            pids: 64,
            cpu_millis: 500,
            tmp_bytes: 0,
        };
        let group = parent.child("s1", &limits).expect("group");
        let file =
            |name: &str| std::fs::read_to_string(own.join("sandboxes/s1").join(name)).unwrap();
        assert_eq!(file("memory.max"), (64 << 20).to_string());
        assert_eq!(file("memory.swap.max"), "0");
        assert_eq!(file("pids.max"), "64");
        assert_eq!(file("cpu.max"), "50000 100000");
        assert_eq!(group.limit_hit(), None);
        std::fs::write(
            own.join("sandboxes/s1/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(group.limit_hit(), Some(LimitHit::Memory));
        std::fs::write(own.join("sandboxes/s1/pids.events"), "max 7\n").unwrap();
        assert_eq!(group.limit_hit(), Some(LimitHit::Processes));
    }

    #[test]
    fn a_v2_group_holding_someone_elses_processes_is_not_taken() {
        let own = tempfile::tempdir().expect("dir");
        std::fs::write(own.path().join("cgroup.controllers"), "cpu memory pids\n")
            .expect("controllers");
        // pid 2 (kthreadd) is nobody Gantry started.
        std::fs::write(own.path().join("cgroup.procs"), "2\n").expect("procs");
        let error = CgroupParent::delegate(own.path())
            .expect_err("not Gantry's")
            .0;
        assert!(error.contains("not Gantry's (2)"), "{error}");
        assert!(!own.path().join("sandboxes").exists());
    }

    #[test]
    fn a_v2_group_without_its_controllers_is_refused_with_what_it_lacks() {
        let own = tempfile::tempdir().expect("dir");
        std::fs::write(own.path().join("cgroup.controllers"), "cpu io\n").expect("controllers");
        let error = CgroupParent::delegate(own.path())
            .expect_err("not delegated")
            .0;
        assert!(
            error.contains("memory, pids controllers") && error.contains("Delegate=yes"),
            "{error}"
        );
    }
}
