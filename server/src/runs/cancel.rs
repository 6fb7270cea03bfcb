//! Stopping a run on an admin's word: a queued or held run ends at once; a
//! running one is asked to stop (its step is killed, the run ends
//! `cancelled`). Audited here, whichever surface asked.

use app::dto::{Role, RunState};
use app::port::Caller;

use crate::db::{self, Db};
use crate::error::{Classified, Kind};

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Forbidden(String),
    #[error("run {id} is {state} and cannot be cancelled")]
    Finished { id: i64, state: RunState },
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for CancelError {
    fn kind(&self) -> Kind {
        match self {
            CancelError::NotFound(_) => Kind::NotFound,
            CancelError::Forbidden(_) => Kind::Forbidden,
            CancelError::Finished { .. } => Kind::Conflict,
            CancelError::Db(error) => error.kind(),
        }
    }
}

/// What a cancel did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// The run had not started: it is cancelled now.
    Now,
    /// The run is running: its runner stops it shortly.
    Requested,
}

/// Cancels run `id` for an admin of its app.
pub async fn cancel(db: &Db, caller: &Caller, id: i64) -> Result<Cancelled, CancelError> {
    let pool = db.pool();
    let run = db::runs::get(pool, id)
        .await?
        .ok_or(CancelError::NotFound(id))?;
    let app_name = db::apps::get(pool, run.app_id)
        .await?
        .map(|a| a.name)
        .unwrap_or_default();
    caller
        .require(Role::Admin, Some(&app_name))
        .map_err(|refused| CancelError::Forbidden(refused.to_string()))?;
    let outcome = match run.state {
        RunState::Running => {
            db::runs::request_cancel(pool, id).await?;
            Cancelled::Requested
        }
        RunState::Queued | RunState::WaitingForApproval => {
            db::runs::finish(
                pool,
                id,
                RunState::Cancelled,
                Some("cancelled"),
                db::now_millis(),
            )
            .await?;
            Cancelled::Now
        }
        _ => {
            return Err(CancelError::Finished {
                id,
                state: run.state,
            });
        }
    };
    crate::audit::record(
        db,
        caller,
        "run.cancel",
        &format!("{app_name} run {id}"),
        None,
    )
    .await?;
    Ok(outcome)
}
