//! Reconciling the pipeline repo into Gantry's apps. Each app's folder is
//! validated on its own: a valid app takes effect, an invalid one keeps its
//! previous configuration (or is not created), and every problem is kept on
//! the revision for the dashboard and the API.

use std::collections::BTreeSet;

use app::dto::ConfigIssue;

use crate::db::{self, apps::NewApp, now_millis};
use crate::git::GitError;
use crate::gitops::guardrails::{self, AdminFile};
use crate::gitops::load::{guarded, load_admin, load_app};
use crate::state::App;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("the pipeline repo has no branch {branch:?} (it has: {available})")]
    NoBranch { branch: String, available: String },
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

/// What a reconciliation did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// No pipeline repo is configured.
    NoRepo,
    /// The pipeline branch has not moved since the last reconciliation.
    Unchanged { sha: String },
    /// The commit was read; `issues` lists what did not take effect.
    Reconciled {
        sha: String,
        applied: Vec<String>,
        removed: Vec<String>,
        issues: Vec<ConfigIssue>,
    },
}

/// Fetches the pipeline repo and applies its branch head if it is new.
pub async fn reconcile(app: &App) -> Result<Outcome, ReconcileError> {
    let Some(repo) = app.config.pipeline_repo.as_deref() else {
        return Ok(Outcome::NoRepo);
    };
    let heads = app.git.fetch(repo).await?;
    let branch = &app.config.pipeline_branch;
    let Some(sha) = heads.get(branch).cloned() else {
        let available = if heads.is_empty() {
            "no branches".to_string()
        } else {
            heads.keys().cloned().collect::<Vec<_>>().join(", ")
        };
        return Err(ReconcileError::NoBranch {
            branch: branch.clone(),
            available,
        });
    };
    let pool = app.db.pool();
    if let Some(revision) = db::config_revisions::latest(pool)
        .await?
        .filter(|revision| revision.pipeline_sha == sha)
    {
        // A commit refused (wholly or in part) may name a cluster that was
        // registered since: it is read again then, not at the next commit.
        let retry = revision.state != "applied"
            && db::clusters::registered_after(pool, revision.clusters_seen).await?;
        if !retry {
            return Ok(Outcome::Unchanged { sha });
        }
    }
    apply(app, repo, &sha).await
}

/// Reads every app folder at `sha` and records the outcome.
pub async fn apply(app: &App, repo: &str, sha: &str) -> Result<Outcome, ReconcileError> {
    let folders = app.git.list_dirs(repo, sha, "apps").await?;
    // Read before the list: a cluster registered in between is read again.
    let clusters_seen = db::clusters::highest_id(app.db.pool()).await?;
    let clusters: Vec<String> = db::clusters::list(app.db.pool())
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();

    let mut valid = Vec::new();
    let mut issues = Vec::new();
    // A broken admin file takes no app's configuration: each keeps the
    // one it had, within the guardrails it had.
    let admin_text = app.git.read_file(repo, sha, guardrails::FILE).await?;
    let scripts = crate::configs::health_scripts(&app.git, repo, sha).await?;
    let admin = match load_admin(admin_text.as_deref(), &scripts) {
        Ok(admin) => Some(admin),
        Err(found) => {
            issues.extend(found);
            None
        }
    };
    for name in folders.iter().filter(|_| admin.is_some()) {
        let app_yaml = app
            .git
            .read_file(repo, sha, &format!("apps/{name}/app.yaml"))
            .await?;
        let pipeline_yaml = app
            .git
            .read_file(repo, sha, &format!("apps/{name}/pipeline.yaml"))
            .await?;
        match load_app(
            name,
            app_yaml.as_deref(),
            pipeline_yaml.as_deref(),
            &clusters,
        )
        .and_then(|config| guarded(config, admin.as_ref().unwrap_or(&AdminFile::default())))
        {
            Ok(config) => valid.push(config),
            Err(found) => issues.extend(found),
        }
    }
    if folders.is_empty() {
        issues.push(ConfigIssue {
            file: "apps/".into(),
            line: None,
            column: None,
            field: String::new(),
            message: "the pipeline repo has no apps/<app>/ folders".into(),
        });
    }

    let now = now_millis();
    let mut tx = app.db.begin().await?;
    let mut applied = Vec::new();
    for config in &valid {
        let json = serde_json::to_string(config).map_err(crate::db::QueryError::unwritable)?;
        db::apps::upsert(
            &mut *tx,
            &NewApp {
                name: &config.name,
                source_url: &config.source,
                config: &json,
                pipeline_sha: sha,
            },
            now,
        )
        .await?;
        applied.push(config.name.clone());
    }
    // An app whose folder is gone is retired; an app whose folder is
    // invalid is not: it keeps running on its previous configuration.
    let present: BTreeSet<&String> = folders.iter().collect();
    let mut removed = Vec::new();
    for existing in db::apps::list_active(&mut *tx).await? {
        if !present.contains(&existing.name) {
            db::apps::mark_removed(&mut *tx, existing.id, now).await?;
            removed.push(existing.name);
        }
    }
    let state = match (issues.is_empty(), applied.is_empty()) {
        (true, _) => "applied",
        (false, false) => "partial",
        (false, true) => "rejected",
    };
    let issues_json = serde_json::to_string(&issues).map_err(crate::db::QueryError::unwritable)?;
    let revision = db::config_revisions::NewRevision {
        pipeline_sha: sha,
        state,
        issues_json: &issues_json,
        clusters_seen,
    };
    db::config_revisions::record(&mut *tx, &revision, now).await?;
    crate::db::commit(tx).await?;

    // Pins committed to (or removed from) the pipeline repo take effect.
    match crate::delivery::ledger::pin::reconcile(&app.delivery(), repo, sha, &valid).await {
        Ok(changes) => {
            for change in changes {
                tracing::info!(pipeline_sha = %sha, ?change, "pin from the pipeline repo");
            }
        }
        Err(error) => tracing::warn!(pipeline_sha = %sha, %error, "pins not reconciled"),
    }
    if issues.is_empty() {
        tracing::info!(pipeline_sha = %sha, apps = ?applied, "pipeline repo reconciled");
    } else {
        for issue in &issues {
            tracing::warn!(pipeline_sha = %sha, "pipeline repo: {issue}");
        }
    }
    Ok(Outcome::Reconciled {
        sha: sha.to_string(),
        applied,
        removed,
        issues,
    })
}

/// Reads the current pipeline commit again (the registered clusters
/// changed, so targets that were unknown may be valid now, or not).
pub async fn reapply(app: &App) -> Result<Outcome, ReconcileError> {
    let Some(repo) = app.config.pipeline_repo.as_deref() else {
        return Ok(Outcome::NoRepo);
    };
    let heads = app.git.fetch(repo).await?;
    match heads.get(&app.config.pipeline_branch) {
        Some(sha) => apply(app, repo, &sha.clone()).await,
        None => reconcile(app).await,
    }
}
