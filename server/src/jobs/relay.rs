//! Shared live updates between replicas on one PostgreSQL database: what a
//! runner tells its run's viewers, and each loop wake-up, is published
//! with `NOTIFY` and every other replica passes it on to its own viewers
//! and loops (`LISTEN`). A notice carries no data beyond ids and states: a
//! log chunk is read from the database it was stored in first. A replica
//! that misses notices (its connection dropped) still converges: pages
//! follow the indexed watermarks (`changes`), loops their own ticks, and a
//! reconnecting log viewer gets the stored log. SQLite has one process:
//! nothing to relay.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::config::DatabaseTarget;
use crate::db;
use crate::runs::logs::RunEvent;
use crate::state::App;

const CHANNEL: &str = "gantry_relay";

/// One notice, as JSON (well under `NOTIFY`'s 8000-byte limit).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Notice {
    Wake {
        origin: String,
        name: String,
    },
    Log {
        origin: String,
        run: i64,
        step_id: i64,
        seq: i64,
    },
    Step {
        origin: String,
        run: i64,
        step_id: i64,
        state: String,
    },
    Run {
        origin: String,
        run: i64,
        state: String,
    },
}

impl Notice {
    fn origin(&self) -> &str {
        match self {
            Notice::Wake { origin, .. }
            | Notice::Log { origin, .. }
            | Notice::Step { origin, .. }
            | Notice::Run { origin, .. } => origin,
        }
    }

    fn of_event(origin: &str, run: i64, event: &RunEvent) -> Notice {
        let origin = origin.to_string();
        match event {
            RunEvent::Log { step_id, seq, .. } => Notice::Log {
                origin,
                run,
                step_id: *step_id,
                seq: *seq,
            },
            RunEvent::Step { step_id, state } => Notice::Step {
                origin,
                run,
                step_id: *step_id,
                state: state.clone(),
            },
            RunEvent::Run { state } => Notice::Run {
                origin,
                run,
                state: state.clone(),
            },
        }
    }
}

/// Connects this replica to the others, on PostgreSQL: publishes what it
/// sends and passes on what they publish, until shutdown.
pub fn spawn(app: &Arc<App>) -> Vec<tokio::task::JoinHandle<()>> {
    let DatabaseTarget::Postgres(url) = &app.config.database else {
        return Vec::new();
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (wakes_tx, wakes_rx) = mpsc::unbounded_channel();
    app.events.relay_to(tx);
    for wake in app.flow.all() {
        wake.relay_to(wakes_tx.clone());
    }
    vec![
        tokio::spawn(publish(app.clone(), rx, wakes_rx)),
        tokio::spawn(listen(app.clone(), url.clone())),
    ]
}

/// Publishes, in the order they were sent, what this replica's runners and
/// loops send.
async fn publish(
    app: Arc<App>,
    mut events: mpsc::UnboundedReceiver<(i64, RunEvent)>,
    mut wakes: mpsc::UnboundedReceiver<&'static str>,
) {
    loop {
        let notice = tokio::select! {
            () = app.replica.shutdown.cancelled() => return,
            Some((run, event)) = events.recv() => Notice::of_event(&app.replica.id, run, &event),
            Some(name) = wakes.recv() => Notice::Wake { origin: app.replica.id.clone(), name: name.to_string() },
            else => return,
        };
        let Ok(payload) = serde_json::to_string(&notice) else {
            continue;
        };
        if let Err(error) = db::notices::publish(&app.db, CHANNEL, &payload).await {
            tracing::debug!(%error, "relay: cannot publish a notice");
        }
    }
}

/// Passes on what the other replicas publish; reconnects after losing the
/// database.
async fn listen(app: Arc<App>, url: String) {
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::debug!(%error, "relay: cannot connect; retrying");
                if !crate::jobs::driver::pause_for(&app, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::debug!(%error, "relay: cannot listen; retrying");
            continue;
        }
        loop {
            let notification = tokio::select! {
                () = app.replica.shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match notification {
                Ok(Some(notification)) => pass_on(&app, notification.payload()).await,
                // The connection dropped: notices in between are lost, the
                // watermarks and ticks cover them.
                Ok(None) => {
                    app.changes.refresh().await;
                }
                Err(error) => {
                    tracing::debug!(%error, "relay: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Hands one notice to this replica's viewers or loops.
async fn pass_on(app: &App, payload: &str) {
    let Ok(notice) = serde_json::from_str::<Notice>(payload) else {
        tracing::debug!(payload, "relay: an unreadable notice; ignored");
        return;
    };
    if notice.origin() == app.replica.id {
        return;
    }
    match notice {
        Notice::Wake { name, .. } => {
            if let Some(wake) = app.flow.all().into_iter().find(|w| w.name() == name) {
                wake.notify_here();
            }
        }
        Notice::Log {
            run, step_id, seq, ..
        } => {
            // Stored before it was published.
            let chunks = db::steps::log_chunks(app.db.pool(), step_id, seq - 1).await;
            if let Some((_, text)) = chunks
                .ok()
                .and_then(|c| c.into_iter().find(|(s, _)| *s == seq))
            {
                app.events
                    .send_here(run, RunEvent::Log { step_id, seq, text });
            }
        }
        Notice::Step {
            run,
            step_id,
            state,
            ..
        } => {
            app.events.send_here(run, RunEvent::Step { step_id, state });
            app.changes.refresh().await;
        }
        Notice::Run { run, state, .. } => {
            app.events.send_here(run, RunEvent::Run { state });
            app.events.close(run);
            app.changes.refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_carry_no_log_text() {
        let event = RunEvent::Log {
            step_id: 3,
            seq: 9,
            text: "x".repeat(40_000),
        };
        let notice = Notice::of_event("a-1", 7, &event);
        let payload = serde_json::to_string(&notice).unwrap();
        assert!(payload.len() < 200, "{payload}");
        assert_eq!(serde_json::from_str::<Notice>(&payload).unwrap(), notice);
        assert!(serde_json::from_str::<Notice>(r#"{"t":"drop_tables"}"#).is_err());
    }
}
