//! What an app's page charts: how long its recent runs took, and how many
//! deploys each stack entry had per day. Two bounded queries per page (the
//! newest runs by the app's index, the deploys of the last fortnight); the
//! pictures are drawn by the dashboard, server-side.

use std::collections::BTreeMap;

use app::dto::{AppCharts, CHARTED_DAYS, CHARTED_RUNS, DeploySeries, RunDuration};

use crate::db::{self, Db, QueryError};

const DAY_MILLIS: i64 = 86_400_000;

/// The charts of app `app_id`, the days ending with the one holding `now`.
pub async fn of_app(db: &Db, app_id: i64, now: i64) -> Result<AppCharts, QueryError> {
    let pool = db.pool();
    let mut durations: Vec<RunDuration> = db::runs::durations_of_app(pool, app_id, CHARTED_RUNS)
        .await?
        .into_iter()
        .map(|(id, created, started, finished, state)| RunDuration {
            id,
            at: created,
            millis: (finished - started.unwrap_or(created)).max(0),
            state,
        })
        .collect();
    durations.reverse();
    let today = now.div_euclid(DAY_MILLIS) * DAY_MILLIS;
    let first = today - (CHARTED_DAYS - 1) * DAY_MILLIS;
    let days: Vec<i64> = (0..CHARTED_DAYS).map(|n| first + n * DAY_MILLIS).collect();
    // Per stack entry (in name order), a count per day.
    let mut counts: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (entry, at) in db::deployments::started_since_of_app(pool, app_id, first).await? {
        let Ok(day) = usize::try_from((at - first).div_euclid(DAY_MILLIS)) else {
            continue;
        };
        if day >= days.len() {
            continue; // a clock ahead of ours: not a day we chart
        }
        counts.entry(entry).or_insert_with(|| vec![0; days.len()])[day] += 1;
    }
    let deploys = counts
        .into_iter()
        .map(|(entry, counts)| DeploySeries { entry, counts })
        .collect();
    Ok(AppCharts {
        durations,
        days,
        deploys,
    })
}
