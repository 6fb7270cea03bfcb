//! Change requests: a source branch asking to be merged into a target branch.

use leptos::prelude::*;

use crate::api::{OpenChangeRequest, list_change_requests, request_choices};
use crate::components::layout::{signed_in, use_me};
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::components::outcome::report;
use crate::dto::{ChangeRequestSummary, Role};

#[component]
pub fn ChangeRequestsPage() -> impl IntoView {
    let requests = Resource::new(|| (), |_| list_change_requests());
    let me = use_me();
    // A lane's "Open change request" fills the form in (`?app=&source=&target=`).
    let query = leptos_router::hooks::use_query_map();
    let prefill = move || {
        query.with(|q| Prefill {
            app: q.get("app").unwrap_or_default(),
            source: q.get("source").unwrap_or_default(),
            target: q.get("target").unwrap_or_default(),
        })
    };
    view! {
        <PageHeader
            title="Change requests"
            lead="Branches asking to be merged: into latest for staging, from latest into master for production."
        />
        <Suspense>
            {move || Suspend::new(async move {
                let me = signed_in(me).await;
                let prefill = prefill();
                me.filter(|me| me.can_anywhere(Role::Developer))
                    .map(|me| view! { <OpenForm csrf=me.csrf prefill /> })
            })}
        </Suspense>
        {loaded(requests, change_request_table)}
    }
}

/// Developers propose a merge; opening it builds the branch's preview. An
/// island; it shows its own outcome (with a link to the new request).
/// What a link asked the form to hold.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Prefill {
    app: String,
    source: String,
    target: String,
}

#[island]
fn OpenForm(csrf: String, prefill: Prefill) -> impl IntoView {
    let open = ServerAction::<OpenChangeRequest>::new();
    report(open, |_| None);
    let expanded = !prefill.app.is_empty();
    // The apps to pick from, and the chosen app's branches: suggestions
    // (a datalist), so typing still works.
    let app = RwSignal::new(prefill.app.clone());
    let choices = Resource::new(move || app.get(), request_choices);
    let options = move |items: Vec<String>| {
        items
            .into_iter()
            .map(|item| view! { <option value=item></option> })
            .collect_view()
    };
    view! {
        <details class="panel" open=expanded>
            <summary>"Open a change request"</summary>
            <ActionForm action=open attr:class="form">
                <input type="hidden" name="csrf" value=csrf />
                <label>
                    <span>"App"</span>
                    <input
                        name="app"
                        required
                        list="request-apps"
                        autocomplete="off"
                        value=prefill.app
                        on:input=move |event| app.set(event_target_value(&event))
                    />
                </label>
                <label>
                    <span>"Source branch"</span>
                    <input
                        name="source_branch"
                        required
                        list="request-branches"
                        autocomplete="off"
                        placeholder="feature/checkout"
                        value=prefill.source
                    />
                </label>
                <label>
                    <span>"Target branch (default: latest; from latest: master)"</span>
                    <input
                        name="target_branch"
                        list="request-branches"
                        autocomplete="off"
                        value=prefill.target
                    />
                </label>
                <label>
                    <span>"Title (default: the last commit's)"</span>
                    <input name="title" />
                </label>
                <label>
                    <span>"Description"</span>
                    <textarea name="description" rows="3"></textarea>
                </label>
                <button type="submit" class="primary">"Open"</button>
                <Transition fallback=|| ()>
                    {move || {
                        choices
                            .get()
                            .and_then(Result::ok)
                            .map(|choices| {
                                view! {
                                    <datalist id="request-apps">{options(choices.apps)}</datalist>
                                    <datalist id="request-branches">{options(choices.branches)}</datalist>
                                }
                            })
                    }}
                </Transition>
            </ActionForm>
            {move || {
                open.value()
                    .get()
                    .map(|result| match result {
                        Ok(cr) => {
                            view! {
                                <p class="notice" role="status">
                                    "Opened "
                                    <a href=format!("/change-requests/{}", cr.id)>
                                        {format!("#{} {}", cr.id, cr.title)}
                                    </a>
                                </p>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <p class="notice notice-error" role="alert">{crate::format::plain(&error)}</p>
                            }
                                .into_any()
                        }
                    })
            }}
        </details>
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
        <table class="data cards">
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
                                <td data-label="#" class="mono">{cr.id}</td>
                                <td data-label="App">{cr.app}</td>
                                <td data-label="Title">
                                    <a href=format!("/change-requests/{}", cr.id)>{cr.title}</a>
                                </td>
                                <td data-label="Branches" class="mono wrap">
                                    {format!("{} → {}", cr.source_branch, cr.target_branch)}
                                </td>
                                <td data-label="Author">{cr.author}</td>
                                <td data-label="State" class="card-state">
                                    <Badge state=cr.state.as_str() />
                                </td>
                                <td data-label="Opened"><crate::components::list::Time at=cr.created_at /></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
