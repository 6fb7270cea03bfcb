//! Acting on one stored forge delivery, for the planner: a push or branch
//! deletion fetches the app's repo and scans it; a merge/pull request
//! opens, updates or ends a Gantry change request and its preview. A job
//! of the flow (it scans and tears previews down), so it sits with the
//! application, not with the forge's domain code.

use app::dto::ChangeRequestState;
use serde_json::Value;

use super::events::{ForgeEvent, RequestAction, normalize, same_repo};
use super::{Forge, KIND_PREFIX, feedback, fork_branch};
use crate::db::{self, apps::AppRow, change_requests::NewRow, now_millis};
use crate::state::App;

/// What can stop acting on one forge delivery.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("unknown forge {0:?} in the inbox")]
    UnknownForge(String),
    /// A delivery or record that does not parse.
    #[error("a stored record: {0}")]
    Stored(#[from] serde_json::Error),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The flow's work the delivery started (a scan, a preview's end).
    #[error(transparent)]
    Flow(Box<crate::flow::FlowError>),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<crate::flow::FlowError> for ForgeError {
    fn from(error: crate::flow::FlowError) -> Self {
        ForgeError::Flow(Box::new(error))
    }
}

impl crate::error::Classified for ForgeError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ForgeError::UnknownForge(_) | ForgeError::Stored(_) | ForgeError::Db(_) => {
                Kind::Internal
            }
            ForgeError::Git(_) => Kind::Unavailable,
            ForgeError::Flow(error) => error.kind(),
        }
    }
}

/// Acts on one stored delivery (called by the planner).
pub async fn process(app: &App, source: &str, kind: &str, payload: &str) -> Result<(), ForgeError> {
    let forge = Forge::parse(source).ok_or_else(|| ForgeError::UnknownForge(source.to_string()))?;
    let event = kind.strip_prefix(KIND_PREFIX).unwrap_or(kind);
    let payload: Value = serde_json::from_str(payload)?;
    match normalize(forge, event, &payload) {
        ForgeEvent::Ignored(why) => {
            tracing::debug!(forge = forge.as_str(), %why, "forge delivery ignored");
            Ok(())
        }
        ForgeEvent::Branch { repos, branch, .. } => {
            for app_row in apps_of(app, &repos).await? {
                crate::flow::watch::scan_app(app, &app_row, "webhook").await?;
                tracing::info!(app = %app_row.name, %branch, forge = forge.as_str(), "webhook: fetched");
            }
            Ok(())
        }
        ForgeEvent::Request {
            repos,
            number,
            action,
            source_branch,
            target_branch,
            head_sha,
            title,
            description,
            author,
            fork,
        } => {
            // A fork's branch name is its author's choice: never ours.
            let source_branch = match &fork {
                Some(_) => fork_branch(number),
                None => source_branch,
            };
            for app_row in apps_of(app, &repos).await? {
                let mut head_sha = head_sha.clone();
                if fork.is_some() {
                    head_sha =
                        follow_fork_head(app, &app_row, forge, number, action, &source_branch)
                            .await?
                            .or(head_sha);
                }
                let request = ForgeRequest {
                    forge,
                    number,
                    source_branch: &source_branch,
                    target_branch: &target_branch,
                    head_sha: head_sha.as_deref(),
                    title: &title,
                    description: &description,
                    author: &author,
                    fork: fork.as_deref(),
                };
                on_request(app, &app_row, action, &request).await?;
            }
            Ok(())
        }
    }
}

/// The apps whose source is one of `repos`.
async fn apps_of(app: &App, repos: &[String]) -> Result<Vec<AppRow>, ForgeError> {
    let apps: Vec<AppRow> = db::apps::list_active(app.db.pool())
        .await?
        .into_iter()
        .filter(|row| repos.iter().any(|url| same_repo(url, &row.source_url)))
        .collect();
    if apps.is_empty() {
        // Worth a line: a repository whose app.yaml names another URL form,
        // or a hook set up before the pipeline repo lists the app.
        tracing::info!(
            ?repos,
            "forge delivery for a repository no app watches; ignored"
        );
    }
    Ok(apps)
}

/// Where the forge keeps a request's head in the base repository.
fn request_ref(forge: Forge, number: i64) -> String {
    match forge {
        Forge::GitHub | Forge::Gitea => format!("refs/pull/{number}/head"),
        Forge::GitLab => format!("refs/merge-requests/{number}/head"),
    }
}

/// Keeps the mirror's copy of a fork's request head current (or drops it
/// when the request ended, which ends its preview at the next scan).
async fn follow_fork_head(
    app: &App,
    app_row: &AppRow,
    forge: Forge,
    number: i64,
    action: RequestAction,
    name: &str,
) -> Result<Option<String>, ForgeError> {
    match action {
        RequestAction::Opened | RequestAction::Updated => Ok(Some(
            app.git
                .fetch_fork_head(&app_row.source_url, &request_ref(forge, number), name)
                .await?,
        )),
        RequestAction::Merged | RequestAction::Closed => {
            app.git.forget_fork_head(&app_row.source_url, name).await?;
            Ok(None)
        }
    }
}

