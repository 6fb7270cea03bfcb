//! The runner: claims queued runs from the database (the durable queue) and
//! executes them, at most `runner.max_parallel` at once.

mod cache;
mod command;
mod execute;
mod image;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::db::{self, now_millis};
use crate::state::App;

/// What ends a run before its steps could say how it went: the run is
/// failed with this as its error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The app, environment or stack entry the run was planned for is gone.
    #[error("{0}")]
    Gone(String),
    /// The pipeline at the run's commit does not load or render.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Flow(#[from] crate::jobs::FlowError),
    #[error(transparent)]
    Configuration(#[from] crate::configs::ConfigError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// Runs until shutdown: wakes on `flow.runner_wake` or every second.
pub async fn run_loop(app: Arc<App>) {
    let slots = Arc::new(Semaphore::new(app.config.runner_max_parallel));
    loop {
        // Take a slot before claiming, so a claimed run always starts.
        let permit = tokio::select! {
            () = app.replica.shutdown.cancelled() => return,
            () = app.replica.draining.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        if app.replica.draining.is_cancelled() {
            return;
        }
        match db::runs::claim_next(&app.db, &app.replica.id, app.runs_local(), now_millis()).await {
            Ok(Some(run)) => {
                let app = app.clone();
                tokio::spawn(async move {
                    execute::execute(app.clone(), run).await;
                    drop(permit);
                    app.flow.runner_wake.notify_one();
                });
                continue;
            }
            Ok(None) => drop(permit),
            Err(error) => {
                drop(permit);
                tracing::error!(%error, "runner: cannot claim a run");
            }
        }
        tokio::select! {
            () = app.replica.shutdown.cancelled() => return,
            () = app.replica.draining.cancelled() => return,
            () = app.flow.runner_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
