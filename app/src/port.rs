//! The port between the dashboard and Gantry's domain.
//!
//! Server functions live in this crate so the WASM bundle can call them, but
//! the code that answers them (database, git, clusters) lives in `server`,
//! which depends on this crate. Rather than invert that dependency, `app`
//! declares what it needs as the [`DashboardPort`] trait; `server` implements
//! it and provides it to every server function as Leptos context.

use std::sync::Arc;

use async_trait::async_trait;

use crate::dto::{
    AuditEntry, ChangeRequestSummary, ClusterRegistration, ClusterSummary, ConfigStatus,
    EnvironmentSummary, ObjectDiff, PendingApproval, ReleaseSummary, RunDetail, RunSummary,
    Settings,
};

/// A failure behind the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Something broke; the text goes to the server log, never to the
    /// browser (the dashboard shows a generic message).
    #[error("{0}")]
    Failed(String),
    /// The request was refused for a reason the person can fix; the text
    /// is shown to them.
    #[error("{0}")]
    Refused(String),
}

/// Everything the dashboard reads or does, answered by the server.
#[async_trait]
pub trait DashboardPort: Send + Sync + 'static {
    async fn environments(&self) -> Result<Vec<EnvironmentSummary>, PortError>;
    async fn runs(&self) -> Result<Vec<RunSummary>, PortError>;
    async fn change_requests(&self) -> Result<Vec<ChangeRequestSummary>, PortError>;
    async fn releases(&self) -> Result<Vec<ReleaseSummary>, PortError>;
    async fn pending_approvals(&self) -> Result<Vec<PendingApproval>, PortError>;
    async fn clusters(&self) -> Result<Vec<ClusterSummary>, PortError>;
    async fn audit_log(&self) -> Result<Vec<AuditEntry>, PortError>;
    async fn settings(&self) -> Result<Settings, PortError>;
    async fn config_status(&self) -> Result<ConfigStatus, PortError>;
    async fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, PortError>;
    /// The stored log of one step of a run, in order.
    async fn step_log(&self, run_id: i64, step_id: i64) -> Result<Option<String>, PortError>;
    async fn register_cluster(
        &self,
        registration: ClusterRegistration,
    ) -> Result<ClusterSummary, PortError>;
    async fn check_cluster(&self, name: String) -> Result<ClusterSummary, PortError>;
    /// What a run would change on its clusters (`None`: no such run).
    async fn run_diff(&self, id: i64) -> Result<Option<Vec<ObjectDiff>>, PortError>;
}

/// The handle provided as context: `provide_context(Port(...))`.
#[derive(Clone)]
pub struct Port(pub Arc<dyn DashboardPort>);
