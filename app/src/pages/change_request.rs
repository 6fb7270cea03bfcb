//! One change request: where it stands (for its author), its commits and
//! changed files, its preview and tests, the policy and every decision, and — for those allowed — the
//! approve, reject, override and close actions.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{
    ReviewChangeRequest, ShareChangeRequest, get_change_request, get_change_request_diff,
    get_change_request_files,
};
use crate::components::commits::{commit_table, count, uncovered_panel};
use crate::components::diff::diff_section;
use crate::components::feedback::feedback_list;
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, PageHeader, load_error};
use crate::components::outcome::{Outcome, report};
use crate::dto::{
    ApprovalRecord, ChangeRequestDetail, EnvironmentSummary, Me, Role, RunSummary,
    TestReportSummary,
};
use crate::format::{short_sha, timestamp};

#[component]
pub fn ChangeRequestPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok())
    };
    let detail = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_change_request(id).await,
            None => Ok(None),
        }
    });
    let me = use_me();
    view! {
        <PageHeader
            title="Change request"
            lead="A branch asking to be merged: its preview, its tests and the approvals it needs."
            tab=false
        />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                match detail.await {
                    Ok(Some(detail)) => request_view(detail, me).into_any(),
                    Ok(None) => {
                        view! {
                            <leptos_meta::Title text="Change request not found" />
                            <p class="notice">"There is no such change request."</p>
                        }
                            .into_any()
                    }
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

fn request_view(detail: ChangeRequestDetail, me: Option<Me>) -> impl IntoView {
    let cr = detail.summary.clone();
    let app = cr.app.clone();
    let csrf = me.as_ref().map(|me| me.csrf.clone()).unwrap_or_default();
    let is_admin = me
        .as_ref()
        .is_some_and(|me| me.can(Role::Admin, Some(&app)));
    let is_author = me.as_ref().is_some_and(|me| me.name == cr.author);
    let is_tester = me
        .as_ref()
        .is_some_and(|me| me.can(Role::Tester, Some(&app)));
    let is_developer = me
        .as_ref()
        .is_some_and(|me| me.can(Role::Developer, Some(&app)));
    let active = matches!(cr.state.as_str(), "open" | "approved" | "conflict");
    let approvals = format!(
        "{} of {} (roles: {})",
        detail.approvals_of_head,
        detail.required_approvals,
        detail.approver_roles.join(", ")
    );
    view! {
        <leptos_meta::Title text=format!("CR #{} {} · {}", cr.id, cr.title, cr.app) />
        <section class="panel" aria-label="Where it stands">
            <h2>{format!("#{} {}", cr.id, cr.title)}</h2>
            <dl class="facts">
                <dt>"State"</dt>
                <dd data-testid="cr-state">
                    <Badge state=cr.state.as_str() />
                </dd>
                <dt>"App"</dt>
                <dd>{cr.app.clone()}</dd>
                <dt>"Branches"</dt>
                <dd class="mono">{format!("{} → {}", cr.source_branch, cr.target_branch)}</dd>
                <dt>"Author"</dt>
                <dd>{cr.author.clone()}</dd>
                <dt>"Commit"</dt>
                <dd class="mono">{cr.head_sha.as_deref().map(short_sha).unwrap_or("–").to_string()}</dd>
                <dt>"Approvals"</dt>
                <dd data-testid="cr-approvals">{approvals}</dd>
                <dt>"Opened"</dt>
                <dd><crate::components::list::Time at=cr.created_at /></dd>
            </dl>
            {cr
                .state_detail
                .clone()
                .map(|text| view! { <p class="notice" data-testid="cr-detail">{text}</p> })}
            {detail.fork_of.clone().map(|fork| {
                view! {
                    <p class="notice notice-warn" role="status" data-testid="cr-fork">
                        {format!("From the fork {fork}: previewed as {}, built only when an admin allows each new head, and without secrets.", cr.source_branch)}
                    </p>
                }
            })}
            {detail
                .freeze
                .clone()
                .map(|text| {
                    view! {
                        <p class="notice notice-warn" role="status">
                            {format!("{} is {text}", cr.target_branch)}
                        </p>
                    }
                })}
            {(!detail.description.is_empty())
                .then(|| view! { <p class="description">{detail.description.clone()}</p> })}
        </section>
        {detail
            .uncovered_on_target
            .clone()
            .filter(|u| u.total > 0)
            .map(|uncovered| {
                let title = format!(
                    "{} already on {} that no approval covers",
                    count(&uncovered),
                    cr.target_branch
                );
                uncovered_panel(
                    uncovered,
                    title,
                    "Approving this request does not cover these, and Gantry does not merge onto them: approve the target's held run first (or revert them), or an admin overrides with a reason.",
                    "cr-uncovered",
                )
            })}
        {(!detail.commits.is_empty())
            .then(|| {
                view! {
                    <section class="panel" aria-label="Commits of this request">
                        <h2>{format!("Commits of this request ({})", detail.commits.len())}</h2>
                        <p class="hint">"What its head adds to the target: what an approval covers."</p>
                        {commit_table(detail.commits.clone(), "cr-commits")}
                    </section>
                }
            })}
        {active.then(|| {
            let id = cr.id;
            let files = Resource::new(move || id, get_change_request_files);
            view! {
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        files.await.ok().map(crate::components::file_diff::files_panel)
                    })}
                </Suspense>
            }
        })}
        <section class="panel" aria-label="Preview and tests">
            <h2>"Preview and tests"</h2>
            {preview_view(detail.preview.clone(), detail.run.clone())}
            {reports_view(detail.reports.clone())}
        </section>
        <section class="panel" aria-labelledby="feedback-heading">
            <h2 id="feedback-heading">"Tester feedback"</h2>
            {feedback_list(detail.feedback.clone())}
            {(active && is_developer).then(|| view! { <ShareButton id=cr.id csrf=csrf.clone() /> })}
            {is_developer
                .then(|| {
                    crate::components::share_links::share_links_panel(
                        detail.share_links.clone(),
                        csrf.clone(),
                    )
                })}
        </section>
        {(active && is_tester)
            .then(|| view! { <Decide id=cr.id is_admin is_author csrf /> })}
        {is_admin.then(|| {
            let id = cr.id;
            let diff = Resource::new(move || id, get_change_request_diff);
            diff_section("What merging would change on the target's clusters", diff)
        })}
        <section class="panel" aria-label="Decisions">
            <h2>"Decisions"</h2>
            {decisions_view(detail.decisions.clone())}
        </section>
    }
}

