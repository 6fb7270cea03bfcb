//! Registered Kubernetes clusters (credentials never leave the server).

use leptos::prelude::*;

use crate::api::list_clusters;
use crate::components::list::{Badge, EmptyState, PageHeader, loaded};
use crate::dto::ClusterSummary;
use crate::format::timestamp;

#[component]
pub fn ClustersPage() -> impl IntoView {
    let clusters = Resource::new(|| (), |_| list_clusters());
    view! {
        <PageHeader
            title="Clusters"
            lead="Kubernetes clusters environments deploy to, and their last connectivity check."
        />
        {loaded(clusters, cluster_table)}
    }
}

fn cluster_table(clusters: Vec<ClusterSummary>) -> impl IntoView {
    if clusters.is_empty() {
        return view! {
            <EmptyState title="No clusters registered">
                <p>
                    "Without a cluster, environments run on the local target: supervised processes on this machine."
                </p>
            </EmptyState>
        }
        .into_any();
    }
    view! {
        <table class="data">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Server"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Version"</th>
                    <th scope="col">"Checked"</th>
                    <th scope="col">"Last error"</th>
                </tr>
            </thead>
            <tbody>
                {clusters
                    .into_iter()
                    .map(|cluster| {
                        view! {
                            <tr>
                                <td>{cluster.name}</td>
                                <td class="mono">{cluster.server_url.unwrap_or_else(|| "in-cluster".into())}</td>
                                <td>
                                    <Badge state=cluster.state.as_str() />
                                </td>
                                <td>{cluster.server_version.unwrap_or_default()}</td>
                                <td>{cluster.last_checked_at.map(timestamp).unwrap_or_default()}</td>
                                <td>{cluster.last_error.unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
