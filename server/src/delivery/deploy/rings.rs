//! A deploy ring by ring across clusters (`rollout: {rings}`): each ring
//! rolls out with the entry's strategy — whole, or as a canary walked on
//! the ring's targets — then serves for `pause_between` and passes the
//! rollout's analysis before the next ring begins. One abort anywhere (a
//! failed analysis, a canary aborted, a target that did not take the new
//! version, an admin's abort) stops every ring: the rings that took the
//! new version get the stable one back, and the rings not reached are
//! never touched.

use std::collections::HashMap;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::canary;
use super::cluster::Run;
use super::lifecycle::{self, Build, Kubernetes, Source, Subject, TargetError, TargetOutcome};
use crate::db::{self, now_millis, runs::Holder};
use crate::delivery::Delivery;
use crate::gitops::rings::Rings;
use crate::gitops::strategy::CanaryPlan;
use crate::manifests::ObjectRef;
use crate::runs::logs::LogSink;
use app::dto::{RingView, RolloutView};

/// What a rollout ring by ring needs of the deploy.
pub struct Rollout<'r> {
    pub deployment_id: i64,
    pub run: Holder<'r>,
    pub source: &'r Source,
    pub checkout: &'r Path,
    /// Each ring walks this canary; without one, each ring goes whole.
    pub canary: Option<&'r CanaryPlan>,
    pub rings: &'r Rings,
    /// The deployment the environment served before: what an abort
    /// returns the rings to.
    pub stable: Option<i64>,
}

/// Rolls `rollout` out ring by ring: every target's outcome.
pub async fn walk(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    rollout: &Rollout<'_>,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<Vec<TargetOutcome>, crate::db::QueryError> {
    let Some(kubernetes) = rollout.source.kubernetes.as_ref() else {
        let started = now_millis();
        return Ok(rollout
            .rings
            .rings
            .iter()
            .flatten()
            .map(|target| TargetOutcome {
                target: target.clone(),
                started,
                result: Err(TargetError::NoManifests),
            })
            .collect());
    };
    let count = rollout.rings.rings.len();
    let mut rings: Vec<RingView> = rollout
        .rings
        .rings
        .iter()
        .map(|ring| RingView {
            targets: ring.clone(),
            state: "waiting".into(),
        })
        .collect();
    let mut outcomes: Vec<TargetOutcome> = Vec::new();
    let mut stopped: Option<(String, bool)> = None;
    for (n, ring) in rollout.rings.rings.iter().enumerate() {
        rings[n].state = "rolling out".into();
        let view = RolloutView {
            phase: "running".into(),
            doing: format!("ring {} of {count}: {}", n + 1, ring.join(", ")),
            rings: rings.clone(),
            ..RolloutView::default()
        };
        report(app, rollout.run, &view).await?;
        log.note(&format!(
            "ring {} of {count}: rolling out to {}",
            n + 1,
            ring.join(", ")
        ))
        .await?;
        let ring_outcomes = match rollout.canary {
            Some(plan) => {
                Box::pin(canary::walk(
                    app,
                    subject,
                    (rollout.deployment_id, rollout.run),
                    rollout.source,
                    (rollout.checkout, ring),
                    plan,
                    (log, rings.clone()),
                    cancel,
                ))
                .await?
            }
            None => {
                lifecycle::apply(
                    app,
                    subject,
                    rollout.deployment_id,
                    rollout.source,
                    Build::Checkout(rollout.checkout),
                    ring,
                )
                .await
            }
        };
        let failed = ring_outcomes.iter().find_map(|o| match &o.result {
            Err(TargetError::Aborted { why, judged }) => Some((why.clone(), *judged)),
            Err(error) => Some((format!("{} did not take it: {error}", o.target), true)),
            Ok(_) => None,
        });
        outcomes.extend(ring_outcomes);
        if let Some((why, judged)) = failed {
            rings[n].state = "aborted".into();
            stopped = Some((format!("ring {} of {count}: {why}", n + 1), judged));
            break;
        }
        if n + 1 == count {
            rings[n].state = "done".into();
            break;
        }
        rings[n].state = "soaking".into();
        if rollout.rings.pause_between_seconds > 0 || rollout.rings.analysis.is_some() {
            log.note(&format!(
                "ring {} of {count} serves the new version; {}before ring {}",
                n + 1,
                describe_soak(rollout.rings),
                n + 2
            ))
            .await?;
        }
        let view = RolloutView {
            phase: "running".into(),
            doing: format!(
                "ring {} of {count}: {}",
                n + 1,
                describe_soak(rollout.rings)
            ),
            rings: rings.clone(),
            ..RolloutView::default()
        };
        let (soaked, view) = Box::pin(canary::soak_ring(
            app,
            subject,
            rollout.run,
            (kubernetes, ring),
            (
                rollout.rings.pause_between_seconds,
                rollout.rings.analysis.as_ref(),
            ),
            view,
            log,
            cancel,
        ))
        .await?;
        if let Some((why, judged)) = soaked {
            rings[n].state = "aborted".into();
            stopped = Some((format!("ring {} of {count}: {why}", n + 1), judged));
            report(
                app,
                rollout.run,
                &RolloutView {
                    rings: rings.clone(),
                    ..view
                },
            )
            .await?;
            break;
        }
        rings[n].state = "done".into();
    }
    let Some((why, judged)) = stopped else {
        let view = RolloutView {
            phase: "promoted".into(),
            weight: 100,
            doing: format!("every ring of {count} serves the new version"),
            rings,
            ..RolloutView::default()
        };
        report(app, rollout.run, &view).await?;
        return Ok(outcomes);
    };
    log.note(&format!(
        "rollout aborted ({why}): every ring goes back to the stable version"
    ))
    .await?;
    let outcomes = back_to_stable(
        app, subject, rollout, kubernetes, outcomes, &why, judged, log,
    )
    .await?;
    for (n, ring) in rollout.rings.rings.iter().enumerate() {
        let took = outcomes
            .iter()
            .filter(|o| ring.contains(&o.target))
            .any(|o| matches!(&o.result, Err(TargetError::Aborted { why, .. }) if why.starts_with("returned")));
        if rings[n].state == "waiting" {
            rings[n].state = "not reached".into();
        } else if took && rings[n].state != "aborted" {
            rings[n].state = "returned to stable".into();
        }
    }
    let view = RolloutView {
        phase: "aborted".into(),
        doing: "every target is back on the stable version".into(),
        reason: Some(why.clone()),
        rings,
        ..RolloutView::default()
    };
    report(app, rollout.run, &view).await?;
    Ok(outcomes)
}

