//! Wake-ups between Gantry's loops (scan, plan, run, deliver), and which
//! elected loops this replica holds. Wake-ups carry no work: the database
//! holds it, so a lost wake-up only delays it until
//! the loop's next tick. With several replicas, a wake-up also reaches the
//! other replicas (`relay`): the planner may run on another one than the
//! replica a webhook reached.

use std::sync::OnceLock;

use tokio::sync::{Notify, mpsc};

/// One kind of wake-up: here, and (once `relay` is connected) on every
/// other replica.
#[derive(Debug)]
pub struct Wake {
    name: &'static str,
    local: Notify,
    relay: OnceLock<mpsc::UnboundedSender<&'static str>>,
}

impl Wake {
    fn new(name: &'static str) -> Wake {
        Wake {
            name,
            local: Notify::new(),
            relay: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Wakes the loop here and on the other replicas.
    pub fn notify_one(&self) {
        self.local.notify_one();
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(self.name);
        }
    }

    /// Wakes the loop here only (a wake-up another replica relayed).
    pub fn notify_here(&self) {
        self.local.notify_one();
    }

    pub async fn notified(&self) {
        self.local.notified().await;
    }

    pub fn relay_to(&self, relay: mpsc::UnboundedSender<&'static str>) {
        let _ = self.relay.set(relay);
    }
}

/// Wake-ups between the loops; the database holds the actual work.
#[derive(Debug)]
pub struct Signals {
    /// A repo changed or a trigger arrived: scan now.
    pub scan_wake: Wake,
    /// New events in the inbox.
    pub plan_wake: Wake,
    /// New queued runs.
    pub runner_wake: Wake,
    /// New notification deliveries.
    pub notify_wake: Wake,
    /// A cluster was registered or removed: the next scan validates every
    /// app anew, even if the pipeline repo did not move.
    pub targets_changed: std::sync::atomic::AtomicBool,
}

impl Default for Signals {
    fn default() -> Signals {
        Signals {
            scan_wake: Wake::new("scan"),
            plan_wake: Wake::new("plan"),
            runner_wake: Wake::new("runner"),
            notify_wake: Wake::new("notify"),
            targets_changed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Signals {
    /// Every wake-up that replicas share.
    pub fn all(&self) -> [&Wake; 4] {
        [
            &self.scan_wake,
            &self.plan_wake,
            &self.runner_wake,
            &self.notify_wake,
        ]
    }
}

/// Which of the elected background loops this replica holds, and until
/// when it may act on each (`jobs::election` takes and renews the leases).
/// A lease counts as held only until two thirds of it after its last
/// renewal, so a replica that cannot renew (the database is gone) stops
/// before another may start.
#[derive(Debug)]
pub struct Singletons {
    /// One process (SQLite): it holds every loop, with no lease.
    all: bool,
    held: std::sync::Mutex<std::collections::HashMap<&'static str, std::time::Instant>>,
}

impl Singletons {
    /// `alone`: this process is the only one (SQLite) and holds them all.
    pub fn new(alone: bool) -> Singletons {
        Singletons {
            all: alone,
            held: Default::default(),
        }
    }

    /// Whether this replica holds `name` now.
    pub fn holds(&self, name: &str) -> bool {
        self.all
            || self
                .lock()
                .get(name)
                .is_some_and(|until| std::time::Instant::now() < *until)
    }

    /// Holds `name` until `until`; whether it was newly taken.
    pub fn hold(&self, name: &'static str, until: std::time::Instant) -> bool {
        self.lock().insert(name, until).is_none()
    }

    pub fn lose(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Gives every lease up (this replica is stopping).
    pub fn lose_all(&self) {
        self.lock().clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<&'static str, std::time::Instant>>
    {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}
