//! The background jobs: the layer that composes the domain services into
//! the flow from a git change to a live environment — scanning repos
//! (polling and the trigger endpoint), planning runs for environments, the
//! runner that claims and executes them, the life of preview environments,
//! acting on forge deliveries and reporting back, drift, the stability
//! soak, notification delivery — and keeps it going across crashes and
//! replicas (start-up recovery, run take-over, the election of loops that
//! run once, the relay between replicas). Every step goes through the
//! database (the event inbox, the runs table), so a restart resumes where
//! it stopped.
//!
//! `serve` starts the jobs ([`start`], through `http::start`, which brings
//! up the preview socket first); nothing below calls into them.
//! Each periodic job is one pass run by [`driver::drive`].

pub mod driver;
pub mod election;
pub mod forge_inbound;
pub mod forge_report;
pub mod lifecycle;
pub mod plan;
pub mod reconcile;
pub mod recovery;
pub mod relay;
pub mod rerun;
pub mod runner;
pub mod scan;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::db::Backend;
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
    Deploy(#[from] crate::delivery::deploy::DeployError),
    #[error(transparent)]
    Local(#[from] crate::delivery::deploy::local::LocalError),
    #[error(transparent)]
    Cluster(#[from] crate::clusters::ClusterError),
    #[error(transparent)]
    Forge(#[from] crate::jobs::forge_inbound::ForgeError),
    /// A record Gantry wrote (an event's payload, an app's configuration)
    /// that does not read back.
    #[error("a stored record: {0}")]
    Stored(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
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
            | FlowError::Io(_) => Kind::Internal,
            FlowError::Db(error) => error.kind(),
        }
    }
}

/// Recovers from an earlier crash, takes the elected loops' leases, then
/// starts every job; they stop when `app.replica.shutdown` fires. Whatever steps
/// reach through (`http::start`) is up first.
pub async fn start(app: &Arc<App>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    recovery::recover(app).await?;
    // Elected before the loops start, so the holder's first pass is now.
    election::elect(app).await;
    Ok(spawn(app))
}

/// The jobs, each in its own task.
fn spawn(app: &Arc<App>) -> Vec<JoinHandle<()>> {
    use driver::{Schedule, drive};
    let config = &app.config;
    // Connected first, so nothing the loops send is missed by the others.
    let mut jobs = relay::spawn(app);
    let scan = Schedule::every("scan", "scanning git", config.poll_interval)
        .elected()
        .at_start()
        .woken_by(|app: &App| &app.flow.scan_wake);
    jobs.push(tokio::spawn(drive(app.clone(), scan, |app| async move {
        scan::scan(&app, "poll").await
    })));
    let plan = Schedule::every("plan", "planning", Duration::from_secs(2))
        .elected()
        .at_start()
        .woken_by(|app: &App| &app.flow.plan_wake);
    jobs.push(tokio::spawn(drive(app.clone(), plan, |app| async move {
        plan::plan_pending(&app).await
    })));
    // Previews past their TTL, apps gone from the pipeline repo, freezes
    // that ended (they end on the clock, not on an event).
    let expiry = Schedule::every("expiry", "expiring and thawing", Duration::from_secs(30))
        .elected()
        .at_start();
    jobs.push(tokio::spawn(drive(app.clone(), expiry, |app| async move {
        lifecycle::expire_and_thaw(&app).await;
        Ok::<(), std::convert::Infallible>(())
    })));
    // Each live environment on a cluster checked (and healed where its
    // stack entry opted in).
    let drift = Schedule::every("drift", "the drift check", config.drift_interval).elected();
    jobs.push(tokio::spawn(drive(app.clone(), drift, |app| async move {
        crate::delivery::deploy::drift::check_all(&app.delivery()).await
    })));
    // Live releases marked stable once their soak is over.
    let stability = Schedule::every(
        "stability",
        "the stability check",
        crate::delivery::ledger::stable::CHECK_EVERY,
    )
    .elected()
    .at_start();
    jobs.push(tokio::spawn(drive(
        app.clone(),
        stability,
        |app| async move {
            let stable = crate::delivery::ledger::stable::check(&app.delivery()).await;
            // A soak upstream moves on with it: runs waiting for one go.
            if let Err(error) = crate::approvals::release_verified(&app.approvals()).await {
                tracing::warn!(%error, "cannot release runs whose artifact passed upstream");
            }
            stable
        },
    )));
    let delivery = Schedule::every(
        "delivery",
        "notification deliveries",
        Duration::from_millis(500),
    )
    .elected()
    .at_start()
    .woken_by(|app: &App| &app.flow.notify_wake);
    let client = crate::notify::deliver::client();
    jobs.push(tokio::spawn(drive(app.clone(), delivery, move |app| {
        let client = client.clone();
        async move { crate::notify::deliver::send_due(&app.notifier(), &client).await }
    })));
    // Build pods whose run ended or moved on, collected by label.
    let builds = Schedule::every("builds", "collecting build pods", Duration::from_secs(60))
        .elected()
        .at_start();
    jobs.push(tokio::spawn(drive(app.clone(), builds, |app| async move {
        crate::builds::cleanup::collect(&app.builds(), &app.db)
            .await
            .map(|_| ())
    })));
    jobs.push(tokio::spawn(runner::run_loop(app.clone())));
    if app.db.backend() == Backend::Postgres {
        // Runs whose replica stopped renewing their lease are taken over.
        let lapsed = Schedule::every(
            "takeover",
            "taking over runs with expired leases",
            config.runner_lease / 3,
        );
        jobs.push(tokio::spawn(drive(app.clone(), lapsed, |app| async move {
            recovery::take_over_lapsed(&app).await
        })));
        // This replica's leases on the elected loops, renewed; given up
        // at shutdown so another replica takes over at once.
        let renew = Schedule::every("election", "renewing leases", config.runner_lease / 3);
        let app = app.clone();
        jobs.push(tokio::spawn(async move {
            drive(app.clone(), renew, |app| async move {
                election::elect(&app).await;
                Ok::<(), std::convert::Infallible>(())
            })
            .await;
            election::resign(&app).await;
        }));
    }
    let changes = app.clone();
    jobs.push(tokio::spawn(async move {
        changes.changes.run(changes.replica.shutdown.clone()).await
    }));
    jobs
}
