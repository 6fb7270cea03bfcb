//! When a release becomes stable: its run's verification steps passed and
//! every target stayed healthy for the soak time of its stack entry
//! (`stable_after`, default 10 minutes) — or an admin says so (audited).
//! A rollback goes to the newest stable release, so "stable" must mean
//! "known good", never merely "deployed".

use std::time::Duration;

use app::dto::{EnvironmentState, ReleaseSummary, Role, RunState, SoakProgress};
use app::port::Caller;

use super::LedgerError;
use crate::db;
use crate::delivery::Delivery;
use crate::gitops::schema::{AppConfig, DEFAULT_STABLE_AFTER};

/// How often live releases are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// One pass over every live release; returns how many became stable. A
/// release that cannot be judged now (a busy database) does not hold up
/// the others.
pub async fn check(app: &Delivery<'_>) -> Result<usize, LedgerError> {
    let mut promoted = 0;
    // A stable release that stops being healthy starts its healthy stretch
    // again when it recovers: promotion counts only time it was healthy.
    for release in db::releases::list_serving_stable(app.db.pool()).await? {
        if let Err(error) = follow_health(app, &release, app.clock.now_millis()).await {
            tracing::warn!(release = release.id, %error, "health not followed");
        }
    }
    for release in db::releases::list_live(app.db.pool()).await? {
        match judge(app, &release, app.clock.now_millis()).await {
            Ok(true) => promoted += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(release = release.id, %error, "stability not judged"),
        }
    }
    Ok(promoted)
}

/// Keeps a serving stable release's `healthy_since` true to its health.
async fn follow_health(
    app: &Delivery<'_>,
    release: &db::releases::LiveRow,
    now: i64,
) -> Result<(), LedgerError> {
    let pool = app.db.pool();
    let Some(env) = db::environments::get(pool, release.environment_id).await? else {
        return Ok(());
    };
    let healthy = env.state == EnvironmentState::Live;
    match (healthy, release.healthy_since) {
        (false, Some(_)) => db::releases::set_healthy_since(pool, release.id, None).await?,
        (true, None) => db::releases::set_healthy_since(pool, release.id, Some(now)).await?,
        _ => {}
    }
    Ok(())
}

/// Moves one live release's soak on; true when it became stable.
async fn judge(
    app: &Delivery<'_>,
    release: &db::releases::LiveRow,
    now: i64,
) -> Result<bool, LedgerError> {
    let pool = app.db.pool();
    let Some(env) = db::environments::get(pool, release.environment_id).await? else {
        return Ok(false);
    };
    let healthy =
        env.deployment_id == Some(release.deployment_id) && env.state == EnvironmentState::Live;
    if !healthy {
        if release.healthy_since.is_some() {
            db::releases::set_healthy_since(pool, release.id, None).await?;
        }
        return Ok(false);
    }
    let Some(since) = release.healthy_since else {
        db::releases::set_healthy_since(pool, release.id, Some(now)).await?;
        return Ok(false);
    };
    if !verified(app, release.run_id).await? {
        return Ok(false);
    }
    let soak = soak_of(app, release.app_id, &env.stack_entry).await?;
    let stable = now - since >= i64::try_from(soak.as_millis()).unwrap_or(i64::MAX)
        && db::releases::mark_stable(pool, release.id, "gantry", now).await?;
    if stable {
        tracing::info!(release = release.id, "release is stable");
    }
    Ok(stable)
}

/// How far a live release is through its soak (`None`: it is not live).
pub async fn progress(
    app: &Delivery<'_>,
    release_id: i64,
) -> Result<Option<SoakProgress>, LedgerError> {
    let pool = app.db.pool();
    let Some(release) = db::releases::live_row(pool, release_id).await? else {
        return Ok(None);
    };
    let Some(env) = db::environments::get(pool, release.environment_id).await? else {
        return Ok(None);
    };
    let soak = soak_of(app, release.app_id, &env.stack_entry).await?;
    Ok(Some(SoakProgress {
        healthy_since: release.healthy_since,
        soak_millis: i64::try_from(soak.as_millis()).unwrap_or(i64::MAX),
    }))
}

/// The run's steps after the deploy (smoke tests, ...) all passed. A
/// rollback has no run: it re-applies a release that was verified before.
async fn verified(app: &Delivery<'_>, run_id: Option<i64>) -> Result<bool, crate::db::QueryError> {
    let Some(run_id) = run_id else {
        return Ok(true);
    };
    Ok(db::runs::get(app.db.pool(), run_id)
        .await?
        .is_some_and(|run| run.state == RunState::Succeeded))
}

async fn soak_of(
    app: &Delivery<'_>,
    app_id: i64,
    stack_entry: &str,
) -> Result<Duration, LedgerError> {
    let Some(row) = db::apps::get(app.db.pool(), app_id).await? else {
        return Ok(DEFAULT_STABLE_AFTER);
    };
    let config: AppConfig =
        crate::configs::stored(&row).map_err(|e| LedgerError::Config(e.to_string()))?;
    Ok(config
        .stack
        .iter()
        .find(|entry| entry.env == stack_entry)
        .map(|entry| Duration::from_secs(entry.stable_after_seconds))
        .unwrap_or(DEFAULT_STABLE_AFTER))
}

/// An admin vouches for a live release before its soak ends.
pub async fn mark(
    app: &Delivery<'_>,
    caller: &Caller,
    release_id: i64,
    reason: Option<&str>,
) -> Result<ReleaseSummary, LedgerError> {
    // Refuse before looking: others cannot probe which releases exist.
    if !caller.me.can_anywhere(Role::Admin) {
        return Err(LedgerError::Forbidden(format!(
            "marking a release stable needs the admin role; {} does not have it",
            caller.me.name
        )));
    }
    let mut conn = app.db.acquire().await?;
    let release = db::releases::get(&mut conn, release_id)
        .await?
        .ok_or_else(|| LedgerError::NotFound(format!("release {release_id} does not exist")))?;
    caller
        .require(Role::Admin, Some(&release.app))
        .map_err(|e| LedgerError::Forbidden(e.to_string()))?;
    let now = app.clock.now_millis();
    if !db::releases::mark_stable(&mut *conn, release_id, &caller.me.name, now).await? {
        return Err(LedgerError::Conflict(format!(
            "release {release_id} is {}; only a live release can be marked stable",
            release.state
        )));
    }
    crate::audit::record(
        app.db,
        caller,
        "release.mark_stable",
        &format!("release:{release_id}"),
        reason,
    )
    .await?;
    db::releases::get(&mut conn, release_id)
        .await?
        .ok_or_else(|| LedgerError::NotFound(format!("release {release_id} does not exist")))
}
