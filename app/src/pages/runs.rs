//! Pipeline runs, newest first.

use leptos::prelude::*;

use crate::api::list_runs;
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::RunSummary;
use crate::format::{short_sha, timestamp};

#[component]
pub fn RunsPage() -> impl IntoView {
    let runs = Resource::new(|| (), |_| list_runs());
    view! {
        <PageHeader title="Runs" lead="Every pipeline run, newest first, with the commit it built." />
        {loaded(runs, run_table)}
    }
}

/// The runs table (also on an app's page).
pub(crate) fn run_table(runs: Vec<RunSummary>) -> impl IntoView {
    if runs.is_empty() {
        return view! {
            <EmptyState title="No runs yet">
                <p>"A run starts when a new commit lands on a branch of an app Gantry watches."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data cards">
            <thead>
                <tr>
                    <th scope="col">"Run"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Environment"</th>
                    <th scope="col">"Branch"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Started"</th>
                </tr>
            </thead>
            <tbody>
                {runs
                    .into_iter()
                    .map(|run| {
                        view! {
                            <tr>
                                <td data-label="Run" class="mono">
                                    <a href=format!("/runs/{}", run.id)>{format!("#{}", run.id)}</a>
                                </td>
                                <td data-label="App">{run.app}</td>
                                <td data-label="Environment">{run.environment}</td>
                                <td data-label="Branch">{run.branch}</td>
                                <td data-label="Commit" class="mono" title=run.commit_sha.clone()>
                                    {short_sha(&run.commit_sha).to_string()}
                                </td>
                                <td data-label="State" class="card-state">
                                    <Badge state=run.state.as_str() />
                                </td>
                                <td data-label="Started">{timestamp(run.created_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
