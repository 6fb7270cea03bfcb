//! A canary on the local target: the new version starts beside the stable
//! one, Gantry's proxy sends it its share of requests and measures each
//! version, and the plan's steps are walked — a weight, a pause, an
//! analysis of the canary's requests. All steps walked: the canary is
//! promoted (it replaces the stable version, which stops). A failed
//! analysis, an admin's abort, a canary that exits or a cancelled run:
//! traffic goes back to stable at once, the canary is removed, and the
//! deploy fails with what was measured.

pub mod analysis;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lifecycle::{Source, Subject, TargetDone, TargetError, TargetOutcome};
use super::local::{LocalSpec, Version};
use crate::db::{self, now_millis, runs::Holder};
use crate::delivery::Delivery;
use crate::gitops::schema::LOCAL_TARGET;
use crate::gitops::strategy::{Analysis, CanaryPlan, CanaryStep};
use crate::runs::logs::LogSink;
use analysis::{Check, Standing, Tally, judge};

/// How often a waiting canary looks at the clock, the run and its command.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Why a canary stopped before it was promoted.
enum Stop {
    Aborted(String),
    Cancelled,
}

/// Walks `plan` for deployment `deployment_id` of `subject` on the local
/// target, from the built `checkout`: the local target's outcome.
#[allow(clippy::too_many_arguments)]
pub async fn walk(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    (deployment_id, run): (i64, Holder<'_>),
    source: &Source,
    checkout: &Path,
    plan: &CanaryPlan,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<TargetOutcome, crate::db::QueryError> {
    let started = now_millis();
    let outcome = |result| TargetOutcome {
        target: LOCAL_TARGET.to_string(),
        started,
        result,
    };
    let Some(manifest) = source.local.clone() else {
        return Ok(outcome(Err(TargetError::NoLocalManifest)));
    };
    let secret_values = match app
        .secrets()
        .resolve(subject.app_id, &manifest.secrets)
        .await
    {
        Ok(values) => values,
        Err(error) => return Ok(outcome(Err(error.into()))),
    };
    let spec = LocalSpec {
        app: subject.app.to_string(),
        env: subject.environment.to_string(),
        environment_id: subject.environment_id,
        deployment_id,
        manifest,
        secret_values,
        instance_tag: String::new(),
    };
    let started_canary = match app.local.start_canary(spec.clone(), checkout).await {
        Ok(started) => started,
        Err(error) => return Ok(outcome(Err(error.into()))),
    };
    log.note(&format!(
        "canary: healthy on 127.0.0.1:{} beside the stable version; {} steps",
        started_canary.port,
        plan.steps.len()
    ))
    .await?;
    db::runs::set_rollout_command(app.db.pool(), run.run_id, None).await?;
    let mut measured = Vec::new();
    let walked = steps(app, subject, run, plan, log, cancel, &mut measured).await?;
    match walked {
        Ok(()) => {
            log.note("canary: every step passed; promoting it to stable")
                .await?;
            let promoted = app.local.deploy(app.db, spec, checkout).await;
            app.local
                .end_canary(subject.environment_id, subject.app, subject.environment)
                .await;
            Ok(outcome(match promoted {
                Ok(started) => Ok(TargetDone {
                    detail: format!(
                        "canary promoted after {} steps; now serving on 127.0.0.1:{}",
                        plan.steps.len(),
                        started.port
                    ),
                    objects: None,
                }),
                Err(error) => Err(error.into()),
            }))
        }
        Err(stop) => {
            // Traffic back to stable first, then the canary goes.
            app.local
                .end_canary(subject.environment_id, subject.app, subject.environment)
                .await;
            let why = match stop {
                Stop::Aborted(why) => why,
                Stop::Cancelled => "the run was cancelled".to_string(),
            };
            let measurements = if measured.is_empty() {
                String::new()
            } else {
                format!("; measured: {}", measured.join("; "))
            };
            log.note(&format!(
                "canary aborted: {why}; every request goes to the stable version again"
            ))
            .await?;
            Ok(outcome(Err(TargetError::Aborted(format!(
                "{why}{measurements}"
            )))))
        }
    }
}

/// Walks the steps; `Ok(())` when all passed.
#[allow(clippy::too_many_arguments)]
async fn steps(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    run: Holder<'_>,
    plan: &CanaryPlan,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
    measured: &mut Vec<String>,
) -> Result<Result<(), Stop>, crate::db::QueryError> {
    for (n, step) in plan.steps.iter().enumerate() {
        let position = n + 1;
        match step {
            CanaryStep::Weight(weight) => {
                app.local
                    .set_canary_weight(subject.app, subject.environment, *weight);
                log.note(&format!(
                    "canary step {position}: {weight} % of requests to the canary"
                ))
                .await?;
            }
            CanaryStep::Pause(Some(seconds)) => {
                log.note(&format!("canary step {position}: pause for {seconds}s"))
                    .await?;
                let until = app.clock.now_millis()
                    + i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
                loop {
                    if let Some(stop) = interrupted(app, subject, run, cancel, false).await? {
                        return Ok(Err(stop));
                    }
                    if app.clock.now_millis() >= until {
                        break;
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
            CanaryStep::Pause(None) => {
                log.note(&format!(
                    "canary step {position}: paused until an admin promotes (POST /api/v1/runs/{}/rollout {{\"action\": \"promote\"}})",
                    run.run_id
                ))
                .await?;
                loop {
                    if let Some(stop) = interrupted(app, subject, run, cancel, true).await? {
                        return Ok(Err(stop));
                    }
                    if db::runs::rollout_command(app.db.pool(), run.run_id)
                        .await?
                        .as_deref()
                        == Some("promote")
                    {
                        db::runs::set_rollout_command(app.db.pool(), run.run_id, None).await?;
                        log.note("canary: promoted by an admin").await?;
                        break;
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
            CanaryStep::Analysis(analysis) => {
                log.note(&format!(
                    "canary step {position}: analysis, {} successful checks of {}s needed",
                    analysis.count, analysis.interval_seconds
                ))
                .await?;
                if let Some(stop) =
                    analyse(app, subject, run, analysis, log, cancel, measured).await?
                {
                    return Ok(Err(stop));
                }
            }
        }
    }
    Ok(Ok(()))
}

/// Runs one analysis to its end; `Some` when it stops the canary.
#[allow(clippy::too_many_arguments)]
async fn analyse(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    run: Holder<'_>,
    analysis: &Analysis,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
    measured: &mut Vec<String>,
) -> Result<Option<Stop>, crate::db::QueryError> {
    let mut tally = Tally::default();
    let mut check = 0u32;
    loop {
        check += 1;
        // A fresh window for both versions.
        let _ = app
            .local
            .take_sample(subject.app, subject.environment, Version::Canary);
        let _ = app
            .local
            .take_sample(subject.app, subject.environment, Version::Stable);
        let until = tokio::time::Instant::now() + Duration::from_secs(analysis.interval_seconds);
        while tokio::time::Instant::now() < until {
            if let Some(stop) = interrupted(app, subject, run, cancel, false).await? {
                return Ok(Some(stop));
            }
            tokio::time::sleep(LOOK_EVERY.min(until - tokio::time::Instant::now())).await;
        }
        let canary = app
            .local
            .take_sample(subject.app, subject.environment, Version::Canary);
        let stable = app
            .local
            .take_sample(subject.app, subject.environment, Version::Stable);
        let judged = judge(analysis, &canary);
        let verdict = match &judged {
            Check::Success => "success".to_string(),
            Check::Failure(why) => format!("failure ({why})"),
            Check::Inconclusive(why) => format!("inconclusive ({why})"),
        };
        let line = format!(
            "check {check}: canary {}; stable {} → {verdict}",
            canary.describe(),
            stable.describe()
        );
        log.note(&format!("canary analysis {line}")).await?;
        measured.push(line);
        match tally.add(analysis, &judged) {
            Standing::Going => {}
            Standing::Passed => return Ok(None),
            Standing::Failed(why) => {
                return Ok(Some(Stop::Aborted(format!("analysis failed: {why}"))));
            }
        }
    }
}

/// What stops a waiting canary: the run cancelled, an admin's abort, the
/// canary's process gone. `promote_allowed`: an admin's promote is left
/// for the caller (a `pause: {}`).
async fn interrupted(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    run: Holder<'_>,
    cancel: &CancellationToken,
    promote_allowed: bool,
) -> Result<Option<Stop>, crate::db::QueryError> {
    if cancel.is_cancelled() {
        return Ok(Some(Stop::Cancelled));
    }
    if let Some(status) = app.local.canary_exited(subject.environment_id) {
        return Ok(Some(Stop::Aborted(format!("the canary exited ({status})"))));
    }
    match db::runs::rollout_command(app.db.pool(), run.run_id)
        .await?
        .as_deref()
    {
        Some("abort") => Ok(Some(Stop::Aborted("aborted by an admin".into()))),
        Some("promote") if !promote_allowed => {
            // Promote means "past the pause": elsewhere it waits its turn.
            Ok(None)
        }
        _ => Ok(None),
    }
}
