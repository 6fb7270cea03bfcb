//! Home: every application's environment stack.

use leptos::prelude::*;

use crate::api::list_environments;
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::EnvironmentSummary;
use crate::format::{short_sha, timestamp};

#[component]
pub fn EnvironmentsPage() -> impl IntoView {
    let environments = Resource::new(|| (), |_| list_environments());
    view! {
        <PageHeader
            title="Environments"
            lead="Each application's stack: previews per branch, staging from latest, production from master."
        />
        {loaded(environments, environment_table)}
    }
}

fn environment_table(environments: Vec<EnvironmentSummary>) -> impl IntoView {
    if environments.is_empty() {
        return view! {
            <EmptyState title="No environments yet">
                <p>
                    "Environments appear when Gantry reconciles a pipeline repo and a branch of an app is pushed."
                </p>
                <p>"The README's Configuration section shows how to point Gantry at one."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"App"</th>
                    <th scope="col">"Environment"</th>
                    <th scope="col">"Branch"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Commit"</th>
                    <th scope="col">"URL"</th>
                    <th scope="col">"Updated"</th>
                </tr>
            </thead>
            <tbody>
                {environments
                    .into_iter()
                    .map(|env| {
                        view! {
                            <tr>
                                <td>{env.app}</td>
                                <td>{env.name}</td>
                                <td>{env.branch.unwrap_or_default()}</td>
                                <td>
                                    <Badge state=env.state.as_str() />
                                </td>
                                <td class="mono" title=env.commit_sha.clone()>
                                    {env.commit_sha.as_deref().map(short_sha).unwrap_or("—").to_string()}
                                </td>
                                <td>
                                    {env.url.map(|url| {
                                        let text = url.clone();
                                        view! { <a href=url>{text}</a> }
                                    })}
                                </td>
                                <td>{timestamp(env.updated_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
