//! Wake-ups between Gantry's loops (scan, plan, run, deliver). They carry
//! no work: the database holds it, so a lost wake-up only delays it until
//! the loop's next tick.

use tokio::sync::Notify;

/// Wake-ups between the loops; the database holds the actual work.
#[derive(Debug, Default)]
pub struct Signals {
    /// A repo changed or a trigger arrived: scan now.
    pub scan_wake: Notify,
    /// New events in the inbox.
    pub plan_wake: Notify,
    /// New queued runs.
    pub runner_wake: Notify,
    /// New notification deliveries.
    pub notify_wake: Notify,
    /// A cluster was registered or removed: the next scan validates every
    /// app anew, even if the pipeline repo did not move.
    pub targets_changed: std::sync::atomic::AtomicBool,
}
