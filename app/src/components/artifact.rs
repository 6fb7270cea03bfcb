//! An artifact's standing wherever it is shown — the approval screen, the
//! run page, the ledger: where it was verified and for how long, whether
//! it was rejected, and what the environment asks of it.

use leptos::prelude::*;

use crate::components::list::Badge;
use crate::dto::{ArtifactStatus, PromotionGate, Verification};
use crate::format::{duration, short_sha};

/// `staging for 42 min 5 s, still serving`.
pub fn verified_text(verification: &Verification) -> String {
    format!(
        "{} for {}{}",
        verification.environment,
        duration(verification.healthy_for_millis),
        if verification.serving {
            ", still serving"
        } else {
            ""
        }
    )
}

/// Where it was verified, longest first, in one line.
pub fn verified_line(status: &ArtifactStatus) -> String {
    if status.verified.is_empty() {
        return "not verified anywhere yet".into();
    }
    let places: Vec<String> = status.verified.iter().map(verified_text).collect();
    format!("verified in {}", places.join("; "))
}

fn gate_badge(gate: &PromotionGate) -> impl IntoView + use<> {
    view! { <Badge state=gate.state.as_str() /> }
}

/// One cell of a table: the artifact, its gate and where it was verified.
pub fn artifact_cell(status: Option<ArtifactStatus>) -> impl IntoView {
    status.map(|status| {
        let gate = status.gate.clone();
        view! {
            <div class="artifact-cell" data-testid="artifact-cell">
                <span class="mono" title=status.source_tree.clone()>
                    {format!("#{} · tree {}", status.id, short_sha(&status.source_tree))}
                </span>
                " "
                {gate.as_ref().map(gate_badge)}
                <div class="state-detail" data-testid="artifact-gate">
                    {gate.map(|g| g.reason).unwrap_or_else(|| verified_line(&status))}
                </div>
            </div>
        }
    })
}

/// The facts of the run page's Artifact block (inside its `dl`).
pub fn artifact_facts(status: ArtifactStatus) -> impl IntoView {
    let verified = verified_line(&status);
    view! {
        {status.gate.map(|gate| {
            view! {
                <dt>"Promotion"</dt>
                <dd data-testid="artifact-gate">
                    {gate_badge(&gate)}
                    " "
                    {gate.reason}
                </dd>
            }
        })}
        <dt>"Verified"</dt>
        <dd data-testid="artifact-verified">{verified}</dd>
        {status.rejected.map(|r| {
            view! {
                <dt>"Rejected"</dt>
                <dd class="step-error" data-testid="artifact-rejected">
                    {format!("by {}: {}", r.by, r.reason)}
                </dd>
            }
        })}
        {status.promoted_from_run.map(|run| {
            view! {
                <dt>"Built by"</dt>
                <dd>
                    <a href=format!("/runs/{run}")>{format!("run #{run}")}</a>
                    " (promoted: this run's build steps were skipped)"
                </dd>
            }
        })}
    }
}

/// The app's stack as a graph, stage by stage in stack order: what each
/// serves (its artifact, where it was verified and for how long), what it
/// asks of what comes in, and what is held on its way there.
pub fn promotion_graph(graph: crate::dto::PromotionGraph) -> impl IntoView {
    let stages = graph
        .stages
        .into_iter()
        .enumerate()
        .map(|(n, stage)| {
            let edge = match (&stage.promote_from, &stage.requires) {
                (Some(from), Some(verified)) => Some(format!(
                    "promotes {from}'s build once verified in {verified}{}",
                    soak_words(stage.soak_millis)
                )),
                (Some(from), None) => Some(format!("promotes {from}'s build")),
                (None, Some(verified)) => Some(format!(
                    "needs it verified in {verified}{}",
                    soak_words(stage.soak_millis)
                )),
                (None, None) => None,
            };
            let serving = stage.serving.clone().map(|status| {
                let rejected = status.rejected.clone();
                view! {
                    <p class="stage-serving" data-testid="stage-serving">
                        <span class="mono" title=status.source_tree.clone()>
                            {format!("serves #{} · tree {}", status.id, short_sha(&status.source_tree))}
                        </span>
                        <span class="state-detail">{verified_line(&status)}</span>
                        {rejected.map(|r| view! { <span class="step-error">{format!("rejected by {}: {}", r.by, r.reason)}</span> })}
                    </p>
                }
            });
            let live = if stage.preview {
                format!("{} live", stage.live)
            } else if stage.live > 0 {
                "live".to_string()
            } else {
                "not live".to_string()
            };
            let held = stage
                .held
                .into_iter()
                .map(|held| {
                    let gate = held.promotion.as_ref().and_then(|p| p.gate.clone());
                    let reason = gate
                        .as_ref()
                        .map(|g| g.reason.clone())
                        .unwrap_or_else(|| "waits for approval".into());
                    view! {
                        <li data-testid="stage-held">
                            <a href=format!("/runs/{}", held.run_id)>{format!("run #{}", held.run_id)}</a>
                            {format!(" of {} ", short_sha(&held.commit_sha))}
                            {gate.as_ref().map(gate_badge)}
                            <span class="state-detail">{reason}</span>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <li class="stage" data-testid="promotion-stage" data-environment=stage.environment.clone()>
                    {(n > 0).then(|| view! { <span class="stage-arrow" aria-hidden="true">"→"</span> })}
                    <div class="stage-card">
                        <h3>
                            {stage.environment.clone()}
                            <span class="muted">{format!(" · {} · {live}", stage.branches)}</span>
                        </h3>
                        {edge.map(|edge| view! { <p class="stage-edge" data-testid="stage-edge">{edge}</p> })}
                        {(!stage.strategy.is_empty()).then(|| view! {
                            <p class="stage-strategy muted" data-testid="stage-strategy">
                                {format!("rolls out {}", stage.strategy)}
                                {(!stage.rings.is_empty()).then(|| format!(
                                    " · rings {}",
                                    stage.rings.iter().map(|ring| ring.join(", ")).collect::<Vec<_>>().join(" → ")
                                ))}
                            </p>
                        })}
                        {serving}
                        <ul class="stage-held">{held}</ul>
                    </div>
                </li>
            }
        })
        .collect_view();
    view! { <ol class="promotion-graph" data-testid="promotion-graph">{stages}</ol> }
}

fn soak_words(soak_millis: i64) -> String {
    if soak_millis > 0 {
        format!(" for {}", duration(soak_millis))
    } else {
        String::new()
    }
}
