//! Commands of the `gantry` binary that talk to a running Gantry over its
//! REST API (at `server.public_url`, with `GANTRY_TOKEN` as the bearer):
//! `cluster …` for admins, `cr …` for everyone who proposes or reviews.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use app::dto::{
    ChangeRequestDetail, ChangeRequestSummary, ClusterSummary, Promotion, ReleaseSummary,
    RollbackAccepted,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ChangeRequestCommand, ClusterCommand, Command};
use crate::config::Config;

/// The REST API of one Gantry server.
struct ApiClient {
    client: reqwest::Client,
    base: String,
}

impl ApiClient {
    fn new(config: &Config) -> anyhow::Result<ApiClient> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(token) = std::env::var("GANTRY_TOKEN")
            && let Ok(value) = format!("Bearer {}", token.trim()).parse()
        {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(ApiClient {
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()?,
            base: config.public_url.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// Calls `path` under `/api/v1`; an error answer becomes its message.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach Gantry at {}; is it running?", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no details");
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(body)
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `gantry cluster add|list|check|remove`.
pub async fn cluster(config: &Config, command: ClusterCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(config)?;
    let mut out = std::io::stdout().lock();
    match command {
        ClusterCommand::Add {
            name,
            kubeconfig,
            context,
            api_server,
            token_file,
            ca_file,
            insecure,
            in_cluster,
        } => {
            let mut body = json!({ "name": name, "insecure": insecure, "in_cluster": in_cluster });
            if let Some(path) = kubeconfig {
                body["kubeconfig"] = json!(read(&path)?);
                body["context"] = json!(context);
            }
            if let (Some(server), Some(token)) = (api_server, token_file) {
                body["server"] = json!(server);
                body["token"] = json!(read(&token)?.trim());
                if let Some(ca) = ca_file {
                    body["ca"] = json!(read(&ca)?);
                }
            }
            let summary = api.call(Method::POST, "/clusters", Some(body)).await?;
            writeln!(
                out,
                "registered {}",
                describe_cluster(&serde_json::from_value(summary)?)
            )?;
        }
        ClusterCommand::List => {
            let clusters: Vec<ClusterSummary> =
                serde_json::from_value(api.call(Method::GET, "/clusters", None).await?)?;
            if clusters.is_empty() {
                writeln!(out, "no clusters registered")?;
            }
            for cluster in clusters {
                writeln!(out, "{}", describe_cluster(&cluster))?;
            }
        }
        ClusterCommand::Check { name } => {
            let path = format!("/clusters/{name}/check");
            let summary = api.call(Method::POST, &path, None).await?;
            writeln!(
                out,
                "{}",
                describe_cluster(&serde_json::from_value(summary)?)
            )?;
        }
        ClusterCommand::Remove { name } => {
            api.call(Method::DELETE, &format!("/clusters/{name}"), None)
                .await?;
            writeln!(out, "removed {name}")?;
        }
    }
    Ok(())
}

fn describe_cluster(cluster: &ClusterSummary) -> String {
    let server = cluster.server_url.as_deref().unwrap_or("in-cluster");
    let mut line = match (&cluster.server_version, &cluster.last_error) {
        (_, Some(error)) => format!("{}\t{server}\t{}\t{error}", cluster.name, cluster.state),
        (Some(version), None) => {
            format!("{}\t{server}\t{}\t{version}", cluster.name, cluster.state)
        }
        (None, None) => format!("{}\t{server}\t{}", cluster.name, cluster.state),
    };
    // One line per permission the credentials lack, under the cluster.
    for missing in &cluster.missing_permissions {
        line.push_str(&format!("\n  missing permission: {missing}"));
    }
    line
}

/// `gantry cr open|list|show|approve|reject|close`.
pub async fn change_request(config: &Config, command: ChangeRequestCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(config)?;
    let mut out = std::io::stdout().lock();
    let summary = |value: Value| -> anyhow::Result<String> {
        Ok(describe_request(&serde_json::from_value(value)?))
    };
    match command {
        ChangeRequestCommand::Open {
            app,
            source,
            target,
            title,
            description,
        } => {
            let body = json!({
                "app": app,
                "source_branch": source,
                "target_branch": target,
                "title": title,
                "description": description,
            });
            let opened = api
                .call(Method::POST, "/change-requests", Some(body))
                .await?;
            writeln!(out, "opened {}", summary(opened)?)?;
        }
        ChangeRequestCommand::List => {
            let requests: Vec<ChangeRequestSummary> =
                serde_json::from_value(api.call(Method::GET, "/change-requests", None).await?)?;
            if requests.is_empty() {
                writeln!(out, "no change requests")?;
            }
            for request in requests {
                writeln!(out, "{}", describe_request(&request))?;
            }
        }
        ChangeRequestCommand::Show { id } => {
            let detail: ChangeRequestDetail = serde_json::from_value(
                api.call(Method::GET, &format!("/change-requests/{id}"), None)
                    .await?,
            )?;
            writeln!(out, "{}", describe_request(&detail.summary))?;
            writeln!(
                out,
                "approvals\t{} of {} ({})",
                detail.approvals_of_head,
                detail.required_approvals,
                detail.approver_roles.join(", ")
            )?;
            if let Some(preview) = detail.preview.and_then(|p| p.url) {
                writeln!(out, "preview\t{preview}")?;
            }
            if let Some(freeze) = detail.freeze {
                writeln!(out, "freeze\t{freeze}")?;
            }
            for decision in detail.decisions {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    decision.who,
                    decision.decision,
                    decision.comment.unwrap_or_default()
                )?;
            }
        }
        ChangeRequestCommand::Approve { id, comment } => {
            let path = format!("/change-requests/{id}/approve");
            let result = api
                .call(Method::POST, &path, Some(json!({ "comment": comment })))
                .await?;
            writeln!(out, "{}", summary(result)?)?;
        }
        ChangeRequestCommand::Reject { id, comment } => {
            let path = format!("/change-requests/{id}/reject");
            let result = api
                .call(Method::POST, &path, Some(json!({ "comment": comment })))
                .await?;
            writeln!(out, "{}", summary(result)?)?;
        }
        ChangeRequestCommand::Close { id } => {
            let path = format!("/change-requests/{id}/close");
            let result = api.call(Method::POST, &path, None).await?;
            writeln!(out, "{}", summary(result)?)?;
        }
    }
    Ok(())
}

fn describe_request(cr: &ChangeRequestSummary) -> String {
    let mut line = format!(
        "#{}\t{}\t{} → {}\t{}\t{}\t{}",
        cr.id, cr.app, cr.source_branch, cr.target_branch, cr.state, cr.author, cr.title
    );
    if let Some(detail) = &cr.state_detail {
        line.push_str(&format!("\t({detail})"));
    }
    line
}

/// `gantry rollback`, `gantry promote` and `gantry releases`.
pub async fn ledger(config: &Config, command: Command) -> anyhow::Result<()> {
    let api = ApiClient::new(config)?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Rollback {
            app,
            env,
            to,
            reason,
            no_wait,
        } => {
            let body = json!({ "environment": env, "to": to, "reason": reason });
            let accepted: RollbackAccepted = serde_json::from_value(
                api.call(Method::POST, &format!("/apps/{app}/rollback"), Some(body))
                    .await?,
            )?;
            writeln!(
                out,
                "rolling {app}/{env} back to release {} ({}) in run {}; {env} is pinned until promoted",
                accepted.to_release,
                short(&accepted.version),
                accepted.run_id
            )?;
            if let Some(error) = &accepted.git_error {
                writeln!(out, "warning: the pin is not in the pipeline repo: {error}")?;
            }
            if !no_wait {
                let state = wait_for_run(&api, accepted.run_id).await?;
                writeln!(out, "run {}: {state}", accepted.run_id)?;
                if state != "succeeded" {
                    anyhow::bail!(
                        "the rollback did not succeed; see /runs/{}",
                        accepted.run_id
                    );
                }
            }
        }
        Command::Promote { app, env, reason } => {
            let body = json!({ "environment": env, "reason": reason });
            let promotion: Promotion = serde_json::from_value(
                api.call(Method::POST, &format!("/apps/{app}/promote"), Some(body))
                    .await?,
            )?;
            writeln!(out, "{app}/{env}: {}", promotion.detail)?;
        }
        Command::Releases { app, env, limit } => {
            let mut path = format!("/releases?app={app}&limit={limit}");
            if let Some(env) = &env {
                path.push_str(&format!("&environment={env}"));
            }
            let releases: Vec<ReleaseSummary> =
                serde_json::from_value(api.call(Method::GET, &path, None).await?)?;
            if releases.is_empty() {
                writeln!(out, "no releases")?;
            }
            for release in releases {
                writeln!(
                    out,
                    "#{}\t{}\t{}\t{}\t{}\t{}",
                    release.id,
                    release.environment,
                    short(&release.version),
                    release.state,
                    release.created_by.as_deref().unwrap_or("gantry"),
                    release.label.as_deref().unwrap_or_default()
                )?;
            }
        }
        other => anyhow::bail!("not a ledger command: {other:?}"),
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Polls a run until it ends; its final state.
async fn wait_for_run(api: &ApiClient, run_id: i64) -> anyhow::Result<String> {
    loop {
        let detail = api
            .call(Method::GET, &format!("/runs/{run_id}"), None)
            .await?;
        let state = detail["run"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !matches!(
            state.as_str(),
            "queued" | "running" | "waiting_for_approval"
        ) {
            return Ok(state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