/// `pause 10m, then analysis (3 successful checks)`.
fn describe_soak(rings: &Rings) -> String {
    let mut parts = Vec::new();
    if rings.pause_between_seconds > 0 {
        parts.push(format!("a pause of {}s", rings.pause_between_seconds));
    }
    if let Some(analysis) = &rings.analysis {
        parts.push(format!(
            "an analysis ({} successful checks of {}s)",
            analysis.count, analysis.interval_seconds
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{} ", parts.join(", then "))
    }
}

/// Every target that took the new version gets the stable deployment's
/// objects back; every outcome becomes an abort saying what happened to
/// its target. Targets not reached keep the stable version untouched.
#[allow(clippy::too_many_arguments)]
async fn back_to_stable(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    rollout: &Rollout<'_>,
    kubernetes: &Kubernetes,
    outcomes: Vec<TargetOutcome>,
    why: &str,
    judged: bool,
    log: &mut LogSink<'_>,
) -> Result<Vec<TargetOutcome>, crate::db::QueryError> {
    let stable_objects = match rollout.stable {
        Some(deployment) => match super::drift::deployed_objects(app, deployment).await {
            Ok(objects) => objects,
            Err(error) => {
                log.note(&format!(
                    "the stable version could not be read back: {error}"
                ))
                .await?;
                None
            }
        },
        None => None,
    };
    let stable = stable_objects.map(|objects| Kubernetes {
        objects,
        ..kubernetes.clone()
    });
    let mut reached: HashMap<String, TargetOutcome> = HashMap::new();
    for outcome in outcomes {
        reached.insert(outcome.target.clone(), outcome);
    }
    let mut result = Vec::new();
    for target in rollout.rings.rings.iter().flatten() {
        let started = now_millis();
        let aborted = |text: String| TargetError::Aborted { why: text, judged };
        let Some(outcome) = reached.remove(target) else {
            result.push(TargetOutcome {
                target: target.clone(),
                started,
                result: Err(aborted(format!("not rolled out: {why}"))),
            });
            continue;
        };
        let new_objects = match &outcome.result {
            Ok(done) => done.objects.clone().unwrap_or_default(),
            // A canary aborted on its own: it is gone, and the stable
            // Deployment never changed.
            Err(TargetError::Aborted { .. }) => {
                result.push(outcome);
                continue;
            }
            // A target that failed part way may run some of the new
            // version: it goes back too (what was applied is not known,
            // so nothing is pruned).
            Err(_) => stable
                .as_ref()
                .map(|s| s.objects.iter().map(ObjectRef::of).collect())
                .unwrap_or_default(),
        };
        let Some(stable) = &stable else {
            log.note(&format!(
                "{target} keeps the new version: the environment served nothing before this deploy"
            ))
            .await?;
            result.push(TargetOutcome {
                target: target.clone(),
                started: outcome.started,
                result: Err(aborted(format!(
                    "aborted with nothing to return to (first deploy): {why}"
                ))),
            });
            continue;
        };
        // What the new version applied and the stable one did not is pruned.
        let previous: Vec<ObjectRef> = new_objects;
        let back =
            lifecycle::apply_objects(app, subject, target, stable, &previous, Run::Rollback).await;
        let text = match &back {
            Ok(_) => {
                log.note(&format!("{target}: back on the stable version"))
                    .await?;
                format!("returned to the stable version: {why}")
            }
            Err(error) => {
                log.note(&format!(
                    "{target}: could not go back to the stable version: {error}"
                ))
                .await?;
                format!("runs the new version, could not return to stable ({error}): {why}")
            }
        };
        result.push(TargetOutcome {
            target: target.clone(),
            started: outcome.started,
            result: Err(aborted(text)),
        });
    }
    Ok(result)
}

async fn report(
    app: &Delivery<'_>,
    run: Holder<'_>,
    view: &RolloutView,
) -> Result<(), crate::db::QueryError> {
    let json = serde_json::to_string(view).unwrap_or_default();
    db::runs::set_rollout_state(app.db.pool(), run.run_id, &json).await
}
