//! Pinning a fault to a commit range: what changed between two releases
//! (commits, authors, files), and which deployment first carried a given
//! commit to each environment.

use std::collections::BTreeSet;

use app::dto::{ChangedFile, CommitLanding, CommitReleases, ReleaseComparison, Role};
use app::port::Caller;

use super::{CHANGELOG_LIMIT, LedgerError, changelog_entry};
use crate::db;
use crate::delivery::Delivery;
use crate::gitops::schema::AppConfig;

/// How many deployments per environment a commit search looks through.
const HISTORY_LIMIT: i64 = 5_000;

async fn app_for(
    app: &Delivery<'_>,
    caller: &Caller,
    name: &str,
) -> Result<(db::apps::AppRow, AppConfig), LedgerError> {
    caller
        .require(Role::Viewer, Some(name))
        .map_err(|e| LedgerError::Forbidden(e.to_string()))?;
    let row = db::apps::find_active_by_name(app.db.pool(), name)
        .await?
        .ok_or_else(|| LedgerError::NotFound(format!("no app named {name}")))?;
    let config: AppConfig =
        crate::configs::stored(&row).map_err(|e| LedgerError::Config(e.to_string()))?;
    Ok((row, config))
}

/// Everything between release `from` and release `to` of one app.
pub async fn compare(
    app: &Delivery<'_>,
    caller: &Caller,
    app_name: &str,
    from: i64,
    to: i64,
) -> Result<ReleaseComparison, LedgerError> {
    let (row, config) = app_for(app, caller, app_name).await?;
    let mut conn = app.db.acquire().await?;
    let mut load = async |id: i64| {
        db::releases::get(&mut conn, id)
            .await?
            .filter(|release| release.app == app_name)
            .ok_or_else(|| LedgerError::NotFound(format!("{app_name} has no release {id}")))
    };
    let from_release = load(from).await?;
    let to_release = load(to).await?;
    let commits = app
        .git
        .log_range(
            &row.source_url,
            Some(&from_release.version),
            &to_release.version,
            CHANGELOG_LIMIT,
        )
        .await?;
    let files = app
        .git
        .changed_files(&row.source_url, &from_release.version, &to_release.version)
        .await?
        .into_iter()
        .map(|file| ChangedFile {
            path: file.path,
            status: file.status,
        })
        .collect();
    let authors: BTreeSet<String> = commits.iter().map(|c| c.author.clone()).collect();
    Ok(ReleaseComparison {
        app: app_name.to_string(),
        from: from_release.id,
        to: to_release.id,
        from_version: from_release.version,
        to_version: to_release.version,
        commits: commits
            .into_iter()
            .map(|commit| changelog_entry(&config, commit))
            .collect(),
        authors: authors.into_iter().collect(),
        files,
    })
}

/// For each environment of the app: the first deployment whose commit
/// contains `sha` (the commit itself or a descendant).
pub async fn landings(
    app: &Delivery<'_>,
    caller: &Caller,
    app_name: &str,
    sha: &str,
) -> Result<CommitReleases, LedgerError> {
    let (row, _) = app_for(app, caller, app_name).await?;
    let pool = app.db.pool();
    let commit = app
        .git
        .commit_info(&row.source_url, sha)
        .await
        .map_err(|_| LedgerError::NotFound(format!("{app_name} has no commit {sha}")))?;
    let mut landings = Vec::new();
    for env in db::environments::list_for_app(pool, row.id).await? {
        let history = db::releases::deployment_history(pool, env.id, HISTORY_LIMIT).await?;
        let commits: Vec<String> = history.iter().map(|(_, c, _, _)| c.clone()).collect();
        let Some(index) = app
            .git
            .first_containing(&row.source_url, &commit.sha, commits)
            .await?
        else {
            continue;
        };
        let (deployment_id, version, at, release_id) = history[index].clone();
        landings.push(CommitLanding {
            environment: env.name,
            deployment_id,
            release_id,
            version,
            at,
        });
    }
    Ok(CommitReleases {
        app: app_name.to_string(),
        sha: commit.sha,
        summary: commit.summary,
        author: commit.author,
        landings,
    })
}
