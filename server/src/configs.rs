//! The configuration an app's runs and deployments are judged by: the one
//! it was last loaded with, or the pipeline repo's at the commit a run was
//! planned from (a run keeps the rules it started under).

use crate::db::{self, Db, apps::AppRow};
use crate::git::{GitError, GitStore};
use crate::gitops::load::load_app;
use crate::gitops::schema::AppConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The files at that commit do not load; the text names file and field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
}

impl crate::error::Classified for ConfigError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ConfigError::Invalid(_) => Kind::Invalid,
            ConfigError::Git(error) => error.kind(),
            ConfigError::Db(error) => error.kind(),
        }
    }
}

/// The configuration the run was planned with: the app's current one when
/// it comes from the same pipeline commit, else read again at that commit
/// from `pipeline_repo`.
pub async fn at(
    db: &Db,
    git: &GitStore,
    pipeline_repo: Option<&str>,
    app_row: &AppRow,
    pipeline_sha: &str,
) -> Result<AppConfig, ConfigError> {
    let Some(repo) = pipeline_repo.filter(|_| app_row.pipeline_sha != pipeline_sha) else {
        return stored(app_row).map_err(|e| {
            ConfigError::Invalid(format!("{}: the stored configuration: {e}", app_row.name))
        });
    };
    let folder = format!("apps/{}", app_row.name);
    let app_yaml = git
        .read_file(repo, pipeline_sha, &format!("{folder}/app.yaml"))
        .await?;
    let pipeline_yaml = git
        .read_file(repo, pipeline_sha, &format!("{folder}/pipeline.yaml"))
        .await?;
    let clusters: Vec<String> = db::clusters::list(db.pool())
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let admin_yaml = git
        .read_file(repo, pipeline_sha, crate::gitops::guardrails::FILE)
        .await?;
    let scripts = health_scripts(git, repo, pipeline_sha).await?;
    crate::gitops::load::load_admin(admin_yaml.as_deref(), &scripts)
        .and_then(|admin| {
            load_app(
                &app_row.name,
                app_yaml.as_deref(),
                pipeline_yaml.as_deref(),
                &clusters,
            )
            .and_then(|config| crate::gitops::load::guarded(config, &admin))
        })
        .map_err(|issues| {
            ConfigError::Invalid(format!(
                "the pipeline repo at {pipeline_sha} is invalid for this app: {}",
                issues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })
}

/// The most Lua health rules a pipeline commit has, and the longest one.
const MOST_SCRIPTS: usize = 200;
const LONGEST_SCRIPT: usize = 64 * 1024;

/// The pipeline repo's Lua health rules at `sha`: the path and text of
/// every `health/<group>/<Kind>/health.lua` (a script too long, or too
/// many, is named by a path the loader refuses).
pub async fn health_scripts(
    git: &GitStore,
    repo: &str,
    sha: &str,
) -> Result<Vec<(String, String)>, GitError> {
    let mut out = Vec::new();
    for group in git.list_dirs(repo, sha, "health").await? {
        for kind in git.list_dirs(repo, sha, &format!("health/{group}")).await? {
            if out.len() == MOST_SCRIPTS {
                out.push((
                    format!("health/ (more than {MOST_SCRIPTS} rules)"),
                    String::new(),
                ));
                return Ok(out);
            }
            let path = format!("health/{group}/{kind}/health.lua");
            match git.read_file(repo, sha, &path).await? {
                Some(text) if text.len() > LONGEST_SCRIPT => out.push((
                    format!("{path} (over {} KiB)", LONGEST_SCRIPT / 1024),
                    String::new(),
                )),
                Some(text) => out.push((path, text)),
                None => {}
            }
        }
    }
    Ok(out)
}

/// The configuration the app was last loaded with, read back from what
/// the reconciler stored: every reader goes through here.
pub fn stored(app_row: &AppRow) -> Result<AppConfig, serde_json::Error> {
    serde_json::from_str(&app_row.config)
}
