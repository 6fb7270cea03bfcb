//! The release ledger: every deployment of a fixed environment (staging,
//! production; not previews) is an entry tied to its commit, with the
//! changelog since what served before, its approvals and its targets'
//! outcomes. Production entries are what people call releases.
//!
//! Around it: releases become stable after a soak ([`stable`]); a rollback
//! re-applies a stable release's stored manifests and pins the environment
//! ([`rollback`], [`pin`]); and any two releases, or any commit, can be
//! traced ([`pinpoint`]).

pub mod pin;
pub mod pinpoint;
pub mod rollback;
pub mod stable;

use app::dto::{ChangelogCommit, ReleaseKind};

use crate::db::{self, releases::NewRelease};
use crate::delivery::Delivery;
use crate::error::{Classified, Kind};
use crate::gitops::schema::AppConfig;
use crate::gitops::stack;
use crate::gitops::template;

/// How many commits a changelog lists at most (a longer one says so).
pub const CHANGELOG_LIMIT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] crate::db::QueryError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{0}")]
    Config(String),
}

impl Classified for LedgerError {
    fn kind(&self) -> Kind {
        match self {
            LedgerError::NotFound(_) => Kind::NotFound,
            LedgerError::Invalid(_) => Kind::Invalid,
            LedgerError::Forbidden(_) => Kind::Forbidden,
            LedgerError::Conflict(_) => Kind::Conflict,
            LedgerError::Git(error) => error.kind(),
            LedgerError::Config(_) => Kind::Internal,
            LedgerError::Db(error) => error.kind(),
        }
    }
}

/// True for environments the ledger records: fixed stack entries (one
/// branch), not previews.
pub fn records(config: &AppConfig, stack_entry: &str) -> bool {
    stack::exact_branch_of(config, stack_entry).is_some()
}

/// What the deploy step knows when a deployment starts.
pub struct Opening<'a> {
    pub app_id: i64,
    pub source_url: &'a str,
    pub config: &'a AppConfig,
    pub environment_id: i64,
    pub run_id: Option<i64>,
    pub version: &'a str,
    /// The commit the environment served before.
    pub previous_version: Option<&'a str>,
    pub pipeline_sha: &'a str,
    pub image: Option<&'a str>,
}

/// What a release's entry says besides its deployment: the changelog and
/// who let it through.
pub struct Entry {
    changelog: String,
    created_by: Option<String>,
}

impl Entry {
    /// The entry to open with the deployment (which fills its id in).
    pub fn release<'a>(&'a self, opening: &Opening<'a>) -> NewRelease<'a> {
        NewRelease {
            app_id: opening.app_id,
            environment_id: opening.environment_id,
            deployment_id: 0,
            run_id: opening.run_id,
            kind: ReleaseKind::Release,
            version: opening.version,
            previous_version: opening.previous_version,
            pipeline_sha: opening.pipeline_sha,
            image: opening.image,
            label: None,
            reason: None,
            rollback_of: None,
            rollback_to: None,
            created_by: self.created_by.as_deref(),
            changelog: &self.changelog,
        }
    }
}

/// Prepares the ledger entry of a deployment about to start. The changelog
/// comes from the app repo; if git cannot answer, the entry goes without
/// it rather than holding the deploy.
pub async fn entry(
    app: &Delivery<'_>,
    opening: &Opening<'_>,
) -> Result<Entry, crate::db::QueryError> {
    let changelog = match changelog(app, opening).await {
        Ok(commits) => commits,
        Err(error) => {
            tracing::warn!(%error, version = %opening.version, "changelog unavailable");
            Vec::new()
        }
    };
    let created_by = match opening.run_id {
        Some(run) => released_by(app, run).await?,
        None => None,
    };
    Ok(Entry {
        changelog: serde_json::to_string(&changelog).unwrap_or_else(|_| "[]".into()),
        created_by,
    })
}

/// Announces a release or rollback that went live.
pub(crate) async fn announce(
    app: &Delivery<'_>,
    release_id: i64,
) -> Result<(), crate::db::QueryError> {
    let mut conn = app.db.acquire().await?;
    let Some(release) = db::releases::get(&mut conn, release_id).await? else {
        return Ok(());
    };
    let short = &release.version[..release.version.len().min(7)];
    let (event, title) = match release.kind {
        ReleaseKind::Rollback => (
            crate::notify::Event::RolledBack,
            format!(
                "{} {}: {}",
                release.app,
                release.environment,
                release.label.clone().unwrap_or_default()
            ),
        ),
        ReleaseKind::Release => (
            crate::notify::Event::Released,
            format!("{} {short} is live on {}", release.app, release.environment),
        ),
    };
    let mut text = release
        .changelog
        .iter()
        .take(10)
        .map(|c| {
            format!(
                "- {} {} ({})",
                &c.sha[..c.sha.len().min(7)],
                c.summary,
                c.author
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(reason) = &release.reason {
        text = format!("Reason: {reason}\n{text}");
    }
    crate::notify::emit(
        &app.notifier(),
        crate::notify::Notice {
            event,
            app: release.app.clone(),
            environment: release.environment.clone(),
            subject: format!("release:{release_id}"),
            title,
            text,
            url: Some(crate::notify::link(
                &app.notifier(),
                &format!(
                    "releases?app={}&environment={}",
                    release.app, release.environment
                ),
            )),
        },
    )
    .await;
    Ok(())
}

async fn changelog(
    app: &Delivery<'_>,
    opening: &Opening<'_>,
) -> Result<Vec<ChangelogCommit>, crate::git::GitError> {
    let previous = opening
        .previous_version
        .filter(|previous| *previous != opening.version);
    if opening.previous_version == Some(opening.version) {
        return Ok(Vec::new());
    }
    let commits = app
        .git
        .log_range(
            opening.source_url,
            previous,
            opening.version,
            CHANGELOG_LIMIT,
        )
        .await?;
    Ok(commits
        .into_iter()
        .map(|commit| changelog_entry(opening.config, commit))
        .collect())
}

/// A commit as the ledger shows it, with a link to the forge when the app
/// configures `commit_url`.
pub fn changelog_entry(config: &AppConfig, commit: crate::git::CommitInfo) -> ChangelogCommit {
    let url = config.commit_url.as_deref().and_then(|url| {
        let context = template::context(&config.name, "", "", &commit.sha, &Default::default());
        template::render(url, &context).ok()
    });
    ChangelogCommit {
        sha: commit.sha,
        summary: commit.summary,
        author: commit.author,
        author_email: commit.author_email,
        time: commit.time * 1000,
        url,
    }
}

/// Who let a run's commit through: whoever merged its change request, else
/// the last person who approved the run, else the commit's author.
async fn released_by(
    app: &Delivery<'_>,
    run_id: i64,
) -> Result<Option<String>, crate::db::QueryError> {
    let pool = app.db.pool();
    let Some(run) = db::runs::get(pool, run_id).await? else {
        return Ok(None);
    };
    if let Some(request) = run.change_request_id
        && let Some(cr) = db::change_requests::get(pool, request).await?
        && let Some(merged_by) = cr.merged_by
    {
        return Ok(Some(merged_by));
    }
    let approver = db::approvals::last_approver_of_run(pool, run_id).await?;
    Ok(approver.or(run.commit_author))
}
