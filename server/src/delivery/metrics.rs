//! Delivery metrics from the release ledger, following dora.dev's current
//! definitions (deployment frequency, change lead time, change fail rate,
//! failed-deployment recovery time, deployment rework rate), per app and
//! environment. [`compute`] is pure; [`for_range`] reads the ledger.
//!
//! What counts, precisely (the user guide says the same):
//! - a **deployment** is a release (not a rollback) that went live;
//! - its **lead time** runs from the oldest commit it brought (its
//!   changelog) to when it went live;
//! - it **failed** if it was rolled back, aborted, or the next deployment,
//!   within the fix window, brought a fix (a commit whose subject starts
//!   with `fix`, `fixes`, `fixed`, `hotfix` or `revert`);
//! - a failed deployment **recovered** when what replaced it went live;
//! - **rework** is a rollback, or a deployment that brought a fix right
//!   after another (within the window, or after one that was rolled back).

use std::collections::BTreeMap;

use app::dto::{ChangelogCommit, DeliveryDay, DeliveryMetrics, ReleaseKind, ReleaseState};

use crate::db::{self, Db};

/// A fix this long after a deployment marks it failed, by default.
pub const FIX_WINDOW_MILLIS: i64 = 24 * 3_600_000;
/// How far back the metrics look, by default and at most.
pub const DEFAULT_DAYS: u32 = 30;
pub const MAX_DAYS: u32 = 365;

const DAY: i64 = 86_400_000;

/// One ledger entry as the metrics see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub id: i64,
    pub kind: ReleaseKind,
    pub state: ReleaseState,
    /// When it went live; `None`: it never did (failed, deploying).
    pub live_at: Option<i64>,
    /// The oldest commit it brought.
    pub first_commit_at: Option<i64>,
    /// It brought a fix.
    pub fixes: bool,
    /// For a rollback: the entry it replaced.
    pub rollback_of: Option<i64>,
}

impl Fact {
    /// Reads one entry: its changelog gives the first commit and whether
    /// it fixes something.
    pub fn of(
        (id, kind, state): (i64, ReleaseKind, ReleaseState),
        live_at: Option<i64>,
        rollback_of: Option<i64>,
        changelog: &[ChangelogCommit],
    ) -> Fact {
        let went_live = matches!(
            state,
            ReleaseState::Live
                | ReleaseState::Stable
                | ReleaseState::Superseded
                | ReleaseState::RolledBack
                | ReleaseState::Aborted
        );
        Fact {
            id,
            kind,
            state,
            live_at: live_at.filter(|_| went_live),
            first_commit_at: changelog.iter().map(|c| c.time).min(),
            fixes: changelog.iter().any(|c| is_fix(&c.summary)),
            rollback_of,
        }
    }
}

/// A commit subject that says it fixes something: its first word is
/// `fix`, `fixes`, `fixed`, `hotfix` or `revert` (any case; `fix(cart):`
/// and `Revert "…"` count).
pub fn is_fix(subject: &str) -> bool {
    let word: String = subject
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "fix" | "fixes" | "fixed" | "hotfix" | "revert"
    )
}

