//! One app: its environment stack, its open change requests with their
//! preview, tests and approvals, and its recent runs.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::get_app_overview;
use crate::components::list::{Badge, EmptyState, PageHeader};
use crate::dto::{AppOverview, ChangeRequestDetail};
use crate::pages::environments::lane_view;
use crate::pages::runs::run_table;

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let overview = Resource::new(move || (name(), ()), |(name, _)| get_app_overview(name));
    view! {
        <PageHeader
            title="App"
            lead="One application: its stack, the changes waiting to be merged, and its latest runs."
            tab=false
        />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(Some(overview)) => app_view(overview).into_any(),
                    Ok(None) => {
                        view! {
                            <leptos_meta::Title text="App not found" />
                            <p class="notice">"There is no such app."</p>
                        }
                            .into_any()
                    }
                    Err(error) => {
                        view! { <div class="notice notice-error" role="alert">{crate::format::plain(&error)}</div> }
                            .into_any()
                    }
                }
            })}
        </Suspense>
    }
}

fn app_view(overview: AppOverview) -> impl IntoView {
    let releases = format!(
        "/releases?app={}",
        crate::format::percent_encode(&overview.app)
    );
    let all_runs = format!("/runs?app={}", crate::format::percent_encode(&overview.app));
    view! {
        <leptos_meta::Title text=overview.app.clone() />
        <section class="panel" aria-labelledby="app-heading">
            <h2 id="app-heading" data-testid="app-name">{overview.app.clone()}</h2>
            <p class="muted mono">{overview.source_url.clone()}</p>
            <p>
                <a href=releases>"Release timeline"</a>
            </p>
            {overview.lane.map(|lane| lane_view(lane, true))}
            {(!overview.resource_trees.is_empty())
                .then(|| {
                    let app = overview.app.clone();
                    view! {
                        <p class="resource-links" data-testid="resource-links">
                            "Resources on clusters: "
                            {overview
                                .resource_trees
                                .iter()
                                .map(|env| {
                                    let href = format!(
                                        "/apps/{}/environments/{}/resources",
                                        crate::format::percent_encode(&app),
                                        crate::format::percent_encode(env),
                                    );
                                    view! { <a href=href class="chip">{env.clone()}</a> }
                                })
                                .collect_view()}
                        </p>
                    }
                })}
        </section>
        {overview
            .promotion
            .clone()
            .map(|graph| {
                view! {
                    <section class="panel" aria-labelledby="app-promotion">
                        <h2 id="app-promotion">"Promotion"</h2>
                        {crate::components::artifact::promotion_graph(graph)}
                    </section>
                }
            })}
        <section class="panel" aria-labelledby="app-requests">
            <h2 id="app-requests">"Open change requests"</h2>
            {requests_table(overview.change_requests)}
        </section>
        {overview
            .charts
            .clone()
            .map(|charts| {
                view! {
                    <section class="panel" aria-labelledby="app-charts">
                        <h2 id="app-charts">"Over time"</h2>
                        {crate::components::charts::app_charts(charts)}
                    </section>
                }
            })}
        <section class="panel" aria-labelledby="app-runs">
            <h2 id="app-runs">"Recent runs"</h2>
            {run_table(overview.runs)}
            <p><a href=all_runs>"All runs of this app, with filters"</a></p>
        </section>
    }
}

fn requests_table(requests: Vec<ChangeRequestDetail>) -> impl IntoView {
    if requests.is_empty() {
        return view! {
            <EmptyState title="Nothing waiting">
                <p>"No change request of this app is open."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data cards" data-testid="app-requests">
            <thead>
                <tr>
                    <th scope="col">"Request"</th>
                    <th scope="col">"Preview"</th>
                    <th scope="col">"Tests"</th>
                    <th scope="col">"Approvals"</th>
                </tr>
            </thead>
            <tbody>
                {requests
                    .into_iter()
                    .map(|detail| {
                        let cr = detail.summary.clone();
                        let (passed, failed) = detail
                            .reports
                            .iter()
                            .fold((0, 0), |(p, f), r| (p + r.passed, f + r.failed));
                        let tests = if detail.reports.is_empty() {
                            "no reports".to_string()
                        } else {
                            format!("{passed} passed, {failed} failed")
                        };
                        let preview = detail.preview.clone().map(|env| {
                            let link = env
                                .url
                                .clone()
                                .map(|url| view! { <a href=url>{env.name.clone()}</a> });
                            view! {
                                {link}
                                " "
                                <Badge state=env.state.as_str() />
                            }
                        });
                        view! {
                            <tr>
                                <td data-label="Request">
                                    <a href=format!("/change-requests/{}", cr.id)>{format!("#{} {}", cr.id, cr.title)}</a>
                                    <div class="mono muted">{format!("{} → {}", cr.source_branch, cr.target_branch)}</div>
                                    <Badge state=cr.state.as_str() />
                                </td>
                                <td data-label="Preview">{preview}</td>
                                <td data-label="Tests">{tests}</td>
                                <td data-label="Approvals">{format!("{} of {}", detail.approvals_of_head, detail.required_approvals)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
