//! Watching git: the pipeline repo is reconciled, every app repo fetched,
//! and each moved or deleted branch becomes one event in the inbox. Runs on
//! a timer (`pipeline.poll_interval`) and at once when the trigger endpoint
//! is called.

use crate::db::{self, inbox::BranchEvent, now_millis};
use crate::jobs::reconcile::{self, Outcome};
use crate::state::App;

/// One pass: reconcile the pipeline repo, then fetch every app.
pub async fn scan(app: &App, source: &str) -> Result<usize, super::FlowError> {
    let revalidate = app
        .flow
        .targets_changed
        .swap(false, std::sync::atomic::Ordering::SeqCst);
    let reconciled = if revalidate {
        reconcile::reapply(app).await
    } else {
        reconcile::reconcile(app).await
    };
    match reconciled {
        Ok(Outcome::Reconciled { issues, .. }) if !issues.is_empty() => {
            tracing::warn!(
                problems = issues.len(),
                "the pipeline repo has problems; see /api/v1/config"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot reconcile the pipeline repo"),
    }
    let mut events = 0;
    for app_row in db::apps::list_active(app.db.pool()).await? {
        match scan_app(app, &app_row, source).await {
            Ok(count) => events += count,
            Err(error) => tracing::warn!(app = %app_row.name, %error, "cannot scan the app repo"),
        }
    }
    if events > 0 {
        app.flow.plan_wake.notify_one();
    }
    Ok(events)
}

/// Fetches one app repo and records what moved. Returns the new events.
/// The inbox source of every branch change, whichever trigger found it (a
/// poll, the git trigger, a forge webhook): a change seen by two triggers
/// at once is stored, and run, once.
const GIT_SOURCE: &str = "git";

pub async fn scan_app(
    app: &App,
    app_row: &db::apps::AppRow,
    source: &str,
) -> Result<usize, super::FlowError> {
    let pool = app.db.pool();
    let heads = match app.git.fetch(&app_row.source_url).await {
        Ok(heads) => {
            db::apps::set_fetch_error(pool, app_row.id, None).await?;
            heads
        }
        Err(error) => {
            db::apps::set_fetch_error(pool, app_row.id, Some(&error.to_string())).await?;
            return Err(error.into());
        }
    };
    let now = now_millis();
    let mut tx = app.db.begin().await?;
    let known = db::branch_heads::list(&mut *tx, app_row.id).await?;
    let mut events = 0;
    for (branch, sha) in &heads {
        let before = known.get(branch);
        if before == Some(sha) {
            continue;
        }
        let event = BranchEvent {
            app_id: app_row.id,
            branch: branch.clone(),
            before: before.cloned(),
            after: Some(sha.clone()),
        };
        let delivery = format!("{}:{branch}:{sha}", app_row.id);
        let payload = serde_json::to_string(&event)?;
        if db::inbox::insert(&mut *tx, GIT_SOURCE, &delivery, "push", &payload, now)
            .await?
            .is_some()
        {
            events += 1;
        }
        db::branch_heads::set(&mut *tx, app_row.id, branch, sha, now).await?;
    }
    for (branch, sha) in &known {
        if heads.contains_key(branch) {
            continue;
        }
        let event = BranchEvent {
            app_id: app_row.id,
            branch: branch.clone(),
            before: Some(sha.clone()),
            after: None,
        };
        let delivery = format!("{}:{branch}:deleted:{sha}", app_row.id);
        let payload = serde_json::to_string(&event)?;
        if db::inbox::insert(
            &mut *tx,
            GIT_SOURCE,
            &delivery,
            "branch_deleted",
            &payload,
            now,
        )
        .await?
        .is_some()
        {
            events += 1;
        }
        db::branch_heads::delete(&mut *tx, app_row.id, branch).await?;
    }
    crate::db::commit(tx).await?;
    if events > 0 {
        tracing::debug!(app = %app_row.name, trigger = source, events, "branch changes stored");
        app.flow.plan_wake.notify_one();
    }
    Ok(events)
}
