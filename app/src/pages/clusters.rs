//! Registered Kubernetes clusters (credentials never leave the server):
//! their last check, a button to check again, and a form to register one
//! from a kubeconfig.

use leptos::prelude::*;

use crate::api::{CheckCluster, RegisterCluster, list_clusters};
use crate::components::list::{AdminsOnly, Badge, EmptyState, PageHeader, loaded, with_csrf};
use crate::components::outcome::{Outcome, report};
use crate::dto::ClusterSummary;

#[component]
pub fn ClustersPage() -> impl IntoView {
    let clusters = Resource::new(|| (), |_| list_clusters());
    view! {
        <PageHeader
            title="Clusters"
            lead="Kubernetes clusters environments deploy to, and their last connectivity check."
        />
        <AdminsOnly what="Clusters">
            {with_csrf(move |csrf| {
                loaded(clusters, move |clusters| cluster_table(clusters, csrf.clone()))
            })}
            <section class="panel" aria-labelledby="register-heading">
                <h2 id="register-heading">"Register a cluster"</h2>
                <p class="muted">
                    "Paste a kubeconfig; its credentials are encrypted at rest and never shown again. The CLI and the API also take a server URL with a token, or in-cluster."
                </p>
                {with_csrf(|csrf| view! { <RegisterForm csrf /> })}
            </section>
        </AdminsOnly>
    }
}

fn cluster_table(clusters: Vec<ClusterSummary>, csrf: String) -> impl IntoView {
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
                    <th scope="col">"Missing permissions"</th>
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
                                <td>{cluster.last_checked_at.map(|at| view! { <crate::components::list::Time at /> })}</td>
                                <td>{cluster.last_error.unwrap_or_default()}</td>
                                <td data-missing-permissions="">
                                    <MissingPermissions missing=cluster.missing_permissions />
                                </td>
                                <td>
                                    <CheckForm name csrf=csrf.clone() />
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

/// What the cluster's credentials lack of what Gantry needs, one per line
/// (nothing when the last check found all of it).
#[component]
fn MissingPermissions(missing: Vec<String>) -> impl IntoView {
    if missing.is_empty() {
        return ().into_any();
    }
    view! {
        <ul class="missing-permissions">
            {missing.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
        </ul>
    }
    .into_any()
}

/// Registers a cluster from a kubeconfig (an island).
#[island]
fn RegisterForm(csrf: String) -> impl IntoView {
    let register = ServerAction::<RegisterCluster>::new();
    report(register, |result| match result {
        Ok(cluster) => Outcome::done(
            "cluster-outcome",
            format!("Registered {}: {}", cluster.name, cluster.state),
        ),
        Err(error) => Outcome::failed("cluster-error", error),
    });
    view! {
        <ActionForm action=register attr:class="form">
            <input type="hidden" name="csrf" value=csrf />
            <label>
                <span>"Name"</span>
                <input name="name" required pattern="[a-z][a-z0-9\\-]*" placeholder="prod-eu" />
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
    }
}

/// Checks one cluster's connectivity now (an island).
#[island]
fn CheckForm(name: String, csrf: String) -> impl IntoView {
    let check = ServerAction::<CheckCluster>::new();
    report(check, |result| {
        result
            .err()
            .and_then(|error| Outcome::failed("cluster-error", error))
    });
    view! {
        <ActionForm action=check>
            <input type="hidden" name="csrf" value=csrf />
            <input type="hidden" name="name" value=name />
            <button type="submit">"Check now"</button>
        </ActionForm>
    }
}
