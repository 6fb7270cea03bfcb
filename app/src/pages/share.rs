//! The tester page behind a share link: what the change is, its commits,
//! whether its tests pass (failures first), the preview to try, and a form
//! to say what the tester found. It works without an account where the
//! admin allows it; a visitor without one says their name.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{LeaveSharedFeedback, get_shared_preview};
use crate::components::feedback::feedback_list;
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, PageHeader};
use crate::components::outcome::report;
use crate::dto::{ChangeRequestState, ChangelogCommit, SharedPreview};
use crate::format::{short_sha, timestamp};
use crate::pages::change_request::reports_view;

#[component]
pub fn SharePage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let shared = Resource::new(token, get_shared_preview);
    let me = use_me();
    view! {
        <PageHeader
            title="Preview for testers"
            lead="A change waiting to be merged: try its preview and say what you found."
            tab=false
        />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                match shared.await {
                    Ok(shared) => shared_view(shared, token(), me.map(|me| me.csrf)).into_any(),
                    Err(error) => {
                        view! {
                            <leptos_meta::Title text="Share link" />
                            <div class="notice notice-error" role="alert" data-testid="share-error">
                                {crate::format::plain(&error)}
                            </div>
                        }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

fn shared_view(shared: SharedPreview, token: String, csrf: Option<String>) -> impl IntoView {
    let preview = match shared.preview_url.clone() {
        Some(url) => view! {
            <p>
                <a class="button-link primary" href=url data-testid="share-preview">
                    "Open the preview"
                </a>
                " "
                {shared.preview_state.map(|state| view! { <Badge state=state.as_str() /> })}
            </p>
        }
        .into_any(),
        None => {
            view! { <p>"The preview is not running yet; try again in a minute."</p> }.into_any()
        }
    };
    let run = shared.run.clone().map(|run| {
        view! {
            <p>
                {format!("Pipeline run #{} ", run.id)}
                <Badge state=run.state.as_str() />
            </p>
        }
    });
    let closed = match shared.state {
        ChangeRequestState::Merged => Some(
            "This change was merged: it is no longer waiting for testing, and its preview may be gone.",
        ),
        ChangeRequestState::Closed | ChangeRequestState::Rejected => Some(
            "This change request was closed without merging: nothing here needs testing any more.",
        ),
        _ => None,
    };
    view! {
        <leptos_meta::Title text=format!("Test: {} · {}", shared.title, shared.app) />
        {closed.map(|text| view! { <p class="notice notice-warn" role="status" data-testid="share-closed">{text}</p> })}
        <section class="panel" aria-labelledby="share-title">
            <h2 id="share-title" data-testid="share-title">{shared.title.clone()}</h2>
            <dl class="facts">
                <dt>"App"</dt>
                <dd>{shared.app.clone()}</dd>
                <dt>"Branches"</dt>
                <dd class="mono">{format!("{} → {}", shared.source_branch, shared.target_branch)}</dd>
                <dt>"Commit"</dt>
                <dd class="mono" data-testid="share-commit">
                    {shared.head_sha.as_deref().map(short_sha).unwrap_or("–").to_string()}
                </dd>
                <dt>"State"</dt>
                <dd>
                    <Badge state=shared.state.as_str() />
                </dd>
                <dt>"Link expires"</dt>
                <dd>{timestamp(shared.expires_at)}</dd>
            </dl>
            {(!shared.description.is_empty())
                .then(|| view! { <p class="description">{shared.description.clone()}</p> })}
            {preview}
        </section>
        <section class="panel" aria-labelledby="share-tests">
            <h2 id="share-tests">"Tests"</h2>
            {run}
            {reports_view(failures_first(shared.reports.clone()))}
        </section>
        <section class="panel" aria-labelledby="share-changes">
            <h2 id="share-changes">"What changed"</h2>
            {commit_list(shared.commits.clone())}
        </section>
        <section class="panel" aria-labelledby="share-feedback">
            <h2 id="share-feedback">"Feedback"</h2>
            {feedback_list(shared.feedback.clone())}
            {closed
                .is_none()
                .then(|| {
                    view! {
                        <FeedbackForm
                            token
                            signed_in=csrf.is_some()
                            csrf=csrf.unwrap_or_default()
                        />
                    }
                })}
        </section>
    }
}

/// Reports with failures come first: that is what a tester reads for.
fn failures_first(
    mut reports: Vec<crate::dto::TestReportSummary>,
) -> Vec<crate::dto::TestReportSummary> {
    reports.sort_by_key(|r| std::cmp::Reverse(r.failed));
    reports
}

fn commit_list(commits: Vec<ChangelogCommit>) -> impl IntoView {
    if commits.is_empty() {
        return view! { <p class="muted">"No commits to show."</p> }.into_any();
    }
    view! {
        <ul class="commits">
            {commits
                .into_iter()
                .map(|commit| {
                    view! {
                        <li>
                            <span class="mono">{short_sha(&commit.sha).to_string()}</span>
                            " "
                            {commit.summary}
                            <span class="muted">{format!(" — {}", commit.author)}</span>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// What the tester found (an island, showing its own outcome).
#[island]
fn FeedbackForm(token: String, signed_in: bool, csrf: String) -> impl IntoView {
    let feedback = ServerAction::<LeaveSharedFeedback>::new();
    report(feedback, |_| None);
    let form = NodeRef::<leptos::html::Form>::new();
    // Sent: the form empties, ready for the next finding.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Some(Ok(_)) = feedback.value().get()
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    view! {
        <ActionForm action=feedback node_ref=form attr:class="form feedback-form">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="token" value=token />
            <fieldset>
                <legend>"What did you find?"</legend>
                <label class="inline">
                    <input type="radio" name="verdict" value="works" required />
                    " It works"
                </label>
                <label class="inline">
                    <input type="radio" name="verdict" value="broken" />
                    " Something is broken"
                </label>
                <label class="inline">
                    <input type="radio" name="verdict" value="note" />
                    " A note"
                </label>
            </fieldset>
            <label>
                <span>"Comment (what you did, what you saw)"</span>
                <textarea name="comment" rows="3" maxlength="4000"></textarea>
            </label>
            {(!signed_in)
                .then(|| {
                    view! {
                        <label>
                            <span>"Your name"</span>
                            <input name="name" required maxlength="80" autocomplete="name" />
                        </label>
                    }
                })}
            <button type="submit" class="primary">"Send feedback"</button>
        </ActionForm>
        {move || {
            feedback
                .value()
                .get()
                .map(|result| match result {
                    Ok(_) => {
                        view! {
                            <p class="notice" role="status" data-testid="feedback-sent">
                                "Thank you — your feedback is on the change request."
                            </p>
                        }
                            .into_any()
                    }
                    Err(error) => {
                        view! { <p class="notice notice-error" role="alert">{crate::format::plain(&error)}</p> }
                            .into_any()
                    }
                })
        }}
    }
}
