//! Server functions: the dashboard's calls into the server, at stable
//! addresses (`POST /fn/<name>`). Each one fetches
//! the [`Port`](crate::port::Port) from context and asks it; the browser only
//! ever sees a generic message when something fails (the cause is logged).

use leptos::prelude::*;

use crate::dto::{
    AuditEntry, ChangeRequestSummary, ClusterSummary, ConfigStatus, EnvironmentSummary,
    PendingApproval, ReleaseSummary, RunDetail, RunSummary, Settings,
};

#[cfg(feature = "ssr")]
fn port() -> Result<std::sync::Arc<dyn crate::port::DashboardPort>, ServerFnError> {
    use_context::<crate::port::Port>()
        .map(|port| port.0)
        .ok_or_else(|| ServerFnError::new("the dashboard port is not configured"))
}

/// Logs the cause and gives the browser a message without internals.
#[cfg(feature = "ssr")]
fn failed(what: &'static str) -> impl FnOnce(crate::port::PortError) -> ServerFnError {
    move |error| {
        tracing::error!(%error, "dashboard could not load {what}");
        ServerFnError::new(format!(
            "could not load {what}; the server log has the cause"
        ))
    }
}

#[server(prefix = "/fn", endpoint = "list_environments")]
pub async fn list_environments() -> Result<Vec<EnvironmentSummary>, ServerFnError> {
    port()?.environments().await.map_err(failed("environments"))
}

#[server(prefix = "/fn", endpoint = "list_runs")]
pub async fn list_runs() -> Result<Vec<RunSummary>, ServerFnError> {
    port()?.runs().await.map_err(failed("runs"))
}

#[server(prefix = "/fn", endpoint = "list_change_requests")]
pub async fn list_change_requests() -> Result<Vec<ChangeRequestSummary>, ServerFnError> {
    port()?
        .change_requests()
        .await
        .map_err(failed("change requests"))
}

#[server(prefix = "/fn", endpoint = "list_releases")]
pub async fn list_releases() -> Result<Vec<ReleaseSummary>, ServerFnError> {
    port()?.releases().await.map_err(failed("releases"))
}

#[server(prefix = "/fn", endpoint = "list_pending_approvals")]
pub async fn list_pending_approvals() -> Result<Vec<PendingApproval>, ServerFnError> {
    port()?
        .pending_approvals()
        .await
        .map_err(failed("approvals"))
}

#[server(prefix = "/fn", endpoint = "list_clusters")]
pub async fn list_clusters() -> Result<Vec<ClusterSummary>, ServerFnError> {
    port()?.clusters().await.map_err(failed("clusters"))
}

#[server(prefix = "/fn", endpoint = "list_audit_log")]
pub async fn list_audit_log() -> Result<Vec<AuditEntry>, ServerFnError> {
    port()?.audit_log().await.map_err(failed("the audit log"))
}

#[server(prefix = "/fn", endpoint = "get_settings")]
pub async fn get_settings() -> Result<Settings, ServerFnError> {
    port()?.settings().await.map_err(failed("settings"))
}

#[server(prefix = "/fn", endpoint = "get_config_status")]
pub async fn get_config_status() -> Result<ConfigStatus, ServerFnError> {
    port()?
        .config_status()
        .await
        .map_err(failed("the pipeline repo status"))
}

#[server(prefix = "/fn", endpoint = "get_run")]
pub async fn get_run(id: i64) -> Result<Option<RunDetail>, ServerFnError> {
    port()?.run_detail(id).await.map_err(failed("the run"))
}
