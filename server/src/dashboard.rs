//! The server's side of the dashboard port: answers what the Leptos server
//! functions (and the REST API, which shares these reads) ask for.

use app::dto::{
    AuditEntry, ChangeRequestSummary, ClusterRegistration, ClusterSummary, ConfigIssue,
    ConfigStatus, EnvironmentSummary, PendingApproval, ReleaseSummary, RunDetail, RunSummary,
    SettingSource, Settings,
};
use app::port::{DashboardPort, PortError};
use async_trait::async_trait;

use crate::db;
use crate::state::App;

fn port_error(error: sqlx::Error) -> PortError {
    PortError::Failed(error.to_string())
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

    async fn config_status(&self) -> Result<ConfigStatus, PortError> {
        let latest = db::config_revisions::latest(self.db.pool())
            .await
            .map_err(port_error)?;
        let mut issues: Vec<ConfigIssue> = match &latest {
            Some(revision) => serde_json::from_str(&revision.issues)
                .map_err(|e| PortError::Failed(e.to_string()))?,
            None => Vec::new(),
        };
        // A repo that cannot be fetched is a problem of the app's `source`.
        for (app, error) in db::apps::fetch_errors(self.db.pool())
            .await
            .map_err(port_error)?
        {
            issues.push(ConfigIssue {
                file: format!("apps/{app}/app.yaml"),
                line: None,
                column: None,
                field: "source".into(),
                message: error,
            });
        }
        Ok(ConfigStatus {
            pipeline_repo: self
                .config
                .pipeline_repo
                .as_deref()
                .map(crate::config::redact_url),
            pipeline_branch: self.config.pipeline_branch.clone(),
            pipeline_sha: latest.as_ref().map(|r| r.pipeline_sha.clone()),
            state: latest.as_ref().map(|r| r.state.clone()),
            issues,
            checked_at: latest.as_ref().map(|r| r.created_at),
        })
    }

    async fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, PortError> {
        let pool = self.db.pool();
        let Some((run, extra)) = db::runs::detail(pool, id).await.map_err(port_error)? else {
            return Ok(None);
        };
        Ok(Some(RunDetail {
            run,
            pipeline_sha: extra.pipeline_sha,
            commit_message: extra.commit_message,
            commit_author: extra.commit_author,
            trigger: extra.trigger,
            error: extra.error,
            steps: db::steps::list(pool, id).await.map_err(port_error)?,
            reports: db::steps::reports_for_run(pool, id)
                .await
                .map_err(port_error)?,
        }))
    }

    async fn step_log(&self, run_id: i64, step_id: i64) -> Result<Option<String>, PortError> {
        let pool = self.db.pool();
        let steps = db::steps::list(pool, run_id).await.map_err(port_error)?;
        if !steps.iter().any(|step| step.id == step_id) {
            return Ok(None);
        }
        let chunks = db::steps::log_chunks(pool, step_id, 0)
            .await
            .map_err(port_error)?;
        Ok(Some(chunks.into_iter().map(|(_, text)| text).collect()))
    }

    async fn register_cluster(
        &self,
        registration: ClusterRegistration,
    ) -> Result<ClusterSummary, PortError> {
        let summary = crate::clusters::register(self, &registration)
            .await
            .map_err(cluster_error)?;
        if let Err(error) = crate::gitops::reconcile::reapply(self).await {
            tracing::warn!(%error, "re-reading the pipeline repo after a cluster change failed");
        }
        Ok(summary)
    }

    async fn check_cluster(&self, name: String) -> Result<ClusterSummary, PortError> {
        crate::clusters::check(self, &name)
            .await
            .map_err(cluster_error)
    }

    async fn run_diff(&self, id: i64) -> Result<Option<Vec<app::dto::ObjectDiff>>, PortError> {
        // A diff that cannot be computed (cluster down, bad manifests) is
        // something the admin should read, not a server fault.
        crate::deploy::drift::diff_for_run(self, id)
            .await
            .map_err(|e| PortError::Refused(format!("cannot compute the diff: {e:#}")))
    }
}

/// Mistakes in a registration are the person's to fix; the rest is ours.
fn cluster_error(error: crate::clusters::ClusterError) -> PortError {
    use crate::clusters::ClusterError as E;
    match error {
        E::Secret(_) | E::Db(_) => PortError::Failed(error.to_string()),
        other => PortError::Refused(other.to_string()),
    }
}