/// The share button: a signed, expiring link to the tester page, shown to
/// copy once made (an island, showing its own link).
#[island]
fn ShareButton(id: i64, csrf: String) -> impl IntoView {
    let share = ServerAction::<ShareChangeRequest>::new();
    view! {
        <ActionForm action=share attr:class="form share">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
            <button type="submit">"Share with testers"</button>
        </ActionForm>
        {move || {
            share
                .value()
                .get()
                .map(|result| match result {
                    Ok(link) => {
                        let note = format!(
                            "Expires {}{}.",
                            timestamp(link.expires_at),
                            if link.anonymous { "; opens without an account" } else { "; testers sign in to open it" },
                        );
                        view! {
                            <label class="share-link">
                                <span>"Link for testers"</span>
                                <input
                                    type="text"
                                    readonly
                                    value=link.url
                                    data-testid="share-url"
                                />
                            </label>
                            <p class="muted">{note}</p>
                            <details class="share-qr">
                                <summary>"QR code"</summary>
                                {crate::components::share_links::qr_code(&link.qr, "QR code of the new link")}
                            </details>
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

pub(crate) fn preview_view(
    preview: Option<EnvironmentSummary>,
    run: Option<RunSummary>,
) -> impl IntoView {
    let nothing = (preview.is_none() && run.is_none())
        .then(|| view! { <p>"No preview yet: the source commit has not been built."</p> });
    let preview = preview.map(|env| {
        let label = env.name.clone();
        match env.url.clone() {
            Some(url) => view! {
                <p>
                    "Preview: " <a href=url data-testid="cr-preview">{label}</a> " "
                    <Badge state=env.state.as_str() />
                </p>
            }
            .into_any(),
            None => view! {
                <p>"Preview: " {label} " " <Badge state=env.state.as_str() /></p>
            }
            .into_any(),
        }
    });
    let run = run.map(|run| {
        view! {
            <p>
                "Run: " <a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a> " "
                <Badge state=run.state.as_str() />
            </p>
        }
    });
    view! { {preview} {run} {nothing} }
}

pub(crate) fn reports_view(reports: Vec<TestReportSummary>) -> impl IntoView {
    if reports.is_empty() {
        return view! { <p>"No test reports."</p> }.into_any();
    }
    view! {
        <ul class="reports">
            {reports
                .into_iter()
                .map(|report| {
                    view! {
                        <li>
                            <span class="mono">{report.name.clone()}</span>
                            {format!(
                                " — {} passed, {} failed, {} skipped",
                                report.passed,
                                report.failed,
                                report.skipped,
                            )}
                            <ul>
                                {report
                                    .failures
                                    .into_iter()
                                    .map(|failure| {
                                        view! {
                                            <li class="failure">
                                                {format!("{} › {}: {}", failure.suite, failure.case, failure.message)}
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// How a person decides on a request (an island): one review box — a
/// comment with Approve, Reject or Comment — then, apart, Close in a menu
/// and the break-glass override in a danger zone of its own, with its own
/// confirmation, so it never reads like feedback.
#[island]
fn Decide(id: i64, is_admin: bool, is_author: bool, csrf: String) -> impl IntoView {
    let review = ServerAction::<ReviewChangeRequest>::new();
    report(review, |result| {
        result
            .err()
            .and_then(|error| Outcome::failed("review-error", error))
    });
    let hidden = move |csrf: &str| {
        let csrf = csrf.to_string();
        view! {
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
        }
    };
    // Each form's closure keeps its own copy.
    let (close_csrf, override_csrf) = (csrf.clone(), csrf.clone());
    view! {
        <section class="panel review-box" aria-labelledby="review-heading">
            <h2 id="review-heading">"Review"</h2>
            <ActionForm action=review attr:class="form decision" attr:data-testid="review-box">
                {hidden(&csrf)}
                <label>
                    <span>
                        {if is_admin {
                            "Comment (optional for Approve, the reason for Reject)"
                        } else {
                            "Feedback on the preview (a comment, not an approval)"
                        }}
                    </span>
                    <textarea name="comment" rows="3"></textarea>
                </label>
                <div class="review-actions">
                    {is_admin
                        .then(|| {
                            view! {
                                <button type="submit" name="action" value="approve" class="primary">
                                    "Approve"
                                </button>
                                <button type="submit" name="action" value="reject">
                                    "Reject"
                                </button>
                            }
                        })}
                    <button type="submit" name="action" value="feedback">
                        "Comment"
                    </button>
                </div>
            </ActionForm>
            {(is_author || is_admin)
                .then(|| {
                    view! {
                        <details class="more-menu">
                            <summary>"More actions"</summary>
                            <ActionForm action=review attr:class="form" attr:data-testid="close-form">
                                {hidden(&close_csrf)}
                                <input type="hidden" name="action" value="close" />
                                <label>
                                    <span>"Note (optional)"</span>
                                    <input type="text" name="comment" />
                                </label>
                                <button type="submit">"Close request"</button>
                            </ActionForm>
                        </details>
                    }
                })}
        </section>
        {is_admin
            .then(|| {
                view! {
                    <details class="panel danger-zone" data-testid="danger-zone">
                        <summary>"Danger zone: merge without the approvals"</summary>
                        <ActionForm action=review attr:class="form">
                            {hidden(&override_csrf)}
                            <input type="hidden" name="action" value="override" />
                            <p>
                                "Overriding merges this request now, whatever its approval policy and any freeze say. It is audited with your name and reason, and the notifications say it was an override."
                            </p>
                            <label>
                                <span>"Reason (required, audited)"</span>
                                <textarea name="comment" rows="2" required minlength="10"></textarea>
                            </label>
                            <label class="inline">
                                <input type="checkbox" name="confirm" required />
                                " I understand this skips the approvals and freezes"
                            </label>
                            <button type="submit" class="danger">"Override and merge"</button>
                        </ActionForm>
                    </details>
                }
            })}
    }
}

fn decisions_view(decisions: Vec<ApprovalRecord>) -> impl IntoView {
    if decisions.is_empty() {
        return view! { <p>"Nobody has decided yet."</p> }.into_any();
    }
    view! {
        <table class="data cards">
            <thead>
                <tr>
                    <th scope="col">"When"</th>
                    <th scope="col">"Who"</th>
                    <th scope="col">"Decision"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"Comment"</th>
                </tr>
            </thead>
            <tbody>
                {decisions
                    .into_iter()
                    .map(|d| {
                        view! {
                            <tr>
                                <td data-label="When"><crate::components::list::Time at=d.at /></td>
                                <td data-label="Who">{d.who}</td>
                                <td data-label="Decision" class="card-state">{d.decision}</td>
                                <td data-label="Commit" class="mono">
                                    {d.commit_sha.as_deref().map(short_sha).unwrap_or("–").to_string()}
                                </td>
                                <td data-label="Comment">{d.comment.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
