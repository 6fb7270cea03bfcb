//! The one loop every periodic job runs in: the job says what one pass
//! does; the driver decides when it runs — on its period, at once when its
//! wake-up fires, only on the replica elected for it — and stops it on
//! shutdown, logging a failed pass and counting passes for `/metrics`.
//! (kube-runtime separates scheduling from reconciling the same way.)

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::signals::Wake;
use crate::state::App;

/// When and where a job's passes run.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// In logs and metrics; for an elected job, the name of its lease.
    pub name: &'static str,
    /// What a pass does, for the log line of a failed one ("planning").
    pub doing: &'static str,
    /// Time between passes.
    pub every: Duration,
    /// Runs on the one replica holding its lease (`election`), or on each.
    pub elected: bool,
    /// The first pass runs at once, or only after one period.
    pub at_start: bool,
    /// Wakes the job before its period is over.
    pub wake: Option<fn(&App) -> &Wake>,
}

impl Schedule {
    /// A job of every replica, first run after one period.
    pub fn every(name: &'static str, doing: &'static str, every: Duration) -> Schedule {
        Schedule {
            name,
            doing,
            every,
            elected: false,
            at_start: false,
            wake: None,
        }
    }

    /// Runs on the elected replica only.
    pub fn elected(self) -> Schedule {
        Schedule {
            elected: true,
            ..self
        }
    }

    /// Runs its first pass as soon as it starts.
    pub fn at_start(self) -> Schedule {
        Schedule {
            at_start: true,
            ..self
        }
    }

    pub fn woken_by(self, wake: fn(&App) -> &Wake) -> Schedule {
        Schedule {
            wake: Some(wake),
            ..self
        }
    }
}

/// Runs `pass` on `schedule` until `app.replica.shutdown`.
pub async fn drive<F, Fut, T, E>(app: Arc<App>, schedule: Schedule, pass: F)
where
    F: Fn(Arc<App>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    if !schedule.at_start && !wait(&app, &schedule).await {
        return;
    }
    loop {
        if !schedule.elected || app.replica.singletons.holds(schedule.name) {
            let started = Instant::now();
            let outcome = match pass(app.clone()).await {
                Ok(_) => "ok",
                Err(error) => {
                    tracing::warn!(job = schedule.name, %error, "{} failed", schedule.doing);
                    "failed"
                }
            };
            metrics::counter!("gantry_job_passes_total", "job" => schedule.name, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("gantry_job_pass_seconds", "job" => schedule.name)
                .record(started.elapsed().as_secs_f64());
        }
        if !wait(&app, &schedule).await {
            return;
        }
    }
}

/// Until the next pass is due: false on shutdown.
async fn wait(app: &App, schedule: &Schedule) -> bool {
    match schedule.wake {
        Some(wake) => pause(app, wake(app), schedule.every).await,
        None => pause_for(app, schedule.every).await,
    }
}

/// Sleeps `period` unless shut down first: false then.
pub(crate) async fn pause_for(app: &App, period: Duration) -> bool {
    tokio::select! {
        () = app.replica.shutdown.cancelled() => false,
        () = tokio::time::sleep(period) => true,
    }
}

/// Sleeps `period` unless woken or shut down first. False on shutdown.
pub(crate) async fn pause(app: &App, notify: &Wake, period: Duration) -> bool {
    tokio::select! {
        () = app.replica.shutdown.cancelled() => false,
        () = notify.notified() => true,
        () = tokio::time::sleep(period) => true,
    }
}
