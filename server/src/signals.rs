//! Wake-ups between Gantry's loops (scan, plan, run, deliver). They carry
//! no work: the database holds it, so a lost wake-up only delays it until
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
