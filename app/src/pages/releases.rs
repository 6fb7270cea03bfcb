//! The release ledger: production deployments, each tied to its commit.

use leptos::prelude::*;

use crate::api::list_releases;
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::ReleaseSummary;
use crate::format::{short_sha, timestamp};

#[component]
pub fn ReleasesPage() -> impl IntoView {
    let releases = Resource::new(|| (), |_| list_releases());
    view! {
        <PageHeader
            title="Releases"
            lead="The ledger of production releases: version = commit, newest first."
        />
        {loaded(releases, release_table)}
    }
}

fn release_table(releases: Vec<ReleaseSummary>) -> impl IntoView {
    if releases.is_empty() {
        return view! {
            <EmptyState title="No releases yet">
                <p>"A release is recorded each time a commit is deployed to production."</p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"Version"</th>
                    <th scope="col">"App"</th>
                    <th scope="col">"Environment"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"By"</th>
                    <th scope="col">"When"</th>
                </tr>
            </thead>
            <tbody>
                {releases
                    .into_iter()
                    .map(|release| {
                        view! {
                            <tr>
                                <td class="mono" title=release.version.clone()>
                                    {short_sha(&release.version).to_string()}
                                </td>
                                <td>{release.app}</td>
                                <td>{release.environment}</td>
                                <td>
                                    <Badge state=release.state.as_str() />
                                </td>
                                <td>{release.created_by.unwrap_or_else(|| "gantry".into())}</td>
                                <td>{timestamp(release.created_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
