//! The append-only audit log: who did what, when, why, from where.

use leptos::prelude::*;

use crate::api::list_audit_log;
use crate::components::list::{EmptyState, PageHeader, loaded};
use crate::dto::AuditEntry;
use crate::format::timestamp;

#[component]
pub fn AuditPage() -> impl IntoView {
    let entries = Resource::new(|| (), |_| list_audit_log());
    view! {
        <PageHeader
            title="Audit"
            lead="Sign-ins, approvals, merges, overrides, rollbacks and configuration changes. Append-only."
        />
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
        <table class="data">
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
                                <td>{timestamp(entry.at)}</td>
                                <td>{entry.actor}</td>
                                <td class="mono">{entry.action}</td>
                                <td>{entry.target}</td>
                                <td>{entry.reason.unwrap_or_default()}</td>
                                <td class="mono">{entry.source_ip.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
