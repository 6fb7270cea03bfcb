//! Pins, kept in Git. A pinned environment builds new commits of its
//! branch but does not deploy them. The pin lives in the pipeline repo as
//! `apps/<app>/pins/<env>.yaml`, committed by Gantry with the admin in a
//! trailer, and mirrored in the database (what the deploy step reads).
//!
//! Git stays authoritative: reconciling the pipeline repo pins an
//! environment whose pin file someone committed, and unpins one whose file
//! was deleted after Gantry wrote it. A pin Gantry could not write (no
//! pipeline repo, push refused) still holds, and says why it is not in Git.

use serde::{Deserialize, Serialize};

use crate::db::{self, now_millis, pins::PinRow};
use crate::delivery::Delivery;
use crate::git::FileCommit;
use crate::gitops::schema::AppConfig;

/// The pin file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    /// The app commit the environment stays on.
    pub version: String,
    /// The ledger entry it was pinned to, when Gantry wrote it.
    #[serde(default)]
    pub release: Option<i64>,
    pub pinned_by: String,
    pub reason: String,
}

pub fn path(app: &str, env: &str) -> String {
    format!("apps/{app}/pins/{env}.yaml")
}

fn render(app: &str, env: &str, file: &PinFile) -> String {
    // JSON strings are YAML double-quoted scalars: any reason is safe.
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let release = file
        .release
        .map(|id| format!("release: {id}\n"))
        .unwrap_or_default();
    let body = format!(
        "version: {}\n{release}pinned_by: {}\nreason: {}\n",
        quote(&file.version),
        quote(&file.pinned_by),
        quote(&file.reason)
    );
    format!(
        "# Written by Gantry: {env} of {app} stays on this version; new commits are\n\
         # built but not deployed there. Promote in Gantry, or delete this file, to unpin.\n\
         {body}"
    )
}

/// Why a pin was not written to the pipeline repo (it still holds in Gantry).
#[derive(Debug, thiserror::Error)]
pub enum PinWriteError {
    #[error("no pipeline repo is configured; the pin is kept by Gantry only")]
    NoPipelineRepo,
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// Writes (or with `None` removes) the pin file in the pipeline repo.
/// The commit that wrote the change (`None`: nothing to change).
pub async fn write(
    app: &Delivery<'_>,
    app_name: &str,
    env_name: &str,
    pin: Option<&PinFile>,
    actor: &str,
) -> Result<Option<String>, PinWriteError> {
    let Some(repo) = app.pipeline.repo else {
        return Err(PinWriteError::NoPipelineRepo);
    };
    let message = match pin {
        Some(pin) => format!(
            "Pin {env_name} of {app_name} to {}\n\n{}\n\nGantry-Actor: {actor}\n",
            short(&pin.version),
            pin.reason
        ),
        None => format!("Unpin {env_name} of {app_name}\n\nGantry-Actor: {actor}\n"),
    };
    app.git
        .commit_file(
            repo,
            FileCommit {
                branch: app.pipeline.branch.to_string(),
                path: path(app_name, env_name),
                content: pin.map(|pin| render(app_name, env_name, pin)),
                message,
            },
        )
        .await
        .map_err(PinWriteError::from)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// What reconciling found about one pin file.
#[derive(Debug, PartialEq)]
pub enum PinChange {
    PinnedFromGit { app: String, env: String },
    UnpinnedFromGit { app: String, env: String },
}

/// Honours the pin files of `sha` for the fixed environments of `configs`.
pub async fn reconcile(
    app: &Delivery<'_>,
    repo: &str,
    sha: &str,
    configs: &[AppConfig],
) -> Result<Vec<PinChange>, crate::delivery::ledger::LedgerError> {
    let pool = app.db.pool();
    let mut changes = Vec::new();
    for config in configs {
        let Some(app_row) = db::apps::find_active_by_name(pool, &config.name).await? else {
            continue;
        };
        for entry in config.stack.iter().filter(|e| !e.branches.is_preview()) {
            let Some(env) = db::environments::find_by_name(pool, app_row.id, &entry.env).await?
            else {
                continue;
            };
            let text = app
                .git
                .read_file(repo, sha, &path(&config.name, &entry.env))
                .await?;
            let current = db::pins::get(pool, env.id).await?;
            match (text, current) {
                (Some(text), None) => {
                    let file: PinFile = match serde_saphyr::from_str(&text) {
                        Ok(file) => file,
                        Err(error) => {
                            tracing::warn!(file = %path(&config.name, &entry.env), %error, "pin file ignored");
                            continue;
                        }
                    };
                    let now = now_millis();
                    db::pins::set(
                        pool,
                        &PinRow {
                            environment_id: env.id,
                            release_id: file.release,
                            version: file.version.clone(),
                            pinned_by: file.pinned_by.clone(),
                            reason: file.reason.clone(),
                            pin_commit: Some(sha.to_string()),
                            git_error: None,
                            created_at: now,
                        },
                    )
                    .await?;
                    audit(
                        app,
                        &file.pinned_by,
                        "pin.from_git",
                        &config.name,
                        &entry.env,
                        sha,
                    )
                    .await?;
                    changes.push(PinChange::PinnedFromGit {
                        app: config.name.clone(),
                        env: entry.env.clone(),
                    });
                }
                (None, Some(pin)) => {
                    // Only a pin Git had and no longer has is lifted; one
                    // Gantry could not write yet stays.
                    let Some(pin_commit) = pin.pin_commit.as_deref() else {
                        continue;
                    };
                    if pin_commit != sha && app.git.is_ancestor(repo, pin_commit, sha).await? {
                        db::pins::delete(pool, env.id).await?;
                        audit(app, "git", "unpin.from_git", &config.name, &entry.env, sha).await?;
                        changes.push(PinChange::UnpinnedFromGit {
                            app: config.name.clone(),
                            env: entry.env.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(changes)
}

async fn audit(
    app: &Delivery<'_>,
    actor: &str,
    action: &str,
    app_name: &str,
    env: &str,
    sha: &str,
) -> Result<(), crate::db::QueryError> {
    db::audit::record(
        app.db.pool(),
        &db::audit::NewEntry {
            actor,
            action,
            target: &format!("environment:{app_name}/{env}"),
            reason: Some(&format!("pipeline repo commit {}", short(sha))),
            source_ip: None,
            detail: "{}",
        },
        now_millis(),
    )
    .await
    .map(|_| ())
}
