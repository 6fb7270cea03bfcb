//! Sends a run's feedback to its forge in the background, so a forge that
//! is slow or down never holds a run: commit statuses in the order they
//! were decided, and the change request's comment, retried.

use std::sync::Arc;
use std::time::Duration;

use crate::forge::api::StatusState;
use crate::forge::feedback::{ATTEMPTS, send_status, update_comment};
use crate::state::App;

/// A status for the run (`step: None`) or one of its steps. Sent in the
/// background, after the run's earlier statuses: a forge shows the last
/// status it got for a context, so a step's `pending` must not overtake its
/// `success`.
pub fn status(
    app: &Arc<App>,
    run_id: i64,
    step: Option<String>,
    state: StatusState,
    description: String,
) {
    let app = app.clone();
    let mut turn = app.replica.forge_statuses.take_turn(run_id);
    tokio::spawn(async move {
        turn.wait().await;
        send_status(&app.delivery(), run_id, step, state, description).await;
        app.replica.forge_statuses.finish(turn);
    });
}

/// Brings the request's comment up to date with run `run_id`.
pub fn comment(app: &Arc<App>, run_id: i64) {
    let app = app.clone();
    tokio::spawn(async move {
        // The forge calls retry inside; this covers the database (a busy
        // moment) and a forge down for longer, so the comment does not stay
        // stale.
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(2 << attempt)).await;
            }
            match update_comment(&app.delivery(), &app.replica.forge_comments, run_id).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(run = run_id, attempt, %error, "change-request comment not updated");
                }
            }
        }
    });
}
