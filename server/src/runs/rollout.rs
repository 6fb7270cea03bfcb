//! An admin's word to a run's canary: `promote` (past a `pause: {}`, or
//! on from a pause), `pause` (hold the current weight) or `abort` (traffic
//! back to stable at once). The run's deploy step reads
//! it; audited here, whichever surface asked.

use app::dto::{Role, RunState};
use app::port::Caller;

use crate::db::{self, Db};
use crate::error::{Classified, Kind};

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0:?} is not a rollout action: use promote, pause or abort")]
    Invalid(String),
    #[error("run {id} is {state}: only a running run's canary takes an action")]
    NotRunning { id: i64, state: RunState },
    #[error("run {0} has no canary under way")]
    NoCanary(i64),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for RolloutError {
    fn kind(&self) -> Kind {
        match self {
            RolloutError::NotFound(_) => Kind::NotFound,
            RolloutError::Forbidden(_) => Kind::Forbidden,
            RolloutError::Invalid(_) => Kind::Invalid,
            RolloutError::NotRunning { .. } | RolloutError::NoCanary(_) => Kind::Conflict,
            RolloutError::Db(error) => error.kind(),
        }
    }
}

/// Tells run `id`'s canary to `action` (`promote` or `abort`), for an
/// admin of its app.
pub async fn command(db: &Db, caller: &Caller, id: i64, action: &str) -> Result<(), RolloutError> {
    let pool = db.pool();
    let run = db::runs::get(pool, id)
        .await?
        .ok_or(RolloutError::NotFound(id))?;
    let app_name = db::apps::get(pool, run.app_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    if !caller.me.can(Role::Viewer, Some(&app_name)) {
        return Err(RolloutError::NotFound(id));
    }
    caller
        .require(Role::Admin, Some(&app_name))
        .map_err(|refused| RolloutError::Forbidden(refused.to_string()))?;
    if !["promote", "pause", "abort"].contains(&action) {
        return Err(RolloutError::Invalid(action.to_string()));
    }
    if run.state != RunState::Running {
        return Err(RolloutError::NotRunning {
            id,
            state: run.state,
        });
    }
    // Only a canary under way takes a word: one given before it starts (or
    // after it ended) would be lost, or kept for a step it was not meant for.
    let phase = db::runs::rollout_state(pool, id)
        .await?
        .and_then(|json| serde_json::from_str::<app::dto::RolloutView>(&json).ok())
        .map(|view| view.phase);
    if !matches!(phase.as_deref(), Some("running" | "paused" | "waiting")) {
        return Err(RolloutError::NoCanary(id));
    }
    db::runs::set_rollout_command(pool, id, Some(action)).await?;
    crate::audit::record(
        db,
        caller,
        &format!("run.rollout.{action}"),
        &format!("{app_name} run {id}"),
        None,
    )
    .await?;
    Ok(())
}
