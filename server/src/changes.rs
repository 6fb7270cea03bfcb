//! The dashboard's change feed: one server task, not every open browser,
//! asks the database once a second whether anything people see moved —
//! environments, runs, change requests, approvals, releases, feedback, the
//! audit log — and tells the subscribed pages, which then refetch what they
//! show. Nobody subscribed, no query. A page that loses the connection gets
//! the current version when its `EventSource` reconnects, and refetches if
//! it missed something.

use std::time::Duration;

use tokio::sync::watch;

use crate::state::App;

const PERIOD: Duration = Duration::from_secs(1);

/// The feed: the current version of what the dashboard shows.
#[derive(Debug)]
pub struct Changes {
    version: watch::Sender<String>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            version: watch::Sender::new(String::new()),
        }
    }
}

impl Changes {
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.version.subscribe()
    }
}

/// The watermarks whose change means "refetch". Each is an indexed maximum
/// or a count, so the query stays cheap with 100,000 runs.
pub async fn version(app: &App) -> Result<String, sqlx::Error> {
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM environments),
                (SELECT COUNT(*) FROM environments),
                (SELECT COALESCE(MAX(id), 0) FROM runs),
                (SELECT COALESCE(MAX(started_at), 0) FROM runs),
                (SELECT COALESCE(MAX(finished_at), 0) FROM runs),
                (SELECT COALESCE(MAX(updated_at), 0) FROM change_requests),
                (SELECT COALESCE(MAX(id), 0) FROM releases),
                (SELECT COALESCE(MAX(id), 0) FROM audit_log),
                (SELECT COALESCE(MAX(id), 0) FROM tester_feedback)",
    )
    .fetch_one(app.db.pool())
    .await?;
    Ok(format!(
        "{}.{}.{}.{}.{}.{}.{}.{}.{}",
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8
    ))
}

/// Reads the version now and tells the subscribers if it moved.
pub async fn refresh(app: &App) {
    match version(app).await {
        Ok(now) => {
            app.changes.version.send_if_modified(|current| {
                let moved = *current != now;
                if moved {
                    *current = now;
                }
                moved
            });
        }
        Err(error) => tracing::debug!(%error, "change feed: cannot read the watermarks"),
    }
}

pub async fn feed_loop(app: std::sync::Arc<App>) {
    let quiet = tokio::sync::Notify::new();
    loop {
        if app.changes.version.receiver_count() > 0 {
            refresh(&app).await;
        }
        if !crate::flow::pause(&app, &quiet, PERIOD).await {
            return;
        }
    }
}
