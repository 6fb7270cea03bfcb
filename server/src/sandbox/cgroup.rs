//! Control groups for sandboxes: one group per sandboxed process tree with
//! its memory, process and CPU limits, and the counters that say which
//! limit a killed step ran into.
//!
//! Only the cgroup v1 controllers are managed (what these machines have,
//! DESIGN.md §5b). A cgroup v2 host needs a delegated subtree that Gantry
//! does not set up yet; there, and wherever Gantry may not create groups,
//! the sandbox falls back to rlimits (see `init`).

use super::SetupFailed;
use std::path::{Path, PathBuf};

use super::{LimitHit, Limits};

const ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
const CFS_PERIOD_US: u64 = 100_000;

/// Where this Gantry's groups are made: one directory per controller.
#[derive(Debug)]
pub struct CgroupParent {
    dirs: Vec<PathBuf>,
}

impl CgroupParent {
    /// Creates (or reuses) `gantry-<tag>` under this process's own group of
    /// each controller; the reason when that is not possible.
    pub fn create(tag: &str) -> Result<CgroupParent, SetupFailed> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut dirs = Vec::new();
        for controller in CONTROLLERS {
            let base = Path::new(ROOT).join(controller);
            if !base.join("cgroup.procs").is_file() {
                return Err(
                    format!("no cgroup v1 {controller} controller at {}", base.display()).into(),
                );
            }
            let parent = own_path(&own, controller)
                .map(|path| base.join(path.trim_start_matches('/')))
                .filter(|path| path.is_dir())
                .unwrap_or_else(|| base.clone());
            let dir = parent.join(format!("gantry-{tag}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            dirs.push(dir);
        }
        Ok(CgroupParent { dirs })
    }

    /// A new group `name` with `limits`.
    pub fn child(&self, name: &str, limits: &Limits) -> std::io::Result<Cgroup> {
        let group = Cgroup {
            dirs: self.dirs.iter().map(|dir| dir.join(name)).collect(),
        };
        for dir in &group.dirs {
            std::fs::create_dir_all(dir)?;
        }
        let memory = limits.memory_bytes.to_string();
        group.write("memory", "memory.limit_in_bytes", &memory)?;
        // Swap counts too where the kernel accounts it; not every host does.
        let _ = group.write("memory", "memory.memsw.limit_in_bytes", &memory);
        group.write("pids", "pids.max", &limits.pids.to_string())?;
        group.write("cpu", "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
        let quota = (limits.cpu_millis * CFS_PERIOD_US / 1000).max(1000);
        group.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
        Ok(group)
    }
}

/// The `<controller>` path of this process from `/proc/self/cgroup`.
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

/// One sandbox's group in each controller.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    fn dir(&self, controller: &str) -> Option<&PathBuf> {
        let index = CONTROLLERS.iter().position(|c| *c == controller)?;
        self.dirs.get(index)
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> std::io::Result<()> {
        let dir = self
            .dir(controller)
            .ok_or_else(|| std::io::Error::other(format!("no {controller} group")))?;
        std::fs::write(dir.join(file), value)
    }

    fn read(&self, controller: &str, file: &str) -> String {
        self.dir(controller)
            .and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .unwrap_or_default()
    }

    /// Moves `pid` (and so everything it starts later) into the group, on
    /// the blocking pool: on cgroup v1 each move waits for an RCU grace
    /// period, which is better spent while the sandbox sets itself up.
    pub fn add(&self, pid: u32) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let files: Vec<PathBuf> = self
            .dirs
            .iter()
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
        if counter(&self.read("pids", "pids.events"), "max") > 0 {
            return Some(LimitHit::Processes);
        }
        if counter(&self.read("memory", "memory.oom_control"), "oom_kill") > 0 {
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
        let dirs = std::mem::take(&mut self.dirs);
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
        let own = "9:name=systemd:/\n4:memory:/jobs/42\n1:cpu,cpuacct:/\n";
        assert_eq!(own_path(own, "memory"), Some("/jobs/42"));
        assert_eq!(own_path(own, "cpu"), Some("/"));
        assert_eq!(own_path(own, "pids"), None);
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            2
        );
        assert_eq!(counter("max 0\n", "max"), 0);
        assert_eq!(counter("", "max"), 0);
    }
}
