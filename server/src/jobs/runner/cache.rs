//! A step's `cache:` around it (`builds::cache`): put back before the step,
//! kept after it succeeded, each saying so in the step's log. A fork's
//! build uses none; a cache that cannot be used or kept never fails the
//! step (it only makes it slower).

use crate::builds::cache::{CacheKey, Restored};
use crate::db::runs::RunRow;
use crate::gitops::schema::{AppConfig, BranchMatch, CommandStep};
use crate::runs::workspace::Workspace;
use crate::secrets::mask::Masker;
use crate::state::App;

/// The app's first branch: a new branch reads its caches until it has its
/// own.
fn first_branch(config: &AppConfig) -> Option<&str> {
    config.stack.iter().find_map(|entry| match &entry.branches {
        BranchMatch::Exact(branch) => Some(branch.as_str()),
        BranchMatch::Glob(_) => None,
    })
}

fn key(run: &RunRow, step: &CommandStep) -> CacheKey {
    CacheKey {
        app_id: run.app_id,
        branch: run.branch.clone(),
        step: step.name.clone(),
    }
}

fn size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Puts the step's caches back into the checkout.
pub async fn restore(
    app: &App,
    run: &RunRow,
    config: &AppConfig,
    step: &CommandStep,
    step_id: i64,
    workspace: &Workspace,
) -> Result<(), super::RunError> {
    if step.cache.is_empty() {
        return Ok(());
    }
    let mut sink = super::command::sink(app, run.id, step_id, &masker(app, run, step).await);
    if let Some(fork) = &run.from_fork {
        sink.note(&format!(
            "cache: not used: this build comes from the fork {fork}"
        ))
        .await?;
        return Ok(());
    }
    let caches = app.caches();
    let (paths, checkout, scratch) = (
        step.cache.clone(),
        workspace.app(),
        workspace.root.join("cache.restoring"),
    );
    let (key, first) = (key(run, step), first_branch(config).map(str::to_string));
    let restored = tokio::task::spawn_blocking(move || {
        caches.restore(&key, first.as_deref(), &paths, &checkout, &scratch)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e).into()));
    let note = match restored {
        Ok(Restored::From { branch, bytes }) => format!(
            "cache: {} restored from branch {branch} ({})",
            step.cache.join(", "),
            size(bytes)
        ),
        Ok(Restored::None) => format!("cache: none yet for {}", step.cache.join(", ")),
        Err(error) => format!("cache: not restored: {error}"),
    };
    // The run's own uid writes what came back, as the rest of the checkout.
    app.sandbox
        .hand_over(&workspace.app(), workspace.user_ids())
        .await?;
    sink.note(&note).await?;
    Ok(())
}

/// What the step's log masks: its secrets (a cache's paths are the app's).
async fn masker(app: &App, run: &RunRow, step: &CommandStep) -> Masker {
    if run.from_fork.is_some() {
        return Masker::default();
    }
    app.secrets()
        .masker_of(run.app_id, &step.secrets)
        .await
        .unwrap_or_default()
}

/// Keeps the step's caches after it succeeded.
pub async fn save(
    app: &App,
    run: &RunRow,
    step: &CommandStep,
    step_id: i64,
    workspace: &Workspace,
) -> Result<(), super::RunError> {
    if step.cache.is_empty() || run.from_fork.is_some() {
        return Ok(());
    }
    let caches = app.caches();
    let (paths, checkout) = (step.cache.clone(), workspace.app());
    let key = key(run, step);
    let saved = tokio::task::spawn_blocking(move || caches.save(&key, &paths, &checkout))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e).into()));
    let note = match saved {
        Ok(bytes) => format!(
            "cache: {} kept for branch {} ({})",
            step.cache.join(", "),
            run.branch,
            size(bytes)
        ),
        Err(error) => format!("cache: not kept: {error}"),
    };
    super::command::sink(app, run.id, step_id, &masker(app, run, step).await)
        .note(&note)
        .await?;
    Ok(())
}
