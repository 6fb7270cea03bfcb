//! The server's side of the dashboard port: answers what the Leptos server
//! functions (and the REST API, which shares these reads) ask for.

use app::dto::{
    AuditEntry, ChangeRequestSummary, ClusterSummary, EnvironmentSummary, PendingApproval,
    ReleaseSummary, RunSummary, SettingSource, Settings,
};
use app::port::{DashboardPort, PortError};
use async_trait::async_trait;

use crate::db;
use crate::state::App;

fn port_error(error: sqlx::Error) -> PortError {
    PortError(error.to_string())
}

#[async_trait]
impl DashboardPort for App {
    async fn environments(&self) -> Result<Vec<EnvironmentSummary>, PortError> {
        db::environments::list_active(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn runs(&self) -> Result<Vec<RunSummary>, PortError> {
        db::runs::list_recent(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn change_requests(&self) -> Result<Vec<ChangeRequestSummary>, PortError> {
        db::change_requests::list(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn releases(&self) -> Result<Vec<ReleaseSummary>, PortError> {
        db::releases::list_recent(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn pending_approvals(&self) -> Result<Vec<PendingApproval>, PortError> {
        db::runs::list_waiting_for_approval(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn clusters(&self) -> Result<Vec<ClusterSummary>, PortError> {
        db::clusters::list(self.db.pool()).await.map_err(port_error)
    }

    async fn audit_log(&self) -> Result<Vec<AuditEntry>, PortError> {
        db::audit::list_recent(self.db.pool())
            .await
            .map_err(port_error)
    }

    async fn settings(&self) -> Result<Settings, PortError> {
        Ok(Settings {
            version: env!("CARGO_PKG_VERSION").to_string(),
            database_backend: self.db.backend().name().to_string(),
            data_dir: self.config.data_dir.display().to_string(),
            bind: self.config.bind.to_string(),
            sources: self
                .config
                .sources
                .iter()
                .map(|(key, value, origin)| SettingSource {
                    key: (*key).to_string(),
                    value: value.clone(),
                    source: origin.to_string(),
                })
                .collect(),
        })
    }
}
