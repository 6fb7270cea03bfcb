//! The append-only audit log: who did what, when, why, from where.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::list_audit_log;
use crate::components::list::{EmptyState, PageHeader, loaded};
use crate::dto::{AuditEntry, AuditFilter};

#[component]
pub fn AuditPage() -> impl IntoView {
    // The filter lives in the address, so a filtered view can be shared.
    let query = use_query_map();
    let filter = move || {
        query.with(|q| {
            AuditFilter {
                actor: q.get("actor"),
                action: q.get("action"),
                target: q.get("target"),
                ..AuditFilter::default()
            }
            .normalized()
        })
    };
    let entries = Resource::new(filter, list_audit_log);
    let value = move |key: &'static str| query.with(|q| q.get(key).unwrap_or_default());
    view! {
        <PageHeader
            title="Audit"
            lead="Sign-ins, approvals, merges, overrides, rollbacks and configuration changes. Append-only."
        />
        <form method="get" class="filters" role="search" aria-label="Filter the audit log">
            <label>
                "Who" <input type="text" name="actor" value=value("actor") />
            </label>
            <label>
                "Action"
                <input
                    type="text"
                    name="action"
                    placeholder="change_request"
                    value=value("action")
                />
            </label>
            <label>
                "Target contains"
                <input type="text" name="target" value=value("target") />
            </label>
            <button type="submit">"Filter"</button>
            <a href="/audit">"Clear"</a>
        </form>
        {loaded(entries, audit_table)}
    }
}

fn audit_table(entries: Vec<AuditEntry>) -> impl IntoView {
    if entries.is_empty() {
        return view! {
            <EmptyState title="The audit log is empty">
                <p>"Every state change a person makes is recorded here."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data cards">
            <thead>
                <tr>
                    <th scope="col">"When"</th>
                    <th scope="col">"Who"</th>
                    <th scope="col">"Action"</th>
                    <th scope="col">"Target"</th>
                    <th scope="col">"Reason"</th>
                    <th scope="col">"From"</th>
                </tr>
            </thead>
            <tbody>
                {entries
                    .into_iter()
                    .map(|entry| {
                        view! {
                            <tr>
                                <td data-label="When"><crate::components::list::Time at=entry.at /></td>
                                <td data-label="Who">{entry.actor}</td>
                                <td data-label="Action" class="mono card-state">{entry.action}</td>
                                <td data-label="Target">{entry.target}</td>
                                <td data-label="Reason">{entry.reason.unwrap_or_default()}</td>
                                <td data-label="From" class="mono">{entry.source_ip.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
