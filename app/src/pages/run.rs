//! One run: what it built, its steps with live logs, and its test results
//! (failures first). Logs stream over server-sent events once the page is
//! hydrated; without WASM each step links to its plain-text log.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{CancelRun, get_run, get_run_diff};
use crate::components::commits::{count, uncovered_panel};
use crate::components::diff::diff_section;
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, PageHeader, Time};
use crate::components::outcome::{Outcome, report};
use crate::dto::{
    Me, Role, RunArtifact, RunAttempt, RunDetail, RunOutput, RunState, RunSummary, StepState,
    StepSummary, TestReportSummary,
};
use crate::format::{duration, short_sha};

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok())
    };
    let detail = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_run(id).await,
            None => Ok(None),
        }
    });
    view! {
        <PageHeader title="Run" lead="Steps, logs and test results of one pipeline run." tab=false />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(Some(detail)) => run_view(detail).into_any(),
                    Ok(None) => {
                        view! {
                            <leptos_meta::Title text="Run not found" />
                            <p class="notice">"There is no such run."</p>
                        }
                            .into_any()
                    }
                    Err(error) => {
                        view! { <div class="notice notice-error" role="alert">{crate::format::plain(&error)}</div> }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

fn run_view(detail: RunDetail) -> impl IntoView {
    let run = detail.run.clone();
    let me = use_me();
    let superseded = run
        .superseded_by
        .filter(|_| run.state == crate::dto::RunState::Superseded);
    let ended = (!matches!(
        run.state,
        RunState::Queued | RunState::WaitingForApproval | RunState::Running
    ))
    .then_some(());
    view! {
        <leptos_meta::Title text=format!("Run #{} · {}", run.id, run.app) />
        {detail.warnings.iter().map(|warning| {
            view! { <p class="notice notice-error" role="alert" data-testid="isolation-warning">{warning.clone()}</p> }
        }).collect_view()}
        {detail.from_fork.clone().map(|fork| {
            view! {
                <p class="notice notice-warn" role="status" data-testid="from-fork">
                    {format!("This commit comes from the fork {fork}: an admin allows each new head, and its steps get no secrets.")}
                </p>
            }
        })}
        <section class="run-summary" aria-label="Run">
            <dl class="facts">
                <dt>"Run"</dt>
                <dd class="mono">{format!("#{}", run.id)}</dd>
                <dt>"State"</dt>
                <dd data-testid="run-state">
                    <Badge state=run.state.as_str() />
                </dd>
                <dt>"App / environment"</dt>
                <dd>{format!("{} / {}", run.app, run.environment)}</dd>
                <dt>"Branch"</dt>
                <dd class="mono">{run.branch.clone()}</dd>
                <dt>"Commit"</dt>
                <dd>
                    <span class="mono" title=run.commit_sha.clone()>{short_sha(&run.commit_sha).to_string()}</span>
                    " "
                    {detail.commit_message.clone().unwrap_or_default()}
                    " — "
                    {detail.commit_author.clone().unwrap_or_default()}
                </dd>
                <dt>"Pipeline repo"</dt>
                <dd class="mono" title=detail.pipeline_sha.clone()>{short_sha(&detail.pipeline_sha).to_string()}</dd>
                <dt>"Started"</dt>
                <dd>
                    <Time at=run.created_at />
                    {format!(" by {}", crate::pages::runs::trigger_name(&detail.trigger))}
                    {run.actor.clone().map(|actor| format!(" · {actor}"))}
                </dd>
                <dt>"Pushed by"</dt>
                <dd data-testid="run-pushed-by">
                    {detail.pushed_by.clone().unwrap_or_else(|| {
                        "not known: the git remote does not say (the author line is the pusher's to write)".into()
                    })}
                </dd>
            </dl>
            {match superseded {
                Some(by) => {
                    view! {
                        <p class="notice" role="status" data-testid="run-superseded">
                            "Superseded by "
                            <a href=format!("/runs/{by}")>{format!("run #{by}")}</a>
                            {format!(": a newer push to {} took its place before it finished.", run.environment)}
                        </p>
                    }
                        .into_any()
                }
                None => {
                    detail
                        .error
                        .clone()
                        .map(|error| view! { <p class="notice notice-error" data-testid="run-error">{error}</p> })
                        .into_any()
                }
            }}
            {run_actions(
                me,
                run.clone(),
                ended.is_none(),
                detail
                    .rollout
                    .as_ref()
                    .is_some_and(|r| matches!(r.phase.as_str(), "running" | "paused" | "waiting")),
            )}
        </section>
        {timeline_view(&run, &detail.steps, &detail.attempts)}
        {detail
            .uncovered
            .clone()
            .filter(|u| {
                (u.total > 0 || u.rewinds_from.is_some())
                    && run.state == crate::dto::RunState::WaitingForApproval
            })
            .map(|uncovered| {
                let title = match &uncovered.rewinds_from {
                    Some(live) => format!(
                        "What approving does: {} goes back from {} (what it runs now); {} no approval covers",
                        run.environment,
                        short_sha(live),
                        count(&uncovered)
                    ),
                    None => format!("What approving covers: {} no approval covers yet", count(&uncovered)),
                };
                uncovered_panel(
                    uncovered,
                    title,
                    "Approving this run takes these commits live in this environment and counts as their approval.",
                    "run-uncovered",
                )
            })}
        {detail.rollout.clone().map(rollout_view)}
        {attempts_view(detail.attempts.clone())}
        {(run.state == crate::dto::RunState::WaitingForApproval).then(|| diff_view(run.id))}
        {tests_view(detail.reports.clone())}
        {artifact_view(detail.artifact.clone(), detail.outputs.clone(), detail.promotion.clone())}
        <h2>"Steps"</h2>
        <RunSteps run_id=run.id steps=detail.steps.clone() />
    }
}

/// What a person may do with a run: approve or reject a held one, cancel
/// an unfinished one (admins of the app); run an ended one again
/// (developers of the app — planned like a push, so approvals hold it
/// alike; a rollback is rolled back again from the ledger instead).
fn run_actions(
    me: Option<Resource<Result<Option<Me>, ServerFnError>>>,
    run: RunSummary,
    unfinished: bool,
    canary: bool,
) -> impl IntoView {
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let run = run.clone();
                Suspend::new(async move {
                    let me = signed_in(me).await?;
                    if !unfinished {
                        let again = matches!(
                            run.state,
                            RunState::Failed | RunState::Cancelled | RunState::Succeeded
                        ) && run.trigger != "rollback"
                            && me.can(Role::Developer, Some(&run.app));
                        return again.then(|| view! {
                            <div class="run-actions" data-testid="run-actions">
                                {rerun_form(run.id, me.csrf.clone())}
                            </div>
                        }.into_any());
                    }
                    if !me.can(Role::Admin, Some(&run.app)) {
                        return None;
                    }
                    let held = run.state == RunState::WaitingForApproval;
                    Some(view! {
                        <div class="run-actions" data-testid="run-actions">
                            {held.then(|| view! {
                                <crate::pages::approvals::RunDecision id=run.id csrf=me.csrf.clone() />
                            })}
                            {canary.then(|| rollout_forms(run.id, &me.csrf))}
                            <CancelButton id=run.id csrf=me.csrf.clone() />
                        </div>
                    }.into_any())
                })
            }}
        </Suspense>
    }
}

