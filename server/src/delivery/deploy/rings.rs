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
    let mut going = Going {
        rollout,
        kubernetes,
        outcomes: &mut outcomes,
        rings: &mut rings,
    };
    let walked = Box::pin(going.through(app, subject, log, cancel)).await;
    // A replica that lost the run touches no cluster: the attempt that took
    // it over owns the environment now.
    let held = canary::holds(app, rollout.run).await;
    let (why, judged) = match walked {
        Ok(None) => {
            let view = RolloutView {
                phase: "promoted".into(),
                weight: 100,
                doing: format!("every ring of {count} serves the new version"),
                rings,
                ..RolloutView::default()
            };
            report(app, rollout.run, &view).await?;
            return Ok(outcomes);
        }
        Ok(Some(stopped)) => stopped,
        Err(error) => {
            // Nothing stays half rolled out on a database error: every
            // ring goes back before the error is told.
            if held {
                let _ = back_to_stable(
                    app,
                    subject,
                    rollout,
                    kubernetes,
                    outcomes,
                    "the rollout stopped on a database error",
                    true,
                    log,
                )
                .await;
            }
            return Err(error);
        }
    };
    if !held {
        let _ = log
            .note("the run went to another replica: its attempt carries the rollout on")
            .await;
        return Ok(not_ours(rollout, &why));
    }
    let _ = log
        .note(&format!(
            "rollout aborted ({why}): every ring goes back to the stable version"
        ))
        .await;
    let outcomes = back_to_stable(
        app, subject, rollout, kubernetes, outcomes, &why, judged, log,
    )
    .await;
    let mut all_back = true;
    for (n, ring) in rollout.rings.rings.iter().enumerate() {
        let results: Vec<&TargetOutcome> = outcomes
            .iter()
            .filter(|o| ring.contains(&o.target))
            .collect();
        let returned = |o: &&TargetOutcome| matches!(&o.result, Err(TargetError::Aborted { why, .. }) if why.starts_with(RETURNED));
        let stuck = |o: &&TargetOutcome| matches!(&o.result, Err(TargetError::Aborted { why, .. }) if why.starts_with(STUCK));
        if results.iter().any(stuck) {
            all_back = false;
            rings[n].state = "runs the new version".into();
        } else if rings[n].state == "waiting" {
            rings[n].state = "not reached".into();
        } else if results.iter().any(returned) && rings[n].state != "aborted" {
            rings[n].state = "returned to stable".into();
        }
    }
    let view = RolloutView {
        phase: "aborted".into(),
        doing: if all_back {
            "every target is back on the stable version".into()
        } else {
            "some targets still run the new version: see the deploy log".into()
        },
        reason: Some(why.clone()),
        rings,
        ..RolloutView::default()
    };
    report(app, rollout.run, &view).await?;
    Ok(outcomes)
}

/// How an aborted target's outcome starts when it went back to stable, and
/// when it could not.
const RETURNED: &str = "returned to the stable version";
const STUCK: &str = "runs the new version";

/// Every target's outcome for a run this replica lost: cancelled with it,
/// nothing touched.
fn not_ours(rollout: &Rollout<'_>, why: &str) -> Vec<TargetOutcome> {
    let started = now_millis();
    rollout
        .rings
        .rings
        .iter()
        .flatten()
        .map(|target| TargetOutcome {
            target: target.clone(),
            started,
            result: Err(TargetError::Aborted {
                why: format!("the run went to another replica: {why}"),
                judged: false,
            }),
        })
        .collect()
}

/// A rollout going through its rings: what each reached target did, and
/// where each ring stands.
struct Going<'g> {
    rollout: &'g Rollout<'g>,
    kubernetes: &'g Kubernetes,
    outcomes: &'g mut Vec<TargetOutcome>,
    rings: &'g mut Vec<RingView>,
}

