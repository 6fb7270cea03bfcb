//! Registered clusters and how they are registered.

use super::*;

/// A registered Kubernetes cluster. Credentials are never part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClusterSummary {
    pub name: String,
    pub server_url: Option<String>,
    pub state: ClusterState,
    pub server_version: Option<String>,
    pub last_checked_at: Option<UnixMillis>,
    pub last_error: Option<String>,
    /// What Gantry needs that the credentials may not do, as the last check
    /// asked the cluster (`create namespaces`, `patch deployments.apps`):
    /// deploys that need them would fail.
    #[serde(default)]
    pub missing_permissions: Vec<String>,
}

/// What an admin sends to register a cluster: a kubeconfig (choosing a
/// context), or a server URL with a bearer token (and CA), or in-cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ClusterRegistration {
    pub name: String,
    /// A kubeconfig file's content (YAML).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The context to use (default: the kubeconfig's current context).
    #[serde(default)]
    pub context: Option<String>,
    /// The API server URL, with `token` (and `ca` unless it is public).
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// PEM CA bundle of the API server.
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    /// Use the service account Gantry itself runs under.
    #[serde(default)]
    pub in_cluster: bool,
}
