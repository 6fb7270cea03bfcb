//! A canary: the new version starts beside the stable one, gets its share
//! of requests, and the plan's steps are walked — a weight, a pause, an
//! analysis. On the local target Gantry's proxy splits the requests and
//! measures each version; on Kubernetes a second Deployment runs beside
//! the stable one ([`kubernetes`]) and Prometheus is asked. All steps
//! walked: the canary is promoted (the new version replaces the stable
//! one everywhere). A failed analysis, an admin's abort, a canary that
//! exits or a cancelled run: traffic goes back to stable at once, the
//! canary is removed, and the deploy fails with what was measured.

pub mod analysis;
pub mod kubernetes;
pub mod prometheus;
pub mod step;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lifecycle::{self, Build, Source, Subject, TargetDone, TargetError, TargetOutcome};
use super::local::{LocalSpec, Version};
use crate::db::{self, now_millis, runs::Holder};
use crate::delivery::Delivery;
use crate::gitops::schema::LOCAL_TARGET;
use crate::gitops::strategy::{Analysis, CanaryPlan, CanaryStep};
use crate::runs::logs::LogSink;
use analysis::{Check, Standing, Tally, judge};
use app::dto::{RingView, RolloutView};

/// How often a waiting canary looks at the clock, the run and its command.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Why a step of a canary or a check could not do what it was asked: a
/// sentence for the log and the run page.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Trouble(pub String);

impl From<String> for Trouble {
    fn from(why: String) -> Trouble {
        Trouble(why)
    }
}

/// Why a canary stopped before it was promoted.
enum Stop {
    Aborted(String),
    Cancelled,
}

/// Where the canary runs.
enum Track<'t> {
    /// Beside the local target's process, behind Gantry's proxy.
    Local {
        spec: Box<LocalSpec>,
        checkout: &'t Path,
    },
    /// A second Deployment beside each stable one, on every target.
    Clusters {
        kubernetes: &'t lifecycle::Kubernetes,
        targets: &'t [String],
    },
}

impl Track<'_> {
    /// Sets the canary's share; what it did, or why it could not.
    async fn set_weight(
        &self,
        app: &Delivery<'_>,
        subject: &Subject<'_>,
        weight: u8,
    ) -> Result<String, Trouble> {
        match self {
            Track::Local { .. } => {
                app.local
                    .set_canary_weight(subject.app, subject.environment, weight);
                Ok(format!("{weight} % of requests to the canary"))
            }
            Track::Clusters {
                kubernetes,
                targets,
            } => kubernetes::set_weight(app, subject, kubernetes, targets, weight).await,
        }
    }

    /// Why the canary is gone by itself, if it is.
    fn exited(&self, app: &Delivery<'_>, subject: &Subject<'_>) -> Option<String> {
        match self {
            Track::Local { .. } => app.local.canary_exited(subject.environment_id),
            Track::Clusters { .. } => None,
        }
    }

    /// Sends every request back to stable and removes the canary.
    async fn end(&self, app: &Delivery<'_>, subject: &Subject<'_>, log: &mut LogSink<'_>) {
        match self {
            Track::Local { .. } => {
                app.local
                    .end_canary(subject.environment_id, subject.app, subject.environment)
                    .await;
            }
            Track::Clusters {
                kubernetes,
                targets,
            } => {
                for error in kubernetes::remove(app, subject, &kubernetes.namespace, targets).await
                {
                    let _ = log
                        .note(&format!(
                            "canary: could not remove the canary Deployment ({error}); the environment's next deploy removes it"
                        ))
                        .await;
                }
            }
        }
    }

    /// The namespace Prometheus queries are about.
    fn namespace(&self) -> &str {
        match self {
            Track::Local { .. } => "",
            Track::Clusters { kubernetes, .. } => &kubernetes.namespace,
        }
    }

    fn targets(&self) -> Vec<String> {
        match self {
            Track::Local { .. } => vec![LOCAL_TARGET.to_string()],
            Track::Clusters { targets, .. } => targets.to_vec(),
        }
    }
}

