//! Freeze windows: periods, starting on a cron schedule, during which an
//! environment takes no promotion (no change request merges into it, no held
//! run is released) unless an admin overrides with a reason.
//!
//! `freeze: [{ start: "0 18 * * FRI", for: 62h, reason: "weekend" }]` freezes
//! from Friday 18:00 for 62 hours. Schedules are read in UTC.

use crate::error::Rejected;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeWindow {
    /// A cron expression (5 fields, minute precision, UTC): when it starts.
    pub start: String,
    /// How long each freeze lasts.
    pub duration_seconds: u64,
    /// Shown to whoever is blocked.
    pub reason: String,
}

/// A freeze in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    pub reason: String,
    /// When it ends (ms since the epoch).
    pub until: i64,
}

impl Freeze {
    /// "frozen until 2026-11-30 08:00 UTC: weekend".
    pub fn describe(&self) -> String {
        let until = Utc
            .timestamp_millis_opt(self.until)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| self.until.to_string());
        format!("frozen until {until}: {}", self.reason)
    }
}

/// Checks a schedule as written in `app.yaml`.
pub fn parse_schedule(text: &str) -> Result<Cron, Rejected> {
    Cron::from_str(text).map_err(|error| {
        Rejected(format!(
            "{text:?} is not a cron schedule ({error}); expected 5 fields like \"0 18 * * FRI\""
        ))
    })
}

impl FreezeWindow {
    /// The freeze of this window in force at `now` (ms), if any.
    pub fn active_at(&self, now: i64) -> Option<Freeze> {
        let cron = parse_schedule(&self.start).ok()?;
        let now_time: DateTime<Utc> = Utc.timestamp_millis_opt(now).single()?;
        let started = cron.find_previous_occurrence(&now_time, true).ok()?;
        let until = started.timestamp_millis() + (self.duration_seconds as i64) * 1000;
        (now < until).then(|| Freeze {
            reason: self.reason.clone(),
            until,
        })
    }
}

/// The freeze in force at `now` among `windows`: the one ending last.
pub fn active(windows: &[FreezeWindow], now: i64) -> Option<Freeze> {
    windows
        .iter()
        .filter_map(|window| window.active_at(now))
        .max_by_key(|freeze| freeze.until)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .timestamp_millis()
    }

    fn weekend() -> FreezeWindow {
        FreezeWindow {
            start: "0 18 * * FRI".into(),
            duration_seconds: 62 * 3600,
            reason: "weekend".into(),
        }
    }

    #[test]
    fn a_window_is_in_force_from_its_start_for_its_duration() {
        // 2026-11-27 is a Friday.
        let window = weekend();
        assert_eq!(window.active_at(at("2026-11-27T17:59:00Z")), None);
        let freeze = window
            .active_at(at("2026-11-27T18:00:00Z"))
            .expect("frozen");
        assert_eq!(freeze.until, at("2026-11-30T08:00:00Z"));
        assert!(window.active_at(at("2026-11-29T23:00:00Z")).is_some());
        assert_eq!(window.active_at(at("2026-11-30T08:00:00Z")), None);
        assert_eq!(
            freeze.describe(),
            "frozen until 2026-11-30 08:00 UTC: weekend"
        );
    }

    #[test]
    fn the_longest_freeze_wins_and_bad_schedules_are_named() {
        let always = FreezeWindow {
            start: "* * * * *".into(),
            duration_seconds: 3600,
            reason: "incident".into(),
        };
        let now = at("2026-11-28T12:00:00Z");
        let freeze = active(&[weekend(), always], now).expect("frozen");
        assert_eq!(freeze.reason, "weekend");
        let error = parse_schedule("every friday").expect_err("invalid");
        assert!(error.0.contains("\"every friday\""), "{error}");
    }
}
