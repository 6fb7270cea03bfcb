//! A uid for each sandbox, from a range Gantry owns (`runner.uids`), as
//! systemd's `DynamicUser` gives each service its own: the kernel's
//! per-user limits and objects — `RLIMIT_NPROC`, keyrings, inotify
//! watches — are never shared between sandboxes, so one preview holding
//! hundreds of processes cannot stop another app's steps from starting,
//! and no sandbox can signal another's processes. A run's steps share its
//! run's uid; each local app has its own while it runs.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The range and the uids in use.
#[derive(Debug)]
pub struct UserPool {
    first: u32,
    count: u32,
    used: Mutex<BTreeSet<u32>>,
    /// Where the next search starts: uids are handed out in turn, not the
    /// lowest free one again at once (what a uid leaves behind in the
    /// kernel — a keyring — is not the next sandbox's at once).
    next: Mutex<u32>,
}

/// A uid (and the gid of the same number) held until dropped.
#[derive(Debug)]
pub struct UserLease {
    pool: Arc<UserPool>,
    uid: u32,
}

impl UserLease {
    /// The uid and gid the sandbox runs as.
    pub fn ids(&self) -> (u32, u32) {
        (self.uid, self.uid)
    }
}

impl Drop for UserLease {
    fn drop(&mut self) {
        self.pool
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.uid);
    }
}

impl UserPool {
    /// `first..=last`.
    pub fn new((first, last): (u32, u32)) -> Arc<UserPool> {
        Arc::new(UserPool {
            first,
            count: last.saturating_sub(first).saturating_add(1),
            used: Mutex::default(),
            next: Mutex::new(0),
        })
    }

    /// The next free uid in turn; none when every one is in use.
    pub fn lease(self: &Arc<Self>) -> Option<UserLease> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let offset = (0..self.count)
            .map(|step| (*next + step) % self.count)
            .find(|offset| !used.contains(&(self.first + offset)))?;
        *next = (offset + 1) % self.count;
        let uid = self.first + offset;
        used.insert(uid);
        Some(UserLease {
            pool: self.clone(),
            uid,
        })
    }

    /// How many uids the range holds.
    pub fn size(&self) -> u32 {
        self.count
    }
}

/// The `/etc/passwd` a sandbox sees: root, nobody and itself as `gantry`
/// (tools that look their user up find one; the host's users stay hidden).
pub fn passwd_file((uid, gid): (u32, u32)) -> String {
    format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         gantry:x:{uid}:{gid}:Gantry sandbox:/home/gantry:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
}

/// The `/etc/group` a sandbox sees.
pub fn group_file((_, gid): (u32, u32)) -> String {
    format!("root:x:0:\ngantry:x:{gid}:\nnogroup:x:65534:\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lease_has_its_own_uid_until_it_is_dropped() {
        let pool = UserPool::new((5000, 5002));
        let a = pool.lease().expect("a");
        let b = pool.lease().expect("b");
        let c = pool.lease().expect("c");
        assert_eq!([a.ids().0, b.ids().0, c.ids().0], [5000, 5001, 5002]);
        assert!(pool.lease().is_none(), "the range is used up");
        drop(b);
        assert_eq!(pool.lease().expect("again").ids(), (5001, 5001));
        assert_eq!(pool.size(), 3);
        // In turn: a uid given back is not the next one handed out.
        let pool = UserPool::new((7000, 7003));
        let first = pool.lease().expect("first");
        drop(first);
        assert_eq!(pool.lease().expect("next").ids().0, 7001);
    }

    #[test]
    fn the_sandbox_finds_itself_in_its_passwd() {
        let passwd = passwd_file((1_500_000_007, 1_500_000_007));
        assert!(passwd.contains("gantry:x:1500000007:1500000007:"));
        assert!(group_file((1, 9)).contains("gantry:x:9:"));
    }
}