/// Walks `plan` for deployment `deployment_id` of `subject` on `targets`
/// (the local target alone, or clusters), from the built `checkout`: each
/// target's outcome. `rings` is where a rollout ring by ring stands, shown
/// beside the canary.
#[allow(clippy::too_many_arguments)]
pub async fn walk(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    (deployment_id, run): (i64, Holder<'_>),
    source: &Source,
    (checkout, targets): (&Path, &[String]),
    plan: &CanaryPlan,
    (log, rings): (&mut LogSink<'_>, Vec<RingView>),
    cancel: &CancellationToken,
) -> Result<Vec<TargetOutcome>, crate::db::QueryError> {
    let started = now_millis();
    let all = |result: Result<String, TargetError>| -> Vec<TargetOutcome> {
        let detail = result.map_err(|e| e.to_string());
        targets
            .iter()
            .map(|target| TargetOutcome {
                target: target.clone(),
                started,
                result: match &detail {
                    Ok(detail) => Ok(TargetDone {
                        detail: detail.clone(),
                        objects: None,
                    }),
                    Err(why) => Err(TargetError::Canary(why.clone())),
                },
            })
            .collect()
    };
    let track = if targets == [LOCAL_TARGET] {
        let Some(manifest) = source.local.clone() else {
            return Ok(all(Err(TargetError::NoLocalManifest)));
        };
        let secret_values = match app
            .secrets()
            .resolve(subject.app_id, &manifest.secrets)
            .await
        {
            Ok(values) => values,
            Err(error) => return Ok(all(Err(error.into()))),
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
            Err(error) => return Ok(all(Err(error.into()))),
        };
        log.note(&format!(
            "canary: healthy on 127.0.0.1:{} beside the stable version; {} steps",
            started_canary.port,
            plan.steps.len()
        ))
        .await?;
        Track::Local {
            spec: Box::new(spec),
            checkout,
        }
    } else {
        let Some(kubernetes) = source.kubernetes.as_ref() else {
            return Ok(all(Err(TargetError::NoManifests)));
        };
        if let Some(unfit) = kubernetes::unfit(kubernetes) {
            return Ok(all(Err(unfit)));
        }
        let track = Track::Clusters {
            kubernetes,
            targets,
        };
        // A canary a crash left behind is not this one.
        track.end(app, subject, log).await;
        let names: Vec<String> = kubernetes::workloads(&kubernetes.objects)
            .into_iter()
            .map(|w| format!("{}-canary", w.name))
            .collect();
        log.note(&format!(
            "canary: {} beside the stable version on {}; {} steps",
            names.join(", "),
            targets.join(", "),
            plan.steps.len()
        ))
        .await?;
        track
    };
    // A word left from before this canary is not for it — unless the
    // canary is a ring's, where an abort given while an earlier ring was
    // applied stands.
    if rings.is_empty() {
        db::runs::set_rollout_command(app.db.pool(), run.run_id, None).await?;
    }
    let mut walk = Walk {
        app,
        subject,
        run,
        cancel,
        track,
        view: RolloutView {
            phase: "running".into(),
            step: 0,
            steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
            weight: 0,
            doing: "starting beside the stable version".into(),
            checks: Vec::new(),
            reason: None,
            kind: if plan.blue_green {
                "blue_green"
            } else {
                "canary"
            }
            .into(),
            rings,
        },
        at_gate: false,
        http: prometheus_client(),
    };
    // Whatever ends the walk — a database error included — ends the
    // canary: it never keeps a share of traffic unwatched.
    let walked = match walk.report().await {
        Ok(()) => walk.steps(plan, log).await,
        Err(error) => Err(error),
    };
    let walked = match walked {
        Ok(walked) => walked,
        Err(error) => {
            if holds(app, run).await {
                walk.track.end(app, subject, log).await;
            }
            return Err(error);
        }
    };
    match walked {
        Ok(()) => {
            log.note("canary: every step passed; promoting it to stable")
                .await?;
            let outcomes = match &walk.track {
                Track::Local { spec, checkout } => {
                    let promoted = app.local.deploy(app.db, (**spec).clone(), checkout).await;
                    all(match promoted {
                        Ok(started) => Ok(format!(
                            "canary promoted after {} steps; now serving on 127.0.0.1:{}",
                            plan.steps.len(),
                            started.port
                        )),
                        Err(error) => Err(error.into()),
                    })
                }
                // The stable Deployments roll to the new version; the
                // canary serves beside them until they have.
                Track::Clusters { .. } => {
                    lifecycle::apply(
                        app,
                        subject,
                        deployment_id,
                        source,
                        Build::Checkout(checkout),
                        targets,
                    )
                    .await
                }
            };
            walk.track.end(app, subject, log).await;
            let failed = outcomes.iter().find_map(|o| o.result.as_ref().err());
            walk.view.phase = if failed.is_none() {
                "promoted"
            } else {
                "aborted"
            }
            .into();
            walk.view.weight = if failed.is_none() { 100 } else { 0 };
            walk.view.doing = "every step passed".into();
            if let Some(error) = failed {
                walk.view.reason = Some(format!("the promoted version did not start: {error}"));
            }
            walk.report().await?;
            Ok(outcomes)
        }
        Err(stop) => {
            // Traffic back to stable first, then the canary goes — unless
            // the run went to another replica, whose attempt owns the
            // environment now (its canary, its clusters).
            if holds(app, run).await {
                walk.track.end(app, subject, log).await;
            }
            // Only a canary judged bad (or aborted by an admin) may pin the
            // environment; a cancelled run (superseded by a newer push,
            // cancelled, handed to another replica) says nothing of it.
            let (why, judged) = match stop {
                Stop::Aborted(why) => (why, true),
                Stop::Cancelled => ("the run was cancelled".to_string(), false),
            };
            let measurements = if walk.view.checks.is_empty() {
                String::new()
            } else {
                format!("; measured: {}", walk.view.checks.join("; "))
            };
            walk.view.phase = "aborted".into();
            walk.view.weight = 0;
            walk.view.reason = Some(why.clone());
            walk.report().await?;
            log.note(&if plan.blue_green {
                format!("blue/green aborted: {why}; switched back, every request goes to the old version again")
            } else {
                format!("canary aborted: {why}; every request goes to the stable version again")
            })
            .await?;
            Ok(walk
                .track
                .targets()
                .into_iter()
                .map(|target| TargetOutcome {
                    target,
                    started,
                    result: Err(TargetError::Aborted {
                        why: format!("{why}{measurements}"),
                        judged,
                    }),
                })
                .collect())
        }
    }
}

/// Whether this replica still holds the run (a database error counts as
/// holding it: a canary is never left unwatched on a doubt).
pub(super) async fn holds(app: &Delivery<'_>, run: Holder<'_>) -> bool {
    db::runs::holds(app.db.pool(), run).await.unwrap_or(true)
}

/// Asks Prometheus: no redirects followed, no proxy from the environment.
fn prometheus_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Between two rings of a rollout: the ring just rolled out serves for
/// `pause_seconds` (Gantry's clock) and passes `analysis`, with an admin's
/// pause, promote (on at once) and abort heard as during a canary. `Ok(None)`
/// when the next ring may go; `Some((why, judged))` when it must not.
#[allow(clippy::too_many_arguments)]
pub async fn soak_ring(
    app: &Delivery<'_>,
    subject: &Subject<'_>,
    run: Holder<'_>,
    (kubernetes, ring): (&lifecycle::Kubernetes, &[String]),
    (pause_seconds, analysis): (u64, Option<&Analysis>),
    view: RolloutView,
    log: &mut LogSink<'_>,
    cancel: &CancellationToken,
) -> Result<(Option<(String, bool)>, RolloutView), crate::db::QueryError> {
    let mut steps = Vec::new();
    if pause_seconds > 0 {
        steps.push(CanaryStep::Pause(Some(pause_seconds)));
    }
    if let Some(analysis) = analysis {
        steps.push(CanaryStep::Analysis(analysis.clone()));
    }
    let plan = CanaryPlan {
        steps,
        on_abort: Default::default(),
        blue_green: false,
    };
    let mut walk = Walk {
        app,
        subject,
        run,
        cancel,
        track: Track::Clusters {
            kubernetes,
            targets: ring,
        },
        view,
        at_gate: false,
        http: prometheus_client(),
    };
    walk.view.steps = u32::try_from(plan.steps.len()).unwrap_or(u32::MAX);
    walk.view.step = 0;
    walk.view.checks.clear();
    let stopped = match walk.steps(&plan, log).await? {
        Ok(()) => None,
        Err(Stop::Aborted(why)) => Some((why, true)),
        Err(Stop::Cancelled) => Some(("the run was cancelled".to_string(), false)),
    };
    Ok((stopped, walk.view))
}

/// A canary being walked, and what its run page shows of it.
struct Walk<'w> {
    app: &'w Delivery<'w>,
    subject: &'w Subject<'w>,
    run: Holder<'w>,
    cancel: &'w CancellationToken,
    track: Track<'w>,
    view: RolloutView,
    /// At a `pause: {}`, which an admin's promote passes.
    at_gate: bool,
    /// Asks Prometheus.
    http: reqwest::Client,
}

impl Walk<'_> {
    /// Writes where the canary stands, for its run page.
    async fn report(&self) -> Result<(), crate::db::QueryError> {
        let json = serde_json::to_string(&self.view).unwrap_or_default();
        db::runs::set_rollout_state(self.app.db.pool(), self.run.run_id, &json).await
    }

    async fn command(&self) -> Result<Option<String>, crate::db::QueryError> {
        db::runs::rollout_command(self.app.db.pool(), self.run.run_id).await
    }

    async fn clear_command(&self) -> Result<(), crate::db::QueryError> {
        db::runs::set_rollout_command(self.app.db.pool(), self.run.run_id, None).await
    }

    /// Walks the steps; `Ok(())` when all passed.
    async fn steps(
        &mut self,
        plan: &CanaryPlan,
        log: &mut LogSink<'_>,
    ) -> Result<Result<(), Stop>, crate::db::QueryError> {
        let (app, subject) = (self.app, self.subject);
        for (n, step) in plan.steps.iter().enumerate() {
            let position = n + 1;
            self.view.step = u32::try_from(position).unwrap_or(u32::MAX);
            match step {
                CanaryStep::Weight(weight) => {
                    self.view.doing = format!("setting the canary's share to {weight} %");
                    self.report().await?;
                    let placed = match self.track.set_weight(app, subject, *weight).await {
                        Ok(_) if plan.blue_green => "switched: every request goes to the new version; the old one keeps running for an instant switch back".to_string(),
                        Ok(placed) => placed,
                        Err(why) => {
                            return Ok(Err(Stop::Aborted(format!(
                                "the canary did not take {weight} %: {why}"
                            ))));
                        }
                    };
                    self.view.weight = *weight;
                    self.view.doing = placed.clone();
                    self.report().await?;
                    log.note(&format!("canary step {position}: {placed}"))
                        .await?;
                }
                CanaryStep::Pause(Some(seconds)) => {
                    self.view.doing = if plan.blue_green {
                        format!(
                            "the old version is kept for {seconds}s: abort switches back at once"
                        )
                    } else {
                        format!("a pause of {seconds}s")
                    };
                    self.report().await?;
                    if plan.blue_green {
                        log.note(&format!("blue/green: {}", self.view.doing))
                            .await?;
                    } else {
                        log.note(&format!("canary step {position}: pause for {seconds}s"))
                            .await?;
                    }
                    let until = app.clock.now_millis().saturating_add(
                        i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
                    );
                    // A blue/green keep and a ring's soak are waits an
                    // admin may end early with a promote.
                    let promotable = plan.blue_green || !self.view.rings.is_empty();
                    self.at_gate = promotable;
                    loop {
                        if let Some(stop) = self.interrupted(log).await? {
                            self.at_gate = false;
                            return Ok(Err(stop));
                        }
                        if app.clock.now_millis() >= until {
                            break;
                        }
                        if promotable && self.command().await?.as_deref() == Some("promote") {
                            self.clear_command().await?;
                            log.note("promoted by an admin: the wait ends here").await?;
                            break;
                        }
                        tokio::time::sleep(LOOK_EVERY).await;
                    }
                    self.at_gate = false;
                }
                CanaryStep::Pause(None) => {
                    self.at_gate = true;
                    self.view.phase = "waiting".into();
                    self.view.doing = "waiting for an admin to promote".into();
                    self.report().await?;
                    log.note(&format!(
                        "canary step {position}: paused until an admin promotes (POST /api/v1/runs/{}/rollout {{\"action\": \"promote\"}})",
                        self.run.run_id
                    ))
                    .await?;
                    loop {
                        if let Some(stop) = self.interrupted(log).await? {
                            return Ok(Err(stop));
                        }
                        if self.command().await?.as_deref() == Some("promote") {
                            self.clear_command().await?;
                            self.at_gate = false;
                            self.view.phase = "running".into();
                            self.report().await?;
                            log.note("canary: promoted by an admin").await?;
                            break;
                        }
                        tokio::time::sleep(LOOK_EVERY).await;
                    }
                }
                CanaryStep::Analysis(analysis) => {
                    self.view.doing = format!(
                        "analysis: {} successful checks of {}s needed ({})",
                        analysis.count,
                        analysis.interval_seconds,
                        thresholds(analysis)
                    );
                    self.report().await?;
                    log.note(&format!(
                        "canary step {position}: analysis, {} successful checks of {}s needed",
                        analysis.count, analysis.interval_seconds
                    ))
                    .await?;
                    if let Some(stop) = self.analyse(analysis, log).await? {
                        return Ok(Err(stop));
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Runs one analysis to its end; `Some` when it stops the canary.
    async fn analyse(
        &mut self,
        analysis: &Analysis,
        log: &mut LogSink<'_>,
    ) -> Result<Option<Stop>, crate::db::QueryError> {
        let (app, subject) = (self.app, self.subject);
        let mut tally = Tally::default();
        let mut check = 0u32;
        let proxy = analysis.measures_requests() && matches!(self.track, Track::Local { .. });
        loop {
            check += 1;
            // A fresh window for both versions.
            if proxy {
                let _ = app
                    .local
                    .take_sample(subject.app, subject.environment, Version::Canary);
                let _ = app
                    .local
                    .take_sample(subject.app, subject.environment, Version::Stable);
            }
            let until =
                tokio::time::Instant::now() + Duration::from_secs(analysis.interval_seconds);
            while tokio::time::Instant::now() < until {
                if let Some(stop) = self.interrupted(log).await? {
                    return Ok(Some(stop));
                }
                tokio::time::sleep(LOOK_EVERY.min(until - tokio::time::Instant::now())).await;
            }
            let mut checks = Vec::new();
            let mut read = Vec::new();
            if proxy {
                let canary =
                    app.local
                        .take_sample(subject.app, subject.environment, Version::Canary);
                let stable =
                    app.local
                        .take_sample(subject.app, subject.environment, Version::Stable);
                checks.push(judge(analysis, &canary));
                read.push(format!(
                    "canary {}; stable {}",
                    canary.describe(),
                    stable.describe()
                ));
            }
            if let (Some(step), Track::Local { .. }) = (&analysis.step, &self.track) {
                let (judged, said) = step::check(app.local, subject, step, self.cancel).await;
                checks.push(judged);
                read.push(said);
            }
            if let Some(query) = &analysis.prometheus {
                let scope = prometheus::Scope {
                    app: subject.app,
                    environment: subject.environment,
                    namespace: self.track.namespace(),
                };
                let (judged, said) = prometheus::check(&self.http, query, &scope).await;
                checks.push(judged);
                read.push(said);
            }
            let judged = analysis::combine(checks);
            let verdict = match &judged {
                Check::Success => "success".to_string(),
                Check::Failure(why) => format!("failure ({why})"),
                Check::Inconclusive(why) => format!("inconclusive ({why})"),
            };
            let line = format!("check {check}: {} → {verdict}", read.join("; "));
            log.note(&format!("canary analysis {line}")).await?;
            self.view.checks.push(line);
            self.report().await?;
            match tally.add(analysis, &judged) {
                Standing::Going => {}
                Standing::Passed => return Ok(None),
                Standing::Failed(why) => {
                    return Ok(Some(Stop::Aborted(format!("analysis failed: {why}"))));
                }
            }
        }
    }

    /// What stops the canary where it waits: the run cancelled, an
    /// admin's abort, the canary's process gone. An admin's pause holds it
    /// here (its weight kept) until they promote (it goes on) or abort.
    async fn interrupted(
        &mut self,
        log: &mut LogSink<'_>,
    ) -> Result<Option<Stop>, crate::db::QueryError> {
        let mut paused = false;
        loop {
            if self.cancel.is_cancelled() {
                return Ok(Some(Stop::Cancelled));
            }
            if let Some(status) = self.track.exited(self.app, self.subject) {
                return Ok(Some(Stop::Aborted(format!("the canary exited ({status})"))));
            }
            match self.command().await?.as_deref() {
                Some("abort") => return Ok(Some(Stop::Aborted("aborted by an admin".into()))),
                Some("pause") if !paused => {
                    paused = true;
                    self.view.phase = "paused".into();
                    self.report().await?;
                    log.note(
                        "canary: paused by an admin; it holds its weight until promoted or aborted",
                    )
                    .await?;
                }
                Some("promote") if paused => {
                    self.clear_command().await?;
                    self.view.phase = "running".into();
                    self.report().await?;
                    log.note("canary: resumed by an admin").await?;
                    return Ok(None);
                }
                _ if paused => {}
                // Promote means "past a `pause: {}`" (whose step reads it)
                // or "on from a pause"; anywhere else it is not kept for a
                // later gate.
                Some("promote") if !self.at_gate => {
                    self.clear_command().await?;
                    log.note("canary: a promote applies at a `pause: {}` or to a paused canary; this step goes on as it is")
                        .await?;
                    return Ok(None);
                }
                _ => return Ok(None),
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}

/// `5xx ≤ 1.0 %, p95 ≤ 300 ms, at least 50 requests a check`.
fn thresholds(analysis: &Analysis) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = analysis.max_error_rate {
        parts.push(format!("5xx ≤ {:.1} %", rate * 100.0));
    }
    if let Some(p95) = analysis.max_p95_ms {
        parts.push(format!("p95 ≤ {p95} ms"));
    }
    if analysis.measures_requests() {
        parts.push(format!(
            "at least {} requests a check",
            analysis.min_requests
        ));
    }
    if let Some(query) = &analysis.prometheus {
        parts.push(format!("prometheus ≤ {}", query.threshold));
    }
    if analysis.step.is_some() {
        parts.push("its step passes".to_string());
    }
    parts.join(", ")
}
