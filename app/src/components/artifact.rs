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