/// The value at `quantile` (0..=1) of `values` by the nearest rank.
fn quantile(values: &mut [i64], quantile: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (quantile * values.len() as f64).ceil().max(1.0) as usize;
    Some(values[rank.min(values.len()) - 1])
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The metrics of one app's environment over `[from, to)` from its ledger
/// `facts` (any order; entries before `from` give context: the deployment a
/// fix in range follows).
pub fn compute(
    (app, environment): (&str, &str),
    facts: &[Fact],
    (from, to): (i64, i64),
    fix_window: i64,
) -> DeliveryMetrics {
    let mut live: Vec<&Fact> = facts.iter().filter(|f| f.live_at.is_some()).collect();
    live.sort_by_key(|f| (f.live_at, f.id));
    let at = |f: &Fact| f.live_at.unwrap_or_default();
    let in_range = |f: &Fact| (from..to).contains(&at(f));
    let releases: Vec<&Fact> = live
        .iter()
        .copied()
        .filter(|f| f.kind == ReleaseKind::Release)
        .collect();
    let rolled_back = |f: &Fact| {
        matches!(f.state, ReleaseState::RolledBack | ReleaseState::Aborted)
            || live
                .iter()
                .any(|r| r.kind == ReleaseKind::Rollback && r.rollback_of == Some(f.id))
    };
    // The release after each, and whether it came soon and brought a fix.
    let next_release = |f: &Fact| {
        releases
            .iter()
            .copied()
            .find(|n| at(n) > at(f) || (at(n) == at(f) && n.id > f.id))
    };
    let previous_release = |f: &Fact| {
        releases
            .iter()
            .copied()
            .rfind(|p| at(p) < at(f) || (at(p) == at(f) && p.id < f.id))
    };
    let failed = |f: &Fact| {
        rolled_back(f) || next_release(f).is_some_and(|n| n.fixes && at(n) - at(f) <= fix_window)
    };
    let rework = |f: &Fact| match f.kind {
        ReleaseKind::Rollback => true,
        ReleaseKind::Release => {
            f.fixes
                && previous_release(f)
                    .is_some_and(|p| at(f) - at(p) <= fix_window || rolled_back(p))
        }
    };

    let deployments: Vec<&Fact> = releases.iter().copied().filter(|f| in_range(f)).collect();
    let mut leads: Vec<i64> = deployments
        .iter()
        .filter_map(|f| {
            f.first_commit_at
                .map(|first| at(f).saturating_sub(first).max(0))
        })
        .collect();
    let failures: Vec<&Fact> = deployments.iter().copied().filter(|f| failed(f)).collect();
    let mut recoveries = Vec::new();
    let mut unrecovered = 0;
    for f in &failures {
        // What replaced it: the next entry of the environment that went
        // live, a rollback or a release.
        match live
            .iter()
            .find(|n| at(n) > at(f) || (at(n) == at(f) && n.id > f.id))
        {
            Some(next) => recoveries.push(at(next) - at(f)),
            None => unrecovered += 1,
        }
    }
    let all_in_range: Vec<&Fact> = live.iter().copied().filter(|f| in_range(f)).collect();
    let reworked = all_in_range.iter().filter(|f| rework(f)).count() as i64;

    let first_day = from.div_euclid(DAY) * DAY;
    let mut days: BTreeMap<i64, DeliveryDay> = BTreeMap::new();
    let mut day = first_day;
    while day < to {
        days.insert(
            day,
            DeliveryDay {
                start: day,
                deployments: 0,
                failed: 0,
                rework: 0,
            },
        );
        day += DAY;
    }
    for f in &all_in_range {
        if let Some(bucket) = days.get_mut(&(at(f).div_euclid(DAY) * DAY)) {
            if f.kind == ReleaseKind::Release {
                bucket.deployments += 1;
                if failed(f) {
                    bucket.failed += 1;
                }
            }
            if rework(f) {
                bucket.rework += 1;
            }
        }
    }
    let count = deployments.len() as i64;
    let span_days = ((to - from) as f64 / DAY as f64).max(1.0 / 24.0);
    DeliveryMetrics {
        app: app.to_string(),
        environment: environment.to_string(),
        from,
        to,
        deployments: count,
        per_day: count as f64 / span_days,
        lead_time_p50_millis: quantile(&mut leads, 0.5),
        lead_time_p90_millis: quantile(&mut leads, 0.9),
        failed: failures.len() as i64,
        change_fail_rate: ratio(failures.len() as i64, count),
        recovery_p50_millis: quantile(&mut recoveries, 0.5),
        unrecovered,
        rework: reworked,
        rework_rate: ratio(reworked, all_in_range.len() as i64),
        fix_window_millis: fix_window,
        days: days.into_values().collect(),
    }
}

/// Which apps a caller may see, by name.
pub type Visible<'a> = dyn Fn(&str) -> bool + Sync + 'a;

/// The metrics of every app's `environment` (or just `app`'s) over the
/// last `days` days up to `now`: one entry per app with an entry in the
/// ledger there that `visible` lets through (nothing is computed for the
/// others), by app name.
pub async fn for_range(
    db: &Db,
    (app, visible): (Option<&str>, &Visible<'_>),
    environment: &str,
    days: u32,
    now: i64,
) -> Result<Vec<DeliveryMetrics>, crate::db::QueryError> {
    let days = days.clamp(1, MAX_DAYS);
    let from = now - i64::from(days) * DAY;
    // Entries before the range give context (what a fix follows).
    let rows = db::releases::facts(db.pool(), app, environment, from - FIX_WINDOW_MILLIS).await?;
    let mut by_app: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
    for row in rows.into_iter().filter(|row| visible(&row.app)) {
        let fact = Fact::of(
            (row.id, row.kind, row.state),
            row.finished_at,
            row.rollback_of,
            &row.changelog,
        );
        by_app.entry(row.app).or_default().push(fact);
    }
    Ok(by_app
        .iter()
        .map(|(name, facts)| compute((name, environment), facts, (from, now), FIX_WINDOW_MILLIS))
        .collect())
}

/// How often `/metrics` reads the ledger again at most: a scrape between
/// two reads shows the last figures.
pub const EXPORT_EVERY_MILLIS: i64 = 60_000;

/// Sets the `gantry_delivery_*` gauges of `/metrics`: each app's
/// production over the last 30 days, read at most once a minute (`last`:
/// when it was read; a scrape loop cannot make Gantry read the ledger over
/// and over).
pub async fn export(
    db: &Db,
    last_export: &std::sync::atomic::AtomicI64,
    now: i64,
) -> Result<(), crate::db::QueryError> {
    let last = last_export.load(std::sync::atomic::Ordering::Relaxed);
    if now.saturating_sub(last) < EXPORT_EVERY_MILLIS
        || last_export
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_err()
    {
        return Ok(());
    }
    for m in for_range(db, (None, &|_| true), "production", DEFAULT_DAYS, now).await? {
        let seconds = |millis: Option<i64>| millis.map_or(f64::NAN, |m| m as f64 / 1000.0);
        let figures = [
            ("gantry_delivery_deployments", m.deployments as f64),
            ("gantry_delivery_deployments_per_day", m.per_day),
            (
                "gantry_delivery_lead_time_p50_seconds",
                seconds(m.lead_time_p50_millis),
            ),
            (
                "gantry_delivery_change_fail_rate",
                m.change_fail_rate.unwrap_or(f64::NAN),
            ),
            (
                "gantry_delivery_recovery_time_p50_seconds",
                seconds(m.recovery_p50_millis),
            ),
            (
                "gantry_delivery_rework_rate",
                m.rework_rate.unwrap_or(f64::NAN),
            ),
        ];
        for (name, value) in figures {
            metrics::gauge!(name, "app" => m.app.clone(), "environment" => m.environment.clone())
                .set(value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// Midnight UTC, 2026-12-01.
    const T0: i64 = 1_796_083_200_000;

    fn release(id: i64, live_hours: i64, first_commit_hours: i64, fixes: bool) -> Fact {
        Fact {
            id,
            kind: ReleaseKind::Release,
            state: ReleaseState::Superseded,
            live_at: Some(T0 + live_hours * HOUR),
            first_commit_at: Some(T0 + first_commit_hours * HOUR),
            fixes,
            rollback_of: None,
        }
    }

    /// A ledger of ten days, by hand:
    /// 1 (day 0, 10h, commits from 8h) fine;
    /// 2 (day 1, 30h, from 20h) rolled back by 3 at 31h;
    /// 4 (day 2, 50h, from 40h) a fix after 2 → rework, fine itself;
    /// 5 (day 3, 80h, from 79h) followed by fix 6 at 82h → failed;
    /// 6 (82h, from 81h) fixes 5 → rework;
    /// 7 (day 5, 130h, from 100h) followed by fix 8 at 160h, past the
    ///   window → fine; 8 is no rework either;
    /// 9 failed to deploy: not counted; 10 (day 9, 225h, from 224h) still
    ///   live, fine.
    fn ledger() -> Vec<Fact> {
        let mut rolled_back = release(2, 30, 20, false);
        rolled_back.state = ReleaseState::RolledBack;
        let rollback = Fact {
            id: 3,
            kind: ReleaseKind::Rollback,
            state: ReleaseState::Superseded,
            live_at: Some(T0 + 31 * HOUR),
            first_commit_at: None,
            fixes: false,
            rollback_of: Some(2),
        };
        let never = Fact {
            live_at: None,
            state: ReleaseState::Failed,
            ..release(9, 200, 199, false)
        };
        let mut current = release(10, 225, 224, false);
        current.state = ReleaseState::Live;
        vec![
            release(1, 10, 8, false),
            rolled_back,
            rollback,
            release(4, 50, 40, true),
            release(5, 80, 79, false),
            release(6, 82, 81, true),
            release(7, 130, 100, false),
            release(8, 160, 159, true),
            never,
            current,
        ]
    }

    #[test]
    fn a_seeded_ledger_gives_the_figures_worked_out_by_hand() {
        let m = compute(
            ("shop", "production"),
            &ledger(),
            (T0, T0 + 10 * 24 * HOUR),
            FIX_WINDOW_MILLIS,
        );
        // Releases that went live: 1, 2, 4, 5, 6, 7, 8, 10.
        assert_eq!(m.deployments, 8);
        assert!((m.per_day - 0.8).abs() < 1e-9, "{}", m.per_day);
        // Lead times (h): 2, 10, 10, 1, 1, 30, 1, 1 → sorted 1,1,1,1,2,10,10,30:
        // the median by nearest rank is the 4th (1 h), the 90th the 8th (30 h).
        assert_eq!(m.lead_time_p50_millis, Some(HOUR));
        assert_eq!(m.lead_time_p90_millis, Some(30 * HOUR));
        // Failed: 2 (rolled back) and 5 (fixed within the window).
        assert_eq!(m.failed, 2);
        assert_eq!(m.change_fail_rate, Some(0.25));
        // Recovery: 2 → 3 after 1 h; 5 → 6 after 2 h: median 1 h.
        assert_eq!(m.recovery_p50_millis, Some(HOUR));
        assert_eq!(m.unrecovered, 0);
        // Rework: the rollback 3, fix 4 (after the rolled-back 2) and fix 6,
        // of 9 entries that went live (8 releases + 1 rollback).
        assert_eq!(m.rework, 3);
        assert_eq!(m.rework_rate, Some(3.0 / 9.0));
        // Day by day.
        assert_eq!(m.days.len(), 10);
        let per_day: Vec<(i64, i64, i64)> = m
            .days
            .iter()
            .map(|d| (d.deployments, d.failed, d.rework))
            .collect();
        assert_eq!(
            per_day,
            [
                (1, 0, 0),
                (1, 1, 1),
                (1, 0, 1),
                (2, 1, 1),
                (0, 0, 0),
                (1, 0, 0),
                (1, 0, 0),
                (0, 0, 0),
                (0, 0, 0),
                (1, 0, 0)
            ]
        );
        assert_eq!(m.days[0].start, T0);
    }

    #[test]
    fn a_range_counts_only_its_own_deployments_with_earlier_ones_as_context() {
        // Days 3 and 4 only: 5 and 6. 6 fixes 5, which is failed; 6 is
        // rework; recovery 2 h.
        let m = compute(
            ("shop", "production"),
            &ledger(),
            (T0 + 72 * HOUR, T0 + 120 * HOUR),
            FIX_WINDOW_MILLIS,
        );
        assert_eq!((m.deployments, m.failed, m.rework), (2, 1, 1));
        assert_eq!(m.recovery_p50_millis, Some(2 * HOUR));
        // Nothing deployed: no rate, rather than a made-up zero.
        let empty = compute(
            ("shop", "production"),
            &ledger(),
            (T0 + 170 * HOUR, T0 + 220 * HOUR),
            FIX_WINDOW_MILLIS,
        );
        assert_eq!(empty.deployments, 0);
        assert_eq!(empty.change_fail_rate, None);
        assert_eq!(empty.lead_time_p50_millis, None);
    }

    #[test]
    fn a_failed_deployment_nothing_replaced_is_unrecovered() {
        let mut facts = ledger();
        facts.push(Fact {
            id: 11,
            kind: ReleaseKind::Rollback,
            ..release(11, 226, 0, false)
        });
        facts[9].state = ReleaseState::RolledBack;
        facts.push(release(12, 228, 227, false));
        let m = compute(
            ("shop", "production"),
            &facts,
            (T0 + 220 * HOUR, T0 + 240 * HOUR),
            FIX_WINDOW_MILLIS,
        );
        // 10 rolled back by 11 after 1 h: recovered.
        assert_eq!((m.failed, m.unrecovered), (1, 0));
        assert_eq!(m.recovery_p50_millis, Some(HOUR));
        let mut alone = vec![release(1, 10, 8, false), release(2, 12, 11, true)];
        alone[1].state = ReleaseState::RolledBack;
        let m = compute(
            ("shop", "production"),
            &alone,
            (T0, T0 + 24 * HOUR),
            FIX_WINDOW_MILLIS,
        );
        assert_eq!(
            (m.failed, m.unrecovered),
            (2, 1),
            "1 fixed by 2; 2 rolled back by nothing yet"
        );
    }

    #[test]
    fn fixes_are_read_from_the_first_word_of_a_subject() {
        for fix in [
            "fix: cart",
            "Fix the cart",
            "fix(cart): totals",
            "Fixes #12",
            "hotfix for prices",
            "Revert \"Show prices\"",
            "  fixed typo",
        ] {
            assert!(is_fix(fix), "{fix:?}");
        }
        for other in [
            "prefix the cart",
            "Add a fixture",
            "Merge branch 'fix'",
            "",
            "refix",
        ] {
            assert!(!is_fix(other), "{other:?}");
        }
    }
}