/// An admin's word to a running canary (action forms: page_updates.js
/// posts them, no WASM).
fn rollout_forms(id: i64, csrf: &str) -> impl IntoView + use<> {
    let form = |action: &'static str, label: &'static str, class: &'static str| {
        view! {
            <form method="post" action="/fn/rollout_run" class="inline" data-action="" data-done="rollout-outcome" data-error="rollout-error">
                <input type="hidden" name="csrf" value=csrf.to_string() />
                <input type="hidden" name="id" value=id />
                <input type="hidden" name="action" value=action />
                <button type="submit" class=class data-testid=format!("rollout-{action}")>{label}</button>
            </form>
        }
    };
    (
        form("promote", "Promote rollout", ""),
        form("pause", "Pause rollout", ""),
        form("abort", "Abort: back to stable", "danger"),
    )
}

/// A canary's progress: phase, step, weight, each analysis check against
/// its thresholds.
fn rollout_view(rollout: crate::dto::RolloutView) -> impl IntoView {
    let weight = format!("{} %", rollout.weight);
    // A ring's rollout without a canary has no steps: what it does is said.
    let step = if rollout.steps == 0 {
        rollout.doing.clone()
    } else if rollout.step == 0 {
        format!("starting ({} steps)", rollout.steps)
    } else {
        format!("{} of {}: {}", rollout.step, rollout.steps, rollout.doing)
    };
    let weighted = matches!(rollout.kind.as_str(), "canary" | "blue_green");
    let heading = match rollout.kind.as_str() {
        _ if !rollout.rings.is_empty() => "Rollout",
        "blue_green" => "Blue/green",
        _ => "Canary",
    };
    let rings = (!rollout.rings.is_empty()).then(|| {
        view! {
            <ol class="rollout-rings" data-testid="rollout-rings">
                {rollout
                    .rings
                    .iter()
                    .map(|ring| {
                        let state = ring.state.replace(' ', "-");
                        view! {
                            <li>
                                <span class="mono">{ring.targets.join(", ")}</span>
                                " "
                                <span class=format!("badge ring-{state}")>{ring.state.clone()}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
        }
    });
    view! {
        <section class="rollout" aria-labelledby="rollout-heading" data-testid="run-rollout">
            <h2 id="rollout-heading">{heading}</h2>
            <dl class="facts">
                {rings.map(|rings| view! {
                    <dt>"Rings"</dt>
                    <dd>{rings}</dd>
                })}
                <dt>"Phase"</dt>
                <dd><span class=format!("badge rollout-{}", rollout.phase)>{rollout.phase.clone()}</span></dd>
                <dt>{if rollout.steps == 0 { "Now" } else { "Step" }}</dt>
                <dd>{step}</dd>
                {weighted.then(|| view! {
                    <dt>"Weight"</dt>
                    <dd>
                        <meter min="0" max="100" value=rollout.weight.to_string() aria-label="the new version's share of requests"></meter>
                        " "
                        {weight}
                    </dd>
                })}
                {rollout.reason.clone().map(|why| view! {
                    <dt>"Aborted"</dt>
                    <dd class="step-error" data-testid="rollout-reason">{why}</dd>
                })}
            </dl>
            {(!rollout.checks.is_empty()).then(|| view! {
                <ol class="rollout-checks" data-testid="rollout-checks">
                    {rollout.checks.iter().map(|c| view! { <li class="mono">{c.clone()}</li> }).collect_view()}
                </ol>
            })}
        </section>
    }
}

/// Stops the run (an island: the form acts in the browser).
#[island]
fn CancelButton(id: i64, csrf: String) -> impl IntoView {
    let cancel = ServerAction::<CancelRun>::new();
    report(cancel, |result| match result {
        Ok(outcome) => Outcome::done("cancel-outcome", outcome),
        Err(error) => Outcome::failed("cancel-error", error),
    });
    view! {
        <ActionForm action=cancel attr:class="inline">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
            <button type="submit" class="danger" data-testid="cancel-run">"Cancel run"</button>
        </ActionForm>
    }
}

/// Runs the commit again (an action form: page_updates.js posts it, no
/// WASM); the browser goes to the new run.
fn rerun_form(id: i64, csrf: String) -> impl IntoView {
    view! {
        <form method="post" action="/fn/rerun_run" class="inline" data-action="" data-go="" data-error="rerun-error">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
            <button type="submit" data-testid="rerun">"Re-run"</button>
        </form>
    }
}

/// When each part of the run happened, on one time axis: the wait in the
/// queue (or for an approval), then each step's bar; later attempts mark
/// where a replica took over. Bars are decoration: every row says its
/// times in words too.
fn timeline_view(
    run: &RunSummary,
    steps: &[StepSummary],
    attempts: &[RunAttempt],
) -> impl IntoView + use<> {
    let now = crate::format::now_millis();
    let start = run.created_at;
    let first_step = steps.iter().filter_map(|s| s.started_at).min();
    let end = run
        .finished_at
        .into_iter()
        .chain(
            steps
                .iter()
                .filter_map(|s| s.finished_at.or(s.started_at.map(|_| now))),
        )
        .max()
        .unwrap_or(now)
        .max(start + 1);
    let span = (end - start) as f64;
    // Positions on a 1,000-unit axis, drawn in SVG: the page's
    // Content-Security-Policy (rightly) refuses inline styles.
    let place = |from: i64, to: i64| {
        let x = ((from - start) as f64 / span * 1000.0).clamp(0.0, 1000.0);
        let width = ((to - from) as f64 / span * 1000.0).clamp(4.0, 1000.0 - x);
        (format!("{x:.1}"), format!("{width:.1}"))
    };
    let track = |bars: Vec<AnyView>| {
        view! {
            <svg class="timeline-track" viewBox="0 0 1000 12" preserveAspectRatio="none" aria-hidden="true">
                {bars}
            </svg>
        }
    };
    let waited = first_step.or(run.started_at).unwrap_or(end);
    let queue_label = if run.state == RunState::WaitingForApproval {
        "Waiting for approval"
    } else {
        "Queued"
    };
    let (wait_x, wait_width) = place(start, waited);
    let mut wait_bars = vec![
        view! { <rect class="timeline-bar timeline-wait" x=wait_x y="0" width=wait_width height="12"></rect> }
            .into_any(),
    ];
    wait_bars.extend(attempts.iter().skip(1).map(|a| {
        let (x, _) = place(a.started_at, a.started_at);
        view! {
            <rect class="timeline-mark" x=x y="0" width="4" height="12">
                <title>{format!("attempt {} on {}", a.attempt, a.replica)}</title>
            </rect>
        }
        .into_any()
    }));
    let rows = steps
        .iter()
        .map(|step| {
            let bar = step.started_at.map(|from| {
                let to = step.finished_at.unwrap_or(now);
                (place(from, to), duration(to - from))
            });
            let state = step.state.as_str();
            let said = match (&bar, step.state) {
                (Some((_, took)), StepState::Running) => format!("running for {took}"),
                (Some((_, took)), _) => took.clone(),
                (None, _) => "did not run".to_string(),
            };
            let bars: Vec<AnyView> = bar
                .map(|((x, width), _)| {
                    view! {
                        <rect class=format!("timeline-bar state-{state}") x=x y="0" width=width height="12"></rect>
                    }
                    .into_any()
                })
                .into_iter()
                .collect();
            view! {
                <li class="timeline-row" data-testid="timeline-step">
                    <span class="timeline-label">{step.name.clone()}</span>
                    {track(bars)}
                    <span class="timeline-time">{said}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="run-timeline" aria-labelledby="timeline-heading" data-testid="run-timeline">
            <h2 id="timeline-heading">"Timeline"</h2>
            <ol class="timeline-rows">
                <li class="timeline-row">
                    <span class="timeline-label">{queue_label}</span>
                    {track(wait_bars)}
                    <span class="timeline-time">{duration(waited - start)}</span>
                </li>
                {rows}
            </ol>
            <p class="muted timeline-total">
                {match run.finished_at {
                    Some(finished) => format!("{} from the push to the end", duration(finished - start)),
                    None => format!("{} so far", duration(now - start)),
                }}
            </p>
        </section>
    }
}

/// What the run builds — the app's source tree built by the pipeline
/// commit (one artifact for every commit with that tree) — and what its
/// steps declared through `$GANTRY_OUTPUTS`.
fn artifact_view(
    artifact: Option<RunArtifact>,
    outputs: Vec<RunOutput>,
    promotion: Option<crate::dto::ArtifactStatus>,
) -> impl IntoView {
    (artifact.is_some() || !outputs.is_empty()).then(|| {
        view! {
            <section class="artifact" aria-labelledby="artifact-heading" data-testid="run-artifact">
                <h2 id="artifact-heading">"Artifact"</h2>
                <dl class="facts">
                    {artifact.map(|a| {
                        view! {
                            <dt>"Source tree"</dt>
                            <dd class="mono" title=a.source_tree.clone()>{short_sha(&a.source_tree).to_string()}</dd>
                            <dt>"Pipeline"</dt>
                            <dd class="mono" title=a.pipeline_sha.clone()>{short_sha(&a.pipeline_sha).to_string()}</dd>
                        }
                    })}
                    {promotion.map(crate::components::artifact::artifact_facts)}
                    {outputs.into_iter().map(|o| {
                        view! {
                            <dt class="mono" data-testid="run-output">{o.name}</dt>
                            <dd>
                                <span class="mono">{o.value}</span>
                                <span class="muted">{format!(" · from {}", o.step)}</span>
                            </dd>
                        }
                    }).collect_view()}
                </dl>
            </section>
        }
    })
}

/// The run's attempts, when it had more than one: which replica ran each,
/// from which step, and why it ended without ending the run.
fn attempts_view(attempts: Vec<RunAttempt>) -> impl IntoView {
    (attempts.len() > 1).then(|| {
        view! {
            <h2>"Attempts"</h2>
            <ol class="attempts" data-testid="run-attempts">
                {attempts.into_iter().map(|a| {
                    let from = a.from_step_name.clone().unwrap_or_else(|| "the first step".into());
                    view! {
                        <li data-testid="run-attempt">
                            {format!("Attempt {} on replica {}, from {from}, started ", a.attempt, a.replica)}
                            <Time at=a.started_at />
                            {a.interrupted.clone().map(|why| view! { <span class="step-error">{format!(" — ended: {why}")}</span> })}
                        </li>
                    }
                }).collect_view()}
            </ol>
        }
    })
}

/// The steps with their logs, streamed while the run goes on (an island).
/// Live refreshes of the page keep it as it is (`data-island-key`), so a
/// search or follow mode survives them; its own stream keeps it current.
#[island]
fn RunSteps(run_id: i64, steps: Vec<StepSummary>) -> impl IntoView {
    let logs = LiveLogs::new();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| logs.connect(run_id));
    view! {
        <div data-island-key=format!("run-{run_id}")>
            {log_tools(logs)}
            <ol class="steps">
                {steps.into_iter().map(|step| step_view(run_id, step, logs)).collect_view()}
            </ol>
        </div>
    }
}

/// Search (lines without the text are hidden, matches marked) and follow
/// (the page stays at the newest line as the log grows).
fn log_tools(logs: LiveLogs) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        logs.logs.track();
        if logs.follow.get()
            && let Some(window) = web_sys::window()
            && let Some(body) = window.document().and_then(|d| d.body())
        {
            window.scroll_to_with_x_and_y(0.0, f64::from(body.scroll_height()));
        }
    });
    view! {
        <div class="log-tools" role="search">
            <label>
                <span>"Search the logs"</span>
                <input
                    type="search"
                    data-testid="log-search"
                    prop:value=move || logs.search.get()
                    on:input=move |event| logs.search.set(event_target_value(&event))
                />
            </label>
            <label class="inline">
                <input
                    type="checkbox"
                    data-testid="log-follow"
                    prop:checked=move || logs.follow.get()
                    on:change=move |event| logs.follow.set(event_target_checked(&event))
                />
                " Follow the log"
            </label>
        </div>
    }
}

/// A step's log with ANSI colours; with a search, lines without it are
/// hidden and the others marked.
fn log_lines(text: &str, search: &str) -> impl IntoView + use<> {
    let needle = search.trim().to_lowercase();
    crate::ansi::lines(text)
        .into_iter()
        .map(|segments| {
            let hit = !needle.is_empty()
                && crate::ansi::plain(&segments)
                    .to_lowercase()
                    .contains(&needle);
            let hidden = !needle.is_empty() && !hit;
            view! {
                <span class="log-line" class:match=hit hidden=hidden>
                    {segments
                        .into_iter()
                        .map(|segment| {
                            if segment.class.is_empty() {
                                segment.text.into_any()
                            } else {
                                view! { <span class=segment.class>{segment.text}</span> }.into_any()
                            }
                        })
                        .collect_view()}
                    "\n"
                </span>
            }
        })
        .collect_view()
}

/// For a held run: what it would change on its clusters, object by object.
fn diff_view(run_id: i64) -> impl IntoView {
    let diff = Resource::new(move || run_id, get_run_diff);
    diff_section("What this run would change", diff)
}

fn step_view(run_id: i64, step: StepSummary, logs: LiveLogs) -> impl IntoView {
    let step_id = step.id;
    let state = move || {
        logs.step_state(step_id)
            .unwrap_or_else(|| step.state.as_str().to_string())
    };
    let text = move || logs.text(step_id);
    view! {
        <li class="step" data-step=step.name.clone()>
            <details open=step.state != crate::dto::StepState::Succeeded>
                <summary>
                    <span class="step-name">{step.name.clone()}</span>
                    " "
                    {move || {
                        let state = state();
                        view! { <span class=format!("badge state-{state}")>{state.replace('_', " ")}</span> }
                    }}
                    {step.exit_code.map(|code| view! { <span class="muted">{format!(" exit {code}")}</span> })}
                    {
                        // A skipped step says why, as a fact, not a failure.
                        let class = if step.state == crate::dto::StepState::Skipped { "muted" } else { "step-error" };
                        step.error.clone().map(|error| view! { <span class=class>{format!(" — {error}")}</span> })
                    }
                    {step.log_truncated.then(|| view! { <span class="muted">" (log truncated)"</span> })}
                </summary>
                <pre class="log" data-testid="step-log" role="region" aria-label=format!("Log of {}", step.name)>
                    {move || log_lines(&text(), &logs.search.get())}
                </pre>
                <a class="muted" href=format!("/api/v1/runs/{run_id}/steps/{step_id}/log")>"Plain-text log"</a>
            </details>
        </li>
    }
}

fn tests_view(reports: Vec<TestReportSummary>) -> impl IntoView {
    if reports.is_empty() {
        return ().into_any();
    }
    let (passed, failed, skipped) = reports.iter().fold((0, 0, 0), |(p, f, s), r| {
        (p + r.passed, f + r.failed, s + r.skipped)
    });
    let failures: Vec<_> = reports.into_iter().flat_map(|r| r.failures).collect();
    let failed_class = if failed > 0 {
        "badge state-failed"
    } else {
        "badge"
    };
    view! {
        <section class="tests" aria-label="Test results">
            <h2>"Tests"</h2>
            <p data-testid="test-totals">
                <span class="badge state-succeeded">{format!("{passed} passed")}</span>
                " "
                <span class=failed_class>{format!("{failed} failed")}</span>
                " "
                <span class="badge">{format!("{skipped} skipped")}</span>
            </p>
            <ul class="failures">
                {failures
                    .into_iter()
                    .map(|failure| {
                        view! {
                            <li>
                                <strong class="mono">{format!("{} › {}", failure.suite, failure.case)}</strong>
                                <pre>{failure.message}</pre>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

/// The logs and states of a run as they stream in.
#[derive(Clone, Copy)]
struct LiveLogs {
    logs: RwSignal<Vec<(i64, i64, String)>>,
    steps: RwSignal<Vec<(i64, String)>>,
    search: RwSignal<String>,
    follow: RwSignal<bool>,
}

impl LiveLogs {
    fn new() -> LiveLogs {
        LiveLogs {
            logs: RwSignal::new(Vec::new()),
            steps: RwSignal::new(Vec::new()),
            search: RwSignal::new(String::new()),
            follow: RwSignal::new(false),
        }
    }

    fn text(&self, step_id: i64) -> String {
        self.logs.with(|logs| {
            logs.iter()
                .filter(|(s, _, _)| *s == step_id)
                .map(|(_, _, t)| t.as_str())
                .collect()
        })
    }

    fn step_state(&self, step_id: i64) -> Option<String> {
        self.steps.with(|steps| {
            steps
                .iter()
                .rev()
                .find(|(s, _)| *s == step_id)
                .map(|(_, state)| state.clone())
        })
    }

    /// Streams `/api/v1/runs/<id>/events`; chunks already seen (by step and
    /// sequence number) are skipped after a reconnect.
    #[cfg(feature = "hydrate")]
    fn connect(self, run_id: i64) {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new(&format!("/api/v1/runs/{run_id}/events")) else {
            return;
        };
        let on_log = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                let Some(data) = event.data().as_string() else {
                    return;
                };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else {
                    return;
                };
                let (Some(step), Some(seq), Some(text)) = (
                    value["step_id"].as_i64(),
                    value["seq"].as_i64(),
                    value["text"].as_str(),
                ) else {
                    return;
                };
                self.logs.update(|logs| {
                    if !logs.iter().any(|(s, q, _)| *s == step && *q == seq) {
                        logs.push((step, seq, text.to_string()));
                    }
                });
            },
        );
        let on_step = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                let Some(data) = event.data().as_string() else {
                    return;
                };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else {
                    return;
                };
                if let (Some(step), Some(state)) =
                    (value["step_id"].as_i64(), value["state"].as_str())
                {
                    self.steps
                        .update(|steps| steps.push((step, state.to_string())));
                }
            },
        );
        let _ = source.add_event_listener_with_callback("log", on_log.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback("step", on_step.as_ref().unchecked_ref());
        // The page owns the stream for its lifetime; closing on cleanup.
        on_log.forget();
        on_step.forget();
        let source = send_wrapper::SendWrapper::new(source);
        on_cleanup(move || source.close());
    }
}
