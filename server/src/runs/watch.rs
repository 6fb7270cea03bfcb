//! Watching a run: a new viewer gets the stored log (and each step's and
//! the run's state) first, then the live events it has not seen. Viewers
//! that reconnect get the whole log again and skip the chunks
//! (`step_id`, `seq`) they have.

use app::dto::Role;
use app::port::Caller;
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::logs::{RunEvent, RunEvents};
use crate::db::{self, Db};
use crate::error::{Classified, Kind};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Forbidden(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl Classified for WatchError {
    fn kind(&self) -> Kind {
        match self {
            WatchError::NotFound(_) => Kind::NotFound,
            WatchError::Forbidden(_) => Kind::Forbidden,
            WatchError::Db(error) => error.kind(),
        }
    }
}

/// Run `id`'s events for the caller (logs need the developer role on its
/// app, as a step's log does).
pub async fn watch(
    db: &Db,
    events: &RunEvents,
    caller: &Caller,
    id: i64,
) -> Result<impl Stream<Item = RunEvent> + use<>, WatchError> {
    let pool = db.pool();
    let (run, _) = db::runs::detail(pool, id)
        .await?
        .ok_or(WatchError::NotFound(id))?;
    caller
        .require(Role::Developer, Some(&run.app))
        .map_err(|refused| WatchError::Forbidden(refused.to_string()))?;
    // Subscribe before reading the stored log, so nothing falls between.
    let live = BroadcastStream::new(events.subscribe(id));
    let mut replay = Vec::new();
    let mut seen = Vec::new();
    for step in db::steps::list(pool, id).await? {
        let chunks = db::steps::log_chunks(pool, step.id, 0).await?;
        let last = chunks.last().map(|(seq, _)| *seq).unwrap_or(0);
        seen.push((step.id, last));
        for (seq, text) in chunks {
            replay.push(RunEvent::Log {
                step_id: step.id,
                seq,
                text,
            });
        }
        replay.push(RunEvent::Step {
            step_id: step.id,
            state: step.state.as_str().into(),
        });
    }
    // Read after the steps: a run that ended meanwhile says so.
    let state = db::runs::detail(pool, id)
        .await?
        .map_or(run.state, |(run, _)| run.state);
    replay.push(RunEvent::Run {
        state: state.as_str().into(),
    });
    let live = live.filter_map(move |event| {
        let keep = match &event {
            Ok(RunEvent::Log { step_id, seq, .. }) => {
                !seen.iter().any(|(s, last)| s == step_id && seq <= last)
            }
            Ok(_) => true,
            // A viewer that fell behind misses events; it can reload.
            Err(_) => false,
        };
        std::future::ready(if keep { event.ok() } else { None })
    });
    Ok(stream::iter(replay).chain(live))
}