struct ForgeRequest<'a> {
    forge: Forge,
    number: i64,
    source_branch: &'a str,
    target_branch: &'a str,
    head_sha: Option<&'a str>,
    title: &'a str,
    description: &'a str,
    author: &'a str,
    fork: Option<&'a str>,
}

async fn on_request(
    app: &App,
    app_row: &AppRow,
    action: RequestAction,
    request: &ForgeRequest<'_>,
) -> Result<(), ForgeError> {
    let pool = app.db.pool();
    let origin = request.forge.as_str();
    let now = now_millis();
    let existing =
        db::change_requests::find_forge(pool, app_row.id, origin, request.number).await?;
    match (action, existing) {
        (RequestAction::Opened | RequestAction::Updated, None) => {
            let id = db::change_requests::insert(
                pool,
                &NewRow {
                    app_id: app_row.id,
                    origin,
                    title: request.title,
                    description: request.description,
                    source_branch: request.source_branch,
                    target_branch: request.target_branch,
                    head_sha: request.head_sha.unwrap_or_default(),
                    author: request.author,
                    author_user_id: None,
                },
                now,
            )
            .await?;
            db::change_requests::set_forge_number(pool, id, request.number).await?;
            if let Some(fork) = request.fork {
                db::change_requests::set_fork(pool, id, fork).await?;
            }
            tracing::info!(app = %app_row.name, change_request = id, forge = origin, number = request.number, fork = request.fork.unwrap_or(""), "forge request opened");
            // The push usually arrives before the request: its run, planned
            // already, belongs to the request and reports on it now.
            if let Some(sha) = request.head_sha
                && let Some(run) =
                    db::runs::latest_of_commit(pool, app_row.id, request.source_branch, sha).await?
            {
                db::runs::set_change_request(pool, run.id, id).await?;
                if let Err(error) =
                    feedback::update_comment(&app.delivery(), &app.forge_comments, run.id).await
                {
                    tracing::warn!(run = run.id, %error, "change-request comment not updated");
                }
            }
            // The preview is the source branch's: fetch it now.
            crate::flow::watch::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Opened | RequestAction::Updated, Some(cr)) => {
            // A delivery retried after a crash between the row and its
            // mark: the mark is never missing for long.
            if let (Some(fork), None) = (request.fork, &cr.fork_of) {
                db::change_requests::set_fork(pool, cr.id, fork).await?;
            }
            if let Some(sha) = request.head_sha
                && cr.head_sha.as_deref() != Some(sha)
            {
                db::change_requests::set_head(pool, cr.id, sha, now).await?;
            } else if cr.state != ChangeRequestState::Open.as_str() {
                db::change_requests::set_state(pool, cr.id, ChangeRequestState::Open, None, now)
                    .await?;
            }
            crate::flow::watch::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Merged, Some(cr)) => {
            let sha = request.head_sha.unwrap_or_default();
            db::change_requests::mark_merged(
                pool,
                cr.id,
                sha,
                request.author,
                &format!("merged on {origin}"),
                now,
            )
            .await?;
            // The target branch moved: its pipeline runs.
            crate::flow::watch::scan_app(app, app_row, "webhook").await?;
        }
        (RequestAction::Closed, Some(cr)) => {
            db::change_requests::set_state(
                pool,
                cr.id,
                ChangeRequestState::Closed,
                Some(&format!("closed on {origin}")),
                now,
            )
            .await?;
            destroy_preview(app, app_row, request.source_branch, origin).await?;
            if request.fork.is_some() {
                crate::flow::watch::scan_app(app, app_row, "webhook").await?;
            }
        }
        (RequestAction::Merged | RequestAction::Closed, None) => {
            tracing::debug!(number = request.number, "a request Gantry never saw ended");
        }
    }
    Ok(())
}

/// A closed request's preview goes (unless another request still uses it).
async fn destroy_preview(
    app: &App,
    app_row: &AppRow,
    branch: &str,
    origin: &str,
) -> Result<(), ForgeError> {
    let pool = app.db.pool();
    if !db::change_requests::active_from(pool, app_row.id, branch)
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let config: crate::gitops::schema::AppConfig = serde_json::from_str(&app_row.config)?;
    if let Some(env) = db::environments::find_for_branch(pool, app_row.id, branch).await?
        && env.destroyed_at.is_none()
        && crate::gitops::stack::is_preview(&config, &env.stack_entry)
    {
        crate::flow::lifecycle::destroy(
            app,
            &env,
            &app_row.name,
            &format!("its {origin} request was closed"),
        )
        .await?;
    }
    Ok(())
}
