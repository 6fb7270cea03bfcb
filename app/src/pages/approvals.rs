//! The approvals inbox: runs held until the environment's policy is met.

use leptos::prelude::*;

use crate::api::list_pending_approvals;
use crate::components::list::{EmptyState, PageHeader, loaded};
use crate::dto::PendingApproval;
use crate::format::{short_sha, timestamp};

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let pending = Resource::new(|| (), |_| list_pending_approvals());
    view! {
        <PageHeader
            title="Approvals"
            lead="Runs waiting for approval before they deploy to a protected environment."
        />
        {loaded(pending, approval_table)}
    }
}

fn approval_table(pending: Vec<PendingApproval>) -> impl IntoView {
    if pending.is_empty() {
        return view! {
            <EmptyState title="Nothing waits for approval">
                <p>
                    "Runs for environments whose policy requires approval (staging, production) wait here."
                </p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"Run"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Environment"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"Waiting since"</th>
                </tr>
            </thead>
            <tbody>
                {pending
                    .into_iter()
                    .map(|item| {
                        view! {
                            <tr>
                                <td class="mono">{format!("#{}", item.run_id)}</td>
                                <td>{item.app}</td>
                                <td>{item.environment}</td>
                                <td class="mono" title=item.commit_sha.clone()>
                                    {short_sha(&item.commit_sha).to_string()}
                                </td>
                                <td>{timestamp(item.requested_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
