//! Time as Gantry reads it: the system clock, which a test moves forward
//! with [`Clock::advance`] instead of waiting for it. Milliseconds since the
//! epoch, like every timestamp in the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A clock shared by everything that asks it (cloning shares it).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far this clock is ahead of the system's: always 0 in service.
    ahead_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now_millis(&self) -> i64 {
        crate::db::now_millis().saturating_add(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock forward: what expires after `by` has expired.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ahead_ms.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_is_ahead_for_every_clone() {
        let clock = Clock::default();
        let shared = clock.clone();
        let before = shared.now_millis();
        clock.advance(Duration::from_secs(3600));
        assert!(shared.now_millis() - before >= 3_600_000);
    }
}
