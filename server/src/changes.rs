//! The dashboard's change feed: one server task, not every open browser,
//! asks the database once a second whether anything people see moved —
//! environments, runs, change requests, approvals, releases, feedback, the
//! audit log — and tells the subscribed pages, which then refetch what they
//! show. Nobody subscribed, no query. A page that loses the connection gets
//! the current version when its `EventSource` reconnects, and refetches if
//! it missed something.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Db};

const PERIOD: Duration = Duration::from_secs(1);

/// The feed: the current version of what the dashboard shows.
#[derive(Debug)]
pub struct Changes {
    db: Db,
    version: watch::Sender<String>,
}

impl Changes {
    pub fn new(db: Db) -> Changes {
        Changes {
            db,
            version: watch::Sender::new(String::new()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.version.subscribe()
    }

    /// The watermarks whose change means "refetch" (`db::watermarks`).
    pub async fn version(&self) -> Result<String, crate::db::QueryError> {
        db::watermarks::version(self.db.pool()).await
    }

    /// Reads the version now and tells the subscribers if it moved.
    pub async fn refresh(&self) {
        match self.version().await {
            Ok(now) => {
                self.version.send_if_modified(|current| {
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

    /// Reads once a period while anyone listens, until shut down.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if self.version.receiver_count() > 0 {
                self.refresh().await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    }
}
