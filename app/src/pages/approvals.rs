//! The approvals inbox: change requests waiting for a decision (with their
//! preview, tests and approval state) and runs held until the environment's
//! policy is met, each with its decision buttons for those allowed.

use leptos::prelude::*;

use crate::api::{ReviewChangeRequest, ReviewRun, get_approval_inbox};
use crate::components::commits::count;
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, EmptyState, PageHeader, load_error};
use crate::components::outcome::{Outcome, report};
use crate::dto::{
    ApprovalInbox, ChangeRequestDetail, ChangeRequestState, Me, PendingApproval, Role,
};
use crate::format::short_sha;

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let inbox = Resource::new(|| (), |_| get_approval_inbox());
    let me = use_me();
    view! {
        <PageHeader
            title="Approvals"
            lead="Change requests and held runs waiting for a decision before they reach a protected environment."
        />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                match inbox.await {
                    Ok(inbox) => inbox_view(inbox, me).into_any(),
                    Err(error) => load_error(error),
                }
            })}
        </Suspense>
    }
}

fn inbox_view(inbox: ApprovalInbox, me: Option<Me>) -> impl IntoView {
    if inbox.change_requests.is_empty() && inbox.runs.is_empty() {
        return view! {
            <EmptyState title="Nothing waits for a decision">
                <p>
                    "Open change requests and runs for protected environments (staging, production) wait here."
                </p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <section aria-label="Change requests">
            <h2>"Change requests"</h2>
            {requests_table(inbox.change_requests, me.clone())}
        </section>
        <section aria-label="Held runs">
            <h2>"Held runs"</h2>
            {runs_table(inbox.runs, me)}
        </section>
    }
    .into_any()
}

fn requests_table(requests: Vec<ChangeRequestDetail>, me: Option<Me>) -> impl IntoView {
    if requests.is_empty() {
        return view! { <p>"No change request is open."</p> }.into_any();
    }
    view! {
        <table class="data cards" data-testid="inbox-requests">
            <thead>
                <tr>
                    <th scope="col">"Request"</th>
                    <th scope="col">"Branches"</th>
                    <th scope="col">"Author"</th>
                    <th scope="col">"Preview"</th>
                    <th scope="col">"Tests"</th>
                    <th scope="col">"Approvals"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Manifests"</th>
                    <th scope="col">"Decide"</th>
                </tr>
            </thead>
            <tbody>
                {requests
                    .into_iter()
                    .map(|detail| {
                        let cr = detail.summary.clone();
                        let admin = me.as_ref().is_some_and(|me| me.can(Role::Admin, Some(&cr.app)));
                        let decide = me
                            .as_ref()
                            .filter(|_| {
                                admin
                                    && matches!(
                                        cr.state,
                                        ChangeRequestState::Open | ChangeRequestState::Approved | ChangeRequestState::Conflict
                                    )
                            })
                            .map(|me| view! { <RequestDecision id=cr.id csrf=me.csrf.clone() /> });
                        let tests = tests_summary(&detail);
                        let preview = detail
                            .preview
                            .as_ref()
                            .and_then(|env| env.url.clone().map(|url| (env.name.clone(), url)))
                            .map(|(name, url)| view! { <a href=url>{name}</a> });
                        view! {
                            <tr>
                                <td data-label="Request">
                                    <a href=format!("/change-requests/{}", cr.id)>
                                        {format!("#{} {}", cr.id, cr.title)}
                                    </a>
                                </td>
                                <td data-label="Branches" class="mono">
                                    {format!("{}: {} → {}", cr.app, cr.source_branch, cr.target_branch)}
                                </td>
                                <td data-label="Author">{cr.author}</td>
                                <td data-label="Preview">{preview}</td>
                                <td data-label="Tests">{tests}</td>
                                <td data-label="Approvals">
                                    {format!("{} of {}", detail.approvals_of_head, detail.required_approvals)}
                                </td>
                                <td data-label="State" class="card-state">
                                    <Badge state=cr.state.as_str() />
                                    {detail.freeze.clone().map(|f| view! { <span class="hint">{f}</span> })}
                                    {detail
                                        .uncovered_on_target
                                        .as_ref()
                                        .filter(|u| u.total > 0)
                                        .map(|u| {
                                            view! {
                                                <span class="hint hint-warn">
                                                    {format!("{} on {} no approval covers", count(u), cr.target_branch)}
                                                </span>
                                            }
                                        })}
                                </td>
                                <td data-label="Manifests">
                                    {admin
                                        .then(|| {
                                            view! {
                                                <a href=format!("/change-requests/{}#diff", cr.id)>"Diff"</a>
                                            }
                                        })}
                                </td>
                                <td data-label="Decide" data-testid="inbox-decide">{decide}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn tests_summary(detail: &ChangeRequestDetail) -> String {
    if detail.reports.is_empty() {
        return detail
            .run
            .as_ref()
            .map(|run| run.state.as_str().replace('_', " "))
            .unwrap_or_else(|| "not built".into());
    }
    let (passed, failed) = detail
        .reports
        .iter()
        .fold((0, 0), |(p, f), r| (p + r.passed, f + r.failed));
    format!("{passed} passed, {failed} failed")
}

fn runs_table(runs: Vec<PendingApproval>, me: Option<Me>) -> impl IntoView {
    if runs.is_empty() {
        return view! { <p>"No run is held."</p> }.into_any();
    }
    view! {
        <table class="data cards" data-testid="inbox-runs">
            <thead>
                <tr>
                    <th scope="col">"Run"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Environment"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"Covers"</th>
                    <th scope="col">"Artifact"</th>
                    <th scope="col">"Waiting since"</th>
                    <th scope="col">"Decide"</th>
                </tr>
            </thead>
            <tbody>
                {runs
                    .into_iter()
                    .map(|item| {
                        let csrf = me
                            .as_ref()
                            .filter(|me| me.can(Role::Admin, Some(&item.app)))
                            .map(|me| me.csrf.clone());
                        view! {
                            <tr>
                                <td data-label="Run">
                                    <a href=format!("/runs/{}", item.run_id)>
                                        {format!("#{}", item.run_id)}
                                    </a>
                                </td>
                                <td data-label="App">{item.app.clone()}</td>
                                <td data-label="Environment">{item.environment.clone()}</td>
                                <td data-label="Commit" class="mono" title=item.commit_sha.clone()>
                                    {short_sha(&item.commit_sha).to_string()}
                                </td>
                                <td data-label="Covers" data-testid="inbox-run-uncovered">
                                    {item
                                        .uncovered
                                        .as_ref()
                                        .filter(|u| u.total > 0 || u.rewinds_from.is_some())
                                        .map(|u| {
                                            let first = u.commits.first().map(|c| c.summary.clone()).unwrap_or_default();
                                            match &u.rewinds_from {
                                                Some(live) => format!("goes back from {} (what runs now)", short_sha(live)),
                                                None => format!("{} no approval covers yet (newest: {first})", count(u)),
                                            }
                                        })
                                        .unwrap_or_else(|| "held by a freeze, for a fork or for its artifact".into())}
                                </td>
                                <td data-label="Artifact">
                                    {crate::components::artifact::artifact_cell(item.promotion.clone())}
                                </td>
                                <td data-label="Waiting since"><crate::components::list::Time at=item.requested_at /></td>
                                <td data-label="Decide">{csrf.map(|csrf| view! { <RunDecision id=item.run_id csrf /> })}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Approve or reject a change request from the inbox, with one comment
/// (an island; the override stays on the request's page, in its danger zone).
#[island]
fn RequestDecision(id: i64, csrf: String) -> impl IntoView {
    let review = ServerAction::<ReviewChangeRequest>::new();
    report(review, |result| match result {
        Ok(cr) => Outcome::done("review-outcome", format!("#{} is {}", cr.id, cr.state)),
        Err(error) => Outcome::failed("review-error", error),
    });
    view! {
        <ActionForm action=review attr:class="inline">
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="id" value=id />
            <input type="text" name="comment" aria-label=format!("Comment on #{id}") placeholder="comment" />
            <button type="submit" name="action" value="approve">"Approve"</button>
            <button type="submit" name="action" value="reject">"Reject"</button>
        </ActionForm>
    }
}

/// Approve or reject a held run (an island: the forms act in the browser).
#[island]
pub(crate) fn RunDecision(id: i64, csrf: String) -> impl IntoView {
    let review = ServerAction::<ReviewRun>::new();
    report(review, |result| match result {
        Ok(outcome) => Outcome::done("review-outcome", outcome),
        Err(error) => Outcome::failed("review-error", error),
    });
    let form = |action: &'static str, label: &'static str| {
        let csrf = csrf.clone();
        view! {
            <ActionForm action=review attr:class="inline">
                <input type="hidden" name="csrf" value=csrf />
                <input type="hidden" name="id" value=id />
                <input type="hidden" name="action" value=action />
                <input
                    type="text"
                    name="comment"
                    aria-label=format!("{label}: comment")
                    placeholder="comment"
                />
                <button type="submit">{label}</button>
            </ActionForm>
        }
    };
    view! { {form("approve", "Approve")} {form("reject", "Reject")} }
}
