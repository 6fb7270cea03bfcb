//! Registered Kubernetes clusters (credentials never leave the server):
//! their last check, a button to check again, and a form to register one
//! from a kubeconfig.

use leptos::prelude::*;

use crate::api::{CheckCluster, RegisterCluster, list_clusters};
use crate::components::list::{Badge, CsrfField, EmptyState, PageHeader, loaded};
use crate::dto::ClusterSummary;
use crate::format::timestamp;

#[component]
pub fn ClustersPage() -> impl IntoView {
    let register = ServerAction::<RegisterCluster>::new();
    let check = ServerAction::<CheckCluster>::new();
    let clusters = Resource::new(
        move || (register.version().get(), check.version().get()),
        |_| list_clusters(),
    );
    view! {
        <PageHeader
            title="Clusters"
            lead="Kubernetes clusters environments deploy to, and their last connectivity check."
        />
        {loaded(clusters, move |clusters| cluster_table(clusters, check))}
        <section class="panel" aria-labelledby="register-heading">
            <h2 id="register-heading">"Register a cluster"</h2>
            <p class="muted">
                "Paste a kubeconfig; its credentials are encrypted at rest and never shown again. The CLI and the API also take a server URL with a token, or in-cluster."
            </p>
            <ActionForm action=register attr:class="form">
                <CsrfField />
                <label>
                    <span>"Name"</span>
                    <input name="name" required pattern="[a-z][a-z0-9-]*" placeholder="prod-eu" />
                </label>
                <label>
                    <span>"Kubeconfig"</span>
                    <textarea name="kubeconfig" rows="8" required spellcheck="false"></textarea>
                </label>
                <label>
                    <span>"Context (optional; default: the current context)"</span>
                    <input name="context" />
                </label>
                <button type="submit" class="primary">"Register"</button>
            </ActionForm>
            {move || {
                register
                    .value()
                    .get()
                    .map(|result| match result {
                        Ok(cluster) => {
                            view! {
                                <p class="notice" role="status">
                                    {format!("Registered {}: {}", cluster.name, cluster.state)}
                                </p>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! { <p class="notice notice-error" role="alert">{error.to_string()}</p> }
                                .into_any()
                        }
                    })
            }}
        </section>
    }
}

fn cluster_table(
    clusters: Vec<ClusterSummary>,
    check: ServerAction<CheckCluster>,
) -> impl IntoView {
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
                    <th scope="col">
                        <span class="visually-hidden">"Actions"</span>
                    </th>
                </tr>
            </thead>
            <tbody>
                {clusters
                    .into_iter()
                    .map(|cluster| {
                        let name = cluster.name.clone();
                        let row = cluster.name.clone();
                        view! {
                            <tr data-cluster=row>
                                <td>{cluster.name}</td>
                                <td class="mono">{cluster.server_url.unwrap_or_else(|| "in-cluster".into())}</td>
                                <td>
                                    <Badge state=cluster.state.as_str() />
                                </td>
                                <td>{cluster.server_version.unwrap_or_default()}</td>
                                <td>{cluster.last_checked_at.map(timestamp).unwrap_or_default()}</td>
                                <td>{cluster.last_error.unwrap_or_default()}</td>
                                <td>
                                    <ActionForm action=check>
                                        <CsrfField />
                                        <input type="hidden" name="name" value=name />
                                        <button type="submit">"Check now"</button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
