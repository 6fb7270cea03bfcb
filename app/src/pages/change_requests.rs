//! Change requests: a source branch asking to be merged into a target branch.

use leptos::prelude::*;

use crate::api::list_change_requests;
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::ChangeRequestSummary;
use crate::format::timestamp;

#[component]
pub fn ChangeRequestsPage() -> impl IntoView {
    let requests = Resource::new(|| (), |_| list_change_requests());
    view! {
        <PageHeader
            title="Change requests"
            lead="Branches asking to be merged: into latest for staging, from latest into master for production."
        />
        {loaded(requests, change_request_table)}
    }
}

fn change_request_table(requests: Vec<ChangeRequestSummary>) -> impl IntoView {
    if requests.is_empty() {
        return view! {
            <EmptyState title="No change requests">
                <p>
                    "Developers open one to merge a branch into latest; opening it builds and deploys a preview."
                </p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"#"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Title"</th>
                    <th scope="col">"Branches"</th>
                    <th scope="col">"Author"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Opened"</th>
                </tr>
            </thead>
            <tbody>
                {requests
                    .into_iter()
                    .map(|cr| {
                        view! {
                            <tr>
                                <td class="mono">{cr.id}</td>
                                <td>{cr.app}</td>
                                <td>{cr.title}</td>
                                <td class="mono">
                                    {format!("{} → {}", cr.source_branch, cr.target_branch)}
                                </td>
                                <td>{cr.author}</td>
                                <td>
                                    <Badge state=cr.state.as_str() />
                                </td>
                                <td>{timestamp(cr.created_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
