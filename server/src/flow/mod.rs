//! The flow from a git change to a run: watching repos (polling and the
//! trigger endpoint), planning runs for environments, and the life of
//! preview environments. Every step goes through the database (the event
//! inbox, the runs table), so a restart resumes where it stopped.

pub mod approval;
pub mod lifecycle;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod singletons;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Classified, Kind};
use crate::state::App;

/// What can stop the flow's work on one event, run or environment.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The pipeline repo's configuration for an app, at some commit, does
    /// not load or render; the text names the file and field.
    #[error("{0}")]
    Config(String),
    /// Something the flow expected has gone (an app, an environment).
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Local(#[from] crate::deploy::local::LocalError),
    #[error(transparent)]
    Cluster(#[from] crate::clusters::ClusterError),
    #[error(transparent)]
    Forge(#[from] crate::forge::inbound::ForgeError),
    /// A record Gantry wrote (an event's payload, an app's configuration)
    /// that does not read back.
    #[error("a stored record: {0}")]
    Stored(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<crate::configs::ConfigError> for FlowError {
    fn from(error: crate::configs::ConfigError) -> Self {
        match error {
            crate::configs::ConfigError::Invalid(text) => FlowError::Config(text),
            crate::configs::ConfigError::Git(error) => FlowError::Git(error),
            crate::configs::ConfigError::Db(error) => FlowError::Db(error),
        }
    }
}

impl From<crate::coverage::CoverageError> for FlowError {
    fn from(error: crate::coverage::CoverageError) -> Self {
        match error {
            crate::coverage::CoverageError::Db(error) => FlowError::Db(error),
            crate::coverage::CoverageError::Git(error) => FlowError::Git(error),
        }
    }
}

impl Classified for FlowError {
    fn kind(&self) -> Kind {
        match self {
            FlowError::Config(_) => Kind::Invalid,
            FlowError::Gone(_) => Kind::NotFound,
            FlowError::Git(_) => Kind::Unavailable,
            FlowError::Cluster(error) => error.kind(),
            FlowError::Forge(error) => error.kind(),
            FlowError::Deploy(_)
            | FlowError::Local(_)
            | FlowError::Stored(_)
            | FlowError::Io(_)
            | FlowError::Db(_) => Kind::Internal,
        }
    }
}

/// Starts the background loops; they stop when `app.shutdown` fires.
pub fn spawn(app: &Arc<App>) -> Vec<tokio::task::JoinHandle<()>> {
    // Connected first, so nothing the loops send is missed by the others.
    let mut loops = crate::relay::spawn(app);
    loops.extend([
        tokio::spawn(watch::scan_loop(app.clone())),
        tokio::spawn(plan::plan_loop(app.clone())),
        tokio::spawn(crate::runner::run_loop(app.clone())),
        tokio::spawn(lifecycle::expiry_loop(app.clone())),
        tokio::spawn(drift_loop(app.clone())),
        tokio::spawn(stability_loop(app.clone())),
        tokio::spawn(delivery_loop(app.clone())),
        tokio::spawn(crate::recovery::lease_loop(app.clone())),
        tokio::spawn(singletons::elect_loop(app.clone())),
        {
            let app = app.clone();
            tokio::spawn(async move { app.changes.run(app.shutdown.clone()).await })
        },
    ]);
    loops
}

/// Sends due notifications: every half second, or when a notice is queued.
async fn delivery_loop(app: Arc<App>) {
    let client = crate::notify::deliver::client();
    loop {
        if app.singletons.holds(&app, "delivery")
            && let Err(error) = crate::notify::deliver::send_due(&app.notifier(), &client).await
        {
            tracing::warn!(%error, "notification deliveries failed");
        }
        if !pause(&app, &app.flow.notify_wake, Duration::from_millis(500)).await {
            return;
        }
    }
}

/// Every `drift_interval`: checks each live environment on clusters (and
/// self-heals where its stack entry opted in).
async fn drift_loop(app: Arc<App>) {
    loop {
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = tokio::time::sleep(app.config.drift_interval) => {}
        }
        if app.singletons.holds(&app, "drift")
            && let Err(error) = crate::deploy::drift::check_all(&app.delivery()).await
        {
            tracing::warn!(%error, "drift check failed");
        }
    }
}

/// Marks live releases stable once their soak is over.
async fn stability_loop(app: Arc<App>) {
    loop {
        if app.singletons.holds(&app, "stability")
            && let Err(error) = crate::ledger::stable::check(&app.delivery()).await
        {
            tracing::warn!(%error, "stability check failed");
        }
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = tokio::time::sleep(crate::ledger::stable::CHECK_EVERY) => {}
        }
    }
}

/// Sleeps `period` unless shut down first: false then.
pub(crate) async fn pause_for(app: &App, period: Duration) -> bool {
    tokio::select! {
        () = app.shutdown.cancelled() => false,
        () = tokio::time::sleep(period) => true,
    }
}

/// Sleeps `period` unless woken or shut down first. False on shutdown.
pub(crate) async fn pause(app: &App, notify: &crate::signals::Wake, period: Duration) -> bool {
    tokio::select! {
        () = app.shutdown.cancelled() => false,
        () = notify.notified() => true,
        () = tokio::time::sleep(period) => true,
    }
}