impl Going<'_> {
    /// Rolls ring after ring: `Some((why, judged))` when it stopped.
    async fn through(
        &mut self,
        app: &Delivery<'_>,
        subject: &Subject<'_>,
        log: &mut LogSink<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<(String, bool)>, crate::db::QueryError> {
        let rollout = self.rollout;
        let count = rollout.rings.rings.len();
        for (n, ring) in rollout.rings.rings.iter().enumerate() {
            // Heard between rings whatever the soak: a cancelled run, an
            // admin's abort.
            if cancel.is_cancelled() {
                return Ok(Some(("the run was cancelled".into(), false)));
            }
            if n > 0
                && db::runs::rollout_command(app.db.pool(), rollout.run.run_id)
                    .await?
                    .as_deref()
                    == Some("abort")
            {
                self.rings[n - 1].state = "aborted".into();
                return Ok(Some((
                    format!("before ring {} of {count}: aborted by an admin", n + 1),
                    true,
                )));
            }
            self.rings[n].state = "rolling out".into();
            let view = RolloutView {
                phase: "running".into(),
                doing: format!("ring {} of {count}: {}", n + 1, ring.join(", ")),
                rings: self.rings.clone(),
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
                        (log, self.rings.clone()),
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
            self.outcomes.extend(ring_outcomes);
            if let Some((why, judged)) = failed {
                self.rings[n].state = "aborted".into();
                return Ok(Some((format!("ring {} of {count}: {why}", n + 1), judged)));
            }
            if n + 1 == count {
                self.rings[n].state = "done".into();
                return Ok(None);
            }
            self.rings[n].state = "soaking".into();
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
                rings: self.rings.clone(),
                ..RolloutView::default()
            };
            let (soaked, view) = Box::pin(canary::soak_ring(
                app,
                subject,
                rollout.run,
                (self.kubernetes, ring),
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
                self.rings[n].state = "aborted".into();
                report(
                    app,
                    rollout.run,
                    &RolloutView {
                        rings: self.rings.clone(),
                        ..view
                    },
                )
                .await?;
                return Ok(Some((format!("ring {} of {count}: {why}", n + 1), judged)));
            }
            self.rings[n].state = "done".into();
        }
        Ok(None)
    }
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
/// its target. Targets not reached keep the stable version untouched. Its
/// log notes are best effort: a failed write never stops a return.
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
) -> Vec<TargetOutcome> {
    // None: nothing served before (a first deploy). Some(Err): it did, and
    // its objects could not be read back.
    let stable: Option<Result<Kubernetes, canary::Trouble>> = match rollout.stable {
        None => None,
        Some(deployment) => Some(
            match super::drift::deployed_objects(app, deployment).await {
                Ok(Some(objects)) => Ok(Kubernetes {
                    objects,
                    ..kubernetes.clone()
                }),
                Ok(None) => Err(canary::Trouble(format!(
                    "deployment {deployment} kept no Kubernetes objects"
                ))),
                Err(error) => Err(canary::Trouble(error.to_string())),
            },
        ),
    };
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
            Err(_) => match &stable {
                Some(Ok(stable)) => stable.objects.iter().map(ObjectRef::of).collect(),
                _ => Vec::new(),
            },
        };
        let nothing_to_return_to = match &stable {
            Some(Ok(_)) => None,
            None => Some("nothing served before this first deploy".to_string()),
            Some(Err(unread)) => Some(format!(
                "the stable version could not be read back ({unread})"
            )),
        };
        let (Some(Ok(stable)), None) = (&stable, &nothing_to_return_to) else {
            let reason = nothing_to_return_to.unwrap_or_default();
            let _ = log
                .note(&format!("{target} keeps the new version: {reason}"))
                .await;
            result.push(TargetOutcome {
                target: target.clone(),
                started: outcome.started,
                result: Err(aborted(format!("{STUCK}: {reason}; {why}"))),
            });
            continue;
        };
        // What the new version applied and the stable one did not is pruned.
        let back =
            lifecycle::apply_objects(app, subject, target, stable, &new_objects, Run::Rollback)
                .await;
        let text = match &back {
            Ok(_) => {
                let _ = log
                    .note(&format!("{target}: back on the stable version"))
                    .await;
                format!("{RETURNED}: {why}")
            }
            Err(error) => {
                let _ = log
                    .note(&format!(
                        "{target}: could not go back to the stable version: {error}"
                    ))
                    .await;
                format!("{STUCK}, could not return to stable ({error}): {why}")
            }
        };
        result.push(TargetOutcome {
            target: target.clone(),
            started: outcome.started,
            result: Err(aborted(text)),
        });
    }
    result
}

async fn report(
    app: &Delivery<'_>,
    run: Holder<'_>,
    view: &RolloutView,
) -> Result<(), crate::db::QueryError> {
    let json = serde_json::to_string(view).unwrap_or_default();
    db::runs::set_rollout_state(app.db.pool(), run.run_id, &json).await
}
